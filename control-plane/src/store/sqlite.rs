//! The embedded SQLite backend of [`Store`]: one writer thread that commits what arrives
//! together in one transaction, and read-only connections beside it (`sqlite_db.rs`); the
//! schema and its migrations are in `sqlite_schema.rs`.

use std::path::Path;

use outpost_protocol::{Reason, ResultReport};
use rusqlite::{params, Connection, OptionalExtension};

use super::sqlite_db;
use super::sqlite_schema::{MIGRATIONS, SCHEMA_VERSION};
use super::*;

/// An enrolment token row: id, agent, pool, secret_sha256, created_at, expires_at.
fn enrol_token_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<EnrolTokenRecord> {
    Ok(EnrolTokenRecord {
        id: r.get(0)?,
        agent: r.get(1)?,
        pool: r.get(2)?,
        secret_sha256: r.get(3)?,
        created_at: r.get(4)?,
        expires_at: r.get(5)?,
    })
}

fn sqlite_audit_head(c: &Connection, agent: &str) -> Result<Option<StoredAuditHead>, StoreError> {
    Ok(c.prepare_cached("SELECT seq, hash, head, received_at FROM audit_heads WHERE agent = ?1")?
        .query_row(params![agent], |r| {
            Ok(StoredAuditHead { seq: r.get(0)?, hash: r.get(1)?, head_json: r.get(2)?, received_at: r.get(3)? })
        })
        .optional()?)
}

/// SQLite backend.
#[derive(Clone)]
pub struct SqliteStore {
    db: sqlite_db::SqliteDb,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating and migrating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        // Create the file 0600 before SQLite does (it would use the umask); the WAL and
        // shared-memory files inherit the database file's mode.
        {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| StoreError::Task(format!("{}: {e}", path.display())))?;
        }
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        // WAL: readers do not block the writer. synchronous=NORMAL in WAL mode keeps the
        // database consistent after a crash; a power cut may lose the last transactions.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", true)?;
        // Deleted rows (expired results, sessions) are overwritten with zeros, not left in
        // free pages for someone with the file to read.
        conn.pragma_update(None, "secure_delete", true)?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        // Migrations run in order, each in its own transaction with the version bump.
        for &(target, sql) in MIGRATIONS {
            if version < target {
                conn.execute_batch(&format!("BEGIN IMMEDIATE; {sql} PRAGMA user_version = {target}; COMMIT;"))?;
            }
        }
        if version > SCHEMA_VERSION {
            return Err(StoreError::Corrupt {
                table: "schema",
                reason: format!("database schema {version} is newer than this build ({SCHEMA_VERSION})"),
            });
        }
        Ok(Self { db: sqlite_db::SqliteDb::start(path, conn)? })
    }

    /// Runs `f` on the writer's connection, in a savepoint of the group it is committed
    /// with; returns once that group is committed. Every change goes through here.
    pub(crate) async fn with_conn<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.db.write(f).await
    }

    /// Copies the WAL into the database file and empties it (outside any transaction,
    /// after the changes queued before it are committed).
    pub(crate) async fn checkpoint_alone(&self) -> Result<(), StoreError> {
        self.db
            .write_alone(|c| {
                let (busy, _, _): (i64, i64, i64) =
                    c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
                if busy != 0 {
                    tracing::debug!("WAL checkpoint was busy (a reader); the next one completes it.");
                }
                Ok(())
            })
            .await
    }

    /// Runs `f` on a read-only connection beside the writer (it sees the last commit).
    pub(crate) async fn with_read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.db.read(f).await
    }
}

fn current_key_set_version(tx: &Connection) -> Result<u64, StoreError> {
    let v: i64 = tx.prepare_cached("SELECT COALESCE(MAX(version), 0) FROM key_sets")?.query_row([], |r| r.get(0))?;
    Ok(u64::try_from(v).unwrap_or(0))
}

fn agent_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AgentRecord> {
    let conns: String = r.get(5)?;
    Ok(AgentRecord {
        name: r.get(0)?,
        enrolled_at: r.get(1)?,
        cert_not_after: r.get(2)?,
        last_seen: r.get(3)?,
        version: r.get(4)?,
        connections: serde_json::from_str(&conns).unwrap_or_default(),
        revoked_at: r.get(6)?,
        pool: r.get(7)?,
        stopped_at: r.get(8)?,
    })
}

const AGENT_COLS: &str =
    "name, enrolled_at, cert_not_after, last_seen, version, connections, revoked_at, pool, stopped_at";

/// Admits a request of `agent`: it must be enrolled, not revoked, and its certificate
/// must not predate the name's latest enrolment. Records it as seen in the same
/// statement, so the check costs no extra round trip.
fn admit_agent(tx: &Connection, agent: &AgentPeer, now: i64) -> Result<Option<String>, StoreError> {
    let admitted: Option<Option<String>> = tx
        .prepare_cached(
            "UPDATE agents SET last_seen = ?2, stopped_at = NULL
             WHERE name = ?1 AND revoked_at IS NULL AND enrolled_at <= ?3
             RETURNING pool",
        )?
        .query_row(params![agent.name, now, agent.cert_issued_at], |r| r.get(0))
        .optional()?;
    if let Some(pool) = admitted {
        return Ok(pool);
    }
    let row: Option<(Option<i64>, i64)> = tx
        .prepare_cached("SELECT revoked_at, enrolled_at FROM agents WHERE name = ?1")?
        .query_row(params![agent.name], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    Err(match row {
        Some((None, enrolled_at)) => StoreError::CertificateSuperseded { agent: agent.name.clone(), enrolled_at },
        Some((revoked_at, _)) => StoreError::AgentRefused { agent: agent.name.clone(), revoked_at },
        None => StoreError::AgentRefused { agent: agent.name.clone(), revoked_at: None },
    })
}

const JOB_COLS: &str = "id, agent, connection, state, created_at, expires_at, finished_at, attempts,
     reason_code, reason_message, stats, content_type";

/// A job row (columns [`JOB_COLS`], then the body or NULL, `cancel_requested_at` and the
/// origin) and its state text.
fn job_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(String, JobRecord)> {
    let code: Option<String> = r.get(8)?;
    let message: Option<String> = r.get(9)?;
    let stats: Option<String> = r.get(10)?;
    Ok((
        r.get::<_, String>(3)?,
        JobRecord {
            id: r.get(0)?,
            agent: r.get(1)?,
            connection: r.get(2)?,
            state: JobState::Queued,
            created_at: r.get(4)?,
            expires_at: r.get(5)?,
            finished_at: r.get(6)?,
            attempts: r.get(7)?,
            reason: code.map(|code| Reason { code, message: message.unwrap_or_default() }),
            stats: stats.and_then(|s| serde_json::from_str(&s).ok()),
            content_type: r.get(11)?,
            body: r.get(12)?,
            cancel_requested_at: r.get(13)?,
            origin: JobOrigin {
                owner: r.get(14)?,
                project_id: r.get(15)?,
                query_index: r.get(16)?,
                customer: r.get(17)?,
            },
            pool: r.get(18)?,
        },
    ))
}

const FAIL_CORRUPT_JOB_SQLITE: &str = "UPDATE jobs SET state = 'failed', finished_at = ?3, lease_until = NULL,
         reason_code = 'corrupt_job', reason_message = ?4
     WHERE id = ?1 AND agent = ?2 AND state = 'leased'";

/// Leases the oldest deliverable jobs of agent `?1` (or of its pool `?5`) until `?2 + ?3`,
/// at most `?4`. Each branch names the open states, so that the index seeks (agent, state)
/// and (pool, state): with only `agent = ?1` it read every job the agent ever ran on every
/// poll, and throughput fell as the history grew (issue 24).
pub(super) const LEASE_SQLITE: &str =
    "UPDATE jobs SET state = 'leased', agent = ?1, lease_until = ?2 + ?3, attempts = attempts + 1
     WHERE id IN (SELECT id FROM jobs
                  WHERE ((agent = ?1 AND pool IS NULL AND state IN ('queued', 'leased'))
                         OR (pool = ?5 AND state IN ('queued', 'leased')))
                  AND expires_at >= ?2
                  AND cancel_requested_at IS NULL
                  AND (state = 'queued' OR (state = 'leased' AND lease_until < ?2))
                  ORDER BY created_at, id LIMIT ?4)
     RETURNING id, envelope, created_at";

fn expire_overdue(tx: &Connection, where_sql: &str, arg: &str, now: i64) -> Result<Vec<String>, StoreError> {
    let mut stmt = tx.prepare_cached(&format!(
        "UPDATE jobs SET state = 'expired', finished_at = ?2, lease_until = NULL,
             reason_code = 'expired', reason_message = 'the job expired before its agent returned a result'
         WHERE {where_sql} AND state IN ('queued', 'leased') AND expires_at < ?2 RETURNING id"
    ))?;
    let ids = stmt.query_map(params![arg, now], |r| r.get(0))?.collect::<Result<Vec<String>, _>>()?;
    Ok(ids)
}

impl Store for SqliteStore {
    async fn create_enrol_token(&self, t: EnrolTokenRecord) -> Result<(), StoreError> {
        self.with_conn(move |c| {
            c.execute(
                "INSERT INTO enrol_tokens (id, agent, secret_sha256, created_at, expires_at, pool)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![t.id, t.agent, t.secret_sha256, t.created_at, t.expires_at, t.pool],
            )?;
            Ok(())
        })
        .await
    }

    async fn outstanding_enrol_tokens(&self, now: i64) -> Result<Vec<EnrolTokenRecord>, StoreError> {
        self.with_conn(move |c| {
            Ok(c.prepare_cached(
                "SELECT id, agent, pool, secret_sha256, created_at, expires_at FROM enrol_tokens
                 WHERE used_at IS NULL AND expires_at >= ?1 ORDER BY created_at, id",
            )?
            .query_map(params![now], enrol_token_from_row)?
            .collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn revoke_enrol_token(&self, id: String) -> Result<Option<EnrolTokenRecord>, StoreError> {
        self.with_conn(move |c| {
            Ok(c.prepare_cached(
                "DELETE FROM enrol_tokens WHERE id = ?1 AND used_at IS NULL
                 RETURNING id, agent, pool, secret_sha256, created_at, expires_at",
            )?
            .query_row(params![id], enrol_token_from_row)
            .optional()?)
        })
        .await
    }

    async fn redeem_enrol_token(
        &self,
        id: String,
        secret_sha256: String,
        agent: String,
        now: i64,
        cert_not_after: i64,
    ) -> Result<Result<Option<String>, RedeemError>, StoreError> {
        self.with_conn(move |c| {
            let tx = c.savepoint()?;
            type TokenRow = (String, String, i64, Option<i64>, Option<String>);
            let row: Option<TokenRow> = tx
                .query_row(
                    "SELECT agent, secret_sha256, expires_at, used_at, pool FROM enrol_tokens WHERE id = ?1",
                    params![id],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
                )
                .optional()?;
            let Some((bound, stored_hash, expires_at, used_at, pool)) = row else {
                return Ok(Err(RedeemError::Unknown));
            };
            if let Err(refused) = check_redeem(&stored_hash, &secret_sha256, used_at, expires_at, &bound, &agent, now) {
                return Ok(Err(refused));
            }
            tx.execute("UPDATE enrol_tokens SET used_at = ?2 WHERE id = ?1", params![id, now])?;
            // A new enrolment re-admits a revoked name (e.g. after a lost agent key).
            tx.execute(
                "INSERT INTO agents (name, enrolled_at, cert_not_after, pool) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(name) DO UPDATE SET enrolled_at = excluded.enrolled_at,
                     cert_not_after = excluded.cert_not_after, revoked_at = NULL, pool = excluded.pool",
                params![agent, now, cert_not_after, pool],
            )?;
            // A new enrolment starts a new account of its audit log (a reinstalled agent
            // starts it again at 1).
            tx.execute("DELETE FROM audit_heads WHERE agent = ?1", params![agent])?;
            tx.commit()?;
            Ok(Ok(pool))
        })
        .await
    }

    async fn agent(&self, name: String) -> Result<Option<AgentRecord>, StoreError> {
        self.with_read(move |c| {
            Ok(c.prepare_cached(&format!("SELECT {AGENT_COLS} FROM agents WHERE name = ?1"))?
                .query_row(params![name], agent_from_row)
                .optional()?)
        })
        .await
    }

    async fn agents(&self) -> Result<Vec<AgentRecord>, StoreError> {
        self.with_conn(|c| {
            let mut stmt = c.prepare_cached(&format!("SELECT {AGENT_COLS} FROM agents ORDER BY name"))?;
            let rows = stmt.query_map([], agent_from_row)?.collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn pool_members(&self, pool: String) -> Result<Vec<AgentRecord>, StoreError> {
        self.with_conn(move |c| {
            let mut stmt =
                c.prepare_cached(&format!("SELECT {AGENT_COLS} FROM agents WHERE pool = ?1 ORDER BY name"))?;
            let rows = stmt.query_map(params![pool], agent_from_row)?.collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn touch_agent(
        &self,
        agent: AgentPeer,
        now: i64,
        version: Option<String>,
        connections: Option<Vec<String>>,
    ) -> Result<(), StoreError> {
        self.with_conn(move |c| {
            let conns = connections.map(|v| serde_json::to_string(&v).unwrap_or_else(|_| "[]".into()));
            admit_agent(c, &agent, now)?;
            c.prepare_cached(
                "UPDATE agents SET version = COALESCE(?2, version), connections = COALESCE(?3, connections) WHERE name = ?1",
            )?
            .execute(params![agent.name, version, conns])?;
            Ok(())
        })
        .await
    }

    async fn agent_stopped(&self, agent: AgentPeer, now: i64) -> Result<(), StoreError> {
        self.with_conn(move |c| {
            c.prepare_cached(
                "UPDATE agents SET last_seen = ?2, stopped_at = ?2
                 WHERE name = ?1 AND revoked_at IS NULL AND enrolled_at <= ?3",
            )?
            .execute(params![agent.name, now, agent.cert_issued_at])?;
            Ok(())
        })
        .await
    }

    async fn record_audit_head(&self, agent: AgentPeer, head: StoredAuditHead) -> Result<AuditHeadOutcome, StoreError> {
        self.with_conn(move |c| {
            let n = c
                .prepare_cached(
                    "INSERT INTO audit_heads (agent, seq, hash, head, received_at)
                     SELECT ?1, ?2, ?3, ?4, ?5 WHERE EXISTS (
                         SELECT 1 FROM agents WHERE name = ?1 AND revoked_at IS NULL AND enrolled_at <= ?6)
                     ON CONFLICT(agent) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, head = excluded.head,
                         received_at = excluded.received_at
                     WHERE excluded.seq > audit_heads.seq
                        OR (excluded.seq = audit_heads.seq AND excluded.hash = audit_heads.hash)",
                )?
                .execute(params![
                    agent.name,
                    head.seq,
                    head.hash,
                    head.head_json,
                    head.received_at,
                    agent.cert_issued_at
                ])?;
            if n > 0 {
                return Ok(AuditHeadOutcome::Stored);
            }
            Ok(behind_or_not_admitted(sqlite_audit_head(c, &agent.name)?, &head))
        })
        .await
    }

    async fn audit_head(&self, agent: String) -> Result<Option<StoredAuditHead>, StoreError> {
        self.with_conn(move |c| sqlite_audit_head(c, &agent)).await
    }

    async fn job_envelope(&self, id: String) -> Result<Option<String>, StoreError> {
        self.with_conn(move |c| {
            Ok(c.prepare_cached("SELECT envelope FROM jobs WHERE id = ?1")?
                .query_row(params![id], |r| r.get(0))
                .optional()?)
        })
        .await
    }

    async fn insert_job(&self, job: NewJob) -> Result<(), StoreError> {
        self.with_conn(move |c| {
            // The key check and the insert are one statement, so a retirement that re-signs
            // the retired key's jobs cannot miss this one.
            let n = c
                .prepare_cached(
                    "INSERT INTO jobs (id, agent, connection, state, envelope, created_at, expires_at, key_id,
                                       owner, project_id, query_index, customer, pool)
                     SELECT ?1, ?2, ?3, 'queued', ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12
                     WHERE EXISTS (SELECT 1 FROM signing_keys WHERE key_id = ?7 AND status != 'retired')",
                )?
                .execute(params![
                    job.id,
                    job.agent,
                    job.connection,
                    job.envelope_json,
                    job.created_at,
                    job.expires_at,
                    job.key_id,
                    job.origin.owner,
                    job.origin.project_id,
                    job.origin.query_index,
                    job.origin.customer,
                    job.pool
                ])?;
            if n == 0 {
                return Err(StoreError::KeyRetired { key_id: job.key_id });
            }
            Ok(())
        })
        .await
    }

    async fn lease_jobs(
        &self,
        agent: AgentPeer,
        now: i64,
        lease_secs: i64,
        max: usize,
    ) -> Result<LeaseBatch, StoreError> {
        self.with_conn(move |c| {
            let tx = c.savepoint()?;
            let pool = admit_agent(&tx, &agent, now)?;
            let mut expired = expire_overdue(&tx, "agent = ?1", &agent.name, now)?;
            if let Some(p) = &pool {
                expired.extend(expire_overdue(&tx, "pool = ?1 AND agent = ''", p, now)?);
            }
            // A job whose cancel was asked is never handed out again: if its lease ran
            // out without a report, the agent is gone or lost it, and it ends here.
            let cancelled = tx
                .prepare_cached(
                    "UPDATE jobs SET state = 'cancelled', finished_at = ?2, lease_until = NULL,
                         reason_code = 'cancelled',
                         reason_message = 'cancelled at a user''s request; the agent did not report before its lease ran out'
                     WHERE agent = ?1 AND state = 'leased' AND cancel_requested_at IS NOT NULL AND lease_until < ?2
                     RETURNING id",
                )?
                .query_map(params![agent.name, now], |r| r.get(0))?
                .collect::<Result<Vec<String>, _>>()?;
            // Told again every CANCEL_RESEND_SECS until the agent reports: a poll answer
            // lost on the way must not lose the cancel.
            let cancel = tx
                .prepare_cached(
                    "UPDATE jobs SET cancel_sent_at = ?2
                     WHERE agent = ?1 AND state = 'leased' AND cancel_requested_at IS NOT NULL
                       AND (cancel_sent_at IS NULL OR cancel_sent_at <= ?2 - ?3)
                     RETURNING id",
                )?
                .query_map(params![agent.name, now, CANCEL_RESEND_SECS], |r| r.get(0))?
                .collect::<Result<Vec<String>, _>>()?;
            let jobs = {
                let mut stmt = tx.prepare_cached(LEASE_SQLITE)?;
                let mut rows = stmt
                    .query_map(params![agent.name, now, lease_secs, max as i64, pool], |r| {
                        Ok((r.get::<_, i64>(2)?, LeasedJob { id: r.get(0)?, envelope_json: r.get(1)? }))
                    })?
                    .collect::<Result<Vec<_>, _>>()?;
                rows.sort_by(|a, b| (a.0, &a.1.id).cmp(&(b.0, &b.1.id)));
                rows.into_iter().map(|(_, j)| j).collect::<Vec<_>>()
            };
            let key_set_version = current_key_set_version(&tx)?;
            tx.commit()?;
            Ok(LeaseBatch { jobs, expired, cancelled, cancel, key_set_version })
        })
        .await
    }

    async fn fail_corrupt_job(&self, id: String, agent: String, now: i64, message: String) -> Result<bool, StoreError> {
        self.with_conn(move |c| {
            let n = c.prepare_cached(FAIL_CORRUPT_JOB_SQLITE)?.execute(params![id, agent, now, message])?;
            Ok(n == 1)
        })
        .await
    }

    async fn cancel_job(&self, id: String, now: i64) -> Result<CancelOutcome, StoreError> {
        self.with_conn(move |c| {
            let tx = c.savepoint()?;
            expire_overdue(&tx, "id = ?1", &id, now)?;
            let row: Option<(String, String)> = tx
                .prepare_cached("SELECT state, agent FROM jobs WHERE id = ?1")?
                .query_row(params![id], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            let Some((state, agent)) = row else {
                return Ok(CancelOutcome::NotFound);
            };
            let outcome = match JobState::parse(&state)? {
                JobState::Queued => {
                    tx.execute(
                        "UPDATE jobs SET state = 'cancelled', finished_at = ?2, cancel_requested_at = ?2,
                             reason_code = 'cancelled',
                             reason_message = 'cancelled at a user''s request before the agent received it'
                         WHERE id = ?1",
                        params![id, now],
                    )?;
                    CancelOutcome::Cancelled
                }
                JobState::Leased => {
                    tx.execute(
                        "UPDATE jobs SET cancel_requested_at = COALESCE(cancel_requested_at, ?2) WHERE id = ?1",
                        params![id, now],
                    )?;
                    CancelOutcome::Requested { agent }
                }
                other => CancelOutcome::AlreadyFinal(other),
            };
            tx.commit()?;
            Ok(outcome)
        })
        .await
    }

    async fn signing_keys(&self) -> Result<(Vec<SigningKeyRecord>, u64), StoreError> {
        self.with_conn(|c| {
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

    async fn active_signing_key(&self) -> Result<Option<String>, StoreError> {
        self.with_read(|c| {
            Ok(c.prepare_cached("SELECT key_id FROM signing_keys WHERE status = 'active'")?
                .query_row([], |r| r.get(0))
                .optional()?)
        })
        .await
    }

    async fn commit_key_set(&self, change: KeySetChange) -> Result<usize, StoreError> {
        self.with_conn(move |c| {
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

    async fn key_sets_after(&self, after: u64, max: usize) -> Result<Vec<String>, StoreError> {
        self.with_conn(move |c| {
            let after = i64::try_from(after).unwrap_or(i64::MAX);
            Ok(c.prepare_cached("SELECT statement FROM key_sets WHERE version > ?1 ORDER BY version LIMIT ?2")?
                .query_map(params![after, max as i64], |r| r.get(0))?
                .collect::<Result<Vec<String>, _>>()?)
        })
        .await
    }

    async fn complete_job(
        &self,
        agent: AgentPeer,
        report: ResultReport,
        report_sha256: String,
        sealed_body: Option<Vec<u8>>,
        now: i64,
    ) -> Result<CompleteOutcome, StoreError> {
        self.with_conn(move |c| {
            let tx = c.savepoint()?;
            admit_agent(&tx, &agent, now)?;
            let row: Option<(String, Option<String>)> = tx
                .prepare_cached("SELECT state, report_sha256 FROM jobs WHERE id = ?1 AND agent = ?2")?
                .query_row(params![report.job_id, agent.name], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            let Some((state, stored_hash)) = row else {
                return Ok(CompleteOutcome::NotFound);
            };
            let state = JobState::parse(&state)?;
            if state.is_final() {
                return Ok(if stored_hash.as_deref() == Some(report_sha256.as_str()) {
                    CompleteOutcome::Duplicate
                } else {
                    CompleteOutcome::Conflict(state)
                });
            }
            let new_state = JobState::from(report.status);
            let body = sealed_body;
            let stats = serde_json::to_string(&report.stats).unwrap_or_default();
            let (code, message) = report.reason.map(|r| (r.code, r.message)).unzip();
            tx.prepare_cached(
                "UPDATE jobs SET state = ?2, finished_at = ?3, lease_until = NULL, report_sha256 = ?4,
                     reason_code = ?5, reason_message = ?6, stats = ?7, content_type = ?8, body = ?9 WHERE id = ?1",
            )?
            .execute(params![
                report.job_id,
                new_state.as_str(),
                now,
                report_sha256,
                code,
                message,
                stats,
                report.content_type,
                body
            ])?;
            tx.commit()?;
            Ok(CompleteOutcome::Accepted)
        })
        .await
    }

    async fn record_renewal(&self, agent: AgentPeer, cert_not_after: i64, now: i64) -> Result<(), StoreError> {
        self.with_conn(move |c| {
            let tx = c.savepoint()?;
            admit_agent(&tx, &agent, now)?;
            tx.execute("UPDATE agents SET cert_not_after = ?2 WHERE name = ?1", params![agent.name, cert_not_after])?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn revoke_agent(&self, name: String, now: i64) -> Result<Option<Vec<String>>, StoreError> {
        self.with_conn(move |c| {
            let tx = c.savepoint()?;
            let n = tx.execute("UPDATE agents SET revoked_at = COALESCE(revoked_at, ?2) WHERE name = ?1", params![name, now])?;
            if n == 0 {
                return Ok(None);
            }
            // A pool's job this agent held goes back to the pool; its own jobs fail.
            tx.execute(
                "UPDATE jobs SET state = 'queued', agent = '', lease_until = NULL
                 WHERE agent = ?1 AND pool IS NOT NULL AND state = 'leased'",
                params![name],
            )?;
            let failed = tx
                .prepare(
                    "UPDATE jobs SET state = 'failed', finished_at = ?2, lease_until = NULL, reason_code = 'agent_revoked',
                         reason_message = 'the agent was revoked before it returned a result'
                     WHERE agent = ?1 AND pool IS NULL AND state IN ('queued', 'leased') RETURNING id",
                )?
                .query_map(params![name, now], |r| r.get(0))?
                .collect::<Result<Vec<String>, _>>()?;
            tx.commit()?;
            Ok(Some(failed))
        })
        .await
    }

    async fn jobs(&self, filter: JobFilter, limit: u32, now: i64) -> Result<Vec<JobRecord>, StoreError> {
        self.with_conn(move |c| {
            let tx = c.savepoint()?;
            match &filter.owner {
                Some(o) => expire_overdue(&tx, "owner = ?1", o, now)?,
                None => expire_overdue(&tx, "?1 IS NOT NULL", "", now)?,
            };
            let rows = tx
                .prepare_cached(&format!(
                    "SELECT {JOB_COLS}, NULL, cancel_requested_at, owner, project_id, query_index, customer, pool
                     FROM jobs WHERE {} ORDER BY created_at DESC, rowid DESC LIMIT ?2",
                    jobs_filter_sql('?', "")
                ))?
                .query_map(
                    params![filter.owner, limit, filter.state.map(JobState::as_str), filter.agent, filter.connection],
                    job_from_row,
                )?
                .collect::<Result<Vec<_>, _>>()?;
            tx.commit()?;
            // One bad row never hides the others: it is left out, and logged.
            Ok(rows
                .into_iter()
                .filter_map(|(state, mut rec)| match JobState::parse(&state) {
                    Ok(st) => {
                        rec.state = st;
                        Some(rec)
                    }
                    Err(e) => {
                        tracing::error!(job_id = %rec.id, error = %e, "A stored job cannot be read; it is left out of the list.");
                        None
                    }
                })
                .collect())
        })
        .await
    }

    async fn job(&self, id: String, now: i64, with_body: bool) -> Result<Option<JobRecord>, StoreError> {
        // Read beside the writer; a job found overdue is read again by the writer, which
        // marks it expired first.
        let sql = format!(
            "SELECT {JOB_COLS}, CASE WHEN ?2 THEN body END,
                    cancel_requested_at, owner, project_id, query_index, customer, pool
             FROM jobs WHERE id = ?1"
        );
        let (key, query) = (id.clone(), sql.clone());
        let rec = self
            .with_read(move |c| {
                Ok(c.prepare_cached(&query)?.query_row(params![key, with_body], job_from_row).optional()?)
            })
            .await?;
        let rec = match rec {
            Some((state, rec)) if matches!(state.as_str(), "queued" | "leased") && rec.expires_at < now => {
                self.with_conn(move |c| {
                    let tx = c.savepoint()?;
                    expire_overdue(&tx, "id = ?1", &id, now)?;
                    let rec = tx.prepare_cached(&sql)?.query_row(params![id, with_body], job_from_row).optional()?;
                    tx.commit()?;
                    Ok(rec)
                })
                .await?
            }
            other => other,
        };
        match rec {
            None => Ok(None),
            Some((state, mut rec)) => {
                rec.state = JobState::parse(&state)?;
                Ok(Some(rec))
            }
        }
    }
}
