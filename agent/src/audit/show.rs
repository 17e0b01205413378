//! Human-readable forms of the audit log for `outpost-agent audit verify` and `audit tail`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::verify::Report;

/// The public key (uncompressed P-256 point) of the PEM certificate at `path`.
pub fn certificate_key(path: &Path) -> Option<Vec<u8>> {
    use rustls_pki_types::pem::PemObject as _;
    let der = rustls_pki_types::CertificateDer::from_pem_file(path).ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
    Some(cert.public_key().subject_public_key.data.to_vec())
}

/// Why `--head` could not be read. Each text starts with the file and repeats its cause's
/// words on purpose: the CLI prints this error alone (`error: --head: …`).
#[derive(Debug, thiserror::Error)]
pub enum HeadFileError {
    /// The file (or standard input) could not be read.
    #[error("{}: {source}", .path.display())]
    Read {
        /// The file given.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// It is not JSON.
    #[error("{}: {source}", .path.display())]
    NotJson {
        /// The file given.
        path: PathBuf,
        /// The parser's reason.
        #[source]
        source: serde_json::Error,
    },
    /// The control plane's answer holds no head.
    #[error(
        "{}: the control plane holds no audit head for this agent yet (it reports one with its next heartbeat or result)",
        .path.display()
    )]
    NoHeadYet {
        /// The file given.
        path: PathBuf,
    },
    /// JSON, but not an audit head.
    #[error("{}: not an audit head: {source}", .path.display())]
    NotAHead {
        /// The file given.
        path: PathBuf,
        /// The parser's reason.
        #[source]
        source: serde_json::Error,
    },
}

/// Reads an audit head from `path` (`-`: standard input): the control plane's answer
/// (`{"head": {…}, …}`) or the head itself.
pub fn read_head(path: &Path) -> Result<outpost_protocol::audit_head::AuditHead, HeadFileError> {
    use std::io::Read as _;
    let mut text = String::new();
    let read = if path == Path::new("-") {
        std::io::stdin().take(64 * 1024).read_to_string(&mut text)
    } else {
        std::fs::File::open(path).and_then(|f| f.take(64 * 1024).read_to_string(&mut text))
    };
    read.map_err(|source| HeadFileError::Read { path: path.to_owned(), source })?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|source| HeadFileError::NotJson { path: path.to_owned(), source })?;
    let head = value.get("head").cloned().unwrap_or(value);
    if head.is_null() {
        return Err(HeadFileError::NoHeadYet { path: path.to_owned() });
    }
    serde_json::from_value(head).map_err(|source| HeadFileError::NotAHead { path: path.to_owned(), source })
}

/// A report a reviewer can read: what verified, what is covered only by the chain, and
/// the first problem with its line.
pub fn describe(path: &Path, r: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}: {} record(s) read", path.display(), r.records);
    if r.unchained > 0 {
        let _ = writeln!(
            out,
            "  {} record(s) at the start were written before the log was chained; they are not covered",
            r.unchained
        );
    }
    let _ = writeln!(out, "  {} signed checkpoint(s) verified", r.checkpoints);
    for (key, n) in &r.signers {
        let _ = writeln!(out, "    key sha256:{}… signed {n}", &key[..16]);
    }
    match (r.last_checkpoint_line, r.last_signed_by_current_key) {
        (Some(line), Some(true)) => {
            let _ = writeln!(out, "  last checkpoint at line {line}, signed by the agent's current key");
        }
        (Some(line), Some(false)) => {
            let _ = writeln!(
                out,
                "  last checkpoint at line {line}, signed by an earlier key of this agent (it renews its key with its certificate)"
            );
        }
        (Some(line), None) => {
            let _ = writeln!(out, "  last checkpoint at line {line}");
        }
        (None, _) => {}
    }
    if r.after_last_checkpoint > 0 {
        let _ = writeln!(
            out,
            "  {} record(s) after the last checkpoint are covered by the hash chain alone \
             (the agent signs a checkpoint every {} records and when it stops)",
            r.after_last_checkpoint,
            super::CHECKPOINT_EVERY
        );
    }
    match &r.finding {
        None => {
            let upto = r.last_seq.map_or_else(|| "the end".to_owned(), |s| format!("record {s}"));
            let _ = writeln!(
                out,
                "OK: no record up to {upto} was altered, removed, inserted or reordered (the hash chain holds)"
            );
            match &r.head {
                Some(h) => {
                    let _ = writeln!(
                        out,
                        "OK: the log reaches record {}, the head the agent signed and reported to the control \
                         plane: nothing before it was cut from the end",
                        h.seq
                    );
                }
                None if r.records == 0 => {
                    let _ = writeln!(
                        out,
                        "NOT PROVEN: the log holds no record; records cut from it would leave no trace here. Give \
                         --head (from GET /v1/agents/NAME/audit-head) to check it against what the agent reported"
                    );
                }
                None if r.after_last_checkpoint > 0 => {
                    let _ = writeln!(
                        out,
                        "NOT PROVEN: the last {} record(s) follow the last signed checkpoint; records cut from the \
                         end after it would leave no trace here. Give --head (from GET /v1/agents/NAME/audit-head) \
                         to check the end against what the agent reported",
                        r.after_last_checkpoint
                    );
                }
                None => {}
            }
        }
        Some(f) => {
            let _ = writeln!(out, "TAMPERED: line {}: {}", f.line, f.problem);
        }
    }
    out
}

/// Whether a record is a job asked for by `who` (the requester's name or account id).
pub fn requested_by(v: &serde_json::Value, who: &str) -> bool {
    let Some(r) = v.get("requester") else { return false };
    ["user", "user_id"].iter().any(|k| r.get(*k).and_then(|x| x.as_str()) == Some(who))
}

/// One record on one line: time, event, job, verdict and outcome, and what left.
pub fn line(v: &serde_json::Value) -> String {
    let s = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("-");
    let n = |k: &str| v.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
    let Some(obj) = v.as_object() else {
        return format!("(not a JSON record) {v}");
    };
    let seq = obj.get("seq").and_then(serde_json::Value::as_u64).map_or_else(|| "-".into(), |q| q.to_string());
    let head = format!("#{seq:<6} {} {:<10}", s("ts"), s("event"));
    match s("event") {
        "job" => {
            let mut text = format!(
                "{head} job {} {}→{} conn={} rows={} sent={}B",
                s("job_id"),
                s("verdict"),
                s("outcome"),
                s("connection"),
                n("rows_read"),
                n("bytes_sent"),
            );
            if let Some(who) = obj.get("requester").and_then(|r| r.get("user")).and_then(|x| x.as_str()) {
                let _ = write!(text, " by={who}");
            }
            if let Some(reason) = obj.get("reason").and_then(|x| x.as_str()) {
                let _ = write!(text, " reason={reason}");
            }
            if let Some(sha) = obj.get("body_sha256").and_then(|x| x.as_str()) {
                let _ = write!(text, " body_sha256={}…", &sha[..sha.len().min(16)]);
            }
            if let Some(sha) = obj.get("error_sha256").and_then(|x| x.as_str()) {
                let _ = write!(text, " error_sha256={}…", &sha[..sha.len().min(16)]);
            }
            if let Some(egress) = obj.get("egress").and_then(|x| x.as_array()) {
                let parts: Vec<String> = egress
                    .iter()
                    .map(|d| {
                        format!(
                            "{}({})",
                            d.get("action").and_then(|x| x.as_str()).unwrap_or("?"),
                            d.get("rule").and_then(|x| x.as_str()).unwrap_or("?")
                        )
                    })
                    .collect();
                let _ = write!(text, " egress={}", parts.join(","));
            }
            text
        }
        "key_set" => format!(
            "{head} key set v{} {} added={} removed={}",
            n("version"),
            s("verdict"),
            v.get("added").map_or_else(|| "[]".into(), ToString::to_string),
            v.get("removed").map_or_else(|| "[]".into(), ToString::to_string)
        ),
        "cache" => format!("{head} cache entry {} for job {} ({})", s("verdict"), s("job_id"), s("reason")),
        "checkpoint" => format!("{head} signed checkpoint ({})", s("reason")),
        "config_reload" => {
            let sha = s("config_sha256");
            let mut text = format!("{head} agent.yaml {} sha256={}…", s("outcome"), &sha[..sha.len().min(16)]);
            if let Some(names) = obj.get("connections").and_then(|x| x.as_array()).filter(|a| !a.is_empty()) {
                let names: Vec<&str> = names.iter().filter_map(|n| n.as_str()).collect();
                let _ = write!(text, " connections={}", names.join(","));
            }
            if let Some(reason) = obj.get("reason").and_then(|x| x.as_str()) {
                let _ = write!(text, " reason={reason:?}");
            }
            text
        }
        // A kind this version does not know (from a newer agent): its fields by name,
        // as key=value, not one JSON blob.
        _ => {
            let fields: Vec<String> = obj
                .iter()
                .filter(|(k, _)| !matches!(k.as_str(), "seq" | "ts" | "event" | "prev" | "hash"))
                .map(|(k, x)| match x.as_str() {
                    Some(text) => format!("{k}={text}"),
                    None => format!("{k}={x}"),
                })
                .collect();
            format!("{head} {}", fields.join(" "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{line, read_head, HeadFileError};

    #[test]
    fn every_record_kind_reads_as_one_line_without_raw_json() {
        let applied = serde_json::json!({"seq": 4, "prev": "00", "event": "config_reload", "ts": "2026-12-05T08:00:00.000Z",
            "outcome": "applied", "config_sha256": "ab".repeat(32), "reason": null, "connections": ["sample", "wh"]});
        let text = line(&applied);
        assert_eq!(
            text,
            "#4      2026-12-05T08:00:00.000Z config_reload agent.yaml applied sha256=abababababababab… connections=sample,wh"
        );
        let refused = serde_json::json!({"seq": 5, "event": "config_reload", "ts": "t", "outcome": "refused",
            "config_sha256": "cd".repeat(32), "reason": "agent.yaml:12:13: must be between 1 and 1000000", "connections": []});
        let text = line(&refused);
        assert!(text.contains("agent.yaml refused") && text.contains("reason=\"agent.yaml:12:13: must be"), "{text}");
        assert!(!text.contains('{'), "{text}");
        let future = serde_json::json!({"seq": 6, "prev": "00", "event": "new_kind", "ts": "t", "who": "ops", "n": 3});
        let text = line(&future);
        assert!(text.ends_with("new_kind   n=3 who=ops"), "{text}");
    }

    /// `audit verify --head FILE` says which file is wrong and why.
    #[test]
    fn a_head_file_that_holds_no_head_says_so_with_its_path() {
        let dir = std::env::temp_dir().join(format!("outpost-head-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let none = dir.join("none.json");
        std::fs::write(&none, r#"{"head": null}"#).expect("write");
        let e = read_head(&none).expect_err("no head");
        assert!(matches!(e, HeadFileError::NoHeadYet { .. }), "{e:?}");
        assert_eq!(
            e.to_string(),
            format!(
                "{}: the control plane holds no audit head for this agent yet (it reports one with its next \
                 heartbeat or result)",
                none.display()
            )
        );
        let bad = dir.join("bad.json");
        std::fs::write(&bad, r#"{"head": {"seq": "x"}}"#).expect("write");
        let e = read_head(&bad).expect_err("not a head");
        assert!(e.to_string().starts_with(&format!("{}: not an audit head: ", bad.display())), "{e}");
        assert!(std::error::Error::source(&e).is_some(), "the parser's reason is kept as the source");
        let missing = dir.join("missing.json");
        assert!(matches!(read_head(&missing), Err(HeadFileError::Read { .. })));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
