//! Filters an embed's viewer may change (issue 23: "the end customer's parameters bound
//! from the embed token and filters the embedding app allows"), end to end against the
//! real binaries and the agent's sample data: the token names the parameters the viewer
//! may change (`viewer_filters`) beside those it fixes; the embed API refuses any other
//! value naming it; a change runs the dashboard for the customer once (not again while it
//! runs or while its result is recent), audited under the customer; the script-free embed
//! page shows a filter bar for those parameters only and the numbers of the values chosen;
//! and, in real Chromium, framed by a page of another origin, its viewer applies another
//! region and the frame shows that region's numbers (screenshots under
//! `target/console-screenshots/embed-filters/`).
//!
//! Runs on the backend `OUTPOST_TEST_STORE` names (SQLite by default, `postgres`).

use anyhow::{ensure, Context as _, Result};
use outpost_e2e::{call, ok_json};
use serde_json::{json, Value};

use crate::console::{browser_dir, chromium, run_node, screenshots};
use crate::dashboard_filters::{enc, regional};
use crate::embed_page::{embed_frame_src, framed_pair, host_html, host_page};

/// `?filters=…` of `f`.
fn q(f: &Value) -> String {
    format!("filters={}", enc(&f.to_string()))
}

fn message(r: &outpost_e2e::client::HttpResponse) -> String {
    r.json().ok().and_then(|v| v["message"].as_str().map(str::to_owned)).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embed_viewer_changes_only_the_filters_the_token_allows_and_the_dashboard_runs_for_them() -> Result<()> {
    let root = tempfile::tempdir()?;
    let (cp, _edge) = outpost_e2e::start_pair(root.path(), "edge-1", "", &[]).await?;
    let (admin, ed, pid) = regional(&cp).await?;
    let tokens = format!("/v1/projects/{pid}/embed-tokens");
    let half = json!({ "period": { "from": "2025-01-01", "to": "2025-06-30" } });

    // The token's request is checked, naming the entry.
    for (body, says) in [
        (
            json!({ "customer": "acme", "viewer_filters": ["regon"] }),
            "viewer_filters[0]: \"regon\" is not a parameter of this dashboard (region, period)",
        ),
        (
            json!({ "customer": "acme", "filters": half, "viewer_filters": ["region", "period"] }),
            "viewer_filters[1]: \"period\" is fixed by the token's filters",
        ),
        (
            json!({ "customer": "acme", "viewer_filters": ["region", "region"] }),
            "viewer_filters[1]: \"region\" is named twice",
        ),
    ] {
        let r = call(&ed, "POST", &tokens, Some(&body)).await?;
        ensure!(r.status == 400 && message(&r) == says, "{}: {}", r.status, message(&r));
    }
    let t = ok_json(
        &ed,
        "POST",
        &tokens,
        Some(&json!({ "customer": "acme", "filters": half,
                                                         "viewer_filters": ["region"] })),
    )
    .await?;
    ensure!(t["viewer_filters"] == json!(["region"]) && t["filters"] == half, "{t}");
    let token = t["token"].as_str().context("token")?.to_owned();
    let embed = ed.with_token(Some(&token));
    let v = ok_json(&embed, "GET", "/v1/embed/project", None).await?;
    ensure!(v["viewer_filters"] == json!(["region"]) && v["filters"]["region"] == "North", "{v}");
    ensure!(v["filters"]["period"]["to"] == "2025-06-30", "the token's period: {v}");

    // Any other value is refused, naming it: a fixed one, and one of no token's choosing.
    let r = call(&embed, "GET", &format!("/v1/embed/project?{}", q(&half)), None).await?;
    ensure!(
        r.status == 400 && message(&r) == "filters.period: is fixed by the embed token and cannot be changed",
        "{}: {}",
        r.status,
        message(&r)
    );
    let apac = json!({ "region": "APAC" });
    let r = call(&embed, "GET", &format!("/v1/embed/results/0?{}", q(&apac)), None).await?;
    ensure!(
        r.status == 400 && message(&r).starts_with("filters.region: \"APAC\" is not one of its choices"),
        "{}",
        message(&r)
    );
    let other = ed.with_token(Some(
        ok_json(&ed, "POST", &tokens, Some(&json!({ "customer": "acme" }))).await?["token"]
            .as_str()
            .context("token")?,
    ));
    let r = call(&other, "GET", &format!("/v1/embed/results/0?{}", q(&json!({ "region": "East" }))), None).await?;
    ensure!(
        r.status == 400
            && message(&r) == "filters.region: this embed does not let its viewer change it (they may change: none)",
        "{}: {}",
        r.status,
        message(&r)
    );
    // A token that lets its viewer change nothing runs nothing, as before.
    let r = call(&other, "POST", "/v1/embed/run", Some(&json!({}))).await?;
    ensure!(r.status == 403 && message(&r).contains("runs nothing"), "{}: {}", r.status, message(&r));

    // The viewer picks East: the dashboard runs for the customer, once.
    let east = json!({ "region": "East" });
    let r = call(&embed, "POST", "/v1/embed/run", Some(&json!({ "filters": east }))).await?;
    let first = r.json()?;
    ensure!(r.status == 202, "{}: {first}", r.status);
    let outcomes: Vec<&str> =
        first["runs"].as_array().context("runs")?.iter().filter_map(|x| x["outcome"].as_str()).collect();
    ensure!(outcomes == ["queued", "queued"], "nothing ran for these values before: {first}");
    let r = call(&embed, "GET", &format!("/v1/embed/results/0?{}&wait=30", q(&east)), None).await?;
    ensure!(r.status == 200 && r.text().contains("East") && !r.text().contains("North"), "{}: {}", r.status, r.text());
    let r = call(&embed, "POST", "/v1/embed/run", Some(&json!({ "filters": east }))).await?;
    let again = r.json()?;
    for (a, b) in first["runs"].as_array().context("runs")?.iter().zip(again["runs"].as_array().context("runs")?) {
        ensure!(a["job"] == b["job"] && b["outcome"] != "queued", "no second run while the first is recent: {again}");
    }
    // Audited under the customer, with what ran.
    let audit = ok_json(&admin, "GET", "/v1/audit?actor=embed:acme&action=embed.run&outcome=ok", None).await?;
    let events = audit["events"].as_array().context("events")?;
    ensure!(events.len() == 2, "{audit}");
    ensure!(events.iter().any(|e| e["detail"]["runs"] == first["runs"]), "the runs are in the record: {audit}");
    // The jobs run as the project's owner.
    let job =
        ok_json(&ed, "GET", &format!("/v1/jobs/{}", first["runs"][0]["job"].as_str().context("job")?), None).await?;
    ensure!(job["requester"] == "ed", "{job}");

    // The page: a bar for the region only (with the token to send back), the period said
    // in words, and East's numbers; the address cannot change the period.
    let anon = ed.with_token(None);
    let url =
        format!("/embed/dashboards/{pid}?token={token}&f.region=East&f.period.from=2024-01-01&f.period.to=2026-01-01");
    let r = call(&anon, "GET", &url, None).await?;
    let html = r.text();
    ensure!(r.status == 200, "{}:\n{html}", r.status);
    ensure!(
        html.contains("<option value=\"East\" selected>East</option>"),
        "the bar shows the viewer's value:\n{html}"
    );
    ensure!(html.contains(&format!("name=\"token\" value=\"{token}\"")), "Apply keeps the token");
    ensure!(!html.contains("name=\"f.period.from\""), "no field for a fixed filter:\n{html}");
    ensure!(html.contains("Period: 2025-01-01..2025-06-30"), "the token's period, not the address's:\n{html}");
    ensure!(html.contains("<td>East</td>") && !html.contains("<td>North</td>"), "East's numbers:\n{html}");
    let csp = r.header("content-security-policy").unwrap_or_default();
    ensure!(csp.contains("form-action 'self'") && csp.contains("default-src 'none'"), "{csp}");
    ensure!(
        !html.contains("SELECT") && !html.contains("edge-1") && !html.contains("sample"),
        "no SQL or names:\n{html}"
    );
    // A refused value is said beside the bar; nothing is shown or run for it.
    let r = call(&anon, "GET", &format!("/embed/dashboards/{pid}?token={token}&f.region=APAC"), None).await?;
    let html = r.text();
    ensure!(r.status == 400 && html.contains("data-filters-error") && html.contains("APAC"), "{}:\n{html}", r.status);
    ensure!(!html.contains("class=\"tiles\""), "no tiles for a refused value:\n{html}");
    Ok(())
}

/// The rows (as text) of query 0's table for the embed's `filters`, read through the
/// embed API with its token.
async fn rows_of(embed: &outpost_e2e::client::Api, filters: &Value) -> Result<Value> {
    let r = call(embed, "GET", &format!("/v1/embed/results/0?{}", q(filters)), None).await?;
    ensure!(r.status == 200, "{}: {}", r.status, r.text());
    let v = r.json()?;
    let rows = v["rows"].as_array().context("rows")?;
    Ok(rows
        .iter()
        .map(|row| {
            row.as_array()
                .into_iter()
                .flatten()
                .map(|c| c.as_str().map_or_else(|| c.to_string(), str::to_owned))
                .collect::<Vec<_>>()
        })
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_chromium_a_framed_embeds_viewer_applies_a_region_and_the_frame_shows_its_numbers() -> Result<()> {
    browser_dir()?;
    chromium()?;
    let root = tempfile::tempdir()?;
    // The host application's page frames the URL after its `#` (see embed_page.rs).
    let host = format!("http://127.0.0.1:{}", host_page(host_html("Orders")).await?);
    let (cp, _agent) = framed_pair(root.path(), &[&host]).await?;
    let (admin, ed, pid) = regional(&cp).await?;
    let half = json!({ "period": { "from": "2025-01-01", "to": "2025-06-30" } });
    let t = ok_json(
        &ed,
        "POST",
        &format!("/v1/projects/{pid}/embed-tokens"),
        Some(&json!({ "customer": "acme", "filters": half, "viewer_filters": ["region"] })),
    )
    .await?;
    let token = t["token"].as_str().context("token")?.to_owned();
    let frame_src = embed_frame_src(&cp, &pid, &token);

    let out = tokio::task::spawn_blocking({
        let root = root.path().to_owned();
        move || {
            run_node(
                "embed-filters.mjs",
                &root,
                json!({ "host": host, "frame_src": frame_src, "screenshots": screenshots("embed-filters") }),
            )
        }
    })
    .await??;
    // What the frame showed is what the embed API holds for those values: the page ran
    // the token's values (North by default), then South's once the viewer applied it.
    let embed = ed.with_token(Some(&token));
    let north = rows_of(&embed, &json!({ "region": "North" })).await?;
    let south = rows_of(&embed, &json!({ "region": "South" })).await?;
    ensure!(north[0][0] == "North" && south[0][0] == "South", "{north} {south}");
    ensure!(out["north"] == north, "the frame showed North's rows: {out} (API: {north})");
    ensure!(out["south"] == south, "after Apply, South's rows: {out} (API: {south})");
    // Both runs are audited under the customer, with the values they ran for: the first
    // framing's (North) and the viewer's change (South), each with the token's period.
    let audit = ok_json(&admin, "GET", "/v1/audit?actor=embed:acme&action=embed.run&outcome=ok", None).await?;
    let events = audit["events"].as_array().context("events")?;
    for region in ["North", "South"] {
        let ran = |e: &&Value| {
            e["detail"]["filters"]["region"] == region && e["detail"]["filters"]["period"] == half["period"]
        };
        ensure!(events.iter().any(|e| ran(&e)), "an embed.run for {region} with the token's period: {audit}");
    }
    Ok(())
}
