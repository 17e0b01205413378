//! [`AccessStore`] on PostgreSQL: the same behaviour as the SQLite implementation in
//! [`crate::store::access`], for several replicas sharing one database.
//!
//! - Every method that the SQLite backend runs as several statements is one transaction
//!   here. Where SQLite relies on serialising writers (a check, then a change), the
//!   rows the check reads are locked first, so READ COMMITTED replicas cannot interleave.
//! - Text is ordered with `COLLATE "C"` (byte order, like SQLite's `BINARY`), so lists
//!   come back in the same order whatever the database's default collation is.
//! - Password and token hashes are bound as parameters, never logged or put in errors.

use std::collections::HashMap;

use tokio_postgres::types::ToSql;
use tokio_postgres::{IsolationLevel, Row};

use crate::store::access::{
    AccessStore, ApiTokenRecord, AuditEvent, AuditFilter, GroupRecord, ProjectRecord, SessionRecord, ShareRecord,
    UserRecord, UserUpdate,
};
use crate::store::access::{Grant, Role};
use crate::store::postgres::PgStore;
use crate::store::StoreError;

/// A user's columns; the table is always aliased `u`.
const USER_COLS: &str = "u.id, u.name, u.role, u.password_hash, u.created_at, u.disabled_at, u.last_sign_in";

fn user_from_row(r: &Row, at: usize) -> Result<UserRecord, StoreError> {
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

const PROJECT_COLS: &str = "p.id, p.name, p.owner, u.name, p.queries, p.embed_epoch, p.created_at, p.updated_at";

fn project_from_row(r: &Row) -> ProjectRecord {
    ProjectRecord {
        id: r.get(0),
        name: r.get(1),
        owner_id: r.get(2),
        owner: r.get(3),
        queries_json: r.get(4),
        embed_epoch: r.get(5),
        created_at: r.get(6),
        updated_at: r.get(7),
    }
}

fn grant_of(s: &str) -> Result<Grant, StoreError> {
    Grant::parse(s)
        .ok_or_else(|| StoreError::Corrupt { table: "project_grants", reason: format!("unknown grant {s:?}") })
}

const AUDIT_COLS: &str = "seq, at, actor, credential, action, target, outcome, status, remote, detail";

fn audit_from_row(r: &Row) -> Result<AuditEvent, StoreError> {
    let seq: i64 = r.get(0);
    let status: i64 = r.get(7);
    let detail: Option<String> = r.get(9);
    Ok(AuditEvent {
        seq,
        at: r.get(1),
        actor: r.get(2),
        credential: r.get(3),
        action: r.get(4),
        target: r.get(5),
        outcome: r.get(6),
        status: u16::try_from(status).map_err(|_| StoreError::Corrupt {
            table: "cloud_audit",
            reason: format!("event {seq}: status {status} is not an HTTP status"),
        })?,
        remote: r.get(8),
        detail: detail.and_then(|d| serde_json::from_str(&d).ok()),
    })
}

/// The id of the user with this name; the row is key-share locked until the transaction
/// ends, like the foreign-key check of an insert that refers to it.
async fn user_id_by_name(tx: &deadpool_postgres::Transaction<'_>, name: &str) -> Result<Option<String>, StoreError> {
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

impl AccessStore for PgStore {
    async fn create_user(&self, u: UserRecord) -> Result<bool, StoreError> {
        let client = self.client().await?;
        let n = client
            .execute(
                "INSERT INTO users (id, name, role, password_hash, created_at, disabled_at)
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (name) DO NOTHING",
                &[&u.id, &u.name, &u.role.as_str(), &u.password_hash, &u.created_at, &u.disabled_at],
            )
            .await?;
        Ok(n == 1)
    }

    async fn user_by_name(&self, name: String) -> Result<Option<UserRecord>, StoreError> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(&format!("SELECT {USER_COLS} FROM users u WHERE u.name = $1")).await?;
        client.query_opt(&stmt, &[&name]).await?.map(|r| user_from_row(&r, 0)).transpose()
    }

    async fn user_by_id(&self, id: String) -> Result<Option<UserRecord>, StoreError> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(&format!("SELECT {USER_COLS} FROM users u WHERE u.id = $1")).await?;
        client.query_opt(&stmt, &[&id]).await?.map(|r| user_from_row(&r, 0)).transpose()
    }

    async fn oidc_user(&self, issuer: String, subject: String) -> Result<Option<UserRecord>, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!(
                "SELECT {USER_COLS} FROM users u JOIN oidc_identities o ON o.user_id = u.id
                 WHERE o.issuer = $1 AND o.subject = $2"
            ))
            .await?;
        client.query_opt(&stmt, &[&issuer, &subject]).await?.map(|r| user_from_row(&r, 0)).transpose()
    }

    async fn oidc_linked(&self, user_id: String, issuer: String) -> Result<bool, StoreError> {
        let client = self.client().await?;
        // EXISTS: a user may have several subjects of one issuer linked, and `query_opt`
        // fails on more than one row.
        let stmt = client
            .prepare_cached("SELECT EXISTS (SELECT 1 FROM oidc_identities WHERE user_id = $1 AND issuer = $2)")
            .await?;
        Ok(client.query_one(&stmt, &[&user_id, &issuer]).await?.get(0))
    }

    async fn link_oidc(&self, issuer: String, subject: String, user_id: String, now: i64) -> Result<bool, StoreError> {
        let client = self.client().await?;
        let n = client
            .execute(
                "INSERT INTO oidc_identities (issuer, subject, user_id, created_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (issuer, subject) DO NOTHING",
                &[&issuer, &subject, &user_id, &now],
            )
            .await?;
        Ok(n == 1)
    }

    async fn users(&self) -> Result<Vec<UserRecord>, StoreError> {
        let client = self.client().await?;
        let rows = client.query(&format!("SELECT {USER_COLS} FROM users u ORDER BY u.name COLLATE \"C\""), &[]).await?;
        rows.iter().map(|r| user_from_row(r, 0)).collect()
    }

    async fn update_user(&self, name: String, update: UserUpdate, now: i64) -> Result<Option<UserRecord>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        // The "never leave no enabled admin" check counts admins after the change. Under
        // READ COMMITTED two replicas demoting or disabling two different admins at once
        // would each still count the other and both commit, leaving none. Locking every
        // enabled admin's row first serialises such changes: the second waits for the
        // first to commit, then counts what it left. NO KEY UPDATE (what the UPDATE below
        // takes anyway) does not block inserts whose foreign keys point at these users.
        tx.execute(
            "SELECT 1 FROM users WHERE role = 'admin' AND disabled_at IS NULL ORDER BY id FOR NO KEY UPDATE",
            &[],
        )
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
        let Some(row) = tx.query_opt(&stmt, &[&name, &role, &update.disabled, &now, &update.password_hash]).await?
        else {
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

    async fn record_sign_in(&self, user_id: String, now: i64) -> Result<(), StoreError> {
        let client = self.client().await?;
        client.execute("UPDATE users SET last_sign_in = $2 WHERE id = $1", &[&user_id, &now]).await?;
        Ok(())
    }

    async fn create_group(&self, name: String, now: i64) -> Result<bool, StoreError> {
        let client = self.client().await?;
        let n = client
            .execute(
                "INSERT INTO groups (name, created_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
                &[&name, &now],
            )
            .await?;
        Ok(n == 1)
    }

    async fn delete_group(&self, name: String) -> Result<bool, StoreError> {
        let client = self.client().await?;
        Ok(client.execute("DELETE FROM groups WHERE name = $1", &[&name]).await? == 1)
    }

    async fn groups(&self) -> Result<Vec<GroupRecord>, StoreError> {
        let mut client = self.client().await?;
        // Two reads of one snapshot, so a member never names a group the first read missed.
        let tx =
            client.build_transaction().isolation_level(IsolationLevel::RepeatableRead).read_only(true).start().await?;
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

    async fn set_group_member(
        &self,
        group: String,
        user: String,
        member: bool,
    ) -> Result<Result<(), String>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        if !group_exists(&tx, &group).await? {
            return Ok(Err(format!("no group {group:?}")));
        }
        let Some(uid) = user_id_by_name(&tx, &user).await? else {
            return Ok(Err(format!("no user {user:?}")));
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

    async fn add_share(&self, s: ShareRecord) -> Result<Result<(), String>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let user_id = match &s.user {
            Some(u) => match user_id_by_name(&tx, u).await? {
                Some(id) => Some(id),
                None => return Ok(Err(format!("no user {u:?}"))),
            },
            None => None,
        };
        if let Some(g) = &s.group {
            if !group_exists(&tx, g).await? {
                return Ok(Err(format!("no group {g:?}")));
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
            return Ok(Err("this connection is already shared with them".into()));
        }
        tx.commit().await?;
        Ok(Ok(()))
    }

    async fn shares(&self) -> Result<Vec<ShareRecord>, StoreError> {
        let client = self.client().await?;
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

    async fn delete_share(&self, id: String) -> Result<bool, StoreError> {
        let client = self.client().await?;
        Ok(client.execute("DELETE FROM shares WHERE id = $1", &[&id]).await? == 1)
    }

    async fn shared_connections(&self, user_id: String) -> Result<Vec<(String, String)>, StoreError> {
        let client = self.client().await?;
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

    async fn create_session(&self, s: SessionRecord) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO sessions (id_sha256, user_id, csrf, created_at, last_seen, expires_at)
                 VALUES ($1, $2, $3, $4, $5, $6)",
                &[&s.id_sha256, &s.user_id, &s.csrf, &s.created_at, &s.last_seen, &s.expires_at],
            )
            .await?;
        Ok(())
    }

    async fn session(
        &self,
        id_sha256: String,
        now: i64,
        idle_secs: i64,
    ) -> Result<Option<(SessionRecord, UserRecord)>, StoreError> {
        let mut client = self.client().await?;
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
        let stmt =
            tx.prepare_cached("UPDATE sessions SET last_seen = $2 WHERE id_sha256 = $1 AND last_seen < $2").await?;
        tx.execute(&stmt, &[&id_sha256, &now]).await?;
        tx.commit().await?;
        Ok(Some((s, u)))
    }

    async fn delete_session(&self, id_sha256: String) -> Result<(), StoreError> {
        let client = self.client().await?;
        client.execute("DELETE FROM sessions WHERE id_sha256 = $1", &[&id_sha256]).await?;
        Ok(())
    }

    async fn add_token(&self, t: ApiTokenRecord) -> Result<(), StoreError> {
        let client = self.client().await?;
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

    async fn token_auth(
        &self,
        token_sha256: String,
        now: i64,
    ) -> Result<Option<(ApiTokenRecord, UserRecord)>, StoreError> {
        let client = self.client().await?;
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

    async fn tokens(&self, user_id: Option<String>) -> Result<Vec<ApiTokenRecord>, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!(
                "SELECT {TOKEN_COLS} FROM api_tokens t JOIN users u ON u.id = t.user_id
                 WHERE $1::TEXT IS NULL OR t.user_id = $1 ORDER BY t.created_at, t.id COLLATE \"C\""
            ))
            .await?;
        Ok(client.query(&stmt, &[&user_id]).await?.iter().map(token_from_row).collect())
    }

    async fn token(&self, id: String) -> Result<Option<ApiTokenRecord>, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!(
                "SELECT {TOKEN_COLS} FROM api_tokens t JOIN users u ON u.id = t.user_id WHERE t.id = $1"
            ))
            .await?;
        Ok(client.query_opt(&stmt, &[&id]).await?.as_ref().map(token_from_row))
    }

    async fn revoke_token(&self, id: String, now: i64) -> Result<bool, StoreError> {
        let client = self.client().await?;
        Ok(client
            .execute("UPDATE api_tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL", &[&id, &now])
            .await?
            == 1)
    }

    async fn create_project(&self, p: ProjectRecord) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO projects (id, name, owner, queries, embed_epoch, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[&p.id, &p.name, &p.owner_id, &p.queries_json, &p.embed_epoch, &p.created_at, &p.updated_at],
            )
            .await?;
        Ok(())
    }

    async fn project(&self, id: String) -> Result<Option<ProjectRecord>, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!(
                "SELECT {PROJECT_COLS} FROM projects p JOIN users u ON u.id = p.owner WHERE p.id = $1"
            ))
            .await?;
        Ok(client.query_opt(&stmt, &[&id]).await?.as_ref().map(project_from_row))
    }

    async fn projects_for(&self, user_id: Option<String>) -> Result<Vec<(ProjectRecord, Option<Grant>)>, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!(
                "SELECT {PROJECT_COLS}, g.access FROM projects p JOIN users u ON u.id = p.owner
                 LEFT JOIN project_grants g ON g.project_id = p.id AND g.user_id = $1
                 WHERE $1::TEXT IS NULL OR p.owner = $1 OR g.user_id IS NOT NULL
                 ORDER BY p.name COLLATE \"C\", p.id COLLATE \"C\""
            ))
            .await?;
        client
            .query(&stmt, &[&user_id])
            .await?
            .iter()
            .map(|r| {
                let g: Option<String> = r.get(8);
                Ok((project_from_row(r), g.as_deref().map(grant_of).transpose()?))
            })
            .collect()
    }

    async fn project_grant(&self, project_id: String, user_id: String) -> Result<Option<Grant>, StoreError> {
        let client = self.client().await?;
        let stmt =
            client.prepare_cached("SELECT access FROM project_grants WHERE project_id = $1 AND user_id = $2").await?;
        let g: Option<String> = client.query_opt(&stmt, &[&project_id, &user_id]).await?.map(|r| r.get(0));
        g.as_deref().map(grant_of).transpose()
    }

    async fn project_grants(&self, project_id: String) -> Result<Vec<(String, Grant)>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT u.name, g.access FROM project_grants g JOIN users u ON u.id = g.user_id
                 WHERE g.project_id = $1 ORDER BY u.name COLLATE \"C\"",
                &[&project_id],
            )
            .await?;
        rows.iter().map(|r| Ok((r.get(0), grant_of(&r.get::<_, String>(1))?))).collect()
    }

    async fn update_project(
        &self,
        id: String,
        name: String,
        queries_json: String,
        now: i64,
    ) -> Result<bool, StoreError> {
        let client = self.client().await?;
        Ok(client
            .execute(
                "UPDATE projects SET name = $2, queries = $3, updated_at = $4 WHERE id = $1",
                &[&id, &name, &queries_json, &now],
            )
            .await?
            == 1)
    }

    async fn delete_project(&self, id: String) -> Result<bool, StoreError> {
        let client = self.client().await?;
        Ok(client.execute("DELETE FROM projects WHERE id = $1", &[&id]).await? == 1)
    }

    async fn set_project_grant(
        &self,
        project_id: String,
        user: String,
        grant: Option<Grant>,
    ) -> Result<Result<(), String>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let Some(uid) = user_id_by_name(&tx, &user).await? else {
            return Ok(Err(format!("no user {user:?}")));
        };
        match grant {
            Some(g) => {
                tx.execute(
                    "INSERT INTO project_grants (project_id, user_id, access) VALUES ($1, $2, $3)
                     ON CONFLICT (project_id, user_id) DO UPDATE SET access = excluded.access",
                    &[&project_id, &uid, &g.as_str()],
                )
                .await?
            }
            None => {
                tx.execute("DELETE FROM project_grants WHERE project_id = $1 AND user_id = $2", &[&project_id, &uid])
                    .await?
            }
        };
        tx.commit().await?;
        Ok(Ok(()))
    }

    async fn bump_embed_epoch(&self, project_id: String) -> Result<Option<i64>, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached("UPDATE projects SET embed_epoch = embed_epoch + 1 WHERE id = $1 RETURNING embed_epoch")
            .await?;
        Ok(client.query_opt(&stmt, &[&project_id]).await?.map(|r| r.get(0)))
    }

    async fn latest_project_job(
        &self,
        project_id: String,
        query_index: i64,
        customer: Option<String>,
        succeeded_only: bool,
    ) -> Result<Option<String>, StoreError> {
        let client = self.client().await?;
        // `seq` (identity) stands for SQLite's rowid: insertion order breaks ties.
        let stmt = client
            .prepare_cached(
                "SELECT id FROM jobs
                 WHERE project_id = $1 AND query_index = $2 AND customer IS NOT DISTINCT FROM $3::TEXT
                   AND (NOT $4 OR state = 'succeeded')
                 ORDER BY created_at DESC, seq DESC LIMIT 1",
            )
            .await?;
        let args: [&(dyn tokio_postgres::types::ToSql + Sync); 4] =
            [&project_id, &query_index, &customer, &succeeded_only];
        Ok(client.query_opt(&stmt, &args).await?.map(|r| r.get(0)))
    }

    async fn add_audit(&self, e: AuditEvent) -> Result<(), StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "INSERT INTO cloud_audit (at, actor, credential, action, target, outcome, status, remote, detail)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .await?;
        let status = i64::from(e.status);
        let detail = e.detail.map(|d| d.to_string());
        client
            .execute(
                &stmt,
                &[&e.at, &e.actor, &e.credential, &e.action, &e.target, &e.outcome, &status, &e.remote, &detail],
            )
            .await?;
        Ok(())
    }

    async fn audit(&self, f: AuditFilter) -> Result<Vec<AuditEvent>, StoreError> {
        // Only the conditions asked for are in the statement (so the planner can use the
        // primary key for `after` and the time index for `since`/`until`); every value is
        // a parameter. At most 2^8 statement shapes, each prepared once per connection.
        let action_exact = f.action.as_ref().filter(|a| !a.ends_with('.'));
        let action_prefix = f
            .action
            .as_ref()
            .filter(|a| a.ends_with('.'))
            .map(|a| format!("{}%", crate::store::access::like_escape(a)));
        let limit = i64::from(f.limit);
        let conditions: [(&str, Option<&(dyn ToSql + Sync)>); 8] = [
            ("actor = $?", f.actor.as_ref().map(|v| v as _)),
            ("action = $?", action_exact.map(|v| v as _)),
            // SQLite's LIKE ignores ASCII case: ILIKE matches the same events. Both escape
            // `%`, `_` and `\` of the given prefix with `\` (see `like_escape`).
            ("action ILIKE $? ESCAPE '\\'", action_prefix.as_ref().map(|v| v as _)),
            ("outcome = $?", f.outcome.as_ref().map(|v| v as _)),
            ("at >= $?", f.since.as_ref().map(|v| v as _)),
            ("at < $?", f.until.as_ref().map(|v| v as _)),
            ("seq > $?", f.after.as_ref().map(|v| v as _)),
            ("target = $?", f.target.as_ref().map(|v| v as _)),
        ];
        let mut sql = format!("SELECT {AUDIT_COLS} FROM cloud_audit WHERE TRUE");
        let mut params: Vec<&(dyn ToSql + Sync)> = Vec::new();
        for (clause, value) in conditions {
            if let Some(v) = value {
                params.push(v);
                sql.push_str(" AND ");
                sql.push_str(&clause.replace("$?", &format!("${}", params.len())));
            }
        }
        params.push(&limit);
        sql.push_str(&format!(" ORDER BY seq LIMIT ${}", params.len()));
        let client = self.client().await?;
        let stmt = client.prepare_cached(&sql).await?;
        client.query(&stmt, &params).await?.iter().map(audit_from_row).collect()
    }

    async fn purge(&self, before: i64, keep_results_after: i64, now: i64) -> Result<usize, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let n = tx
            .execute(
                "DELETE FROM jobs
                 WHERE ((finished_at IS NOT NULL AND finished_at <= $1) OR (finished_at IS NULL AND expires_at <= $1))
                   AND NOT (project_id IS NOT NULL AND state = 'succeeded' AND finished_at > $2
                            AND NOT EXISTS (
                                SELECT 1 FROM jobs AS newer
                                WHERE newer.project_id = jobs.project_id
                                  AND newer.query_index IS NOT DISTINCT FROM jobs.query_index
                                  AND newer.customer IS NOT DISTINCT FROM jobs.customer AND newer.state = 'succeeded'
                                  AND (newer.created_at > jobs.created_at
                                       OR (newer.created_at = jobs.created_at AND newer.seq > jobs.seq))))",
                &[&before, &keep_results_after],
            )
            .await?;
        tx.execute("DELETE FROM sessions WHERE expires_at <= $1", &[&now]).await?;
        tx.commit().await?;
        // Unlike SQLite's secure_delete, PostgreSQL cannot zero the freed space on demand:
        // the dead rows stay in their pages until (auto)vacuum frees them and new rows
        // overwrite them. Result bodies are sealed, so what lingers is ciphertext.
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }
}
