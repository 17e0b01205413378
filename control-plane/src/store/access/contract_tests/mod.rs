//! The access store's contract: every scenario runs on SQLite and on a fresh PostgreSQL
//! database (`testdb::on_both_backends!`), so both backends are held to the same
//! behaviour. The fixtures are here; the scenarios by topic in [`users`], [`projects`],
//! [`schedules`] and [`audit`].

use std::sync::Arc;

use super::*;
use crate::store::access::AuditFilter;
use crate::store::{JobOrigin, KeySetChange, NewJob, SigningKeyRecord, Store};

mod audit;
mod projects;
mod schedules;
mod users;

fn user(id: &str, name: &str, role: Role) -> UserRecord {
    UserRecord {
        id: id.into(),
        name: name.into(),
        role,
        password_hash: None,
        created_at: 1,
        disabled_at: None,
        last_sign_in: None,
    }
}

fn project(id: &str, name: &str, owner: &str) -> ProjectRecord {
    ProjectRecord {
        id: id.into(),
        name: name.into(),
        owner_id: owner.into(),
        owner: String::new(),
        queries_json: "[]".into(),
        embed_epoch: 0,
        embed_origins: "[]".into(),
        tiles_json: "[]".into(),
        parameters_json: "[]".into(),
        created_at: 1,
        updated_at: 1,
        schedule: None,
    }
}

fn session(h: &str, uid: &str, expires_at: i64) -> SessionRecord {
    SessionRecord {
        id_sha256: h.into(),
        user_id: uid.into(),
        csrf: "c".into(),
        created_at: 100,
        last_seen: 100,
        expires_at,
    }
}

fn disable() -> UserUpdate {
    UserUpdate { disabled: Some(true), ..Default::default() }
}

async fn add_signing_key<S: Store>(s: &S) {
    let key = SigningKeyRecord {
        key_id: "k1".into(),
        public_key: "AAAA".into(),
        status: "active".into(),
        created_at: 1,
        activated_at: Some(1),
        retired_at: None,
    };
    let change = KeySetChange {
        version: 1,
        statement_json: "{}".into(),
        keys: vec![key],
        resign: None,
        envelopes: None,
        now: 1,
    };
    s.commit_key_set(change).await.expect("key set");
}

fn new_job(id: &str, created_at: i64, expires_at: i64, origin: JobOrigin) -> NewJob {
    NewJob {
        id: id.into(),
        agent: "edge".into(),
        pool: None,
        connection: "warehouse".into(),
        envelope_json: "{}".into(),
        key_id: "k1".into(),
        created_at,
        expires_at,
        origin,
    }
}
