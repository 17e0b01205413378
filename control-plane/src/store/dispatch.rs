//! Which function answers each call of [`Store`](crate::store::Store) and
//! [`AccessStore`](crate::store::access::AccessStore): one table per trait, shared by every
//! implementation. A backend answers each call in its topic module of the table's name
//! (`agents`, `jobs` and `keys`; `users`, `credentials`, `projects`, `schedules`,
//! `audit` and `retention`) with a function named like the method that takes the store first
//! ([`by_topic!`]); [`crate::store::backend::Backend`] forwards each call to the backend
//! in use.

/// Answers a call with the function of that topic and name, given the store first.
macro_rules! by_topic {
    ($store:ident, $topic:ident::$method:ident($($arg:ident),*)) => {
        $topic::$method($store, $($arg),*).await
    };
}

/// `impl Store for $ty`, each call answered by `$via!(self, topic::method(args))`.
macro_rules! impl_store {
    ($ty:ty, $via:ident) => {
        const _: () = {
            use outpost_protocol::ResultReport;
            use $crate::store::*;

            impl Store for $ty {
                async fn create_enrol_token(&self, t: EnrolTokenRecord) -> Result<(), StoreError> {
                    $via!(self, agents::create_enrol_token(t))
                }

                async fn outstanding_enrol_tokens(&self, now: i64) -> Result<Vec<EnrolTokenRecord>, StoreError> {
                    $via!(self, agents::outstanding_enrol_tokens(now))
                }

                async fn revoke_enrol_token(&self, id: String) -> Result<Option<EnrolTokenRecord>, StoreError> {
                    $via!(self, agents::revoke_enrol_token(id))
                }

                async fn redeem_enrol_token(
                    &self,
                    id: String,
                    secret_sha256: String,
                    agent: String,
                    now: i64,
                    cert_lifetime_secs: i64,
                ) -> Result<Result<Enrolled, RedeemError>, StoreError> {
                    $via!(self, agents::redeem_enrol_token(id, secret_sha256, agent, now, cert_lifetime_secs))
                }

                async fn agent(&self, name: String) -> Result<Option<AgentRecord>, StoreError> {
                    $via!(self, agents::agent(name))
                }

                async fn agents(&self) -> Result<Vec<AgentRecord>, StoreError> {
                    $via!(self, agents::agents())
                }

                async fn pool_members(&self, pool: String) -> Result<Vec<AgentRecord>, StoreError> {
                    $via!(self, agents::pool_members(pool))
                }

                async fn touch_agent(
                    &self,
                    agent: AgentPeer,
                    now: i64,
                    version: Option<String>,
                    connections: Option<Vec<String>>,
                ) -> Result<(), StoreError> {
                    $via!(self, agents::touch_agent(agent, now, version, connections))
                }

                async fn agent_stopped(&self, agent: AgentPeer, now: i64) -> Result<(), StoreError> {
                    $via!(self, agents::agent_stopped(agent, now))
                }

                async fn record_audit_head(
                    &self,
                    agent: AgentPeer,
                    head: StoredAuditHead,
                ) -> Result<AuditHeadOutcome, StoreError> {
                    $via!(self, agents::record_audit_head(agent, head))
                }

                async fn audit_head(&self, agent: String) -> Result<Option<StoredAuditHead>, StoreError> {
                    $via!(self, agents::audit_head(agent))
                }

                async fn job_envelope(&self, id: String) -> Result<Option<String>, StoreError> {
                    $via!(self, jobs::job_envelope(id))
                }

                async fn insert_job(&self, job: NewJob) -> Result<(), StoreError> {
                    $via!(self, jobs::insert_job(job))
                }

                async fn lease_jobs(
                    &self,
                    agent: AgentPeer,
                    now: i64,
                    lease_secs: i64,
                    max: usize,
                ) -> Result<LeaseBatch, StoreError> {
                    $via!(self, jobs::lease_jobs(agent, now, lease_secs, max))
                }

                async fn fail_corrupt_job(
                    &self,
                    id: String,
                    agent: String,
                    now: i64,
                    message: String,
                ) -> Result<bool, StoreError> {
                    $via!(self, jobs::fail_corrupt_job(id, agent, now, message))
                }

                async fn cancel_job(&self, id: String, now: i64) -> Result<CancelOutcome, StoreError> {
                    $via!(self, jobs::cancel_job(id, now))
                }

                async fn signing_keys(&self) -> Result<(Vec<SigningKeyRecord>, u64), StoreError> {
                    $via!(self, keys::signing_keys())
                }

                async fn active_signing_key(&self) -> Result<Option<String>, StoreError> {
                    $via!(self, keys::active_signing_key())
                }

                async fn commit_key_set(&self, change: KeySetChange) -> Result<usize, StoreError> {
                    $via!(self, keys::commit_key_set(change))
                }

                async fn key_sets_after(&self, after: u64, max: usize) -> Result<Vec<String>, StoreError> {
                    $via!(self, keys::key_sets_after(after, max))
                }

                async fn complete_job(
                    &self,
                    agent: AgentPeer,
                    report: ResultReport,
                    report_sha256: String,
                    sealed_body: Option<Vec<u8>>,
                    now: i64,
                ) -> Result<CompleteOutcome, StoreError> {
                    $via!(self, jobs::complete_job(agent, report, report_sha256, sealed_body, now))
                }

                async fn record_renewal(
                    &self,
                    agent: AgentPeer,
                    cert_not_after: i64,
                    now: i64,
                ) -> Result<(), StoreError> {
                    $via!(self, agents::record_renewal(agent, cert_not_after, now))
                }

                async fn revoke_agent(&self, name: String, now: i64) -> Result<Option<Vec<String>>, StoreError> {
                    $via!(self, agents::revoke_agent(name, now))
                }

                async fn jobs(&self, filter: JobFilter, limit: u32, now: i64) -> Result<Vec<JobRecord>, StoreError> {
                    $via!(self, jobs::jobs(filter, limit, now))
                }

                async fn job(&self, id: String, now: i64, with_body: bool) -> Result<Option<JobRecord>, StoreError> {
                    $via!(self, jobs::job(id, now, with_body))
                }
            }
        };
    };
}

/// `impl AccessStore for $ty`, each call answered by `$via!(self, topic::method(args))`.
macro_rules! impl_access_store {
    ($ty:ty, $via:ident) => {
        const _: () = {
            use $crate::store::access::Grant;
            use $crate::store::access::*;
            use $crate::store::{AccessRefusal, StoreError};

            impl AccessStore for $ty {
                async fn create_user(&self, u: UserRecord) -> Result<bool, StoreError> {
                    $via!(self, users::create_user(u))
                }

                async fn user_by_name(&self, name: String) -> Result<Option<UserRecord>, StoreError> {
                    $via!(self, users::user_by_name(name))
                }

                async fn oidc_user(&self, issuer: String, subject: String) -> Result<Option<UserRecord>, StoreError> {
                    $via!(self, users::oidc_user(issuer, subject))
                }

                async fn oidc_linked(&self, user_id: String, issuer: String) -> Result<bool, StoreError> {
                    $via!(self, users::oidc_linked(user_id, issuer))
                }

                async fn link_oidc(
                    &self,
                    issuer: String,
                    subject: String,
                    user_id: String,
                    now: i64,
                ) -> Result<bool, StoreError> {
                    $via!(self, users::link_oidc(issuer, subject, user_id, now))
                }

                async fn user_by_id(&self, id: String) -> Result<Option<UserRecord>, StoreError> {
                    $via!(self, users::user_by_id(id))
                }

                async fn users(&self) -> Result<Vec<UserRecord>, StoreError> {
                    $via!(self, users::users())
                }

                async fn update_user(
                    &self,
                    name: String,
                    update: UserUpdate,
                    now: i64,
                ) -> Result<Option<UserRecord>, StoreError> {
                    $via!(self, users::update_user(name, update, now))
                }

                async fn record_sign_in(&self, user_id: String, now: i64) -> Result<(), StoreError> {
                    $via!(self, users::record_sign_in(user_id, now))
                }

                async fn create_group(&self, name: String, now: i64) -> Result<bool, StoreError> {
                    $via!(self, users::create_group(name, now))
                }

                async fn delete_group(&self, name: String) -> Result<bool, StoreError> {
                    $via!(self, users::delete_group(name))
                }

                async fn groups(&self) -> Result<Vec<GroupRecord>, StoreError> {
                    $via!(self, users::groups())
                }

                async fn set_group_member(
                    &self,
                    group: String,
                    user: String,
                    member: bool,
                ) -> Result<Result<(), AccessRefusal>, StoreError> {
                    $via!(self, users::set_group_member(group, user, member))
                }

                async fn add_share(&self, s: ShareRecord) -> Result<Result<(), AccessRefusal>, StoreError> {
                    $via!(self, users::add_share(s))
                }

                async fn shares(&self) -> Result<Vec<ShareRecord>, StoreError> {
                    $via!(self, users::shares())
                }

                async fn delete_share(&self, id: String) -> Result<bool, StoreError> {
                    $via!(self, users::delete_share(id))
                }

                async fn shared_connections(&self, user_id: String) -> Result<Vec<(String, String)>, StoreError> {
                    $via!(self, users::shared_connections(user_id))
                }

                async fn create_session(&self, s: SessionRecord) -> Result<(), StoreError> {
                    $via!(self, credentials::create_session(s))
                }

                async fn session(
                    &self,
                    id_sha256: String,
                    now: i64,
                    idle_secs: i64,
                ) -> Result<Option<(SessionRecord, UserRecord)>, StoreError> {
                    $via!(self, credentials::session(id_sha256, now, idle_secs))
                }

                async fn delete_session(&self, id_sha256: String) -> Result<(), StoreError> {
                    $via!(self, credentials::delete_session(id_sha256))
                }

                async fn add_token(&self, t: ApiTokenRecord) -> Result<(), StoreError> {
                    $via!(self, credentials::add_token(t))
                }

                async fn token_auth(
                    &self,
                    token_sha256: String,
                    now: i64,
                ) -> Result<Option<(ApiTokenRecord, UserRecord)>, StoreError> {
                    $via!(self, credentials::token_auth(token_sha256, now))
                }

                async fn tokens(&self, user_id: Option<String>) -> Result<Vec<ApiTokenRecord>, StoreError> {
                    $via!(self, credentials::tokens(user_id))
                }

                async fn token(&self, id: String) -> Result<Option<ApiTokenRecord>, StoreError> {
                    $via!(self, credentials::token(id))
                }

                async fn revoke_token(&self, id: String, now: i64) -> Result<bool, StoreError> {
                    $via!(self, credentials::revoke_token(id, now))
                }

                async fn create_project(&self, p: ProjectRecord) -> Result<(), StoreError> {
                    $via!(self, projects::create_project(p))
                }

                async fn project(&self, id: String) -> Result<Option<ProjectRecord>, StoreError> {
                    $via!(self, projects::project(id))
                }

                async fn projects_for(
                    &self,
                    user_id: Option<String>,
                ) -> Result<Vec<(ProjectRecord, Option<Grant>)>, StoreError> {
                    $via!(self, projects::projects_for(user_id))
                }

                async fn project_grant(
                    &self,
                    project_id: String,
                    user_id: String,
                ) -> Result<Option<Grant>, StoreError> {
                    $via!(self, projects::project_grant(project_id, user_id))
                }

                async fn project_grants(&self, project_id: String) -> Result<Vec<(String, Grant)>, StoreError> {
                    $via!(self, projects::project_grants(project_id))
                }

                async fn update_project(
                    &self,
                    id: String,
                    name: String,
                    queries_json: String,
                    tiles_json: String,
                    parameters_json: String,
                    now: i64,
                ) -> Result<bool, StoreError> {
                    $via!(self, projects::update_project(id, name, queries_json, tiles_json, parameters_json, now))
                }

                async fn delete_project(&self, id: String) -> Result<bool, StoreError> {
                    $via!(self, projects::delete_project(id))
                }

                async fn set_project_grant(
                    &self,
                    project_id: String,
                    user: String,
                    grant: Option<Grant>,
                ) -> Result<Result<(), AccessRefusal>, StoreError> {
                    $via!(self, projects::set_project_grant(project_id, user, grant))
                }

                async fn bump_embed_epoch(&self, project_id: String) -> Result<Option<i64>, StoreError> {
                    $via!(self, projects::bump_embed_epoch(project_id))
                }

                async fn set_embed_origins(
                    &self,
                    project_id: String,
                    origins_json: String,
                ) -> Result<bool, StoreError> {
                    $via!(self, projects::set_embed_origins(project_id, origins_json))
                }

                async fn latest_project_job(
                    &self,
                    project_id: String,
                    query_index: i64,
                    customer: Option<String>,
                    filters: Option<String>,
                    succeeded_only: bool,
                ) -> Result<Option<String>, StoreError> {
                    $via!(
                        self,
                        projects::latest_project_job(project_id, query_index, customer, filters, succeeded_only)
                    )
                }

                async fn remember_filter_set(&self, set: FilterSet) -> Result<(), StoreError> {
                    $via!(self, projects::remember_filter_set(set))
                }

                async fn filter_set_values(
                    &self,
                    project_id: String,
                    filters: String,
                ) -> Result<Option<String>, StoreError> {
                    $via!(self, projects::filter_set_values(project_id, filters))
                }

                async fn set_project_schedule(
                    &self,
                    project_id: String,
                    schedule: Option<ScheduleState>,
                ) -> Result<bool, StoreError> {
                    $via!(self, schedules::set_project_schedule(project_id, schedule))
                }

                async fn due_projects(&self, now: i64, limit: u32) -> Result<Vec<ProjectRecord>, StoreError> {
                    $via!(self, schedules::due_projects(now, limit))
                }

                async fn next_schedule_at(&self) -> Result<Option<i64>, StoreError> {
                    $via!(self, schedules::next_schedule_at())
                }

                async fn claim_schedule(&self, claim: ScheduleClaim) -> Result<bool, StoreError> {
                    $via!(self, schedules::claim_schedule(claim))
                }

                async fn queued_refresh_jobs(&self, agent: String, pool: Option<String>) -> Result<i64, StoreError> {
                    $via!(self, schedules::queued_refresh_jobs(agent, pool))
                }

                async fn add_audit(&self, e: AuditEvent) -> Result<(), StoreError> {
                    $via!(self, audit::add_audit(e))
                }

                async fn audit(&self, f: AuditFilter) -> Result<Vec<AuditEvent>, StoreError> {
                    $via!(self, audit::audit(f))
                }

                async fn purge(&self, before: i64, keep_results_after: i64, now: i64) -> Result<usize, StoreError> {
                    $via!(self, retention::purge(before, keep_results_after, now))
                }

                async fn drop_surplus_filter_sets(
                    &self,
                    keep: u32,
                    before: i64,
                    now: i64,
                ) -> Result<usize, StoreError> {
                    $via!(self, retention::drop_surplus_filter_sets(keep, before, now))
                }
            }
        };
    };
}

pub(crate) use {by_topic, impl_access_store, impl_store};
