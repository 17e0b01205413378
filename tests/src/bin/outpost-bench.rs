//! End-to-end latency and throughput of small jobs, through the real binaries on loopback:
//! API dispatch → agent (mutual TLS long-poll, verify, SQLite, render, audit) → result
//! fetched with `?wait`. Used by `scripts/bench.sh`; prints a Markdown table.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use clap::Parser;

/// Outpost end-to-end benchmark.
#[derive(Debug, Parser)]
struct Args {
    /// Sequential jobs for the latency figures.
    #[arg(long, default_value_t = 1000)]
    jobs: usize,
    /// Concurrent API clients for the throughput figure.
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// Jobs per client in the throughput phase.
    #[arg(long, default_value_t = 100)]
    jobs_per_client: usize,
    /// Warm-up jobs before measuring.
    #[arg(long, default_value_t = 50)]
    warmup: usize,
}

const JOB: &str = r#"{"agent":"bench","connection":"sample","sql":"SELECT region, COUNT(*) AS n FROM orders WHERE region = $1 GROUP BY region","params":[{"type":"text","value":"North"}],"render":{"kind":"table","format":"json"}}"#;

async fn one_job(conn: &mut outpost_e2e::client::Conn) -> Result<Duration> {
    let start = Instant::now();
    let res = conn.request(http::Method::POST, "/v1/jobs", Some(JOB.as_bytes().to_vec())).await?;
    anyhow::ensure!(res.status == 202, "dispatch: {} {}", res.status, res.text());
    let id = res.json()?["id"].as_str().context("id")?.to_owned();
    let res = conn.get(&format!("/v1/jobs/{id}/result?wait=30")).await?;
    anyhow::ensure!(res.status == 200, "result: {} {}", res.status, res.text());
    Ok(start.elapsed())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let root = tempfile::tempdir()?;
    let (cp, _agent) = outpost_e2e::start_pair(root.path(), "bench", "  max_concurrent_jobs: 64\n", &[]).await?;
    let api = cp.api()?;

    let mut conn = api.connect().await?;
    for _ in 0..args.warmup {
        one_job(&mut conn).await?;
    }
    let mut lat = Vec::with_capacity(args.jobs);
    for _ in 0..args.jobs {
        lat.push(one_job(&mut conn).await?);
    }
    lat.sort();

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

    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.clients {
        let api = api.clone();
        let n = args.jobs_per_client;
        tasks.push(tokio::spawn(async move {
            let mut conn = api.connect().await?;
            for _ in 0..n {
                one_job(&mut conn).await?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let elapsed = start.elapsed();
    let total = args.clients * args.jobs_per_client;
    let throughput = total as f64 / elapsed.as_secs_f64();

    println!("machine: {}", outpost_e2e::machine());
    println!();
    println!("| measure | value |");
    println!("| --- | --- |");
    println!("| sequential jobs | {} (after {} warm-up) |", args.jobs, args.warmup);
    println!("| latency p50 | {} |", ms(percentile(&lat, 0.50)));
    println!("| latency p90 | {} |", ms(percentile(&lat, 0.90)));
    println!("| latency p99 | {} |", ms(percentile(&lat, 0.99)));
    println!("| latency max | {} |", ms(percentile(&lat, 1.0)));
    println!("| peer: one API round trip (GET /v1/agents) p50 | {} |", ms(percentile(&floor, 0.50)));
    println!("| peer: one API round trip (GET /v1/agents) p99 | {} |", ms(percentile(&floor, 0.99)));
    println!("| concurrent clients | {} × {} jobs = {} |", args.clients, args.jobs_per_client, total);
    println!("| throughput | {throughput:.0} jobs/s ({:.2} s) |", elapsed.as_secs_f64());
    Ok(())
}
