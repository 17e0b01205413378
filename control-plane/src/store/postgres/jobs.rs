//! The PostgreSQL backend's jobs: queueing, cancelling, reads, and the lease and the
//! result through the one-statement transitions of [`super::transitions`].

use outpost_protocol::{Reason, ResultReport};
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use super::agents::refusal;
use crate::store::transitions::{self, EXPIRED_MESSAGE};
use crate::store::{
    jobs_filter_sql, AgentPeer, CancelOutcome, CompleteOutcome, JobFilter, JobOrigin, JobRecord, JobState, LeaseBatch,
    NewJob, PgStore, StoreError,
};

const JOB_COLS: &str = "id, agent, connection, state, created_at, expires_at, finished_at, attempts,
     reason_code, reason_message, stats, content_type";

fn job_from_row(r: &Row) -> Result<JobRecord, StoreError> {
    let code: Option<String> = r.get(8);
    let message: Option<String> = r.get(9);
    let stats: Option<String> = r.get(10);
    let state: String = r.get(3);
    Ok(JobRecord {
        id: r.get(0),
        agent: r.get(1),
        connection: r.get(2),
        state: JobState::parse(&state)?,
        created_at: r.get(4),
        expires_at: r.get(5),
        finished_at: r.get(6),
        attempts: r.get(7),
        reason: code.map(|code| Reason { code, message: message.unwrap_or_default() }),
        stats: stats.and_then(|s| serde_json::from_str(&s).ok()),
        content_type: r.get(11),
        body: r.get(12),
        cancel_requested_at: r.get(13),
        origin: JobOrigin {
            owner: r.get(14),
            project_id: r.get(15),
            query_index: r.get(16),
            customer: r.get(17),
            filters: r.get(19),
        },
        pool: r.get(18),
    })
}

const JOB_TAIL_COLS: &str = "cancel_requested_at, owner, project_id, query_index, customer, pool, filters";

/// Marks jobs past `expires_at` expired ([`transitions::expire_sql`]); `where_sql` uses `$1` (a text).
async fn expire_overdue(
    tx: &deadpool_postgres::Transaction<'_>,
    where_sql: &str,
    arg: &(dyn ToSql + Sync),
    now: i64,
) -> Result<Vec<String>, StoreError> {
    let stmt = tx.prepare_cached(&transitions::expire_sql('$', where_sql)).await?;
    Ok(tx.query(&stmt, &[arg, &now, &EXPIRED_MESSAGE]).await?.iter().map(|r| r.get(0)).collect())
}

pub(super) async fn job_envelope(store: &PgStore, id: String) -> Result<Option<String>, StoreError> {
    let client = store.client().await?;
    let stmt = client.prepare_cached("SELECT envelope FROM jobs WHERE id = $1").await?;
    Ok(client.query_opt(&stmt, &[&id]).await?.map(|r| r.get(0)))
}

pub(super) async fn insert_job(store: &PgStore, job: NewJob) -> Result<(), StoreError> {
    let client = store.client().await?;
    // One statement (one round trip, one commit). `outpost_key_usable` holds the key's
    // advisory lock shared (migration 008): a retirement (which takes it exclusively,
    // updates the key, then re-signs the key's undelivered jobs) either waits for this
    // insert and then re-signs this job too, or commits first and this insert finds no
    // key to insert with. A new job is signed by the active key: the dispatcher keeps the
    // active key's id and learns of a rotation here (a rotation that commits while this
    // statement runs may let one job in under the key it just demoted, which agents still
    // trust until it is retired, and a retirement re-signs).
    let stmt = client
        .prepare_cached(
            "WITH usable AS (SELECT 1 WHERE outpost_key_usable($8)
                                 AND EXISTS (SELECT 1 FROM signing_keys WHERE key_id = $8 AND status = 'active'))
                 INSERT INTO jobs (id, agent, pool, connection, state, envelope, created_at, expires_at, key_id,
                                   owner, project_id, query_index, customer, filters)
                 SELECT $1::TEXT, $2::TEXT, $3::TEXT, $4::TEXT, 'queued', $5::TEXT, $6::BIGINT, $7::BIGINT, $8::TEXT,
                        $9::TEXT, $10::TEXT, $11::BIGINT, $12::TEXT, $13::TEXT
                 FROM usable",
        )
        .await?;
    let inserted = client
        .execute(
            &stmt,
            &[
                &job.id,
                &job.agent,
                &job.pool,
                &job.connection,
                &job.envelope_json,
                &job.created_at,
                &job.expires_at,
                &job.key_id,
                &job.origin.owner,
                &job.origin.project_id,
                &job.origin.query_index,
                &job.origin.customer,
                &job.origin.filters,
            ],
        )
        .await?;
    if inserted == 0 {
        return Err(StoreError::KeyRetired { key_id: job.key_id });
    }
    Ok(())
}

pub(super) async fn lease_jobs(
    store: &PgStore,
    agent: AgentPeer,
    now: i64,
    lease_secs: i64,
    max: usize,
) -> Result<LeaseBatch, StoreError> {
    let client = store.client().await?;
    let leased = super::transitions::lease(&client, &agent, now, lease_secs, max).await?;
    match leased.admitted {
        Some(_) => Ok(leased.batch),
        None => Err(refusal(&client, &agent).await?),
    }
}

pub(super) async fn fail_corrupt_job(
    store: &PgStore,
    id: String,
    agent: String,
    now: i64,
    message: String,
) -> Result<bool, StoreError> {
    let client = store.client().await?;
    let stmt = client.prepare_cached(&transitions::fail_corrupt_sql('$')).await?;
    Ok(client.execute(&stmt, &[&id, &agent, &now, &message]).await? == 1)
}

pub(super) async fn cancel_job(store: &PgStore, id: String, now: i64) -> Result<CancelOutcome, StoreError> {
    let mut client = store.client().await?;
    let tx = client.transaction().await?;
    expire_overdue(&tx, "id = $1", &id, now).await?;
    let Some(row) = tx.query_opt("SELECT state, agent FROM jobs WHERE id = $1 FOR UPDATE", &[&id]).await? else {
        return Ok(CancelOutcome::NotFound);
    };
    let (state, agent): (String, String) = (row.get(0), row.get(1));
    let outcome = match JobState::parse(&state)? {
        JobState::Queued => {
            tx.execute(&transitions::cancel_queued_sql('$'), &[&id, &now]).await?;
            CancelOutcome::Cancelled
        }
        JobState::Leased => {
            tx.execute(&transitions::cancel_leased_sql('$'), &[&id, &now]).await?;
            CancelOutcome::Requested { agent }
        }
        other => CancelOutcome::AlreadyFinal(other),
    };
    tx.commit().await?;
    Ok(outcome)
}

pub(super) async fn complete_job(
    store: &PgStore,
    agent: AgentPeer,
    report: ResultReport,
    report_sha256: String,
    sealed_body: Option<Vec<u8>>,
    now: i64,
) -> Result<CompleteOutcome, StoreError> {
    let client = store.client().await?;
    let completion = super::transitions::Completion {
        job_id: &report.job_id,
        new_state: JobState::from(report.status),
        report_sha256: &report_sha256,
        reason: report.reason.map(|r| (r.code, r.message)).unzip(),
        stats: serde_json::to_string(&report.stats).unwrap_or_default(),
        content_type: report.content_type.as_deref(),
        sealed_body,
    };
    match super::transitions::complete(&client, &agent, completion, now).await? {
        Some(outcome) => Ok(outcome),
        None => Err(refusal(&client, &agent).await?),
    }
}

pub(super) async fn jobs(
    store: &PgStore,
    filter: JobFilter,
    limit: u32,
    now: i64,
) -> Result<Vec<JobRecord>, StoreError> {
    let mut client = store.client().await?;
    let tx = client.transaction().await?;
    match &filter.owner {
        Some(o) => expire_overdue(&tx, "owner = $1", o, now).await?,
        None => expire_overdue(&tx, "$1::TEXT IS NOT NULL", &"", now).await?,
    };
    let stmt = tx
        .prepare_cached(&format!(
            "SELECT {JOB_COLS}, NULL::BYTEA, {JOB_TAIL_COLS}
                 FROM jobs WHERE {} ORDER BY created_at DESC, seq DESC LIMIT $2",
            jobs_filter_sql('$', "::TEXT")
        ))
        .await?;
    let state = filter.state.map(JobState::as_str);
    let rows = tx.query(&stmt, &[&filter.owner, &i64::from(limit), &state, &filter.agent, &filter.connection]).await?;
    tx.commit().await?;
    // One bad row never hides the others: it is left out, and logged.
    Ok(rows
            .iter()
            .filter_map(|r| match job_from_row(r) {
                Ok(rec) => Some(rec),
                Err(e) => {
                    let id: Option<String> = r.try_get(0).ok();
                    tracing::error!(job_id = id.as_deref().unwrap_or(""), error = %e, "A stored job cannot be read; it is left out of the list.");
                    None
                }
            })
            .collect())
}

pub(super) async fn job(
    store: &PgStore,
    id: String,
    now: i64,
    with_body: bool,
) -> Result<Option<JobRecord>, StoreError> {
    let mut client = store.client().await?;
    let sql = format!("SELECT {JOB_COLS}, CASE WHEN $2 THEN body END, {JOB_TAIL_COLS} FROM jobs WHERE id = $1");
    // One round trip unless the job is open past its expiry: then it is marked
    // expired and read again in one transaction.
    let stmt = client.prepare_cached(&sql).await?;
    let found = client.query_opt(&stmt, &[&id, &with_body]).await?.as_ref().map(job_from_row).transpose()?;
    match found {
        Some(rec) if matches!(rec.state, JobState::Queued | JobState::Leased) && rec.expires_at < now => {
            let tx = client.transaction().await?;
            expire_overdue(&tx, "id = $1", &id, now).await?;
            let stmt = tx.prepare_cached(&sql).await?;
            let row = tx.query_opt(&stmt, &[&id, &with_body]).await?;
            tx.commit().await?;
            row.as_ref().map(job_from_row).transpose()
        }
        other => Ok(other),
    }
}
