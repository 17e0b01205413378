//! A project's dashboard layout (issue 23, "Dashboards"; docs/DASHBOARDS.md), end to end
//! against the real binaries: `tiles` checked with the field named, kept on an update
//! without them (and refused when the queries no longer fit), shown to a view-app viewer
//! (texts too, never SQL), drawn in order and size on the console page and on the embed
//! page; and in Chromium (tests/browser/dashboard.mjs) edited, saved and reloaded.
//! Screenshots under `target/console-screenshots/dashboard/`.

use anyhow::{ensure, Context as _, Result};
use outpost_e2e::{call, ok_json, share_connection, signed_in, user_with_token, TEST_PASSWORD};
use serde_json::{json, Value};

use crate::console::{browser_dir, chromium, run_node, screenshots};

const BAR_SQL: &str = "SELECT region, SUM(amount) AS revenue FROM orders GROUP BY region ORDER BY region";
const TABLE_SQL: &str = "SELECT id, region, amount FROM orders ORDER BY id LIMIT 5";

fn query(name: &str, sql: &str, kind: &str) -> Value {
    let render = if kind == "bar" {
        json!({ "kind": "bar", "x": "region", "y": ["revenue"] })
    } else {
        json!({ "kind": "table" })
    };
    json!({ "name": name, "agent": "edge-1", "connection": "sample", "sql": sql, "render": render })
}

fn two_queries() -> Vec<Value> {
    vec![query("Revenue by region", BAR_SQL, "bar"), query("Orders", TABLE_SQL, "table")]
}

/// The positions in `html` of each needle, which must all be there.
fn positions(html: &str, needles: &[&str]) -> Result<Vec<usize>> {
    needles.iter().map(|n| html.find(n).with_context(|| format!("{n:?} not in:\n{html}"))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiles_are_checked_kept_shown_to_viewers_and_drawn_in_order_on_the_console_and_embed_pages() -> Result<()> {
    let root = tempfile::tempdir()?;
    let (cp, _edge) = outpost_e2e::start_pair(root.path(), "edge-1", "", &[]).await?;
    println!("store: {}", if cp.pg.is_some() { "PostgreSQL" } else { "SQLite" });
    let admin = cp.api()?;
    let ed = user_with_token(&admin, "ed", "editor").await?;
    let vi = user_with_token(&admin, "vi", "viewer").await?;
    share_connection(&admin, "edge-1", "sample", "ed").await?;

    // Each bad tile is refused with its field named and what is accepted.
    let four = [two_queries(), two_queries()].concat();
    for (tiles, queries, field, words) in [
        (
            json!([{ "query": 0 }, { "query": 1 }, { "query": 2 }, { "query": 7 }]),
            &four,
            "tiles[3].query",
            "query 7 does not exist (the project has 4",
        ),
        (json!([{ "query": 0, "w": 6 }, { "query": 1, "w": 13 }]), &four, "tiles[1].w", "1 to 12"),
        (json!([{ "query": 0, "h": 9 }]), &four, "tiles[0].h", "1 to 4"),
        (json!([{ "query": 1 }, { "query": 1 }]), &four, "tiles[1].query", "already on tiles[0]"),
        (json!([{ "text": "" }]), &four, "tiles[0].text", "must not be empty"),
        (json!([{ "text": "x".repeat(2001) }]), &four, "tiles[0].text", "at most 2000"),
        (json!([{ "text": "a", "html": "<b>" }]), &four, "tiles[0].html", "unknown field"),
    ] {
        let body = json!({ "name": "Bad", "queries": queries, "tiles": tiles });
        let res = call(&ed, "POST", "/v1/projects", Some(&body)).await?;
        let text = res.text();
        ensure!(
            res.status == 400 && text.contains(&format!("{field}: ")) && text.contains(words),
            "{field}: {} {text}",
            res.status
        );
    }

    // Without tiles: one per query, half width. With them: in order, the rest appended.
    let plain =
        ok_json(&ed, "POST", "/v1/projects", Some(&json!({ "name": "Plain", "queries": two_queries() }))).await?;
    ensure!(plain["tiles"] == json!([{ "query": 0, "w": 6, "h": 1 }, { "query": 1, "w": 6, "h": 1 }]), "{plain}");
    let text = "Revenue <b>by</b> region\nupdated nightly";
    let body = json!({ "name": "Sales", "queries": two_queries(),
        "tiles": [{ "text": text, "w": 12 }, { "query": 1, "w": 4, "h": 2 }] });
    let p = ok_json(&ed, "POST", "/v1/projects", Some(&body)).await?;
    let pid = p["id"].as_str().context("id")?.to_owned();
    let laid_out =
        json!([{ "text": text, "w": 12, "h": 1 }, { "query": 1, "w": 4, "h": 2 }, { "query": 0, "w": 6, "h": 1 }]);
    ensure!(p["tiles"] == laid_out, "missing queries are appended: {}", p["tiles"]);

    // An update without tiles keeps them; a third query gets a tile at the end.
    let three = [two_queries(), vec![query("More", TABLE_SQL, "table")]].concat();
    let put = ok_json(&ed, "PUT", &format!("/v1/projects/{pid}"), Some(&json!({ "name": "Sales", "queries": three })))
        .await?;
    ensure!(
        put["tiles"][3] == json!({ "query": 2, "w": 6, "h": 1 }) && put["tiles"][1] == laid_out[1],
        "{}",
        put["tiles"]
    );
    // One query left: tile 1 shows query 1, which would be gone.
    let one = json!({ "name": "Sales", "queries": [query("Revenue by region", BAR_SQL, "bar")] });
    let res = call(&ed, "PUT", &format!("/v1/projects/{pid}"), Some(&one)).await?;
    ensure!(res.status == 400 && res.text().contains("tiles[1].query: "), "{} {}", res.status, res.text());
    let put = ok_json(
        &ed,
        "PUT",
        &format!("/v1/projects/{pid}"),
        Some(&json!({ "name": "Sales", "queries": two_queries(),
        "tiles": laid_out })),
    )
    .await?;
    ensure!(put["tiles"] == laid_out, "{}", put["tiles"]);

    // A view-app viewer sees the layout, texts included, and no SQL.
    ok_json(&ed, "PUT", &format!("/v1/projects/{pid}/grants/vi"), Some(&json!({ "access": "view-app" }))).await?;
    let seen = ok_json(&vi, "GET", &format!("/v1/projects/{pid}"), None).await?;
    ensure!(seen["tiles"] == laid_out && !seen.to_string().contains("SELECT"), "{seen}");

    let run = ok_json(&ed, "POST", &format!("/v1/projects/{pid}/run"), Some(&json!({}))).await?;
    for j in run["jobs"].as_array().context("jobs")? {
        let id = j["id"].as_str().unwrap_or_default();
        ensure!(call(&ed, "GET", &format!("/v1/jobs/{id}/result?wait=30"), None).await?.status == 200);
    }

    // The console page: the grid in the project's order and sizes, the text escaped.
    let escaped = "Revenue &lt;b&gt;by&lt;/b&gt; region\nupdated nightly";
    for (user, editor) in [("ed", true), ("vi", false)] {
        let html = call(&signed_in(&ed, user).await?, "GET", &format!("/console/projects/{pid}"), None).await?.text();
        let at = positions(
            &html,
            &[
                "<div class=\"tiles\">",
                &format!("<section class=\"note tile w-12 h-1\" data-tile data-w=\"12\" data-h=\"1\" data-text><p class=\"tile-text\">{escaped}</p>"),
                "<section class=\"query tile w-4 h-2\" data-tile data-w=\"4\" data-h=\"2\" data-query=\"1\">",
                "<section class=\"query tile w-6 h-1\" data-tile data-w=\"6\" data-h=\"1\" data-query=\"0\">",
            ],
        )?;
        ensure!(at.windows(2).all(|w| w[0] < w[1]), "{user}: tiles out of order: {at:?}");
        ensure!(!html.contains("<b>by</b>"), "{user}: the text is not markup");
        ensure!(html.contains("data-dashboard-edit") == editor, "{user}: Edit dashboard only for editors");
        ensure!(html.contains("/console/assets/dashboard.js") == editor, "{user}: dashboard.js only for editors");
        ensure!(html.contains("data-sql") == editor, "{user}: SQL only for those who see it");
    }
    // A tile's "Edit query": the Query page prefilled, "Save to project" only for those
    // who may change the project (not for a view-logic collaborator).
    user_with_token(&admin, "lo", "editor").await?;
    ok_json(&admin, "POST", "/v1/shares", Some(&json!({ "agent": "edge-1", "connection": "sample", "user": "lo" })))
        .await?;
    ok_json(&ed, "PUT", &format!("/v1/projects/{pid}/grants/lo"), Some(&json!({ "access": "view-logic" }))).await?;
    let edit = format!("/console/query?project={pid}&index=1");
    for (user, may) in [("ed", true), ("lo", false)] {
        let html = call(&signed_in(&ed, user).await?, "GET", &edit, None).await?.text();
        ensure!(html.contains(TABLE_SQL) && html.contains("value=\"Orders\""), "{user}: not prefilled:\n{html}");
        let button = format!("data-project-replace=\"{pid}\" data-index=\"1\"");
        ensure!(html.contains(&button) == may, "{user}: Save to project shown: {}", !may);
        ensure!(html.contains("data-project-add") == may, "{user}: Add to project lists only projects one may edit");
    }
    let js = call(&signed_in(&ed, "ed").await?, "GET", "/console/assets/dashboard.js", None).await?;
    ensure!(js.status == 200 && js.header("content-type").is_some_and(|c| c.starts_with("text/javascript")));

    // The embed page follows the same tiles, texts too, and still shows no SQL.
    let token =
        ok_json(&ed, "POST", &format!("/v1/projects/{pid}/embed-tokens"), Some(&json!({ "customer": "North" })))
            .await?["token"]
            .as_str()
            .context("token")?
            .to_owned();
    let embed = call(&ed.with_token(None), "GET", &format!("/embed/dashboards/{pid}?token={token}"), None).await?;
    ensure!(embed.status == 200, "embed: {}", embed.status);
    let html = embed.text();
    let at = positions(
        &html,
        &[
            &format!("<section class=\"note tile w-12 h-1\" data-tile data-w=\"12\" data-h=\"1\" data-text><p class=\"tile-text\">{escaped}</p>"),
            "<section class=\"query tile w-4 h-2\" data-tile data-w=\"4\" data-h=\"2\" data-query=\"1\"><h2>Orders</h2>",
            "<section class=\"query tile w-6 h-1\" data-tile data-w=\"6\" data-h=\"1\" data-query=\"0\"><h2>Revenue by region</h2>",
        ],
    )?;
    ensure!(at.windows(2).all(|w| w[0] < w[1]), "embed tiles out of order: {at:?}");
    for secret in ["SELECT", "edge-1", "sample", "<script"] {
        ensure!(!html.contains(secret), "the embed page shows {secret:?}");
    }
    let api = ok_json(&ed.with_token(Some(&token)), "GET", "/v1/embed/project", None).await?;
    ensure!(api["tiles"] == laid_out, "{api}");

    // Query 1 replaced: the result kept under its position ran the old SQL and is no
    // longer shown as its result (to the project's viewers and to the embed page).
    let replaced =
        vec![query("Revenue by region", BAR_SQL, "bar"), query("Top orders", "SELECT id FROM orders LIMIT 1", "table")];
    ok_json(&ed, "PUT", &format!("/v1/projects/{pid}"), Some(&json!({ "name": "Sales", "queries": replaced }))).await?;
    let results = ok_json(&ed, "GET", &format!("/v1/projects/{pid}/results"), None).await?;
    ensure!(results["queries"][0]["job"].is_object() && results["queries"][1]["job"].is_null(), "{results}");
    let tile = call(&ed.with_token(Some(&token)), "GET", "/v1/embed/results/1", None).await?;
    ensure!(tile.status == 404, "the embed tile of the replaced query: {} {}", tile.status, tile.text());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_chromium_an_editor_adds_a_text_resizes_moves_saves_and_edits_a_tiles_query() -> Result<()> {
    browser_dir()?;
    chromium()?;
    let root = tempfile::tempdir()?;
    let (cp, _edge) = outpost_e2e::start_pair(root.path(), "edge-1", "", &[]).await?;
    let admin = cp.api()?;
    let ed = user_with_token(&admin, "ed", "editor").await?;
    share_connection(&admin, "edge-1", "sample", "ed").await?;
    let p = ok_json(&ed, "POST", "/v1/projects", Some(&json!({ "name": "Sales", "queries": two_queries() }))).await?;
    let pid = p["id"].as_str().context("id")?.to_owned();
    let run = ok_json(&ed, "POST", &format!("/v1/projects/{pid}/run"), Some(&json!({}))).await?;
    for j in run["jobs"].as_array().context("jobs")? {
        let id = j["id"].as_str().unwrap_or_default();
        ensure!(call(&ed, "GET", &format!("/v1/jobs/{id}/result?wait=30"), None).await?.status == 200);
    }
    let edited_sql = "SELECT id, amount FROM orders ORDER BY amount DESC LIMIT 3";
    let text = "Revenue by region\nupdated nightly";
    let out = tokio::task::spawn_blocking({
        let root = root.path().to_owned();
        let base = format!("https://localhost:{}", cp.api_addr.rsplit(':').next().unwrap_or_default());
        let pid = pid.clone();
        move || {
            run_node(
                "dashboard.mjs",
                &root,
                json!({ "base_url": base, "password": TEST_PASSWORD, "project": pid, "text": text,
                        "table_sql": TABLE_SQL, "edited_sql": edited_sql, "screenshots": screenshots("dashboard") }),
            )
        }
    })
    .await??;
    ensure!(
        out["after_save"]
            == json!([{ "kind": "text", "query": null, "w": 12, "h": 1 }, { "kind": "query", "query": 0, "w": 12, "h": 1 },
                      { "kind": "query", "query": 1, "w": 6, "h": 2 }]),
        "{out}"
    );
    // What the browser saved is what the API holds: one PUT of the whole project.
    let p = ok_json(&ed, "GET", &format!("/v1/projects/{pid}"), None).await?;
    ensure!(
        p["tiles"]
            == json!([{ "text": text, "w": 12, "h": 1 }, { "query": 0, "w": 12, "h": 1 }, { "query": 1, "w": 6, "h": 2 },
                      { "query": 2, "w": 6, "h": 1 }]),
        "{}",
        p["tiles"]
    );
    let names: Vec<&str> =
        p["queries"].as_array().context("queries")?.iter().filter_map(|q| q["name"].as_str()).collect();
    ensure!(names == ["Revenue by region", "Top orders", "All orders"], "{names:?}");
    ensure!(
        p["queries"][1]["sql"] == edited_sql && p["queries"][1]["render"]["kind"] == "table",
        "{}",
        p["queries"][1]
    );
    Ok(())
}
