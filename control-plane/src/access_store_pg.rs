//! [`AccessStore`] on PostgreSQL (stub, being written).

use crate::access_store::*;
use crate::pg::PgStore;
use crate::store::StoreError;
use crate::access::Grant;

impl AccessStore for PgStore {
    async fn create_user(&self, u: UserRecord) -> Result<bool, StoreError> { Err(StoreError::Postgres("not built".into())) }
    async fn user_by_name(&self, name: String) -> Result<Option<UserRecord>, StoreError> { Err(StoreError::Postgres("not built".into())) }
    async fn user_by_id(&self, id: String) -> Result<Option<UserRecord>, StoreError> { Err(StoreError::Postgres("not built".into())) }
    async fn oidc_user(&self, issuer: String, subject: String,) -> Result<Option<UserRecord>, StoreError> { Err(StoreError::Postgres("not built".into())) }
    async fn oidc_linked(&self, user_id: String, issuer: String) -> Result<bool, StoreError> { Err(StoreError::Postgres("not built".into())) }
    async fn link_oidc(&self, issuer: String, subject: String, user_id: String, now: i64,) -> Result<bool, StoreError> { Err(StoreError::Postgres("not built".into())) }
    async fn users(&self) -> Result<Vec<UserRecord>, StoreError> { Err(StoreError::Postgres("not built".into())) }
    async fn update_user(&self, name: String, update: UserUpdate, now: i64,) -> Result<Option<UserRecord>, StoreError> { Err(StoreError::Postgres("not built".into())) }
    async fn record_sign_in(&self, user_id: String, now: i64) -> Result<(), StoreError> { Err(StoreError::Postgres("not built".into())) }
    async fn create_group(&self, name: String, now: i64) -> Result<bool, StoreError> { Err(StoreError::Postgres("not built".into())) }
    async fn delete_group(&self, name: String) -> Result<bool, StoreError> { Err(StoreError::Postgres("not built".into())) }
    async fn groups(&self) -> Result<Vec<GroupRecord>, StoreError> { Err(StoreError::Postgres("not built".into())) }
    async fn set_group_member(&self, group: String, user: String, member: bool,) -> Result<Result<(), String>, StoreError> { Err(StoreError::Postgres("not built".into())) }
    async fn add_share(&self, s: ShareRecord) -> Result<Result<(), String>, StoreError> { Err(StoreError::Postgres("not built".into())) }
    async fn shares(&self) -> Result<Vec<ShareRecord>, StoreError> { Err(StoreError::Postgres("not built".into())) }
    async fn delete_share(&self, id: String) -> Result<bool, StoreError> { Err(StoreError::Postgres("not built".into())) }
    async fn shared_connections(&self, user_id: String,) -> Result<Vec<(String, String)>, StoreError> { Err(StoreError::Postgres("not built".into())) }
    async fn create_session(&self, s: SessionRecord) -> Result<(), StoreError> { Err(StoreError::Postgres("not built".into())) }
    async fn session(&self, id_sha256: String, now: i64, idle_secs: i64,) -> Result<Option<(SessionRecord, UserRecord)>, StoreError> { Err(StoreError::Postgres("not built".into())) }
    async fn delete_session(&self, id_sha256: String) -> Result<(), StoreError> { Err(StoreError::Postgres("not built".into())) }
    async fn add_token(&self, t: ApiTokenRecord) -> Result<(), StoreError> { Err(StoreError::Postgres("not built".into())) }
    async fn token_auth(&self, token_sha256: String, now: i64,) -> Result<Option<(ApiTokenRecord, UserRecord)>, StoreError> { Err(StoreError::Postgres("not built".into())) }
    async fn tokens(&self, user_id: Option<String>) -> Result<Vec<ApiTokenRecord>, StoreError> { Err(StoreError::Postgres("not built".into())) }
    async fn token(&self, id: String) -> Result<Option<ApiTokenRecord>, StoreError> { Err(StoreError::Postgres("not built".into())) }
    async fn revoke_token(&self, id: String, now: i64) -> Result<bool, StoreError> { Err(StoreError::Postgres("not built".into())) }
    async fn create_project(&self, p: ProjectRecord) -> Result<(), StoreError> { Err(StoreError::Postgres("not built".into())) }
    async fn project(&self, id: String) -> Result<Option<ProjectRecord>, StoreError> { Err(StoreError::Postgres("not built".into())) }
    async fn projects_for(&self, user_id: Option<String>,) -> Result<Vec<(ProjectRecord, Option<Grant>)>, StoreError> { Err(StoreError::Postgres("not built".into())) }
    async fn project_grant(&self, project_id: String, user_id: String,) -> Result<Option<Grant>, StoreError> { Err(StoreError::Postgres("not built".into())) }
    async fn project_grants(&self, project_id: String,) -> Result<Vec<(String, Grant)>, StoreError> { Err(StoreError::Postgres("not built".into())) }
    async fn update_project(&self, id: String, name: String, queries_json: String, now: i64,) -> Result<bool, StoreError> { Err(StoreError::Postgres("not built".into())) }
    async fn delete_project(&self, id: String) -> Result<bool, StoreError> { Err(StoreError::Postgres("not built".into())) }
    async fn set_project_grant(&self, project_id: String, user: String, grant: Option<Grant>,) -> Result<Result<(), String>, StoreError> { Err(StoreError::Postgres("not built".into())) }
    async fn bump_embed_epoch(&self, project_id: String) -> Result<Option<i64>, StoreError> { Err(StoreError::Postgres("not built".into())) }
    async fn latest_project_job(&self, project_id: String, query_index: i64, customer: Option<String>,) -> Result<Option<String>, StoreError> { Err(StoreError::Postgres("not built".into())) }
    async fn add_audit(&self, e: AuditEvent) -> Result<(), StoreError> { Err(StoreError::Postgres("not built".into())) }
    async fn audit(&self, f: AuditFilter) -> Result<Vec<AuditEvent>, StoreError> { Err(StoreError::Postgres("not built".into())) }
    async fn purge(&self, before: i64, now: i64) -> Result<usize, StoreError> { Err(StoreError::Postgres("not built".into())) }
}
