//! A project keeps showing its newest successful result (issue 23: "Results are deleted
//! after 24 h, so a project shows 'Not run yet' the next day"; "A failed refresh keeps
//! the previous result and says so"), end to end against the real binaries: a refresh
//! that fails leaves the previous result on the project's API answer, its embed and its
//! console page, with the failure said beside it; a purge past retention deletes the
//! failed run and ad-hoc jobs and keeps that newest result.
//!
//! Runs on the backend `OUTPOST_TEST_STORE` names (SQLite by default, `postgres` for a
//! fresh PostgreSQL database), and says which.

use anyhow::{ensure, Context as _, Result};
use outpost_e2e::client::Api;
use outpost_e2e::{call, ok_json, share_connection, signed_in, user_with_token};
use serde_json::{json, Value};

const GOOD_SQL: &str = "SELECT region, SUM(amount) AS revenue FROM orders GROUP BY region ORDER BY region";

fn project(sql: &str) -> Value {
    json!({ "name": "Sales", "queries": [
        { "name": "Revenue by region", "agent": "edge-1", "connection": "sample", "sql": sql,
          "render": { "kind": "table" } }
    ]})
}

/// Runs the project and waits for its one job to end; the job's id and final state.
async fn refresh(api: &Api, project: &str) -> Result<(String, String)> {
    let run = ok_json(api, "POST", &format!("/v1/projects/{project}/run"), Some(&json!({}))).await?;
    let id = run["jobs"][0]["id"].as_str().context("job id")?.to_owned();
    let _ = call(api, "GET", &format!("/v1/jobs/{id}/result?wait=30"), None).await?;
    let state =
        ok_json(api, "GET", &format!("/v1/jobs/{id}"), None).await?["state"].as_str().unwrap_or_default().into();
    Ok((id, state))
}

/// The project's one query as `GET /v1/projects/{id}/results` gives it: the job shown
/// and the newer run said beside it, by id.
async fn shown(api: &Api, project: &str) -> Result<(Option<String>, Option<String>)> {
    let v = ok_json(api, "GET", &format!("/v1/projects/{project}/results"), None).await?;
    let q = &v["queries"][0];
    Ok((q["job"]["id"].as_str().map(str::to_owned), q["refresh"]["id"].as_str().map(str::to_owned)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_refresh_keeps_the_previous_result_and_a_purge_keeps_the_newest() -> Result<()> {
    let root = tempfile::tempdir()?;
    let (cp, _edge) = outpost_e2e::start_pair(root.path(), "edge-1", "", &[]).await?;
    println!("store: {}", if cp.pg.is_some() { "PostgreSQL" } else { "SQLite" });
    let admin = cp.api()?;
    let ed = user_with_token(&admin, "ed", "editor").await?;
    share_connection(&admin, "edge-1", "sample", "ed").await?;
    let p = ok_json(&ed, "POST", "/v1/projects", Some(&project(GOOD_SQL))).await?;
    let pid = p["id"].as_str().context("project id")?.to_owned();

    let (good, state) = refresh(&ed, &pid).await?;
    ensure!(state == "succeeded", "first refresh: {state}");
    ensure!(shown(&ed, &pid).await? == (Some(good.clone()), None), "the first result is shown alone");

    // The query is changed to one that fails, and refreshed.
    ok_json(&ed, "PUT", &format!("/v1/projects/{pid}"), Some(&project("SELECT nope FROM nowhere"))).await?;
    let (bad, state) = refresh(&ed, &pid).await?;
    ensure!(state == "failed", "second refresh: {state}");
    ensure!(
        shown(&ed, &pid).await? == (Some(good.clone()), Some(bad.clone())),
        "the previous result stays, the failed refresh is said beside it"
    );

    // The console says so above the previous result.
    let browser = signed_in(&ed, "ed").await?;
    let page = call(&browser, "GET", &format!("/console/projects/{pid}"), None).await?;
    ensure!(page.status == 200, "project page: {}", page.status);
    let html = page.text();
    ensure!(html.contains("data-refresh=\"failed\""), "no note of the failed refresh:\n{html}");
    ensure!(html.contains(&format!("/console/jobs/{bad}")), "the note links the failed run");
    ensure!(html.contains("North"), "the previous result (a table of regions) is on the page");
    ensure!(html.contains("<div class=\"tiles\">") && html.contains("As of <time"), "a tile that says when:\n{html}");

    // An ad-hoc job, then a purge of everything that ended: the newest success stays.
    let adhoc = json!({ "agent": "edge-1", "connection": "sample", "sql": GOOD_SQL, "render": { "kind": "table" } });
    let adhoc = ok_json(&ed, "POST", "/v1/jobs", Some(&adhoc)).await?["id"].as_str().context("id")?.to_owned();
    let _ = call(&ed, "GET", &format!("/v1/jobs/{adhoc}/result?wait=30"), None).await?;
    let purged = ok_json(&admin, "POST", "/v1/results/purge", Some(&json!({ "older_than_secs": 0 }))).await?;
    ensure!(purged["deleted"] == json!(2), "the failed run and the ad-hoc job go: {purged}");
    for (id, kept) in [(&good, true), (&bad, false), (&adhoc, false)] {
        let status = call(&admin, "GET", &format!("/v1/jobs/{id}"), None).await?.status;
        ensure!((status == 200) == kept, "job {id}: {status}, kept {kept}");
    }
    ensure!(shown(&ed, &pid).await? == (Some(good.clone()), None), "the newest result is still shown");
    let body = call(&ed, "GET", &format!("/v1/jobs/{good}/result"), None).await?;
    ensure!(body.status == 200 && body.text().contains("North"), "its result still reads: {}", body.status);
    Ok(())
}
