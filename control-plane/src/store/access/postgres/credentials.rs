//! The PostgreSQL backend's sign-in sessions and API tokens (hashes only).

use tokio_postgres::Row;

use super::users::{user_from_row, USER_COLS};
use crate::store::access::{ApiTokenRecord, SessionRecord, UserRecord};
use crate::store::postgres::PgStore;
use crate::store::StoreError;

const TOKEN_COLS: &str =
    "t.id, t.token_sha256, t.user_id, u.name, t.name, t.scopes, t.created_at, t.expires_at, t.last_used, t.revoked_at";

fn token_from_row(r: &Row) -> ApiTokenRecord {
    ApiTokenRecord {
        id: r.get(0),
        token_sha256: r.get(1),
        user_id: r.get(2),
        user: r.get(3),
        name: r.get(4),
        scopes: r.get(5),
        created_at: r.get(6),
        expires_at: r.get(7),
        last_used: r.get(8),
        revoked_at: r.get(9),
    }
}

pub(super) async fn create_session(store: &PgStore, s: SessionRecord) -> Result<(), StoreError> {
    let client = store.client().await?;
    client
        .execute(
            "INSERT INTO sessions (id_sha256, user_id, csrf, created_at, last_seen, expires_at)
                 VALUES ($1, $2, $3, $4, $5, $6)",
            &[&s.id_sha256, &s.user_id, &s.csrf, &s.created_at, &s.last_seen, &s.expires_at],
        )
        .await?;
    Ok(())
}

pub(super) async fn session(
    store: &PgStore,
    id_sha256: String,
    now: i64,
    idle_secs: i64,
) -> Result<Option<(SessionRecord, UserRecord)>, StoreError> {
    let mut client = store.client().await?;
    let tx = client.transaction().await?;
    // The session row is locked: a concurrent disable or password change (which
    // deletes the user's sessions) either commits first, and then the row is gone, or
    // waits for this use to end.
    let stmt = tx
        .prepare_cached(&format!(
            "SELECT s.id_sha256, s.user_id, s.csrf, s.created_at, s.last_seen, s.expires_at, {USER_COLS}
                 FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id_sha256 = $1
                 FOR NO KEY UPDATE OF s"
        ))
        .await?;
    let Some(row) = tx.query_opt(&stmt, &[&id_sha256]).await? else {
        return Ok(None);
    };
    let s = SessionRecord {
        id_sha256: row.get(0),
        user_id: row.get(1),
        csrf: row.get(2),
        created_at: row.get(3),
        last_seen: row.get(4),
        expires_at: row.get(5),
    };
    let u = user_from_row(&row, 6)?;
    if s.expires_at <= now || s.last_seen.saturating_add(idle_secs) <= now || u.disabled_at.is_some() {
        tx.execute("DELETE FROM sessions WHERE id_sha256 = $1", &[&id_sha256]).await?;
        tx.commit().await?;
        return Ok(None);
    }
    let stmt = tx.prepare_cached("UPDATE sessions SET last_seen = $2 WHERE id_sha256 = $1 AND last_seen < $2").await?;
    tx.execute(&stmt, &[&id_sha256, &now]).await?;
    tx.commit().await?;
    Ok(Some((s, u)))
}

pub(super) async fn delete_session(store: &PgStore, id_sha256: String) -> Result<(), StoreError> {
    let client = store.client().await?;
    client.execute("DELETE FROM sessions WHERE id_sha256 = $1", &[&id_sha256]).await?;
    Ok(())
}

pub(super) async fn add_token(store: &PgStore, t: ApiTokenRecord) -> Result<(), StoreError> {
    let client = store.client().await?;
    // Like SQLite's: nothing is stored for an unknown user.
    client
        .execute(
            "INSERT INTO api_tokens (id, token_sha256, role, user_id, name, scopes, created_at, expires_at)
                 SELECT $1, $2, role, $3, $4, $5, $6, $7 FROM users WHERE id = $3",
            &[&t.id, &t.token_sha256, &t.user_id, &t.name, &t.scopes, &t.created_at, &t.expires_at],
        )
        .await?;
    Ok(())
}

pub(super) async fn token_auth(
    store: &PgStore,
    token_sha256: String,
    now: i64,
) -> Result<Option<(ApiTokenRecord, UserRecord)>, StoreError> {
    let client = store.client().await?;
    // One round trip on the common path: the read needs no transaction, and the
    // coarse (per minute) last_used update is sent only when it is due. It is
    // conditional, so two requests with one token at once write at most once.
    let stmt = client
        .prepare_cached(&format!(
            "SELECT {TOKEN_COLS}, {USER_COLS} FROM api_tokens t JOIN users u ON u.id = t.user_id
                 WHERE t.token_sha256 = $1 AND t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > $2)
                   AND u.disabled_at IS NULL"
        ))
        .await?;
    let Some(row) = client.query_opt(&stmt, &[&token_sha256, &now]).await? else {
        return Ok(None);
    };
    let found = (token_from_row(&row), user_from_row(&row, 10)?);
    if found.0.last_used.is_none_or(|at| at < now - 60) {
        let stmt = client
            .prepare_cached(
                "UPDATE api_tokens SET last_used = $2
                     WHERE token_sha256 = $1 AND (last_used IS NULL OR last_used < $2::BIGINT - 60)",
            )
            .await?;
        client.execute(&stmt, &[&token_sha256, &now]).await?;
    }
    Ok(Some(found))
}

pub(super) async fn tokens(store: &PgStore, user_id: Option<String>) -> Result<Vec<ApiTokenRecord>, StoreError> {
    let client = store.client().await?;
    let stmt = client
        .prepare_cached(&format!(
            "SELECT {TOKEN_COLS} FROM api_tokens t JOIN users u ON u.id = t.user_id
                 WHERE $1::TEXT IS NULL OR t.user_id = $1 ORDER BY t.created_at, t.id COLLATE \"C\""
        ))
        .await?;
    Ok(client.query(&stmt, &[&user_id]).await?.iter().map(token_from_row).collect())
}

pub(super) async fn token(store: &PgStore, id: String) -> Result<Option<ApiTokenRecord>, StoreError> {
    let client = store.client().await?;
    let stmt = client
        .prepare_cached(&format!(
            "SELECT {TOKEN_COLS} FROM api_tokens t JOIN users u ON u.id = t.user_id WHERE t.id = $1"
        ))
        .await?;
    Ok(client.query_opt(&stmt, &[&id]).await?.as_ref().map(token_from_row))
}

pub(super) async fn revoke_token(store: &PgStore, id: String, now: i64) -> Result<bool, StoreError> {
    let client = store.client().await?;
    Ok(client
        .execute("UPDATE api_tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL", &[&id, &now])
        .await?
        == 1)
}
