//! Job dispatch: a request is checked (agent or pool, connection, shape), signed with
//! the active key, sealed, queued, and its agent woken. Authorisation is the caller's.

use outpost_protocol::ids::{new_job_id, new_nonce};
use outpost_protocol::job::validate_name;
use outpost_protocol::{sign_job, CacheSpec, JobSpec, Param, PROTOCOL_VERSION};
use serde::Deserialize;

use super::App;
use crate::store::{JobOrigin, NewJob, Store, StoreError};

/// Body of `POST /v1/jobs`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DispatchRequest {
    /// Target agent name.
    pub agent: String,
    /// Connection name on that agent.
    pub connection: String,
    /// SQL text.
    pub sql: String,
    /// Typed parameters.
    #[serde(default)]
    pub params: Vec<Param>,
    /// Render spec (parsed by [`crate::http::parse_render`] for field-precise errors).
    pub render: serde_json::Value,
    /// Cache instructions.
    #[serde(default)]
    pub cache: CacheSpec,
    /// Statement timeout asked for, seconds; the agent's own timeout caps it.
    #[serde(default)]
    pub timeout_secs: Option<u32>,
}

impl App {
    /// Validates, signs and queues a job, then wakes its agent. Returns the job id.
    /// Authorisation is the caller's: this signs whatever it is given.
    pub async fn dispatch(
        &self,
        req: DispatchRequest,
        origin: JobOrigin,
        requester: outpost_protocol::Requester,
        reveal_connections: bool,
    ) -> Result<(String, i64), crate::http::ApiError> {
        let render = crate::http::parse_render(req.render.clone())?;
        self.dispatch_spec(req, render, origin, requester, reveal_connections).await
    }

    /// [`dispatch`](Self::dispatch) with the render spec already parsed (`req.render` is
    /// ignored): how the control plane signs the jobs it makes itself, such as the
    /// schema browser's `catalog` jobs, which API clients cannot ask for.
    pub async fn dispatch_spec(
        &self,
        req: DispatchRequest,
        render: outpost_protocol::RenderSpec,
        origin: JobOrigin,
        requester: outpost_protocol::Requester,
        reveal_connections: bool,
    ) -> Result<(String, i64), crate::http::ApiError> {
        use crate::http::ApiError;
        outpost_protocol::job::validate_audience(&req.agent).map_err(|e| ApiError::bad_field("agent", e))?;
        validate_name(&req.connection).map_err(|e| ApiError::bad_field("connection", e))?;
        let pool = outpost_protocol::job::pool_of(&req.agent).map(str::to_owned);
        let targets = match &pool {
            // A pool exists while it has a member that is not revoked.
            Some(p) => {
                let live: Vec<_> =
                    self.store.pool_members(p.clone()).await?.into_iter().filter(|a| a.revoked_at.is_none()).collect();
                if live.is_empty() {
                    return Err(ApiError::bad_field("agent", format!("no enrolled agent is in pool {p:?}")));
                }
                live
            }
            None => match self.store.agent(req.agent.clone()).await? {
                Some(a) => vec![a],
                None => {
                    return Err(ApiError::bad_field("agent", format!("no enrolled agent is named {:?}", req.agent)));
                }
            },
        };
        known_connection(&targets, &req.agent, &req.connection, reveal_connections)?;
        let now = self.clock.now();
        let ttl = i64::try_from(self.cfg.jobs.ttl_secs).unwrap_or(300);
        let spec = JobSpec {
            version: PROTOCOL_VERSION,
            job_id: new_job_id(),
            audience: req.agent.clone(),
            issued_at: now,
            expires_at: now + ttl,
            nonce: new_nonce(),
            connection: req.connection.clone(),
            sql: req.sql,
            params: req.params,
            render,
            cache: req.cache,
            timeout_secs: req.timeout_secs,
            requester: Some(requester),
        };
        spec.check_shape().map_err(|m| {
            let (field, msg) = m.split_once(": ").unwrap_or(("job", m.as_str()));
            ApiError::bad_field(field, msg)
        })?;
        // The key ring may change under us (the CLI rotates keys while we serve): sign with
        // the key that signed the last job (the store refuses a job unless its key is the
        // active one, so a rotation is learnt at the next insert, at no read per job), or
        // else the key the store calls active; sign again when the insert is refused.
        let mut attempt = 0;
        let envelope = loop {
            let key_id = match self.signing_keys.active() {
                Some(id) => id,
                None => self.store.active_signing_key().await?.ok_or_else(|| {
                    ApiError::internal("no active job-signing key; run `outpost-control-plane signing-key rotate`")
                })?,
            };
            let key = self.signing_keys.get(&self.cfg.data_dir, &key_id).map_err(ApiError::internal)?;
            let envelope = sign_job(&spec, &key);
            let envelope_json = serde_json::to_string(&envelope).map_err(ApiError::internal)?;
            // The SQL, parameters and render spec are sealed before the store sees them.
            let envelope_json = self.results.seal_envelope(&spec.job_id, &envelope_json);
            let job = NewJob {
                id: spec.job_id.clone(),
                // A pool's job has no agent until a member leases it.
                agent: if pool.is_some() { String::new() } else { req.agent.clone() },
                pool: pool.clone(),
                connection: req.connection.clone(),
                envelope_json,
                key_id: key_id.clone(),
                created_at: now,
                expires_at: spec.expires_at,
                origin: origin.clone(),
            };
            match self.store.insert_job(job).await {
                Ok(()) => {
                    self.signing_keys.set_active(&key_id);
                    break envelope;
                }
                // A stale idea of the active key, then at most one race with the CLI.
                Err(StoreError::KeyRetired { .. }) if attempt < 2 => {
                    self.signing_keys.forget(&key_id);
                    attempt += 1;
                }
                Err(e) => return Err(e.into()),
            }
        };
        self.hub.wake_agent(&req.agent);
        tracing::info!(job_id = %spec.job_id, agent_id = %req.agent, key_id = %envelope.key_id, "Job signed and queued.");
        Ok((spec.job_id, spec.expires_at))
    }
}

/// Refuses a job for a connection that the addressed agent (or no member of the pool)
/// has, by the connection names they last reported (names only, never targets); the
/// names are listed only when `reveal` (an admin). An agent that has not reported yet is
/// given the benefit of the doubt: it fails the job itself.
fn known_connection(
    targets: &[crate::store::AgentRecord],
    agent: &str,
    connection: &str,
    reveal: bool,
) -> Result<(), crate::http::ApiError> {
    let reported: Vec<&crate::store::AgentRecord> = targets.iter().filter(|a| a.version.is_some()).collect();
    if reported.len() < targets.len() || reported.iter().any(|a| a.connections.iter().any(|c| c == connection)) {
        return Ok(());
    }
    let mut names: Vec<&str> = reported.iter().flat_map(|a| a.connections.iter().map(String::as_str)).collect();
    names.sort_unstable();
    names.dedup();
    let known = match (reveal, names.is_empty()) {
        (false, _) => "those shared with you are listed by GET /v1/agents".to_owned(),
        (true, true) => "its connections, as last reported: none".to_owned(),
        (true, false) => format!("its connections, as last reported: {}", names.join(", ")),
    };
    Err(crate::http::ApiError::bad_field("connection", format!("{agent} has no connection {connection:?} ({known})")))
}
