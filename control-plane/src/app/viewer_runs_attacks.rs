//! A customer's security reviewer against a viewer's runs (real control plane, SQLite
//! store, real dispatch, no agent): many viewers at once cannot queue past the agent's
//! share, and an owner who lost their rights stops every run without naming the data.

use std::sync::Arc;

use super::tests::{stored_project, values};
use crate::app::projects::ProjectQuery;
use crate::app::schedules::tests::setup;
use crate::app::App;
use crate::store::access::{AccessStore, ProjectRecord, UserRecord, UserUpdate};

/// Project `p1` of `owner`: one query of agent `edge` with its `$1` bound to the free
/// text parameter `q`, so every viewer can ask for values nothing has run for.
async fn free_text_project(app: &App, owner: &UserRecord) -> ProjectRecord {
    let q: ProjectQuery = serde_json::from_value(serde_json::json!({
        "name": "search", "agent": "edge", "connection": "sample", "sql": "SELECT $1",
        "render": { "kind": "table" }, "bind": { "1": "q" },
    }))
    .expect("query");
    let params = serde_json::json!([{ "name": "q", "kind": "text", "default": "" }]);
    stored_project(app, owner, &[q], params).await
}

fn text(app: &App, p: &ProjectRecord, v: &str) -> crate::app::project_params::Filters {
    values(app, p, serde_json::json!({ "q": v }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_viewers_never_queue_past_the_agents_share() {
    let (_dir, app, _clock, ed) = setup(2).await;
    let p = free_text_project(&app, &ed).await;
    // Twelve viewers at once, each with a value nothing has run for.
    let tasks: Vec<_> = (0..12)
        .map(|n| {
            let (app, p) = (Arc::clone(&app), p.clone());
            let f = text(&app, &p, &format!("value {n}"));
            tokio::spawn(async move { app.run_for_viewer(&p, "acme", &f).await.expect("runs") })
        })
        .collect();
    let mut queued = 0;
    for t in tasks {
        let runs = t.await.expect("task");
        queued += runs.iter().filter(|r| matches!(r, super::ViewerRun::Queued(_))).count();
    }
    let waiting = app.store.queued_refresh_jobs("edge".into(), None).await.expect("db");
    assert_eq!((queued, waiting), (2, 2), "at most schedules.max_queued_per_agent wait at the agent");
}

#[tokio::test]
async fn a_disabled_owner_stops_the_viewers_runs_without_naming_anyone() {
    let (_dir, app, clock, ed) = setup(4).await;
    let p = free_text_project(&app, &ed).await;
    let update = UserUpdate { role: None, disabled: Some(true), password_hash: None };
    app.store.update_user("ed".into(), update, clock.now()).await.expect("db").expect("user");
    let e = app.run_for_viewer(&p, "acme", &text(&app, &p, "x")).await.expect_err("refused");
    assert_eq!(e.status, http::StatusCode::FORBIDDEN);
    let words: Vec<&str> = e.message.split(|c: char| !c.is_alphanumeric() && c != '-').collect();
    for name in ["ed", "u-ed", "edge", "sample", "SELECT"] {
        assert!(!words.contains(&name), "{name} in {:?}", e.message);
    }
    assert_eq!(app.store.queued_refresh_jobs("edge".into(), None).await.expect("db"), 0, "nothing queued");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_viewers_asking_for_the_same_values_start_one_run() {
    let (_dir, app, _clock, ed) = setup(4).await;
    let p = free_text_project(&app, &ed).await;
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            let (app, p) = (Arc::clone(&app), p.clone());
            let f = text(&app, &p, "same");
            tokio::spawn(async move { app.run_for_viewer(&p, "acme", &f).await.expect("runs") })
        })
        .collect();
    let mut jobs = Vec::new();
    for t in tasks {
        match t.await.expect("task").as_slice() {
            [super::ViewerRun::Queued(j) | super::ViewerRun::Running(j)] => jobs.push(j.clone()),
            other => panic!("{other:?}"),
        }
    }
    jobs.dedup();
    assert_eq!(jobs.len(), 1, "one run for the same values: {jobs:?}");
    assert_eq!(app.store.queued_refresh_jobs("edge".into(), None).await.expect("db"), 1);
}
