//! Helpers the commands share: the CLI's audit record, shell quoting, durations and times.

#[allow(clippy::wildcard_imports)]
use crate::*;

/// Records a CLI action in the control plane's audit log, as the account of the effective
/// uid running it (not `$USER`, which anyone can set or leave empty).
pub(crate) async fn audit_cli(store: &Backend, action: &str, target: &str, detail: serde_json::Value) {
    let who = outpost_control_plane::enrolment::effective_user();
    let event = AuditEvent {
        seq: 0,
        at: outpost_control_plane::clock::Clock::system().now(),
        actor: format!("cli:{who}"),
        credential: "cli".into(),
        action: action.into(),
        target: Some(target.into()),
        outcome: "ok".into(),
        status: 0,
        remote: None,
        detail: Some(detail),
    };
    if let Err(e) = store.add_audit(event).await {
        eprintln!("warning: could not write the audit record: {e}");
    }
}

/// `s` as one shell word (quoted when it holds anything but safe characters).
pub(crate) fn shell_word(s: &str) -> String {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"/._-+=:,@".contains(&b)) {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

pub(crate) fn parse_duration(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit())?);
    let n: u64 = num.parse().ok()?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return None,
    };
    n.checked_mul(mult)
}

pub(crate) fn fmt_time(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0).map(|t| t.to_rfc3339()).unwrap_or_else(|| unix.to_string())
}
