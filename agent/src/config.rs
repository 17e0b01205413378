//! `agent.yaml`: the agent's local config, which the customer's security team reads.
//!
//! It names the control plane, the state directory, the job-signing keys the agent
//! pins, the connections it offers and the limits every job runs within. It never holds
//! a credential. Parsing is strict: unknown fields, duplicate keys, `yes`/`no` as
//! booleans and out-of-range numbers are errors naming the file, line and field.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use outpost_common::yamlcfg::{self, ConfigError};
use serde::Deserialize;

/// Default config path of an installed agent.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/outpost/agent.yaml";
/// The packaged state dir (the systemd unit's `StateDirectory=`).
pub const DEFAULT_STATE_DIR: &str = "/var/lib/outpost";

/// The `state_dir` a config file names, read leniently (unknown or invalid other fields
/// are ignored): where a running agent's control socket is, even when the file it would
/// reload is broken. The packaged state dir when the file names none or cannot be read.
pub fn state_dir_of(path: &Path) -> PathBuf {
    #[derive(Deserialize)]
    struct Only {
        state_dir: Option<PathBuf>,
    }
    let text = outpost_common::fsutil::read_capped_file(path, outpost_common::yamlcfg::MAX_CONFIG_LEN)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .unwrap_or_default();
    // A file broken elsewhere may still say it on a top-level line of its own.
    let line = || {
        text.lines().find_map(|l| l.strip_prefix("state_dir:")).map(|v| {
            // A comment after the value is not part of it.
            let v = v.split(" #").next().unwrap_or_default();
            v.trim().trim_matches(['"', '\'']).to_owned()
        })
    };
    serde_saphyr::from_str::<Only>(&text)
        .ok()
        .and_then(|o| o.state_dir)
        .or_else(|| line().filter(|v| !v.is_empty()).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR))
}

/// Default concurrent jobs: enough to overlap a slow query with quick ones, small enough
/// not to crowd the customer's database.
pub const DEFAULT_MAX_CONCURRENT_JOBS: u64 = 4;
/// Default cap on rows read per job; rows past it are not read (result marked truncated).
pub const DEFAULT_MAX_ROWS: u64 = 10_000;
/// Default longest job lifetime accepted (`expires_at - issued_at`): 10 minutes.
pub const DEFAULT_MAX_JOB_LIFETIME_SECS: u64 = 600;
/// Default clock-skew allowance between the agent and the control plane: 60 s.
pub const DEFAULT_CLOCK_SKEW_SECS: u64 = 60;
/// Default statement timeout.
pub const DEFAULT_QUERY_TIMEOUT_SECS: u64 = 30;
/// Default long-poll duration; below common proxy idle timeouts.
pub const DEFAULT_LONG_POLL_SECS: u64 = 25;
/// Default cap on the age of a cached result a job may use: 1 hour.
pub const DEFAULT_CACHE_MAX_AGE_SECS: u64 = 3600;
/// Default disk space for cached results: 1 GiB.
pub const DEFAULT_CACHE_MAX_BYTES: u64 = 1 << 30;
/// Longest cache age policy can allow: 7 days.
pub const MAX_CACHE_AGE_SECS: u64 = 7 * 86_400;

/// An integer that must lie in `MIN..=MAX`; the range is part of the type, so a bad
/// value is reported by the parser with its line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(try_from = "u64")]
pub struct Bounded<const MIN: u64, const MAX: u64>(u64);

impl<const MIN: u64, const MAX: u64> TryFrom<u64> for Bounded<MIN, MAX> {
    type Error = String;
    fn try_from(v: u64) -> Result<Self, String> {
        if (MIN..=MAX).contains(&v) {
            Ok(Self(v))
        } else {
            Err(format!("must be between {MIN} and {MAX}, got {v}"))
        }
    }
}

impl<const MIN: u64, const MAX: u64> Bounded<MIN, MAX> {
    /// The value.
    pub fn get(self) -> u64 {
        self.0
    }
}

/// A connection name: short, lower-case, safe in logs and paths.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Deserialize, schemars::JsonSchema)]
#[serde(try_from = "String")]
pub struct ConnectionName(String);

impl TryFrom<String> for ConnectionName {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        outpost_protocol::job::validate_name(&s).map_err(|e| format!("connection name {s:?}: {e}"))?;
        Ok(Self(s))
    }
}

impl ConnectionName {
    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The whole file.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// Directory for the agent's key, certificates, audit log and sample data (0700).
    pub state_dir: PathBuf,
    /// How to reach the control plane.
    #[serde(default, deserialize_with = "yamlcfg::null_as_default")]
    #[schemars(with = "Option<ControlPlaneSection>")]
    pub control_plane: ControlPlaneSection,
    /// Job-signing public keys pinned here. They are trusted whatever the control plane
    /// says; with `key_trust: pinned_only` they are the only keys trusted.
    #[serde(default, deserialize_with = "yamlcfg::null_as_default")]
    #[schemars(with = "Option<Vec<TrustedKey>>")]
    pub trusted_keys: Vec<TrustedKey>,
    /// Where job-signing keys come from: `learn` (default) or `pinned_only`.
    #[serde(default)]
    pub key_trust: KeyTrustMode,
    /// Databases this agent may query, by name.
    #[serde(default, deserialize_with = "yamlcfg::null_as_default")]
    #[schemars(with = "Option<BTreeMap<ConnectionName, ConnectionConfig>>")]
    pub connections: BTreeMap<ConnectionName, ConnectionConfig>,
    /// Bounds on every job.
    #[serde(default, deserialize_with = "yamlcfg::null_as_default")]
    #[schemars(with = "Option<Limits>")]
    pub limits: Limits,
    /// The local audit log.
    #[serde(default, deserialize_with = "yamlcfg::null_as_default")]
    #[schemars(with = "Option<AuditSection>")]
    pub audit: AuditSection,
    /// The credentials vault's master key.
    #[serde(default, deserialize_with = "yamlcfg::null_as_default")]
    #[schemars(with = "Option<VaultSection>")]
    pub vault: VaultSection,
    /// An HTTP `CONNECT` proxy to the control plane.
    #[serde(default, deserialize_with = "yamlcfg::null_as_default")]
    #[schemars(with = "Option<ProxySection>")]
    pub proxy: ProxySection,
    /// The encrypted result cache.
    #[serde(default, deserialize_with = "yamlcfg::null_as_default")]
    #[schemars(with = "Option<CacheSection>")]
    pub cache: CacheSection,
    /// What may leave this network, for every connection (`connections.NAME.egress`
    /// changes it for one).
    #[serde(default, deserialize_with = "yamlcfg::null_as_default")]
    #[schemars(with = "Option<crate::policy::EgressSection>")]
    pub egress: crate::policy::EgressSection,
    /// The local metrics endpoint (Prometheus text format); off unless `listen` is set.
    #[serde(default, deserialize_with = "yamlcfg::null_as_default")]
    #[schemars(with = "Option<MetricsSection>")]
    pub metrics: MetricsSection,
}

/// The local metrics endpoint: `GET /metrics` in the Prometheus text format (jobs by
/// verdict and outcome, durations, cache hits, bytes sent, rejections by reason, egress
/// decisions, reachability of the control plane). Counts only: no SQL, no names of
/// tables, no values.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    /// `address:port` to serve on, such as `127.0.0.1:9464`. Unset: no endpoint.
    #[serde(default)]
    pub listen: Option<std::net::SocketAddr>,
    /// Whether `listen` may be other than a loopback address. The endpoint has no
    /// authentication; leave false and let a local Prometheus agent scrape it.
    #[serde(default)]
    pub allow_non_loopback: bool,
}

/// The local, encrypted result cache (`state_dir/cache/`).
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CacheSection {
    /// The oldest cached result any job may use, seconds; a job asks for its own
    /// max-age and gets the smaller of the two. 0 turns the cache off. A connection's
    /// `cache_max_age_secs` replaces this for that connection.
    #[serde(default = "d_cache_age")]
    pub max_age_secs: Bounded<0, MAX_CACHE_AGE_SECS>,
    /// Disk space for cached results, bytes; the least recently used go first.
    #[serde(default = "d_cache_bytes")]
    pub max_bytes: Bounded<0, { 1 << 40 }>,
}

fn d_cache_age() -> Bounded<0, MAX_CACHE_AGE_SECS> {
    Bounded(DEFAULT_CACHE_MAX_AGE_SECS)
}
fn d_cache_bytes() -> Bounded<0, { 1 << 40 }> {
    Bounded(DEFAULT_CACHE_MAX_BYTES)
}

impl Default for CacheSection {
    fn default() -> Self {
        Self { max_age_secs: d_cache_age(), max_bytes: d_cache_bytes() }
    }
}

/// How to reach the control plane through an HTTP proxy.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProxySection {
    /// `http://host:port`; unset: `HTTPS_PROXY` when `from_environment` is true, else direct.
    #[serde(default)]
    pub url: Option<String>,
    /// User name for basic authentication.
    #[serde(default)]
    pub username: Option<String>,
    /// Vault entry holding the password (`outpost-agent credentials set NAME`).
    #[serde(default)]
    pub password_credential: Option<String>,
    /// Hosts reached directly, in addition to `NO_PROXY`: names (subdomains match),
    /// addresses, CIDR networks, `*`; each with an optional `:port`.
    #[serde(default, deserialize_with = "yamlcfg::null_as_default")]
    #[schemars(with = "Option<Vec<String>>")]
    pub no_proxy: Vec<String>,
    /// Whether `HTTPS_PROXY`/`https_proxy` and `NO_PROXY`/`no_proxy` are used.
    #[serde(default = "yes")]
    pub from_environment: bool,
}

impl Default for ProxySection {
    fn default() -> Self {
        Self { url: None, username: None, password_credential: None, no_proxy: Vec::new(), from_environment: true }
    }
}

fn yes() -> bool {
    true
}

/// Where the credentials vault's master key comes from.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VaultSection {
    /// `auto` (systemd credential `outpost-master-key`, else the key file), `systemd`,
    /// `key_file` or `passphrase` (Argon2id).
    #[serde(default)]
    pub master_key: crate::vault::MasterKeySource,
    /// The key file, absolute or relative to the state dir (default `master.key`).
    #[serde(default)]
    pub key_file: Option<PathBuf>,
}

/// Control-plane settings.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ControlPlaneSection {
    /// `host:port` of the agent listener; defaults to the address in the enrolment token.
    #[serde(default)]
    pub address: Option<String>,
}

/// Which job-signing keys the agent trusts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum KeyTrustMode {
    /// The keys received at enrolment, then those of key-set statements signed by a key
    /// already trusted; plus `trusted_keys`, which no statement can remove.
    #[default]
    Learn,
    /// Only `trusted_keys`; the enrolment's keys and every key-set update are refused.
    PinnedOnly,
}

/// A pinned job-signing key.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TrustedKey {
    /// Key id, `ed25519:` and 16 hex digits; must match the key.
    pub key_id: String,
    /// The 32-byte Ed25519 public key, base64.
    pub public_key: String,
}

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
    fn check(&self, name: &str) -> Result<(), (&'static str, String)> {
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

/// Bounds on every job, whatever the job asks for.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Jobs run at the same time.
    #[serde(default = "d_concurrency")]
    pub max_concurrent_jobs: Bounded<1, 64>,
    /// Rows read per job at most.
    #[serde(default = "d_rows")]
    pub max_rows: Bounded<1, 1_000_000>,
    /// Longest accepted job lifetime, seconds.
    #[serde(default = "d_lifetime")]
    pub max_job_lifetime_secs: Bounded<10, 86_400>,
    /// Clock-skew allowance, seconds.
    #[serde(default = "d_skew")]
    pub clock_skew_secs: Bounded<0, 600>,
    /// Statement timeout, seconds.
    #[serde(default = "d_timeout")]
    pub query_timeout_secs: Bounded<1, 3600>,
    /// Long-poll duration, seconds.
    #[serde(default = "d_poll")]
    pub long_poll_secs: Bounded<1, 300>,
}

fn d_concurrency() -> Bounded<1, 64> {
    Bounded(DEFAULT_MAX_CONCURRENT_JOBS)
}
fn d_rows() -> Bounded<1, 1_000_000> {
    Bounded(DEFAULT_MAX_ROWS)
}
fn d_lifetime() -> Bounded<10, 86_400> {
    Bounded(DEFAULT_MAX_JOB_LIFETIME_SECS)
}
fn d_skew() -> Bounded<0, 600> {
    Bounded(DEFAULT_CLOCK_SKEW_SECS)
}
fn d_timeout() -> Bounded<1, 3600> {
    Bounded(DEFAULT_QUERY_TIMEOUT_SECS)
}
fn d_poll() -> Bounded<1, 300> {
    Bounded(DEFAULT_LONG_POLL_SECS)
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_concurrent_jobs: d_concurrency(),
            max_rows: d_rows(),
            max_job_lifetime_secs: d_lifetime(),
            clock_skew_secs: d_skew(),
            query_timeout_secs: d_timeout(),
            long_poll_secs: d_poll(),
        }
    }
}

/// Audit log settings.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditSection {
    /// Path of the JSON-lines audit log; relative paths are inside `state_dir`. Default `audit.log`.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// Whether a job's record holds its SQL text (`full`, default) or only its SHA-256
    /// (`hash_only`). Either way the record names who asked (the signed requester).
    #[serde(default)]
    pub sql_text: SqlText,
    /// Whether a job's record holds its parameter values (default false: only their
    /// types, since a parameter may be a customer's identifier).
    #[serde(default)]
    pub param_values: bool,
}

/// How much of a job's SQL the audit log keeps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SqlText {
    /// The whole statement.
    #[default]
    Full,
    /// Only its SHA-256.
    HashOnly,
}

impl AgentConfig {
    /// Loads and checks `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let cfg: Self = yamlcfg::load_file(path)?;
        cfg.check(&path.display().to_string())?;
        Ok(cfg)
    }

    /// Parses YAML text (for tests and `config check` on stdin).
    pub fn parse(source: &str, text: &str) -> Result<Self, ConfigError> {
        let cfg: Self = yamlcfg::parse_str(source, text)?;
        cfg.check(source)?;
        Ok(cfg)
    }

    fn check(&self, source: &str) -> Result<(), ConfigError> {
        let invalid = |field: String, message: String| ConfigError::Invalid { path: source.to_owned(), field, message };
        let mut keys = outpost_protocol::TrustedKeys::new();
        for (i, k) in self.trusted_keys.iter().enumerate() {
            keys.insert_b64(&k.public_key, Some(&k.key_id)).map_err(|m| invalid(format!("trusted_keys[{i}]"), m))?;
        }
        if self.key_trust == KeyTrustMode::PinnedOnly && self.trusted_keys.is_empty() {
            return Err(invalid(
                "key_trust".into(),
                "pinned_only trusts only trusted_keys, and there are none; add the control plane's keys \
                 (`outpost-control-plane signing-key list`)"
                    .into(),
            ));
        }
        if let Some(url) = &self.proxy.url {
            crate::proxy::parse_url(url).map_err(|e| invalid("proxy.url".into(), e.0))?;
            if url.contains('@') {
                return Err(invalid(
                    "proxy.url".into(),
                    "put the user name in proxy.username and the password in the vault \
                     (proxy.password_credential), not in the URL"
                        .into(),
                ));
            }
        }
        for (i, e) in self.proxy.no_proxy.iter().enumerate() {
            crate::proxy::NoProxy::parse(e).map_err(|m| invalid(format!("proxy.no_proxy[{i}]"), m.0))?;
        }
        if let Some(c) = &self.proxy.password_credential {
            outpost_protocol::job::validate_name(c)
                .map_err(|e| invalid("proxy.password_credential".into(), e.to_string()))?;
            if self.proxy.username.is_none() {
                return Err(invalid("proxy.username".into(), "required with proxy.password_credential".into()));
            }
        }
        for (name, c) in &self.connections {
            c.check(name.as_str())
                .map_err(|(field, m)| invalid(format!("connections.{}.{field}", name.as_str()), m))?;
        }
        if let Some(addr) = self.metrics.listen {
            if !addr.ip().is_loopback() && !self.metrics.allow_non_loopback {
                return Err(invalid(
                    "metrics.listen".into(),
                    format!(
                        "{addr} is not a loopback address; the endpoint has no authentication. Use 127.0.0.1 \
                         (a local scraper), or set metrics.allow_non_loopback: true"
                    ),
                ));
            }
        }
        if let Some(addr) = &self.control_plane.address {
            if addr.rsplit_once(':').and_then(|(_, p)| p.parse::<u16>().ok()).is_none() {
                return Err(invalid("control_plane.address".into(), format!("{addr:?} is not host:port")));
            }
        }
        Ok(())
    }

    /// Resolves a path relative to the state dir.
    pub fn in_state_dir(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_owned()
        } else {
            self.state_dir.join(p)
        }
    }

    /// How to find the vault's master key, with this process's `$CREDENTIALS_DIRECTORY`.
    pub fn vault_keys(&self) -> crate::vault::KeySettings {
        crate::vault::KeySettings::from_env(self.vault.master_key, self.vault.key_file.as_deref(), &self.state_dir)
    }

    /// How old a cached result of `connection` may be at most (0: not cached).
    pub fn cache_cap(&self, connection: &str) -> u64 {
        if self.cache.max_bytes.get() == 0 {
            return 0;
        }
        let conn = self.connections.iter().find(|(n, _)| n.as_str() == connection).map(|(_, c)| c);
        conn.and_then(|c| c.cache_max_age_secs).unwrap_or(self.cache.max_age_secs).get()
    }

    /// The statement timeout of a job on `connection`: what the job asks for, capped by
    /// the connection's `query_timeout_secs` (or `limits.query_timeout_secs`).
    pub fn query_timeout(&self, connection: &str, asked_secs: Option<u32>) -> std::time::Duration {
        let conn = self.connections.iter().find(|(n, _)| n.as_str() == connection).map(|(_, c)| c);
        let cap = conn.and_then(|c| c.query_timeout_secs).unwrap_or(self.limits.query_timeout_secs).get();
        let secs = asked_secs.map_or(cap, |a| u64::from(a).clamp(1, cap));
        std::time::Duration::from_secs(secs)
    }

    /// The caps of every connection, by name.
    pub fn cache_caps(&self) -> BTreeMap<String, u64> {
        self.connections.keys().map(|n| (n.as_str().to_owned(), self.cache_cap(n.as_str()))).collect()
    }

    /// The egress policy in force for `connection`.
    pub fn egress_policy(&self, connection: &str) -> crate::policy::EgressPolicy {
        let own = self.connections.iter().find(|(n, _)| n.as_str() == connection).and_then(|(_, c)| c.egress.as_ref());
        crate::policy::EgressPolicy::resolve(&self.egress, own)
    }

    /// Whether a mask rule anywhere needs the keyed-hash key (and so the vault).
    pub fn masks_with_hash(&self) -> bool {
        self.connections.keys().any(|n| self.egress_policy(n.as_str()).needs_hash_key())
    }

    /// Whether any connection's results may be cached.
    pub fn cache_enabled(&self) -> bool {
        self.cache_caps().values().any(|c| *c > 0)
    }

    /// The audit log's path.
    pub fn audit_path(&self) -> PathBuf {
        self.in_state_dir(self.audit.path.as_deref().unwrap_or(Path::new("audit.log")))
    }

    /// The pinned keys of the config.
    pub fn pinned_keys(&self) -> outpost_protocol::TrustedKeys {
        let mut keys = outpost_protocol::TrustedKeys::new();
        for k in &self.trusted_keys {
            // Checked in `check`.
            let _ = keys.insert_b64(&k.public_key, Some(&k.key_id));
        }
        keys
    }
}

/// The JSON Schema of `agent.yaml`.
pub fn json_schema() -> String {
    serde_json::to_string_pretty(&schemars::schema_for!(AgentConfig)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "state_dir: /var/lib/outpost\nconnections:\n  sample:\n    kind: sqlite\n    path: sample.db\n    sample: true\nlimits:\n  max_rows: 500\n";

    #[test]
    fn example_config_parses_with_defaults() {
        let cfg = AgentConfig::parse("agent.yaml", GOOD).expect("valid config");
        assert_eq!(cfg.limits.max_rows.get(), 500);
        assert_eq!(cfg.limits.clock_skew_secs.get(), DEFAULT_CLOCK_SKEW_SECS);
        assert_eq!(cfg.audit_path(), PathBuf::from("/var/lib/outpost/audit.log"));
    }

    #[test]
    fn out_of_range_limit_names_file_line_and_range() {
        let text = GOOD.replace("max_rows: 500", "max_rows: 0");
        let err = AgentConfig::parse("agent.yaml", &text).expect_err("0 rows");
        let msg = err.to_string();
        assert!(msg.contains("agent.yaml:8:"), "{msg}");
        assert!(msg.contains("must be between 1 and 1000000"), "{msg}");
    }

    #[test]
    fn unknown_field_and_bad_connection_name_are_located() {
        let err = AgentConfig::parse("agent.yaml", &GOOD.replace("sample: true", "sampel: true")).expect_err("typo");
        assert!(err.to_string().contains("agent.yaml:6:"), "{err}");
        let err = AgentConfig::parse("agent.yaml", &GOOD.replace("  sample:\n", "  Sample DB:\n")).expect_err("name");
        assert!(err.to_string().contains("agent.yaml:3:"), "{err}");
    }

    #[test]
    fn the_cache_cap_is_per_connection_and_zero_turns_it_off() {
        let cfg = AgentConfig::parse("agent.yaml", GOOD).expect("defaults");
        assert_eq!(cfg.cache_cap("sample"), DEFAULT_CACHE_MAX_AGE_SECS);
        assert!(cfg.cache_enabled());
        let text = GOOD.replace("sample: true\n", "sample: true\n    cache_max_age_secs: 0\n");
        let cfg = AgentConfig::parse("agent.yaml", &text).expect("off for sample");
        assert_eq!(cfg.cache_cap("sample"), 0);
        assert!(!cfg.cache_enabled());
        let text = format!("{GOOD}cache:\n  max_age_secs: 60\n  max_bytes: 0\n");
        let cfg = AgentConfig::parse("agent.yaml", &text).expect("no space");
        assert_eq!(cfg.cache_cap("sample"), 0, "no space means no cache");
        let err = AgentConfig::parse("agent.yaml", &format!("{GOOD}cache:\n  max_age_secs: 9999999\n"))
            .expect_err("too long");
        assert!(err.to_string().contains("agent.yaml:10:"), "{err}");
    }

    #[test]
    fn a_postgres_connection_needs_its_server_fields_and_refuses_sqlite_ones() {
        let pg = "state_dir: /s\nconnections:\n  wh:\n    kind: postgres\n    host: db\n    database: a\n    user: u\n";
        let cfg = AgentConfig::parse("agent.yaml", pg).expect("valid");
        let c = cfg.connections.values().next().expect("one");
        assert_eq!((c.tls, c.port, c.pool_size), (DbTls::VerifyFull, None, None), "secure defaults");
        assert!(!c.allow_privileged, "a privileged role is refused unless the connection allows it");
        let allowed = AgentConfig::parse("agent.yaml", &format!("{pg}    allow_privileged: true\n")).expect("allowed");
        assert!(allowed.connections.values().all(|c| c.allow_privileged));
        let err =
            AgentConfig::parse("agent.yaml", &GOOD.replace("sample: true", "sample: true\n    allow_privileged: true"))
                .expect_err("sqlite");
        assert!(err.to_string().contains("connections.sample.allow_privileged"), "{err}");
        let err = AgentConfig::parse("agent.yaml", &pg.replace("    user: u\n", "")).expect_err("no user");
        assert!(err.to_string().contains("connections.wh.user"), "{err}");
        let err = AgentConfig::parse("agent.yaml", &format!("{pg}    path: x.db\n")).expect_err("path");
        assert!(err.to_string().contains("connections.wh.path"), "{err}");
        let err = AgentConfig::parse("agent.yaml", &format!("{pg}    password: hunter2\n")).expect_err("secret");
        assert!(err.to_string().contains("agent.yaml:8:") && !err.to_string().contains("hunter2"), "{err}");
        let err = AgentConfig::parse("agent.yaml", &GOOD.replace("path: sample.db", "path: sample.db\n    host: db"))
            .expect_err("host");
        assert!(err.to_string().contains("connections.sample.host"), "{err}");
    }

    #[test]
    fn trusted_key_id_must_match_the_key() {
        let text = format!(
            "{GOOD}trusted_keys:\n  - key_id: ed25519:0000000000000000\n    public_key: {}\n",
            outpost_protocol::encoding::b64_encode(&[1u8; 32])
        );
        let err = AgentConfig::parse("agent.yaml", &text).expect_err("mismatch");
        assert!(err.to_string().contains("trusted_keys[0]"), "{err}");
    }

    #[test]
    fn the_state_dir_is_found_in_a_file_that_is_broken_elsewhere() {
        let dir = tempfile::tempdir().expect("temp dir");
        let at = |text: &str| {
            let p = dir.path().join("agent.yaml");
            std::fs::write(&p, text).expect("write");
            state_dir_of(&p)
        };
        assert_eq!(at("state_dir: /srv/a\nconnections: {}\n"), PathBuf::from("/srv/a"));
        assert_eq!(at("state_dir: /srv/b\nlimits:\n  max_rows: [oops\n"), PathBuf::from("/srv/b"));
        assert_eq!(at("state_dir: \"/srv/c\"\nnot yaml: : :\n  - [\n"), PathBuf::from("/srv/c"));
        assert_eq!(at("state_dir: /srv/d   # where the state is\nnot yaml: [\n"), PathBuf::from("/srv/d"));
        assert_eq!(at("connections: {}\n"), PathBuf::from(DEFAULT_STATE_DIR));
        assert_eq!(state_dir_of(&dir.path().join("missing.yaml")), PathBuf::from(DEFAULT_STATE_DIR));
    }
}
