//! The audit writer thread: it links every record into the hash chain, signs a
//! checkpoint every [`CHECKPOINT_EVERY`] records and at shutdown, and group-commits
//! (one `fdatasync` for every record waiting) before it acknowledges them.

use std::fs::File;
use std::io::Write as _;
use std::path::Path;
use std::sync::{Arc, Mutex};

use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_ASN1_SIGNING};
use outpost_protocol::encoding::{b64_encode, sha256_hex};
use serde::Serialize;
use tokio::sync::mpsc;

use super::{checkpoint_message, Head, Op, Pending, WriteError, CHECKPOINT_EVERY, GENESIS};

/// Signs checkpoints with the agent's private key.
pub struct Signer {
    pub(super) key: EcdsaKeyPair,
    pub(super) public_b64: String,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer").field("public", &self.public_b64).finish_non_exhaustive()
    }
}

impl Signer {
    /// A signer from the agent's PKCS#8 (DER) ECDSA P-256 key.
    pub fn from_pkcs8(der: &[u8]) -> Result<Self, aws_lc_rs::error::KeyRejected> {
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, der)?;
        let public_b64 = b64_encode(key.public_key().as_ref());
        Ok(Self { key, public_b64 })
    }

    pub(super) fn sign(&self, msg: &[u8]) -> Result<String, aws_lc_rs::error::Unspecified> {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        self.key.sign(&rng, msg).map(|s| b64_encode(s.as_ref()))
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

/// How much of the log's end is read when it is reopened.
const RESUME_TAIL: u64 = 1 << 20;

/// How a checkpoint line is recognised when the log is reopened.
const CHECKPOINT_MARK: &[u8] = b"\"event\":\"checkpoint\"";

/// Where the chain ends: the next line's number and the previous line's hash.
pub(super) struct Chain {
    pub(super) seq: u64,
    pub(super) prev: String,
    since_checkpoint: u64,
}

impl Chain {
    /// Reads the end of an existing log (its last [`RESUME_TAIL`] bytes; the whole file
    /// only once, for a log written before chaining). A last line cut short by a crash is
    /// ended with a newline, so that it stays visible (and `audit verify` names it).
    pub(super) fn resume(path: &Path, file: &mut File) -> std::io::Result<Self> {
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

    fn checkpoint(&mut self, signer: &Signer, reason: &str) -> Result<Vec<u8>, WriteError> {
        let signature = signer.sign(&checkpoint_message(self.seq, &self.prev)).map_err(WriteError::Sign)?;
        let rec = CheckpointRecord {
            event: "checkpoint",
            ts: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            reason,
            key: &signer.public_b64,
            signature,
        };
        let body = serde_json::to_vec(&rec).map_err(|e| WriteError::Encode(Arc::new(e)))?;
        self.since_checkpoint = 0;
        Ok(self.link(&body))
    }
}

pub(super) fn writer(mut file: File, mut chain: Chain, mut rx: mpsc::Receiver<Pending>, head: &Mutex<Head>) {
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
            None => file.write_all(&buf).and_then(|()| file.sync_data()).map_err(|e| WriteError::Disk(Arc::new(e))),
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
