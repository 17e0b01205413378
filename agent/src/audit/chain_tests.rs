//! Unit tests of the hash chain: checkpoints, cut tails, tampering, reopening.

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
    assert!(f.problem.contains("ends at record 49") && f.problem.contains("27 record(s) were cut"), "{}", f.problem);
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
