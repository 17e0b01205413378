//! A large PostgreSQL query rendered as a downsampled line chart through the real
//! control plane and agent, side by side with `psql -At` and `COPY … TO STDOUT` reading
//! the same rows from the same server in the same run. The agent connects as a
//! SELECT-only role (what a customer runs), once on a connection without mask rules and
//! once on one with a mask rule on an unrelated column, which makes the agent ask the
//! server where the result's columns come from before the query runs. Also the agent's
//! peak memory (VmHWM). Used by `scripts/bench.sh`; prints a Markdown table.
//!
//! `--mode cache-chart`: the same chart over a table with one more column, 64 characters
//! of text that the query reads and the chart does not draw, asked with the result cache
//! (`"cache": {"max_age_secs": 300}`): the first run of each round is a miss (the rows go
//! to the chart and into the encrypted cache entry), the second a hit (the rows come
//! from the entry); beside them the same job without the cache and `psql -At` on the
//! same query, interleaved round by round. The agent's peak memory (VmHWM) is reset
//! through `/proc/PID/clear_refs` to its resident size before each run and read after
//! it: the highest, and the largest rise during one run.

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
    /// `chart`: the line chart without the cache, beside psql and COPY; `cache-chart`:
    /// the cached line chart over a wider table, miss then hit, beside psql.
    #[arg(long, value_enum, default_value_t = Mode::Chart)]
    mode: Mode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Mode {
    Chart,
    CacheChart,
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
    status_kib(pid, "VmHWM:")
}

/// A `/proc/PID/status` field in KiB.
fn status_kib(pid: u32, field: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status.lines().find(|l| l.starts_with(field)).context("field")?;
    Ok(line.split_whitespace().nth(1).context("value")?.parse()?)
}

/// Resets a process's VmHWM to its resident size now.
fn reset_peak(pid: u32) -> Result<()> {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").context("clear_refs")
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
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
    if args.mode == Mode::CacheChart {
        return cache_chart(&args).await;
    }
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

/// A job through the API; its time, the `outpost-rows-read` header, whether it was a
/// cache hit, and the body's size.
async fn timed(api: &outpost_e2e::client::Api, job: &serde_json::Value) -> Result<(Duration, String, bool, usize)> {
    let start = Instant::now();
    let res = api.post_json("/v1/jobs", job).await?;
    anyhow::ensure!(res.status == 202, "dispatch: {} {}", res.status, res.text());
    let id = res.json()?["id"].as_str().context("id")?.to_owned();
    let res = api.get(&format!("/v1/jobs/{id}/result?wait=600")).await?;
    anyhow::ensure!(res.status == 200, "result: {} {}", res.status, res.text());
    let rows = res.header("outpost-rows-read").unwrap_or_default();
    let hit = res.header("outpost-cache-hit").as_deref() == Some("true");
    Ok((start.elapsed(), rows, hit, res.body.len()))
}

async fn cache_chart(args: &Args) -> Result<()> {
    let s = outpost_e2e::pg::server()?;
    let db = outpost_e2e::pg::schema(&s, "benchsetup").await?;
    let table = format!("outpost_bench.series_note_{}", args.rows);
    db.admin
        .batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS outpost_bench;
             CREATE TABLE IF NOT EXISTS {table} AS
               SELECT timestamptz '2026-01-01 00:00:00+00' + i * interval '1 second' AS at,
                      sin(i / 1000.0) * 100 + (i % 7) AS value,
                      md5(i::text) || md5((i + 1)::text) AS note
               FROM generate_series(0, {} - 1) AS i;
             ANALYZE {table};",
            args.rows
        ))
        .await?;
    outpost_e2e::pg::bench_reader(&db.admin).await?;
    db.drop_now().await?;
    let sql = format!("SELECT at, value, note FROM {table}");

    let root = tempfile::tempdir()?;
    let config = format!(
        "limits:\n  max_rows: {}\n  query_timeout_secs: 600\n  max_job_lifetime_secs: 3600\n\
         cache:\n  max_age_secs: 300\n  max_bytes: 4294967296\nconnections:\n{}",
        args.rows.max(1),
        s.connection_yaml_as("warehouse", outpost_e2e::pg::BENCH_READER, false),
    );
    let (cp, agent) = outpost_e2e::control_plane_and_agent(root.path(), &config).await?;
    let pid = agent.pid().context("agent pid")?;
    let idle_kib = status_kib(pid, "VmRSS:")?;
    let api = cp.api()?;
    // Each round's SQL differs by a comment, so its first run is a miss.
    let job = |round: usize, cache: bool| {
        let mut j = serde_json::json!({
            "agent": "edge-1", "connection": "warehouse", "sql": format!("{sql} -- round {round}"),
            "render": {"kind": "line", "x": "at", "y": ["value"], "title": "Series"}
        });
        if cache {
            j["cache"] = serde_json::json!({"max_age_secs": 300});
        }
        j
    };
    let load_before = load_average();

    // Warm-up: the table into the page cache, the agent's session and code paths (not
    // the cache: memory a cached run leaves behind would count in every later peak).
    psql(&s, &["-At"], &sql)?;
    let (_, rows, _, _) = timed(&api, &job(0, false)).await?;
    anyhow::ensure!(rows == args.rows.to_string(), "the agent read {rows} rows, expected {}", args.rows);

    let (mut off_t, mut miss_t, mut hit_t, mut psql_t) = (vec![], vec![], vec![], vec![]);
    // Per contender: the highest VmHWM, and the largest rise of it during one run.
    let (mut off_peak, mut miss_peak, mut hit_peak) = ((0, 0), (0, 0), (0, 0));
    let measure = |peak: &mut (u64, u64)| -> Result<()> {
        let hwm = peak_kib(pid)?;
        *peak = (peak.0.max(hwm), peak.1);
        Ok(())
    };
    let before = || -> Result<u64> {
        reset_peak(pid)?;
        status_kib(pid, "VmRSS:")
    };
    let mut svg = (0, 0);
    for round in 1..=args.runs {
        let rss = before()?;
        let (t, _, hit, _) = timed(&api, &job(round, false)).await?;
        anyhow::ensure!(!hit, "the job without the cache was a hit");
        off_t.push(t);
        measure(&mut off_peak)?;
        off_peak.1 = off_peak.1.max(peak_kib(pid)?.saturating_sub(rss));
        let rss = before()?;
        let (t, rows, hit, first) = timed(&api, &job(round, true)).await?;
        anyhow::ensure!(!hit, "round {round}: the first cached run was a hit");
        anyhow::ensure!(rows == args.rows.to_string(), "the agent read {rows} rows, expected {}", args.rows);
        miss_t.push(t);
        measure(&mut miss_peak)?;
        miss_peak.1 = miss_peak.1.max(peak_kib(pid)?.saturating_sub(rss));
        let rss = before()?;
        let (t, rows, hit, second) = timed(&api, &job(round, true)).await?;
        anyhow::ensure!(hit, "round {round}: the second cached run was not a hit");
        anyhow::ensure!(rows == args.rows.to_string(), "the hit gave {rows} rows, expected {}", args.rows);
        hit_t.push(t);
        measure(&mut hit_peak)?;
        hit_peak.1 = hit_peak.1.max(peak_kib(pid)?.saturating_sub(rss));
        svg = (first, second);
        psql_t.push(psql(&s, &["-At"], &sql)?);
    }
    let (off, miss, hit, p) = (median(off_t), median(miss_t), median(hit_t), median(psql_t));
    let ratio = |d: Duration| d.as_secs_f64() / p.as_secs_f64();

    println!("machine: {}", outpost_e2e::machine());
    println!("load average before the run: {load_before}; after: {}", load_average());
    println!();
    println!(
        "{} rows (timestamptz, float8, 64-character text read but not drawn) into a line chart; \
         median of {} rounds after one warm-up each:",
        args.rows, args.runs
    );
    println!();
    println!("| contender | median | vs psql -At | agent VmHWM (highest) | above idle | rise during one run |");
    println!("| --- | --- | --- | --- | --- | --- |");
    let row = |name: String, d: Duration, (hwm, rise): (u64, u64)| {
        println!(
            "| {name} | {} | {:.2}× | {} | {} | {} |",
            secs(d),
            ratio(d),
            mib(hwm),
            mib(hwm.saturating_sub(idle_kib)),
            mib(rise)
        );
    };
    row("agent, cache off (streamed into the chart)".into(), off, off_peak);
    row(
        format!("agent, cached: first run (miss: query → chart and encrypted entry; {} B SVG)", svg.0),
        miss,
        miss_peak,
    );
    row(format!("agent, cached: second run (hit: entry → chart; {} B SVG)", svg.1), hit, hit_peak);
    println!("| psql -At -c \"<query>\" > /dev/null | {} | 1.00× | | | |", secs(p));
    println!();
    println!(
        "second run {:.1}× faster than the first; agent idle after start {}; the agent connects as {}",
        miss.as_secs_f64() / hit.as_secs_f64(),
        mib(idle_kib),
        outpost_e2e::pg::BENCH_READER
    );
    Ok(())
}
