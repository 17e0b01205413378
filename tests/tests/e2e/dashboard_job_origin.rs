//! A dashboard job says where it came from (issue 23: "the job page shows the project,
//! the tile and the filter values it ran with"): `GET /v1/jobs/{id}` gives the values by
//! parameter name, and the console's job page says "From project …, tile …" with a link
//! back to the dashboard at those values, and the values in words. Only those who may read
//! the job see them.
//!
//! Runs on the backend `OUTPOST_TEST_STORE` names (SQLite by default, `postgres`).

use anyhow::{ensure, Context as _, Result};
use outpost_e2e::{call, ok_json, share_connection, signed_in, user_with_token};
use serde_json::json;

const SQL: &str = "SELECT region, COUNT(*) AS n FROM orders \
                   WHERE region = $1 AND month || '-01' BETWEEN $2 AND $3 GROUP BY region";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dashboard_jobs_page_names_its_project_tile_and_filter_values() -> Result<()> {
    let root = tempfile::tempdir()?;
    let (cp, _edge) = outpost_e2e::start_pair(root.path(), "edge-1", "", &[]).await?;
    println!("store: {}", if cp.pg.is_some() { "PostgreSQL" } else { "SQLite" });
    let admin = cp.api()?;
    let ed = user_with_token(&admin, "ed", "editor").await?;
    share_connection(&admin, "edge-1", "sample", "ed").await?;
    let body = json!({ "name": "Regional <sales>", "parameters": [
            { "name": "region", "label": "Region", "kind": "choice", "choices": ["North", "South"], "default": "North" },
            { "name": "period", "kind": "date_range", "default": { "from": "2025-01-01", "to": "2025-12-31" } }],
        "queries": [
            { "name": "Orders in region", "agent": "edge-1", "connection": "sample", "sql": SQL,
              "render": { "kind": "table" }, "bind": { "1": "region", "2": "period.from", "3": "period.to" } },
            { "name": "All orders", "agent": "edge-1", "connection": "sample",
              "sql": "SELECT COUNT(*) AS total FROM orders", "render": { "kind": "table" } }]});
    let p = ok_json(&ed, "POST", "/v1/projects", Some(&body)).await?;
    let pid = p["id"].as_str().context("project id")?.to_owned();
    let filters = json!({ "region": "South", "period": { "from": "2025-02-01", "to": "2025-03-31" } });
    let r = ok_json(&ed, "POST", &format!("/v1/projects/{pid}/run"), Some(&json!({ "filters": filters }))).await?;
    let bound = r["jobs"][0]["id"].as_str().context("job 0")?.to_owned();
    let unbound = r["jobs"][1]["id"].as_str().context("job 1")?.to_owned();

    // The API: the values the query bound, by parameter name; none for a query binding none.
    let j = ok_json(&ed, "GET", &format!("/v1/jobs/{bound}"), None).await?;
    ensure!(j["filters"] == filters, "the job's values: {j}");
    ensure!(j["project_id"] == pid.as_str() && j["query_index"] == 0, "{j}");
    let j = ok_json(&ed, "GET", &format!("/v1/jobs/{unbound}"), None).await?;
    ensure!(j.get("filters").is_none(), "a query binding nothing ran with no filter values: {j}");

    // The console's job page: where it came from, a link back at those values, the values in words.
    let web = signed_in(&ed, "ed").await?;
    let page = call(&web, "GET", &format!("/console/jobs/{bound}"), None).await?;
    let html = page.text();
    ensure!(page.status == 200, "{}:\n{html}", page.status);
    let link = format!(
        "From project <a href=\"/console/projects/{pid}?f.period=2025-02-01..2025-03-31&amp;f.region=South\" \
         data-job-project>Regional &lt;sales&gt;</a>, tile <strong>Orders in region</strong>"
    );
    ensure!(html.contains(&link), "the origin, escaped, linking back with the values:\n{html}");
    ensure!(html.contains("<li data-job-filter=\"region\">Region = South</li>"), "the region in words:\n{html}");
    ensure!(html.contains("<li data-job-filter=\"period\">period = 2025-02-01 .. 2025-03-31</li>"), "{html}");
    // The link opens the dashboard at those values.
    let back =
        call(&web, "GET", &format!("/console/projects/{pid}?f.period=2025-02-01..2025-03-31&f.region=South"), None)
            .await?
            .text();
    ensure!(back.contains("<option value=\"South\" selected>South</option>"), "the dashboard at South:\n{back}");
    ensure!(back.contains("name=\"f.period.from\" value=\"2025-02-01\""), "and at that period:\n{back}");
    let html = call(&web, "GET", &format!("/console/jobs/{unbound}"), None).await?.text();
    ensure!(html.contains("tile <strong>All orders</strong>") && !html.contains("data-job-filters"), "{html}");

    // A viewer of the dashboard reads the job and its values; someone else reads neither.
    let vi = user_with_token(&admin, "vi", "viewer").await?;
    ok_json(&ed, "PUT", &format!("/v1/projects/{pid}/grants/vi"), Some(&json!({ "access": "view-app" }))).await?;
    let j = ok_json(&vi, "GET", &format!("/v1/jobs/{bound}"), None).await?;
    ensure!(j["filters"] == filters, "a viewer sees the values its dashboard ran with: {j}");
    let out = user_with_token(&admin, "out", "viewer").await?;
    let r = call(&out, "GET", &format!("/v1/jobs/{bound}"), None).await?;
    ensure!(r.status == 403 && !r.text().contains("South"), "{}: {}", r.status, r.text());
    let web = signed_in(&out, "out").await?;
    let r = call(&web, "GET", &format!("/console/jobs/{bound}"), None).await?;
    ensure!(r.status == 403 && !r.text().contains("South"), "{}: {}", r.status, r.text());
    Ok(())
}
