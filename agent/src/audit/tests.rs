//! Unit tests of the audit log's records and file.

use super::*;
use std::os::unix::fs::PermissionsExt;

fn rec(id: &str) -> AuditRecord {
    AuditRecord {
        event: "job",
        ts: "2026-01-01T00:00:00Z".into(),
        job_id: id.into(),
        key_id: Some("ed25519:00".into()),
        verdict: "accepted",
        outcome: AuditOutcome::Succeeded,
        reason: None,
        connection: Some("sample".into()),
        sql_sha256: Some("ab".into()),
        requester: None,
        sql: None,
        param_types: Vec::new(),
        params: None,
        rows_read: 3,
        cache: Some("miss"),
        bytes_sent: 10,
        body_sha256: None,
        error_sha256: None,
        truncated: false,
        egress: Vec::new(),
        duration_ms: 1,
    }
}

#[tokio::test]
async fn records_are_json_lines_in_a_0600_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.log");
    let log = AuditLog::open(&path).expect("open");
    let mut tasks = Vec::new();
    for i in 0..50 {
        let log = log.clone();
        tasks.push(tokio::spawn(async move { log.record(&rec(&format!("job-{i}"))).await }));
    }
    for t in tasks {
        t.await.expect("join").expect("record");
    }
    let text = std::fs::read_to_string(&path).expect("read");
    let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).expect("json line")).collect();
    assert_eq!(lines.len(), 50);
    assert!(lines.iter().all(|l| l["verdict"] == "accepted" && l["rows_read"] == 3));
    let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}
