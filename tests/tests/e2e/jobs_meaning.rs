//! Jobs keep their meaning (issue 23), end to end against the real binaries: a job is
//! named after its project query or its SQL's first line; the job list filters by state,
//! agent, connection and requester in the store, and never shows a user someone else's
//! jobs; the console's downloads (SVG, CSV) pass the result's own access checks.
//!
//! Runs on the backend `OUTPOST_TEST_STORE` names (SQLite by default, `postgres` for a
//! fresh PostgreSQL database), and says which.

use std::collections::BTreeSet;

use anyhow::{ensure, Context as _, Result};
use outpost_e2e::client::Api;
use outpost_e2e::{call, ok_json, share_connection, user_with_token, Agent, TEST_PASSWORD};
use serde_json::{json, Value};

const NAMED_SQL: &str =
    "-- Revenue by region\nSELECT region, SUM(amount) AS revenue FROM orders GROUP BY region ORDER BY region";
const CSV_SQL: &str = "SELECT '=1+2' AS f, NULL AS n, 'a,b' AS c, -5 AS neg, 'say \"hi\"' AS q";

/// Signs `user` in; a client with the session cookie and the CSRF token.
async fn session(api: &Api, user: &str, password: &str) -> Result<Api> {
    let anon = api.with_token(None);
    let res = call(&anon, "POST", "/v1/sessions", Some(&json!({ "user": user, "password": password }))).await?;
    ensure!(res.status == 201, "sign-in of {user}: {} {}", res.status, res.text());
    let cookie = res.header("set-cookie").context("no Set-Cookie")?;
    let pair = cookie.split(';').next().context("cookie")?.to_owned();
    let csrf = res.json()?["csrf_token"].as_str().context("csrf")?.to_owned();
    Ok(anon.with_header("cookie", &pair).with_header("x-csrf-token", &csrf))
}

async fn dispatch(api: &Api, agent: &str, sql: &str, render: Value) -> Result<String> {
    let job = json!({ "agent": agent, "connection": "sample", "sql": sql, "render": render });
    let v = ok_json(api, "POST", "/v1/jobs", Some(&job)).await?;
    Ok(v["id"].as_str().context("job id")?.to_owned())
}

/// Waits until job `id` has ended; its final state.
async fn final_state(api: &Api, id: &str) -> Result<String> {
    let _ = call(api, "GET", &format!("/v1/jobs/{id}/result?wait=30"), None).await?;
    Ok(ok_json(api, "GET", &format!("/v1/jobs/{id}"), None).await?["state"].as_str().unwrap_or_default().to_owned())
}

/// The ids `GET path` lists.
async fn ids(api: &Api, path: &str) -> Result<BTreeSet<String>> {
    let v = ok_json(api, "GET", path, None).await?;
    Ok(v["jobs"].as_array().context("jobs")?.iter().filter_map(|j| j["id"].as_str().map(str::to_owned)).collect())
}

fn set(items: &[&String]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_are_named_filtered_in_the_store_and_downloaded_with_the_results_access_checks() -> Result<()> {
    let root = tempfile::tempdir()?;
    let (cp, _edge1) = outpost_e2e::start_pair(root.path(), "edge-1", "", &[]).await?;
    println!("store: {}", if cp.pg.is_some() { "PostgreSQL" } else { "SQLite" });
    let mut edge2 = Agent::new(root.path(), "edge-2", "")?;
    edge2.enroll_with(&cp).await?;
    edge2.start_connected()?;
    let admin = cp.api()?;
    let ed = user_with_token(&admin, "ed", "editor").await?;
    let vi = user_with_token(&admin, "vi", "viewer").await?;
    share_connection(&admin, "edge-1", "sample", "ed").await?;

    // The admin's jobs: a named chart on edge-1, a scalar on edge-2, a failure.
    let bar = json!({ "kind": "bar", "x": "region", "y": ["revenue"] });
    let named = dispatch(&admin, "edge-1", NAMED_SQL, bar.clone()).await?;
    let scalar = dispatch(
        &admin,
        "edge-2",
        "\n\n   SELECT COUNT(*) AS n FROM orders  \n",
        json!({ "kind": "scalar", "column": "n" }),
    )
    .await?;
    let failed = dispatch(&admin, "edge-1", "SELECT nope FROM nowhere", json!({ "kind": "table" })).await?;
    // The editor's: a long first line, a table to download, and a project's query.
    let long_sql = format!("SELECT id, product FROM orders WHERE product <> '{}' ORDER BY id LIMIT 3", "x".repeat(120));
    let long = dispatch(&ed, "edge-1", &long_sql, json!({ "kind": "table" })).await?;
    let table = dispatch(&ed, "edge-1", CSV_SQL, json!({ "kind": "table" })).await?;
    let project = ok_json(
        &ed,
        "POST",
        "/v1/projects",
        Some(&json!({ "name": "Sales", "queries": [{ "name": "Orders by region", "agent": "edge-1",
            "connection": "sample", "sql": NAMED_SQL, "render": bar }] })),
    )
    .await?;
    let pid = project["id"].as_str().context("project id")?.to_owned();
    let run = ok_json(&ed, "POST", &format!("/v1/projects/{pid}/run"), Some(&json!({}))).await?;
    let from_project = run["jobs"][0]["id"].as_str().context("project job")?.to_owned();
    ok_json(&ed, "PUT", &format!("/v1/projects/{pid}/grants/vi"), Some(&json!({ "access": "view-app" }))).await?;

    for (id, want) in [
        (&named, "succeeded"),
        (&scalar, "succeeded"),
        (&failed, "failed"),
        (&long, "succeeded"),
        (&table, "succeeded"),
        (&from_project, "succeeded"),
    ] {
        let api = if [&long, &table, &from_project].contains(&id) { &ed } else { &admin };
        ensure!(final_state(api, id).await? == want, "job {id} should end {want}");
    }

    // Names: the comment, the first non-empty line, cut with an ellipsis, the query's name.
    let name = |api: Api, id: String| async move {
        Ok::<_, anyhow::Error>(ok_json(&api, "GET", &format!("/v1/jobs/{id}"), None).await?["name"].clone())
    };
    ensure!(name(admin.clone(), named.clone()).await? == "Revenue by region");
    ensure!(name(admin.clone(), scalar.clone()).await? == "SELECT COUNT(*) AS n FROM orders");
    let long_name = name(ed.clone(), long.clone()).await?;
    let long_name = long_name.as_str().context("name")?;
    ensure!(long_name.chars().count() == 80 && long_name.ends_with('…'), "{long_name:?}");
    ensure!(long_name.starts_with("SELECT id, product FROM orders WHERE"), "{long_name:?}");
    ensure!(name(ed.clone(), from_project.clone()).await? == "Orders by region");
    // Who asked: the requester's name, to those who may read the job's SQL.
    let listed = ok_json(&admin, "GET", "/v1/jobs?all=true", None).await?;
    for j in listed["jobs"].as_array().context("jobs")? {
        let want = if [&long, &table, &from_project].iter().any(|id| j["id"] == id.as_str()) { "ed" } else { "admin" };
        ensure!(j["requester"] == want, "{j}");
    }
    // A view-app viewer sees the project query's name, never its SQL.
    ensure!(name(vi.clone(), from_project.clone()).await? == "Orders by region");
    let seen_by_vi = ok_json(&vi, "GET", &format!("/v1/jobs/{from_project}"), None).await?;
    ensure!(!seen_by_vi.to_string().contains("SELECT") && seen_by_vi.get("requester").is_none(), "{seen_by_vi}");
    ensure!(call(&vi, "GET", &format!("/v1/jobs/{from_project}/spec"), None).await?.status == 403);

    // Filters, applied in the store.
    let all = ids(&admin, "/v1/jobs?all=true").await?;
    ensure!(all.len() == 6, "{all:?}");
    ensure!(ids(&admin, "/v1/jobs?all=true&state=failed").await? == set(&[&failed]));
    ensure!(
        ids(&admin, "/v1/jobs?all=true&state=succeeded").await?
            == set(&[&named, &scalar, &long, &table, &from_project])
    );
    ensure!(ids(&admin, "/v1/jobs?all=true&agent=edge-2").await? == set(&[&scalar]));
    ensure!(
        ids(&admin, "/v1/jobs?all=true&agent=edge-1&connection=sample&state=succeeded").await?
            == set(&[&named, &long, &table, &from_project])
    );
    ensure!(ids(&admin, "/v1/jobs?all=true&connection=nope").await?.is_empty());
    ensure!(ids(&admin, "/v1/jobs?owner=ed").await? == set(&[&long, &table, &from_project]));
    ensure!(ids(&admin, "/v1/jobs?owner=ed&state=succeeded&agent=edge-1&limit=2").await?.len() == 2);
    ensure!(ids(&admin, "/v1/jobs").await? == set(&[&named, &scalar, &failed]), "an admin's own jobs by default");
    // Validation names the parameter and what it takes.
    let bad = call(&admin, "GET", "/v1/jobs?state=done", None).await?;
    ensure!(bad.status == 400, "{} {}", bad.status, bad.text());
    let msg = bad.json()?["message"].as_str().unwrap_or_default().to_owned();
    ensure!(msg.starts_with("state: ") && msg.contains("queued, leased, succeeded, failed"), "{msg}");
    let bad = call(&admin, "GET", "/v1/jobs?owner=ghost", None).await?;
    ensure!(bad.status == 400 && bad.text().contains("owner"), "{}", bad.text());
    ensure!(call(&admin, "GET", "/v1/jobs?agent=%ZZ", None).await?.status == 400);

    // A user without the scope to see others' jobs sees only their own, whatever the filter.
    ensure!(ids(&ed, "/v1/jobs").await? == set(&[&long, &table, &from_project]));
    ensure!(ids(&ed, "/v1/jobs?owner=admin").await?.is_empty(), "never the admin's jobs");
    ensure!(ids(&ed, "/v1/jobs?owner=ed&state=failed").await?.is_empty());
    ensure!(ids(&ed, "/v1/jobs?agent=edge-2").await?.is_empty());
    ensure!(call(&ed, "GET", "/v1/jobs?all=true", None).await?.status == 403);
    ensure!(ids(&vi, "/v1/jobs").await?.is_empty(), "the viewer dispatched nothing");
    // ?sql=true gives the SQL of the caller's own jobs (the history's snippets).
    let with_sql = ok_json(&ed, "GET", "/v1/jobs?sql=true", None).await?;
    let j = with_sql["jobs"].as_array().context("jobs")?.iter().find(|j| j["id"] == table.as_str()).context("table")?;
    ensure!(j["sql"] == CSV_SQL, "{j}");
    let without = ok_json(&ed, "GET", "/v1/jobs", None).await?;
    ensure!(without["jobs"].as_array().context("jobs")?.iter().all(|j| j.get("sql").is_none()));

    // Downloads in the console: through the result's own access checks.
    let ed_console = session(&admin, "ed", TEST_PASSWORD).await?;
    let csv = call(&ed_console, "GET", &format!("/console/jobs/{table}/download.csv"), None).await?;
    ensure!(csv.status == 200, "{} {}", csv.status, csv.text());
    ensure!(csv.header("content-type").is_some_and(|c| c.starts_with("text/csv")), "{:?}", csv.header("content-type"));
    let disposition = csv.header("content-disposition").unwrap_or_default();
    ensure!(disposition.starts_with("attachment; filename=\"select-1-2-as-f-null-as-n"), "{disposition}");
    ensure!(csv.text() == "f,n,c,neg,q\r\n'=1+2,,\"a,b\",-5,\"say \"\"hi\"\"\"\r\n", "{:?}", csv.text());
    let not_a_table = call(&ed_console, "GET", &format!("/console/jobs/{from_project}/download.csv"), None).await?;
    ensure!(not_a_table.status == 409 && not_a_table.text().contains("not a table"), "{}", not_a_table.text());
    let svg = call(&ed_console, "GET", &format!("/console/jobs/{from_project}/download.svg"), None).await?;
    ensure!(svg.status == 200 && svg.text().starts_with("<svg"), "{} {}", svg.status, svg.text());
    ensure!(svg.header("content-disposition").as_deref() == Some("attachment; filename=\"orders-by-region.svg\""));
    ensure!(svg.header("content-security-policy").is_some_and(|c| c.contains("sandbox")));
    let not_a_chart = call(&ed_console, "GET", &format!("/console/jobs/{table}/download.svg"), None).await?;
    ensure!(not_a_chart.status == 409, "{}", not_a_chart.text());
    // Someone else's job: refused as its result would be.
    let theirs = call(&ed_console, "GET", &format!("/console/jobs/{named}/download.svg"), None).await?;
    ensure!(theirs.status == 403, "{} {}", theirs.status, theirs.text());
    let admin_console = session(&admin, "admin", &cp.admin_password).await?;
    let res = call(&admin_console, "GET", &format!("/console/jobs/{failed}/download.csv"), None).await?;
    ensure!(res.status == 409, "a failed job has nothing to download: {} {}", res.status, res.text());
    // The admin's console list: everyone's jobs, who asked, filtered by requester.
    let page = call(&admin_console, "GET", "/console/jobs", None).await?.text();
    ensure!(page.matches("data-job-row=").count() == 6, "{page}");
    ensure!(page.contains("<td data-requester><a href=\"/console/jobs?owner=ed\">ed</a></td>"), "{page}");
    let page = call(&admin_console, "GET", "/console/jobs?owner=ed&state=succeeded", None).await?.text();
    ensure!(page.matches("data-job-row=").count() == 3 && !page.contains(&format!("\"{named}\"")), "{page}");
    ensure!(page.contains("name=\"owner\" value=\"ed\""), "the requester filter keeps its value");
    // The downloads are audited as reads of the result.
    let audit = ok_json(&admin, "GET", "/v1/audit?action=jobs.result&limit=1000", None).await?;
    let by_ed = audit["events"].as_array().context("events")?.iter().filter(|e| e["actor"] == "ed").count();
    ensure!(by_ed >= 4, "{audit}");
    // A view-app viewer's page of the project's job: its name, its chart, no SQL, no Edit.
    let vi_console = session(&admin, "vi", TEST_PASSWORD).await?;
    let page = call(&vi_console, "GET", &format!("/console/jobs/{from_project}"), None).await?;
    let html = page.text();
    ensure!(page.status == 200 && html.contains("<h1>Orders by region</h1>"), "{} {html}", page.status);
    ensure!(!html.contains("SELECT") && !html.contains("data-edit") && !html.contains("data-rerun"), "{html}");
    let theirs = call(&vi_console, "GET", &format!("/console/jobs/{from_project}/download.svg"), None).await?;
    ensure!(theirs.status == 200, "a viewer of the chart may download it: {}", theirs.status);
    // The server re-checks what the console checks as one types.
    let res = call(
        &ed,
        "POST",
        "/v1/jobs",
        Some(&json!({ "agent": "edge-1", "connection": "sample", "sql": "SELECT 1", "render": { "kind": "bar", "x": "a", "y": [] } })),
    )
    .await?;
    ensure!(res.status == 400 && res.text().contains("render.y: must name at least one column"), "{}", res.text());
    Ok(())
}
