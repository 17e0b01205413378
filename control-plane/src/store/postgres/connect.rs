//! How a replica reaches its PostgreSQL database: the options of control-plane.yaml, the
//! URL's checks and its redaction for logs, and TLS (on by default for a server that is
//! not on this machine, always verified).

use std::str::FromStr;
use std::sync::Arc;

use crate::store::StoreError;

/// How to reach the database, from `control-plane.yaml`.
#[derive(Clone)]
pub struct PgOptions {
    /// `postgres://…` connection URL (its password, if any, is a secret).
    pub url: String,
    /// A file holding the password (e.g. a systemd credential); overrides the URL's.
    pub password_file: Option<std::path::PathBuf>,
    /// PEM bundle of CAs trusted for the server's certificate when the URL asks for TLS
    /// (`sslmode=require`); default: the system bundle.
    pub ca_file: Option<std::path::PathBuf>,
    /// Most connections this replica opens (besides the one that listens).
    pub max_connections: usize,
}

impl std::fmt::Debug for PgOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgOptions")
            .field("url", &redact_url(&self.url))
            .field("password_file", &self.password_file)
            .field("ca_file", &self.ca_file)
            .field("max_connections", &self.max_connections)
            .finish()
    }
}

/// The URL with any password replaced by `***`, for logs and errors.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return "<not a URL>".into() };
    let (authority, tail) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// Why a store URL was refused; the URL in it is redacted ([`redact_url`]).
#[derive(Debug, thiserror::Error)]
pub enum UrlError {
    /// Neither `sqlite` nor a `postgres://` (or `postgresql://`) URL.
    #[error("must be `sqlite` or a postgres:// URL")]
    NotPostgres,
    /// The driver could not parse it. The text repeats the driver's words on purpose:
    /// `config check` and the logs print this error alone, and said it this way before
    /// the source was kept (chain printers skip a repeated cause).
    #[error("{url}: {source}")]
    Unparsable {
        /// The URL, password replaced.
        url: String,
        /// The driver's error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// It names no host.
    #[error("{url}: no host")]
    NoHost {
        /// The URL, password replaced.
        url: String,
    },
    /// It names no database.
    #[error("{url}: no database name (postgres://user@host/DATABASE)")]
    NoDatabase {
        /// The URL, password replaced.
        url: String,
    },
}

/// Parses and checks a store URL; the error names what is wrong without the password.
pub fn parse_url(url: &str) -> Result<tokio_postgres::Config, UrlError> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(UrlError::NotPostgres);
    }
    let cfg = tokio_postgres::Config::from_str(url)
        .map_err(|source| UrlError::Unparsable { url: redact_url(url), source })?;
    if cfg.get_hosts().is_empty() {
        return Err(UrlError::NoHost { url: redact_url(url) });
    }
    if cfg.get_dbname().is_none() {
        return Err(UrlError::NoDatabase { url: redact_url(url) });
    }
    Ok(cfg)
}

/// The URL's `sslmode`, or when it names none: `disable` for a server on this machine
/// (loopback or a Unix socket) and `require` for any other, so that a store reached over
/// the network is never in clear by default. With TLS the server's certificate is
/// always verified (against `store_ca_file` or the system bundle).
pub(super) fn default_ssl_mode(url: &str, cfg: &mut tokio_postgres::Config) {
    if url.contains("sslmode=") {
        return;
    }
    let local = cfg.get_hosts().iter().all(|h| match h {
        tokio_postgres::config::Host::Tcp(name) => {
            name == "localhost" || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
        }
        tokio_postgres::config::Host::Unix(_) => true,
    });
    cfg.ssl_mode(if local {
        tokio_postgres::config::SslMode::Disable
    } else {
        tokio_postgres::config::SslMode::Require
    });
}

pub(super) fn tls_config(ca_file: Option<&std::path::Path>) -> Result<rustls::ClientConfig, StoreError> {
    use rustls_pki_types::pem::PemObject;
    let ca = ca_file.unwrap_or(std::path::Path::new("/etc/ssl/certs/ca-certificates.crt"));
    let setup = |m: String| super::postgres_error(format!("store_ca_file {}: {m}", ca.display()));
    let mut roots = rustls::RootCertStore::empty();
    match outpost_common::fsutil::read_capped_file(ca, 16 * 1024 * 1024) {
        Ok(pem) => {
            for cert in rustls_pki_types::CertificateDer::pem_slice_iter(&pem) {
                // A bundle may hold certificates this TLS stack cannot use; skip those.
                let _ = roots.add(cert.map_err(|e| setup(e.to_string()))?);
            }
        }
        // Without a bundle, a server asking for TLS cannot be verified and is refused.
        Err(e) if ca_file.is_some() => return Err(setup(e.to_string())),
        Err(_) => {}
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| setup(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::{parse_url, UrlError};

    /// `config check` shows these words; the password never appears in them.
    #[test]
    fn a_refused_url_says_why_without_its_password() {
        assert!(matches!(parse_url("mysql://h/db"), Err(UrlError::NotPostgres)));
        let e = parse_url("postgres://ed:hunter2@db.example.com").expect_err("no database");
        assert_eq!(e.to_string(), "postgres://ed:***@db.example.com: no database name (postgres://user@host/DATABASE)");
        let e = parse_url("postgres://ed:hunter2@db.example.com/x?sslmode=sideways").expect_err("bad option");
        let text = e.to_string();
        assert!(text.starts_with("postgres://ed:***@db.example.com/x?sslmode=sideways: "), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(std::error::Error::source(&e).is_some(), "the driver's error is kept as the source");
        assert!(parse_url("postgres://ed@db.example.com/x").is_ok());
    }
}
