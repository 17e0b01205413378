//! Project schedules (issue 23: "a dashboard refreshes on a schedule (cron-style, in the
//! project's time zone) and on demand"), end to end against the real binaries: the API
//! refuses a bad schedule naming the field and saying what is wrong; GET shows it (its
//! pattern and customers only to those who may read the queries); the console says it
//! in words beside the dashboard's tiles (the layout and the schedule each kept when the
//! other is saved); and the control plane's own scheduler loop runs a due project as its
//! owner, audited as `schedule`, so the dashboard has a fresh result without anyone
//! pressing Refresh. (The slot is made due by moving `next_run_at` in the store, as time
//! passing would: the loop itself, its claim and its dispatch are the real ones.)
//!
//! Runs on the backend `OUTPOST_TEST_STORE` names (SQLite by default, `postgres` for a
//! fresh PostgreSQL database), and says which.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{ensure, Context as _, Result};
use outpost_e2e::client::Api;
use outpost_e2e::{call, eventually, ok_json, share_connection, signed_in, user_with_token, Agent, ControlPlane};
use serde_json::{json, Value};

const SQL: &str = "SELECT region, SUM(amount) AS revenue FROM orders GROUP BY region ORDER BY region";

fn project(schedule: Option<Value>) -> Value {
    let mut p = json!({ "name": "Sales", "queries": [
        { "name": "Revenue by region", "agent": "edge-1", "connection": "sample", "sql": SQL,
          "render": { "kind": "table" } }
    ]});
    if let Some(s) = schedule {
        p["schedule"] = s;
    }
    p
}

/// The refusal of `body` (400) on `path`: its message.
async fn refused(api: &Api, method: &str, path: &str, body: &Value) -> Result<String> {
    let res = call(api, method, path, Some(body)).await?;
    ensure!(res.status == 400, "{method} {path} with {body}: {} {}", res.status, res.text());
    Ok(res.json()?["message"].as_str().unwrap_or_default().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_is_checked_shown_said_in_words_and_run_by_the_control_plane() -> Result<()> {
    let root = tempfile::tempdir()?;
    let (mut cp, _edge) = outpost_e2e::start_pair(root.path(), "edge-1", "", &[]).await?;
    println!("store: {}", if cp.pg.is_some() { "PostgreSQL" } else { "SQLite" });
    let admin = cp.api()?;
    let ed = user_with_token(&admin, "ed", "editor").await?;
    let vi = user_with_token(&admin, "vi", "viewer").await?;
    share_connection(&admin, "edge-1", "sample", "ed").await?;

    // Refusals name the field and say what is wrong.
    let cases = [
        (
            json!({ "cron": "0 0 6 * * 1-5", "timezone": "UTC" }),
            "schedule.cron: 6 fields given (seconds are not supported); use 5: minute hour day month weekday",
        ),
        (
            json!({ "cron": "* * * * *", "timezone": "UTC" }),
            "schedule.cron: runs every 60 s; the least allowed is 300 s (schedules.min_interval_secs)",
        ),
        (
            json!({ "cron": "0 6 * * 1-5", "timezone": "Europe/Berln" }),
            "schedule.timezone: \"Europe/Berln\" is not an IANA time zone name; did you mean \"Europe/Berlin\"",
        ),
        (
            json!({ "cron": "0 6 * * 1-5", "timezone": "UTC", "customers": ["acme"] }),
            "schedule.customers: no query of this project takes the end customer id",
        ),
        (json!({ "cron": "0 6 * * 1-5" }), "schedule: missing field `timezone`"),
    ];
    for (schedule, want) in cases {
        let m = refused(&ed, "POST", "/v1/projects", &project(Some(schedule.clone()))).await?;
        ensure!(m.starts_with(want), "{schedule}: {m:?}, wanted {want:?}");
    }

    // Set, shown (the pattern and customers only to those who may read the queries).
    let weekdays = json!({ "cron": "0 6 * * 1-5", "timezone": "Europe/Berlin" });
    let p = ok_json(&ed, "POST", "/v1/projects", Some(&project(Some(weekdays.clone())))).await?;
    let pid = p["id"].as_str().context("project id")?.to_owned();
    let s = &p["schedule"];
    ensure!(s["cron"] == "0 6 * * 1-5" && s["timezone"] == "Europe/Berlin", "{s}");
    ensure!(s["description"] == "Every weekday at 06:00" && s["next_run_at"].is_i64(), "{s}");
    ok_json(&ed, "PUT", &format!("/v1/projects/{pid}/grants/vi"), Some(&json!({ "access": "view-app" }))).await?;
    let seen = ok_json(&vi, "GET", &format!("/v1/projects/{pid}"), None).await?;
    let s = &seen["schedule"];
    ensure!(s["description"] == "Every weekday at 06:00" && s["next_run_at"].is_i64(), "view-app sees when: {s}");
    ensure!(s.get("cron").is_none() && s.get("customers").is_none(), "view-app sees no pattern or customers: {s}");

    // An update without `schedule` keeps it; one that would break it says so.
    let kept = ok_json(&ed, "PUT", &format!("/v1/projects/{pid}"), Some(&project(None))).await?;
    ensure!(kept["schedule"]["cron"] == "0 6 * * 1-5", "kept: {}", kept["schedule"]);
    let mut by_customer = project(None);
    by_customer["queries"][0]["customer_param"] = json!(1);
    let m = refused(&ed, "PUT", &format!("/v1/projects/{pid}"), &by_customer).await?;
    ensure!(m.contains("schedule.customers") && m.contains("the kept schedule"), "{m}");

    // The dashboard's layout and the schedule are kept apart: a layout saved without
    // `schedule` keeps the schedule, and the console's schedule form (name, queries and
    // schedule, no `tiles`) keeps the layout.
    let path = format!("/v1/projects/{pid}");
    let tiles = json!([{ "text": "Nightly numbers", "w": 12, "h": 1 }, { "query": 0, "w": 8, "h": 2 }]);
    let mut laid_out = project(None);
    laid_out["tiles"] = tiles.clone();
    let put = ok_json(&ed, "PUT", &path, Some(&laid_out)).await?;
    ensure!(put["tiles"] == tiles && put["schedule"]["cron"] == "0 6 * * 1-5", "a layout keeps the schedule: {put}");
    let hourly = json!({ "cron": "@hourly", "timezone": "Europe/Berlin" });
    let put = ok_json(&ed, "PUT", &path, Some(&project(Some(hourly)))).await?;
    ensure!(put["tiles"] == tiles && put["schedule"]["cron"] == "@hourly", "a schedule keeps the layout: {put}");
    let put = ok_json(&ed, "PUT", &path, Some(&project(Some(weekdays.clone())))).await?;
    ensure!(put["tiles"] == tiles && put["schedule"]["description"] == "Every weekday at 06:00", "{put}");

    // The console says it in words, with the form for an editor and none for a viewer.
    let page = call(&signed_in(&ed, "ed").await?, "GET", &format!("/console/projects/{pid}"), None).await?;
    let html = page.text();
    ensure!(page.status == 200, "project page: {}", page.status);
    ensure!(html.contains("Every weekday at 06:00, Europe/Berlin · next run "), "the schedule in words:\n{html}");
    ensure!(html.contains("name=\"schedule.cron\"") && html.contains("Remove schedule"), "the form for editors");
    ensure!(
        html.contains("<p class=\"tile-text\">Nightly numbers</p>") && html.contains("data-dashboard-edit"),
        "the tile grid and its editing beside the schedule:\n{html}"
    );
    let page = call(&signed_in(&vi, "vi").await?, "GET", &format!("/console/projects/{pid}"), None).await?;
    let html = page.text();
    ensure!(html.contains("Every weekday at 06:00, Europe/Berlin · next run "), "viewers read it too");
    ensure!(!html.contains("name=\"schedule.cron\""), "no form for a view-app viewer");

    // Time passes to the slot: the control plane's loop runs the project as its owner.
    ensure!(ok_json(&ed, "GET", &format!("/v1/projects/{pid}/results"), None).await?["queries"][0]["job"].is_null());
    cp.store_sql(&format!("UPDATE projects SET next_run_at = 1 WHERE id = '{pid}'"))?;
    let results = format!("/v1/projects/{pid}/results");
    eventually("the scheduled run's result is on the dashboard", Duration::from_secs(90), || async {
        let v = ok_json(&ed, "GET", &results, None).await?;
        Ok(v["queries"][0]["job"]["state"] == "succeeded")
    })
    .await?;
    let audit = ok_json(&admin, "GET", "/v1/audit?actor=schedule", None).await?;
    let run = &audit["events"][0];
    ensure!(run["action"] == "projects.run" && run["target"] == pid.as_str() && run["outcome"] == "ok", "{audit}");
    let after = ok_json(&ed, "GET", &format!("/v1/projects/{pid}"), None).await?;
    ensure!(after["schedule"]["next_run_at"].as_i64() > Some(1), "on to the next slot: {}", after["schedule"]);
    let job = run["detail"]["jobs"][0]["job"].as_str().context("job id")?;
    let job = ok_json(&ed, "GET", &format!("/v1/jobs/{job}"), None).await?;
    ensure!(job["requester"] == "ed", "run as the owner: {job}");

    // After a restart the dashboard still shows the scheduled run's result, and the
    // schedule is still there.
    // (A restarted control plane listens on a new port: read as the admin, anew.)
    cp.kill()?;
    cp.start()?;
    let admin = cp.api()?;
    let v = ok_json(&admin, "GET", &results, None).await?;
    ensure!(v["queries"][0]["job"]["state"] == "succeeded", "after a restart: {v}");
    let p = ok_json(&admin, "GET", &format!("/v1/projects/{pid}"), None).await?;
    ensure!(p["schedule"] == after["schedule"], "the schedule outlives a restart: {}", p["schedule"]);
    ensure!(p["tiles"] == tiles, "so does the layout: {}", p["tiles"]);

    // Removed with `null`.
    let removed = ok_json(&admin, "PUT", &format!("/v1/projects/{pid}"), Some(&project(Some(Value::Null)))).await?;
    ensure!(removed["schedule"].is_null(), "removed: {}", removed["schedule"]);
    Ok(())
}

/// Two replicas on one PostgreSQL database, both running the scheduler loop: twelve
/// projects due at once (more than the agent's share of 4 refresh jobs, so each replica
/// hands out parts of the backlog over several ticks) run exactly once each, every job
/// claimed by one replica. Always on the local PostgreSQL server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_run_each_due_slot_exactly_once() -> Result<()> {
    const PROJECTS: usize = 12;
    let root = tempfile::tempdir()?;
    let (cp1, cp2) = ControlPlane::two_started_replicas(root.path())?;
    let mut edge = Agent::new(root.path(), "edge-1", "")?;
    edge.enroll_with(&cp1).await?;
    edge.start_connected()?;
    let admin = cp1.api()?;
    let mut ids = Vec::new();
    for i in 0..PROJECTS {
        let mut p = project(Some(json!({ "cron": "0 6 * * *", "timezone": "UTC" })));
        p["name"] = json!(format!("Sales {i}"));
        ids.push(ok_json(&admin, "POST", "/v1/projects", Some(&p)).await?["id"].as_str().context("id")?.to_owned());
    }
    cp1.store_sql("UPDATE projects SET next_run_at = 1")?;

    let admin2 = cp2.api()?;
    eventually("every project has run once", Duration::from_secs(180), || async {
        let mut all = true;
        for id in &ids {
            let v = ok_json(&admin2, "GET", &format!("/v1/projects/{id}/results"), None).await?;
            all &= v["queries"][0]["job"]["state"] == "succeeded";
        }
        Ok(all)
    })
    .await?;

    // One job per project, each in exactly one audit event of one replica's scheduler.
    let jobs = ok_json(&admin, "GET", "/v1/jobs?limit=100", None).await?;
    let jobs: Vec<&Value> = jobs["jobs"].as_array().context("jobs")?.iter().collect();
    ensure!(jobs.len() == PROJECTS, "{} jobs for {PROJECTS} due projects: {jobs:?}", jobs.len());
    let projects: BTreeSet<&str> = jobs.iter().filter_map(|j| j["project_id"].as_str()).collect();
    ensure!(projects.len() == PROJECTS, "one job per project: {projects:?}");
    let audit = ok_json(&admin, "GET", "/v1/audit?actor=schedule&limit=1000", None).await?;
    let mut claimed = Vec::new();
    for e in audit["events"].as_array().context("events")? {
        ensure!(e["outcome"] == "ok", "{e}");
        for j in e["detail"]["jobs"].as_array().into_iter().flatten() {
            claimed.push(j["job"].as_str().unwrap_or_default().to_owned());
        }
    }
    claimed.sort();
    let mut listed: Vec<String> = jobs.iter().filter_map(|j| j["id"].as_str().map(str::to_owned)).collect();
    listed.sort();
    ensure!(claimed == listed, "each job dispatched by one claim: claimed {claimed:?}, jobs {listed:?}");
    for id in &ids {
        let p = ok_json(&admin2, "GET", &format!("/v1/projects/{id}"), None).await?;
        ensure!(p["schedule"]["next_run_at"].as_i64() > Some(1), "{id} moved on: {}", p["schedule"]);
    }
    println!(
        "{PROJECTS} due projects, {} scheduler runs across two replicas, {} jobs",
        audit["events"].as_array().map_or(0, Vec::len),
        claimed.len()
    );
    Ok(())
}
