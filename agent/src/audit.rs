//! The local audit log: one JSON line per job received, for the customer's security team.
//!
//! Most records are about a job (`"event": "job"`); a change of the trusted job-signing
//! keys is a `"event": "key_set"` record; a damaged cache entry is a `"event": "cache"`
//! record.
//!
//! A job record says which job, signed by which key, what the verdict was, which connection
//! and a SHA-256 of the SQL (not the SQL itself, which may carry literals), how many rows
//! were read, and the size and SHA-256 of exactly the bytes sent. It never holds a row
//! or a secret.
//!
//! Records are appended by one writer thread that group-commits: it writes every record
//! waiting, calls `fdatasync` once, then acknowledges them all. A job's result is sent
//! only after its record is on disk, so nothing leaves that the log does not show.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

/// Records queued for the writer at most; senders wait beyond it.
const QUEUE: usize = 1024;

/// One audit record.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AuditRecord {
    /// `job`.
    pub event: &'static str,
    /// RFC 3339 time the job ended.
    pub ts: String,
    /// Job id (as delivered, when the envelope could not be verified).
    pub job_id: String,
    /// Signing key id named by the envelope.
    pub key_id: Option<String>,
    /// `accepted` (signature, audience and lifetime verified) or `rejected`.
    pub verdict: &'static str,
    /// `succeeded`, `failed`, `rejected` or `cancelled`.
    pub outcome: &'static str,
    /// Reason code when not succeeded.
    pub reason: Option<String>,
    /// Connection (verified jobs only).
    pub connection: Option<String>,
    /// SHA-256 of the SQL text, hex (verified jobs only).
    pub sql_sha256: Option<String>,
    /// Rows in the result: read from the database, or from the cache on a hit.
    pub rows_read: u64,
    /// The result cache: `hit`, `miss` (then stored), `damaged` (an entry did not
    /// authenticate; deleted, the query ran), `off` (max-age 0 by the job or policy);
    /// absent when the job did not get that far.
    pub cache: Option<&'static str>,
    /// Bytes of the rendered body sent to the control plane.
    pub bytes_sent: u64,
    /// SHA-256 (hex) of exactly the rendered bytes sent: with `bytes_sent`, the egress
    /// ledger a security team reconciles with what the control plane stored.
    pub body_sha256: Option<String>,
    /// Whether rows were cut at the row cap.
    pub truncated: bool,
    /// What the egress policy truncated, masked, downsampled or refused (absent: nothing).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<outpost_protocol::EgressDecision>,
    /// Milliseconds from receipt to report.
    pub duration_ms: u64,
}

/// A change of the trusted job-signing keys, accepted or refused.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct KeySetRecord {
    /// `key_set`.
    pub event: &'static str,
    /// RFC 3339 time.
    pub ts: String,
    /// `accepted` or `refused`.
    pub verdict: &'static str,
    /// The statement's version (as offered, when refused).
    pub version: u64,
    /// Reason code when refused.
    pub reason: Option<String>,
    /// Key ids newly trusted.
    pub added: Vec<String>,
    /// Key ids no longer trusted.
    pub removed: Vec<String>,
    /// Trusted keys whose signatures verified.
    pub signed_by: Vec<String>,
}

/// A cache entry that did not authenticate or parse: deleted, and the query ran instead.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CacheRecord {
    /// `cache`.
    pub event: &'static str,
    /// RFC 3339 time.
    pub ts: String,
    /// `damaged`.
    pub verdict: &'static str,
    /// The job that looked the entry up.
    pub job_id: String,
    /// The connection.
    pub connection: String,
    /// Why the entry was refused (never any of its content).
    pub reason: String,
}

/// Audit failures.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// Opening the log.
    #[error("cannot open audit log {path}: {source}")]
    Open {
        /// File.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Writing failed; the job's result must not be sent.
    #[error("cannot write audit log: {0}")]
    Write(String),
}

type Pending = (Vec<u8>, oneshot::Sender<Result<(), String>>);

/// Handle to the audit writer.
#[derive(Debug, Clone)]
pub struct AuditLog {
    tx: mpsc::Sender<Pending>,
}

impl AuditLog {
    /// Opens (creating 0600) the log at `path` and starts the writer thread.
    pub fn open(path: &Path) -> Result<Self, AuditError> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .map_err(|source| AuditError::Open { path: path.to_owned(), source })?;
        let (tx, rx) = mpsc::channel(QUEUE);
        std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || writer(file, rx))
            .map_err(|source| AuditError::Open { path: path.to_owned(), source })?;
        Ok(Self { tx })
    }

    /// Appends a record and returns once it is on disk.
    pub async fn record<R: Serialize>(&self, rec: &R) -> Result<(), AuditError> {
        let mut line = serde_json::to_vec(rec).map_err(|e| AuditError::Write(e.to_string()))?;
        line.push(b'\n');
        let (done_tx, done_rx) = oneshot::channel();
        self.tx.send((line, done_tx)).await.map_err(|_| AuditError::Write("audit writer stopped".into()))?;
        done_rx.await.map_err(|_| AuditError::Write("audit writer stopped".into()))?.map_err(AuditError::Write)
    }
}

fn writer(mut file: File, mut rx: mpsc::Receiver<Pending>) {
    while let Some(first) = rx.blocking_recv() {
        let mut batch = vec![first];
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        let mut buf = Vec::with_capacity(batch.iter().map(|(l, _)| l.len()).sum());
        for (line, _) in &batch {
            buf.extend_from_slice(line);
        }
        let result = file.write_all(&buf).and_then(|()| file.sync_data()).map_err(|e| e.to_string());
        if let Err(e) = &result {
            tracing::error!(error = %e, "Audit log write failed; results are held back until it works again.");
        }
        for (_, done) in batch {
            let _ = done.send(result.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn rec(id: &str) -> AuditRecord {
        AuditRecord {
            event: "job",
            ts: "2026-01-01T00:00:00Z".into(),
            job_id: id.into(),
            key_id: Some("ed25519:00".into()),
            verdict: "accepted",
            outcome: "succeeded",
            reason: None,
            connection: Some("sample".into()),
            sql_sha256: Some("ab".into()),
            rows_read: 3,
            cache: Some("miss"),
            bytes_sent: 10,
            body_sha256: None,
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
}
