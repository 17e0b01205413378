//! The `oidc` section of `control-plane.yaml`: single sign-on, and its client secret
//! (redacted wherever it is printed).

use std::path::PathBuf;

use serde::Deserialize;

/// Single sign-on by OpenID Connect (authorization code flow with PKCE, `state` and
/// `nonce`; the ID token's signature, issuer, audience and expiry are checked).
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// The provider's issuer URL (https), exactly as its discovery document and ID tokens
    /// give it; `/.well-known/openid-configuration` is read from under it.
    pub issuer: String,
    /// This console's client id at the provider.
    pub client_id: String,
    /// The client secret. Give this or `client_secret_file`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub client_secret: Option<ClientSecret>,
    /// A file holding the client secret (e.g. a systemd credential); read at start.
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    /// The callback registered at the provider: `https://<console address>/console/oidc/callback`.
    pub redirect_uri: String,
    /// How an identity finds its Outpost user: `email` (the verified e-mail address is
    /// the user name) or `subject` (the provider's stable `sub`, linked at first sign-in).
    #[serde(default)]
    pub map_by: OidcMapBy,
    /// Role of a user created at their first sign-in; absent: only users an admin has
    /// added may sign in (with `map_by: email`).
    #[serde(default)]
    pub default_role: Option<crate::auth::access::Role>,
    /// PEM file of the CAs trusted for the provider's TLS certificate; default: the
    /// system bundle (/etc/ssl/certs/ca-certificates.crt).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Scopes asked for besides `openid`.
    #[serde(default = "default_oidc_scopes")]
    pub scopes: Vec<String>,
    /// Name on the sign-in button.
    #[serde(default)]
    pub display_name: Option<String>,
}

/// How a single sign-on identity is mapped to a user.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OidcMapBy {
    /// The `email` claim (only when `email_verified` is true) is the user name.
    #[default]
    Email,
    /// The `sub` claim, linked to a user at first sign-in.
    Subject,
}

fn default_oidc_scopes() -> Vec<String> {
    vec!["email".into(), "profile".into()]
}

/// A client secret: a [`secrecy::SecretString`] (zeroed when dropped), redacted in `Debug`.
#[derive(Clone)]
pub struct ClientSecret(secrecy::SecretString);

impl ClientSecret {
    /// Wraps a secret read from a file.
    pub fn new(s: String) -> Self {
        Self(s.into())
    }
    /// The secret, for the token request only.
    pub fn expose(&self) -> &str {
        secrecy::ExposeSecret::expose_secret(&self.0)
    }
}

impl<'de> Deserialize<'de> for ClientSecret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Self::new(String::deserialize(d)?))
    }
}

impl std::fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientSecret([REDACTED])")
    }
}
