//! The SQLite backend's jobs: queueing, leasing, cancelling, results and reads, each
//! transition one transaction on the writer.

use std::sync::LazyLock;

use outpost_protocol::{Reason, ResultReport};
use rusqlite::{params, Connection, OptionalExtension};

use super::agents::admit_agent;
use super::keys::current_key_set_version;
use crate::store::transitions::{self, PollSql, Slots, EXPIRED_MESSAGE};
use crate::store::{
    jobs_filter_sql, AgentPeer, CancelOutcome, CompleteOutcome, JobFilter, JobOrigin, JobRecord, JobState, LeaseBatch,
    LeasedJob, NewJob, SqliteStore, StoreError, CANCEL_RESEND_SECS,
};

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
                filters: r.get(19)?,
            },
            pool: r.get(18)?,
        },
    ))
}

/// A result's change, admission having run first in the same transaction.
static COMPLETE: LazyLock<String> = LazyLock::new(|| transitions::complete_sql('?', "1"));

/// A poll's statements, in [`transitions`]' words with SQLite's placeholders.
static POLL: LazyLock<PollSql> = LazyLock::new(|| PollSql::new(&Slots::SQLITE));

/// Marks jobs past `expires_at` expired ([`transitions::expire_sql`]); `scope` uses `?1` (a text).
fn expire_overdue(tx: &Connection, scope: &str, arg: &str, now: i64) -> Result<Vec<String>, StoreError> {
    let mut stmt = tx.prepare_cached(&transitions::expire_sql('?', scope))?;
    let ids = stmt.query_map(params![arg, now, EXPIRED_MESSAGE], |r| r.get(0))?.collect::<Result<Vec<String>, _>>()?;
    Ok(ids)
}

/// Runs one of [`POLL`]'s statements that return the ids they changed (not the lease,
/// which binds the lease's length and size).
fn poll_ids(
    tx: &Connection,
    sql: &str,
    agent: &AgentPeer,
    now: i64,
    pool: Option<&str>,
) -> Result<Vec<String>, StoreError> {
    let mut stmt = tx.prepare_cached(sql)?;
    let n = stmt.parameter_count();
    let all: [&dyn rusqlite::ToSql; 7] =
        [&agent.name, &now, &0i64, &0i64, &pool, &CANCEL_RESEND_SECS, &EXPIRED_MESSAGE];
    // Each statement names some of the seven slots; SQLite binds them by position up to
    // the highest one named.
    let ids = stmt.query_map(&all[..n], |r| r.get(0))?.collect::<Result<Vec<String>, _>>()?;
    Ok(ids)
}

pub(super) async fn job_envelope(store: &SqliteStore, id: String) -> Result<Option<String>, StoreError> {
    store
        .with_conn(move |c| {
            Ok(c.prepare_cached("SELECT envelope FROM jobs WHERE id = ?1")?
                .query_row(params![id], |r| r.get(0))
                .optional()?)
        })
        .await
}

pub(super) async fn insert_job(store: &SqliteStore, job: NewJob) -> Result<(), StoreError> {
    store
        .with_conn_small(move |c| {
            // The key check and the insert are one statement, so a retirement that re-signs
            // the retired key's jobs cannot miss this one. A new job is signed by the active
            // key: the dispatcher keeps the active key's id and learns of a rotation here.
            let n = c
                .prepare_cached(
                    "INSERT INTO jobs (id, agent, connection, state, envelope, created_at, expires_at, key_id,
                                       owner, project_id, query_index, customer, pool, filters)
                     SELECT ?1, ?2, ?3, 'queued', ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13
                     WHERE EXISTS (SELECT 1 FROM signing_keys WHERE key_id = ?7 AND status = 'active')",
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
                    job.pool,
                    job.origin.filters
                ])?;
            if n == 0 {
                return Err(StoreError::KeyRetired { key_id: job.key_id });
            }
            Ok(())
        })
        .await
}

pub(super) async fn lease_jobs(
    store: &SqliteStore,
    agent: AgentPeer,
    now: i64,
    lease_secs: i64,
    max: usize,
) -> Result<LeaseBatch, StoreError> {
    store
        .with_conn_small(move |c| {
            let tx = c.savepoint()?;
            let pool = admit_agent(&tx, &agent, now)?;
            let mut expired = poll_ids(&tx, &POLL.expire_own, &agent, now, pool.as_deref())?;
            if pool.is_some() {
                expired.extend(poll_ids(&tx, &POLL.expire_pool, &agent, now, pool.as_deref())?);
            }
            let cancelled = poll_ids(&tx, &POLL.cancel_for_good, &agent, now, pool.as_deref())?;
            let cancel = poll_ids(&tx, &POLL.cancel_tell, &agent, now, pool.as_deref())?;
            let jobs = {
                let mut stmt = tx.prepare_cached(&POLL.lease)?;
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

pub(super) async fn fail_corrupt_job(
    store: &SqliteStore,
    id: String,
    agent: String,
    now: i64,
    message: String,
) -> Result<bool, StoreError> {
    store
        .with_conn(move |c| {
            let n = c.prepare_cached(&transitions::fail_corrupt_sql('?'))?.execute(params![id, agent, now, message])?;
            Ok(n == 1)
        })
        .await
}

pub(super) async fn cancel_job(store: &SqliteStore, id: String, now: i64) -> Result<CancelOutcome, StoreError> {
    store
        .with_conn(move |c| {
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
                    tx.prepare_cached(&transitions::cancel_queued_sql('?'))?.execute(params![id, now])?;
                    CancelOutcome::Cancelled
                }
                JobState::Leased => {
                    tx.prepare_cached(&transitions::cancel_leased_sql('?'))?.execute(params![id, now])?;
                    CancelOutcome::Requested { agent }
                }
                other => CancelOutcome::AlreadyFinal(other),
            };
            tx.commit()?;
            Ok(outcome)
        })
        .await
}

/// The largest result (body and reason) whose change may run on the caller's thread: a
/// bigger one is copied into the WAL by the writer's thread
/// ([`super::db::SqliteDb::write_small`]).
const SMALL_RESULT: usize = 64 * 1024;

pub(super) async fn complete_job(
    store: &SqliteStore,
    agent: AgentPeer,
    report: ResultReport,
    report_sha256: String,
    sealed_body: Option<Vec<u8>>,
    now: i64,
) -> Result<CompleteOutcome, StoreError> {
    let size =
        sealed_body.as_ref().map_or(0, Vec::len) + report.reason.as_ref().map_or(0, |r| r.code.len() + r.message.len());
    let small = size <= SMALL_RESULT;
    let change = move |c: &mut rusqlite::Connection| {
        let tx = c.savepoint()?;
        admit_agent(&tx, &agent, now)?;
        let stats = serde_json::to_string(&report.stats).unwrap_or_default();
        let (code, message) = report.reason.map(|r| (r.code, r.message)).unzip();
        let changed = tx.prepare_cached(&COMPLETE)?.execute(params![
            report.job_id,
            agent.name,
            now,
            JobState::from(report.status).as_str(),
            report_sha256,
            code,
            message,
            stats,
            report.content_type,
            sealed_body
        ])? == 1;
        let stored: Option<(String, Option<String>)> = if changed {
            None
        } else {
            tx.prepare_cached("SELECT state, report_sha256 FROM jobs WHERE id = ?1 AND agent = ?2")?
                .query_row(params![report.job_id, agent.name], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?
        };
        tx.commit()?;
        transitions::settle(changed, stored.as_ref().map(|(s, h)| (s.as_str(), h.as_deref())), &report_sha256)
    };
    if small {
        store.with_conn_small(change).await
    } else {
        store.with_conn(change).await
    }
}

pub(super) async fn jobs(
    store: &SqliteStore,
    filter: JobFilter,
    limit: u32,
    now: i64,
) -> Result<Vec<JobRecord>, StoreError> {
    store.with_conn(move |c| {
            let tx = c.savepoint()?;
            match &filter.owner {
                Some(o) => expire_overdue(&tx, "owner = ?1", o, now)?,
                None => expire_overdue(&tx, "?1 IS NOT NULL", "", now)?,
            };
            let rows = tx
                .prepare_cached(&format!(
                    "SELECT {JOB_COLS}, NULL, cancel_requested_at, owner, project_id, query_index, customer, pool, filters
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

pub(super) async fn job(
    store: &SqliteStore,
    id: String,
    now: i64,
    with_body: bool,
) -> Result<Option<JobRecord>, StoreError> {
    // Read beside the writer; a job found overdue is read again by the writer, which
    // marks it expired first.
    let sql = format!(
        "SELECT {JOB_COLS}, CASE WHEN ?2 THEN body END,
                    cancel_requested_at, owner, project_id, query_index, customer, pool, filters
             FROM jobs WHERE id = ?1"
    );
    let (key, query) = (id.clone(), sql.clone());
    let rec = store
        .with_read(move |c| {
            Ok(c.prepare_cached(&query)?.query_row(params![key, with_body], job_from_row).optional()?)
        })
        .await?;
    let rec = match rec {
        Some((state, rec)) if matches!(state.as_str(), "queued" | "leased") && rec.expires_at < now => {
            store
                .with_conn(move |c| {
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
