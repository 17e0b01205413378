//! The SQLite backend's users, their single sign-on identities, groups and connection
//! shares.

use rusqlite::{params, Connection, OptionalExtension};

use crate::store::access::Role;
use crate::store::access::{GroupRecord, ShareRecord, UserRecord, UserUpdate};
use crate::store::{AccessRefusal, SqliteStore, StoreError};

pub(super) const USER_COLS: &str = "id, name, role, password_hash, created_at, disabled_at, last_sign_in";

pub(super) fn user_from_row(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<UserRecord> {
    let role: String = r.get(at + 2)?;
    Ok(UserRecord {
        id: r.get(at)?,
        name: r.get(at + 1)?,
        role: Role::parse(&role).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(at + 2, rusqlite::types::Type::Text, "unknown role".into())
        })?,
        password_hash: r.get(at + 3)?,
        created_at: r.get(at + 4)?,
        disabled_at: r.get(at + 5)?,
        last_sign_in: r.get(at + 6)?,
    })
}

pub(super) fn user_id_by_name(c: &Connection, name: &str) -> Result<Option<String>, StoreError> {
    Ok(c.prepare_cached("SELECT id FROM users WHERE name = ?1")?.query_row(params![name], |r| r.get(0)).optional()?)
}

fn enabled_admins(c: &Connection) -> Result<i64, StoreError> {
    Ok(c.query_row("SELECT COUNT(*) FROM users WHERE role = 'admin' AND disabled_at IS NULL", [], |r| r.get(0))?)
}

pub(super) async fn create_user(store: &SqliteStore, u: UserRecord) -> Result<bool, StoreError> {
    store
        .with_conn(move |c| {
            let n = c.execute(
                "INSERT INTO users (id, name, role, password_hash, created_at, disabled_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT(name) DO NOTHING",
                params![u.id, u.name, u.role.as_str(), u.password_hash, u.created_at, u.disabled_at],
            )?;
            Ok(n == 1)
        })
        .await
}

pub(super) async fn user_by_name(store: &SqliteStore, name: String) -> Result<Option<UserRecord>, StoreError> {
    store
        .with_conn(move |c| {
            Ok(c.prepare_cached(&format!("SELECT {USER_COLS} FROM users WHERE name = ?1"))?
                .query_row(params![name], |r| user_from_row(r, 0))
                .optional()?)
        })
        .await
}

pub(super) async fn oidc_user(
    store: &SqliteStore,
    issuer: String,
    subject: String,
) -> Result<Option<UserRecord>, StoreError> {
    store.with_conn(move |c| {
            Ok(c.prepare_cached(&format!(
                "SELECT {} FROM users u JOIN oidc_identities o ON o.user_id = u.id WHERE o.issuer = ?1 AND o.subject = ?2",
                USER_COLS.split(", ").map(|col| format!("u.{}", col.trim())).collect::<Vec<_>>().join(", ")
            ))?
            .query_row(params![issuer, subject], |r| user_from_row(r, 0))
            .optional()?)
        })
        .await
}

pub(super) async fn oidc_linked(store: &SqliteStore, user_id: String, issuer: String) -> Result<bool, StoreError> {
    store
        .with_conn(move |c| {
            Ok(c.prepare_cached("SELECT 1 FROM oidc_identities WHERE user_id = ?1 AND issuer = ?2")?
                .query_row(params![user_id, issuer], |_| Ok(()))
                .optional()?
                .is_some())
        })
        .await
}

pub(super) async fn link_oidc(
    store: &SqliteStore,
    issuer: String,
    subject: String,
    user_id: String,
    now: i64,
) -> Result<bool, StoreError> {
    store
        .with_conn(move |c| {
            let n = c.execute(
                "INSERT INTO oidc_identities (issuer, subject, user_id, created_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(issuer, subject) DO NOTHING",
                params![issuer, subject, user_id, now],
            )?;
            Ok(n == 1)
        })
        .await
}

pub(super) async fn user_by_id(store: &SqliteStore, id: String) -> Result<Option<UserRecord>, StoreError> {
    store
        .with_conn(move |c| {
            Ok(c.prepare_cached(&format!("SELECT {USER_COLS} FROM users WHERE id = ?1"))?
                .query_row(params![id], |r| user_from_row(r, 0))
                .optional()?)
        })
        .await
}

pub(super) async fn users(store: &SqliteStore) -> Result<Vec<UserRecord>, StoreError> {
    store
        .with_conn(|c| {
            let mut stmt = c.prepare_cached(&format!("SELECT {USER_COLS} FROM users ORDER BY name"))?;
            let rows = stmt.query_map([], |r| user_from_row(r, 0))?.collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
}

pub(super) async fn update_user(
    store: &SqliteStore,
    name: String,
    update: UserUpdate,
    now: i64,
) -> Result<Option<UserRecord>, StoreError> {
    store
        .with_conn(move |c| {
            let tx = c.savepoint()?;
            let Some(id) = user_id_by_name(&tx, &name)? else {
                return Ok(None);
            };
            if let Some(role) = update.role {
                tx.execute("UPDATE users SET role = ?2 WHERE id = ?1", params![id, role.as_str()])?;
            }
            match update.disabled {
                Some(true) => {
                    tx.execute(
                        "UPDATE users SET disabled_at = COALESCE(disabled_at, ?2) WHERE id = ?1",
                        params![id, now],
                    )?;
                    tx.execute("DELETE FROM sessions WHERE user_id = ?1", params![id])?;
                }
                Some(false) => {
                    tx.execute("UPDATE users SET disabled_at = NULL WHERE id = ?1", params![id])?;
                }
                None => {}
            }
            if let Some(hash) = update.password_hash {
                tx.execute("UPDATE users SET password_hash = ?2 WHERE id = ?1", params![id, hash])?;
                // A new password ends the sessions signed in with the old one.
                tx.execute("DELETE FROM sessions WHERE user_id = ?1", params![id])?;
            }
            if enabled_admins(&tx)? == 0 {
                return Err(StoreError::Conflict(
                    "this change would leave no enabled admin; make another user admin first".into(),
                ));
            }
            let u = tx
                .prepare_cached(&format!("SELECT {USER_COLS} FROM users WHERE id = ?1"))?
                .query_row(params![id], |r| user_from_row(r, 0))?;
            tx.commit()?;
            Ok(Some(u))
        })
        .await
}

pub(super) async fn record_sign_in(store: &SqliteStore, user_id: String, now: i64) -> Result<(), StoreError> {
    store
        .with_conn(move |c| {
            c.execute("UPDATE users SET last_sign_in = ?2 WHERE id = ?1", params![user_id, now])?;
            Ok(())
        })
        .await
}

pub(super) async fn create_group(store: &SqliteStore, name: String, now: i64) -> Result<bool, StoreError> {
    store
        .with_conn(move |c| {
            Ok(c.execute(
                "INSERT INTO groups (name, created_at) VALUES (?1, ?2) ON CONFLICT(name) DO NOTHING",
                params![name, now],
            )? == 1)
        })
        .await
}

pub(super) async fn delete_group(store: &SqliteStore, name: String) -> Result<bool, StoreError> {
    store.with_conn(move |c| Ok(c.execute("DELETE FROM groups WHERE name = ?1", params![name])? == 1)).await
}

pub(super) async fn groups(store: &SqliteStore) -> Result<Vec<GroupRecord>, StoreError> {
    store
        .with_conn(|c| {
            let mut groups: Vec<GroupRecord> = c
                .prepare_cached("SELECT name, created_at FROM groups ORDER BY name")?
                .query_map([], |r| Ok(GroupRecord { name: r.get(0)?, created_at: r.get(1)?, members: Vec::new() }))?
                .collect::<Result<_, _>>()?;
            let mut stmt = c.prepare_cached(
                "SELECT m.group_name, u.name FROM group_members m JOIN users u ON u.id = m.user_id ORDER BY u.name",
            )?;
            for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))? {
                let (g, u) = row?;
                if let Some(group) = groups.iter_mut().find(|x| x.name == g) {
                    group.members.push(u);
                }
            }
            Ok(groups)
        })
        .await
}

pub(super) async fn set_group_member(
    store: &SqliteStore,
    group: String,
    user: String,
    member: bool,
) -> Result<Result<(), AccessRefusal>, StoreError> {
    store
        .with_conn(move |c| {
            let tx = c.savepoint()?;
            let exists: Option<i64> =
                tx.query_row("SELECT 1 FROM groups WHERE name = ?1", params![group], |r| r.get(0)).optional()?;
            if exists.is_none() {
                return Ok(Err(AccessRefusal::NoGroup { name: group }));
            }
            let Some(uid) = user_id_by_name(&tx, &user)? else {
                return Ok(Err(AccessRefusal::NoUser { name: user }));
            };
            if member {
                tx.execute(
                    "INSERT INTO group_members (group_name, user_id) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
                    params![group, uid],
                )?;
            } else {
                tx.execute("DELETE FROM group_members WHERE group_name = ?1 AND user_id = ?2", params![group, uid])?;
            }
            tx.commit()?;
            Ok(Ok(()))
        })
        .await
}

pub(super) async fn add_share(store: &SqliteStore, s: ShareRecord) -> Result<Result<(), AccessRefusal>, StoreError> {
    store
        .with_conn(move |c| {
            let tx = c.savepoint()?;
            let user_id = match &s.user {
                Some(u) => match user_id_by_name(&tx, u)? {
                    Some(id) => Some(id),
                    None => return Ok(Err(AccessRefusal::NoUser { name: u.clone() })),
                },
                None => None,
            };
            if let Some(g) = &s.group {
                let exists: Option<i64> =
                    tx.query_row("SELECT 1 FROM groups WHERE name = ?1", params![g], |r| r.get(0)).optional()?;
                if exists.is_none() {
                    return Ok(Err(AccessRefusal::NoGroup { name: g.clone() }));
                }
            }
            let n = tx.execute(
                "INSERT INTO shares (id, agent, connection, user_id, group_name, created_at, created_by)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT DO NOTHING",
                params![s.id, s.agent, s.connection, user_id, s.group, s.created_at, s.created_by],
            )?;
            if n == 0 {
                return Ok(Err(AccessRefusal::AlreadyShared));
            }
            tx.commit()?;
            Ok(Ok(()))
        })
        .await
}

pub(super) async fn shares(store: &SqliteStore) -> Result<Vec<ShareRecord>, StoreError> {
    store
        .with_conn(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT s.id, s.agent, s.connection, u.name, s.group_name, s.created_at, s.created_by
                 FROM shares s LEFT JOIN users u ON u.id = s.user_id ORDER BY s.agent, s.connection, s.created_at",
            )?;
            let rows = stmt
                .query_map([], |r| {
                    Ok(ShareRecord {
                        id: r.get(0)?,
                        agent: r.get(1)?,
                        connection: r.get(2)?,
                        user: r.get(3)?,
                        group: r.get(4)?,
                        created_at: r.get(5)?,
                        created_by: r.get(6)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
}

pub(super) async fn delete_share(store: &SqliteStore, id: String) -> Result<bool, StoreError> {
    store.with_conn(move |c| Ok(c.execute("DELETE FROM shares WHERE id = ?1", params![id])? == 1)).await
}

pub(super) async fn shared_connections(
    store: &SqliteStore,
    user_id: String,
) -> Result<Vec<(String, String)>, StoreError> {
    store
        .with_conn(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT DISTINCT agent, connection FROM shares
                 WHERE user_id = ?1 OR group_name IN (SELECT group_name FROM group_members WHERE user_id = ?1)
                 ORDER BY agent, connection",
            )?;
            let rows = stmt.query_map(params![user_id], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?;
            Ok(rows)
        })
        .await
}
