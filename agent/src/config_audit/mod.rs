//! `outpost-agent config audit`: what this agent may do and what leaves it, in one report
//! a security reviewer can sign off on, with findings by severity.
//!
//! It reads agent.yaml (already parsed), the enrolment record, and file modes; it never
//! opens the vault and never prints a secret. Findings: files or keys others can read,
//! secrets written in plain text, policies wider than the top-level one or than the
//! defaults, TLS to a database switched off, a connection that accepts a privileged
//! database role (`allow_privileged`), a certificate close to expiry or expired, and an
//! audit log that does not verify.
//!
//! Files: `connection` (the view and findings of one connection and its egress policy),
//! `files` (file modes, secrets written into agent.yaml, the vault's master key),
//! `render` (the report as text).

use std::path::{Path, PathBuf};

mod connection;
mod files;
mod render;
#[cfg(test)]
mod tests;

pub use render::render_text;

use serde::Serialize;

use self::files::{check_mode, plaintext_secret, FileRule};
use crate::config::{AgentConfig, KeyTrustMode};
use crate::policy::EgressPolicy;

/// How much a finding matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Fix before the agent runs.
    High,
    /// Fix or accept knowingly.
    Medium,
    /// Worth knowing.
    Low,
}

/// One thing a reviewer should look at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// How much it matters.
    pub severity: Severity,
    /// What it is about (a file, a connection, a config field).
    pub subject: String,
    /// What is wrong and what to do.
    pub message: String,
}

/// The control plane this agent talks to.
#[derive(Debug, Clone, Serialize)]
pub struct ControlPlaneView {
    /// `host:port` dialled.
    pub address: String,
    /// Name its certificate must carry.
    pub server_name: String,
    /// SHA-256 of the pinned CA certificate.
    pub ca_sha256: String,
    /// This agent's name.
    pub agent: String,
    /// The pool it was enrolled into: it also runs jobs addressed to `pool:<name>`.
    pub pool: Option<String>,
    /// When the client certificate expires (RFC 3339).
    pub certificate_not_after: String,
}

/// One connection and the policy in force for it.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectionView {
    /// Name.
    pub name: String,
    /// `sqlite`, `postgres` or `mysql`.
    pub kind: String,
    /// File or `user@host:port/database`.
    pub target: String,
    /// `verify_full`, `disable`, or `n/a` for SQLite.
    pub tls: String,
    /// The vault entry of the password, if any (its name, never its value).
    pub password_credential: Option<String>,
    /// Statement timeout, seconds.
    pub query_timeout_secs: u64,
    /// Oldest cached result a job may use, seconds (0: never cached).
    pub cache_max_age_secs: u64,
    /// Whether a database role with privileges beyond reading is accepted.
    pub allow_privileged: bool,
    /// The egress policy in force.
    pub egress: EgressView,
}

/// An egress policy as the reviewer reads it.
#[derive(Debug, Clone, Serialize)]
pub struct EgressView {
    /// Render kinds that may leave.
    pub allowed_kinds: Vec<String>,
    /// Whether raw tables may leave.
    pub allow_raw_table: bool,
    /// Rows that may leave one by one.
    pub max_rows: usize,
    /// Values that may leave.
    pub max_points: usize,
    /// Bytes of one result.
    pub max_bytes: usize,
    /// Mask rules: `pattern -> stars|hash`.
    pub mask: Vec<String>,
    /// `scrubbed`, `code_only` or `full`: what of a failure's error text leaves.
    pub errors: &'static str,
    /// `allow` or `refuse`: masked columns in conditions.
    pub masked_predicates: &'static str,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// When the report was made (RFC 3339).
    pub generated_at: String,
    /// The host it was made on.
    pub host: String,
    /// The agent's version.
    pub agent_version: String,
    /// SHA-256 of the agent's own executable (`None`: unreadable).
    pub agent_sha256: Option<String>,
    /// agent.yaml.
    pub config: PathBuf,
    /// SHA-256 of agent.yaml's bytes as read for this report (its policies included);
    /// the `config_reload` audit records and the reload command name the same digest.
    pub config_sha256: Option<String>,
    /// State directory.
    pub state_dir: PathBuf,
    /// The enrolled control plane (`None`: not enrolled).
    pub control_plane: Option<ControlPlaneView>,
    /// `learn` or `pinned_only`.
    pub key_trust: String,
    /// Job-signing keys pinned in agent.yaml.
    pub pinned_keys: Vec<String>,
    /// Job-signing keys received at enrolment.
    pub enrolment_keys: Vec<String>,
    /// Connections with their policies.
    pub connections: Vec<ConnectionView>,
    /// The result cache.
    pub cache: String,
    /// Where the vault's master key comes from.
    pub master_key: String,
    /// The audit log and whether it verifies.
    pub audit_log: String,
    /// The local metrics endpoint.
    pub metrics: String,
    /// What reaching each database found (`config audit --connections`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection_checks: Option<Vec<crate::health::ConnectionReport>>,
    /// Findings, most severe first.
    pub findings: Vec<Finding>,
}

impl Report {
    /// Adds what reaching the databases found: a connection that could not run a job is
    /// a finding (HIGH when its role holds more than reading, else MEDIUM).
    pub fn add_connection_checks(&mut self, checks: Vec<crate::health::ConnectionReport>) {
        for c in checks.iter().filter(|c| !c.ok) {
            let problem = c.problem.clone().unwrap_or_else(|| "it could not be reached".into());
            let severity = if problem.contains("privileged_role") { Severity::High } else { Severity::Medium };
            self.findings.push(Finding {
                severity,
                subject: format!("connections.{}", c.name),
                message: format!("a job could not run on it now: {problem}"),
            });
        }
        self.findings.sort_by(|a, b| a.severity.cmp(&b.severity).then_with(|| a.subject.cmp(&b.subject)));
        self.connection_checks = Some(checks);
    }

    /// Whether a finding of `High` severity is present.
    pub fn has_high(&self) -> bool {
        self.findings.iter().any(|f| f.severity == Severity::High)
    }
}

/// How long past its renewal time a certificate may go unrenewed before that is a
/// finding (a renewal retries with backoff while the control plane is away).
const RENEWAL_GRACE_SECS: i64 = 3600;

/// A certificate is judged against the agent's renewal schedule (two thirds of its
/// lifetime), not a fixed number of days: a fresh 24 h certificate is healthy, one
/// that should have been renewed an hour ago and was not says so.
fn renewal_overdue(issued_at: i64, not_after: i64, now: i64) -> Option<String> {
    let due = crate::daemon::renew_at(issued_at, not_after);
    (now > due + RENEWAL_GRACE_SECS).then(|| {
        format!(
            "the certificate was due for renewal at {} and was not renewed; it expires at {} (in {}): the agent \
             renews only while it reaches the control plane (outpost-agent status says whether it does)",
            crate::daemon::rfc3339(due),
            crate::daemon::rfc3339(not_after),
            render::duration((not_after - now).max(0))
        )
    })
}

/// This host's name.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned())
}

/// SHA-256 of the running executable (the agent binary that made the report).
fn own_sha256() -> Option<String> {
    let exe = std::env::current_exe().ok()?;
    let bytes = std::fs::read(exe).ok()?;
    Some(outpost_protocol::encoding::sha256_hex(&bytes))
}

/// Builds the report for the config at `path`, read at `now` (unix seconds).
pub fn audit(path: &Path, cfg: &AgentConfig, now: i64) -> Report {
    let mut findings = Vec::new();
    let mut add = |severity, subject: &str, message: String| {
        findings.push(Finding { severity, subject: subject.to_owned(), message });
    };
    check_mode(&mut add, path, "agent.yaml", FileRule::ConfigFile);
    check_mode(&mut add, &cfg.state_dir, "state_dir", FileRule::PrivateDir);
    check_mode(&mut add, &cfg.state_dir.join(crate::identity::KEY_FILE), "agent.key", FileRule::Secret);
    check_mode(&mut add, &cfg.state_dir.join(crate::vault::VAULT_FILE), "vault.json", FileRule::Private);
    check_mode(&mut add, &cfg.audit_path(), "audit log", FileRule::Private);
    let config_bytes = std::fs::read(path).ok();
    let config_sha256 = config_bytes.as_deref().map(outpost_protocol::encoding::sha256_hex);
    if let Some(text) = config_bytes.as_deref().and_then(|b| std::str::from_utf8(b).ok()) {
        for (i, line) in text.lines().enumerate() {
            if let Some(why) = plaintext_secret(line) {
                add(
                    Severity::High,
                    &format!("{}:{}", path.display(), i + 1),
                    format!("{why}; put secrets in the vault (outpost-agent credentials set NAME) and name them here"),
                );
            }
        }
    }

    let enrolment = read_enrolment(&cfg.state_dir);
    let control_plane = enrolment.as_ref().map(|e| {
        if e.not_after < now {
            add(
                Severity::High,
                "agent.crt",
                format!("the certificate expired at {}; enrol again", crate::daemon::rfc3339(e.not_after)),
            );
        } else if let Some(message) = renewal_overdue(e.cert_issued_at, e.not_after, now) {
            add(Severity::Medium, "agent.crt", message);
        }
        ControlPlaneView {
            address: cfg.control_plane.address.clone().unwrap_or_else(|| e.address.clone()),
            server_name: e.server_name.clone(),
            ca_sha256: e.ca_sha256.clone(),
            agent: e.agent.clone(),
            pool: e.pool.clone(),
            certificate_not_after: crate::daemon::rfc3339(e.not_after),
        }
    });
    if enrolment.is_none() {
        add(Severity::Low, "enrolment", "not enrolled yet: outpost-agent enroll --token TOKEN".into());
    }
    let key_trust = match cfg.key_trust {
        KeyTrustMode::Learn => {
            if cfg.trusted_keys.is_empty() {
                add(
                    Severity::Low,
                    "key_trust",
                    "job-signing keys are learned from the control plane (at enrolment and from key sets signed \
                     by a trusted key); pin them in trusted_keys with key_trust: pinned_only to decide yourself"
                        .into(),
                );
            }
            "learn"
        }
        KeyTrustMode::PinnedOnly => "pinned_only",
    };

    let top = EgressPolicy::resolve(&cfg.egress, None);
    let mut connections = Vec::new();
    for (name, c) in &cfg.connections {
        connections.push(connection::view(cfg, &top, name.as_str(), c, &mut add));
    }

    let cache = if cfg.cache_enabled() {
        format!(
            "on: AES-256-GCM under a key derived from the vault's data key, in {}; at most {}; \
             max age per connection: {:?}",
            cfg.state_dir.join("cache").display(),
            render::bytes(cfg.cache.max_bytes.get()),
            cfg.cache_caps()
        )
    } else {
        "off".to_owned()
    };
    let master_key = files::master_key(cfg, &mut add);
    let audit_path = cfg.audit_path();
    let current_key = crate::audit::show::certificate_key(&cfg.state_dir.join(crate::identity::CERT_FILE));
    let audit_log = match crate::audit::verify(&audit_path, current_key.as_deref()) {
        Ok(r) => match &r.finding {
            None => format!(
                "{}: {} record(s), hash chain intact, {} signed checkpoint(s)",
                audit_path.display(),
                r.records,
                r.checkpoints
            ),
            Some(f) => {
                add(
                    Severity::High,
                    "audit log",
                    format!("{} line {}: {} (outpost-agent audit verify)", audit_path.display(), f.line, f.problem),
                );
                format!("{}: TAMPERED at line {}", audit_path.display(), f.line)
            }
        },
        Err(_) => format!("{}: not written yet", audit_path.display()),
    };
    let metrics = match cfg.metrics.listen {
        None => "off".to_owned(),
        Some(addr) if addr.ip().is_loopback() => format!("http://{addr}/metrics (loopback only, counts only)"),
        Some(addr) => {
            add(
                Severity::Medium,
                "metrics",
                format!(
                    "metrics.listen {addr} is reachable from other hosts and has no authentication; \
                     it shows job counts and reasons, never data (prefer 127.0.0.1 and a local scraper)"
                ),
            );
            format!("http://{addr}/metrics (NOT loopback: other hosts can read it)")
        }
    };
    findings.sort_by(|a, b| a.severity.cmp(&b.severity).then_with(|| a.subject.cmp(&b.subject)));
    Report {
        generated_at: crate::daemon::rfc3339(now),
        host: host_name(),
        agent_version: env!("CARGO_PKG_VERSION").to_owned(),
        agent_sha256: own_sha256(),
        config: path.to_owned(),
        config_sha256,
        state_dir: cfg.state_dir.clone(),
        control_plane,
        key_trust: key_trust.to_owned(),
        pinned_keys: cfg.trusted_keys.iter().map(|k| k.key_id.clone()).collect(),
        enrolment_keys: enrolment
            .map(|e| e.signing_keys.iter().map(|k| k.key_id.clone()).collect())
            .unwrap_or_default(),
        connections,
        cache,
        master_key,
        audit_log,
        metrics,
        connection_checks: None,
        findings,
    }
}

fn read_enrolment(state_dir: &Path) -> Option<crate::identity::Enrolment> {
    let text = std::fs::read(state_dir.join(crate::identity::ENROLMENT_FILE)).ok()?;
    serde_json::from_slice(&text).ok()
}
