//! A viewer's runs on a manual clock against a real control plane (SQLite store, real
//! dispatch, no agent: its leases and results are the store's own calls): what runs, what
//! is left to a run still going or to a recent one, the agent's share, and the owner's
//! rights said without naming the data.

use std::sync::Arc;

use super::ViewerRun;
use crate::app::projects::ProjectQuery;
use crate::app::schedules::tests::setup;
use crate::app::App;
use crate::store::access::{AccessStore, ProjectRecord, UserRecord};
use crate::store::{AgentPeer, Store};

fn query(name: &str, bind: serde_json::Value) -> ProjectQuery {
    serde_json::from_value(serde_json::json!({
        "name": name, "agent": "edge", "connection": "sample", "sql": "SELECT $1",
        "render": { "kind": "table" }, "bind": bind,
    }))
    .expect("query")
}

/// Stores project `p1` of `owner` with `queries` and `params` (as a project body gives them).
pub(super) async fn stored_project(
    app: &App,
    owner: &UserRecord,
    queries: &[ProjectQuery],
    params: serde_json::Value,
) -> ProjectRecord {
    let params = crate::app::project_params::checked(params.as_array().expect("list")).expect("valid");
    let now = app.clock.now();
    let p = ProjectRecord {
        id: "p1".into(),
        name: "p1".into(),
        owner_id: owner.id.clone(),
        owner: owner.name.clone(),
        queries_json: serde_json::to_string(queries).expect("json"),
        embed_epoch: 0,
        embed_origins: "[]".into(),
        tiles_json: "[]".into(),
        parameters_json: crate::app::project_params::to_json(&params).expect("json"),
        created_at: now,
        updated_at: now,
        schedule: None,
    };
    app.store.create_project(p.clone()).await.expect("project");
    p
}

/// A run's values of `p` with `given` (the others their default).
pub(super) fn values(app: &App, p: &ProjectRecord, given: serde_json::Value) -> crate::app::project_params::Filters {
    let params = crate::app::project_params::parse_stored(&p.parameters_json);
    crate::app::project_params::resolve(&params, Some(&given), app.today()).expect("values")
}

/// Project `p1` owned by `owner`: two queries bound to `region`, one bound to nothing.
async fn project(app: &App, owner: &UserRecord) -> ProjectRecord {
    let queries = [
        query("by region", serde_json::json!({ "1": "region" })),
        query("all", serde_json::json!({})),
        query("by region again", serde_json::json!({ "1": "region" })),
    ];
    let params = serde_json::json!([
        { "name": "region", "kind": "choice", "choices": ["North", "South"], "default": "North" },
    ]);
    stored_project(app, owner, &queries, params).await
}

fn south(app: &App, p: &ProjectRecord) -> crate::app::project_params::Filters {
    values(app, p, serde_json::json!({ "region": "South" }))
}

fn job(r: &ViewerRun) -> String {
    match r {
        ViewerRun::Queued(j) | ViewerRun::Running(j) | ViewerRun::Recent(j) => j.clone(),
        ViewerRun::Busy => panic!("busy has no job"),
    }
}

#[tokio::test]
async fn a_viewer_runs_what_must_run_within_the_agents_share() {
    let (_dir, app, clock, ed) = setup(2).await;
    let p = project(&app, &ed).await;
    let f = south(&app, &p);

    // Nothing for these values yet: the first two fit the agent's share of 2, the third waits.
    let first = app.run_for_viewer(&p, "acme", &f).await.expect("runs");
    assert!(matches!(first[..], [ViewerRun::Queued(_), ViewerRun::Queued(_), ViewerRun::Busy]), "{first:?}");
    // The jobs ran as the owner, said as the embed's.
    let (a, b) = (job(&first[0]), job(&first[1]));
    let rec = app.store.job(a.clone(), clock.now(), false).await.expect("db").expect("job");
    assert_eq!(rec.origin.owner.as_deref(), Some(ed.id.as_str()));
    assert_eq!(rec.origin.project_id.as_deref(), Some("p1"));

    // Asked again (a reload): nothing new while they are going, and still no room.
    clock.advance(1);
    let again = app.run_for_viewer(&p, "acme", &f).await.expect("runs");
    assert_eq!(again, [ViewerRun::Running(a.clone()), ViewerRun::Running(b.clone()), ViewerRun::Busy]);

    // The agent answers one; the other is cancelled: both ended just now. (Both were
    // queued at the same second, so which one the lease takes first is the ids' order.)
    let peer =
        AgentPeer { name: "edge".into(), cert_issued_at: clock.now(), pool: None, public_key: Arc::from(&[][..]) };
    let lease = i64::try_from(app.cfg.jobs.lease_secs).expect("secs");
    let got = crate::store::queue::lease_deliverable(&app.store, &app.results, &peer, clock.now(), lease, 1)
        .await
        .expect("lease");
    let leased: Vec<String> = got.jobs.iter().map(|(id, _)| id.clone()).collect();
    let (answered, other) = match leased.as_slice() {
        [x] if *x == a => (a.clone(), b.clone()),
        [x] if *x == b => (b.clone(), a.clone()),
        other => panic!("one of the viewer's two jobs: {other:?}"),
    };
    let body = br#"{"columns":["n"],"rows":[[1]]}"#;
    let report = outpost_protocol::ResultReport::succeeded(&answered, "application/json", body, Default::default());
    let sealed = Some(app.results.seal(&answered, body));
    let sha = outpost_protocol::encoding::sha256_hex(body);
    app.store.complete_job(peer, report, sha, sealed, clock.now()).await.expect("result stored");
    app.cancel_job(&other).await.expect("cancel");

    // Both recent (a cancelled or failed run is not retried at once either); the third runs.
    clock.advance(1);
    let third = app.run_for_viewer(&p, "acme", &f).await.expect("runs");
    assert!(
        matches!(&third[..], [ViewerRun::Recent(x), ViewerRun::Recent(y), ViewerRun::Queued(_)] if *x == a && *y == b)
    );

    // Past embed.viewer_refresh_secs, the ended ones run again.
    clock.advance(i64::try_from(app.cfg.embed.viewer_refresh_secs).expect("secs"));
    let later = app.run_for_viewer(&p, "acme", &f).await.expect("runs");
    assert!(matches!(&later[..], [ViewerRun::Queued(_), ViewerRun::Busy, ViewerRun::Running(_)]), "{later:?}");
}

#[tokio::test]
async fn an_owner_without_the_data_stops_the_viewers_runs_without_naming_it() {
    let (_dir, app, _clock, ed) = setup(4).await;
    let p = project(&app, &ed).await;
    assert!(app.store.delete_share("s1".into()).await.expect("db"));
    let e = app.run_for_viewer(&p, "acme", &south(&app, &p)).await.expect_err("refused");
    assert_eq!(e.status, http::StatusCode::FORBIDDEN);
    assert!(e.message.contains("data of query 0"), "{}", e.message);
    assert!(!e.message.contains("edge") && !e.message.contains("sample"), "{}", e.message);
}
