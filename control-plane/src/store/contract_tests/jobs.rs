//! The contract of the job state machine (results, cancels, leases, expiry, keys, damaged
//! rows), on both backends.

use outpost_protocol::ids::new_job_id;

use super::*;

async fn the_same_result_twice_is_accepted_once_and_a_different_one_is_refused<S: Store>(store: &S) {
    let id = new_job_id();
    store.insert_job(job(&id, 5000)).await.expect("insert");
    let leased = store.lease_jobs(peer("edge-1"), 1001, 60, 10).await.expect("lease").jobs;
    assert_eq!(leased.len(), 1);
    let r = report(&id, b"{}");
    assert_eq!(
        store.complete_job(peer("edge-1"), r.clone(), "hash-a".into(), Some(b"{}".to_vec()), 1002).await.expect("c"),
        CompleteOutcome::Accepted
    );
    assert_eq!(
        store.complete_job(peer("edge-1"), r.clone(), "hash-a".into(), Some(b"{}".to_vec()), 1003).await.expect("c"),
        CompleteOutcome::Duplicate
    );
    assert_eq!(
        store
            .complete_job(peer("edge-1"), report(&id, b"[]"), "hash-b".into(), Some(b"[]".to_vec()), 1004)
            .await
            .expect("c"),
        CompleteOutcome::Conflict(JobState::Succeeded)
    );
    let stranger = store.complete_job(peer("edge-2"), r, "hash-a".into(), Some(b"{}".to_vec()), 1005).await;
    assert!(matches!(stranger, Err(StoreError::AgentRefused { .. })), "{stranger:?}");
    let rec = store.job(id, 1006, true).await.expect("job").expect("exists");
    assert_eq!(rec.state, JobState::Succeeded);
    assert_eq!(rec.body.as_deref(), Some(&b"{}"[..]));
}

/// Two different results of one job at once (a retry racing the first upload): one is
/// stored, the other is told it conflicts, never that the job does not exist.
async fn two_different_results_at_once_store_one_and_refuse_the_other<S: Store>(store: &S) {
    for round in 0..8_i64 {
        let id = new_job_id();
        store.insert_job(job(&id, 5000)).await.expect("insert");
        assert_eq!(store.lease_jobs(peer("edge-1"), 1001 + round, 60, 10).await.expect("lease").jobs.len(), 1);
        let (a, b) = tokio::join!(
            store.complete_job(peer("edge-1"), report(&id, b"{}"), "hash-a".into(), None, 1002 + round),
            store.complete_job(peer("edge-1"), report(&id, b"[]"), "hash-b".into(), None, 1002 + round),
        );
        let mut outcomes = [a.expect("a"), b.expect("b")];
        outcomes.sort_by_key(|o| format!("{o:?}"));
        assert_eq!(outcomes, [CompleteOutcome::Accepted, CompleteOutcome::Conflict(JobState::Succeeded)]);
    }
}

async fn a_cancel_ends_a_queued_job_and_is_told_to_the_agent_of_a_leased_one<S: Store>(store: &S) {
    let (queued, leased) = (new_job_id(), new_job_id());
    store.insert_job(job(&leased, 5000)).await.expect("insert");
    assert_eq!(store.lease_jobs(peer("edge-1"), 1001, 60, 10).await.expect("lease").jobs.len(), 1);
    store.insert_job(job(&queued, 5000)).await.expect("insert");
    assert_eq!(store.cancel_job(queued.clone(), 1002).await.expect("c"), CancelOutcome::Cancelled);
    assert_eq!(
        store.cancel_job(leased.clone(), 1002).await.expect("c"),
        CancelOutcome::Requested { agent: "edge-1".into() }
    );
    // The busy agent polls with max 0: it hears of the cancel once, and again only
    // after CANCEL_RESEND_SECS; the cancelled queued job is never leased.
    let b = store.lease_jobs(peer("edge-1"), 1003, 60, 0).await.expect("lease");
    assert_eq!((b.jobs.len(), b.cancel.clone()), (0, vec![leased.clone()]));
    assert!(store.lease_jobs(peer("edge-1"), 1004, 60, 10).await.expect("lease").cancel.is_empty());
    let b = store.lease_jobs(peer("edge-1"), 1003 + CANCEL_RESEND_SECS, 60, 10).await.expect("lease");
    assert_eq!((b.jobs.len(), b.cancel), (0, vec![leased.clone()]));
    // The lease runs out without a report: the job ends cancelled, not leased again.
    let b = store.lease_jobs(peer("edge-1"), 1062, 60, 10).await.expect("lease");
    assert_eq!((b.jobs.len(), b.cancelled), (0, vec![leased.clone()]));
    assert_eq!(store.job(leased.clone(), 1063, false).await.expect("j").expect("e").state, JobState::Cancelled);
    assert_eq!(store.cancel_job(leased, 1064).await.expect("c"), CancelOutcome::AlreadyFinal(JobState::Cancelled));
    assert_eq!(store.cancel_job(new_job_id(), 1064).await.expect("c"), CancelOutcome::NotFound);
}

async fn an_agent_that_finishes_before_the_cancel_reaches_it_keeps_its_result<S: Store>(store: &S) {
    let id = new_job_id();
    store.insert_job(job(&id, 5000)).await.expect("insert");
    store.lease_jobs(peer("edge-1"), 1001, 60, 10).await.expect("lease");
    store.cancel_job(id.clone(), 1002).await.expect("c");
    let outcome = store
        .complete_job(peer("edge-1"), report(&id, b"{}"), "h".into(), Some(b"{}".to_vec()), 1003)
        .await
        .expect("c");
    assert_eq!(outcome, CompleteOutcome::Accepted);
    let rec = store.job(id, 1004, false).await.expect("j").expect("e");
    assert_eq!((rec.state, rec.cancel_requested_at), (JobState::Succeeded, Some(1002)));
}

async fn a_lease_not_completed_in_time_is_handed_out_again<S: Store>(store: &S) {
    let id = new_job_id();
    store.insert_job(job(&id, 5000)).await.expect("insert");
    assert_eq!(store.lease_jobs(peer("edge-1"), 1001, 10, 10).await.expect("l").jobs.len(), 1);
    assert!(store.lease_jobs(peer("edge-1"), 1005, 10, 10).await.expect("l").jobs.is_empty(), "still leased");
    let again = store.lease_jobs(peer("edge-1"), 1012, 10, 10).await.expect("l").jobs;
    assert_eq!(again.len(), 1, "lease ran out at 1011");
    let rec = store.job(id, 1013, false).await.expect("job").expect("exists");
    assert_eq!(rec.attempts, 2);
}

async fn an_expired_job_is_never_delivered<S: Store>(store: &S) {
    let id = new_job_id();
    store.insert_job(job(&id, 1500)).await.expect("insert");
    let batch = store.lease_jobs(peer("edge-1"), 1501, 60, 10).await.expect("lease");
    let (leased, expired) = (batch.jobs, batch.expired);
    assert!(leased.is_empty());
    assert_eq!(expired, vec![id.clone()]);
    let rec = store.job(id, 1502, false).await.expect("job").expect("exists");
    assert_eq!(rec.state, JobState::Expired);
    assert_eq!(rec.reason.map(|r| r.code).as_deref(), Some("expired"));
}

async fn reading_an_overdue_job_marks_it_expired<S: Store>(store: &S) {
    let id = new_job_id();
    store.insert_job(job(&id, 1500)).await.expect("insert");
    assert_eq!(store.job(id.clone(), 1400, false).await.expect("job").expect("exists").state, JobState::Queued);
    assert_eq!(store.job(id, 1600, false).await.expect("job").expect("exists").state, JobState::Expired);
}

/// A job is stored only under the active key: an unknown, retired or demoted key is
/// refused and nothing is queued.
async fn a_job_under_a_key_that_cannot_sign_is_not_queued<S: Store>(store: &S) {
    let refused = store.insert_job(NewJob { key_id: "ed25519:gone".into(), ..job("j-gone", 5000) }).await;
    assert!(matches!(refused, Err(StoreError::KeyRetired { ref key_id }) if key_id == "ed25519:gone"), "{refused:?}");
    assert!(store.job("j-gone".into(), 1001, false).await.expect("db").is_none());
    store.insert_job(job("j-ok", 5000)).await.expect("the active key signs");
    let leased = store.lease_jobs(peer("edge-1"), 1001, 60, 10).await.expect("lease");
    assert_eq!(leased.jobs.iter().map(|j| j.id.as_str()).collect::<Vec<_>>(), ["j-ok"]);
}

async fn a_job_whose_envelope_cannot_be_read_fails_alone_and_the_others_go_on<S: Store + RawSql>(store: &S) {
    let (key, _) = outpost_protocol::SigningKey::generate().expect("key");
    let envelope = serde_json::to_string(&key.sign_payload(b"{\"sql\":\"SELECT 1\"}")).expect("json");
    let keys = tempfile::tempdir().expect("dir");
    let cipher = Arc::new(crate::crypto::sealing::ResultCipher::load_or_create(keys.path()).expect("results key").0);
    let (bad, good) = (new_job_id(), new_job_id());
    for (id, at) in [(&bad, 1000), (&good, 1001)] {
        let sealed = cipher.seal_envelope(id, &envelope);
        store.insert_job(NewJob { envelope_json: sealed, created_at: at, ..job(id, 5000) }).await.expect("insert");
    }
    // The older job's row is damaged: the poll that leases it must not fail, and the
    // good job behind it is delivered by that same poll.
    store.raw(&format!("UPDATE jobs SET envelope = '{{\"key_id\": SECRET-ROW-TEXT' WHERE id = '{bad}'")).await;
    let got =
        crate::store::queue::lease_deliverable(store, &cipher, &peer("edge-1"), 1100, 60, 1).await.expect("lease");
    assert_eq!(got.jobs.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>(), [good.as_str()]);
    assert_eq!(got.corrupt.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(), [bad.as_str()]);
    let rec = store.job(bad.clone(), 1100, false).await.expect("db").expect("job");
    assert_eq!(rec.state, JobState::Failed);
    let reason = rec.reason.expect("reason");
    assert_eq!(reason.code, "corrupt_job");
    assert!(!reason.message.contains("SECRET"), "the row's content is never quoted: {}", reason.message);
    // It is never leased again, nor failed twice.
    let again =
        crate::store::queue::lease_deliverable(store, &cipher, &peer("edge-1"), 1101, 60, 4).await.expect("lease");
    assert!(again.jobs.is_empty() && again.corrupt.is_empty(), "{again:?}");

    // A key rotation re-signs the good undelivered jobs and fails a damaged one
    // instead of failing the rotation.
    let (waiting, damaged) = (new_job_id(), new_job_id());
    for id in [&waiting, &damaged] {
        let sealed = cipher.seal_envelope(id, &envelope);
        store.insert_job(NewJob { envelope_json: sealed, ..job(id, 5000) }).await.expect("insert");
    }
    store.raw(&format!("UPDATE jobs SET envelope = 'not json' WHERE id = '{damaged}'")).await;
    let (active, _) = outpost_protocol::SigningKey::generate().expect("key");
    let change = KeySetChange {
        version: 2,
        statement_json: "{}".into(),
        keys: vec![],
        resign: Some(("ed25519:test".into(), Arc::new(active))),
        envelopes: Some(Arc::clone(&cipher)),
        now: 1200,
    };
    let resigned = store.commit_key_set(change).await.expect("rotation");
    assert_eq!(resigned, 2, "the good undelivered jobs (one leased, one queued) are re-signed");
    let rec = store.job(damaged, 1200, false).await.expect("db").expect("job");
    assert_eq!((rec.state, rec.reason.map(|r| r.code)), (JobState::Failed, Some("corrupt_job".into())));
    assert_eq!(store.job(waiting, 1200, false).await.expect("db").expect("job").state, JobState::Queued);
}

crate::store::testdb::on_both_backends!(
    seed: crate::store::contract_tests::seed;
    the_same_result_twice_is_accepted_once_and_a_different_one_is_refused,
    two_different_results_at_once_store_one_and_refuse_the_other,
    a_cancel_ends_a_queued_job_and_is_told_to_the_agent_of_a_leased_one,
    an_agent_that_finishes_before_the_cancel_reaches_it_keeps_its_result,
    a_lease_not_completed_in_time_is_handed_out_again,
    an_expired_job_is_never_delivered,
    reading_an_overdue_job_marks_it_expired,
    a_job_under_a_key_that_cannot_sign_is_not_queued,
    a_job_whose_envelope_cannot_be_read_fails_alone_and_the_others_go_on,
);
