//! A large PostgreSQL query rendered as a downsampled line chart through the real
//! control plane and agent, side by side with `psql -At` and `COPY … TO STDOUT` reading
//! the same rows from the same server in the same run. The agent connects as a
//! SELECT-only role (what a customer runs), once on a connection without mask rules and
//! once on one with a mask rule on an unrelated column, which makes the agent ask the
//! server where the result's columns come from before the query runs. Also the agent's
//! peak memory (VmHWM). Used by `scripts/bench.sh`; prints a Markdown table.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use clap::Parser;

/// Outpost PostgreSQL line-chart benchmark.
#[derive(Debug, Parser)]
struct Args {
    /// Rows in the series table (created once in schema `outpost_bench`).
    #[arg(long, default_value_t = 1_000_000)]
    rows: u64,
    /// Timed runs of each contender (after one warm-up run each).
    #[arg(long, default_value_t = 5)]
    runs: usize,
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

/// VmHWM (peak resident set) of a process, KiB.
fn peak_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).context("VmHWM")?;
    Ok(line.split_whitespace().nth(1).context("value")?.parse()?)
}

/// Runs psql with `sql`, output to /dev/null; fails on a non-zero exit.
fn psql(s: &outpost_e2e::pg::Server, args: &[&str], sql: &str) -> Result<Duration> {
    let start = Instant::now();
    let status = Command::new("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", &s.host(), "-p", &s.port().to_string()])
        .args(["-U", s.user(), "-d", s.database()])
        .args(args)
        .args(["-c", sql])
        .stdout(Stdio::null())
        .status()
        .context("psql (apt-get install postgresql-client)")?;
    anyhow::ensure!(status.success(), "psql: {status}");
    Ok(start.elapsed())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let s = outpost_e2e::pg::server()?;
    let db = outpost_e2e::pg::schema(&s, "benchsetup").await?;
    let table = format!("outpost_bench.series_{}", args.rows);
    db.admin
        .batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS outpost_bench;
             CREATE TABLE IF NOT EXISTS {table} AS
               SELECT timestamptz '2026-01-01 00:00:00+00' + i * interval '1 second' AS at,
                      sin(i / 1000.0) * 100 + (i % 7) AS value
               FROM generate_series(0, {} - 1) AS i;
             ANALYZE {table};",
            args.rows
        ))
        .await?;
    outpost_e2e::pg::bench_reader(&db.admin).await?;
    db.drop_now().await?;
    let sql = format!("SELECT at, value FROM {table}");

    let root = tempfile::tempdir()?;
    let config = format!(
        "limits:\n  max_rows: 1000000\n  query_timeout_secs: 600\n  max_job_lifetime_secs: 3600\n\
         connections:\n{}{}    egress:\n      mask:\n        - column: outpost_bench.orders.email\n",
        s.connection_yaml_as("warehouse", outpost_e2e::pg::BENCH_READER, false),
        s.connection_yaml_as("warehouse_masked", outpost_e2e::pg::BENCH_READER, false)
    );
    let (cp, agent) = outpost_e2e::control_plane_and_agent(root.path(), &config).await?;
    let pid = agent.pid().context("agent pid")?;
    let idle_kib = peak_kib(pid)?;
    let api = cp.api()?;
    let job = |connection: &str| {
        serde_json::json!({
            "agent": "edge-1", "connection": connection, "sql": sql,
            "render": {"kind": "line", "x": "at", "y": ["value"], "title": "Series"}
        })
    };
    let through_agent = |job: serde_json::Value| {
        let api = api.clone();
        async move {
            let start = Instant::now();
            let res = api.post_json("/v1/jobs", &job).await?;
            anyhow::ensure!(res.status == 202, "dispatch: {} {}", res.status, res.text());
            let id = res.json()?["id"].as_str().context("id")?.to_owned();
            let res = api.get(&format!("/v1/jobs/{id}/result?wait=600")).await?;
            anyhow::ensure!(res.status == 200, "result: {} {}", res.status, res.text());
            // Downsampled, as every large line chart is; never masked.
            let egress = res.header("outpost-egress").unwrap_or_default();
            anyhow::ensure!(!egress.contains("mask"), "the chart was masked: {egress}");
            let rows = res.header("outpost-rows-read").unwrap_or_default();
            Ok::<_, anyhow::Error>((start.elapsed(), rows, res.body.len()))
        }
    };

    // One warm-up run each (the table into the page cache), then interleaved runs.
    let (_, rows, svg_bytes) = through_agent(job("warehouse")).await?;
    anyhow::ensure!(rows == args.rows.to_string(), "the agent read {rows} rows, expected {}", args.rows);
    let (_, rows, _) = through_agent(job("warehouse_masked")).await?;
    anyhow::ensure!(rows == args.rows.to_string(), "the agent read {rows} rows, expected {}", args.rows);
    psql(&s, &["-At"], &sql)?;
    psql(&s, &[], &format!("COPY ({sql}) TO STDOUT"))?;
    let (mut agent_t, mut masked_t, mut psql_t, mut copy_t) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..args.runs {
        agent_t.push(through_agent(job("warehouse")).await?.0);
        masked_t.push(through_agent(job("warehouse_masked")).await?.0);
        psql_t.push(psql(&s, &["-At"], &sql)?);
        copy_t.push(psql(&s, &[], &format!("COPY ({sql}) TO STDOUT"))?);
    }
    let peak = peak_kib(pid)?;
    let (a, m, p, c) = (median(agent_t), median(masked_t), median(psql_t), median(copy_t));

    println!("machine: {}", outpost_e2e::machine());
    println!();
    println!("{} rows (timestamptz, float8), median of {} runs after one warm-up each:", args.rows, args.runs);
    println!();
    println!("| contender | median | vs psql -At |");
    println!("| --- | --- | --- |");
    println!(
        "| agent: dispatch → query → line chart ({svg_bytes} B SVG) → result | {} | {:.2}× |",
        secs(a),
        a.as_secs_f64() / p.as_secs_f64()
    );
    println!(
        "| agent, the same on a connection with a mask rule (unrelated column) | {} | {:.2}× |",
        secs(m),
        m.as_secs_f64() / p.as_secs_f64()
    );
    println!("| psql -At -c \"<query>\" > /dev/null | {} | 1.00× |", secs(p));
    println!(
        "| psql -c \"COPY (<query>) TO STDOUT\" > /dev/null | {} | {:.2}× |",
        secs(c),
        c.as_secs_f64() / p.as_secs_f64()
    );
    println!();
    println!("the agent connects as the SELECT-only role {}; psql as {}", outpost_e2e::pg::BENCH_READER, s.user());
    println!(
        "agent peak memory (VmHWM): {:.1} MiB (idle after start: {:.1} MiB)",
        peak as f64 / 1024.0,
        idle_kib as f64 / 1024.0
    );
    Ok(())
}
