//! The job state machine, written once for both backends.
//!
//! Every change of a job's state is one SQL statement whose condition is written here,
//! once, with named slots (`{agent}`, `{now}`, …) that each backend fills with its own
//! placeholders ([`Slots::SQLITE`], [`Slots::POSTGRES`]). The backends differ in how the
//! statements are run and locked only:
//!
//! - SQLite runs them one after another in one transaction on its single writer, after
//!   the agent's admission ([`super::sqlite`]).
//! - PostgreSQL runs a poll or a result as one statement: the same texts become the
//!   data-modifying parts of one `WITH`, each guarded by the admission (`{admitted}`),
//!   and the lease skips rows other replicas hold (`{lock}`) ([`super::postgres`]).
//!
//! Parts of one PostgreSQL statement must not touch the same row (only one of two such
//! changes is applied), so the conditions are disjoint: a job past its expiry is only
//! expired (never cancelled, leased or sent a cancel); a cancel-requested job whose lease
//! ran out is only cancelled; the lease takes only jobs without a cancel request. Run in
//! order on SQLite, the same disjoint conditions change the same rows.
//!
//! What a result report comes to, when it changed nothing, is decided in Rust by
//! [`settle`] on both backends.

use crate::store::{CompleteOutcome, JobState, StoreError};

/// The reason message of a job that expired while open.
pub(crate) const EXPIRED_MESSAGE: &str = "the job expired before its agent returned a result";

/// What each backend puts in a statement's slots.
pub(crate) struct Slots {
    /// The agent's name.
    pub agent: &'static str,
    /// The time of the request (seconds).
    pub now: &'static str,
    /// The lease's length (seconds).
    pub lease_secs: &'static str,
    /// The most jobs one lease hands out.
    pub max: &'static str,
    /// The agent's pool (NULL when it has none).
    pub pool: &'static str,
    /// The interval after which a cancel is told again (seconds).
    pub resend: &'static str,
    /// [`EXPIRED_MESSAGE`].
    pub expired_message: &'static str,
    /// A condition that holds only for an admitted agent (`TRUE` where admission ran before).
    pub admitted: &'static str,
    /// How the lease's candidate rows are locked.
    pub lock: &'static str,
}

impl Slots {
    /// SQLite: positional parameters; admission runs first in the same transaction, and
    /// the single writer needs no row locks.
    pub(crate) const SQLITE: Slots = Slots {
        agent: "?1",
        now: "?2",
        lease_secs: "?3",
        max: "?4",
        pool: "?5",
        resend: "?6",
        expired_message: "?7",
        admitted: "1",
        lock: "",
    };

    /// PostgreSQL: the same positions; the admission and the agent's pool come from the
    /// statement's `me` part, and concurrent replicas skip each other's candidate rows.
    pub(crate) const POSTGRES: Slots = Slots {
        agent: "$1",
        now: "$2::BIGINT",
        lease_secs: "$3::BIGINT",
        max: "$4",
        pool: "(SELECT pool FROM me)",
        resend: "$6::BIGINT",
        expired_message: "$7",
        admitted: "EXISTS (SELECT 1 FROM me)",
        lock: "FOR UPDATE SKIP LOCKED",
    };

    fn fill(&self, template: &str) -> String {
        template
            .replace("{agent}", self.agent)
            .replace("{now}", self.now)
            .replace("{lease_secs}", self.lease_secs)
            .replace("{max}", self.max)
            .replace("{pool}", self.pool)
            .replace("{resend}", self.resend)
            .replace("{expired_message}", self.expired_message)
            .replace("{admitted}", self.admitted)
            .replace("{lock}", self.lock)
    }
}

/// Open → expired: the agent's own open jobs past their expiry.
const EXPIRE_OWN: &str = "UPDATE jobs SET state = 'expired', finished_at = {now}, lease_until = NULL,
        reason_code = 'expired', reason_message = {expired_message}
    WHERE agent = {agent} AND state IN ('queued', 'leased') AND expires_at < {now} AND {admitted}
    RETURNING id";

/// Open → expired: the agent's pool's jobs no member holds, past their expiry.
const EXPIRE_POOL: &str = "UPDATE jobs SET state = 'expired', finished_at = {now}, lease_until = NULL,
        reason_code = 'expired', reason_message = {expired_message}
    WHERE pool = {pool} AND agent = '' AND state IN ('queued', 'leased') AND expires_at < {now} AND {admitted}
    RETURNING id";

/// Leased → cancelled: a cancel was asked and the lease ran out without a report.
const CANCEL_FOR_GOOD: &str = "UPDATE jobs SET state = 'cancelled', finished_at = {now}, lease_until = NULL,
        reason_code = 'cancelled',
        reason_message = 'cancelled at a user''s request; the agent did not report before its lease ran out'
    WHERE agent = {agent} AND state = 'leased' AND cancel_requested_at IS NOT NULL AND lease_until < {now}
      AND expires_at >= {now} AND {admitted}
    RETURNING id";

/// A leased job's cancel is told (again) to its agent every [`super::CANCEL_RESEND_SECS`]
/// until it reports: a poll answer lost on the way must not lose the cancel.
const CANCEL_TELL: &str = "UPDATE jobs SET cancel_sent_at = {now}
    WHERE agent = {agent} AND state = 'leased' AND cancel_requested_at IS NOT NULL
      AND (lease_until IS NULL OR lease_until >= {now}) AND expires_at >= {now}
      AND (cancel_sent_at IS NULL OR cancel_sent_at <= {now} - {resend}) AND {admitted}
    RETURNING id";

/// Queued (or leased, lease run out) → leased: the oldest deliverable jobs of the agent
/// or of its pool. Each branch names the open states, so that the index seeks (agent,
/// state) and (pool, state): with only `agent = …` it read every job the agent ever ran
/// on every poll, and throughput fell as the history grew (issue 24).
const LEASE: &str = "UPDATE jobs SET state = 'leased', agent = {agent}, lease_until = {now} + {lease_secs},
        attempts = attempts + 1
    WHERE id IN (SELECT id FROM jobs
                 WHERE ((agent = {agent} AND pool IS NULL AND state IN ('queued', 'leased'))
                        OR (pool = {pool} AND state IN ('queued', 'leased')))
                   AND expires_at >= {now} AND cancel_requested_at IS NULL
                   AND (state = 'queued' OR (state = 'leased' AND lease_until < {now}))
                   AND {admitted}
                 ORDER BY created_at, id LIMIT {max} {lock})
    RETURNING id, envelope, created_at";

/// The statements of one poll, in the order SQLite runs them, filled for one backend.
pub(crate) struct PollSql {
    /// [`EXPIRE_OWN`].
    pub expire_own: String,
    /// [`EXPIRE_POOL`].
    pub expire_pool: String,
    /// [`CANCEL_FOR_GOOD`].
    pub cancel_for_good: String,
    /// [`CANCEL_TELL`].
    pub cancel_tell: String,
    /// [`LEASE`].
    pub lease: String,
}

impl PollSql {
    /// The poll's statements with `slots` filled in.
    pub(crate) fn new(slots: &Slots) -> Self {
        Self {
            expire_own: slots.fill(EXPIRE_OWN),
            expire_pool: slots.fill(EXPIRE_POOL),
            cancel_for_good: slots.fill(CANCEL_FOR_GOOD),
            cancel_tell: slots.fill(CANCEL_TELL),
            lease: slots.fill(LEASE),
        }
    }
}

/// Open → final with an agent's report. Parameters: 1 job, 2 agent, 3 now, 4 new state,
/// 5 report hash, 6 reason code, 7 reason message, 8 stats, 9 content type, 10 sealed
/// body; `{p}` is the placeholder prefix and `{admitted}` the admission guard.
pub(crate) fn complete_sql(p: char, admitted: &str) -> String {
    format!(
        "UPDATE jobs SET state = {p}4, finished_at = {p}3, lease_until = NULL, report_sha256 = {p}5,
             reason_code = {p}6, reason_message = {p}7, stats = {p}8, content_type = {p}9, body = {p}10
         WHERE id = {p}1 AND agent = {p}2 AND state IN ('queued', 'leased') AND {admitted}"
    )
}

/// Queued → cancelled at a user's request. Parameters: 1 job, 2 now.
pub(crate) fn cancel_queued_sql(p: char) -> String {
    format!(
        "UPDATE jobs SET state = 'cancelled', finished_at = {p}2, cancel_requested_at = {p}2,
             reason_code = 'cancelled',
             reason_message = 'cancelled at a user''s request before the agent received it'
         WHERE id = {p}1 AND state = 'queued'"
    )
}

/// Leased: a user asked to cancel (the agent is told at its next poll). Parameters: 1 job, 2 now.
pub(crate) fn cancel_leased_sql(p: char) -> String {
    format!("UPDATE jobs SET cancel_requested_at = COALESCE(cancel_requested_at, {p}2) WHERE id = {p}1 AND state = 'leased'")
}

/// Open → expired, for the jobs `scope` selects (a condition on `{p}1`, a text). Parameters: 1 the
/// scope's text, 2 now, 3 [`EXPIRED_MESSAGE`].
pub(crate) fn expire_sql(p: char, scope: &str) -> String {
    format!(
        "UPDATE jobs SET state = 'expired', finished_at = {p}2, lease_until = NULL,
             reason_code = 'expired', reason_message = {p}3
         WHERE {scope} AND state IN ('queued', 'leased') AND expires_at < {p}2 RETURNING id"
    )
}

/// Open → failed (`corrupt_job`): a leased job whose envelope cannot be read, still
/// leased to this agent. Parameters: 1 job, 2 agent, 3 now, 4 message.
pub(crate) fn fail_corrupt_sql(p: char) -> String {
    format!(
        "UPDATE jobs SET state = 'failed', finished_at = {p}3, lease_until = NULL,
             reason_code = 'corrupt_job', reason_message = {p}4
         WHERE id = {p}1 AND agent = {p}2 AND state = 'leased'"
    )
}

/// What a result report comes to: accepted when [`complete_sql`] changed the job;
/// otherwise, from the job as it is stored now (state and report hash): not found, the
/// same report again (a duplicate, answered as accepted was), or a different one for a
/// job already final (a conflict). A job still open that the report did not change was
/// not this agent's to finish.
pub(crate) fn settle(
    changed: bool,
    stored: Option<(&str, Option<&str>)>,
    report_sha256: &str,
) -> Result<CompleteOutcome, StoreError> {
    if changed {
        return Ok(CompleteOutcome::Accepted);
    }
    let Some((state, stored_hash)) = stored else {
        return Ok(CompleteOutcome::NotFound);
    };
    let state = JobState::parse(state)?;
    Ok(if stored_hash == Some(report_sha256) { CompleteOutcome::Duplicate } else { CompleteOutcome::Conflict(state) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_slot_is_filled_on_both_backends() {
        for slots in [&Slots::SQLITE, &Slots::POSTGRES] {
            let poll = PollSql::new(slots);
            for sql in [&poll.expire_own, &poll.expire_pool, &poll.cancel_for_good, &poll.cancel_tell, &poll.lease] {
                assert!(!sql.contains('{'), "an unfilled slot in {sql}");
            }
        }
    }

    #[test]
    fn a_report_settles_by_the_stored_job() {
        let h = "abc";
        assert!(matches!(settle(true, None, h), Ok(CompleteOutcome::Accepted)));
        assert!(matches!(settle(false, None, h), Ok(CompleteOutcome::NotFound)));
        assert!(matches!(settle(false, Some(("succeeded", Some(h))), h), Ok(CompleteOutcome::Duplicate)));
        assert!(matches!(
            settle(false, Some(("succeeded", Some("other"))), h),
            Ok(CompleteOutcome::Conflict(JobState::Succeeded))
        ));
        assert!(settle(false, Some(("no-such-state", None)), h).is_err());
    }
}
