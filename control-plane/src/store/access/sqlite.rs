//! The SQLite backend of [`AccessStore`].

use rusqlite::{params, Connection, OptionalExtension};

use super::*;
use crate::store::access::{Grant, Role};
use crate::store::{SqliteStore, StoreError};

const USER_COLS: &str = "id, name, role, password_hash, created_at, disabled_at, last_sign_in";

fn user_from_row(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<UserRecord> {
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

const PROJECT_COLS: &str = "p.id, p.name, p.owner, u.name, p.queries, p.embed_epoch, p.created_at, p.updated_at";

fn project_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ProjectRecord> {
    Ok(ProjectRecord {
        id: r.get(0)?,
        name: r.get(1)?,
        owner_id: r.get(2)?,
        owner: r.get(3)?,
        queries_json: r.get(4)?,
        embed_epoch: r.get(5)?,
        created_at: r.get(6)?,
        updated_at: r.get(7)?,
    })
}

fn grant_of(s: &str) -> rusqlite::Result<Grant> {
    Grant::parse(s).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, "unknown grant".into())
    })
}

fn user_id_by_name(c: &Connection, name: &str) -> Result<Option<String>, StoreError> {
    Ok(c.prepare_cached("SELECT id FROM users WHERE name = ?1")?.query_row(params![name], |r| r.get(0)).optional()?)
}

fn enabled_admins(c: &Connection) -> Result<i64, StoreError> {
    Ok(c.query_row("SELECT COUNT(*) FROM users WHERE role = 'admin' AND disabled_at IS NULL", [], |r| r.get(0))?)
}

impl AccessStore for SqliteStore {
    async fn create_user(&self, u: UserRecord) -> Result<bool, StoreError> {
        self.with_conn(move |c| {
            let n = c.execute(
                "INSERT INTO users (id, name, role, password_hash, created_at, disabled_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT(name) DO NOTHING",
                params![u.id, u.name, u.role.as_str(), u.password_hash, u.created_at, u.disabled_at],
            )?;
            Ok(n == 1)
        })
        .await
    }

    async fn user_by_name(&self, name: String) -> Result<Option<UserRecord>, StoreError> {
        self.with_conn(move |c| {
            Ok(c.prepare_cached(&format!("SELECT {USER_COLS} FROM users WHERE name = ?1"))?
                .query_row(params![name], |r| user_from_row(r, 0))
                .optional()?)
        })
        .await
    }

    async fn oidc_user(&self, issuer: String, subject: String) -> Result<Option<UserRecord>, StoreError> {
        self.with_conn(move |c| {
            Ok(c.prepare_cached(&format!(
                "SELECT {} FROM users u JOIN oidc_identities o ON o.user_id = u.id WHERE o.issuer = ?1 AND o.subject = ?2",
                USER_COLS.split(", ").map(|col| format!("u.{}", col.trim())).collect::<Vec<_>>().join(", ")
            ))?
            .query_row(params![issuer, subject], |r| user_from_row(r, 0))
            .optional()?)
        })
        .await
    }

    async fn oidc_linked(&self, user_id: String, issuer: String) -> Result<bool, StoreError> {
        self.with_conn(move |c| {
            Ok(c.prepare_cached("SELECT 1 FROM oidc_identities WHERE user_id = ?1 AND issuer = ?2")?
                .query_row(params![user_id, issuer], |_| Ok(()))
                .optional()?
                .is_some())
        })
        .await
    }

    async fn link_oidc(&self, issuer: String, subject: String, user_id: String, now: i64) -> Result<bool, StoreError> {
        self.with_conn(move |c| {
            let n = c.execute(
                "INSERT INTO oidc_identities (issuer, subject, user_id, created_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(issuer, subject) DO NOTHING",
                params![issuer, subject, user_id, now],
            )?;
            Ok(n == 1)
        })
        .await
    }

    async fn user_by_id(&self, id: String) -> Result<Option<UserRecord>, StoreError> {
        self.with_conn(move |c| {
            Ok(c.prepare_cached(&format!("SELECT {USER_COLS} FROM users WHERE id = ?1"))?
                .query_row(params![id], |r| user_from_row(r, 0))
                .optional()?)
        })
        .await
    }

    async fn users(&self) -> Result<Vec<UserRecord>, StoreError> {
        self.with_conn(|c| {
            let mut stmt = c.prepare_cached(&format!("SELECT {USER_COLS} FROM users ORDER BY name"))?;
            let rows = stmt.query_map([], |r| user_from_row(r, 0))?.collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn update_user(&self, name: String, update: UserUpdate, now: i64) -> Result<Option<UserRecord>, StoreError> {
        self.with_conn(move |c| {
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

    async fn record_sign_in(&self, user_id: String, now: i64) -> Result<(), StoreError> {
        self.with_conn(move |c| {
            c.execute("UPDATE users SET last_sign_in = ?2 WHERE id = ?1", params![user_id, now])?;
            Ok(())
        })
        .await
    }

    async fn create_group(&self, name: String, now: i64) -> Result<bool, StoreError> {
        self.with_conn(move |c| {
            Ok(c.execute(
                "INSERT INTO groups (name, created_at) VALUES (?1, ?2) ON CONFLICT(name) DO NOTHING",
                params![name, now],
            )? == 1)
        })
        .await
    }

    async fn delete_group(&self, name: String) -> Result<bool, StoreError> {
        self.with_conn(move |c| Ok(c.execute("DELETE FROM groups WHERE name = ?1", params![name])? == 1)).await
    }

    async fn groups(&self) -> Result<Vec<GroupRecord>, StoreError> {
        self.with_conn(|c| {
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

    async fn set_group_member(
        &self,
        group: String,
        user: String,
        member: bool,
    ) -> Result<Result<(), String>, StoreError> {
        self.with_conn(move |c| {
            let tx = c.savepoint()?;
            let exists: Option<i64> =
                tx.query_row("SELECT 1 FROM groups WHERE name = ?1", params![group], |r| r.get(0)).optional()?;
            if exists.is_none() {
                return Ok(Err(format!("no group {group:?}")));
            }
            let Some(uid) = user_id_by_name(&tx, &user)? else {
                return Ok(Err(format!("no user {user:?}")));
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

    async fn add_share(&self, s: ShareRecord) -> Result<Result<(), String>, StoreError> {
        self.with_conn(move |c| {
            let tx = c.savepoint()?;
            let user_id = match &s.user {
                Some(u) => match user_id_by_name(&tx, u)? {
                    Some(id) => Some(id),
                    None => return Ok(Err(format!("no user {u:?}"))),
                },
                None => None,
            };
            if let Some(g) = &s.group {
                let exists: Option<i64> =
                    tx.query_row("SELECT 1 FROM groups WHERE name = ?1", params![g], |r| r.get(0)).optional()?;
                if exists.is_none() {
                    return Ok(Err(format!("no group {g:?}")));
                }
            }
            let n = tx.execute(
                "INSERT INTO shares (id, agent, connection, user_id, group_name, created_at, created_by)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT DO NOTHING",
                params![s.id, s.agent, s.connection, user_id, s.group, s.created_at, s.created_by],
            )?;
            if n == 0 {
                return Ok(Err("this connection is already shared with them".into()));
            }
            tx.commit()?;
            Ok(Ok(()))
        })
        .await
    }

    async fn shares(&self) -> Result<Vec<ShareRecord>, StoreError> {
        self.with_conn(|c| {
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

    async fn delete_share(&self, id: String) -> Result<bool, StoreError> {
        self.with_conn(move |c| Ok(c.execute("DELETE FROM shares WHERE id = ?1", params![id])? == 1)).await
    }

    async fn shared_connections(&self, user_id: String) -> Result<Vec<(String, String)>, StoreError> {
        self.with_conn(move |c| {
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

    async fn create_session(&self, s: SessionRecord) -> Result<(), StoreError> {
        self.with_conn(move |c| {
            c.execute(
                "INSERT INTO sessions (id_sha256, user_id, csrf, created_at, last_seen, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![s.id_sha256, s.user_id, s.csrf, s.created_at, s.last_seen, s.expires_at],
            )?;
            Ok(())
        })
        .await
    }

    async fn session(
        &self,
        id_sha256: String,
        now: i64,
        idle_secs: i64,
    ) -> Result<Option<(SessionRecord, UserRecord)>, StoreError> {
        self.with_conn(move |c| {
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

    async fn delete_session(&self, id_sha256: String) -> Result<(), StoreError> {
        self.with_conn(move |c| {
            c.execute("DELETE FROM sessions WHERE id_sha256 = ?1", params![id_sha256])?;
            Ok(())
        })
        .await
    }

    async fn add_token(&self, t: ApiTokenRecord) -> Result<(), StoreError> {
        self.with_conn(move |c| {
            c.execute(
                "INSERT INTO api_tokens (id, token_sha256, role, user_id, name, scopes, created_at, expires_at)
                 SELECT ?1, ?2, role, ?3, ?4, ?5, ?6, ?7 FROM users WHERE id = ?3",
                params![t.id, t.token_sha256, t.user_id, t.name, t.scopes, t.created_at, t.expires_at],
            )?;
            Ok(())
        })
        .await
    }

    async fn token_auth(
        &self,
        token_sha256: String,
        now: i64,
    ) -> Result<Option<(ApiTokenRecord, UserRecord)>, StoreError> {
        let hash = token_sha256.clone();
        let row = self
            .with_read(move |c| {
                Ok(c.prepare_cached(&format!(
                    "SELECT {TOKEN_COLS}, {} FROM api_tokens t JOIN users u ON u.id = t.user_id
                     WHERE t.token_sha256 = ?1 AND t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > ?2)
                       AND u.disabled_at IS NULL",
                    USER_COLS.split(", ").map(|c| format!("u.{c}")).collect::<Vec<_>>().join(", ")
                ))?
                .query_row(params![hash, now], |r| Ok((token_from_row(r)?, user_from_row(r, 10)?)))
                .optional()?)
            })
            .await?;
        // Coarse (per minute) so that every API call is not a write.
        if row.as_ref().is_some_and(|(t, _)| t.last_used.is_none_or(|at| at < now - 60)) {
            self.with_conn(move |c| {
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

    async fn tokens(&self, user_id: Option<String>) -> Result<Vec<ApiTokenRecord>, StoreError> {
        self.with_conn(move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {TOKEN_COLS} FROM api_tokens t JOIN users u ON u.id = t.user_id
                 WHERE ?1 IS NULL OR t.user_id = ?1 ORDER BY t.created_at, t.id"
            ))?;
            let rows = stmt.query_map(params![user_id], token_from_row)?.collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn token(&self, id: String) -> Result<Option<ApiTokenRecord>, StoreError> {
        self.with_conn(move |c| {
            Ok(c.prepare_cached(&format!(
                "SELECT {TOKEN_COLS} FROM api_tokens t JOIN users u ON u.id = t.user_id WHERE t.id = ?1"
            ))?
            .query_row(params![id], token_from_row)
            .optional()?)
        })
        .await
    }

    async fn revoke_token(&self, id: String, now: i64) -> Result<bool, StoreError> {
        self.with_conn(move |c| {
            Ok(c.execute(
                "UPDATE api_tokens SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
                params![id, now],
            )? == 1)
        })
        .await
    }

    async fn create_project(&self, p: ProjectRecord) -> Result<(), StoreError> {
        self.with_conn(move |c| {
            c.execute(
                "INSERT INTO projects (id, name, owner, queries, embed_epoch, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![p.id, p.name, p.owner_id, p.queries_json, p.embed_epoch, p.created_at, p.updated_at],
            )?;
            Ok(())
        })
        .await
    }

    async fn project(&self, id: String) -> Result<Option<ProjectRecord>, StoreError> {
        self.with_conn(move |c| {
            Ok(c.prepare_cached(&format!(
                "SELECT {PROJECT_COLS} FROM projects p JOIN users u ON u.id = p.owner WHERE p.id = ?1"
            ))?
            .query_row(params![id], project_from_row)
            .optional()?)
        })
        .await
    }

    async fn projects_for(&self, user_id: Option<String>) -> Result<Vec<(ProjectRecord, Option<Grant>)>, StoreError> {
        self.with_conn(move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {PROJECT_COLS}, g.access FROM projects p JOIN users u ON u.id = p.owner
                 LEFT JOIN project_grants g ON g.project_id = p.id AND g.user_id = ?1
                 WHERE ?1 IS NULL OR p.owner = ?1 OR g.user_id IS NOT NULL ORDER BY p.name, p.id"
            ))?;
            let rows = stmt
                .query_map(params![user_id], |r| {
                    let g: Option<String> = r.get(8)?;
                    Ok((project_from_row(r)?, g.as_deref().map(grant_of).transpose()?))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn project_grant(&self, project_id: String, user_id: String) -> Result<Option<Grant>, StoreError> {
        self.with_conn(move |c| {
            let g: Option<String> = c
                .prepare_cached("SELECT access FROM project_grants WHERE project_id = ?1 AND user_id = ?2")?
                .query_row(params![project_id, user_id], |r| r.get(0))
                .optional()?;
            Ok(g.as_deref().map(grant_of).transpose()?)
        })
        .await
    }

    async fn project_grants(&self, project_id: String) -> Result<Vec<(String, Grant)>, StoreError> {
        self.with_conn(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT u.name, g.access FROM project_grants g JOIN users u ON u.id = g.user_id
                 WHERE g.project_id = ?1 ORDER BY u.name",
            )?;
            let rows = stmt
                .query_map(params![project_id], |r| Ok((r.get(0)?, grant_of(&r.get::<_, String>(1)?)?)))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn update_project(
        &self,
        id: String,
        name: String,
        queries_json: String,
        now: i64,
    ) -> Result<bool, StoreError> {
        self.with_conn(move |c| {
            Ok(c.execute(
                "UPDATE projects SET name = ?2, queries = ?3, updated_at = ?4 WHERE id = ?1",
                params![id, name, queries_json, now],
            )? == 1)
        })
        .await
    }

    async fn delete_project(&self, id: String) -> Result<bool, StoreError> {
        self.with_conn(move |c| Ok(c.execute("DELETE FROM projects WHERE id = ?1", params![id])? == 1)).await
    }

    async fn set_project_grant(
        &self,
        project_id: String,
        user: String,
        grant: Option<Grant>,
    ) -> Result<Result<(), String>, StoreError> {
        self.with_conn(move |c| {
            let tx = c.savepoint()?;
            let Some(uid) = user_id_by_name(&tx, &user)? else {
                return Ok(Err(format!("no user {user:?}")));
            };
            match grant {
                Some(g) => tx.execute(
                    "INSERT INTO project_grants (project_id, user_id, access) VALUES (?1, ?2, ?3)
                     ON CONFLICT(project_id, user_id) DO UPDATE SET access = excluded.access",
                    params![project_id, uid, g.as_str()],
                )?,
                None => tx.execute(
                    "DELETE FROM project_grants WHERE project_id = ?1 AND user_id = ?2",
                    params![project_id, uid],
                )?,
            };
            tx.commit()?;
            Ok(Ok(()))
        })
        .await
    }

    async fn bump_embed_epoch(&self, project_id: String) -> Result<Option<i64>, StoreError> {
        self.with_conn(move |c| {
            Ok(c.prepare_cached(
                "UPDATE projects SET embed_epoch = embed_epoch + 1 WHERE id = ?1 RETURNING embed_epoch",
            )?
            .query_row(params![project_id], |r| r.get(0))
            .optional()?)
        })
        .await
    }

    async fn latest_project_job(
        &self,
        project_id: String,
        query_index: i64,
        customer: Option<String>,
        succeeded_only: bool,
    ) -> Result<Option<String>, StoreError> {
        self.with_conn(move |c| {
            Ok(c.prepare_cached(
                "SELECT id FROM jobs WHERE project_id = ?1 AND query_index = ?2 AND customer IS ?3
                   AND (NOT ?4 OR state = 'succeeded')
                 ORDER BY created_at DESC, rowid DESC LIMIT 1",
            )?
            .query_row(params![project_id, query_index, customer, succeeded_only], |r| r.get(0))
            .optional()?)
        })
        .await
    }

    async fn add_audit(&self, e: AuditEvent) -> Result<(), StoreError> {
        self.with_conn(move |c| {
            c.prepare_cached(
                "INSERT INTO cloud_audit (at, actor, credential, action, target, outcome, status, remote, detail)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?
            .execute(params![
                e.at,
                e.actor,
                e.credential,
                e.action,
                e.target,
                e.outcome,
                e.status,
                e.remote,
                e.detail.map(|d| d.to_string())
            ])?;
            Ok(())
        })
        .await
    }

    async fn audit(&self, f: AuditFilter) -> Result<Vec<AuditEvent>, StoreError> {
        self.with_conn(move |c| {
            let (action_exact, action_prefix) = match &f.action {
                Some(a) if a.ends_with('.') => (None, Some(format!("{}%", like_escape(a)))),
                Some(a) => (Some(a.clone()), None),
                None => (None, None),
            };
            let mut stmt = c.prepare_cached(
                "SELECT seq, at, actor, credential, action, target, outcome, status, remote, detail FROM cloud_audit
                 WHERE (?1 IS NULL OR actor = ?1) AND (?2 IS NULL OR action = ?2) AND (?3 IS NULL OR action LIKE ?3 ESCAPE '\\')
                   AND (?4 IS NULL OR outcome = ?4) AND (?5 IS NULL OR at >= ?5) AND (?6 IS NULL OR at < ?6)
                   AND (?7 IS NULL OR seq > ?7) AND (?8 IS NULL OR target = ?8)
                 ORDER BY seq LIMIT ?9",
            )?;
            let rows = stmt
                .query_map(
                    params![
                        f.actor,
                        action_exact,
                        action_prefix,
                        f.outcome,
                        f.since,
                        f.until,
                        f.after,
                        f.target,
                        f.limit
                    ],
                    |r| {
                        let detail: Option<String> = r.get(9)?;
                        Ok(AuditEvent {
                            seq: r.get(0)?,
                            at: r.get(1)?,
                            actor: r.get(2)?,
                            credential: r.get(3)?,
                            action: r.get(4)?,
                            target: r.get(5)?,
                            outcome: r.get(6)?,
                            status: r.get(7)?,
                            remote: r.get(8)?,
                            detail: detail.and_then(|d| serde_json::from_str(&d).ok()),
                        })
                    },
                )?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn purge(&self, before: i64, keep_results_after: i64, now: i64) -> Result<usize, StoreError> {
        let n = self
            .with_conn(move |c| {
                let n = c.execute(
                    "DELETE FROM jobs
                     WHERE ((finished_at IS NOT NULL AND finished_at <= ?1) OR (finished_at IS NULL AND expires_at <= ?1))
                       AND NOT (project_id IS NOT NULL AND state = 'succeeded' AND finished_at > ?2
                                AND NOT EXISTS (
                                    SELECT 1 FROM jobs AS newer
                                    WHERE newer.project_id = jobs.project_id AND newer.query_index IS jobs.query_index
                                      AND newer.customer IS jobs.customer AND newer.state = 'succeeded'
                                      AND (newer.created_at > jobs.created_at
                                           OR (newer.created_at = jobs.created_at AND newer.rowid > jobs.rowid))))",
                    params![before, keep_results_after],
                )?;
                c.execute("DELETE FROM sessions WHERE expires_at <= ?1", params![now])?;
                Ok(n)
            })
            .await?;
        if n > 0 {
            // secure_delete zeroed the freed pages in the WAL; copy them into the
            // database file and empty the WAL, so the old bytes are nowhere on disk.
            self.checkpoint_alone().await?;
        }
        Ok(n)
    }
}
