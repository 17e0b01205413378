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
//!
//! Files: `records` (what a record says), `chain` (the writer thread: hash chain, signed
//! checkpoints, group commit), `verify` (checking a log), `show` (reading one for a person).

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

mod chain;
#[cfg(test)]
mod chain_tests;
mod records;
pub mod show;
#[cfg(test)]
mod tests;
mod verify;
pub use chain::Signer;
use chain::{writer, Chain};
pub use records::{AuditOutcome, AuditRecord, CacheRecord, ConfigRecord, KeySetRecord, ReloadOutcome};
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
    /// Writing failed; the job's result must not be sent. The text repeats the cause's
    /// words on purpose: logs and job failures print this error alone and said it this
    /// way before the cause was typed (chain printers skip a repeated cause).
    #[error("cannot write audit log: {0}")]
    Write(#[source] WriteError),
}

/// Why a record (or a checkpoint) did not reach the disk. `Clone`: one failed batch
/// answers every record that was in it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    /// The writer thread is gone (the agent is stopping).
    #[error("audit writer stopped")]
    Stopped,
    /// A record that does not serialise to a JSON object.
    #[error("an audit record must be a JSON object")]
    NotAnObject,
    /// A record (or a checkpoint) that does not serialise.
    #[error(transparent)]
    Encode(Arc<serde_json::Error>),
    /// Writing or syncing the file.
    #[error(transparent)]
    Disk(Arc<std::io::Error>),
    /// The agent's key did not sign a checkpoint.
    #[error(transparent)]
    Sign(aws_lc_rs::error::Unspecified),
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

type Pending = (Op, oneshot::Sender<Result<(), WriteError>>);

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
        self.tx.send((op, done_tx)).await.map_err(|_| AuditError::Write(WriteError::Stopped))?;
        done_rx.await.map_err(|_| AuditError::Write(WriteError::Stopped))?.map_err(AuditError::Write)
    }

    /// Appends a record and returns once it is on disk.
    pub async fn record<R: Serialize>(&self, rec: &R) -> Result<(), AuditError> {
        let line = serde_json::to_vec(rec).map_err(|e| AuditError::Write(WriteError::Encode(Arc::new(e))))?;
        if line.len() < 2 || line[0] != b'{' {
            return Err(AuditError::Write(WriteError::NotAnObject));
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
