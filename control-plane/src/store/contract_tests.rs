//! The store contract: every scenario runs on SQLite and on a fresh PostgreSQL database
//! (`on_both_backends!`), so both backends are held to the same behaviour.

use super::sqlite::LEASE_SQLITE;
use super::*;
use outpost_protocol::ids::new_job_id;
use rusqlite::params;

/// An enrolled agent `edge-1` and an active signing key, in either backend.
async fn seed<S: Store>(store: &S) {
    store
        .create_enrol_token(EnrolTokenRecord {
            id: "t1".into(),
            agent: "edge-1".into(),
            pool: None,
            secret_sha256: "h".into(),
            created_at: 0,
            expires_at: 10_000,
        })
        .await
        .expect("token");
    store.redeem_enrol_token("t1".into(), "h".into(), "edge-1".into(), 1, 100).await.expect("db").expect("redeem");
    let key = SigningKeyRecord {
        key_id: "ed25519:test".into(),
        public_key: String::new(),
        status: "active".into(),
        created_at: 0,
        activated_at: Some(0),
        retired_at: None,
    };
    let change = KeySetChange {
        version: 1,
        statement_json: "{}".into(),
        keys: vec![key],
        resign: None,
        envelopes: None,
        now: 0,
    };
    store.commit_key_set(change).await.expect("key set");
}

fn peer(name: &str) -> AgentPeer {
    AgentPeer { name: name.into(), cert_issued_at: 1, pool: None, public_key: Arc::from(&[][..]) }
}

fn job(id: &str, expires_at: i64) -> NewJob {
    NewJob {
        id: id.into(),
        agent: "edge-1".into(),
        pool: None,
        connection: "sample".into(),
        envelope_json: "{}".into(),
        key_id: "ed25519:test".into(),
        created_at: 1000,
        expires_at,
        origin: Default::default(),
    }
}

fn report(id: &str, body: &[u8]) -> ResultReport {
    ResultReport::succeeded(id, "application/json", body, ResultStats::default())
}

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

#[test]
fn database_file_is_created_0600() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("cp.db");
    SqliteStore::open(&path).expect("open");
    assert_eq!(std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777, 0o600);
}

/// A poll reads the agent's open jobs, not its history: with 3,000 finished jobs the
/// lease statement takes about as many steps as with none (it read every one of them
/// before, and throughput fell as the history grew).
#[tokio::test]
async fn leasing_does_not_read_the_agents_finished_jobs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(&dir.path().join("cp.db")).expect("open");
    seed(&store).await;
    store.insert_job(job("open-1", 5000)).await.expect("insert");
    let lease_steps = |store: SqliteStore| async move {
        store
            .with_conn(|c| {
                let tx = c.savepoint()?;
                let (steps, leased) = {
                    let mut stmt = tx.prepare(LEASE_SQLITE)?;
                    let leased = stmt
                        .query_map(params!["edge-1", 1100, 60, 10, None::<String>], |r| r.get::<_, String>(0))?
                        .collect::<Result<Vec<_>, _>>()?;
                    (stmt.get_status(rusqlite::StatementStatus::VmStep), leased)
                };
                drop(tx); // rolled back
                Ok((steps, leased))
            })
            .await
            .expect("lease")
    };
    let (before, leased) = lease_steps(store.clone()).await;
    assert_eq!(leased, ["open-1"]);
    store
        .with_conn(|c| {
            c.execute_batch(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000)
                 INSERT INTO jobs (id, agent, connection, state, envelope, created_at, expires_at, finished_at)
                 SELECT 'done-' || i, 'edge-1', 'sample', 'succeeded', '{}', 900, 5000, 950 FROM n",
            )?;
            Ok(())
        })
        .await
        .expect("history");
    let (after, leased) = lease_steps(store.clone()).await;
    assert_eq!(leased, ["open-1"]);
    assert!(after < before + 100, "the lease took {after} steps with 3,000 finished jobs, {before} without");
}

/// A job is stored only under a key that may still sign: an unknown or retired key is
/// refused and nothing is queued.
async fn a_job_under_a_key_that_cannot_sign_is_not_queued<S: Store>(store: &S) {
    let refused = store.insert_job(NewJob { key_id: "ed25519:gone".into(), ..job("j-gone", 5000) }).await;
    assert!(matches!(refused, Err(StoreError::KeyRetired { ref key_id }) if key_id == "ed25519:gone"), "{refused:?}");
    assert!(store.job("j-gone".into(), 1001, false).await.expect("db").is_none());
    store.insert_job(job("j-ok", 5000)).await.expect("the active key signs");
    let leased = store.lease_jobs(peer("edge-1"), 1001, 60, 10).await.expect("lease");
    assert_eq!(leased.jobs.iter().map(|j| j.id.as_str()).collect::<Vec<_>>(), ["j-ok"]);
}

/// Enrols `name` into `pool` (token redeemed at t=1).
async fn enrol_member<S: Store>(store: &S, name: &str, pool: &str) {
    let id = format!("t-{name}");
    store
        .create_enrol_token(EnrolTokenRecord {
            id: id.clone(),
            agent: name.into(),
            pool: Some(pool.into()),
            secret_sha256: "h".into(),
            created_at: 0,
            expires_at: 10_000,
        })
        .await
        .expect("token");
    let joined = store.redeem_enrol_token(id, "h".into(), name.into(), 1, 100).await.expect("db").expect("redeem");
    assert_eq!(joined.as_deref(), Some(pool));
}

fn pool_job(id: &str, pool: &str) -> NewJob {
    NewJob { agent: String::new(), pool: Some(pool.into()), ..job(id, 5000) }
}

async fn a_pool_job_goes_to_one_member_and_to_another_when_its_lease_runs_out<S: Store>(store: &S) {
    enrol_member(store, "p1", "eu").await;
    enrol_member(store, "p2", "eu").await;
    enrol_member(store, "q1", "us").await;
    let members: Vec<String> =
        store.pool_members("eu".into()).await.expect("members").into_iter().map(|a| a.name).collect();
    assert_eq!(members, ["p1", "p2"]);
    let id = new_job_id();
    store.insert_job(pool_job(&id, "eu")).await.expect("insert");
    assert!(store.lease_jobs(peer("edge-1"), 1001, 60, 10).await.expect("lease").jobs.is_empty(), "not a member");
    assert!(store.lease_jobs(peer("q1"), 1001, 60, 10).await.expect("lease").jobs.is_empty(), "another pool");
    assert_eq!(store.lease_jobs(peer("p1"), 1001, 60, 10).await.expect("lease").jobs.len(), 1);
    assert!(store.lease_jobs(peer("p2"), 1002, 60, 10).await.expect("lease").jobs.is_empty(), "leased to p1");
    let rec = store.job(id.clone(), 1002, false).await.expect("job").expect("exists");
    assert_eq!((rec.agent.as_str(), rec.pool.as_deref(), rec.state), ("p1", Some("eu"), JobState::Leased));
    // p1 dies: its lease runs out and p2 gets the job.
    assert_eq!(store.lease_jobs(peer("p2"), 1062, 60, 10).await.expect("lease").jobs.len(), 1);
    let late = store.complete_job(peer("p1"), report(&id, b"{}"), "a".into(), None, 1063).await.expect("c");
    assert_eq!(late, CompleteOutcome::NotFound, "only the member holding the lease may report");
    let done = store.complete_job(peer("p2"), report(&id, b"{}"), "b".into(), None, 1064).await.expect("c");
    assert_eq!(done, CompleteOutcome::Accepted);
    let rec = store.job(id, 1065, false).await.expect("job").expect("exists");
    assert_eq!((rec.agent.as_str(), rec.attempts, rec.state), ("p2", 2, JobState::Succeeded));
}

async fn a_revoked_members_pool_job_goes_back_to_the_pool<S: Store>(store: &S) {
    enrol_member(store, "p1", "eu").await;
    enrol_member(store, "p2", "eu").await;
    let id = new_job_id();
    store.insert_job(pool_job(&id, "eu")).await.expect("insert");
    assert_eq!(store.lease_jobs(peer("p1"), 1001, 60, 10).await.expect("lease").jobs.len(), 1);
    let failed = store.revoke_agent("p1".into(), 1002).await.expect("revoke").expect("known");
    assert!(failed.is_empty(), "a pool's job does not fail with one member: {failed:?}");
    let again = store.lease_jobs(peer("p2"), 1003, 60, 10).await.expect("lease").jobs;
    assert_eq!(again.iter().map(|j| j.id.as_str()).collect::<Vec<_>>(), [id.as_str()]);
}

/// Two members lease concurrently, one job per call, as two replicas would serve
/// them: every job is handed out exactly once.
async fn concurrent_members_never_lease_the_same_job<S: Store + Clone>(store: &S) {
    enrol_member(store, "p1", "eu").await;
    enrol_member(store, "p2", "eu").await;
    let ids: Vec<String> = (0..60).map(|_| new_job_id()).collect();
    for id in &ids {
        store.insert_job(pool_job(id, "eu")).await.expect("insert");
    }
    let mut tasks = Vec::new();
    for member in ["p1", "p2", "p1", "p2"] {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                let batch = store.lease_jobs(peer(member), 1001, 60, 1).await.expect("lease").jobs;
                if batch.is_empty() {
                    return got;
                }
                got.extend(batch.into_iter().map(|j| j.id));
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("task"));
    }
    all.sort();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(all, expected, "each job leased exactly once");
}

/// SQL run on the store's database directly, as damage from outside would be.
trait RawSql {
    fn raw(&self, sql: &str) -> impl Future<Output = ()> + Send;
}

impl RawSql for SqliteStore {
    async fn raw(&self, sql: &str) {
        let sql = sql.to_owned();
        self.with_conn(move |c| Ok(c.execute_batch(&sql)?)).await.expect("raw SQL on SQLite");
    }
}

impl RawSql for crate::store::postgres::PgStore {
    async fn raw(&self, sql: &str) {
        self.client().await.expect("client").batch_execute(sql).await.expect("raw SQL on PostgreSQL");
    }
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
    again.expect("db").expect("enrolled");
    assert_eq!(store.audit_head("edge-1".into()).await.expect("db"), None);
    // A late request of the old certificate cannot put the old log's head back.
    let late = store.record_audit_head(peer("edge-1"), head(40, "f", 105)).await.expect("db");
    assert_eq!(late, AuditHeadOutcome::NotAdmitted);
    assert_eq!(store.audit_head("edge-1".into()).await.expect("db"), None);
    let reinstalled = AgentPeer { cert_issued_at: 104, ..peer("edge-1") };
    assert_eq!(store.record_audit_head(reinstalled, head(1, "e", 105)).await.expect("db"), AuditHeadOutcome::Stored);
}

/// Each case runs on the embedded SQLite database and on a fresh PostgreSQL database:
/// both backends are held to the same behaviour.
macro_rules! on_both_backends {
    ($($case:ident),* $(,)?) => {$(
        mod $case {
            #[tokio::test]
            async fn sqlite() {
                let dir = tempfile::tempdir().expect("tempdir");
                let store = super::SqliteStore::open(&dir.path().join("cp.db")).expect("open");
                super::seed(&store).await;
                super::$case(&store).await;
            }

            #[tokio::test]
            async fn postgres() {
                let db = crate::store::postgres::testdb::TestDb::new().await;
                super::seed(&db.store).await;
                super::$case(&db.store).await;
                db.drop().await;
            }
        }
    )*};
}

on_both_backends!(
    enrolment_token_is_single_use_and_its_failures_are_told_apart,
    the_same_result_twice_is_accepted_once_and_a_different_one_is_refused,
    a_cancel_ends_a_queued_job_and_is_told_to_the_agent_of_a_leased_one,
    an_agent_that_finishes_before_the_cancel_reaches_it_keeps_its_result,
    a_lease_not_completed_in_time_is_handed_out_again,
    an_expired_job_is_never_delivered,
    reading_an_overdue_job_marks_it_expired,
    a_revoked_agent_is_refused_and_its_queued_jobs_fail,
    a_pool_job_goes_to_one_member_and_to_another_when_its_lease_runs_out,
    a_revoked_members_pool_job_goes_back_to_the_pool,
    concurrent_members_never_lease_the_same_job,
    a_job_whose_envelope_cannot_be_read_fails_alone_and_the_others_go_on,
    outstanding_enrolment_tokens_are_listed_and_an_unused_one_can_be_revoked,
    an_agents_audit_head_only_moves_forward_and_a_new_enrolment_starts_it_again,
    a_job_under_a_key_that_cannot_sign_is_not_queued,
    two_different_results_at_once_store_one_and_refuse_the_other,
    polls_and_results_mark_the_agent_seen,
    a_revocation_racing_a_poll_leaves_nothing_leased_to_the_revoked_agent,
);
