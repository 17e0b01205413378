//! Checking the audit log's hash chain and checkpoints (`outpost-agent audit verify`),
//! and reading its last records (`audit tail`).
//!
//! Verification reads the file line by line and stops at the first problem: a line that
//! is not a JSON record, a `seq` that is not the line's number (records removed, inserted
//! or reordered), a `prev` that is not the SHA-256 of the line before (that line was
//! altered), or a checkpoint whose signature does not verify. Lines written before the
//! agent chained its log (no `seq`) may only come first; they are counted, not covered.

use std::collections::BTreeMap;
use std::io::BufRead as _;
use std::path::Path;

use aws_lc_rs::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_ASN1};
use outpost_protocol::encoding::{b64_decode, sha256_hex};
use serde::Serialize;

use super::{checkpoint_message, GENESIS};

/// Reading the log failed (not a finding about its content).
#[derive(Debug, thiserror::Error)]
#[error("cannot read audit log {path}: {source}")]
pub struct VerifyError {
    /// File.
    pub path: String,
    /// Cause.
    #[source]
    pub source: std::io::Error,
}

/// The first problem found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// 1-based line number in the file.
    pub line: u64,
    /// What is wrong there, and what it means.
    pub problem: String,
}

/// What verification found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Lines read (up to the finding, if any).
    pub records: u64,
    /// Lines from before the log was chained (at its start; not covered).
    pub unchained: u64,
    /// Checkpoints whose signature verified.
    pub checkpoints: u64,
    /// Line of the last verified checkpoint.
    pub last_checkpoint_line: Option<u64>,
    /// Records after the last checkpoint (covered by the chain alone).
    pub after_last_checkpoint: u64,
    /// Keys that signed checkpoints (SHA-256 of the public key, hex) and how many each.
    pub signers: BTreeMap<String, u64>,
    /// Whether the last checkpoint was signed by `current_key` (when one was given).
    pub last_signed_by_current_key: Option<bool>,
    /// `seq` of the last record read.
    pub last_seq: Option<u64>,
    /// The head the control plane holds, when one was given, and whether the log
    /// reaches it.
    pub head: Option<HeadCheck>,
    /// The first problem; `None` when the whole log verified.
    pub finding: Option<Finding>,
}

/// The log compared with a head the agent signed and the control plane kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HeadCheck {
    /// The head's `seq`.
    pub seq: u64,
    /// Whether the log holds that record with that hash.
    pub reached: bool,
}

/// Verifies the log at `path`. `current_key` is the agent's public key now (the
/// uncompressed P-256 point of its certificate), to say whether the last checkpoint was
/// signed by it.
pub fn verify(path: &Path, current_key: Option<&[u8]>) -> Result<Report, VerifyError> {
    verify_with_head(path, current_key, None)
}

/// Like [`verify`], and checks that the log reaches `head` (signed by the agent, kept by
/// the control plane): a log that ends before it, or holds another record there, was cut
/// or altered after the agent reported it.
pub fn verify_with_head(
    path: &Path,
    current_key: Option<&[u8]>,
    head: Option<&outpost_protocol::audit_head::AuditHead>,
) -> Result<Report, VerifyError> {
    let err = |source| VerifyError { path: path.display().to_string(), source };
    let file = std::fs::File::open(path).map_err(err)?;
    let mut reader = std::io::BufReader::new(file);
    let mut report = Report::default();
    let mut prev = GENESIS.to_owned();
    let mut chained = false;
    let mut last_key: Option<Vec<u8>> = None;
    let mut raw = Vec::new();
    let mut line_no = 0u64;
    let mut head_hash: Option<String> = None;
    loop {
        raw.clear();
        if reader.read_until(b'\n', &mut raw).map_err(err)? == 0 {
            break;
        }
        line_no += 1;
        let ended = raw.last() == Some(&b'\n');
        if ended {
            raw.pop();
        }
        let found = |problem: String| Some(Finding { line: line_no, problem });
        report.finding = check_line(&raw, line_no, &prev, &mut chained, &mut report, &mut last_key)
            .err()
            .and_then(|t| found(t.to_string()));
        if report.finding.is_none() && !ended {
            report.finding = found("the last line has no newline: a write was cut short (a crash?)".into());
        }
        if report.finding.is_some() {
            break;
        }
        report.records += 1;
        prev = sha256_hex(&raw);
        if chained {
            report.last_seq = Some(line_no - 1);
            if head.is_some_and(|h| h.seq == line_no - 1) {
                head_hash = Some(prev.clone());
            }
        }
    }
    if let (Some(current), Some(last)) = (current_key, &last_key) {
        report.last_signed_by_current_key = Some(current == last.as_slice());
    }
    if let Some(h) = head {
        check_head(&mut report, h, head_hash.as_deref(), current_key, line_no);
    }
    Ok(report)
}

fn check_head(
    report: &mut Report,
    h: &outpost_protocol::audit_head::AuditHead,
    found: Option<&str>,
    current_key: Option<&[u8]>,
    lines: u64,
) {
    let key = match h.verify() {
        Ok(k) => k,
        Err(e) => {
            report.finding.get_or_insert(Finding { line: 0, problem: format!("the head given is not valid: {e}") });
            return;
        }
    };
    let known = report.signers.contains_key(&sha256_hex(&key)) || current_key == Some(key.as_slice());
    if !known {
        report.finding.get_or_insert(Finding {
            line: 0,
            problem: "the head is signed by a key that signed no checkpoint of this log and is not the agent's \
                      current key: it is another agent's head"
                .into(),
        });
        return;
    }
    let reached = found == Some(h.hash.as_str());
    report.head = Some(HeadCheck { seq: h.seq, reached });
    if reached || report.finding.is_some() {
        return;
    }
    let problem = match (found, report.last_seq) {
        (Some(_), _) => format!(
            "record {} is not the one the agent reported to the control plane: the log was rewritten from there",
            h.seq
        ),
        (None, Some(last)) if last < h.seq => format!(
            "the log ends at record {last} but the agent reported record {} to the control plane: {} record(s) \
             were cut from the end",
            h.seq,
            h.seq - last
        ),
        (None, None) if report.unchained == 0 => format!(
            "the log holds no record but the agent reported record {} to the control plane: {} record(s) were \
             cut from the end",
            h.seq,
            h.seq + 1
        ),
        _ => format!("the log does not hold record {}, which the agent reported to the control plane", h.seq),
    };
    report.finding = Some(Finding { line: lines, problem });
}

/// What a line shows was done to the log: the problem text of a [`Finding`].
#[derive(Debug, thiserror::Error)]
enum Tampering {
    /// The line does not parse. The text names the parser's reason on purpose: it is
    /// the finding an operator reads.
    #[error("not a JSON record ({0}): the line was altered")]
    NotJson(#[source] serde_json::Error),
    /// It parses to something other than an object.
    #[error("not a JSON object: the line was altered")]
    NotObject,
    /// An unchained line after the chain began.
    #[error("no `seq` and `prev`: a record was inserted after the chain began, or its chain fields were removed")]
    Unchained,
    /// `seq` is not a number.
    #[error("`seq` is not a number: the line was altered")]
    SeqNotNumber,
    /// A gap before this line.
    #[error(
        "record {seq} where record {expected} belongs: {} record(s) before this line were removed or moved",
        seq - expected
    )]
    Removed {
        /// The line's `seq`.
        seq: u64,
        /// The `seq` its place calls for.
        expected: u64,
    },
    /// A repeat or a step back.
    #[error("record {seq} where record {expected} belongs: records were inserted, duplicated or moved")]
    Inserted {
        /// The line's `seq`.
        seq: u64,
        /// The `seq` its place calls for.
        expected: u64,
    },
    /// No `prev` field.
    #[error("no `prev`: the line was altered")]
    NoPrev,
    /// The first line does not start from the genesis value.
    #[error("`prev` of the first line is not the genesis value: records before it were removed")]
    NotGenesis,
    /// `prev` does not hash the line before.
    #[error("`prev` is not the SHA-256 of line {line}: line {line} was altered")]
    PrevMismatch {
        /// The line whose hash differs (the one before).
        line: u64,
    },
    /// A checkpoint whose key or signature cannot be read.
    #[error("a checkpoint without a readable key or signature: the line was altered")]
    CheckpointUnreadable,
    /// A checkpoint whose signature does not verify.
    #[error("the checkpoint's signature does not verify: the line was altered or forged")]
    CheckpointForged,
}

fn check_line(
    raw: &[u8],
    line_no: u64,
    prev: &str,
    chained: &mut bool,
    report: &mut Report,
    last_key: &mut Option<Vec<u8>>,
) -> Result<(), Tampering> {
    let value: serde_json::Value = serde_json::from_slice(raw).map_err(Tampering::NotJson)?;
    let obj = value.as_object().ok_or(Tampering::NotObject)?;
    let Some(seq) = obj.get("seq") else {
        if *chained {
            return Err(Tampering::Unchained);
        }
        report.unchained += 1;
        return Ok(());
    };
    *chained = true;
    let expected = line_no - 1;
    let seq = seq.as_u64().ok_or(Tampering::SeqNotNumber)?;
    if seq > expected {
        return Err(Tampering::Removed { seq, expected });
    }
    if seq < expected {
        return Err(Tampering::Inserted { seq, expected });
    }
    let stated = obj.get("prev").and_then(|p| p.as_str()).ok_or(Tampering::NoPrev)?;
    if stated != prev {
        return Err(if line_no == 1 { Tampering::NotGenesis } else { Tampering::PrevMismatch { line: line_no - 1 } });
    }
    if obj.get("event").and_then(|e| e.as_str()) == Some("checkpoint") {
        let key = obj.get("key").and_then(|k| k.as_str()).and_then(|k| b64_decode(k).ok());
        let sig = obj.get("signature").and_then(|k| k.as_str()).and_then(|k| b64_decode(k).ok());
        let (Some(key), Some(sig)) = (key, sig) else {
            return Err(Tampering::CheckpointUnreadable);
        };
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, &key)
            .verify(&checkpoint_message(seq, prev), &sig)
            .map_err(|_| Tampering::CheckpointForged)?;
        report.checkpoints += 1;
        report.last_checkpoint_line = Some(line_no);
        report.after_last_checkpoint = 0;
        *report.signers.entry(sha256_hex(&key)).or_default() += 1;
        *last_key = Some(key);
    } else {
        report.after_last_checkpoint += 1;
    }
    Ok(())
}

/// The last `n` records of the log that `keep` accepts, oldest first (a line that is not
/// JSON comes back as a string).
pub fn tail(
    path: &Path,
    n: usize,
    keep: &dyn Fn(&serde_json::Value) -> bool,
) -> Result<Vec<serde_json::Value>, VerifyError> {
    let err = |source| VerifyError { path: path.display().to_string(), source };
    let file = std::fs::File::open(path).map_err(err)?;
    let mut last = std::collections::VecDeque::with_capacity(n.min(10_000));
    for line in std::io::BufReader::new(file).lines() {
        let line = line.map_err(err)?;
        let record = serde_json::from_str(&line).unwrap_or(serde_json::Value::String(line));
        if n == 0 || !keep(&record) {
            continue;
        }
        if last.len() == n {
            last.pop_front();
        }
        last.push_back(record);
    }
    Ok(last.into())
}

#[cfg(test)]
mod tests {
    use super::Tampering;

    /// `audit verify` prints these findings (and `--json` carries them): the words an
    /// operator and their scripts read stay as they were.
    #[test]
    fn each_kind_of_tampering_keeps_its_finding_text() {
        let cases = [
            (Tampering::NotObject, "not a JSON object: the line was altered"),
            (
                Tampering::Unchained,
                "no `seq` and `prev`: a record was inserted after the chain began, or its chain fields were removed",
            ),
            (Tampering::SeqNotNumber, "`seq` is not a number: the line was altered"),
            (
                Tampering::Removed { seq: 7, expected: 4 },
                "record 7 where record 4 belongs: 3 record(s) before this line were removed or moved",
            ),
            (
                Tampering::Inserted { seq: 2, expected: 4 },
                "record 2 where record 4 belongs: records were inserted, duplicated or moved",
            ),
            (Tampering::NoPrev, "no `prev`: the line was altered"),
            (
                Tampering::NotGenesis,
                "`prev` of the first line is not the genesis value: records before it were removed",
            ),
            (Tampering::PrevMismatch { line: 9 }, "`prev` is not the SHA-256 of line 9: line 9 was altered"),
            (Tampering::CheckpointUnreadable, "a checkpoint without a readable key or signature: the line was altered"),
            (Tampering::CheckpointForged, "the checkpoint's signature does not verify: the line was altered or forged"),
        ];
        for (t, text) in cases {
            assert_eq!(t.to_string(), text);
        }
        let e = serde_json::from_slice::<serde_json::Value>(b"{").expect_err("not JSON");
        let t = Tampering::NotJson(e);
        assert!(t.to_string().starts_with("not a JSON record (EOF while parsing"), "{t}");
        assert!(t.to_string().ends_with("): the line was altered"), "{t}");
    }
}
