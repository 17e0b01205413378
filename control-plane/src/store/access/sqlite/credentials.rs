//! The SQLite backend's sign-in sessions and API tokens (hashes only).

use rusqlite::{params, OptionalExtension};

use super::users::{user_from_row, USER_COLS};
use crate::store::access::{ApiTokenRecord, SessionRecord, UserRecord};
use crate::store::{SqliteStore, StoreError};

const TOKEN_COLS: &str =
    "t.id, t.token_sha256, t.user_id, u.name, t.name, t.scopes, t.created_at, t.expires_at, t.last_used, t.revoked_at";

fn token_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ApiTokenRecord> {
    Ok(ApiTokenRecord {
        id: r.get(0)?,
        token_sha256: r.get(1)?,
        user_id: r.get(2)?,
        user: r.get(3)?,
        name: r.get(4)?,
        scopes: r.get(5)?,
        created_at: r.get(6)?,
        expires_at: r.get(7)?,
        last_used: r.get(8)?,
        revoked_at: r.get(9)?,
    })
}

pub(super) async fn create_session(store: &SqliteStore, s: SessionRecord) -> Result<(), StoreError> {
    store
        .with_conn(move |c| {
            c.execute(
                "INSERT INTO sessions (id_sha256, user_id, csrf, created_at, last_seen, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![s.id_sha256, s.user_id, s.csrf, s.created_at, s.last_seen, s.expires_at],
            )?;
            Ok(())
        })
        .await
}

pub(super) async fn session(
    store: &SqliteStore,
    id_sha256: String,
    now: i64,
    idle_secs: i64,
) -> Result<Option<(SessionRecord, UserRecord)>, StoreError> {
    store
        .with_conn(move |c| {
            let row = c
                .prepare_cached(&format!(
                    "SELECT s.id_sha256, s.user_id, s.csrf, s.created_at, s.last_seen, s.expires_at, {}
                     FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id_sha256 = ?1",
                    USER_COLS.split(", ").map(|c| format!("u.{c}")).collect::<Vec<_>>().join(", ")
                ))?
                .query_row(params![id_sha256], |r| {
                    Ok((
                        SessionRecord {
                            id_sha256: r.get(0)?,
                            user_id: r.get(1)?,
                            csrf: r.get(2)?,
                            created_at: r.get(3)?,
                            last_seen: r.get(4)?,
                            expires_at: r.get(5)?,
                        },
                        user_from_row(r, 6)?,
                    ))
                })
                .optional()?;
            let Some((s, u)) = row else { return Ok(None) };
            if s.expires_at <= now || s.last_seen + idle_secs <= now || u.disabled_at.is_some() {
                c.execute("DELETE FROM sessions WHERE id_sha256 = ?1", params![id_sha256])?;
                return Ok(None);
            }
            c.prepare_cached("UPDATE sessions SET last_seen = ?2 WHERE id_sha256 = ?1 AND last_seen < ?2")?
                .execute(params![id_sha256, now])?;
            Ok(Some((s, u)))
        })
        .await
}

pub(super) async fn delete_session(store: &SqliteStore, id_sha256: String) -> Result<(), StoreError> {
    store
        .with_conn(move |c| {
            c.execute("DELETE FROM sessions WHERE id_sha256 = ?1", params![id_sha256])?;
            Ok(())
        })
        .await
}

pub(super) async fn add_token(store: &SqliteStore, t: ApiTokenRecord) -> Result<(), StoreError> {
    store
        .with_conn(move |c| {
            c.execute(
                "INSERT INTO api_tokens (id, token_sha256, role, user_id, name, scopes, created_at, expires_at)
                 SELECT ?1, ?2, role, ?3, ?4, ?5, ?6, ?7 FROM users WHERE id = ?3",
                params![t.id, t.token_sha256, t.user_id, t.name, t.scopes, t.created_at, t.expires_at],
            )?;
            Ok(())
        })
        .await
}

/// The token check that every API request makes: a live token and its enabled user.
static TOKEN_AUTH_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT {TOKEN_COLS}, {} FROM api_tokens t JOIN users u ON u.id = t.user_id
             WHERE t.token_sha256 = ?1 AND t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > ?2)
               AND u.disabled_at IS NULL",
        USER_COLS.split(", ").map(|c| format!("u.{c}")).collect::<Vec<_>>().join(", ")
    )
});

pub(super) async fn token_auth(
    store: &SqliteStore,
    token_sha256: String,
    now: i64,
) -> Result<Option<(ApiTokenRecord, UserRecord)>, StoreError> {
    let hash = token_sha256.clone();
    let row = store
        .with_read(move |c| {
            Ok(c.prepare_cached(&TOKEN_AUTH_SQL)?
                .query_row(params![hash, now], |r| Ok((token_from_row(r)?, user_from_row(r, 10)?)))
                .optional()?)
        })
        .await?;
    // Coarse (per minute) so that every API call is not a write.
    if row.as_ref().is_some_and(|(t, _)| t.last_used.is_none_or(|at| at < now - 60)) {
        store.with_conn(move |c| {
                c.prepare_cached(
                    "UPDATE api_tokens SET last_used = ?2 WHERE token_sha256 = ?1 AND (last_used IS NULL OR last_used < ?2 - 60)",
                )?
                .execute(params![token_sha256, now])?;
                Ok(())
            })
            .await?;
    }
    Ok(row)
}

pub(super) async fn tokens(store: &SqliteStore, user_id: Option<String>) -> Result<Vec<ApiTokenRecord>, StoreError> {
    store
        .with_conn(move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {TOKEN_COLS} FROM api_tokens t JOIN users u ON u.id = t.user_id
                 WHERE ?1 IS NULL OR t.user_id = ?1 ORDER BY t.created_at, t.id"
            ))?;
            let rows = stmt.query_map(params![user_id], token_from_row)?.collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
}

pub(super) async fn token(store: &SqliteStore, id: String) -> Result<Option<ApiTokenRecord>, StoreError> {
    store
        .with_conn(move |c| {
            Ok(c.prepare_cached(&format!(
                "SELECT {TOKEN_COLS} FROM api_tokens t JOIN users u ON u.id = t.user_id WHERE t.id = ?1"
            ))?
            .query_row(params![id], token_from_row)
            .optional()?)
        })
        .await
}

pub(super) async fn revoke_token(store: &SqliteStore, id: String, now: i64) -> Result<bool, StoreError> {
    store
        .with_conn(move |c| {
            Ok(c.execute(
                "UPDATE api_tokens SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
                params![id, now],
            )? == 1)
        })
        .await
}

#[cfg(test)]
mod tests {
    use rusqlite::StatementStatus;

    use super::*;

    /// The token check runs on every API request with other values each time; SQLite must
    /// run it from its cached plan, not parse and plan it again on each call (it did: a
    /// seventh of the control plane's CPU under load). Checked on a read connection and
    /// on the writer, both opened by the store itself.
    #[tokio::test]
    async fn the_token_check_is_planned_once_and_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(&dir.path().join("cp.db")).expect("open");
        let run = |c: &rusqlite::Connection| -> Result<i32, StoreError> {
            for i in 0..5_i64 {
                c.prepare_cached(&TOKEN_AUTH_SQL)?
                    .query_map(params![format!("sha-{i}"), 1_000 + i], |_| Ok(()))?
                    .count();
            }
            Ok(c.prepare_cached(&TOKEN_AUTH_SQL)?.get_status(StatementStatus::RePrepare))
        };
        assert_eq!(store.with_read(run).await.expect("read"), 0, "re-planned on a read connection");
        assert_eq!(store.with_conn(move |c| run(c)).await.expect("write"), 0, "re-planned on the writer");
    }
}
