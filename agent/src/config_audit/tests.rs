//! Unit tests of the configuration audit: findings, redaction, renewal.

use super::connection::redact;
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
