//! The store contract: every scenario runs on SQLite and on a fresh PostgreSQL database
//! (`testdb::on_both_backends!`), so both backends are held to the same behaviour. The
//! fixtures are here; the scenarios by topic in [`agents`], [`jobs`] and [`pools`], and
//! what only SQLite promises in [`sqlite`].

use std::future::Future;
use std::sync::Arc;

use outpost_protocol::{ResultReport, ResultStats};

use crate::store::*;

mod agents;
mod jobs;
mod pg_indexes;
mod pools;
mod postgres;
mod sqlite;

/// An enrolled agent `edge-1` and an active signing key, in either backend.
pub(crate) async fn seed<S: Store>(store: &S) {
    store
        .create_enrol_token(EnrolTokenRecord {
            id: "t1".into(),
            agent: "edge-1".into(),
            pool: None,
            secret_sha256: "h".into(),
            created_at: 0,
            expires_at: 10_000,
        })
        .await
        .expect("token");
    store.redeem_enrol_token("t1".into(), "h".into(), "edge-1".into(), 1, 100).await.expect("db").expect("redeem");
    let key = SigningKeyRecord {
        key_id: "ed25519:test".into(),
        public_key: String::new(),
        status: "active".into(),
        created_at: 0,
        activated_at: Some(0),
        retired_at: None,
    };
    let change = KeySetChange {
        version: 1,
        statement_json: "{}".into(),
        keys: vec![key],
        resign: None,
        envelopes: None,
        now: 0,
    };
    store.commit_key_set(change).await.expect("key set");
}

pub(crate) fn peer(name: &str) -> AgentPeer {
    AgentPeer { name: name.into(), cert_issued_at: 1, pool: None, public_key: Arc::from(&[][..]) }
}

pub(crate) fn job(id: &str, expires_at: i64) -> NewJob {
    NewJob {
        id: id.into(),
        agent: "edge-1".into(),
        pool: None,
        connection: "sample".into(),
        envelope_json: "{}".into(),
        key_id: "ed25519:test".into(),
        created_at: 1000,
        expires_at,
        origin: Default::default(),
    }
}

fn report(id: &str, body: &[u8]) -> ResultReport {
    ResultReport::succeeded(id, "application/json", body, ResultStats::default())
}

/// Enrols `name` into `pool` (token redeemed at t=1).
pub(crate) async fn enrol_member<S: Store>(store: &S, name: &str, pool: &str) {
    let id = format!("t-{name}");
    store
        .create_enrol_token(EnrolTokenRecord {
            id: id.clone(),
            agent: name.into(),
            pool: Some(pool.into()),
            secret_sha256: "h".into(),
            created_at: 0,
            expires_at: 10_000,
        })
        .await
        .expect("token");
    let joined = store.redeem_enrol_token(id, "h".into(), name.into(), 1, 100).await.expect("db").expect("redeem");
    assert_eq!(joined.pool.as_deref(), Some(pool));
}

pub(crate) fn pool_job(id: &str, pool: &str) -> NewJob {
    NewJob { agent: String::new(), pool: Some(pool.into()), ..job(id, 5000) }
}

/// SQL run on the store's database directly, as damage from outside would be.
trait RawSql {
    fn raw(&self, sql: &str) -> impl Future<Output = ()> + Send;
}

impl RawSql for SqliteStore {
    async fn raw(&self, sql: &str) {
        let sql = sql.to_owned();
        self.with_conn(move |c| Ok(c.execute_batch(&sql)?)).await.expect("raw SQL on SQLite");
    }
}

impl RawSql for crate::store::postgres::PgStore {
    async fn raw(&self, sql: &str) {
        self.client().await.expect("client").batch_execute(sql).await.expect("raw SQL on PostgreSQL");
    }
}
