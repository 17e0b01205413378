//! Project schedules: a loop beside retention that runs each due project as its owner,
//! like the Refresh button ([`App::run_project`]'s parts), once per listed customer.
//!
//! - **Once per slot.** A replica claims a due slot by compare-and-set on the project's
//!   (`next_run_at`, `schedule_done`) before dispatching, so of several replicas on one
//!   PostgreSQL exactly one sends each job. The next slot is the first after *now*: a
//!   control plane that was down over several slots runs the project once, not once a
//!   missed slot.
//! - **Fairness.** At most `schedules.max_queued_per_agent` refresh jobs wait at one agent
//!   (or pool); a slot with more goes out over several ticks (`schedule_done` counts what
//!   is out), so interactive jobs never queue behind a wall of refreshes, and no job of the
//!   slot is lost.
//! - **Refusals move on.** A project whose owner is disabled or lost a connection is not
//!   run: the refusal is audited and the schedule moves to its next slot.
//! - Every run is audited with actor `schedule`; time comes from the injected [`Clock`]
//!   (`run_due(now)` is what tests call with a manual clock).
//!
//! [`Clock`]: crate::clock::Clock

mod spec;
#[cfg(test)]
pub(crate) mod tests;

use std::collections::HashMap;
use std::time::Duration;

pub use spec::{
    check_customer, describe, parse_cron, parse_timezone, Schedule, MAX_CUSTOMER_LEN, MAX_SCHEDULE_CUSTOMERS,
};

use super::projects::{parse_queries, ProjectQuery, RunBy};
use super::App;
use crate::store::access::{AccessStore, AuditEvent, ProjectRecord, ScheduleClaim, ScheduleState};
use crate::store::StoreError;

/// The actor (and credential) that audit records of scheduled runs name.
pub const ACTOR: &str = "schedule";
/// Most due projects looked at in one tick (the rest come on the next, at once).
const DUE_PER_TICK: u32 = 100;
/// The longest the loop sleeps, so a schedule set through another replica is seen soon.
const MAX_SLEEP_SECS: i64 = 30;
/// How soon the loop looks again when it held jobs back for an agent's share.
const DEFERRED_SLEEP_SECS: i64 = 5;

/// What one tick did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tick {
    /// Jobs dispatched.
    pub dispatched: usize,
    /// Projects refused (owner disabled or without access, or a broken schedule).
    pub refused: usize,
    /// Whether some due work was held back for later ticks (an agent's share was full).
    pub deferred: bool,
}

/// One job of a slot: a query, and the customer it runs for (`None`: the query takes
/// no customer id, and runs once for everyone).
type Item = (usize, Option<String>);

/// The jobs of one slot, in a fixed order: the queries for everyone first, then each
/// customer's queries.
fn items(queries: &[ProjectQuery], customers: &[String]) -> Vec<Item> {
    let mut out: Vec<Item> =
        queries.iter().enumerate().filter(|(_, q)| q.customer_param.is_none()).map(|(i, _)| (i, None)).collect();
    for c in customers {
        out.extend(
            queries.iter().enumerate().filter(|(_, q)| q.customer_param.is_some()).map(|(i, _)| (i, Some(c.clone()))),
        );
    }
    out
}

impl App {
    /// The stored form of `s` as set at `now`: due at its first run.
    pub fn schedule_state(&self, s: &Schedule, first_run: Option<i64>) -> Result<ScheduleState, serde_json::Error> {
        Ok(ScheduleState { json: serde_json::to_string(s)?, next_run_at: first_run, done: 0 })
    }

    /// Runs what is due at `now`: for each due project (longest due first), dispatches
    /// the slot's jobs that its agents have room for, claiming them first.
    pub async fn run_due(&self, now: i64) -> Result<Tick, StoreError> {
        let due = self.store.due_projects(now, DUE_PER_TICK).await?;
        let mut tick = Tick { deferred: due.len() >= DUE_PER_TICK as usize, ..Tick::default() };
        // Room left per agent (or pool) this tick.
        let mut room: HashMap<String, i64> = HashMap::new();
        for p in due {
            self.run_slot(&p, now, &mut room, &mut tick).await?;
        }
        Ok(tick)
    }

    async fn run_slot(
        &self,
        p: &ProjectRecord,
        now: i64,
        room: &mut HashMap<String, i64>,
        tick: &mut Tick,
    ) -> Result<(), StoreError> {
        let Some(state) = &p.schedule else { return Ok(()) };
        let Some(due) = state.next_run_at else { return Ok(()) };
        let parsed = serde_json::from_str::<Schedule>(&state.json)
            .map_err(|e| format!("stored schedule: {e}"))
            .and_then(|s| s.parsed().map(|x| (s, x)).map_err(|e| e.message));
        let queries = parse_queries(&p.queries_json).map_err(|e| e.message);
        let (schedule, parsed, queries) = match (parsed, queries) {
            (Ok((s, x)), Ok(q)) => (s, x, q),
            (Err(reason), _) | (_, Err(reason)) => {
                // Nothing sensible to run: stop the schedule rather than retry every tick.
                let claim = self.claim(p, state.done, due, None, 0);
                if self.store.claim_schedule(claim).await? {
                    tick.refused += 1;
                    self.audit_run(p, "failed", serde_json::json!({ "slot": due, "reason": reason })).await;
                }
                return Ok(());
            }
        };
        let next = parsed.next_after(now);
        let work = items(&queries, &schedule.customers);
        let start = usize::try_from(state.done).unwrap_or(0).min(work.len());
        // The owner's rights, checked now; refused: audited, and on to the next slot.
        let owner = match self.project_runner(p, &queries, true).await {
            Ok(o) => o,
            Err(e) => {
                if self.store.claim_schedule(self.claim(p, state.done, due, next, 0)).await? {
                    tick.refused += 1;
                    let detail = serde_json::json!({ "slot": due, "next_run_at": next, "reason": e.message });
                    self.audit_run(p, "denied", detail).await;
                }
                return Ok(());
            }
        };
        // As much of the slot as the agents have room for, in order; the share held until
        // those are queued, as viewers' runs hold it.
        let _share = self.refresh_share.lock().await;
        let cap = i64::from(self.cfg.schedules.max_queued_per_agent);
        let mut end = start;
        for (i, _) in &work[start..] {
            let agent = &queries[*i].agent;
            let left = match room.get_mut(agent) {
                Some(left) => left,
                None => {
                    let pool = outpost_protocol::job::pool_of(agent).map(str::to_owned);
                    let queued = self.store.queued_refresh_jobs(agent.clone(), pool).await?;
                    room.entry(agent.clone()).or_insert(cap - queued)
                }
            };
            if *left <= 0 {
                break;
            }
            *left -= 1;
            end += 1;
        }
        if end == start && start < work.len() {
            tick.deferred = true;
            return Ok(());
        }
        let finished = end == work.len();
        let claim = if finished {
            self.claim(p, state.done, due, next, 0)
        } else {
            self.claim(p, state.done, due, Some(due), i64::try_from(end).unwrap_or(i64::MAX))
        };
        if !self.store.claim_schedule(claim).await? {
            return Ok(()); // another replica took this part of the slot
        }
        tick.deferred |= !finished;
        let by = RunBy { user_id: owner.id.clone(), user: owner.name.clone(), via: ACTOR.into() };
        // Scheduled runs use every parameter's default; a choice filled by a query without
        // one, its first current choice, as the dashboard shows it.
        let filters = match super::project_choices::run_filters(self, p, None).await {
            Ok(f) => f,
            Err(e) => {
                tick.refused += 1;
                let detail = serde_json::json!({ "slot": due, "reason": e.message });
                self.audit_run(p, "failed", detail).await;
                return Ok(());
            }
        };
        let mut jobs = Vec::new();
        let mut failed = Vec::new();
        for (i, customer) in &work[start..end] {
            match self.dispatch_project_query(p, *i, &queries[*i], customer.as_deref(), &filters, &by, true).await {
                Ok(id) => jobs.push(serde_json::json!({ "query": i, "customer": customer, "job": id })),
                Err(e) => failed.push(serde_json::json!({ "query": i, "customer": customer, "error": e.message })),
            }
        }
        tick.dispatched += jobs.len();
        let detail = serde_json::json!({
            "slot": due, "jobs": jobs, "failed": failed,
            "remaining": work.len() - end, "next_run_at": if finished { next } else { Some(due) },
        });
        self.audit_run(p, if failed.is_empty() { "ok" } else { "failed" }, detail).await;
        Ok(())
    }

    fn claim(&self, p: &ProjectRecord, done: i64, due: i64, next_run_at: Option<i64>, new_done: i64) -> ScheduleClaim {
        ScheduleClaim { project_id: p.id.clone(), due, done, next_run_at, new_done }
    }

    async fn audit_run(&self, p: &ProjectRecord, outcome: &str, detail: serde_json::Value) {
        self.record_audit(AuditEvent {
            seq: 0,
            at: self.clock.now(),
            actor: ACTOR.into(),
            credential: ACTOR.into(),
            action: "projects.run".into(),
            target: Some(p.id.clone()),
            outcome: outcome.into(),
            status: 0,
            remote: None,
            detail: Some(detail),
        })
        .await;
    }

    /// Runs due schedules until shutdown, waking at the next due time (at most every
    /// 30 s, so a schedule set through another replica is seen; every 5 s while jobs are
    /// held back for an agent's share).
    pub async fn schedule_loop(&self) {
        loop {
            let wait = match self.run_due(self.clock.now()).await {
                Ok(t) if t.deferred => DEFERRED_SLEEP_SECS,
                Ok(_) => match self.store.next_schedule_at().await {
                    Ok(Some(at)) => (at - self.clock.now()).clamp(1, MAX_SLEEP_SECS),
                    Ok(None) => MAX_SLEEP_SECS,
                    Err(e) => {
                        tracing::error!(error = %e, "Could not read the next schedule.");
                        MAX_SLEEP_SECS
                    }
                },
                Err(e) => {
                    tracing::error!(error = %e, "Could not run due schedules.");
                    MAX_SLEEP_SECS
                }
            };
            let wait = Duration::from_secs(u64::try_from(wait).unwrap_or(1));
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.shutdown.cancelled() => return,
            }
        }
    }
}
