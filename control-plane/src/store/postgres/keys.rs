//! The PostgreSQL backend's job-signing keys and signed key sets, and the re-signing of
//! a retired key's undelivered jobs.

use crate::store::{KeySetChange, PgStore, SigningKeyRecord, StoreError};

async fn current_key_set_version(tx: &deadpool_postgres::Transaction<'_>) -> Result<u64, StoreError> {
    let stmt = tx.prepare_cached("SELECT COALESCE(MAX(version), 0)::BIGINT FROM key_sets").await?;
    let v: i64 = tx.query_one(&stmt, &[]).await?.get(0);
    Ok(u64::try_from(v).unwrap_or(0))
}

pub(super) async fn signing_keys(store: &PgStore) -> Result<(Vec<SigningKeyRecord>, u64), StoreError> {
    let mut client = store.client().await?;
    let tx = client.build_transaction().isolation_level(tokio_postgres::IsolationLevel::RepeatableRead).start().await?;
    let keys = tx
        .query(
            "SELECT key_id, public_key, status, created_at, activated_at, retired_at FROM signing_keys
                 ORDER BY created_at, key_id",
            &[],
        )
        .await?
        .iter()
        .map(|r| SigningKeyRecord {
            key_id: r.get(0),
            public_key: r.get(1),
            status: r.get(2),
            created_at: r.get(3),
            activated_at: r.get(4),
            retired_at: r.get(5),
        })
        .collect();
    let version = current_key_set_version(&tx).await?;
    tx.commit().await?;
    Ok((keys, version))
}

pub(super) async fn active_signing_key(store: &PgStore) -> Result<Option<String>, StoreError> {
    let client = store.client().await?;
    let stmt = client.prepare_cached("SELECT key_id FROM signing_keys WHERE status = 'active'").await?;
    Ok(client.query_opt(&stmt, &[]).await?.map(|r| r.get(0)))
}

pub(super) async fn commit_key_set(store: &PgStore, change: KeySetChange) -> Result<usize, StoreError> {
    let mut client = store.client().await?;
    let tx = client.transaction().await?;
    // One key-set change at a time across replicas.
    tx.batch_execute("LOCK TABLE key_sets IN EXCLUSIVE MODE").await?;
    let found = current_key_set_version(&tx).await?;
    if found + 1 != change.version {
        return Err(StoreError::KeySetConflict { expected: change.version.saturating_sub(1), found });
    }
    // A key retired here waits for the job inserts signing with it in flight (they hold
    // its advisory lock shared, migration 008), and later inserts see it retired.
    for k in change.keys.iter().filter(|k| k.status == "retired") {
        tx.execute("SELECT pg_advisory_xact_lock(2, hashtext($1))", &[&k.key_id]).await?;
    }
    let mut keys = change.keys.clone();
    keys.sort_by_key(|k| k.status == "active");
    for k in &keys {
        tx.execute(
            "INSERT INTO signing_keys (key_id, public_key, status, created_at, activated_at, retired_at)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (key_id) DO UPDATE SET status = $3, activated_at = $5, retired_at = $6",
            &[&k.key_id, &k.public_key, &k.status, &k.created_at, &k.activated_at, &k.retired_at],
        )
        .await?;
    }
    let version = i64::try_from(change.version)
        .map_err(|_| StoreError::Corrupt { table: "key_sets", reason: "version overflow".into() })?;
    tx.execute(
        "INSERT INTO key_sets (version, statement, created_at) VALUES ($1, $2, $3)",
        &[&version, &change.statement_json, &change.now],
    )
    .await?;
    let mut resigned = 0;
    if let Some((retired, active)) = &change.resign {
        // A fresh statement after the key's lock was taken: it sees every job whose
        // insert held the lock before.
        let pending = tx
            .query(
                "SELECT id, envelope FROM jobs WHERE key_id = $1 AND state IN ('queued', 'leased') FOR UPDATE",
                &[retired],
            )
            .await?;
        for row in pending {
            let (id, envelope): (String, String) = (row.get(0), row.get(1));
            // One bad row never blocks the rotation: it fails, the others are re-signed.
            let Some(new) = crate::store::queue::resigned(&id, &envelope, active, change.envelopes.as_deref()) else {
                tx.execute(
                    "UPDATE jobs SET state = 'failed', finished_at = $2, lease_until = NULL,
                             reason_code = 'corrupt_job', reason_message = $3
                         WHERE id = $1",
                    &[&id, &change.now, &crate::store::queue::CORRUPT_JOB_MESSAGE],
                )
                .await?;
                continue;
            };
            tx.execute("UPDATE jobs SET envelope = $2, key_id = $3 WHERE id = $1", &[&id, &new, &active.key_id().0])
                .await?;
            resigned += 1;
        }
    }
    tx.commit().await?;
    Ok(resigned)
}

pub(super) async fn key_sets_after(store: &PgStore, after: u64, max: usize) -> Result<Vec<String>, StoreError> {
    let client = store.client().await?;
    let after = i64::try_from(after).unwrap_or(i64::MAX);
    let max = i64::try_from(max).unwrap_or(i64::MAX);
    let stmt =
        client.prepare_cached("SELECT statement FROM key_sets WHERE version > $1 ORDER BY version LIMIT $2").await?;
    Ok(client.query(&stmt, &[&after, &max]).await?.iter().map(|r| r.get(0)).collect())
}
