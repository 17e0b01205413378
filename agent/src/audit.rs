//! The local audit log: one JSON line per job received, for the customer's security team.
//!
//! Most records are about a job (`"event": "job"`); a change of the trusted job-signing
//! keys is a `"event": "key_set"` record; a damaged cache entry, or one of an earlier
//! agent's format, is a `"event": "cache"` record.
//!
//! A job record says which job, signed by which key, what the verdict was, which connection
//! and a SHA-256 of the SQL (not the SQL itself, which may carry literals), how many rows
//! were read, and the size and SHA-256 of exactly the bytes sent. It never holds a row
//! or a secret.
//!
//! Records are appended by one writer thread that group-commits: it writes every record
//! waiting, calls `fdatasync` once, then acknowledges them all. A job's result is sent
//! only after its record is on disk, so nothing leaves that the log does not show.
//!
//! The log is a hash chain. The writer puts two fields first in every line: `seq`, the
//! line's number in the file counting from 0, and `prev`, the SHA-256 (hex) of the
//! previous line's bytes (64 zeros for the first line). Every [`CHECKPOINT_EVERY`]
//! records, and when the agent stops, it appends a `"event": "checkpoint"` record signed
//! with the agent's private key (ECDSA P-256, the key of its mTLS certificate) over
//! `outpost-audit-checkpoint/v1`, `seq` and `prev`, with the public key beside it.
//! `outpost-agent audit verify` ([`verify`]) names the first line that was altered,
//! removed, inserted or reordered.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_ASN1_SIGNING};
use outpost_protocol::encoding::{b64_encode, sha256_hex};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

pub mod show;
mod verify;
pub use verify::{tail, verify, verify_with_head, Finding, HeadCheck, Report, VerifyError};

/// Records queued for the writer at most; senders wait beyond it.
const QUEUE: usize = 1024;

/// A signed checkpoint after this many records.
pub const CHECKPOINT_EVERY: u64 = 100;

/// `prev` of the first line.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What a checkpoint's signature covers: this, `seq` and `prev`, one per line.
pub const CHECKPOINT_CONTEXT: &str = "outpost-audit-checkpoint/v1";

/// The bytes a checkpoint at `seq` after a line hashing to `prev` signs.
pub fn checkpoint_message(seq: u64, prev: &str) -> Vec<u8> {
    format!("{CHECKPOINT_CONTEXT}\n{seq}\n{prev}").into_bytes()
}

/// Signs checkpoints with the agent's private key.
pub struct Signer {
    key: EcdsaKeyPair,
    public_b64: String,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer").field("public", &self.public_b64).finish_non_exhaustive()
    }
}

impl Signer {
    /// A signer from the agent's PKCS#8 (DER) ECDSA P-256 key.
    pub fn from_pkcs8(der: &[u8]) -> Result<Self, String> {
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, der).map_err(|e| e.to_string())?;
        let public_b64 = b64_encode(key.public_key().as_ref());
        Ok(Self { key, public_b64 })
    }

    fn sign(&self, msg: &[u8]) -> Result<String, String> {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        self.key.sign(&rng, msg).map(|s| b64_encode(s.as_ref())).map_err(|e| e.to_string())
    }
}

/// A signed checkpoint: everything before it is as it was when it was written.
#[derive(Debug, Clone, Serialize)]
struct CheckpointRecord<'a> {
    event: &'static str,
    ts: String,
    /// Why: `periodic` or `shutdown`.
    reason: &'a str,
    /// Public key (uncompressed P-256 point, base64) that signed it.
    key: &'a str,
    /// ECDSA P-256 SHA-256 signature (ASN.1 DER, base64) of [`checkpoint_message`].
    signature: String,
}

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
    /// Who asked for the job, as the control plane signed it (verified jobs only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requester: Option<outpost_protocol::Requester>,
    /// The SQL text (verified jobs, unless `audit.sql_text: hash_only`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sql: Option<String>,
    /// The parameters' types, in order (verified jobs).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub param_types: Vec<&'static str>,
    /// The parameters' values (only with `audit.param_values: true`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub params: Option<serde_json::Value>,
    /// Rows in the result: read from the database, or from the cache on a hit.
    pub rows_read: u64,
    /// The result cache: `hit`, `miss` (then stored if the query ended well; also when an
    /// entry of an earlier agent's format was deleted), `damaged` (an entry did not
    /// authenticate; deleted, the query ran), `off` (max-age 0 by the job or policy);
    /// absent when the job did not get that far.
    pub cache: Option<&'static str>,
    /// Bytes of the rendered body sent to the control plane.
    pub bytes_sent: u64,
    /// SHA-256 (hex) of exactly the rendered bytes sent: with `bytes_sent`, the egress
    /// ledger a security team reconciles with what the control plane stored.
    pub body_sha256: Option<String>,
    /// SHA-256 (hex) of the failure message sent (the report's reason message) when the
    /// job did not succeed; `bytes_sent` is then that message's length. Under the default
    /// `egress.errors: scrubbed` it is the scrubbed text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_sha256: Option<String>,
    /// Whether rows were cut at the row cap.
    pub truncated: bool,
    /// What the egress policy truncated, masked, downsampled or refused (absent: nothing).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<outpost_protocol::EgressDecision>,
    /// Milliseconds from receipt to report.
    pub duration_ms: u64,
}

/// A SIGHUP reload of agent.yaml, applied or refused.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ConfigRecord {
    /// `config_reload`.
    pub event: &'static str,
    /// RFC 3339 time.
    pub ts: String,
    /// `applied` or `refused`.
    pub outcome: &'static str,
    /// SHA-256 of agent.yaml as read.
    pub config_sha256: Option<String>,
    /// Why it was refused.
    pub reason: Option<String>,
    /// The connections offered after the reload.
    pub connections: Vec<String>,
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
    /// `damaged` (it did not authenticate or decode) or `outdated` (written in an earlier
    /// agent's format); either way it was deleted and the query ran.
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

/// What the writer is asked to do.
enum Op {
    /// A serialised record (a JSON object), to be chained.
    Record(Vec<u8>),
    /// A signed checkpoint now (`shutdown`), if a signer is set.
    Checkpoint(&'static str),
    /// Sign checkpoints with this key from now on (after a renewal, the new key).
    Signer(Option<Arc<Signer>>),
}

type Pending = (Op, oneshot::Sender<Result<(), String>>);

/// The chain's end as last written to disk, and the key that signs.
#[derive(Debug, Default)]
struct Head {
    /// `seq` and line hash of the last record on disk.
    last: Option<(u64, String)>,
    signer: Option<Arc<Signer>>,
}

/// Handle to the audit writer.
#[derive(Debug, Clone)]
pub struct AuditLog {
    tx: mpsc::Sender<Pending>,
    head: Arc<Mutex<Head>>,
}

impl AuditLog {
    /// Opens (creating 0600) the log at `path`, finds where its chain ends, and starts the
    /// writer thread.
    pub fn open(path: &Path) -> Result<Self, AuditError> {
        let open_err = |source| AuditError::Open { path: path.to_owned(), source };
        let mut file = OpenOptions::new().create(true).append(true).mode(0o600).open(path).map_err(open_err)?;
        let chain = Chain::resume(path, &mut file).map_err(open_err)?;
        let head = Arc::new(Mutex::new(Head {
            last: chain.seq.checked_sub(1).map(|s| (s, chain.prev.clone())),
            signer: None,
        }));
        let (tx, rx) = mpsc::channel(QUEUE);
        let shared = Arc::clone(&head);
        std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || writer(file, chain, rx, &shared))
            .map_err(open_err)?;
        Ok(Self { tx, head })
    }

    /// The last record on disk, signed now by the agent's key: what the agent tells the
    /// control plane, so that a cut of the log's end can be detected later. `None`
    /// before the first record or before a key is set.
    pub fn head(&self) -> Option<outpost_protocol::audit_head::AuditHead> {
        let (last, signer) = {
            let h = self.head.lock().ok()?;
            (h.last.clone()?, h.signer.clone()?)
        };
        let (seq, hash) = last;
        let signature = signer.sign(&outpost_protocol::audit_head::head_message(seq, &hash)).ok()?;
        Some(outpost_protocol::audit_head::AuditHead { seq, hash, key: signer.public_b64.clone(), signature })
    }

    async fn send(&self, op: Op) -> Result<(), AuditError> {
        let (done_tx, done_rx) = oneshot::channel();
        self.tx.send((op, done_tx)).await.map_err(|_| AuditError::Write("audit writer stopped".into()))?;
        done_rx.await.map_err(|_| AuditError::Write("audit writer stopped".into()))?.map_err(AuditError::Write)
    }

    /// Appends a record and returns once it is on disk.
    pub async fn record<R: Serialize>(&self, rec: &R) -> Result<(), AuditError> {
        let line = serde_json::to_vec(rec).map_err(|e| AuditError::Write(e.to_string()))?;
        if line.len() < 2 || line[0] != b'{' {
            return Err(AuditError::Write("an audit record must be a JSON object".into()));
        }
        self.send(Op::Record(line)).await
    }

    /// Signs checkpoints with `signer` from now on.
    pub async fn set_signer(&self, signer: Signer) -> Result<(), AuditError> {
        let signer = Arc::new(signer);
        if let Ok(mut h) = self.head.lock() {
            h.signer = Some(Arc::clone(&signer));
        }
        self.send(Op::Signer(Some(signer))).await
    }

    /// Appends a signed checkpoint now (when the agent stops).
    pub async fn checkpoint(&self, reason: &'static str) -> Result<(), AuditError> {
        self.send(Op::Checkpoint(reason)).await
    }
}

/// How much of the log's end is read when it is reopened.
const RESUME_TAIL: u64 = 1 << 20;

/// How a checkpoint line is recognised when the log is reopened.
const CHECKPOINT_MARK: &[u8] = b"\"event\":\"checkpoint\"";

/// Where the chain ends: the next line's number and the previous line's hash.
struct Chain {
    seq: u64,
    prev: String,
    since_checkpoint: u64,
}

impl Chain {
    /// Reads the end of an existing log (its last [`RESUME_TAIL`] bytes; the whole file
    /// only once, for a log written before chaining). A last line cut short by a crash is
    /// ended with a newline, so that it stays visible (and `audit verify` names it).
    fn resume(path: &Path, file: &mut File) -> std::io::Result<Self> {
        use std::io::{BufRead as _, Read as _, Seek as _};
        let len = file.metadata()?.len();
        if len == 0 {
            return Ok(Self { seq: 0, prev: GENESIS.into(), since_checkpoint: 0 });
        }
        let from = len.saturating_sub(RESUME_TAIL);
        let mut tail = Vec::new();
        let mut reader = File::open(path)?;
        reader.seek(std::io::SeekFrom::Start(from))?;
        reader.read_to_end(&mut tail)?;
        if tail.last() != Some(&b'\n') {
            tracing::error!(path = %path.display(), "The audit log's last line was cut short (a crash?); it is kept as it is.");
            file.write_all(b"\n")?;
            file.sync_data()?;
        }
        let mut lines: Vec<&[u8]> = tail.split(|b| *b == b'\n').filter(|l| !l.is_empty()).collect();
        if from > 0 && !lines.is_empty() {
            // The first piece may be the end of a longer line.
            lines.remove(0);
        }
        let last = lines.last().copied().unwrap_or_default();
        let last_seq = serde_json::from_slice::<serde_json::Value>(last)
            .ok()
            .and_then(|v| v.get("seq").and_then(serde_json::Value::as_u64));
        let seq = match last_seq {
            Some(s) => s + 1,
            // A log from before chaining: its lines are counted once.
            None => std::io::BufReader::new(File::open(path)?).split(b'\n').count() as u64,
        };
        let since_checkpoint =
            lines.iter().rev().take_while(|l| !l.windows(CHECKPOINT_MARK.len()).any(|w| w == CHECKPOINT_MARK)).count()
                as u64;
        Ok(Self { seq, prev: sha256_hex(last), since_checkpoint })
    }

    /// The chained line for a record (`{"seq":…,"prev":…,` then the record's fields).
    fn link(&mut self, record: &[u8]) -> Vec<u8> {
        let mut line = format!("{{\"seq\":{},\"prev\":\"{}\",", self.seq, self.prev).into_bytes();
        line.extend_from_slice(&record[1..]);
        self.prev = sha256_hex(&line);
        self.seq += 1;
        line.push(b'\n');
        line
    }

    fn checkpoint(&mut self, signer: &Signer, reason: &str) -> Result<Vec<u8>, String> {
        let signature = signer.sign(&checkpoint_message(self.seq, &self.prev))?;
        let rec = CheckpointRecord {
            event: "checkpoint",
            ts: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            reason,
            key: &signer.public_b64,
            signature,
        };
        let body = serde_json::to_vec(&rec).map_err(|e| e.to_string())?;
        self.since_checkpoint = 0;
        Ok(self.link(&body))
    }
}

fn writer(mut file: File, mut chain: Chain, mut rx: mpsc::Receiver<Pending>, head: &Mutex<Head>) {
    let mut signer: Option<Arc<Signer>> = None;
    while let Some(first) = rx.blocking_recv() {
        let mut batch = vec![first];
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        // The chain only moves on when the batch is on disk: a failed write is retried
        // from the same place by the next batch.
        let saved = (chain.seq, chain.prev.clone(), chain.since_checkpoint);
        let mut buf = Vec::new();
        let mut failure = None;
        for (op, _) in &mut batch {
            match op {
                Op::Record(rec) => {
                    buf.extend_from_slice(&chain.link(rec));
                    chain.since_checkpoint += 1;
                    if chain.since_checkpoint >= CHECKPOINT_EVERY {
                        if let Some(s) = &signer {
                            match chain.checkpoint(s, "periodic") {
                                Ok(line) => buf.extend_from_slice(&line),
                                Err(e) => tracing::error!(error = %e, "Audit checkpoint not signed."),
                            }
                        }
                    }
                }
                Op::Checkpoint(reason) => {
                    if let Some(s) = &signer {
                        if chain.since_checkpoint > 0 {
                            match chain.checkpoint(s, reason) {
                                Ok(line) => buf.extend_from_slice(&line),
                                Err(e) => failure = Some(e),
                            }
                        }
                    }
                }
                Op::Signer(s) => {
                    if let Some(s) = s.take() {
                        signer = Some(s);
                    }
                }
            }
        }
        let result = match failure {
            Some(e) => Err(e),
            None => file.write_all(&buf).and_then(|()| file.sync_data()).map_err(|e| e.to_string()),
        };
        match &result {
            Err(e) => {
                tracing::error!(error = %e, "Audit log write failed; results are held back until it works again.");
                (chain.seq, chain.prev, chain.since_checkpoint) = saved;
            }
            Ok(()) => {
                if let (Ok(mut h), Some(last)) = (head.lock(), chain.seq.checked_sub(1)) {
                    h.last = Some((last, chain.prev.clone()));
                }
            }
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
}

#[cfg(test)]
mod chain_tests {
    use super::*;

    fn signer() -> Signer {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        Signer::from_pkcs8(&key.serialize_der()).expect("signer")
    }

    fn job(i: usize) -> serde_json::Value {
        serde_json::json!({ "event": "job", "job_id": format!("job-{i}"), "rows_read": i, "bytes_sent": 10 })
    }

    /// A log of `n` job records with a shutdown checkpoint, as the agent writes it.
    async fn written(n: usize) -> (tempfile::TempDir, PathBuf, Vec<u8>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.log");
        let log = AuditLog::open(&path).expect("open");
        let s = signer();
        let public = aws_lc_rs::signature::KeyPair::public_key(&s.key).as_ref().to_vec();
        log.set_signer(s).await.expect("signer");
        for i in 0..n {
            log.record(&job(i)).await.expect("record");
        }
        log.checkpoint("shutdown").await.expect("checkpoint");
        (dir, path, public)
    }

    fn lines(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path).expect("read").lines().map(str::to_owned).collect()
    }

    fn rewrite(path: &Path, lines: &[String]) {
        std::fs::write(path, lines.iter().map(|l| format!("{l}\n")).collect::<String>()).expect("write");
    }

    #[tokio::test]
    async fn an_untouched_log_verifies_with_periodic_and_shutdown_checkpoints() {
        let (_d, path, public) = written(250).await;
        let all = lines(&path);
        // 250 records, a checkpoint after each 100, and one at shutdown.
        assert_eq!(all.len(), 253);
        let r = verify(&path, Some(&public)).expect("verify");
        assert_eq!(r.finding, None, "{r:?}");
        assert_eq!((r.records, r.checkpoints, r.after_last_checkpoint), (253, 3, 0));
        assert_eq!(r.last_signed_by_current_key, Some(true));
        let other = signer();
        let r = verify(&path, Some(aws_lc_rs::signature::KeyPair::public_key(&other.key).as_ref())).expect("v");
        assert_eq!(r.last_signed_by_current_key, Some(false));
        let first: serde_json::Value = serde_json::from_str(&all[0]).expect("json");
        assert_eq!((first["seq"].as_u64(), first["prev"].as_str()), (Some(0), Some(GENESIS)));
    }

    #[tokio::test]
    async fn a_cut_tail_is_invisible_to_the_chain_alone_and_caught_by_the_reported_head() {
        // 77 records, a checkpoint after the 100th never came: the agent crashed, or
        // someone cut the end. What the agent last told the control plane is its head.
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.log");
        let log = AuditLog::open(&path).expect("open");
        assert_eq!(log.head(), None, "no head before a key and a record");
        let s = signer();
        let public = aws_lc_rs::signature::KeyPair::public_key(&s.key).as_ref().to_vec();
        log.set_signer(s).await.expect("signer");
        for i in 0..77 {
            log.record(&job(i)).await.expect("record");
        }
        let head = log.head().expect("a head");
        assert_eq!(head.seq, 76);
        assert_eq!(head.verify().expect("signed"), public);
        let all = lines(&path);
        // The whole log reaches the head.
        let r = verify_with_head(&path, Some(&public), Some(&head)).expect("verify");
        assert_eq!((r.finding.clone(), r.head.clone()), (None, Some(HeadCheck { seq: 76, reached: true })));
        // The last 27 records cut: the chain alone cannot tell, and says so...
        rewrite(&path, &all[..50]);
        let r = verify(&path, Some(&public)).expect("verify");
        assert_eq!((r.finding.clone(), r.after_last_checkpoint), (None, 50));
        let text = show::describe(&path, &r);
        assert!(text.contains("NOT PROVEN: the last 50 record(s)"), "{text}");
        assert!(!text.contains("nothing before it was cut"), "{text}");
        // ...the head does.
        let r = verify_with_head(&path, Some(&public), Some(&head)).expect("verify");
        let f = r.finding.expect("a finding");
        assert!(
            f.problem.contains("ends at record 49") && f.problem.contains("27 record(s) were cut"),
            "{}",
            f.problem
        );
        // A rewritten end (same length, another last record) is caught too.
        let mut forged = all.clone();
        forged[76] = forged[76].replace("job-76", "job-XX");
        rewrite(&path, &forged);
        let f = verify_with_head(&path, Some(&public), Some(&head)).expect("verify").finding.expect("finding");
        assert!(f.problem.contains("record 76 is not the one") || f.problem.contains("altered"), "{}", f.problem);
        // A head another key signed proves nothing about this log.
        rewrite(&path, &all);
        let other = AuditLog::open(&dir.path().join("other.log")).expect("open");
        other.set_signer(signer()).await.expect("signer");
        other.record(&job(0)).await.expect("record");
        let foreign = other.head().expect("head");
        let f = verify_with_head(&path, Some(&public), Some(&foreign)).expect("verify").finding.expect("finding");
        assert!(f.problem.contains("another agent's head"), "{}", f.problem);
    }

    #[tokio::test]
    async fn every_kind_of_tampering_is_named_with_its_line() {
        let (_d, path, _) = written(30).await;
        let good = lines(&path);
        let finding = |edited: Vec<String>| {
            rewrite(&path, &edited);
            verify(&path, None).expect("verify").finding.expect("a finding")
        };
        // An edited value: the next line's `prev` no longer matches.
        let mut e = good.clone();
        e[9] = e[9].replace("\"rows_read\":9", "\"rows_read\":0");
        let f = finding(e);
        assert_eq!(f.line, 11, "{f:?}");
        assert!(f.problem.contains("line 10 was altered"), "{f:?}");
        // A removed record.
        let mut e = good.clone();
        e.remove(19);
        let f = finding(e);
        assert_eq!(f.line, 20, "{f:?}");
        assert!(f.problem.contains("removed"), "{f:?}");
        // Two records swapped.
        let mut e = good.clone();
        e.swap(4, 5);
        assert_eq!(finding(e).line, 5);
        // A record inserted (a copy of another).
        let mut e = good.clone();
        e.insert(7, good[3].clone());
        let f = finding(e);
        assert_eq!(f.line, 8, "{f:?}");
        assert!(f.problem.contains("inserted"), "{f:?}");
        // A record without chain fields, inserted.
        let mut e = good.clone();
        e.insert(2, r#"{"event":"job","job_id":"forged"}"#.into());
        assert_eq!(finding(e).line, 3);
        // The last record edited: caught by the shutdown checkpoint after it.
        let mut e = good.clone();
        let last_job = e.len() - 2;
        e[last_job] = e[last_job].replace("job-29", "job-99");
        assert_eq!(finding(e).line, good.len() as u64);
        // A checkpoint re-signed by another key over the same place still verifies as a
        // signature, but a forged signature does not.
        let mut e = good.clone();
        let cp = e.len() - 1;
        let v: serde_json::Value = serde_json::from_str(&e[cp]).expect("json");
        let sig = v["signature"].as_str().expect("sig").to_owned();
        let mut forged = sig.clone().into_bytes();
        forged[10] = if forged[10] == b'A' { b'B' } else { b'A' };
        e[cp] = e[cp].replace(&sig, std::str::from_utf8(&forged).expect("utf8"));
        let f = finding(e);
        assert!(f.problem.contains("signature"), "{f:?}");
        // Not JSON at all.
        let mut e = good.clone();
        e[0] = "garbage".into();
        assert_eq!(finding(e).line, 1);
        rewrite(&path, &good);
        assert_eq!(verify(&path, None).expect("verify").finding, None);
    }

    #[tokio::test]
    async fn a_reopened_log_continues_its_chain_and_older_unchained_lines_are_counted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.log");
        std::fs::write(&path, "{\"event\":\"job\",\"job_id\":\"old-1\"}\n{\"event\":\"job\",\"job_id\":\"old-2\"}\n")
            .expect("legacy");
        for round in 0..3 {
            let log = AuditLog::open(&path).expect("open");
            log.set_signer(signer()).await.expect("signer");
            for i in 0..5 {
                log.record(&job(round * 10 + i)).await.expect("record");
            }
            log.checkpoint("shutdown").await.expect("checkpoint");
        }
        let r = verify(&path, None).expect("verify");
        assert_eq!(r.finding, None, "{r:?}");
        assert_eq!((r.unchained, r.records, r.checkpoints, r.signers.len()), (2, 20, 3, 3));
    }
}
