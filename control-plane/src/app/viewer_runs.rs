//! Runs an embed's viewer causes by changing a filter their token lets them change
//! (`POST /v1/embed/run`): each query of the dashboard runs for the token's customer with
//! the new values, as the project's owner (with the owner's data access, checked now), but
//! only where it must and as far as the agent has room:
//!
//! - a query with a run for these values still going is left to it;
//! - a query whose newest run for these values finished less than
//!   `embed.viewer_refresh_secs` ago is not run again (a failure included, so a viewer
//!   reloading cannot hammer a failing query);
//! - the runs wait in the agent's (or pool's) share of project refreshes, the one
//!   schedules use (`schedules.max_queued_per_agent`): past it, a query is said to be
//!   busy and does not run. However many viewers change however many filters, at most that
//!   many refreshes wait at one agent, and interactive jobs are never crowded out.

use std::collections::HashMap;

use super::project_jobs;
use super::project_params::{self, Filters};
use super::project_tiles;
use super::projects::{parse_queries, RunBy};
use super::App;
use crate::http::ApiError;
use crate::store::access::{AccessStore, ProjectRecord};
use crate::store::{JobState, Store};

/// How the runs of a viewer's filter change say who asked (`Requester::via`).
pub const VIA: &str = "embed";

/// What became of one query of a viewer's run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ViewerRun {
    /// Queued now: this job.
    Queued(String),
    /// A run for these values is still going: this job.
    Running(String),
    /// A run for these values finished recently enough: this job.
    Recent(String),
    /// The agent's share of refreshes is full; not run.
    Busy,
}

impl ViewerRun {
    /// As the API says it.
    pub fn to_json(&self, index: usize) -> serde_json::Value {
        let (outcome, job) = match self {
            ViewerRun::Queued(j) => ("queued", Some(j)),
            ViewerRun::Running(j) => ("running", Some(j)),
            ViewerRun::Recent(j) => ("recent", Some(j)),
            ViewerRun::Busy => ("busy", None),
        };
        serde_json::json!({ "index": index, "outcome": outcome, "job": job })
    }
}

impl App {
    /// Runs what must run of project `p` for `customer` with `filters` (see the module).
    pub async fn run_for_viewer(
        &self,
        p: &ProjectRecord,
        customer: &str,
        filters: &Filters,
    ) -> Result<Vec<ViewerRun>, ApiError> {
        let queries = parse_queries(&p.queries_json)?;
        // The owner's rights, now; said without naming agents or connections.
        let owner = self.project_runner(p, &queries, false).await?;
        let by = RunBy { user_id: owner.id, user: owner.name, via: VIA.into() };
        let fresh = i64::try_from(self.cfg.embed.viewer_refresh_secs).unwrap_or(i64::MAX);
        let cap = i64::from(self.cfg.schedules.max_queued_per_agent);
        // From the first look at what has run until the last job is queued: concurrent
        // viewers neither see the same room nor each start the same run.
        let _share = self.refresh_share.lock().await;
        let now = self.clock.now();
        let mut room: HashMap<String, i64> = HashMap::new();
        let mut out = Vec::with_capacity(queries.len());
        for (i, q) in queries.iter().enumerate() {
            let for_customer = q.customer_param.map(|_| customer.to_owned());
            let key = project_params::filters_key(&q.bind, filters);
            let since = project_tiles::since(&p.tiles_json, i);
            let idx = i64::try_from(i).unwrap_or(i64::MAX);
            let newest = project_jobs::latest(self, &p.id, (idx, q), (for_customer, key), false, since).await?;
            if let Some(id) = newest {
                if let Some(rec) = self.store.job(id.clone(), now, false).await? {
                    let ended = rec.finished_at.unwrap_or(rec.created_at);
                    match rec.state {
                        JobState::Queued | JobState::Leased => {
                            out.push(ViewerRun::Running(id));
                            continue;
                        }
                        _ if now.saturating_sub(ended) < fresh => {
                            out.push(ViewerRun::Recent(id));
                            continue;
                        }
                        _ => {}
                    }
                }
            }
            let left = match room.get_mut(&q.agent) {
                Some(left) => left,
                None => {
                    let pool = outpost_protocol::job::pool_of(&q.agent).map(str::to_owned);
                    let queued = self.store.queued_refresh_jobs(q.agent.clone(), pool).await?;
                    room.entry(q.agent.clone()).or_insert(cap - queued)
                }
            };
            if *left <= 0 {
                out.push(ViewerRun::Busy);
                continue;
            }
            *left -= 1;
            let id = self.dispatch_project_query(p, i, q, Some(customer), filters, &by, false).await?;
            out.push(ViewerRun::Queued(id));
        }
        Ok(out)
    }
}

#[cfg(test)]
#[path = "viewer_runs_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "viewer_runs_attacks.rs"]
mod attacks;
