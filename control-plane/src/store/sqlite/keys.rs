//! The SQLite backend's job-signing keys and signed key sets, and the re-signing of a
//! retired key's undelivered jobs.

use rusqlite::{params, Connection, OptionalExtension};

use crate::store::{KeySetChange, SigningKeyRecord, SqliteStore, StoreError};

pub(super) fn current_key_set_version(tx: &Connection) -> Result<u64, StoreError> {
    let v: i64 = tx.prepare_cached("SELECT COALESCE(MAX(version), 0) FROM key_sets")?.query_row([], |r| r.get(0))?;
    Ok(u64::try_from(v).unwrap_or(0))
}

pub(super) async fn signing_keys(store: &SqliteStore) -> Result<(Vec<SigningKeyRecord>, u64), StoreError> {
    store
        .with_conn(|c| {
            let tx = c.savepoint()?;
            let keys = tx
                .prepare(
                    "SELECT key_id, public_key, status, created_at, activated_at, retired_at FROM signing_keys
                     ORDER BY created_at, key_id",
                )?
                .query_map([], |r| {
                    Ok(SigningKeyRecord {
                        key_id: r.get(0)?,
                        public_key: r.get(1)?,
                        status: r.get(2)?,
                        created_at: r.get(3)?,
                        activated_at: r.get(4)?,
                        retired_at: r.get(5)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            let version = current_key_set_version(&tx)?;
            tx.commit()?;
            Ok((keys, version))
        })
        .await
}

pub(super) async fn active_signing_key(store: &SqliteStore) -> Result<Option<String>, StoreError> {
    store
        .with_read(|c| {
            Ok(c.prepare_cached("SELECT key_id FROM signing_keys WHERE status = 'active'")?
                .query_row([], |r| r.get(0))
                .optional()?)
        })
        .await
}

pub(super) async fn commit_key_set(store: &SqliteStore, change: KeySetChange) -> Result<usize, StoreError> {
    store
        .with_conn(move |c| {
            let tx = c.savepoint()?;
            let found = current_key_set_version(&tx)?;
            if found + 1 != change.version {
                return Err(StoreError::KeySetConflict { expected: change.version.saturating_sub(1), found });
            }
            // Demotions first, so that the one-active index holds after every statement.
            let mut keys = change.keys.clone();
            keys.sort_by_key(|k| k.status == "active");
            for k in &keys {
                tx.execute(
                    "INSERT INTO signing_keys (key_id, public_key, status, created_at, activated_at, retired_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (key_id) DO UPDATE SET status = ?3, activated_at = ?5, retired_at = ?6",
                    params![k.key_id, k.public_key, k.status, k.created_at, k.activated_at, k.retired_at],
                )?;
            }
            let version = i64::try_from(change.version)
                .map_err(|_| StoreError::Corrupt { table: "key_sets", reason: "version overflow".into() })?;
            tx.execute(
                "INSERT INTO key_sets (version, statement, created_at) VALUES (?1, ?2, ?3)",
                params![version, change.statement_json, change.now],
            )?;
            let mut resigned = 0;
            if let Some((retired, active)) = &change.resign {
                let pending = tx
                    .prepare("SELECT id, envelope FROM jobs WHERE key_id = ?1 AND state IN ('queued', 'leased')")?
                    .query_map(params![retired], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?
                    .collect::<Result<Vec<_>, _>>()?;
                for (id, envelope) in pending {
                    // One bad row never blocks the rotation: it fails, the others are re-signed.
                    let Some(new) = crate::store::queue::resigned(&id, &envelope, active, change.envelopes.as_deref())
                    else {
                        tx.execute(
                            "UPDATE jobs SET state = 'failed', finished_at = ?2, lease_until = NULL,
                                 reason_code = 'corrupt_job', reason_message = ?3
                             WHERE id = ?1",
                            params![id, change.now, crate::store::queue::CORRUPT_JOB_MESSAGE],
                        )?;
                        continue;
                    };
                    tx.execute(
                        "UPDATE jobs SET envelope = ?2, key_id = ?3 WHERE id = ?1",
                        params![id, new, active.key_id().0],
                    )?;
                    resigned += 1;
                }
            }
            tx.commit()?;
            Ok(resigned)
        })
        .await
}

pub(super) async fn key_sets_after(store: &SqliteStore, after: u64, max: usize) -> Result<Vec<String>, StoreError> {
    store
        .with_conn(move |c| {
            let after = i64::try_from(after).unwrap_or(i64::MAX);
            Ok(c.prepare_cached("SELECT statement FROM key_sets WHERE version > ?1 ORDER BY version LIMIT ?2")?
                .query_map(params![after, max as i64], |r| r.get(0))?
                .collect::<Result<Vec<String>, _>>()?)
        })
        .await
}
