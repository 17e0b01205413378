//! Dashboard parameters as filters (issue 23: "Parameters … bound to query parameters,
//! shown as filters at the top, carried in the URL"), end to end against the real
//! binaries and the agent's sample SQLite data: a `choice` and a `date_range` bound into
//! `WHERE region = $1 AND … BETWEEN $2 AND $3`; runs with two regions give different
//! results, each found by its filter values (and a query that binds none shares its
//! result); bad definitions and values are refused naming the field; the console's
//! project page with `?f.region=…` shows that region's result, or says there is none yet;
//! an embed token fixes filters that the embed's address cannot change.
//!
//! Runs on the backend `OUTPOST_TEST_STORE` names (SQLite by default, `postgres`).

use anyhow::{ensure, Context as _, Result};
use outpost_e2e::client::Api;
use outpost_e2e::{call, ok_json, share_connection, signed_in, user_with_token, TEST_PASSWORD};
use serde_json::{json, Value};

use crate::console::{browser_dir, chromium, run_node, screenshots};

pub(crate) const SQL: &str = "SELECT region, COUNT(*) AS n FROM orders \
                   WHERE region = $1 AND month || '-01' BETWEEN $2 AND $3 GROUP BY region";

pub(crate) fn project(parameters: Value, bind: Value) -> Value {
    json!({ "name": "Regional", "parameters": parameters, "queries": [
        { "name": "Orders in region", "agent": "edge-1", "connection": "sample", "sql": SQL,
          "render": { "kind": "table" }, "bind": bind },
        { "name": "All orders", "agent": "edge-1", "connection": "sample",
          "sql": "SELECT COUNT(*) AS total FROM orders", "render": { "kind": "table" } }
    ]})
}

pub(crate) fn parameters(default_region: &str) -> Value {
    json!([
        { "name": "region", "label": "Region", "kind": "choice", "choices": ["North", "South", "East"],
          "default": default_region },
        { "name": "period", "label": "Period", "kind": "date_range",
          "default": { "from": "2025-01-01", "to": "2025-12-31" } }
    ])
}

pub(crate) fn enc(s: &str) -> String {
    s.bytes().map(|b| if b.is_ascii_alphanumeric() { char::from(b).to_string() } else { format!("%{b:02X}") }).collect()
}

/// Runs the project with `filters` and waits for its jobs; their ids by query.
async fn run(api: &Api, pid: &str, filters: Value) -> Result<Vec<String>> {
    let r = ok_json(api, "POST", &format!("/v1/projects/{pid}/run"), Some(&json!({ "filters": filters }))).await?;
    let mut ids = Vec::new();
    for j in r["jobs"].as_array().context("jobs")? {
        let id = j["id"].as_str().context("id")?.to_owned();
        let _ = call(api, "GET", &format!("/v1/jobs/{id}/result?wait=30"), None).await?;
        ids.push(id);
    }
    Ok(ids)
}

/// The job ids `GET …/results` shows per query for `filters` (none: the defaults).
async fn shown(api: &Api, pid: &str, filters: Option<Value>) -> Result<Vec<Option<String>>> {
    let q = filters.map(|f| format!("?filters={}", enc(&f.to_string()))).unwrap_or_default();
    let v = ok_json(api, "GET", &format!("/v1/projects/{pid}/results{q}"), None).await?;
    Ok(v["queries"].as_array().context("queries")?.iter().map(|q| q["job"]["id"].as_str().map(str::to_owned)).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_choose_the_results_and_are_carried_in_the_console_url() -> Result<()> {
    let root = tempfile::tempdir()?;
    let (cp, _edge) = outpost_e2e::start_pair(root.path(), "edge-1", "", &[]).await?;
    println!("store: {}", if cp.pg.is_some() { "PostgreSQL" } else { "SQLite" });
    let admin = cp.api()?;
    let ed = user_with_token(&admin, "ed", "editor").await?;
    share_connection(&admin, "edge-1", "sample", "ed").await?;
    let bind = json!({ "1": "region", "2": "period.from", "3": "period.to" });

    // Bad definitions are refused, naming the field.
    for (body, starts) in [
        (project(parameters("APAC"), bind.clone()), "parameters[0].default: \"APAC\" is not one of its choices"),
        (
            project(parameters("North"), json!({ "1": "regon", "2": "period.from", "3": "period.to" })),
            "queries[0].bind.1: no parameter \"regon\" (did you mean \"region\"?)",
        ),
        (
            {
                let mut b =
                    project(parameters("North"), json!({ "1": "region", "2": "period.from", "3": "period.to" }));
                b["queries"][0]["customer_param"] = json!(0);
                b
            },
            "queries[0].customer_param: must be a parameter position from 1 to",
        ),
    ] {
        let r = call(&ed, "POST", "/v1/projects", Some(&body)).await?;
        let m = r.json()?["message"].as_str().unwrap_or_default().to_owned();
        ensure!(r.status == 400 && m.starts_with(starts), "{}: {m}", r.status);
    }

    let p = ok_json(&ed, "POST", "/v1/projects", Some(&project(parameters("North"), bind))).await?;
    let pid = p["id"].as_str().context("project id")?.to_owned();
    ensure!(p["parameters"][1]["kind"] == "date_range", "the parameters are shown: {p}");
    ensure!(p["queries"][0]["bind"]["1"] == "region", "the owner sees the bindings: {p}");

    // Two runs with different regions: different results, each found by its values.
    let south = run(&ed, &pid, json!({ "region": "South" })).await?;
    let north = run(&ed, &pid, json!({})).await?;
    let body = |id: &str| {
        let (api, id) = (&ed, id.to_owned());
        async move { Ok::<_, anyhow::Error>(call(api, "GET", &format!("/v1/jobs/{id}/result"), None).await?.text()) }
    };
    let (s, n) = (body(&south[0]).await?, body(&north[0]).await?);
    ensure!(s.contains("South") && !s.contains("North"), "the South run: {s}");
    ensure!(n.contains("North") && !n.contains("South"), "the default (North) run: {n}");
    let got = shown(&ed, &pid, Some(json!({ "region": "South" }))).await?;
    ensure!(got == [Some(south[0].clone()), Some(north[1].clone())], "South: {got:?} (runs {south:?} {north:?})");
    let got = shown(&ed, &pid, None).await?;
    ensure!(got == [Some(north[0].clone()), Some(north[1].clone())], "defaults: {got:?}");
    let explicit = json!({ "region": "North", "period": { "from": "2025-01-01", "to": "2025-12-31" } });
    ensure!(shown(&ed, &pid, Some(explicit)).await? == got, "the defaults given explicitly are the same values");
    let got = shown(&ed, &pid, Some(json!({ "region": "East" }))).await?;
    ensure!(got == [None, Some(north[1].clone())], "East never ran; the unbound query's result is shared: {got:?}");

    // A view-app viewer sees the parameters and the filtered results, never bind or SQL.
    let vi = user_with_token(&admin, "vi", "viewer").await?;
    ok_json(&ed, "PUT", &format!("/v1/projects/{pid}/grants/vi"), Some(&json!({ "access": "view-app" }))).await?;
    let seen = ok_json(&vi, "GET", &format!("/v1/projects/{pid}"), None).await?;
    ensure!(seen["parameters"][0]["choices"] == json!(["North", "South", "East"]), "{seen}");
    let text = seen.to_string();
    ensure!(!text.contains("bind") && !text.contains("SELECT") && !text.contains("period.from"), "{text}");
    ensure!(shown(&vi, &pid, Some(json!({ "region": "South" }))).await?[0] == Some(south[0].clone()), "viewer, South");

    // Bad values are refused, naming the filter.
    let r = call(&ed, "POST", &format!("/v1/projects/{pid}/run"), Some(&json!({ "filters": { "region": "APAC" } })))
        .await?;
    let m = r.json()?["message"].as_str().unwrap_or_default().to_owned();
    ensure!(r.status == 400 && m.starts_with("filters.region: \"APAC\" is not one of its choices"), "{m}");
    let bad = json!({ "period": { "from": "2025-03-01", "to": "2025-02-01" } });
    let r = call(&ed, "GET", &format!("/v1/projects/{pid}/results?filters={}", enc(&bad.to_string())), None).await?;
    let m = r.json()?["message"].as_str().unwrap_or_default().to_owned();
    ensure!(r.status == 400 && m.starts_with("filters.period: "), "{m}");

    // The console: the filter bar at the top, values from the URL, that region's result.
    let browser = signed_in(&ed, "ed").await?;
    let page = |q: &str| {
        let (b, url) = (&browser, format!("/console/projects/{pid}{q}"));
        async move {
            let r = call(b, "GET", &url, None).await?;
            ensure!(r.status == 200, "{url}: {}", r.status);
            Ok::<_, anyhow::Error>(r.text())
        }
    };
    let html = page("?f.region=South").await?;
    ensure!(html.contains("<option value=\"South\" selected>South</option>"), "the bar shows the URL's value:\n{html}");
    ensure!(html.contains("name=\"f.period.from\" value=\"2025-01-01\""), "the range's default is shown");
    ensure!(html.contains("<td>South</td>") || html.contains(">South<"), "South's result:\n{html}");
    ensure!(html.contains("name=\"filters.region\" value=\"South\""), "Refresh runs with the values shown");
    let html = page("?f.period=2025-01-01..2025-12-31").await?;
    ensure!(html.contains("<option value=\"North\" selected>North</option>"), "the default region:\n{html}");
    let html = page("?f.region=East").await?;
    ensure!(html.contains("data-no-result"), "East says there is no result yet:\n{html}");
    let html = page("?f.region=APAC").await?;
    ensure!(html.contains("data-filters-error") && html.contains("filters.region"), "a refused value is said:\n{html}");

    // An embed token fixes filters (a signed claim): the embed API and page show those.
    let body = json!({ "customer": "acme", "filters": { "region": "APAC" } });
    let r = call(&ed, "POST", &format!("/v1/projects/{pid}/embed-tokens"), Some(&body)).await?;
    let m = r.json()?["message"].as_str().unwrap_or_default().to_owned();
    ensure!(r.status == 400 && m.starts_with("filters.region: "), "{}: {m}", r.status);
    let body = json!({ "customer": "acme", "filters": { "region": "South" } });
    let t = ok_json(&ed, "POST", &format!("/v1/projects/{pid}/embed-tokens"), Some(&body)).await?;
    ensure!(t["filters"] == json!({ "region": "South" }), "the fixed filters are said: {t}");
    let token = t["token"].as_str().context("token")?.to_owned();
    let embed = ed.with_token(Some(&token));
    let v = ok_json(&embed, "GET", "/v1/embed/project", None).await?;
    ensure!(v["filters"]["region"] == "South" && v["filters"]["period"]["from"] == "2025-01-01", "{v}");
    let r = call(&embed, "GET", "/v1/embed/results/0", None).await?;
    ensure!(r.status == 200 && r.text().contains("South") && !r.text().contains("North"), "{}", r.text());
    // Nothing in the page's address changes them.
    let anon = ed.with_token(None);
    let url = format!("/embed/dashboards/{pid}?token={token}&f.region=North&filters=%7B%22region%22%3A%22North%22%7D");
    let r = call(&anon, "GET", &url, None).await?;
    let html = r.text();
    ensure!(r.status == 200 && html.contains("Region: South"), "{}:\n{html}", r.status);
    ensure!(html.contains(">South<") && !html.contains(">North<"), "South's numbers only:\n{html}");
    Ok(())
}

/// A choice filled by a query: its choices are the regions the second query lists, once
/// it has a result; a run with a listed value works, an unlisted one is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_choice_filled_by_a_query_lists_its_values() -> Result<()> {
    let root = tempfile::tempdir()?;
    let (cp, _edge) = outpost_e2e::start_pair(root.path(), "edge-1", "", &[]).await?;
    let root_api = cp.api()?;
    let admin = user_with_token(&root_api, "ed", "editor").await?;
    share_connection(&root_api, "edge-1", "sample", "ed").await?;
    let from = |query: usize| {
        json!([{ "name": "region", "label": "Region", "kind": "choice",
                 "choices_from": { "query": query, "column": "region" } },
               { "name": "period", "kind": "date_range", "default": { "from": "2025-01-01", "to": "2025-12-31" } }])
    };
    let body = |query: usize| {
        let mut b = project(from(query), json!({ "1": "region", "2": "period.from", "3": "period.to" }));
        b["queries"][1]["sql"] = json!("SELECT DISTINCT region FROM orders ORDER BY region");
        b
    };
    for (b, starts) in [
        (body(2), "parameters[0].choices_from.query: there is no query 2"),
        (body(0), "parameters[0].choices_from.query: query 0 binds \"region\" itself"),
    ] {
        let r = call(&admin, "POST", "/v1/projects", Some(&b)).await?;
        let m = r.json()?["message"].as_str().unwrap_or_default().to_owned();
        ensure!(r.status == 400 && m.starts_with(starts), "{}: {m}", r.status);
    }
    let p = ok_json(&admin, "POST", "/v1/projects", Some(&body(1))).await?;
    let pid = p["id"].as_str().context("project id")?.to_owned();
    ensure!(p["parameters"][0]["choices"] == json!([]), "no result yet, no choices: {p}");
    let r =
        call(&admin, "POST", &format!("/v1/projects/{pid}/run"), Some(&json!({ "filters": { "region": "North" } })))
            .await?;
    let m = r.json()?["message"].as_str().unwrap_or_default().to_owned();
    ensure!(r.status == 400 && m.contains("run the dashboard once to fill it"), "{}: {m}", r.status);

    // The first run (the region left to its default) fills the list.
    run(&admin, &pid, json!({})).await?;
    let p = ok_json(&admin, "GET", &format!("/v1/projects/{pid}"), None).await?;
    let choices = p["parameters"][0]["choices"].as_array().context("choices")?.clone();
    ensure!(choices.contains(&json!("North")) && choices.contains(&json!("South")), "the regions: {p}");
    ensure!(p["parameters"][0]["choices_from"]["column"] == "region", "{p}");
    let south = run(&admin, &pid, json!({ "region": "South" })).await?;
    let s = call(&admin, "GET", &format!("/v1/jobs/{}/result", south[0]), None).await?.text();
    ensure!(s.contains("South") && !s.contains("North"), "the South run: {s}");
    let r =
        call(&admin, "POST", &format!("/v1/projects/{pid}/run"), Some(&json!({ "filters": { "region": "Atlantis" } })))
            .await?;
    let m = r.json()?["message"].as_str().unwrap_or_default().to_owned();
    ensure!(
        r.status == 400 && m.starts_with("filters.region: \"Atlantis\" is not one of its choices ("),
        "{}: {m}",
        r.status
    );
    // The console's filter bar offers them.
    let web = signed_in(&admin, "ed").await?;
    let page = call(&web, "GET", &format!("/console/projects/{pid}?f.region=South"), None).await?;
    let html = page.text();
    ensure!(page.status == 200 && html.contains("<option value=\"South\" selected>"), "{}:\n{html}", page.status);
    Ok(())
}

/// An editor `ed` with the sample connection, and the Regional project (default North) of
/// theirs: (admin, ed, project id).
pub(crate) async fn regional(cp: &outpost_e2e::ControlPlane) -> Result<(Api, Api, String)> {
    let admin = cp.api()?;
    let ed = user_with_token(&admin, "ed", "editor").await?;
    share_connection(&admin, "edge-1", "sample", "ed").await?;
    let bind = json!({ "1": "region", "2": "period.from", "3": "period.to" });
    let p = ok_json(&ed, "POST", "/v1/projects", Some(&project(parameters("North"), bind))).await?;
    let pid = p["id"].as_str().context("project id")?.to_owned();
    Ok((admin, ed, pid))
}

/// Runs browser script `script` against project `pid` as `ed`; what it saw.
async fn in_chromium(
    cp: &outpost_e2e::ControlPlane,
    root: &std::path::Path,
    script: &'static str,
    pid: &str,
    shots: &'static str,
) -> Result<Value> {
    let base = format!("https://localhost:{}", cp.api_addr.rsplit(':').next().unwrap_or_default());
    let cfg = json!({ "base_url": base, "password": TEST_PASSWORD, "project": pid, "screenshots": screenshots(shots) });
    let root = root.to_owned();
    tokio::task::spawn_blocking(move || run_node(script, &root, cfg)).await?
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_chromium_apply_carries_filters_in_the_address_and_refresh_runs_with_them() -> Result<()> {
    browser_dir()?;
    chromium()?;
    let root = tempfile::tempdir()?;
    let (cp, _edge) = outpost_e2e::start_pair(root.path(), "edge-1", "", &[]).await?;
    let (_, ed, pid) = regional(&cp).await?;
    let out = in_chromium(&cp, root.path(), "filters.mjs", &pid, "dashboard-filters").await?;
    ensure!(out["errors"] == json!([]), "errors in the page: {out}");
    // The browser's Refresh ran with the values it showed: the job is found by them.
    let f = json!({ "region": "South", "period": { "from": "2025-02-01", "to": "2025-03-31" } });
    let got = shown(&ed, &pid, Some(f)).await?;
    ensure!(got[0].is_some(), "the run from the browser is found by its values: {got:?}");
    ensure!(shown(&ed, &pid, None).await?[0].is_none(), "and not by the defaults");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_chromium_an_editor_binds_a_querys_positions_to_filters() -> Result<()> {
    browser_dir()?;
    chromium()?;
    let root = tempfile::tempdir()?;
    let (cp, _edge) = outpost_e2e::start_pair(root.path(), "edge-1", "", &[]).await?;
    let admin = cp.api()?;
    let ed = user_with_token(&admin, "ed", "editor").await?;
    share_connection(&admin, "edge-1", "sample", "ed").await?;
    let mut params = parameters("North");
    params.as_array_mut().context("parameters")?.push(json!({ "name": "other_region", "label": "Compared region",
        "kind": "choice", "choices": ["North", "South"], "default": "South" }));
    let bind = json!({ "1": "region", "2": "period.from", "3": "period.to" });
    let p = ok_json(&ed, "POST", "/v1/projects", Some(&project(params, bind))).await?;
    let pid = p["id"].as_str().context("project id")?.to_owned();
    let out = in_chromium(&cp, root.path(), "bindings.mjs", &pid, "dashboard-bindings").await?;
    ensure!(out["errors"] == json!([]), "errors in the page: {out}");
    ensure!(out["refused"].as_array().map(Vec::len) == Some(1), "one refused save: {out}");
    // The saved query binds what the browser chose, through the API's PUT.
    let p = ok_json(&ed, "GET", &format!("/v1/projects/{pid}"), None).await?;
    let want = json!({ "1": "other_region", "2": "period.from", "3": "period.to" });
    ensure!(p["queries"][0]["bind"] == want, "the bindings saved: {}", p["queries"][0]);
    ensure!(p["queries"][0]["sql"] == SQL, "the rest is kept: {p}");
    // Query 1 had no positions: the browser typed `$1` and `$2`, bound both, saved, then
    // deleted `$2` again and saved; what is left is `$1`, bound.
    ensure!(
        p["queries"][1]["sql"] == "SELECT COUNT(*) AS total FROM orders WHERE region = $1"
            && p["queries"][1]["bind"] == json!({ "1": "region" }),
        "the positions typed are bound, the deleted one is not: {}",
        p["queries"][1]
    );
    ensure!(out["typed_bind"] == json!({ "1": "region", "2": "period.from" }), "the save in between: {out}");
    Ok(())
}

/// `results.keep_variants_per_tile`: with a bound of 1, the retention sweep deletes the
/// results of the filter values run least recently, never the defaults' nor the result of
/// a query that binds nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_keeps_a_bounded_number_of_filter_sets_per_tile_and_the_defaults() -> Result<()> {
    let root = tempfile::tempdir()?;
    let mut cp = outpost_e2e::ControlPlane::init(root.path())?;
    let config = root.path().join("control-plane.yaml");
    std::fs::write(&config, format!("data_dir: {}\nresults:\n  keep_variants_per_tile: 1\n", cp.data_dir.display()))?;
    cp.config = Some(config);
    cp.start()?;
    let mut edge = outpost_e2e::Agent::new(root.path(), "edge-1", "")?;
    edge.enroll_with(&cp).await?;
    edge.start_connected()?;
    let (admin, ed, pid) = regional(&cp).await?;
    let north = run(&ed, &pid, json!({})).await?;
    let south = run(&ed, &pid, json!({ "region": "South" })).await?;
    let east = run(&ed, &pid, json!({ "region": "East" })).await?;
    // Nothing is past its retention (24 h): only the bound deletes, South's one job.
    let r = ok_json(&admin, "POST", "/v1/results/purge", Some(&json!({}))).await?;
    ensure!(r["deleted"] == 1, "South's result goes: {r}");
    ensure!(shown(&ed, &pid, Some(json!({ "region": "South" }))).await?[0].is_none(), "South is gone");
    let r = call(&ed, "GET", &format!("/v1/jobs/{}", south[0]), None).await?;
    ensure!(r.status == 404, "South's job is gone: {}", r.status);
    ensure!(shown(&ed, &pid, Some(json!({ "region": "East" }))).await?[0] == Some(east[0].clone()), "East stays");
    let got = shown(&ed, &pid, None).await?;
    ensure!(got == [Some(north[0].clone()), Some(east[1].clone())], "the defaults and the unbound query: {got:?}");
    Ok(())
}
