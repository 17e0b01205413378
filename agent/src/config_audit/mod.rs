//! `outpost-agent config audit`: what this agent may do and what leaves it, in one report
//! a security reviewer can sign off on, with findings by severity.
//!
//! It reads agent.yaml (already parsed), the enrolment record, and file modes; it never
//! opens the vault and never prints a secret. Findings: files or keys others can read,
//! secrets written in plain text, policies wider than the top-level one or than the
//! defaults, TLS to a database switched off, a connection that accepts a privileged
//! database role (`allow_privileged`), a certificate close to expiry or expired, and an
//! audit log that does not verify.

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

mod render;
pub use render::render_text;

use serde::Serialize;

use crate::config::{AgentConfig, ConnectionKind, DbTls, KeyTrustMode};
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

impl EgressView {
    fn of(p: &EgressPolicy) -> Self {
        Self {
            allowed_kinds: p.allowed_kinds.iter().map(|k| kind_name(*k)).collect(),
            allow_raw_table: p.allow_raw_table,
            max_rows: p.max_rows,
            max_points: p.max_points,
            max_bytes: p.max_bytes,
            mask: p.mask.iter().map(|m| format!("{} -> {}", m.column.as_str(), mask_name(m.with))).collect(),
            errors: p.errors.name(),
            masked_predicates: match p.masked_predicates {
                crate::policy::MaskedPredicates::Allow => "allow",
                crate::policy::MaskedPredicates::Refuse => "refuse",
            },
        }
    }
}

fn kind_name(k: crate::policy::RenderKind) -> String {
    serde_json::to_value(k).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

fn mask_name(m: crate::policy::MaskWith) -> String {
    serde_json::to_value(m).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
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
    let due = crate::runner::renew_at(issued_at, not_after);
    (now > due + RENEWAL_GRACE_SECS).then(|| {
        format!(
            "the certificate was due for renewal at {} and was not renewed; it expires at {} (in {}): the agent \
             renews only while it reaches the control plane (outpost-agent status says whether it does)",
            crate::runner::rfc3339(due),
            crate::runner::rfc3339(not_after),
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
                format!("the certificate expired at {}; enrol again", crate::runner::rfc3339(e.not_after)),
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
            certificate_not_after: crate::runner::rfc3339(e.not_after),
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
        let name = name.as_str();
        let subject = format!("connections.{name}");
        let policy = cfg.egress_policy(name);
        for (field, widened) in widening(&top, &policy) {
            add(
                Severity::Medium,
                &format!("{subject}.egress.{field}"),
                format!("widens the top-level egress policy: {widened}"),
            );
        }
        if policy.errors == crate::scrub::ErrorsMode::Full {
            let (severity, masks) = if policy.mask.is_empty() {
                (Severity::Medium, "")
            } else {
                (Severity::High, ", the values of masked columns included")
            };
            add(
                severity,
                &format!("{subject}.egress.errors"),
                format!(
                    "errors: full sends database error messages as they are; they can quote values from rows{masks} \
                     (the default, scrubbed, removes every fragment that is not in the job's SQL)"
                ),
            );
        }
        if !policy.mask.is_empty() && policy.masked_predicates == crate::policy::MaskedPredicates::Allow {
            add(
                Severity::Low,
                &format!("{subject}.egress.masked_predicates"),
                "masked columns may be used in conditions (WHERE, joins, GROUP BY, ORDER BY): which rows match \
                 reveals their values one comparison at a time; set masked_predicates: refuse, or grant the \
                 agent's role only the columns it needs"
                    .into(),
            );
        }
        if policy.allow_raw_table && policy.allowed_kinds.contains(&crate::policy::RenderKind::Table) {
            add(
                Severity::Low,
                &format!("{subject}.egress"),
                format!("raw rows may leave as tables (up to {} rows); set allow_raw_table: false to allow only charts and scalars", policy.max_rows),
            );
        }
        let (target, tls) = match c.kind {
            ConnectionKind::Sqlite => {
                let file = c.path.as_deref().map(|p| cfg.in_state_dir(p)).unwrap_or_default();
                (file.display().to_string(), "n/a".to_owned())
            }
            ConnectionKind::Postgres | ConnectionKind::Mysql => {
                let host = c.host.clone().unwrap_or_default();
                let default_port = if c.kind == ConnectionKind::Postgres { 5432 } else { 3306 };
                let target = redact(&format!(
                    "{}@{host}:{}/{}",
                    c.user.as_deref().unwrap_or("?"),
                    c.port.unwrap_or(default_port),
                    c.database.as_deref().unwrap_or("?")
                ));
                if c.allow_privileged {
                    add(
                        Severity::High,
                        &format!("{subject}.allow_privileged"),
                        "the agent uses this connection even if its database role is a superuser, may read or \
                         write server files, run programs, signal other sessions, create roles or write tables: a \
                         job's function could then do so inside the read-only transaction. Connect as a \
                         least-privilege role (docs/DATABASES.md) and remove allow_privileged"
                            .into(),
                    );
                }
                let tls = match c.tls {
                    DbTls::VerifyFull => {
                        if let Some(ca) = &c.ca_file {
                            if std::fs::metadata(ca).is_err() {
                                add(
                                    Severity::High,
                                    &format!("{subject}.ca_file"),
                                    format!("{} cannot be read", ca.display()),
                                );
                            }
                        }
                        "verify_full".to_owned()
                    }
                    DbTls::Disable => {
                        let local = is_loopback(&host);
                        add(
                            if local { Severity::Low } else { Severity::High },
                            &format!("{subject}.tls"),
                            if local {
                                format!("TLS is off to {host} (this host): fine for a local server")
                            } else {
                                format!(
                                    "TLS is off to {host}: the password and every row cross the network in clear; \
                                     use tls: verify_full with the server's CA in ca_file"
                                )
                            },
                        );
                        "disable".to_owned()
                    }
                };
                (target, tls)
            }
        };
        connections.push(ConnectionView {
            name: name.to_owned(),
            kind: format!("{:?}", c.kind).to_ascii_lowercase(),
            target,
            tls,
            password_credential: c.password_credential.clone(),
            query_timeout_secs: cfg.query_timeout(name, None).as_secs(),
            cache_max_age_secs: cfg.cache_cap(name),
            allow_privileged: c.allow_privileged,
            egress: EgressView::of(&policy),
        });
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
    let keys = cfg.vault_keys();
    let master_key = match cfg.vault.master_key {
        crate::vault::MasterKeySource::Passphrase => {
            "a passphrase (Argon2id), asked at start or from the systemd credential outpost-vault-passphrase".to_owned()
        }
        crate::vault::MasterKeySource::Systemd => {
            format!("the systemd credential {} only", crate::vault::SYSTEMD_KEY)
        }
        source => {
            let file = &keys.key_file;
            if std::fs::metadata(file).is_ok() {
                check_mode(&mut add, file, "master key file", FileRule::Secret);
                if file.starts_with(&cfg.state_dir) {
                    add(
                        Severity::Low,
                        "vault.master_key",
                        format!(
                            "the master key file {} sits beside the vault it opens; a copy of the state dir \
                             holds both. Prefer LoadCredentialEncrypted= (systemd credential {})",
                            file.display(),
                            crate::vault::SYSTEMD_KEY
                        ),
                    );
                }
            }
            match source {
                crate::vault::MasterKeySource::Auto => format!(
                    "the systemd credential {} when present, else the key file {}",
                    crate::vault::SYSTEMD_KEY,
                    file.display()
                ),
                _ => format!("the key file {}", file.display()),
            }
        }
    };
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
        generated_at: crate::runner::rfc3339(now),
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

/// What a file's mode should be.
#[derive(Clone, Copy)]
enum FileRule {
    /// agent.yaml: no one but owner and group may read; no one but the owner may write.
    ConfigFile,
    /// 0700.
    PrivateDir,
    /// 0600, and a key: readable by others is high.
    Secret,
    /// 0600, encrypted or without secrets: readable by others is medium.
    Private,
}

fn check_mode(add: &mut impl FnMut(Severity, &str, String), path: &Path, what: &str, rule: FileRule) {
    let Ok(meta) = std::fs::metadata(path) else { return };
    let mode = meta.mode() & 0o7777;
    let shown = format!("{} (mode {mode:04o}, uid {} gid {})", path.display(), meta.uid(), meta.gid());
    match rule {
        FileRule::ConfigFile => {
            if mode & 0o022 != 0 {
                add(Severity::High, what, format!("{shown} can be changed by others: chmod 0640 (root:outpost)"));
            } else if mode & 0o004 != 0 {
                add(
                    Severity::Medium,
                    what,
                    format!(
                        "{shown} is readable by every user; it names databases and users: chmod 0640 (root:outpost)"
                    ),
                );
            }
        }
        FileRule::PrivateDir => {
            if mode & 0o077 != 0 {
                add(Severity::High, what, format!("{shown} is open to others: chmod 0700"));
            }
        }
        FileRule::Secret => {
            if mode & 0o077 != 0 {
                add(Severity::High, what, format!("{shown} is a private key readable by others: chmod 0600"));
            }
        }
        FileRule::Private => {
            if mode & 0o077 != 0 {
                add(Severity::Medium, what, format!("{shown} is readable by others: chmod 0600"));
            }
        }
    }
}

/// Why a line of agent.yaml looks like it holds a secret in plain text.
fn plaintext_secret(line: &str) -> Option<&'static str> {
    let code = line.split('#').next().unwrap_or_default();
    if code.contains("-----BEGIN") {
        return Some("a PEM block (a private key?) written into agent.yaml");
    }
    // scheme://user:password@host
    if let Some(rest) = code.split("://").nth(1) {
        let authority = rest.split(['/', ' ', '"', '\'']).next().unwrap_or_default();
        if let Some((userinfo, _)) = authority.rsplit_once('@') {
            if userinfo.contains(':') {
                return Some("a URL with a password in it");
            }
        }
    }
    None
}

/// `text` with the password of any `scheme://user:password@` replaced by `***`.
fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail.find(['/', ' ', '"', '\'']).unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rsplit_once('@').and_then(|(userinfo, host)| Some((userinfo.split_once(':')?.0, host))) {
            Some((user, host)) => {
                out.push_str(user);
                out.push_str(":***@");
                out.push_str(host);
            }
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// Fields where `own` lets more out than `top`: (field, "what").
fn widening(top: &EgressPolicy, own: &EgressPolicy) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    let extra: Vec<String> = own.allowed_kinds.difference(&top.allowed_kinds).map(|k| kind_name(*k)).collect();
    if !extra.is_empty() {
        out.push(("allowed_kinds", format!("adds {}", extra.join(", "))));
    }
    if own.allow_raw_table && !top.allow_raw_table {
        out.push(("allow_raw_table", "allows raw tables".to_owned()));
    }
    for (field, a, b) in [
        ("max_rows", top.max_rows, own.max_rows),
        ("max_points", top.max_points, own.max_points),
        ("max_bytes", top.max_bytes, own.max_bytes),
    ] {
        if b > a {
            out.push((field, format!("{b} instead of {a}")));
        }
    }
    out
}

fn is_loopback(host: &str) -> bool {
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback()) || host.starts_with('/')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_in_urls_and_pem_blocks_are_found_and_comments_ignored() {
        assert!(plaintext_secret("    url: http://proxyuser:s3cret@proxy:3128").is_some());
        assert!(plaintext_secret("  note: postgres://app:pw@db/x").is_some());
        assert!(plaintext_secret("    -----BEGIN PRIVATE KEY-----").is_some());
        assert!(plaintext_secret("    url: http://proxy:3128").is_none());
        assert!(plaintext_secret("    url: http://user@proxy:3128").is_none());
        assert!(plaintext_secret("  # url: http://a:b@c").is_none());
    }

    #[test]
    fn allow_privileged_is_a_high_finding_on_its_connection() {
        let conn = |name: &str, extra: &str| {
            format!("  {name}:\n    kind: postgres\n    host: 127.0.0.1\n    database: d\n    user: u\n    tls: disable\n{extra}")
        };
        let text = format!(
            "state_dir: /nonexistent/outpost\nconnections:\n{}{}",
            conn("strict", ""),
            conn("loose", "    allow_privileged: true\n")
        );
        let cfg = AgentConfig::parse("agent.yaml", &text).expect("config");
        let report = audit(Path::new("/nonexistent/agent.yaml"), &cfg, 0);
        let about = |s: &str| report.findings.iter().filter(|f| f.subject == s).map(|f| f.severity).collect::<Vec<_>>();
        assert_eq!(about("connections.loose.allow_privileged"), vec![Severity::High]);
        assert!(about("connections.strict.allow_privileged").is_empty());
        assert!(render_text(&report).contains("[HIGH] connections.loose.allow_privileged"));
    }

    #[test]
    fn masks_usable_in_conditions_are_a_low_finding() {
        let conn = |name: &str, egress: &str| {
            format!("  {name}:\n    kind: sqlite\n    path: /nonexistent/{name}.db\n    egress:\n      mask:\n        - column: ssn\n{egress}")
        };
        let text = format!(
            "state_dir: /nonexistent/outpost\nconnections:\n{}{}  bare:\n    kind: sqlite\n    path: /nonexistent/b.db\n",
            conn("open", ""),
            conn("closed", "      masked_predicates: refuse\n")
        );
        let cfg = AgentConfig::parse("agent.yaml", &text).expect("config");
        let report = audit(Path::new("/nonexistent/agent.yaml"), &cfg, 0);
        let about = |s: &str| report.findings.iter().filter(|f| f.subject == s).map(|f| f.severity).collect::<Vec<_>>();
        assert_eq!(about("connections.open.egress.masked_predicates"), vec![Severity::Low]);
        assert!(about("connections.closed.egress.masked_predicates").is_empty());
        assert!(about("connections.bare.egress.masked_predicates").is_empty(), "no masks, nothing to say");
        assert!(render_text(&report).contains("masked: ssn -> stars (in conditions: refuse)"));
    }

    #[test]
    fn passwords_in_urls_are_redacted_and_everything_else_is_kept() {
        assert_eq!(
            redact("app@db:5432/postgres://app:hunter2@10.1.2.3/sales"),
            "app@db:5432/postgres://app:***@10.1.2.3/sales"
        );
        assert_eq!(redact("http://u@h/x and ftp://a:b@c"), "http://u@h/x and ftp://a:***@c");
        assert_eq!(redact("no url here"), "no url here");
    }

    #[test]
    fn a_certificate_is_judged_against_its_renewal_time_not_a_fixed_window() {
        let day = 86_400;
        // A fresh 24 h certificate (renewed at 16 h): nothing to say for the first 17 h.
        assert_eq!(renewal_overdue(0, day, 3600), None);
        assert_eq!(renewal_overdue(0, day, 17 * 3600), None);
        let late = renewal_overdue(0, day, 17 * 3600 + 1).expect("overdue");
        assert!(late.contains("due for renewal at 1970-01-01T16:00:00") && late.contains("(in 6 h 59 min)"), "{late}");
        // A 90-day certificate 80 days before it expires is not due.
        assert_eq!(renewal_overdue(0, 90 * day, 10 * day), None);
    }
}
