//! The contract of enrolment tokens, agents and their audit heads, on both backends.

use outpost_protocol::ids::new_job_id;

use super::*;

async fn enrolment_token_is_single_use_and_its_failures_are_told_apart<S: Store>(store: &S) {
    let again = store.redeem_enrol_token("t1".into(), "h".into(), "edge-1".into(), 2, 100).await.expect("db");
    assert_eq!(again, Err(RedeemError::Used { used_at: 1 }));
    let wrong = store.redeem_enrol_token("t1".into(), "x".into(), "edge-1".into(), 2, 100).await.expect("db");
    assert_eq!(wrong, Err(RedeemError::SecretMismatch));
    let unknown = store.redeem_enrol_token("nope".into(), "h".into(), "edge-1".into(), 2, 100).await.expect("db");
    assert_eq!(unknown, Err(RedeemError::Unknown));
    store
        .create_enrol_token(EnrolTokenRecord {
            id: "t2".into(),
            agent: "edge-2".into(),
            pool: None,
            secret_sha256: "h2".into(),
            created_at: 0,
            expires_at: 50,
        })
        .await
        .expect("token");
    let other = store.redeem_enrol_token("t2".into(), "h2".into(), "edge-9".into(), 10, 100).await.expect("db");
    assert_eq!(other, Err(RedeemError::WrongAgent { bound: "edge-2".into() }));
    let late = store.redeem_enrol_token("t2".into(), "h2".into(), "edge-2".into(), 51, 100).await.expect("db");
    assert_eq!(late, Err(RedeemError::Expired { expires_at: 50 }));
}

async fn outstanding_enrolment_tokens_are_listed_and_an_unused_one_can_be_revoked<S: Store>(store: &S) {
    for (id, expires_at) in [("tok-a", 5000), ("tok-b", 5000), ("tok-old", 50)] {
        let t = EnrolTokenRecord {
            id: id.into(),
            agent: format!("agent-{id}"),
            pool: (id == "tok-b").then(|| "pool-1".into()),
            secret_sha256: "h".into(),
            created_at: 10,
            expires_at,
        };
        store.create_enrol_token(t).await.expect("token");
    }
    // `t1` (used by `seed`) and `tok-old` (expired) are not outstanding.
    let ids = |v: Vec<EnrolTokenRecord>| v.into_iter().map(|t| t.id).collect::<Vec<_>>();
    assert_eq!(ids(store.outstanding_enrol_tokens(100).await.expect("list")), ["tok-a", "tok-b"]);
    let gone = store.revoke_enrol_token("tok-b".into()).await.expect("revoke").expect("was there");
    assert_eq!((gone.agent.as_str(), gone.pool.as_deref()), ("agent-tok-b", Some("pool-1")));
    assert!(store.revoke_enrol_token("tok-b".into()).await.expect("revoke").is_none(), "once");
    assert!(store.revoke_enrol_token("t1".into()).await.expect("revoke").is_none(), "a used token stays");
    assert_eq!(ids(store.outstanding_enrol_tokens(100).await.expect("list")), ["tok-a"]);
    let redeemed = store.redeem_enrol_token("tok-b".into(), "h".into(), "agent-tok-b".into(), 100, 200).await;
    assert_eq!(redeemed.expect("db"), Err(RedeemError::Unknown), "a revoked token enrols nobody");
}

/// A revocation racing a poll: whichever the database orders first, once both
/// returned no job is left leased to the revoked agent (its own fail, its pool's go
/// back) and a poll after the revocation is refused.
async fn a_revocation_racing_a_poll_leaves_nothing_leased_to_the_revoked_agent<S: Store>(store: &S) {
    for round in 0..12_i64 {
        let (name, token) = (format!("racer-{round}"), format!("race-{round}"));
        let t = EnrolTokenRecord {
            id: token.clone(),
            agent: name.clone(),
            pool: Some("race".into()),
            secret_sha256: "h".into(),
            created_at: 0,
            expires_at: 10_000,
        };
        store.create_enrol_token(t).await.expect("token");
        store.redeem_enrol_token(token, "h".into(), name.clone(), 1, 100).await.expect("db").expect("redeem");
        let mut ids = Vec::new();
        for own in [false, true, false, true] {
            let id = new_job_id();
            let mut j = job(&id, 5000);
            if own {
                j.agent.clone_from(&name);
            } else {
                (j.agent, j.pool) = (String::new(), Some("race".into()));
            }
            store.insert_job(j).await.expect("insert");
            ids.push(id);
        }
        let racer = AgentPeer { name: name.clone(), ..peer("") };
        let (_, revoked) =
            tokio::join!(store.lease_jobs(racer.clone(), 1001, 60, 10), store.revoke_agent(name.clone(), 1001));
        assert!(revoked.expect("revoke").is_some());
        for id in &ids {
            let rec = store.job(id.clone(), 1002, false).await.expect("job").expect("exists");
            assert!(
                !(rec.state == JobState::Leased && rec.agent == name),
                "round {round}: job {id} stayed leased to the revoked agent"
            );
        }
        assert!(store.lease_jobs(racer, 1003, 60, 10).await.is_err(), "round {round}");
    }
}

/// A poll and a result say the agent was seen (at most one write a second), and the
/// first poll after a clean stop clears it; a revoked agent's poll writes nothing.
async fn polls_and_results_mark_the_agent_seen<S: Store>(store: &S) {
    let seen = |name: &'static str| async move {
        let a = store.agent(name.into()).await.expect("agent").expect("exists");
        (a.last_seen, a.stopped_at)
    };
    store.lease_jobs(peer("edge-1"), 2000, 60, 10).await.expect("lease");
    assert_eq!(seen("edge-1").await, (Some(2000), None));
    store.agent_stopped(peer("edge-1"), 2001).await.expect("stop");
    assert_eq!(seen("edge-1").await, (Some(2001), Some(2001)));
    store.lease_jobs(peer("edge-1"), 2001, 60, 10).await.expect("lease");
    assert_eq!(seen("edge-1").await, (Some(2001), None), "the poll after a clean stop clears it");
    let id = new_job_id();
    store.insert_job(job(&id, 5000)).await.expect("insert");
    assert_eq!(store.lease_jobs(peer("edge-1"), 2002, 60, 10).await.expect("lease").jobs.len(), 1);
    assert_eq!(seen("edge-1").await, (Some(2002), None));
    let done = store.complete_job(peer("edge-1"), report(&id, b"{}"), "h".into(), None, 2003).await;
    assert_eq!(done.expect("complete"), CompleteOutcome::Accepted);
    assert_eq!(seen("edge-1").await, (Some(2003), None));
    store.revoke_agent("edge-1".into(), 2004).await.expect("revoke");
    assert!(store.lease_jobs(peer("edge-1"), 2005, 60, 10).await.is_err());
    assert_eq!(seen("edge-1").await, (Some(2003), None), "a refused poll is not a sighting");
}

async fn a_revoked_agent_is_refused_and_its_queued_jobs_fail<S: Store>(store: &S) {
    let id = new_job_id();
    store.insert_job(job(&id, 5000)).await.expect("insert");
    assert_eq!(store.revoke_agent("edge-1".into(), 1100).await.expect("revoke"), Some(vec![id.clone()]));
    assert_eq!(store.revoke_agent("nobody".into(), 1100).await.expect("revoke"), None);
    let refused = store.lease_jobs(peer("edge-1"), 1101, 60, 10).await;
    assert!(matches!(refused, Err(StoreError::AgentRefused { revoked_at: Some(1100), .. })), "{refused:?}");
    let refused = store.complete_job(peer("edge-1"), report(&id, b"{}"), "h".into(), Some(b"{}".to_vec()), 1102).await;
    assert!(matches!(refused, Err(StoreError::AgentRefused { .. })), "{refused:?}");
    let rec = store.job(id, 1103, false).await.expect("job").expect("exists");
    assert_eq!(rec.state, JobState::Failed);
    assert_eq!(rec.reason.map(|r| r.code).as_deref(), Some("agent_revoked"));
    let unknown = store.lease_jobs(peer("ghost"), 1101, 60, 10).await;
    assert!(matches!(unknown, Err(StoreError::AgentRefused { revoked_at: None, .. })), "{unknown:?}");
}

async fn an_agents_audit_head_only_moves_forward_and_a_new_enrolment_starts_it_again<S: Store>(store: &S) {
    let head = |seq: i64, hash: &str, at: i64| StoredAuditHead {
        seq,
        hash: hash.repeat(64),
        head_json: format!("{{\"seq\":{seq}}}"),
        received_at: at,
    };
    assert_eq!(store.audit_head("edge-1".into()).await.expect("db"), None, "nothing reported yet");
    assert_eq!(
        store.record_audit_head(peer("edge-1"), head(10, "a", 100)).await.expect("db"),
        AuditHeadOutcome::Stored
    );
    assert_eq!(
        store.record_audit_head(peer("edge-1"), head(12, "b", 101)).await.expect("db"),
        AuditHeadOutcome::Stored
    );
    // The same head again only moves the time on.
    assert_eq!(
        store.record_audit_head(peer("edge-1"), head(12, "b", 102)).await.expect("db"),
        AuditHeadOutcome::Stored
    );
    assert_eq!(store.audit_head("edge-1".into()).await.expect("db"), Some(head(12, "b", 102)));
    // A log that went back, or another record at the same seq, does not replace it.
    for stale in [head(11, "c", 103), head(12, "d", 103)] {
        let out = store.record_audit_head(peer("edge-1"), stale).await.expect("db");
        assert_eq!(out, AuditHeadOutcome::Behind(head(12, "b", 102)));
    }
    assert_eq!(store.audit_head("edge-1".into()).await.expect("db"), Some(head(12, "b", 102)));
    assert_eq!(store.audit_head("edge-2".into()).await.expect("db"), None, "per agent");
    // Enrolling the name again (a reinstalled agent) forgets the old log's head.
    let t = EnrolTokenRecord {
        id: "t-again".into(),
        agent: "edge-1".into(),
        pool: None,
        secret_sha256: "h".into(),
        created_at: 100,
        expires_at: 5000,
    };
    store.create_enrol_token(t).await.expect("token");
    let again = store.redeem_enrol_token("t-again".into(), "h".into(), "edge-1".into(), 104, 9000).await;
    let again = again.expect("db").expect("enrolled");
    assert_eq!(store.audit_head("edge-1".into()).await.expect("db"), None);
    // A late request of the old certificate cannot put the old log's head back.
    let late = store.record_audit_head(peer("edge-1"), head(40, "f", 105)).await.expect("db");
    assert_eq!(late, AuditHeadOutcome::NotAdmitted);
    assert_eq!(store.audit_head("edge-1".into()).await.expect("db"), None);
    let reinstalled = AgentPeer { cert_issued_at: again.enrolled_at, ..peer("edge-1") };
    assert_eq!(store.record_audit_head(reinstalled, head(1, "e", 105)).await.expect("db"), AuditHeadOutcome::Stored);
}

/// A name enrolled again takes effect a second after both the old enrolment and now:
/// certificates carry whole seconds, and one issued in the same second as the
/// re-enrolment (stolen, renewed, then revoked within it) must not pass for the new one.
async fn a_certificate_from_the_second_of_a_re_enrolment_is_refused<S: Store>(store: &S) {
    let token = |id: &str, agent: &str| EnrolTokenRecord {
        id: id.into(),
        agent: agent.into(),
        pool: None,
        secret_sha256: "h".into(),
        created_at: 0,
        expires_at: 10_000,
    };
    // A new name takes effect at once.
    store.create_enrol_token(token("fresh", "edge-7")).await.expect("token");
    let fresh = store.redeem_enrol_token("fresh".into(), "h".into(), "edge-7".into(), 50, 100).await.expect("db");
    let fresh = fresh.expect("enrolled");
    assert_eq!((fresh.enrolled_at, fresh.cert_not_after), (50, 150));
    // edge-1 (enrolled at 1) has a certificate from second 50, then is revoked and
    // enrolled again, all in second 50.
    let stolen = AgentPeer { cert_issued_at: 50, ..peer("edge-1") };
    store.lease_jobs(stolen.clone(), 50, 60, 10).await.expect("admitted before the revocation");
    store.revoke_agent("edge-1".into(), 50).await.expect("revoke").expect("known");
    store.create_enrol_token(token("again-1", "edge-1")).await.expect("token");
    let first = store.redeem_enrol_token("again-1".into(), "h".into(), "edge-1".into(), 50, 100).await.expect("db");
    let first = first.expect("enrolled");
    assert_eq!((first.enrolled_at, first.cert_not_after), (51, 151));
    let refused = store.lease_jobs(stolen.clone(), 50, 60, 10).await;
    assert!(matches!(refused, Err(StoreError::CertificateSuperseded { .. })), "{refused:?}");
    let new = AgentPeer { cert_issued_at: first.enrolled_at, ..peer("edge-1") };
    store.lease_jobs(new.clone(), 50, 60, 10).await.expect("the new certificate is admitted");
    // Enrolled once more in the same second: the one before is superseded in turn.
    store.create_enrol_token(token("again-2", "edge-1")).await.expect("token");
    let second = store.redeem_enrol_token("again-2".into(), "h".into(), "edge-1".into(), 50, 100).await.expect("db");
    assert_eq!(second.expect("enrolled").enrolled_at, 52);
    let refused = store.lease_jobs(new, 50, 60, 10).await;
    assert!(matches!(refused, Err(StoreError::CertificateSuperseded { .. })), "{refused:?}");
}

crate::store::testdb::on_both_backends!(
    seed: crate::store::contract_tests::seed;
    a_certificate_from_the_second_of_a_re_enrolment_is_refused,
    enrolment_token_is_single_use_and_its_failures_are_told_apart,
    outstanding_enrolment_tokens_are_listed_and_an_unused_one_can_be_revoked,
    a_revoked_agent_is_refused_and_its_queued_jobs_fail,
    a_revocation_racing_a_poll_leaves_nothing_leased_to_the_revoked_agent,
    polls_and_results_mark_the_agent_seen,
    an_agents_audit_head_only_moves_forward_and_a_new_enrolment_starts_it_again,
);
