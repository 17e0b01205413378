//! End-to-end latency and throughput of small jobs, through the real binaries on loopback:
//! API dispatch → agent (mutual TLS long-poll, verify, query, render, audit) → result
//! fetched with `?wait`. Used by `scripts/bench.sh`; prints a Markdown table.
//!
//! Contenders (`--contenders`, default all), each a small table job on one agent:
//! - `sqlite`: today's job on the SQLite sample, no mask rules (the historical figure);
//! - `sqlite-expr`: a job with an expression column (`upper(region)`), no mask rules;
//! - `sqlite-masked`: the same job on a copy of the sample whose connection has a mask
//!   rule (`orders.amount`): the agent asks SQLite where each column comes from
//!   (authorizer, `EXPLAIN QUERY PLAN`, column origins) before the query runs;
//! - `pg`, `pg-masked`: the same job on PostgreSQL (`OUTPOST_TEST_PG_URL`) as a
//!   SELECT-only role, without and with a mask rule (`outpost_bench.orders.email`); the
//!   expression columns make the agent run the catalog query, `EXPLAIN (VERBOSE,
//!   FORMAT JSON)` and the second catalog query.
//!
//! The p50 difference between a masked contender and its unmasked peer is the cost of the
//! provenance check. The sequential runs are interleaved (one job of each contender per
//! round) so that load from elsewhere on the machine falls on all of them alike.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use clap::Parser;

/// Outpost end-to-end benchmark.
#[derive(Debug, Parser)]
struct Args {
    /// Sequential jobs per contender for the latency figures.
    #[arg(long, default_value_t = 1000)]
    jobs: usize,
    /// Concurrent API clients for the throughput figure.
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// Jobs per client in the throughput phase (0: no throughput phase).
    #[arg(long, default_value_t = 100)]
    jobs_per_client: usize,
    /// Warm-up jobs per contender before measuring.
    #[arg(long, default_value_t = 50)]
    warmup: usize,
    /// Contenders, comma-separated: sqlite, sqlite-expr, sqlite-masked, pg, pg-masked.
    #[arg(long, value_delimiter = ',', default_value = "sqlite,sqlite-expr,sqlite-masked,pg,pg-masked")]
    contenders: Vec<String>,
}

/// The historical small job (docs/BENCHMARKS.md since the first record).
const SQL: &str = "SELECT region, COUNT(*) AS n FROM orders WHERE region = $1 GROUP BY region";
/// The same with an expression column, whose source only the planner can tell.
const SQL_EXPR: &str = "SELECT region, COUNT(*) AS n, upper(region) AS r FROM orders WHERE region = $1 GROUP BY region";
const PG_SQL_EXPR: &str =
    "SELECT region, COUNT(*) AS n, upper(region) AS r FROM outpost_bench.orders WHERE region = $1 GROUP BY region";

struct Contender {
    name: &'static str,
    connection: &'static str,
    sql: &'static str,
    /// A job on the same connection that selects the masked column under another
    /// name: its result must come back masked, or the mask rule is not in force.
    masked_probe: Option<&'static str>,
}

const CONTENDERS: [Contender; 5] = [
    Contender { name: "sqlite", connection: "sample", sql: SQL, masked_probe: None },
    Contender { name: "sqlite-expr", connection: "sample", sql: SQL_EXPR, masked_probe: None },
    Contender {
        name: "sqlite-masked",
        connection: "sample_masked",
        sql: SQL_EXPR,
        masked_probe: Some("SELECT amount AS x FROM orders WHERE region = $1 LIMIT 1"),
    },
    Contender { name: "pg", connection: "pg", sql: PG_SQL_EXPR, masked_probe: None },
    Contender {
        name: "pg-masked",
        connection: "pg_masked",
        sql: PG_SQL_EXPR,
        masked_probe: Some("SELECT email AS x FROM outpost_bench.orders WHERE region = $1 LIMIT 1"),
    },
];

/// (masked, its unmasked peer): the provenance cost is the difference.
const PAIRS: [(&str, &str); 2] = [("sqlite-masked", "sqlite-expr"), ("pg-masked", "pg")];

fn job(connection: &str, sql: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "agent": "edge-1", "connection": connection, "sql": sql,
        "params": [{"type": "text", "value": "North"}],
        "render": {"kind": "table", "format": "json"}
    }))
    .unwrap_or_default()
}

/// Runs one job; its latency and the result.
async fn one_job(conn: &mut outpost_e2e::client::Conn, job: &[u8]) -> Result<(Duration, outpost_e2e::HttpResponse)> {
    let start = Instant::now();
    let res = conn.request(http::Method::POST, "/v1/jobs", Some(job.to_vec())).await?;
    anyhow::ensure!(res.status == 202, "dispatch: {} {}", res.status, res.text());
    let id = res.json()?["id"].as_str().context("id")?.to_owned();
    let res = conn.get(&format!("/v1/jobs/{id}/result?wait=30")).await?;
    anyhow::ensure!(res.status == 200, "result: {} {}", res.status, res.text());
    Ok((start.elapsed(), res))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// The PostgreSQL side: table `outpost_bench.orders` (the sample's 288 orders and an
/// `email` column, the one masked) and the SELECT-only role; the agent.yaml lines of
/// the two connections.
async fn pg_setup() -> Result<String> {
    let s = outpost_e2e::pg::server()?;
    let db = outpost_e2e::pg::schema(&s, "benchsetup").await?;
    db.admin
        .batch_execute(
            "CREATE SCHEMA IF NOT EXISTS outpost_bench;
             CREATE TABLE IF NOT EXISTS outpost_bench.orders AS
               SELECT i AS id, (ARRAY['North', 'South', 'East', 'West'])[1 + (i - 1) / 72] AS region,
                      '2025-' || lpad((1 + (i - 1) % 12)::text, 2, '0') AS month,
                      (ARRAY['Widget', 'Gadget', 'Gizmo'])[1 + i % 3] AS product,
                      1 + i % 11 AS quantity, round((10 + i % 97) * 1.5, 2)::float8 AS amount,
                      'customer' || i || '@example.org' AS email
               FROM generate_series(1, 288) AS i;
             ANALYZE outpost_bench.orders;",
        )
        .await?;
    outpost_e2e::pg::bench_reader(&db.admin).await?;
    db.drop_now().await?;
    let reader = outpost_e2e::pg::BENCH_READER;
    Ok(format!(
        "{}{}    egress:\n      mask:\n        - column: outpost_bench.orders.email\n",
        s.connection_yaml_as("pg", reader, false),
        s.connection_yaml_as("pg_masked", reader, false)
    ))
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let chosen: Vec<&Contender> = CONTENDERS.iter().filter(|c| args.contenders.iter().any(|n| n == c.name)).collect();
    for n in &args.contenders {
        anyhow::ensure!(CONTENDERS.iter().any(|c| c.name == n), "unknown contender {n:?}");
    }
    anyhow::ensure!(!chosen.is_empty(), "no contender");
    let pg = if chosen.iter().any(|c| c.name.starts_with("pg")) { pg_setup().await? } else { String::new() };
    let config = format!(
        "limits:\n  max_rows: 1000\n  max_concurrent_jobs: 64\nconnections:\n  \
         sample:\n    kind: sqlite\n    path: sample.db\n    sample: true\n  \
         sample_masked:\n    kind: sqlite\n    path: sample-masked.db\n    sample: true\n    \
         egress:\n      mask:\n        - column: orders.amount\n{pg}"
    );
    let root = tempfile::tempdir()?;
    let (cp, agent) = outpost_e2e::control_plane_and_agent(root.path(), &config).await?;
    let api = cp.api()?;
    let jobs: Vec<Vec<u8>> = chosen.iter().map(|c| job(c.connection, c.sql)).collect();

    let mut conn = api.connect().await?;
    for (c, j) in chosen.iter().zip(&jobs) {
        let (_, res) = one_job(&mut conn, j).await?;
        anyhow::ensure!(
            res.header("outpost-egress").is_none(),
            "{}: the job itself was changed: {}",
            c.name,
            res.text()
        );
        if let Some(probe) = c.masked_probe {
            let (_, res) = one_job(&mut conn, &job(c.connection, probe)).await?;
            anyhow::ensure!(
                res.header("outpost-egress").as_deref() == Some("masked") && res.text().contains("***"),
                "{}: the mask rule is not in force: {}",
                c.name,
                res.text()
            );
        }
    }
    for _ in 0..args.warmup {
        for j in &jobs {
            one_job(&mut conn, j).await?;
        }
    }
    let mut lat: Vec<Vec<Duration>> = vec![Vec::with_capacity(args.jobs); chosen.len()];
    for _ in 0..args.jobs {
        for (i, j) in jobs.iter().enumerate() {
            lat[i].push(one_job(&mut conn, j).await?.0);
        }
    }
    // Per round, masked minus unmasked: robust against load that comes and goes.
    let index = |name: &str| chosen.iter().position(|c| c.name == name);
    let paired: Vec<(&str, &str, Duration, Duration, f64)> = PAIRS
        .iter()
        .filter_map(|(m, u)| Some((*m, *u, index(m)?, index(u)?)))
        .map(|(m, u, mi, ui)| {
            let mut d: Vec<f64> =
                lat[mi].iter().zip(&lat[ui]).map(|(a, b)| a.as_secs_f64() - b.as_secs_f64()).collect();
            d.sort_by(f64::total_cmp);
            let mut a = lat[mi].clone();
            let mut b = lat[ui].clone();
            a.sort();
            b.sort();
            (m, u, percentile(&a, 0.5), percentile(&b, 0.5), d[d.len() / 2])
        })
        .collect();
    for l in &mut lat {
        l.sort();
    }

    // Peer in the same run: the floor of one API round trip on the same kind of
    // connection (TLS, HTTP/1.1 keep-alive, bearer-token check, one SQLite read).
    let mut floor = Vec::with_capacity(args.jobs);
    for _ in 0..args.jobs {
        let start = Instant::now();
        let res = conn.get("/v1/agents").await?;
        anyhow::ensure!(res.status == 200, "agents: {}", res.status);
        floor.push(start.elapsed());
    }
    floor.sort();

    let mut throughput = Vec::new();
    let pids = [
        ("control plane", cp.pid()),
        ("agent", agent.pid()),
        ("load client (reads both logs)", Some(std::process::id())),
    ];
    let mut cpu = Vec::new();
    for j in &jobs {
        if args.jobs_per_client == 0 {
            break;
        }
        let before: Vec<Option<f64>> = pids.iter().map(|(_, p)| p.and_then(outpost_e2e::cpu_secs)).collect();
        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..args.clients {
            let (api, j, n) = (api.clone(), j.clone(), args.jobs_per_client);
            tasks.push(tokio::spawn(async move {
                let mut conn = api.connect().await?;
                for _ in 0..n {
                    one_job(&mut conn, &j).await?;
                }
                anyhow::Ok(())
            }));
        }
        for t in tasks {
            t.await??;
        }
        throughput.push(start.elapsed());
        let after = pids.iter().map(|(_, p)| p.and_then(outpost_e2e::cpu_secs));
        cpu.push(before.into_iter().zip(after).map(|(b, a)| Some(a? - b?)).collect::<Vec<_>>());
    }
    let total = args.clients * args.jobs_per_client;

    println!("machine: {}", outpost_e2e::machine());
    println!();
    println!(
        "{} sequential jobs per contender, interleaved (after {} warm-up each); throughput: {} concurrent clients × {} jobs",
        args.jobs, args.warmup, args.clients, args.jobs_per_client
    );
    println!();
    println!("| contender | p50 | p90 | p99 | max | throughput |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for (i, c) in chosen.iter().enumerate() {
        let l = &lat[i];
        let t = throughput.get(i).map_or("-".to_owned(), |e| {
            format!("{:.0} jobs/s ({total} in {:.2} s)", total as f64 / e.as_secs_f64(), e.as_secs_f64())
        });
        println!(
            "| {} | {} | {} | {} | {} | {t} |",
            c.name,
            ms(percentile(l, 0.50)),
            ms(percentile(l, 0.90)),
            ms(percentile(l, 0.99)),
            ms(percentile(l, 1.0))
        );
    }
    println!(
        "| peer: one API round trip (GET /v1/agents) | {} | {} | {} | {} | |",
        ms(percentile(&floor, 0.50)),
        ms(percentile(&floor, 0.90)),
        ms(percentile(&floor, 0.99)),
        ms(percentile(&floor, 1.0))
    );
    if !cpu.is_empty() {
        println!();
        println!("CPU time per job during the throughput phase (user + system, all threads; 2 cores give 2 ms of CPU per ms):");
        println!();
        let names: Vec<&str> = pids.iter().map(|(n, _)| *n).collect();
        println!("| contender | {} | wall per job |", names.join(" | "));
        println!("| --- |{} --- |", " --- |".repeat(names.len()));
        for (i, c) in chosen.iter().enumerate() {
            let Some(per) = cpu.get(i) else { break };
            let cells: Vec<String> =
                per.iter().map(|s| s.map_or("-".into(), |s| format!("{:.0} µs", s * 1e6 / total as f64))).collect();
            let wall = throughput[i].as_secs_f64() * 1e6 / total as f64;
            println!("| {} | {} | {wall:.0} µs |", c.name, cells.join(" | "));
        }
    }
    for (m, u, pm, pu, d) in paired {
        println!();
        println!(
            "provenance cost ({m} − {u}): p50 difference {:+.3} ms ({} vs {}); median of per-round differences {:+.3} ms",
            (pm.as_secs_f64() - pu.as_secs_f64()) * 1000.0,
            ms(pm),
            ms(pu),
            d * 1000.0
        );
    }
    Ok(())
}
