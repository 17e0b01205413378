//! `agent.yaml`: the agent's local config, which the customer's security team reads.
//!
//! It names the control plane, the state directory, the job-signing keys the agent
//! pins, the connections it offers and the limits every job runs within. It never holds
//! a credential. Parsing is strict: unknown fields, duplicate keys, `yes`/`no` as
//! booleans and out-of-range numbers are errors naming the file, line and field.
//!
//! Files: `values` (checked values: bounded integers, connection names), `sections`
//! (the file's sections other than connections: limits, cache, proxy, vault, audit,
//! trusted keys), `connection` (one database connection and its checks).

mod connection;
mod sections;
#[cfg(test)]
mod tests;
mod values;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use outpost_common::yamlcfg::{self, ConfigError};
use serde::Deserialize;

pub use self::connection::{ConnectionConfig, ConnectionKind, DbTls, PlaintextRefused, DEFAULT_POOL_SIZE};
pub use self::sections::{
    AuditSection, CacheSection, ControlPlaneSection, KeyTrustMode, Limits, MetricsSection, ProxySection, SqlText,
    TrustedKey, VaultSection,
};
pub use self::values::{BadConnectionName, Bounded, ConnectionName, OutOfRange};

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
            keys.insert_b64(&k.public_key, Some(&k.key_id))
                .map_err(|e| invalid(format!("trusted_keys[{i}]"), e.to_string()))?;
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
