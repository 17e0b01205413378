//! The job state machine's two busiest transitions on PostgreSQL, one statement each.
//!
//! A poll (lease) and a result (complete) were a transaction of up to nine statements
//! each (`BEGIN`, the admission, the expiries, the cancels, the lease, the key-set
//! version, `COMMIT`): ten and six round trips to the server, and as many wake-ups of
//! both processes on the same cores (issue 24). Each is now one statement whose
//! data-modifying `WITH` parts share one snapshot and one implicit transaction:
//!
//! - The admission is `outpost_admit_agent` (PostgreSQL migration 008): a shared
//!   advisory lock on the agent's name, then a read of its row with a fresh snapshot. A
//!   revocation and a new enrolment take that lock exclusively first, so they wait for
//!   the statement and the statement for them: a job is never leased to, nor a result
//!   taken from, an agent revoked before the statement ends. The lock lives in memory
//!   only. The shared row lock it replaces (`FOR KEY SHARE`) made a multixact and a WAL
//!   record whenever two statements of one agent overlapped, and made every poll a write
//!   that waited for a WAL flush, also when it leased nothing (issue 24). When the agent
//!   is not admitted, nothing else in the statement matches a row (every part asks
//!   `EXISTS (SELECT 1 FROM me)`) and the caller asks why ([`super::agents`]'s
//!   `refusal`).
//! - `last_seen` is written at most once a second in a statement of its own after the
//!   lease, when the lease said it was due: written inside the statement, every poll
//!   would be a write, and the concurrent statements of one agent would queue on its row.
//! - The parts' conditions are the shared state machine's ([`crate::store::transitions`]),
//!   disjoint so that no two parts touch the same row.

use std::sync::LazyLock;

use tokio_postgres::Row;

use crate::store::transitions::{self, PollSql, Slots, EXPIRED_MESSAGE};
use crate::store::{AgentPeer, CompleteOutcome, JobState, LeaseBatch, LeasedJob, StoreError, CANCEL_RESEND_SECS};

/// One poll: admission, expiries, cancels, the lease and the key-set version. Parameters:
/// `$1` agent, `$2` now, `$3` lease seconds, `$4` most jobs, `$5` certificate issue time,
/// `$6` cancel resend interval. Rows: `(kind, id, envelope, number, pool, due)`, kind `m`
/// (the admitted agent: pool, and whether `last_seen` is due), `e` expired, `x` cancelled
/// for good, `c` to cancel now, `l` leased (`number` = created_at), `v` key-set version.
static LEASE_SQL: LazyLock<String> = LazyLock::new(|| {
    let poll = PollSql::new(&Slots::POSTGRES);
    format!(
        "WITH me AS (
    SELECT pool, due FROM outpost_admit_agent($1, $5, $2)
),
expired_own AS ({}),
expired_pool AS ({}),
cancelled AS ({}),
cancel AS ({}),
leased AS ({})
SELECT 'm'::TEXT, NULL::TEXT, NULL::TEXT, NULL::BIGINT, pool, due FROM me
UNION ALL SELECT 'e', id, NULL, NULL, NULL, NULL FROM expired_own
UNION ALL SELECT 'e', id, NULL, NULL, NULL, NULL FROM expired_pool
UNION ALL SELECT 'x', id, NULL, NULL, NULL, NULL FROM cancelled
UNION ALL SELECT 'c', id, NULL, NULL, NULL, NULL FROM cancel
UNION ALL SELECT 'l', id, envelope, created_at, NULL, NULL FROM leased
UNION ALL SELECT 'v', NULL, NULL, COALESCE(MAX(version), 0)::BIGINT, NULL, NULL FROM key_sets",
        poll.expire_own, poll.expire_pool, poll.cancel_for_good, poll.cancel_tell, poll.lease
    )
});

/// Writes `last_seen` (and clears a clean stop) of an admitted agent.
const TOUCH_SQL: &str = "UPDATE agents SET last_seen = $2, stopped_at = NULL
     WHERE name = $1 AND revoked_at IS NULL AND enrolled_at <= $3
       AND (last_seen IS NULL OR last_seen < $2 OR stopped_at IS NOT NULL)";

/// What a lease statement returned, before the caller asks why an agent was refused.
pub(super) struct Leased {
    /// `Some(due)` when the agent was admitted; `due` says `last_seen` should be written.
    pub admitted: Option<bool>,
    pub batch: LeaseBatch,
}

/// Runs [`LEASE_SQL`] and sorts its rows; then writes `last_seen` when it is due.
pub(super) async fn lease(
    client: &deadpool_postgres::Object,
    agent: &AgentPeer,
    now: i64,
    lease_secs: i64,
    max: usize,
) -> Result<Leased, StoreError> {
    let stmt = client.prepare_cached(&LEASE_SQL).await?;
    let max = i64::try_from(max).unwrap_or(i64::MAX);
    let rows = client
        .query(
            &stmt,
            &[&agent.name, &now, &lease_secs, &max, &agent.cert_issued_at, &CANCEL_RESEND_SECS, &EXPIRED_MESSAGE],
        )
        .await?;
    let out = sort_lease_rows(&rows)?;
    if out.admitted == Some(true) {
        touch(client, agent, now).await?;
    }
    Ok(out)
}

fn sort_lease_rows(rows: &[Row]) -> Result<Leased, StoreError> {
    let mut admitted = None;
    let mut batch = LeaseBatch::default();
    let mut leased: Vec<(i64, LeasedJob)> = Vec::new();
    for r in rows {
        let kind: &str = r.get(0);
        let id = || -> Result<String, StoreError> {
            r.get::<_, Option<String>>(1).ok_or_else(|| StoreError::Corrupt {
                table: "jobs",
                reason: "a lease returned a job without an id".into(),
            })
        };
        match kind {
            "m" => admitted = Some(r.get::<_, Option<bool>>(5).unwrap_or(true)),
            "e" => batch.expired.push(id()?),
            "x" => batch.cancelled.push(id()?),
            "c" => batch.cancel.push(id()?),
            "l" => leased.push((
                r.get::<_, Option<i64>>(3).unwrap_or(0),
                LeasedJob { id: id()?, envelope_json: r.get::<_, Option<String>>(2).unwrap_or_default() },
            )),
            "v" => batch.key_set_version = u64::try_from(r.get::<_, Option<i64>>(3).unwrap_or(0)).unwrap_or(0),
            _ => {}
        }
    }
    leased.sort_by(|a, b| (a.0, &a.1.id).cmp(&(b.0, &b.1.id)));
    batch.jobs = leased.into_iter().map(|(_, j)| j).collect();
    Ok(Leased { admitted, batch })
}

/// Writes `last_seen` at most once a second (the statement's own condition), outside any
/// transaction that holds the agent's row.
pub(super) async fn touch(client: &deadpool_postgres::Object, agent: &AgentPeer, now: i64) -> Result<(), StoreError> {
    let stmt = client.prepare_cached(TOUCH_SQL).await?;
    client.execute(&stmt, &[&agent.name, &now, &agent.cert_issued_at]).await?;
    Ok(())
}

/// One result: admission, the job's state before, and the change to a final state when
/// the job is still open. Parameters: `$1` job, `$2` agent, `$3` now, `$4` new state,
/// `$5` report hash, `$6` reason code, `$7` reason message, `$8` stats, `$9` content type,
/// `$10` sealed body, `$11` certificate issue time. One row: admitted, `last_seen` due,
/// the state and hash before, whether it changed.
static COMPLETE_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH me AS (
    SELECT due FROM outpost_admit_agent($2, $11, $3)
),
before AS (
    SELECT state, report_sha256 FROM jobs WHERE id = $1 AND agent = $2
),
done AS ({} RETURNING 1)
SELECT EXISTS (SELECT 1 FROM me), COALESCE((SELECT due FROM me), FALSE),
       (SELECT state FROM before), (SELECT report_sha256 FROM before), EXISTS (SELECT 1 FROM done)",
        transitions::complete_sql('$', "EXISTS (SELECT 1 FROM me)")
    )
});

/// The stored outcome of a job that was not changed: the state and hash as they are now
/// (read again when the statement's snapshot still saw the job open: another result of
/// the same job committed in between).
const FINAL_SQL: &str = "SELECT state, report_sha256 FROM jobs WHERE id = $1 AND agent = $2";

/// What the report of a result changes; the fields of [`COMPLETE_SQL`]'s parameters.
pub(super) struct Completion<'a> {
    pub job_id: &'a str,
    pub new_state: JobState,
    pub report_sha256: &'a str,
    pub reason: (Option<String>, Option<String>),
    pub stats: String,
    pub content_type: Option<&'a str>,
    pub sealed_body: Option<Vec<u8>>,
}

/// Runs [`COMPLETE_SQL`]; `None` when the agent was not admitted (the caller asks why).
pub(super) async fn complete(
    client: &deadpool_postgres::Object,
    agent: &AgentPeer,
    c: Completion<'_>,
    now: i64,
) -> Result<Option<CompleteOutcome>, StoreError> {
    let stmt = client.prepare_cached(&COMPLETE_SQL).await?;
    let row = client
        .query_one(
            &stmt,
            &[
                &c.job_id,
                &agent.name,
                &now,
                &c.new_state.as_str(),
                &c.report_sha256,
                &c.reason.0,
                &c.reason.1,
                &c.stats,
                &c.content_type,
                &c.sealed_body,
                &agent.cert_issued_at,
            ],
        )
        .await?;
    let (admitted, due, before, changed): (bool, bool, Option<String>, bool) =
        (row.get(0), row.get(1), row.get(2), row.get(4));
    if !admitted {
        return Ok(None);
    }
    if due {
        touch(client, agent, now).await?;
    }
    let before_hash: Option<String> = row.get(3);
    let open = |state: &str| JobState::parse(state).map(|s| !s.is_final());
    if !changed && before.as_deref().map(open).transpose()? == Some(true) {
        let stmt = client.prepare_cached(FINAL_SQL).await?;
        let now_row = client.query_opt(&stmt, &[&c.job_id, &agent.name]).await?;
        let stored = now_row.map(|r| (r.get::<_, String>(0), r.get::<_, Option<String>>(1)));
        return transitions::settle(false, stored.as_ref().map(|(s, h)| (s.as_str(), h.as_deref())), c.report_sha256)
            .map(Some);
    }
    transitions::settle(changed, before.as_deref().map(|s| (s, before_hash.as_deref())), c.report_sha256).map(Some)
}
