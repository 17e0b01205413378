//! Single sign-on for the console by OpenID Connect: the authorization code flow with
//! PKCE (S256), `state` bound to the browser by a sealed cookie, `nonce` checked
//! in the ID token, and the ID token's signature (RS256, ES256 or EdDSA against the
//! provider's JWKS), issuer, audience, expiry and issue time verified before anyone is
//! signed in. The provider is reached over TLS only, trusting `oidc.ca_file` or the
//! system bundle. This module is the client of the provider and maps its identities to
//! users; the browser's side (the flow cookie, the session, the audit record) is
//! the console's `sso` module.

use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::signature::{self, UnparsedPublicKey};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use bytes::Bytes;
use http::{header, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use outpost_protocol::encoding::{constant_time_eq, sha256_hex};
use serde::Deserialize;

use crate::auth::access;
use crate::config::{ClientSecret, OidcConfig, OidcMapBy};
use crate::http::pct;
use crate::store::access::{AccessStore, UserRecord};
use crate::store::backend::Backend;

/// Clock skew allowed on `exp` and `iat` (seconds).
const LEEWAY_SECS: i64 = 60;
/// The provider's discovery document and keys are read again after this long.
const META_TTL: Duration = Duration::from_secs(600);
/// Largest answer read from the provider.
const MAX_PROVIDER_BODY: usize = 256 * 1024;
const TIMEOUT: Duration = Duration::from_secs(10);

/// Why a single sign-on failed (shown to the user and in the audit log; no secrets).
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    /// The configured CA file or secret file cannot be read.
    #[error("{0}")]
    Setup(String),
    /// The provider cannot be reached or answered something unusable.
    #[error("the identity provider: {0}")]
    Provider(String),
    /// The sign-in was refused.
    #[error("{0}")]
    Refused(String),
}

#[derive(Debug, Clone, Deserialize)]
struct Discovery {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
    #[serde(default)]
    userinfo_endpoint: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
struct Jwk {
    kty: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    alg: Option<String>,
    #[serde(default, rename = "use")]
    use_: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
    #[serde(default)]
    crv: Option<String>,
    #[serde(default)]
    x: Option<String>,
    #[serde(default)]
    y: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Jwks {
    keys: Vec<Jwk>,
}

struct Meta {
    discovery: Discovery,
    keys: Vec<Jwk>,
    fetched: tokio::time::Instant,
}

/// The single sign-on state of one control-plane process.
pub struct Oidc {
    cfg: OidcConfig,
    secret: ClientSecret,
    tls: Arc<rustls::ClientConfig>,
    meta: tokio::sync::Mutex<Option<Meta>>,
}

impl std::fmt::Debug for Oidc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Oidc").field("issuer", &self.cfg.issuer).finish_non_exhaustive()
    }
}

/// Who the identity is: from the ID token, or from UserInfo for the same subject.
#[derive(Debug, Default, Deserialize)]
struct Profile {
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    email_verified: Option<bool>,
    #[serde(default)]
    preferred_username: Option<String>,
}

/// A UserInfo answer.
#[derive(Debug, Deserialize)]
struct UserInfo {
    sub: String,
    #[serde(flatten)]
    profile: Profile,
}

/// The claims of an ID token this module reads.
#[derive(Debug, Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    aud: Aud,
    exp: i64,
    iat: i64,
    #[serde(default)]
    nonce: Option<String>,
    #[serde(default)]
    azp: Option<String>,
    #[serde(flatten)]
    profile: Profile,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Aud {
    One(String),
    Many(Vec<String>),
}

impl Oidc {
    /// Reads the secret and CA files named by `cfg`.
    pub fn new(cfg: &OidcConfig) -> Result<Self, OidcError> {
        let secret = match (&cfg.client_secret, &cfg.client_secret_file) {
            (Some(s), _) => s.clone(),
            (None, Some(path)) => {
                let text = outpost_common::fsutil::read_capped_file(path, 64 * 1024)
                    .map_err(|e| OidcError::Setup(format!("oidc.client_secret_file: {e}")))?;
                let text = String::from_utf8(text)
                    .map_err(|_| OidcError::Setup(format!("oidc.client_secret_file {}: not UTF-8", path.display())))?;
                ClientSecret::new(text.trim().to_owned())
            }
            (None, None) => return Err(OidcError::Setup("oidc: no client secret".into())),
        };
        let ca = cfg.ca_file.clone().unwrap_or_else(|| "/etc/ssl/certs/ca-certificates.crt".into());
        let mut roots = rustls::RootCertStore::empty();
        let pem = outpost_common::fsutil::read_capped_file(&ca, 16 * 1024 * 1024)
            .map_err(|e| OidcError::Setup(format!("oidc.ca_file {}: {e}", ca.display())))?;
        use rustls_pki_types::pem::PemObject;
        for cert in rustls_pki_types::CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| OidcError::Setup(format!("oidc.ca_file {}: {e}", ca.display())))?;
            // A bundle may hold certificates this TLS stack cannot use; skip those.
            let _ = roots.add(cert);
        }
        if roots.is_empty() {
            return Err(OidcError::Setup(format!("oidc.ca_file {}: no CA certificate in it", ca.display())));
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| OidcError::Setup(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self { cfg: cfg.clone(), secret, tls: Arc::new(tls), meta: tokio::sync::Mutex::new(None) })
    }

    /// The name on the sign-in button.
    pub fn display_name(&self) -> &str {
        self.cfg.display_name.as_deref().unwrap_or("single sign-on")
    }

    /// The provider's endpoints and keys, read again after [`META_TTL`] or when `refresh`.
    async fn meta(&self, refresh: bool) -> Result<(Discovery, Vec<Jwk>), OidcError> {
        let mut guard = self.meta.lock().await;
        if let Some(m) = guard.as_ref() {
            if !refresh && m.fetched.elapsed() < META_TTL {
                return Ok((m.discovery.clone(), m.keys.clone()));
            }
        }
        let url = format!("{}/.well-known/openid-configuration", self.cfg.issuer.trim_end_matches('/'));
        let (status, body) = self.fetch(Method::GET, &url, None, None).await?;
        if !status.is_success() {
            return Err(OidcError::Provider(format!("{url} answered {status}")));
        }
        let discovery: Discovery =
            serde_json::from_slice(&body).map_err(|e| OidcError::Provider(format!("discovery document {url}: {e}")))?;
        if discovery.issuer != self.cfg.issuer {
            return Err(OidcError::Provider(format!(
                "discovery names issuer {:?}, but oidc.issuer is {:?}",
                discovery.issuer, self.cfg.issuer
            )));
        }
        for (field, u) in [
            ("authorization_endpoint", &discovery.authorization_endpoint),
            ("token_endpoint", &discovery.token_endpoint),
            ("jwks_uri", &discovery.jwks_uri),
        ] {
            if !u.starts_with("https://") {
                return Err(OidcError::Provider(format!("{field} is not https: {u}")));
            }
        }
        let (status, body) = self.fetch(Method::GET, &discovery.jwks_uri, None, None).await?;
        if !status.is_success() {
            return Err(OidcError::Provider(format!("{} answered {status}", discovery.jwks_uri)));
        }
        let jwks: Jwks = serde_json::from_slice(&body).map_err(|e| OidcError::Provider(format!("JWKS: {e}")))?;
        *guard =
            Some(Meta { discovery: discovery.clone(), keys: jwks.keys.clone(), fetched: tokio::time::Instant::now() });
        Ok((discovery, jwks.keys))
    }

    /// One HTTPS request to the provider; the answer's status and body (capped).
    #[allow(clippy::disallowed_methods)] // `collect` runs on a `Limited` body
    async fn fetch(
        &self,
        method: Method,
        url: &str,
        body: Option<String>,
        auth: Option<String>,
    ) -> Result<(StatusCode, Bytes), OidcError> {
        let err = |m: String| OidcError::Provider(format!("{url}: {m}"));
        let uri: http::Uri = url.parse().map_err(|e: http::uri::InvalidUri| err(e.to_string()))?;
        if uri.scheme_str() != Some("https") {
            return Err(err("only https is used".into()));
        }
        let host = uri.host().ok_or_else(|| err("no host".into()))?.trim_matches(['[', ']']).to_owned();
        let port = uri.port_u16().unwrap_or(443);
        let authority = uri.authority().map(|a| a.as_str().to_owned()).unwrap_or_default();
        let work = async {
            let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await.map_err(|e| err(e.to_string()))?;
            let name = rustls_pki_types::ServerName::try_from(host.clone()).map_err(|e| err(e.to_string()))?;
            let tls = tokio_rustls::TlsConnector::from(Arc::clone(&self.tls))
                .connect(name, tcp)
                .await
                .map_err(|e| err(format!("TLS: {e}")))?;
            let (mut sender, conn) =
                hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.map_err(|e| err(e.to_string()))?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            let path = uri.path_and_query().map_or("/", http::uri::PathAndQuery::as_str);
            let mut req = Request::builder()
                .method(method)
                .uri(path)
                .header(header::HOST, authority)
                .header(header::ACCEPT, "application/json");
            if let Some(a) = &auth {
                req = req.header(header::AUTHORIZATION, a);
            }
            if body.is_some() {
                req = req.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
            }
            let req = req.body(Full::new(Bytes::from(body.unwrap_or_default()))).map_err(|e| err(e.to_string()))?;
            let res = sender.send_request(req).await.map_err(|e| err(e.to_string()))?;
            let status = res.status();
            let bytes = Limited::new(res.into_body(), MAX_PROVIDER_BODY)
                .collect()
                .await
                .map_err(|e| err(format!("reading the answer: {e}")))?
                .to_bytes();
            Ok((status, bytes))
        };
        tokio::time::timeout(TIMEOUT, work).await.map_err(|_| err("timed out".into()))?
    }

    /// Verifies an ID token against the provider's keys and this client, and returns
    /// its claims.
    async fn verify(&self, id_token: &str, nonce: &str, now: i64) -> Result<Claims, OidcError> {
        let refused = |m: &str| OidcError::Refused(format!("ID token refused: {m}"));
        let mut parts = id_token.split('.');
        let (Some(h64), Some(p64), Some(s64), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(refused("not a signed JWT"));
        };
        #[derive(Deserialize)]
        struct Header {
            alg: String,
            #[serde(default)]
            kid: Option<String>,
        }
        let header: Header = URL_SAFE_NO_PAD
            .decode(h64)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| refused("bad header"))?;
        let sig = URL_SAFE_NO_PAD.decode(s64).map_err(|_| refused("bad signature encoding"))?;
        let signed = format!("{h64}.{p64}");
        let (_, mut keys) = self.meta(false).await?;
        let find = |keys: &[Jwk]| -> Vec<Jwk> {
            keys.iter()
                .filter(|k| k.use_.as_deref().is_none_or(|u| u == "sig"))
                .filter(|k| header.kid.is_none() || k.kid == header.kid)
                .filter(|k| k.alg.as_deref().is_none_or(|a| a == header.alg))
                .cloned()
                .collect()
        };
        let mut candidates = find(&keys);
        if candidates.is_empty() {
            // The provider may have rotated its keys since we read them.
            keys = self.meta(true).await?.1;
            candidates = find(&keys);
        }
        if candidates.is_empty() {
            return Err(refused("no key of the provider matches its kid and alg"));
        }
        if !candidates.iter().any(|k| verify_sig(&header.alg, k, signed.as_bytes(), &sig)) {
            return Err(refused("bad signature"));
        }
        let claims: Claims = URL_SAFE_NO_PAD
            .decode(p64)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| refused("bad claims"))?;
        if claims.iss != self.cfg.issuer {
            return Err(refused("wrong issuer"));
        }
        let audiences = match &claims.aud {
            Aud::One(a) => vec![a.as_str()],
            Aud::Many(v) => v.iter().map(String::as_str).collect(),
        };
        if !audiences.contains(&self.cfg.client_id.as_str()) {
            return Err(refused("wrong audience (not issued to this console)"));
        }
        if audiences.len() > 1 && claims.azp.as_deref() != Some(self.cfg.client_id.as_str()) {
            return Err(refused("several audiences and azp is not this console"));
        }
        if claims.exp + LEEWAY_SECS < now {
            return Err(refused("expired"));
        }
        if claims.iat > now + LEEWAY_SECS {
            return Err(refused("issued in the future"));
        }
        match &claims.nonce {
            Some(n) if constant_time_eq(n.as_bytes(), nonce.as_bytes()) => {}
            _ => return Err(refused("wrong nonce (not the answer to this sign-in)")),
        }
        Ok(claims)
    }
}

/// Checks a JWS signature with one JWK; only RS256, ES256 and EdDSA (Ed25519).
fn verify_sig(alg: &str, k: &Jwk, msg: &[u8], sig: &[u8]) -> bool {
    let d = |v: &Option<String>| v.as_deref().and_then(|s| URL_SAFE_NO_PAD.decode(s).ok());
    match (alg, k.kty.as_str()) {
        ("RS256", "RSA") => match (d(&k.n), d(&k.e)) {
            (Some(n), Some(e)) => signature::RsaPublicKeyComponents { n: &n, e: &e }
                .verify(&signature::RSA_PKCS1_2048_8192_SHA256, msg, sig)
                .is_ok(),
            _ => false,
        },
        ("ES256", "EC") if k.crv.as_deref() == Some("P-256") => match (d(&k.x), d(&k.y)) {
            (Some(x), Some(y)) if x.len() == 32 && y.len() == 32 => {
                let mut point = vec![4u8];
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point).verify(msg, sig).is_ok()
            }
            _ => false,
        },
        ("EdDSA", "OKP") if k.crv.as_deref() == Some("Ed25519") => match d(&k.x) {
            Some(x) => UnparsedPublicKey::new(&signature::ED25519, x).verify(msg, sig).is_ok(),
            None => false,
        },
        _ => false,
    }
}

impl Oidc {
    /// The issuer this control plane trusts (`oidc.issuer`).
    pub fn issuer(&self) -> &str {
        &self.cfg.issuer
    }

    /// Where a sign-in sends the browser: the provider's authorization endpoint, asked for
    /// a code with this sign-in's `state`, `nonce` and PKCE `challenge` (S256).
    pub async fn authorization_url(&self, state: &str, nonce: &str, challenge: &str) -> Result<String, OidcError> {
        let (discovery, _) = self.meta(false).await?;
        let mut scope = String::from("openid");
        for s in self.cfg.scopes.iter().filter(|s| s.as_str() != "openid") {
            scope.push(' ');
            scope.push_str(s);
        }
        let sep = if discovery.authorization_endpoint.contains('?') { '&' } else { '?' };
        Ok(format!(
            "{}{sep}response_type=code&client_id={}&redirect_uri={}&scope={}&state={state}&nonce={nonce}\
             &code_challenge={challenge}&code_challenge_method=S256",
            discovery.authorization_endpoint,
            pct(&self.cfg.client_id),
            pct(&self.cfg.redirect_uri),
            pct(&scope),
        ))
    }

    /// The user the provider's answer signs in: exchanges `code` (with the PKCE
    /// `verifier`) for an ID token, verifies it (with the sign-in's `nonce`), reads
    /// UserInfo when the ID token has no profile, and finds or creates the user; a
    /// disabled user is refused.
    pub async fn sign_in(
        &self,
        store: &Backend,
        code: &str,
        verifier: &str,
        nonce: &str,
        now: i64,
    ) -> Result<UserRecord, OidcError> {
        let (discovery, _) = self.meta(false).await?;
        let form = format!(
            "grant_type=authorization_code&code={}&redirect_uri={}&code_verifier={}",
            pct(code),
            pct(&self.cfg.redirect_uri),
            pct(verifier)
        );
        // client_secret_basic: both parts form-encoded, then Basic.
        let basic =
            format!("Basic {}", STANDARD.encode(format!("{}:{}", pct(&self.cfg.client_id), pct(self.secret.expose()))));
        let (status, body) = self.fetch(Method::POST, &discovery.token_endpoint, Some(form), Some(basic)).await?;
        #[derive(Deserialize)]
        struct TokenAnswer {
            #[serde(default)]
            id_token: Option<String>,
            #[serde(default)]
            access_token: Option<String>,
            #[serde(default)]
            error: Option<String>,
        }
        let answer: TokenAnswer = serde_json::from_slice(&body)
            .map_err(|_| OidcError::Provider(format!("the token endpoint answered {status} without JSON")))?;
        if !status.is_success() {
            return Err(OidcError::Refused(format!(
                "the token endpoint refused the code: {}",
                answer.error.unwrap_or_else(|| status.to_string())
            )));
        }
        let id_token = answer.id_token.ok_or_else(|| OidcError::Provider("no id_token in the token answer".into()))?;
        let mut claims = self.verify(&id_token, nonce, now).await?;
        // A conforming provider may keep profile claims out of the ID token and answer them
        // at the UserInfo endpoint, for the same subject only.
        if claims.profile.email.is_none() {
            if let (Some(url), Some(token)) = (&discovery.userinfo_endpoint, &answer.access_token) {
                let (status, body) = self.fetch(Method::GET, url, None, Some(format!("Bearer {token}"))).await?;
                if !status.is_success() {
                    return Err(OidcError::Provider(format!("the UserInfo endpoint answered {status}")));
                }
                let info: UserInfo =
                    serde_json::from_slice(&body).map_err(|e| OidcError::Provider(format!("UserInfo: {e}")))?;
                if info.sub != claims.sub {
                    return Err(OidcError::Refused("UserInfo is for another subject than the ID token".into()));
                }
                let username = claims.profile.preferred_username.take();
                claims.profile = info.profile;
                claims.profile.preferred_username = username.or(claims.profile.preferred_username.take());
            }
        }
        let user = self.map_user(store, &claims, now).await?;
        if user.disabled_at.is_some() {
            return Err(OidcError::Refused(format!("user {} is disabled", user.name)));
        }
        Ok(user)
    }

    /// Finds (or, with `default_role`, creates) the user of a verified identity.
    async fn map_user(&self, store: &Backend, c: &Claims, now: i64) -> Result<UserRecord, OidcError> {
        let store_err = |e: crate::store::StoreError| OidcError::Provider(format!("store: {e}"));
        let issuer = self.cfg.issuer.clone();
        if let Some(u) = store.oidc_user(issuer.clone(), c.sub.clone()).await.map_err(store_err)? {
            return Ok(u);
        }
        let name = match self.cfg.map_by {
            OidcMapBy::Email => {
                let email = c.profile.email.as_deref().ok_or_else(|| {
                    OidcError::Refused("the ID token has no email claim (ask for the email scope)".into())
                })?;
                if c.profile.email_verified != Some(true) {
                    return Err(OidcError::Refused(format!(
                        "the e-mail address {email} is not verified by the provider"
                    )));
                }
                email.to_ascii_lowercase()
            }
            OidcMapBy::Subject => {
                // A readable name when the provider gives one that is free (lower-cased, and
                // never the e-mail, which may be unverified), else one derived from the subject.
                let wanted = c.profile.preferred_username.clone().unwrap_or_default().to_ascii_lowercase();
                let free = access::validate_principal_name(&wanted).is_ok()
                    && store.user_by_name(wanted.clone()).await.map_err(store_err)?.is_none();
                if free {
                    wanted
                } else {
                    format!("sso-{}", &sha256_hex(format!("{issuer}\n{}", c.sub).as_bytes())[..16])
                }
            }
        };
        access::validate_principal_name(&name).map_err(|m| OidcError::Refused(format!("user name {name:?}: {m}")))?;
        let user = match store.user_by_name(name.clone()).await.map_err(store_err)? {
            // An existing user is claimed by e-mail only when an admin made them for single
            // sign-on (no password) and no other identity of this provider holds them: a
            // re-assigned mailbox cannot take over a linked or a local account.
            Some(u) if self.cfg.map_by == OidcMapBy::Email => {
                if u.password_hash.is_some() {
                    return Err(OidcError::Refused(format!(
                        "user {name} signs in with a password; an admin must remove it before single sign-on can claim the account"
                    )));
                }
                if store.oidc_linked(u.id.clone(), issuer.clone()).await.map_err(store_err)? {
                    return Err(OidcError::Refused(format!(
                        "user {name} is already linked to another identity of this provider"
                    )));
                }
                u
            }
            Some(_) => return Err(OidcError::Refused(format!("user name {name} is taken"))),
            None => {
                let Some(role) = self.cfg.default_role else {
                    return Err(OidcError::Refused(format!(
                        "there is no Outpost user {name}; ask an admin to add one (or to set oidc.default_role)"
                    )));
                };
                let u = UserRecord {
                    id: access::new_id(),
                    name: name.clone(),
                    role,
                    password_hash: None,
                    created_at: now,
                    disabled_at: None,
                    last_sign_in: None,
                };
                if !store.create_user(u.clone()).await.map_err(store_err)? {
                    return Err(OidcError::Refused(format!("user name {name} was taken meanwhile; try again")));
                }
                tracing::info!(user = %name, role = role.as_str(), "Created a user at their first single sign-on.");
                u
            }
        };
        if !store.link_oidc(issuer, c.sub.clone(), user.id.clone(), now).await.map_err(store_err)? {
            return Err(OidcError::Refused("this identity was linked to a user meanwhile; sign in again".into()));
        }
        Ok(user)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwk_ed(x: &[u8]) -> Jwk {
        Jwk {
            kty: "OKP".into(),
            kid: Some("k1".into()),
            alg: None,
            use_: None,
            n: None,
            e: None,
            crv: Some("Ed25519".into()),
            x: Some(URL_SAFE_NO_PAD.encode(x)),
            y: None,
        }
    }

    #[test]
    fn signatures_verify_only_with_their_key_and_algorithm() {
        use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
        let kp = Ed25519KeyPair::generate().expect("key");
        let other = Ed25519KeyPair::generate().expect("key");
        let msg = b"header.payload";
        let sig = kp.sign(msg);
        let k = jwk_ed(kp.public_key().as_ref());
        assert!(verify_sig("EdDSA", &k, msg, sig.as_ref()));
        assert!(!verify_sig("EdDSA", &k, b"header.payloaX", sig.as_ref()));
        assert!(!verify_sig("EdDSA", &jwk_ed(other.public_key().as_ref()), msg, sig.as_ref()));
        // The header's alg must fit the key type: no HS256, no "none", no RS256 with an OKP key.
        for alg in ["none", "HS256", "RS256", "ES256"] {
            assert!(!verify_sig(alg, &k, msg, sig.as_ref()), "{alg}");
        }
    }
}
