//! What only the PostgreSQL backend has to show: that a statement which waited for a
//! revocation or a key's retirement in another transaction sees it once it goes on.
//! (SQLite has one writer: nothing runs while a revocation does.) Each test holds the
//! lock a revocation or a retirement takes, makes its change, starts the statement,
//! sees it wait in `pg_locks`, then commits.

use outpost_protocol::ids::new_job_id;

use super::*;

/// Until a session of this database waits for the advisory lock `(class, hashtext(name))`
/// (or 10 s: then the statement did not wait, which is the failure these tests look for).
async fn until_someone_waits_for(store: &PgStore, class: i32, name: &str) {
    let client = store.client().await.expect("client");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let row = client
            .query_one(
                "SELECT COUNT(*) FROM pg_locks
                  WHERE locktype = 'advisory' AND NOT granted AND objsubid = 2
                    AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
                    AND classid = $1::INT::OID AND objid = hashtext($2)::OID",
                &[&class, &name],
            )
            .await
            .expect("pg_locks");
        if row.get::<_, i64>(0) > 0 {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "the statement did not wait for the other transaction");
        tokio::task::yield_now().await;
    }
}

/// A poll that starts while its agent is being revoked waits, then is refused and leases
/// nothing: its admission reads the agent's row after the revocation committed, though
/// the statement began before.
#[tokio::test]
async fn a_poll_that_waited_for_a_revocation_is_refused_and_leases_nothing() {
    crate::store::testdb::on_postgres(|store| async move {
        seed(&store).await;
        let id = new_job_id();
        store.insert_job(job(&id, 5000)).await.expect("insert");
        let mut admin = store.client().await.expect("client");
        let revoking = admin.transaction().await.expect("tx");
        revoking.execute("SELECT pg_advisory_xact_lock(1, hashtext('edge-1'))", &[]).await.expect("lock");
        revoking.execute("UPDATE agents SET revoked_at = 1001 WHERE name = 'edge-1'", &[]).await.expect("revoke");
        let poll = tokio::spawn({
            let store = store.clone();
            async move { store.lease_jobs(peer("edge-1"), 1001, 60, 10).await }
        });
        until_someone_waits_for(&store, 1, "edge-1").await;
        revoking.commit().await.expect("commit");
        let refused = poll.await.expect("poll");
        assert!(matches!(refused, Err(StoreError::AgentRefused { revoked_at: Some(1001), .. })), "{refused:?}");
        let rec = store.job(id, 1002, false).await.expect("job").expect("exists");
        assert_eq!(rec.state, JobState::Queued, "nothing was leased");
    })
    .await;
}

/// A job signed with a key that is being retired waits for the retirement, then is not
/// queued (the dispatcher signs it again with the active key).
#[tokio::test]
async fn a_job_insert_that_waited_for_its_keys_retirement_is_refused() {
    crate::store::testdb::on_postgres(|store| async move {
        seed(&store).await;
        let mut admin = store.client().await.expect("client");
        let retiring = admin.transaction().await.expect("tx");
        retiring.execute("SELECT pg_advisory_xact_lock(2, hashtext('ed25519:test'))", &[]).await.expect("lock");
        retiring
            .execute("UPDATE signing_keys SET status = 'retired' WHERE key_id = 'ed25519:test'", &[])
            .await
            .expect("retire");
        let id = new_job_id();
        let insert = tokio::spawn({
            let (store, j) = (store.clone(), job(&id, 5000));
            async move { store.insert_job(j).await }
        });
        until_someone_waits_for(&store, 2, "ed25519:test").await;
        retiring.commit().await.expect("commit");
        let refused = insert.await.expect("insert");
        assert!(matches!(refused, Err(StoreError::KeyRetired { .. })), "{refused:?}");
        assert!(store.job(id, 1001, false).await.expect("job").is_none(), "not queued");
    })
    .await;
}

/// A job signed by a key a rotation demoted is not queued: new jobs are signed by the
/// active key (the dispatcher keeps its id and learns of a rotation from this refusal).
#[tokio::test]
async fn a_job_under_a_demoted_key_is_refused() {
    crate::store::testdb::on_postgres(|store| async move {
        seed(&store).await;
        let admin = store.client().await.expect("client");
        admin
            .execute("UPDATE signing_keys SET status = 'previous' WHERE key_id = 'ed25519:test'", &[])
            .await
            .expect("demote");
        let id = new_job_id();
        let refused = store.insert_job(job(&id, 5000)).await;
        assert!(matches!(refused, Err(StoreError::KeyRetired { .. })), "{refused:?}");
        assert!(store.job(id, 1001, false).await.expect("job").is_none(), "not queued");
    })
    .await;
}
