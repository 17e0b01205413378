//! One database connection in agent.yaml (`connections.NAME`) and the checks of its
//! fields against its kind.

use std::path::PathBuf;

use serde::Deserialize;

use super::{Bounded, MAX_CACHE_AGE_SECS};

/// The kind of database behind a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionKind {
    /// A SQLite file, opened read-only.
    Sqlite,
    /// A PostgreSQL server; every query runs in `BEGIN READ ONLY`.
    Postgres,
    /// A MySQL or MariaDB server; every query runs in `START TRANSACTION READ ONLY`.
    Mysql,
}

/// TLS to a database server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DbTls {
    /// TLS, with the server's certificate verified against `ca_file` and its name
    /// against `host` (libpq's `sslmode=verify-full`).
    #[default]
    VerifyFull,
    /// No TLS: credentials and rows cross the network in clear. For a database on the
    /// same host or a private link only.
    Disable,
}

/// A database connection. A flat struct rather than a tagged enum, so that the parser
/// reports a mistyped field at its own line.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectionConfig {
    /// The database kind.
    pub kind: ConnectionKind,
    /// SQLite: path of the database file; relative paths are inside `state_dir`.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// PostgreSQL, MySQL: host name or address of the server.
    #[serde(default)]
    pub host: Option<String>,
    /// PostgreSQL, MySQL: port (default 5432, 3306).
    #[serde(default)]
    pub port: Option<u16>,
    /// PostgreSQL, MySQL: database name.
    #[serde(default)]
    pub database: Option<String>,
    /// PostgreSQL, MySQL: user name (give it read-only grants; see docs/DATABASES.md).
    #[serde(default)]
    pub user: Option<String>,
    /// Name of the vault entry holding the password (`outpost-agent credentials set
    /// NAME`); unset for servers that authenticate otherwise.
    #[serde(default)]
    pub password_credential: Option<String>,
    /// TLS to the server: `verify_full` (default) or `disable`.
    #[serde(default)]
    pub tls: DbTls,
    /// PEM file of the CAs that may sign the server's certificate (default: the
    /// system's bundle, /etc/ssl/certs/ca-certificates.crt).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Connections kept open to this database at most (also the queries run on it at once).
    #[serde(default)]
    pub pool_size: Option<Bounded<1, 64>>,
    /// PostgreSQL, MySQL: use this connection even when its database role holds
    /// privileges beyond reading (superuser, server files or programs, signalling other
    /// sessions, creating roles, any write grant; docs/DATABASES.md). Default false: such
    /// a role is refused when each session opens and its jobs fail with
    /// `privileged_role`. `outpost-agent config audit` reports true as a HIGH finding.
    #[serde(default)]
    pub allow_privileged: bool,
    /// SQLite: build the bundled sample data set at `path` if the file does not exist.
    #[serde(default)]
    pub sample: bool,
    /// The oldest cached result of this connection a job may use, seconds; replaces
    /// `cache.max_age_secs`. 0: results of this connection are never cached.
    #[serde(default)]
    pub cache_max_age_secs: Option<Bounded<0, MAX_CACHE_AGE_SECS>>,
    /// Statement timeout for this connection, seconds; replaces
    /// `limits.query_timeout_secs`. A job may ask for less, never more.
    #[serde(default)]
    pub query_timeout_secs: Option<Bounded<1, 3600>>,
    /// This connection's egress policy: fields set here replace the top-level `egress`
    /// ones; `mask` rules are added to the top-level ones.
    #[serde(default)]
    pub egress: Option<crate::policy::EgressSection>,
    /// Never accepted: a password in this file is an error at its line. Secrets go into
    /// the vault (`outpost-agent credentials set NAME`).
    #[serde(default)]
    #[schemars(skip)]
    pub password: Option<PlaintextRefused>,
}

/// Default pool size of a server connection.
pub const DEFAULT_POOL_SIZE: u64 = 4;

impl ConnectionConfig {
    /// Which fields each kind needs and refuses; `(field, message)` on the first problem.
    pub(super) fn check(&self, name: &str) -> Result<(), (&'static str, String)> {
        let server_fields = [
            ("host", self.host.is_some()),
            ("port", self.port.is_some()),
            ("database", self.database.is_some()),
            ("user", self.user.is_some()),
            ("password_credential", self.password_credential.is_some()),
            ("ca_file", self.ca_file.is_some()),
            ("pool_size", self.pool_size.is_some()),
            ("allow_privileged", self.allow_privileged),
        ];
        match self.kind {
            ConnectionKind::Sqlite => {
                if self.path.is_none() {
                    return Err(("path", format!("a sqlite connection needs the database file's path ({name})")));
                }
                if let Some((field, _)) = server_fields.iter().find(|(_, set)| *set) {
                    return Err((field, "not used by a sqlite connection".into()));
                }
            }
            ConnectionKind::Postgres | ConnectionKind::Mysql => {
                for (field, value) in [("host", &self.host), ("database", &self.database), ("user", &self.user)] {
                    if value.as_deref().is_none_or(str::is_empty) {
                        return Err((field, "required for a database server connection".into()));
                    }
                }
                if self.path.is_some() || self.sample {
                    return Err(("path", "path and sample are for sqlite connections".into()));
                }
                if let Some(c) = &self.password_credential {
                    outpost_protocol::job::validate_name(c).map_err(|e| ("password_credential", e.to_string()))?;
                }
                if self.tls == DbTls::Disable && self.ca_file.is_some() {
                    return Err(("ca_file", "has no use with tls: disable".into()));
                }
            }
        }
        Ok(())
    }
}

/// A plaintext secret in agent.yaml: refused while parsing, so the error names its line.
#[derive(Debug, Clone)]
pub enum PlaintextRefused {}

impl<'de> Deserialize<'de> for PlaintextRefused {
    fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Err(serde::de::Error::custom(format!(
            "{}: a password in agent.yaml is readable by everyone who can read the config and ends up in \
             backups; store it in the vault with `outpost-agent credentials set CONNECTION` instead",
            outpost_common::yamlcfg::SECRET_REFUSED
        )))
    }
}
