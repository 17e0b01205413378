//! Opening a dashboard: a project of 12 tiles whose results are current, opened in real
//! Chromium (Debian's, driven by playwright-core: tests/browser/dashboard-bench.mjs), first
//! contentful paint and load measured over several opens; the peer is the sign-in page
//! (no API call, no tile) opened the same way in the same run. Then a refresh of the 12
//! tiles on one agent: wall time from `POST /v1/projects/{id}/run` until every result is
//! in (the 12 results waited for at once, as the console's tiles do), beside the slowest
//! tile's own query time as the agent reported it. The sample's tiles take about 1 ms of
//! CPU each, so that refresh shows the fixed cost of 12 jobs; a second refresh is of 12
//! "warehouse" tiles on PostgreSQL whose queries wait `--tile-wait-ms` (`pg_sleep`, as a
//! remote warehouse's latency would), on the same agent with `max_concurrent_jobs` set to
//! `--agent-concurrency`: what the "under 2× the slowest tile" is about. Used by
//! `scripts/bench.sh` (section `dashboard`); prints a Markdown table.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, ensure, Context as _, Result};
use clap::Parser;
use outpost_e2e::{call, ok_json};
use serde_json::{json, Value};

/// Outpost dashboard benchmark.
#[derive(Debug, Parser)]
struct Args {
    /// Opens of the dashboard (and of the peer page) measured.
    #[arg(long, default_value_t = 10)]
    opens: usize,
    /// Refreshes of the 12 tiles measured.
    #[arg(long, default_value_t = 5)]
    refreshes: usize,
    /// How long each warehouse tile's query waits at the database, ms.
    #[arg(long, default_value_t = 50)]
    tile_wait_ms: u32,
    /// The agent's `limits.max_concurrent_jobs` (default 4; 12 lets a 12-tile refresh run at once).
    #[arg(long, default_value_t = 12)]
    agent_concurrency: u32,
}

/// 12 tiles on the PostgreSQL connection `connection`, each waiting `wait_ms` there.
fn warehouse_tiles(connection: &str, wait_ms: u32) -> Vec<Value> {
    (0..12)
        .map(|i| {
            json!({ "name": format!("Warehouse {i}"), "agent": "edge-1", "connection": connection,
                    "sql": format!("SELECT {i} AS tile, pg_sleep({wait_ms} / 1000.0) IS NULL AS waited"),
                    "render": { "kind": "scalar", "column": "tile" } })
        })
        .collect()
}

/// The agent's configuration: the sample, and the PostgreSQL server as the SELECT-only
/// benchmark role twice: `warehouse` with `pool_size` `concurrency`, and
/// `warehouse_default` with the default pool (4 sessions); `concurrency` jobs at once.
async fn agent_config(concurrency: u32) -> Result<String> {
    let s = outpost_e2e::pg::server()?;
    let db = outpost_e2e::pg::schema(&s, "dashbench").await?;
    outpost_e2e::pg::bench_reader(&db.admin).await?;
    db.drop_now().await?;
    Ok(format!(
        "limits:\n  max_concurrent_jobs: {concurrency}\nconnections:\n  \
         sample:\n    kind: sqlite\n    path: sample.db\n    sample: true\n{}    pool_size: {concurrency}\n{}",
        s.connection_yaml_as("warehouse", outpost_e2e::pg::BENCH_READER, false),
        s.connection_yaml_as("warehouse_default", outpost_e2e::pg::BENCH_READER, false)
    ))
}

/// Runs project `pid` `rounds + 1` times (the first makes its results current), waiting for
/// every tile's result at once; (wall, slowest tile's query) of each measured round, ms.
async fn refreshes(admin: &outpost_e2e::client::Api, pid: &str, rounds: usize) -> Result<(Vec<f64>, Vec<f64>)> {
    let mut refresh_ms = Vec::new();
    let mut slowest_ms = Vec::new();
    for round in 0..=rounds {
        let start = Instant::now();
        let run = ok_json(admin, "POST", &format!("/v1/projects/{pid}/run"), Some(&json!({}))).await?;
        let jobs: Vec<String> = run["jobs"]
            .as_array()
            .context("jobs")?
            .iter()
            .filter_map(|j| j["id"].as_str().map(str::to_owned))
            .collect();
        ensure!(jobs.len() == 12, "12 jobs: {run}");
        let mut slowest = 0.0f64;
        // Every tile waits for its result at once, as the console's tiles do.
        let waits: Vec<_> = jobs
            .iter()
            .map(|id| {
                let (admin, id) = (admin.clone(), id.clone());
                tokio::spawn(async move {
                    let res = call(&admin, "GET", &format!("/v1/jobs/{id}/result?wait=60"), None).await?;
                    ensure!(res.status == 200, "tile {id}: {} {}", res.status, res.text());
                    anyhow::Ok(())
                })
            })
            .collect();
        for w in waits {
            w.await??;
        }
        let wall = start.elapsed();
        for id in &jobs {
            let j = ok_json(admin, "GET", &format!("/v1/jobs/{id}"), None).await?;
            slowest = slowest.max(j["stats"]["duration_ms"].as_f64().unwrap_or(0.0));
        }
        if round > 0 {
            refresh_ms.push(wall.as_secs_f64() * 1000.0);
            slowest_ms.push(slowest);
        }
    }
    Ok((refresh_ms, slowest_ms))
}

/// Prints the refresh rows of `what`; the ratio is to `floor_ms` (a tile's own query
/// time, when it is known) or else to the slowest tile's `duration_ms`, which counts the
/// wait for a pooled database session too.
fn print_refresh(what: &str, refresh_ms: &[f64], slowest_ms: &[f64], floor_ms: Option<f64>) {
    println!(
        "| refresh of {what} (wall) | {:.0} ms | {:.0} ms | {} |",
        median(refresh_ms.to_vec()),
        max(refresh_ms),
        refresh_ms.len()
    );
    println!(
        "| slowest tile in that refresh (agent's duration_ms, a pooled session's wait included) | {:.0} ms | {:.0} ms | {} |",
        median(slowest_ms.to_vec()),
        max(slowest_ms),
        slowest_ms.len()
    );
    let ratio: Vec<f64> = refresh_ms.iter().zip(slowest_ms).map(|(w, s)| w / floor_ms.unwrap_or(*s).max(1.0)).collect();
    let of = floor_ms.map_or("slowest tile".to_owned(), |f| format!("one tile's own query ({f:.0} ms)"));
    println!(
        "| refresh wall ÷ {of} (target < 2) | {:.1}× | {:.1}× | {} |",
        median(ratio.clone()),
        max(&ratio),
        ratio.len()
    );
}

/// The 12 tiles: each chart kind and a table and scalars, on the sample data.
fn tiles() -> Vec<Value> {
    let by_region = "SELECT region, ROUND(SUM(amount), 2) AS revenue FROM orders GROUP BY region ORDER BY region";
    let by_month = "SELECT CAST(substr(month, 6, 2) AS INTEGER) AS m, ROUND(SUM(amount), 2) AS revenue FROM orders GROUP BY m ORDER BY m";
    let q = |name: &str, sql: &str, render: Value| json!({ "name": name, "agent": "edge-1", "connection": "sample", "sql": sql, "render": render });
    vec![
        q("Revenue by region", by_region, json!({ "kind": "bar", "x": "region", "y": ["revenue"] })),
        q("Revenue by month", by_month, json!({ "kind": "line", "x": "m", "y": ["revenue"] })),
        q("Revenue area", by_month, json!({ "kind": "area", "x": "m", "y": ["revenue"] })),
        q("Share by region", by_region, json!({ "kind": "pie", "label": "region", "value": "revenue" })),
        q(
            "Quantity and amount",
            "SELECT quantity, amount FROM orders",
            json!({ "kind": "scatter", "x": "quantity", "y": ["amount"] }),
        ),
        q(
            "Monthly by region",
            "SELECT CAST(substr(month, 6, 2) AS INTEGER) AS m, region, revenue FROM monthly_revenue ORDER BY m, region",
            json!({ "kind": "line", "x": "m", "y": ["revenue"], "series": "region" }),
        ),
        q(
            "Products",
            "SELECT product, SUM(quantity) AS units, ROUND(SUM(amount), 2) AS revenue FROM orders GROUP BY product ORDER BY product",
            json!({ "kind": "table" }),
        ),
        q(
            "Latest orders",
            "SELECT id, region, month, product, amount FROM orders ORDER BY id DESC LIMIT 20",
            json!({ "kind": "table" }),
        ),
        q("Revenue", "SELECT ROUND(SUM(amount), 2) AS n FROM orders", json!({ "kind": "scalar", "column": "n" })),
        q("Orders", "SELECT COUNT(*) AS n FROM orders", json!({ "kind": "scalar", "column": "n" })),
        q("Units", "SELECT SUM(quantity) AS n FROM orders", json!({ "kind": "scalar", "column": "n" })),
        q(
            "Units by product",
            "SELECT product, SUM(quantity) AS units FROM orders GROUP BY product ORDER BY product",
            json!({ "kind": "bar", "x": "product", "y": ["units"] }),
        ),
    ]
}

fn browser_dir() -> Result<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("browser");
    ensure!(
        dir.join("node_modules/playwright-core").is_dir(),
        "the dashboard benchmark needs tests/browser's npm packages: cd tests/browser && npm ci"
    );
    Ok(dir)
}

fn chromium() -> Result<PathBuf> {
    let p = std::env::var_os("OUTPOST_CHROMIUM").map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    ensure!(p.exists(), "no Chromium at {}: apt-get install chromium, or set OUTPOST_CHROMIUM", p.display());
    Ok(p)
}

/// Runs the browser script and returns its figures.
fn browse(root: &Path, cfg: Value) -> Result<Value> {
    let dir = browser_dir()?;
    let cfg_path = root.join("dashboard-bench.json");
    let out_path = root.join("dashboard-bench.out.json");
    let mut cfg = cfg;
    cfg["out"] = json!(out_path);
    cfg["chromium"] = json!(chromium()?);
    std::fs::write(&cfg_path, serde_json::to_vec(&cfg)?)?;
    let out = std::process::Command::new("node")
        .arg(dir.join("dashboard-bench.mjs"))
        .arg(&cfg_path)
        .current_dir(&dir)
        .output()
        .context("node (apt-get install nodejs)")?;
    if !out.status.success() {
        bail!(
            "dashboard-bench.mjs failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(serde_json::from_slice(&std::fs::read(&out_path)?)?)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    v[v.len() / 2]
}

fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::NAN, f64::max)
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().into_iter().flatten().filter_map(Value::as_f64).collect()
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let root = tempfile::tempdir()?;
    let config = agent_config(args.agent_concurrency).await?;
    let (cp, _agent) = outpost_e2e::control_plane_and_agent(root.path(), &config).await?;
    let admin = cp.api()?;
    let project =
        ok_json(&admin, "POST", "/v1/projects", Some(&json!({ "name": "Twelve tiles", "queries": tiles() }))).await?;
    let pid = project["id"].as_str().context("project id")?.to_owned();
    let (refresh_ms, slowest_ms) = refreshes(&admin, &pid, args.refreshes).await?;
    let mut warehouse = Vec::new();
    for connection in ["warehouse", "warehouse_default"] {
        let body = json!({ "name": connection, "queries": warehouse_tiles(connection, args.tile_wait_ms) });
        let p = ok_json(&admin, "POST", "/v1/projects", Some(&body)).await?;
        let id = p["id"].as_str().context("project id")?.to_owned();
        warehouse.push(refreshes(&admin, &id, args.refreshes).await?);
    }

    let base = format!("https://localhost:{}", cp.api_addr.rsplit(':').next().unwrap_or_default());
    let figures = browse(
        root.path(),
        json!({ "base_url": base, "project": pid, "password": cp.admin_password, "opens": args.opens }),
    )?;
    let (fcp, load) = (floats(&figures["dashboard"]["fcp"]), floats(&figures["dashboard"]["load"]));
    let (peer_fcp, peer_load) = (floats(&figures["peer"]["fcp"]), floats(&figures["peer"]["load"]));
    ensure!(fcp.len() == args.opens, "every open measured: {figures}");

    println!("| what | median | max | runs |");
    println!("|---|---:|---:|---:|");
    println!(
        "| dashboard of 12 current tiles: first contentful paint | {:.0} ms | {:.0} ms | {} |",
        median(fcp.clone()),
        max(&fcp),
        fcp.len()
    );
    println!(
        "| dashboard of 12 current tiles: load event | {:.0} ms | {:.0} ms | {} |",
        median(load.clone()),
        max(&load),
        load.len()
    );
    println!(
        "| peer: sign-in page, first contentful paint | {:.0} ms | {:.0} ms | {} |",
        median(peer_fcp.clone()),
        max(&peer_fcp),
        peer_fcp.len()
    );
    println!(
        "| peer: sign-in page, load event | {:.0} ms | {:.0} ms | {} |",
        median(peer_load.clone()),
        max(&peer_load),
        peer_load.len()
    );
    print_refresh("the 12 tiles on one agent", &refresh_ms, &slowest_ms, None);
    let (wait, n) = (args.tile_wait_ms, args.agent_concurrency);
    for ((wall, slowest), pool) in warehouse.iter().zip([format!("pool_size {n}"), "the default pool_size 4".into()]) {
        let what = format!("12 warehouse tiles (PostgreSQL, each waits {wait} ms), max_concurrent_jobs {n}, {pool}");
        print_refresh(&what, wall, slowest, Some(f64::from(wait)));
    }
    Ok(())
}
