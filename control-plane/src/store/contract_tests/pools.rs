//! The contract of agent pools: one member gets a pool's job, another when its lease
//! runs out or it is revoked, and concurrent members never share one; on both backends.

use outpost_protocol::ids::new_job_id;

use super::*;

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

crate::store::testdb::on_both_backends!(
    seed: crate::store::contract_tests::seed;
    a_pool_job_goes_to_one_member_and_to_another_when_its_lease_runs_out,
    a_revoked_members_pool_job_goes_back_to_the_pool,
    concurrent_members_never_lease_the_same_job,
);
