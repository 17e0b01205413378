//! `control-plane.yaml`: where the control plane listens and how long things live.
//!
//! Every field has a documented default; unknown fields are errors naming the file and
//! line. Command-line flags override the file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use outpost_common::yamlcfg::{self, ConfigError};
use serde::Deserialize;

/// Default agent listener (mutual TLS).
pub const DEFAULT_AGENT_LISTEN: &str = "127.0.0.1:7443";
/// Default API listener (TLS + bearer token).
pub const DEFAULT_API_LISTEN: &str = "127.0.0.1:8443";
/// A job must reach its agent within this time (seconds); it never runs after.
pub const DEFAULT_JOB_TTL_SECS: u64 = 300;
/// Agent certificates live this long (seconds): short, renewed over mTLS.
pub const DEFAULT_CERT_LIFETIME_SECS: u64 = 24 * 3600;
/// Shortest certificate lifetime accepted; short lifetimes exist for renewal tests.
pub const MIN_CERT_LIFETIME_SECS: u64 = 10;
/// A leased job not completed within this time is handed out again (seconds).
pub const DEFAULT_LEASE_SECS: u64 = 120;
/// Longest a long-poll is held open (seconds), below common proxy idle timeouts.
pub const DEFAULT_LONG_POLL_SECS: u64 = 25;
/// An agent silent this long is offline: a long-poll plus a heartbeat interval, with margin.
pub const DEFAULT_OFFLINE_AFTER_SECS: u64 = 90;
/// Default lifetime of an enrolment token (seconds).
pub const DEFAULT_ENROL_TOKEN_TTL_SECS: u64 = 3600;

/// The file's shape.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ControlPlaneConfig {
    /// Directory made by `init`: CA, keys, database.
    pub data_dir: PathBuf,
    /// Address of the agent listener (mutual TLS).
    #[serde(default = "default_agent_listen")]
    pub agent_listen: SocketAddr,
    /// Address of the API listener (TLS, bearer tokens).
    #[serde(default = "default_api_listen")]
    pub api_listen: SocketAddr,
    /// `host:port` agents dial; goes into enrolment tokens. Defaults to `agent_listen`.
    #[serde(default)]
    pub agent_address: Option<String>,
    /// Lifetimes.
    #[serde(default, deserialize_with = "yamlcfg::null_as_default")]
    #[schemars(with = "Option<JobsConfig>")]
    pub jobs: JobsConfig,
    /// Agent certificate lifetime, seconds.
    #[serde(default = "default_cert_lifetime")]
    pub cert_lifetime_secs: u64,
    /// An agent not heard from for this long is shown `offline`, seconds.
    #[serde(default = "default_offline_after")]
    pub offline_after_secs: u64,
}

/// Job timing.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JobsConfig {
    /// Seconds from signing to expiry.
    #[serde(default = "default_job_ttl")]
    pub ttl_secs: u64,
    /// Seconds a delivered job stays leased before it is handed out again.
    #[serde(default = "default_lease")]
    pub lease_secs: u64,
    /// Longest long-poll, seconds.
    #[serde(default = "default_long_poll")]
    pub long_poll_secs: u64,
}

impl Default for JobsConfig {
    fn default() -> Self {
        Self { ttl_secs: DEFAULT_JOB_TTL_SECS, lease_secs: DEFAULT_LEASE_SECS, long_poll_secs: DEFAULT_LONG_POLL_SECS }
    }
}

fn default_agent_listen() -> SocketAddr {
    DEFAULT_AGENT_LISTEN.parse().unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 7443)))
}
fn default_api_listen() -> SocketAddr {
    DEFAULT_API_LISTEN.parse().unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 8443)))
}
fn default_job_ttl() -> u64 {
    DEFAULT_JOB_TTL_SECS
}
fn default_lease() -> u64 {
    DEFAULT_LEASE_SECS
}
fn default_long_poll() -> u64 {
    DEFAULT_LONG_POLL_SECS
}
fn default_offline_after() -> u64 {
    DEFAULT_OFFLINE_AFTER_SECS
}
fn default_cert_lifetime() -> u64 {
    DEFAULT_CERT_LIFETIME_SECS
}

/// The JSON Schema of control-plane.yaml, generated from the config types.
pub fn json_schema() -> String {
    serde_json::to_string_pretty(&schemars::schema_for!(ControlPlaneConfig)).unwrap_or_default()
}

impl ControlPlaneConfig {
    /// A config with defaults for `data_dir`.
    pub fn with_data_dir(data_dir: PathBuf) -> Self {
        Self {
            data_dir,
            agent_listen: default_agent_listen(),
            api_listen: default_api_listen(),
            agent_address: None,
            jobs: JobsConfig::default(),
            cert_lifetime_secs: DEFAULT_CERT_LIFETIME_SECS,
            offline_after_secs: DEFAULT_OFFLINE_AFTER_SECS,
        }
    }

    /// Loads and checks a file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let cfg: Self = yamlcfg::load_file(path)?;
        cfg.check(&path.display().to_string())?;
        Ok(cfg)
    }

    /// Semantic checks that the types cannot express.
    pub fn check(&self, source: &str) -> Result<(), ConfigError> {
        let invalid = |field: &str, message: &str| ConfigError::Invalid {
            path: source.to_owned(),
            field: field.to_owned(),
            message: message.to_owned(),
        };
        if !(10..=86_400).contains(&self.jobs.ttl_secs) {
            return Err(invalid("jobs.ttl_secs", "must be between 10 and 86400"));
        }
        if !(1..=86_400).contains(&self.jobs.lease_secs) {
            return Err(invalid("jobs.lease_secs", "must be between 1 and 86400"));
        }
        if !(1..=300).contains(&self.jobs.long_poll_secs) {
            return Err(invalid("jobs.long_poll_secs", "must be between 1 and 300"));
        }
        if !(MIN_CERT_LIFETIME_SECS..=90 * 86_400).contains(&self.cert_lifetime_secs) {
            return Err(invalid("cert_lifetime_secs", "must be between 10 and 7776000"));
        }
        if !(10..=86_400).contains(&self.offline_after_secs) {
            return Err(invalid("offline_after_secs", "must be between 10 and 86400"));
        }
        // A connected agent is seen at the start of each long-poll; a shorter threshold
        // would show it offline while it waits for a job.
        if self.offline_after_secs < self.jobs.long_poll_secs + 5 {
            return Err(invalid(
                "offline_after_secs",
                &format!("must be at least jobs.long_poll_secs + 5 ({} s)", self.jobs.long_poll_secs + 5),
            ));
        }
        Ok(())
    }

    /// The address agents are told to dial.
    pub fn advertised_agent_address(&self) -> String {
        self.agent_address.clone().unwrap_or_else(|| self.agent_listen.to_string())
    }
}
