//! The PostgreSQL backend's users, their single sign-on identities, groups and
//! connection shares.

use std::collections::HashMap;

use tokio_postgres::{IsolationLevel, Row};

use crate::store::access::Role;
use crate::store::access::{GroupRecord, ShareRecord, UserRecord, UserUpdate};
use crate::store::postgres::PgStore;
use crate::store::{AccessRefusal, StoreError};

/// A user's columns; the table is always aliased `u`.
pub(super) const USER_COLS: &str = "u.id, u.name, u.role, u.password_hash, u.created_at, u.disabled_at, u.last_sign_in";

pub(super) fn user_from_row(r: &Row, at: usize) -> Result<UserRecord, StoreError> {
    let role: String = r.get(at + 2);
    Ok(UserRecord {
        id: r.get(at),
        name: r.get(at + 1),
        role: Role::parse(&role)
            .ok_or_else(|| StoreError::Corrupt { table: "users", reason: format!("unknown role {role:?}") })?,
        password_hash: r.get(at + 3),
        created_at: r.get(at + 4),
        disabled_at: r.get(at + 5),
        last_sign_in: r.get(at + 6),
    })
}

/// The id of the user with this name; the row is key-share locked until the transaction
/// ends, like the foreign-key check of an insert that refers to it.
pub(super) async fn user_id_by_name(
    tx: &deadpool_postgres::Transaction<'_>,
    name: &str,
) -> Result<Option<String>, StoreError> {
    let stmt = tx.prepare_cached("SELECT id FROM users WHERE name = $1 FOR KEY SHARE").await?;
    Ok(tx.query_opt(&stmt, &[&name]).await?.map(|r| r.get(0)))
}

/// Whether the group exists; its row is key-share locked until the transaction ends, so
/// a concurrent `delete_group` waits (and then cascades what this transaction added)
/// instead of turning the insert that follows into a foreign-key error.
async fn group_exists(tx: &deadpool_postgres::Transaction<'_>, name: &str) -> Result<bool, StoreError> {
    let stmt = tx.prepare_cached("SELECT 1 FROM groups WHERE name = $1 FOR KEY SHARE").await?;
    Ok(tx.query_opt(&stmt, &[&name]).await?.is_some())
}

pub(super) async fn create_user(store: &PgStore, u: UserRecord) -> Result<bool, StoreError> {
    let client = store.client().await?;
    let n = client
        .execute(
            "INSERT INTO users (id, name, role, password_hash, created_at, disabled_at)
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (name) DO NOTHING",
            &[&u.id, &u.name, &u.role.as_str(), &u.password_hash, &u.created_at, &u.disabled_at],
        )
        .await?;
    Ok(n == 1)
}

pub(super) async fn user_by_name(store: &PgStore, name: String) -> Result<Option<UserRecord>, StoreError> {
    let client = store.client().await?;
    let stmt = client.prepare_cached(&format!("SELECT {USER_COLS} FROM users u WHERE u.name = $1")).await?;
    client.query_opt(&stmt, &[&name]).await?.map(|r| user_from_row(&r, 0)).transpose()
}

pub(super) async fn user_by_id(store: &PgStore, id: String) -> Result<Option<UserRecord>, StoreError> {
    let client = store.client().await?;
    let stmt = client.prepare_cached(&format!("SELECT {USER_COLS} FROM users u WHERE u.id = $1")).await?;
    client.query_opt(&stmt, &[&id]).await?.map(|r| user_from_row(&r, 0)).transpose()
}

pub(super) async fn oidc_user(
    store: &PgStore,
    issuer: String,
    subject: String,
) -> Result<Option<UserRecord>, StoreError> {
    let client = store.client().await?;
    let stmt = client
        .prepare_cached(&format!(
            "SELECT {USER_COLS} FROM users u JOIN oidc_identities o ON o.user_id = u.id
                 WHERE o.issuer = $1 AND o.subject = $2"
        ))
        .await?;
    client.query_opt(&stmt, &[&issuer, &subject]).await?.map(|r| user_from_row(&r, 0)).transpose()
}

pub(super) async fn oidc_linked(store: &PgStore, user_id: String, issuer: String) -> Result<bool, StoreError> {
    let client = store.client().await?;
    // EXISTS: a user may have several subjects of one issuer linked, and `query_opt`
    // fails on more than one row.
    let stmt = client
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM oidc_identities WHERE user_id = $1 AND issuer = $2)")
        .await?;
    Ok(client.query_one(&stmt, &[&user_id, &issuer]).await?.get(0))
}

pub(super) async fn link_oidc(
    store: &PgStore,
    issuer: String,
    subject: String,
    user_id: String,
    now: i64,
) -> Result<bool, StoreError> {
    let client = store.client().await?;
    let n = client
        .execute(
            "INSERT INTO oidc_identities (issuer, subject, user_id, created_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (issuer, subject) DO NOTHING",
            &[&issuer, &subject, &user_id, &now],
        )
        .await?;
    Ok(n == 1)
}

pub(super) async fn users(store: &PgStore) -> Result<Vec<UserRecord>, StoreError> {
    let client = store.client().await?;
    let rows = client.query(&format!("SELECT {USER_COLS} FROM users u ORDER BY u.name COLLATE \"C\""), &[]).await?;
    rows.iter().map(|r| user_from_row(r, 0)).collect()
}

pub(super) async fn update_user(
    store: &PgStore,
    name: String,
    update: UserUpdate,
    now: i64,
) -> Result<Option<UserRecord>, StoreError> {
    let mut client = store.client().await?;
    let tx = client.transaction().await?;
    // The "never leave no enabled admin" check counts admins after the change. Under
    // READ COMMITTED two replicas demoting or disabling two different admins at once
    // would each still count the other and both commit, leaving none. Locking every
    // enabled admin's row first serialises such changes: the second waits for the
    // first to commit, then counts what it left. NO KEY UPDATE (what the UPDATE below
    // takes anyway) does not block inserts whose foreign keys point at these users.
    tx.execute("SELECT 1 FROM users WHERE role = 'admin' AND disabled_at IS NULL ORDER BY id FOR NO KEY UPDATE", &[])
        .await?;
    let role = update.role.map(Role::as_str);
    let stmt = tx
        .prepare_cached(&format!(
            "UPDATE users u SET role = COALESCE($2, u.role),
                     disabled_at = CASE WHEN $3::BOOLEAN IS NULL THEN u.disabled_at
                                        WHEN $3::BOOLEAN THEN COALESCE(u.disabled_at, $4::BIGINT)
                                        ELSE NULL END,
                     password_hash = COALESCE($5, u.password_hash)
                 WHERE u.name = $1 RETURNING {USER_COLS}"
        ))
        .await?;
    let Some(row) = tx.query_opt(&stmt, &[&name, &role, &update.disabled, &now, &update.password_hash]).await? else {
        return Ok(None);
    };
    let user = user_from_row(&row, 0)?;
    // Disabling ends the user's sessions; so does a new password (the sessions signed
    // in with the old one).
    if update.disabled == Some(true) || update.password_hash.is_some() {
        tx.execute("DELETE FROM sessions WHERE user_id = $1", &[&user.id]).await?;
    }
    let admins: i64 =
        tx.query_one("SELECT COUNT(*) FROM users WHERE role = 'admin' AND disabled_at IS NULL", &[]).await?.get(0);
    if admins == 0 {
        return Err(StoreError::Conflict(
            "this change would leave no enabled admin; make another user admin first".into(),
        ));
    }
    tx.commit().await?;
    Ok(Some(user))
}

pub(super) async fn record_sign_in(store: &PgStore, user_id: String, now: i64) -> Result<(), StoreError> {
    let client = store.client().await?;
    client.execute("UPDATE users SET last_sign_in = $2 WHERE id = $1", &[&user_id, &now]).await?;
    Ok(())
}

pub(super) async fn create_group(store: &PgStore, name: String, now: i64) -> Result<bool, StoreError> {
    let client = store.client().await?;
    let n = client
        .execute("INSERT INTO groups (name, created_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING", &[&name, &now])
        .await?;
    Ok(n == 1)
}

pub(super) async fn delete_group(store: &PgStore, name: String) -> Result<bool, StoreError> {
    let client = store.client().await?;
    Ok(client.execute("DELETE FROM groups WHERE name = $1", &[&name]).await? == 1)
}

pub(super) async fn groups(store: &PgStore) -> Result<Vec<GroupRecord>, StoreError> {
    let mut client = store.client().await?;
    // Two reads of one snapshot, so a member never names a group the first read missed.
    let tx = client.build_transaction().isolation_level(IsolationLevel::RepeatableRead).read_only(true).start().await?;
    let mut groups: Vec<GroupRecord> = tx
        .query("SELECT name, created_at FROM groups ORDER BY name COLLATE \"C\"", &[])
        .await?
        .iter()
        .map(|r| GroupRecord { name: r.get(0), created_at: r.get(1), members: Vec::new() })
        .collect();
    let members = tx
        .query(
            "SELECT m.group_name, u.name FROM group_members m JOIN users u ON u.id = m.user_id
                 ORDER BY u.name COLLATE \"C\"",
            &[],
        )
        .await?;
    tx.commit().await?;
    let index: HashMap<String, usize> = groups.iter().enumerate().map(|(i, g)| (g.name.clone(), i)).collect();
    for row in &members {
        let group: String = row.get(0);
        if let Some(g) = index.get(&group).and_then(|&i| groups.get_mut(i)) {
            g.members.push(row.get(1));
        }
    }
    Ok(groups)
}

pub(super) async fn set_group_member(
    store: &PgStore,
    group: String,
    user: String,
    member: bool,
) -> Result<Result<(), AccessRefusal>, StoreError> {
    let mut client = store.client().await?;
    let tx = client.transaction().await?;
    if !group_exists(&tx, &group).await? {
        return Ok(Err(AccessRefusal::NoGroup { name: group }));
    }
    let Some(uid) = user_id_by_name(&tx, &user).await? else {
        return Ok(Err(AccessRefusal::NoUser { name: user }));
    };
    if member {
        tx.execute(
            "INSERT INTO group_members (group_name, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            &[&group, &uid],
        )
        .await?;
    } else {
        tx.execute("DELETE FROM group_members WHERE group_name = $1 AND user_id = $2", &[&group, &uid]).await?;
    }
    tx.commit().await?;
    Ok(Ok(()))
}

pub(super) async fn add_share(store: &PgStore, s: ShareRecord) -> Result<Result<(), AccessRefusal>, StoreError> {
    let mut client = store.client().await?;
    let tx = client.transaction().await?;
    let user_id = match &s.user {
        Some(u) => match user_id_by_name(&tx, u).await? {
            Some(id) => Some(id),
            None => return Ok(Err(AccessRefusal::NoUser { name: u.clone() })),
        },
        None => None,
    };
    if let Some(g) = &s.group {
        if !group_exists(&tx, g).await? {
            return Ok(Err(AccessRefusal::NoGroup { name: g.clone() }));
        }
    }
    // No conflict target: like SQLite's, it covers every unique index (the id and
    // `shares_unique`); a concurrent identical insert waits for the first and then
    // does nothing.
    let n = tx
        .execute(
            "INSERT INTO shares (id, agent, connection, user_id, group_name, created_at, created_by)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
            &[&s.id, &s.agent, &s.connection, &user_id, &s.group, &s.created_at, &s.created_by],
        )
        .await?;
    if n == 0 {
        return Ok(Err(AccessRefusal::AlreadyShared));
    }
    tx.commit().await?;
    Ok(Ok(()))
}

pub(super) async fn shares(store: &PgStore) -> Result<Vec<ShareRecord>, StoreError> {
    let client = store.client().await?;
    let rows = client
        .query(
            "SELECT s.id, s.agent, s.connection, u.name, s.group_name, s.created_at, s.created_by
                 FROM shares s LEFT JOIN users u ON u.id = s.user_id
                 ORDER BY s.agent COLLATE \"C\", s.connection COLLATE \"C\", s.created_at",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| ShareRecord {
            id: r.get(0),
            agent: r.get(1),
            connection: r.get(2),
            user: r.get(3),
            group: r.get(4),
            created_at: r.get(5),
            created_by: r.get(6),
        })
        .collect())
}

pub(super) async fn delete_share(store: &PgStore, id: String) -> Result<bool, StoreError> {
    let client = store.client().await?;
    Ok(client.execute("DELETE FROM shares WHERE id = $1", &[&id]).await? == 1)
}

pub(super) async fn shared_connections(store: &PgStore, user_id: String) -> Result<Vec<(String, String)>, StoreError> {
    let client = store.client().await?;
    // With DISTINCT, ORDER BY may only name selected expressions: the collation is
    // applied in the select list (byte-equal strings are equal in either collation).
    let stmt = client
        .prepare_cached(
            "SELECT DISTINCT agent COLLATE \"C\", connection COLLATE \"C\" FROM shares
                 WHERE user_id = $1 OR group_name IN (SELECT group_name FROM group_members WHERE user_id = $1)
                 ORDER BY 1, 2",
        )
        .await?;
    Ok(client.query(&stmt, &[&user_id]).await?.iter().map(|r| (r.get(0), r.get(1))).collect())
}
