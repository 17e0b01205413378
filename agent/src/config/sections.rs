//! agent.yaml's sections other than `connections`: metrics, cache, proxy, vault, control
//! plane, trusted keys, limits and audit, with their defaults.

use std::path::PathBuf;

use outpost_common::yamlcfg;
use serde::Deserialize;

use super::{
    Bounded, DEFAULT_CACHE_MAX_AGE_SECS, DEFAULT_CACHE_MAX_BYTES, DEFAULT_CLOCK_SKEW_SECS, DEFAULT_LONG_POLL_SECS,
    DEFAULT_MAX_CONCURRENT_JOBS, DEFAULT_MAX_JOB_LIFETIME_SECS, DEFAULT_MAX_ROWS, DEFAULT_QUERY_TIMEOUT_SECS,
    MAX_CACHE_AGE_SECS,
};

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
