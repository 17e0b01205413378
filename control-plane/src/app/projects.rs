//! Running a project: every query dispatched with its **owner's** data access, checked
//! at run time (not when it was saved). The Refresh button (`POST /v1/projects/{id}/run`)
//! and the scheduler ([`super::schedules`]) both run projects through here.

use std::collections::BTreeMap;

use http::StatusCode;
use outpost_protocol::{CacheSpec, Param, Requester};
use serde::{Deserialize, Serialize};

use super::project_params::{self, Filters};
use super::{App, DispatchRequest};
use crate::auth::access::Role;
use crate::http::ApiError;
use crate::store::access::{AccessStore, FilterSet, ProjectRecord, UserRecord};
use crate::store::{JobOrigin, StoreError};

/// One saved query.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectQuery {
    /// Display name.
    pub name: String,
    /// Agent.
    pub agent: String,
    /// Connection on that agent.
    pub connection: String,
    /// SQL text.
    pub sql: String,
    /// Typed parameters.
    #[serde(default)]
    pub params: Vec<Param>,
    /// Render spec.
    pub render: serde_json::Value,
    /// Cache instructions.
    #[serde(default)]
    pub cache: CacheSpec,
    /// Statement timeout asked for, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u32>,
    /// 1-based position of the parameter that receives the end customer id when the
    /// project runs for a customer (e.g. 1 for `$1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_param: Option<u16>,
    /// The project's parameters this query binds, by 1-based position (`{"2": "region",
    /// "3": "period.from"}`); a position replaces or extends `params` like `customer_param`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub bind: BTreeMap<String, String>,
}

/// A stored project's queries.
pub fn parse_queries(json_text: &str) -> Result<Vec<ProjectQuery>, ApiError> {
    serde_json::from_str(json_text).map_err(|e| ApiError::internal(format!("stored project queries: {e}")))
}

/// Most queries in one project.
pub const MAX_QUERIES: usize = 50;

/// Who runs a project: recorded as the jobs' owner and signed into them as requester.
#[derive(Debug, Clone)]
pub struct RunBy {
    /// User id (the jobs' owner).
    pub user_id: String,
    /// User name.
    pub user: String,
    /// How: `session`, `token:ID`, or `schedule`.
    pub via: String,
}

fn forbidden(m: String) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "forbidden", m)
}

impl App {
    /// Whether a user of `role` may use `agent`/`connection`: admins every connection,
    /// everyone else those shared with them or their groups.
    pub async fn may_use_connection(
        &self,
        user_id: &str,
        role: Role,
        agent: &str,
        connection: &str,
    ) -> Result<bool, StoreError> {
        if role == Role::Admin {
            return Ok(true);
        }
        let shared = self.store.shared_connections(user_id.to_owned()).await?;
        Ok(shared.iter().any(|(a, c)| a == agent && c == connection))
    }

    /// The project's owner, if they may run it now: enabled, and still allowed every
    /// connection its queries use. Agent and connection are named only when `logic`
    /// (the caller may read the queries).
    pub async fn project_runner(
        &self,
        p: &ProjectRecord,
        queries: &[ProjectQuery],
        logic: bool,
    ) -> Result<UserRecord, ApiError> {
        let owner =
            self.store.user_by_id(p.owner_id.clone()).await?.filter(|u| u.disabled_at.is_none()).ok_or_else(|| {
                forbidden("the project's owner is disabled; an admin must take the project over".into())
            })?;
        for (i, q) in queries.iter().enumerate() {
            if !self.may_use_connection(&owner.id, owner.role, &q.agent, &q.connection).await? {
                return Err(if logic {
                    forbidden(format!("the project's owner no longer has access to {}/{}", q.agent, q.connection))
                } else {
                    forbidden(format!("the project's owner no longer has access to the data of query {i}"))
                });
            }
        }
        Ok(owner)
    }

    /// Dispatches query `i` of project `p` (for `customer`, when the query takes one) on
    /// behalf of `by`, with the run's `filters` in the positions it binds. The owner must
    /// have been checked ([`project_runner`](Self::project_runner)).
    #[allow(clippy::too_many_arguments)]
    pub async fn dispatch_project_query(
        &self,
        p: &ProjectRecord,
        i: usize,
        q: &ProjectQuery,
        customer: Option<&str>,
        filters: &Filters,
        by: &RunBy,
        logic: bool,
    ) -> Result<String, ApiError> {
        // A query that does not take the customer id has one result for everyone.
        let customer = q.customer_param.and(customer).map(str::to_owned);
        let parameters = project_params::parse_stored(&p.parameters_json);
        let mut params = project_params::bind_params(q.params.clone(), &q.bind, &parameters, filters)?;
        if let (Some(n), Some(c)) = (q.customer_param, &customer) {
            let at = usize::from(n).saturating_sub(1);
            if at < params.len() {
                params[at] = Param::Text(c.clone());
            } else {
                params.push(Param::Text(c.clone()));
            }
        }
        let req = DispatchRequest {
            agent: q.agent.clone(),
            connection: q.connection.clone(),
            sql: q.sql.clone(),
            params,
            render: q.render.clone(),
            cache: q.cache,
            timeout_secs: q.timeout_secs,
        };
        let bound = project_params::bound_values(&q.bind, filters);
        if let Some((key, values_json)) = &bound {
            // Kept beside the key its jobs record, so a job's page can say the values.
            let defaults = project_params::resolve(&parameters, None, self.today()).unwrap_or_default();
            let was_default = project_params::filters_key(&q.bind, &defaults).as_ref() == Some(key);
            let set = FilterSet {
                project_id: p.id.clone(),
                filters: key.clone(),
                values_json: values_json.clone(),
                was_default,
                at: self.clock.now(),
            };
            self.store.remember_filter_set(set).await?;
        }
        let origin = JobOrigin {
            owner: Some(by.user_id.clone()),
            project_id: Some(p.id.clone()),
            query_index: i64::try_from(i).ok(),
            customer,
            filters: bound.map(|(key, _)| key),
        };
        let requester = Requester {
            user_id: by.user_id.clone(),
            user: by.user.clone(),
            via: by.via.clone(),
            project: origin.project_id.clone(),
            query: u32::try_from(i).ok(),
            customer: origin.customer.clone(),
        };
        let (job_id, _) = self.dispatch(req, origin, requester, false).await.map_err(|e| {
            if logic || e.status != StatusCode::BAD_REQUEST {
                e
            } else {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    format!("query {i} of this project cannot run now (its agent or connection is not there); ask its owner"),
                )
            }
        })?;
        Ok(job_id)
    }

    /// Runs every query of `p` for `customer` with `filters` on behalf of `by`, with the
    /// owner's data access; returns (query index, job id) of each job.
    pub async fn run_project(
        &self,
        p: &ProjectRecord,
        queries: &[ProjectQuery],
        customer: Option<&str>,
        filters: &Filters,
        by: &RunBy,
        logic: bool,
    ) -> Result<Vec<(usize, String)>, ApiError> {
        self.project_runner(p, queries, logic).await?;
        // All at once: the store commits their inserts together (one group commit on
        // SQLite rather than one per tile), and the agent starts on the first while the
        // others are queued. On an error the jobs not yet queued are not.
        let jobs = queries.iter().enumerate().map(|(i, q)| async move {
            Ok::<_, ApiError>((i, self.dispatch_project_query(p, i, q, customer, filters, by, logic).await?))
        });
        futures_util::future::try_join_all(jobs).await
    }

    /// Today's date (UTC) on the control plane's clock: what relative date defaults read.
    pub fn today(&self) -> chrono::NaiveDate {
        chrono::DateTime::from_timestamp(self.clock.now(), 0).unwrap_or_default().date_naive()
    }
}
