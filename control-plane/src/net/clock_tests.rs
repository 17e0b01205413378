//! Time under the tests' control: offline detection, lease expiry, session expiry and
//! retention, each checked on a manual [`Clock`] through the functions the API and the
//! agent listener use, with no real waits. (Here, at the top layer, because they reach
//! through `app`, `api` and the store.)

use std::sync::Arc;

use http_body_util::BodyExt;
use outpost_protocol::encoding::sha256_hex;
use outpost_protocol::{ResultReport, ResultStats};

use crate::api::Ctx;
use crate::app::{self, App, DispatchRequest};
use crate::auth::access::{Caller, Credential, Role};
use crate::clock::Clock;
use crate::config::ControlPlaneConfig;
use crate::store::access::{AccessStore, SessionRecord};
use crate::store::{AgentPeer, EnrolTokenRecord, JobOrigin, Store};

/// Where every manual clock starts (an instant long before the real now).
const T0: i64 = 1_700_000_000;

/// A control plane made by `init` in a temp dir (embedded SQLite store), opened on a
/// manual clock standing at [`T0`]; jobs live an hour, longer than any lease here.
async fn app_at_t0() -> (tempfile::TempDir, Arc<App>, Clock) {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("cp");
    app::init(&data, "cp.test", &[], None).await.expect("init");
    let mut cfg = ControlPlaneConfig::with_data_dir(data);
    cfg.jobs.ttl_secs = 3600;
    let clock = Clock::manual(T0);
    let app = app::open_with_clock(cfg, clock.clone()).await.expect("open");
    (dir, app, clock)
}

fn secs(n: u64) -> i64 {
    i64::try_from(n).expect("fits")
}

/// Enrols `name` now (by the app's clock), with connection `sample` reported at once.
async fn enrol(app: &App, name: &str) -> AgentPeer {
    let now = app.clock.now();
    let id = format!("t-{name}");
    let token = EnrolTokenRecord {
        id: id.clone(),
        agent: name.into(),
        pool: None,
        secret_sha256: "h".into(),
        created_at: now,
        expires_at: now + 600,
    };
    app.store.create_enrol_token(token).await.expect("token");
    app.store.redeem_enrol_token(id, "h".into(), name.into(), now, now + 86_400).await.expect("db").expect("redeem");
    let peer = AgentPeer { name: name.into(), cert_issued_at: now, pool: None, public_key: Arc::from(&[][..]) };
    app.store.touch_agent(peer.clone(), now, Some("1.0.0".into()), Some(vec!["sample".into()])).await.expect("seen");
    peer
}

async fn admin(app: &App) -> Caller {
    let user = app.store.user_by_name("admin".into()).await.expect("db").expect("init made admin");
    Caller {
        user_id: user.id,
        user: user.name,
        role: Role::Admin,
        scopes: Role::Admin.scopes(),
        credential: Credential::Token { id: "test".into() },
    }
}

/// Signs and queues a job for `agent` as the admin; its id.
async fn queue_job(app: &App, agent: &str) -> String {
    let caller = admin(app).await;
    let origin = JobOrigin::default();
    let req = DispatchRequest {
        agent: agent.into(),
        connection: "sample".into(),
        sql: String::new(),
        params: Vec::new(),
        render: serde_json::Value::Null,
        cache: outpost_protocol::CacheSpec::default(),
        timeout_secs: None,
    };
    let render =
        outpost_protocol::RenderSpec::Catalog(outpost_protocol::CatalogSpec { max_tables: 10, max_columns: 10 });
    let requester = caller.requester(&origin);
    app.dispatch_spec(req, render, origin, requester, true).await.expect("dispatch").0
}

/// What an agent's poll leases now (the agent listener's lease, at the app's time).
async fn lease(app: &App, peer: &AgentPeer) -> Vec<String> {
    let lease = secs(app.cfg.jobs.lease_secs);
    let got = crate::store::queue::lease_deliverable(&app.store, &app.results, peer, app.clock.now(), lease, 1)
        .await
        .expect("lease");
    got.jobs.into_iter().map(|(id, _)| id).collect()
}

/// `name`'s status in `GET /v1/agents`, as the admin sees it.
#[allow(clippy::disallowed_methods)] // `collect` runs on a `Limited` body
async fn listed_status(app: &App, name: &str) -> String {
    let mut ctx = Ctx { caller: Some(admin(app).await), ..Ctx::default() };
    let res = crate::api::jobs::agents_list(app, &mut ctx).await.expect("list");
    let body = http_body_util::Limited::new(res.into_body(), 1 << 20).collect().await.expect("body").to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
    let agent = v["agents"].as_array().expect("agents").iter().find(|a| a["name"] == name).expect("listed").clone();
    agent["status"].as_str().expect("status").to_owned()
}

#[tokio::test]
async fn an_agent_is_online_for_offline_after_seconds_since_it_was_seen_then_offline() {
    let (_dir, app, clock) = app_at_t0().await;
    enrol(&app, "edge-1").await;
    let after = secs(app.cfg.offline_after_secs);
    clock.set(T0 + after);
    assert_eq!(listed_status(&app, "edge-1").await, "online");
    clock.advance(1);
    assert_eq!(listed_status(&app, "edge-1").await, "offline");
}

#[tokio::test]
async fn a_leased_job_is_leased_again_once_the_clock_passes_its_lease_expiry() {
    let (_dir, app, clock) = app_at_t0().await;
    let peer = enrol(&app, "edge-1").await;
    let id = queue_job(&app, "edge-1").await;
    assert_eq!(lease(&app, &peer).await, vec![id.clone()]);
    let lease_secs = secs(app.cfg.jobs.lease_secs);
    clock.set(T0 + lease_secs);
    assert!(lease(&app, &peer).await.is_empty(), "still leased at its lease expiry");
    clock.advance(1);
    assert_eq!(lease(&app, &peer).await, vec![id], "the lease ran out: leased again");
}

/// A session for the admin made now, with cookie value `cookie`, lasting `absolute_secs`.
async fn session(app: &App, cookie: &str) {
    let user = admin(app).await;
    let now = app.clock.now();
    let s = SessionRecord {
        id_sha256: sha256_hex(cookie.as_bytes()),
        user_id: user.user_id,
        csrf: "csrf".into(),
        created_at: now,
        last_seen: now,
        expires_at: now + secs(app.cfg.sessions.absolute_secs),
    };
    app.store.create_session(s).await.expect("session");
}

#[tokio::test]
async fn a_session_idle_for_idle_secs_is_refused() {
    let (_dir, app, clock) = app_at_t0().await;
    session(&app, "cookie-idle").await;
    let idle = secs(app.cfg.sessions.idle_secs);
    clock.set(T0 + idle - 1);
    crate::api::session_caller(&app, "cookie-idle").await.expect("used within idle_secs: live");
    clock.advance(idle);
    let refused = crate::api::session_caller(&app, "cookie-idle").await;
    assert!(refused.is_err(), "idle for idle_secs: ended");
}

#[tokio::test]
async fn a_session_used_all_along_is_refused_at_its_absolute_expiry() {
    let (_dir, app, clock) = app_at_t0().await;
    session(&app, "cookie-old").await;
    let (idle, end) = (secs(app.cfg.sessions.idle_secs), T0 + secs(app.cfg.sessions.absolute_secs));
    let mut t = T0;
    while t < end - 1 {
        t = (t + idle - 1).min(end - 1);
        clock.set(t);
        crate::api::session_caller(&app, "cookie-old").await.expect("used within idle_secs: live");
    }
    clock.set(end);
    let refused = crate::api::session_caller(&app, "cookie-old").await;
    assert!(refused.is_err(), "past its absolute expiry: ended, however recently used");
}

#[tokio::test]
async fn retention_deletes_a_result_only_once_its_time_has_passed() {
    let (_dir, app, clock) = app_at_t0().await;
    let peer = enrol(&app, "edge-1").await;
    let id = queue_job(&app, "edge-1").await;
    assert_eq!(lease(&app, &peer).await, vec![id.clone()]);
    let report = ResultReport::succeeded(&id, "application/json", b"{}", ResultStats::default());
    let sealed = Some(app.results.seal(&id, b"{}"));
    app.store.complete_job(peer, report, sha256_hex(b"{}"), sealed, T0).await.expect("result stored");
    let retention = app.cfg.results.retention_secs;
    clock.set(T0 + secs(retention) - 1);
    assert_eq!(app.purge_results(retention).await.expect("purge"), 0, "younger than retention: kept");
    assert!(app.store.job(id.clone(), app.clock.now(), false).await.expect("db").is_some());
    clock.advance(1);
    assert_eq!(app.purge_results(retention).await.expect("purge"), 1, "retention has passed: deleted");
    assert!(app.store.job(id, app.clock.now(), false).await.expect("db").is_none());
}
