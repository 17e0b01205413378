//! The control plane's own operations on agents, jobs and records: enrolment tokens,
//! revocation, cancellation, retention and the cloud audit log.

use outpost_protocol::encoding::{hex, sha256_hex};
use outpost_protocol::enrol::EnrolmentToken;
use outpost_protocol::ids::random_bytes;
use outpost_protocol::job::validate_name;

use super::{App, AppError};
use crate::auth::access::{Caller, ProjectAccess};
use crate::http::ApiError;
use crate::store::access::AccessStore;
use crate::store::access::ProjectRecord;
use crate::store::{EnrolTokenRecord, Store, StoreError};

impl App {
    /// Creates an enrolment token bound to `agent` (joining `pool`, if given), valid for
    /// `ttl_secs`. Returns the token (shown once), its public id and its expiry.
    pub async fn create_enrolment_token(
        &self,
        agent: &str,
        pool: Option<&str>,
        ttl_secs: u64,
    ) -> Result<(String, String, i64), AppError> {
        validate_name(agent).map_err(|e| AppError::Usage(format!("agent name {agent:?}: {e}")))?;
        if let Some(p) = pool {
            validate_name(p).map_err(|e| AppError::Usage(format!("pool name {p:?}: {e}")))?;
        }
        if !(60..=7 * 86_400).contains(&ttl_secs) {
            return Err(AppError::Usage("ttl: must be between 1 minute and 7 days".into()));
        }
        let now = self.clock.now();
        let expires_at = now + i64::try_from(ttl_secs).unwrap_or(3600);
        let token = EnrolmentToken {
            addr: self.cfg.advertised_agent_address(&self.meta.hostname),
            server_name: self.meta.hostname.clone(),
            agent: agent.to_owned(),
            id: hex(&random_bytes::<8>()),
            secret: hex(&random_bytes::<32>()),
            ca_sha256: self.ca.pin(),
        };
        self.store
            .create_enrol_token(EnrolTokenRecord {
                id: token.id.clone(),
                agent: agent.to_owned(),
                pool: pool.map(str::to_owned),
                secret_sha256: sha256_hex(token.secret.as_bytes()),
                created_at: now,
                expires_at,
            })
            .await?;
        tracing::info!(token_id = %token.id, agent_id = %agent, pool = pool.unwrap_or(""), expires_at, "Enrolment token created.");
        Ok((token.encode(), token.id.clone(), expires_at))
    }

    /// Revokes `name`: its queued jobs fail, its connections are cut, and every later
    /// request with its certificate is refused. Returns the failed job ids, or `None`
    /// for an unknown agent.
    pub async fn revoke_agent(&self, name: &str) -> Result<Option<Vec<String>>, StoreError> {
        let pool = self.store.agent(name.to_owned()).await?.and_then(|a| a.pool);
        let failed = self.store.revoke_agent(name.to_owned(), self.clock.now()).await?;
        if let Some(p) = pool {
            // The pool's jobs it held went back to the pool: another member takes them now.
            self.hub.wake_agent(&format!("{}{p}", outpost_protocol::job::POOL_PREFIX));
        }
        if let Some(ids) = &failed {
            for id in ids {
                self.hub.job_done(id);
            }
            self.hub.revoke(name);
            tracing::warn!(agent_id = %name, failed_jobs = ids.len(), "Agent revoked.");
        }
        Ok(failed)
    }

    /// Appends `e` to the cloud audit log; a failure to write it is logged (the action it
    /// records has happened either way).
    pub async fn record_audit(&self, e: crate::store::access::AuditEvent) {
        let action = e.action.clone();
        if let Err(err) = self.store.add_audit(e).await {
            tracing::error!(error = %err, action = %action, "Could not write the audit record.");
        }
    }

    /// Records something the control plane itself did (actor `control-plane`), e.g. a job
    /// failed as `corrupt_job`.
    pub async fn audit_system(&self, action: &str, target: &str, detail: serde_json::Value) {
        self.record_audit(crate::store::access::AuditEvent {
            seq: 0,
            at: self.clock.now(),
            actor: "control-plane".into(),
            credential: "none".into(),
            action: action.into(),
            target: Some(target.into()),
            outcome: "failed".into(),
            status: 0,
            remote: None,
            detail: Some(detail),
        })
        .await;
    }

    /// Asks to stop a job: a queued one ends at once; a leased one's agent is woken to
    /// hear of it at its next poll answer.
    pub async fn cancel_job(&self, id: &str) -> Result<crate::store::CancelOutcome, StoreError> {
        use crate::store::CancelOutcome;
        let outcome = self.store.cancel_job(id.to_owned(), self.clock.now()).await?;
        match &outcome {
            CancelOutcome::Cancelled => {
                tracing::info!(job_id = %id, "Job cancelled before delivery.");
                self.hub.job_done(id);
            }
            CancelOutcome::Requested { agent } => {
                tracing::info!(job_id = %id, agent_id = %agent, "Cancel asked; telling the agent.");
                self.hub.wake_agent(agent);
            }
            CancelOutcome::AlreadyFinal(_) | CancelOutcome::NotFound => {}
        }
        Ok(outcome)
    }

    /// Deletes jobs and results that ended more than `older_than_secs` ago (and expired
    /// sessions), except the newest successful result of each project query while it is
    /// younger than `results.keep_latest_secs` (or `older_than_secs`, if longer), and the
    /// results of filter sets beyond `results.keep_variants_per_tile` per tile; returns
    /// how many jobs went.
    pub async fn purge_results(&self, older_than_secs: u64) -> Result<usize, StoreError> {
        let now = self.clock.now();
        let ago = |secs: u64| now.saturating_sub(i64::try_from(secs).unwrap_or(i64::MAX));
        let keep_for = older_than_secs.max(self.cfg.results.keep_latest_secs);
        let n = self.store.purge(ago(older_than_secs), ago(keep_for), now).await?;
        if n > 0 {
            tracing::info!(jobs = n, "Deleted jobs and results past retention.");
        }
        let keep = self.cfg.results.keep_variants_per_tile;
        let surplus = self.store.drop_surplus_filter_sets(keep, ago(older_than_secs), now).await?;
        if surplus > 0 {
            tracing::info!(
                jobs = surplus,
                keep,
                "Deleted the results of filter sets beyond results.keep_variants_per_tile."
            );
        }
        Ok(n + surplus)
    }

    /// Deletes results past retention until shutdown, checking at a quarter of the
    /// retention (between 1 s and 5 min) so nothing outlives it by much.
    pub async fn retention_loop(&self) {
        let retention = self.cfg.results.retention_secs;
        let every = std::time::Duration::from_secs((retention / 4).clamp(1, 300));
        loop {
            if let Err(e) = self.purge_results(retention).await {
                tracing::error!(error = %e, "Could not delete results past retention.");
            }
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                () = self.shutdown.cancelled() => return,
            }
        }
    }

    /// How `caller` relates to project `id`, with the project; 404 when it does not exist.
    pub async fn project_access(&self, caller: &Caller, id: &str) -> Result<(ProjectRecord, ProjectAccess), ApiError> {
        let p = self
            .store
            .project(id.to_owned())
            .await?
            .ok_or_else(|| ApiError::not_found(format!("no project {id:?}")))?;
        let access = if caller.is_admin() {
            ProjectAccess::Admin
        } else if p.owner_id == caller.user_id {
            ProjectAccess::Owner
        } else {
            match self.store.project_grant(p.id.clone(), caller.user_id.clone()).await? {
                Some(g) => ProjectAccess::Granted(g),
                None => ProjectAccess::None,
            }
        };
        Ok((p, access))
    }
}
