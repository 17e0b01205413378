//! Throughput and latency of small pool jobs on one SQLite control plane, one PostgreSQL
//! control plane, and three PostgreSQL replicas sharing one database, measured in the
//! same run with the same two pooled agents. Each job: `POST /v1/jobs` addressed to
//! `pool:eu`, then `GET /v1/jobs/{id}/result?wait=30`, on a kept-alive connection.
//! With three replicas the clients are spread round-robin over the replicas' API
//! listeners and the members long-poll replicas 1 and 2, so most wake-ups cross
//! replicas (PostgreSQL LISTEN/NOTIFY). Used by `scripts/bench.sh`; prints a Markdown table.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context as _, Result};
use clap::Parser;
use outpost_e2e::client::{Api, Conn};
use outpost_e2e::{Agent, ControlPlane, PgDatabase};

/// Outpost replica benchmark.
#[derive(Debug, Parser)]
struct Args {
    /// Concurrent API clients.
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// Measured jobs per client.
    #[arg(long, default_value_t = 50)]
    jobs_per_client: usize,
    /// Warm-up jobs per client before measuring (same connections).
    #[arg(long, default_value_t = 5)]
    warmup: usize,
    /// Configurations to run, comma-separated: sqlite, pg1, pg3.
    #[arg(long, value_delimiter = ',', default_value = "sqlite,pg1,pg3")]
    configs: Vec<Config>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Config {
    /// SQLite store, one control plane.
    Sqlite,
    /// PostgreSQL store, one control plane.
    Pg1,
    /// PostgreSQL store, three replicas.
    Pg3,
}

impl Config {
    fn label(self) -> &'static str {
        match self {
            Config::Sqlite => "SQLite, 1 replica",
            Config::Pg1 => "PostgreSQL, 1 replica",
            Config::Pg3 => "PostgreSQL, 3 replicas",
        }
    }
}

const JOB: &str = r#"{"agent":"pool:eu","connection":"sample","sql":"SELECT region, COUNT(*) AS n FROM orders WHERE region = $1 GROUP BY region","params":[{"type":"text","value":"North"}],"render":{"kind":"table","format":"json"}}"#;

async fn one_job(conn: &mut Conn) -> Result<Duration> {
    let start = Instant::now();
    let res = conn.request(http::Method::POST, "/v1/jobs", Some(JOB.as_bytes().to_vec())).await?;
    ensure!(res.status == 202, "dispatch: {} {}", res.status, res.text());
    let id = res.json()?["id"].as_str().context("id")?.to_owned();
    let res = conn.get(&format!("/v1/jobs/{id}/result?wait=30")).await?;
    ensure!(res.status == 200, "result of {id}: {} {}", res.status, res.text());
    Ok(start.elapsed())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// Control planes and the two pool members of one configuration. Field order: the
/// agents stop before the control planes, and the database is dropped last.
struct Setup {
    agents: Vec<Agent>,
    cps: Vec<ControlPlane>,
    db: Option<Arc<PgDatabase>>,
}

async fn setup(root: &std::path::Path, config: Config) -> Result<Setup> {
    let (db, replicas) = match config {
        Config::Sqlite => (None, 1),
        Config::Pg1 => (Some(Arc::new(PgDatabase::create()?)), 1),
        Config::Pg3 => (Some(Arc::new(PgDatabase::create()?)), 3),
    };
    let first = ControlPlane::init_on(root, db.clone())?;
    let mut cps = Vec::new();
    for i in 1..replicas {
        cps.push(first.replica(root, &format!("cp{}", i + 1))?);
    }
    cps.insert(0, first);
    for cp in &mut cps {
        cp.start()?;
        let want = if db.is_some() { "store=PostgreSQL" } else { "store=SQLite" };
        ensure!(cp.log_text().contains(want), "expected {want} in the log:\n{}", cp.log_text());
    }
    // m1 enrols through replica 1, m2 through replica 2 (when there is one): a token
    // carries the agent address of the replica that made it.
    let mut agents = Vec::new();
    for (i, name) in ["m1", "m2"].into_iter().enumerate() {
        let cp = &cps[i % cps.len()];
        let res = cp
            .api()?
            .post_json("/v1/enrollment-tokens", &serde_json::json!({ "agent": name, "pool": "eu", "ttl_secs": 600 }))
            .await?;
        ensure!(res.status == 201, "enrolment token: {} {}", res.status, res.text());
        let mut agent = Agent::new(root, name, "  max_concurrent_jobs: 16\n")?;
        let (code, out, err) = agent.enroll(res.json()?["token"].as_str().context("token")?)?;
        ensure!(code == 0, "enroll {name}: {out}{err}");
        agent.start_connected()?;
        agents.push(agent);
    }
    let view = cps[cps.len() - 1].api()?.get("/v1/agents").await?.json()?;
    ensure!(view["pools"][0]["members"] == serde_json::json!(["m1", "m2"]), "pool eu: {view}");
    Ok(Setup { agents, cps, db })
}

struct Measured {
    jobs: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
    /// CPU seconds of the measured phase: control planes, agents, PostgreSQL, this client.
    cpu: [f64; 4],
}

/// CPU seconds so far of the control planes, the agents, PostgreSQL and this process.
fn cpu_now(setup: &Setup) -> [f64; 4] {
    let sum = |pids: Vec<Option<u32>>| pids.into_iter().flatten().filter_map(outpost_e2e::cpu_secs).sum::<f64>();
    [
        sum(setup.cps.iter().map(ControlPlane::pid).collect()),
        sum(setup.agents.iter().map(Agent::pid).collect()),
        if setup.db.is_some() { outpost_e2e::postgres_cpu_secs() } else { 0.0 },
        outpost_e2e::cpu_secs(std::process::id()).unwrap_or(0.0),
    ]
}

async fn measure(setup: &Setup, apis: &[Api], args: &Args) -> Result<Measured> {
    // Connections first (round-robin over the replicas), then warm-up on them.
    let mut conns = Vec::with_capacity(args.clients);
    for i in 0..args.clients {
        conns.push(apis[i % apis.len()].connect().await?);
    }
    let mut tasks = Vec::new();
    for mut conn in conns {
        let n = args.warmup;
        tasks.push(tokio::spawn(async move {
            for _ in 0..n {
                one_job(&mut conn).await?;
            }
            anyhow::Ok(conn)
        }));
    }
    let mut conns = Vec::with_capacity(args.clients);
    for t in tasks {
        conns.push(t.await??);
    }

    let cpu_before = cpu_now(setup);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for mut conn in conns {
        let n = args.jobs_per_client;
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(n);
            for _ in 0..n {
                lat.push(one_job(&mut conn).await?);
            }
            anyhow::Ok(lat)
        }));
    }
    let mut latencies = Vec::with_capacity(args.clients * args.jobs_per_client);
    for t in tasks {
        latencies.extend(t.await??);
    }
    let elapsed = start.elapsed();
    let cpu_after = cpu_now(setup);
    let cpu = std::array::from_fn(|i| cpu_after[i] - cpu_before[i]);
    latencies.sort();
    Ok(Measured { jobs: latencies.len(), elapsed, latencies, cpu })
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let load = std::fs::read_to_string("/proc/loadavg")?.split_whitespace().take(3).collect::<Vec<_>>().join(" ");
    ensure!(args.clients > 0 && args.jobs_per_client > 0, "--clients and --jobs-per-client must be positive");
    let mut rows = Vec::new();
    for &config in &args.configs {
        let root = tempfile::tempdir()?;
        let setup = setup(root.path(), config).await.with_context(|| format!("setting up {}", config.label()))?;
        let apis = setup.cps.iter().map(ControlPlane::api).collect::<Result<Vec<_>>>()?;
        let m = measure(&setup, &apis, &args).await.with_context(|| format!("measuring {}", config.label()))?;
        // Which member ran how many: both should take part (pool jobs go to any live member).
        let ran: Vec<usize> = setup
            .agents
            .iter()
            .map(|a| {
                a.audit_records()
                    .map(|r| r.iter().filter(|r| r["event"] == "job" && r["verdict"] == "accepted").count())
            })
            .collect::<Result<_>>()?;
        eprintln!(
            "{}: {} jobs in {:.2} s; m1 ran {}, m2 ran {} (warm-up included)",
            config.label(),
            m.jobs,
            m.elapsed.as_secs_f64(),
            ran[0],
            ran[1]
        );
        rows.push((config, m));
        drop(setup);
    }
    // PostgreSQL's own floor on the same server, from as many connections as there were
    // clients: five times the three durable writes each job makes at least, so that the
    // phase lasts about as long as a job phase (a floor write costs a tenth of a job).
    let floor = if args.configs.iter().any(|c| c != &Config::Sqlite) {
        Some(outpost_e2e::pg_floor::durable_insert_floor(args.clients, 15 * args.jobs_per_client).await?)
    } else {
        None
    };

    println!("machine: {}; load average before the run: {load}", outpost_e2e::machine());
    println!();
    println!(
        "{} concurrent API clients × {} jobs (after {} warm-up jobs each); each job is POST /v1/jobs to pool:eu \
         then GET /v1/jobs/{{id}}/result?wait=30 on a kept-alive connection; two pooled agents (m1, m2), \
         max_concurrent_jobs 16 each. With 3 replicas the clients go round-robin to the replicas and \
         m1/m2 long-poll replicas 1/2.",
        args.clients, args.jobs_per_client, args.warmup
    );
    println!();
    println!("| configuration | jobs | throughput | p50 | p99 |");
    println!("| --- | --- | --- | --- | --- |");
    for (config, m) in &rows {
        println!(
            "| {} | {} | {:.0} jobs/s | {} | {} |",
            config.label(),
            m.jobs,
            m.jobs as f64 / m.elapsed.as_secs_f64(),
            ms(percentile(&m.latencies, 0.50)),
            ms(percentile(&m.latencies, 0.99)),
        );
    }
    println!();
    println!(
        "CPU time per job in the measured phase (user + system of every thread; PostgreSQL: every `postgres` \
         process of the server, its other databases' work included):"
    );
    println!();
    println!("| configuration | control plane(s) | agents | PostgreSQL | load client | all | cores busy |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for (config, m) in &rows {
        let per = |s: f64| format!("{:.0} µs", s * 1e6 / m.jobs as f64);
        println!(
            "| {} | {} | {} | {} | {} | {} | {:.2} of {} |",
            config.label(),
            per(m.cpu[0]),
            per(m.cpu[1]),
            if config == &Config::Sqlite { "-".to_owned() } else { per(m.cpu[2]) },
            per(m.cpu[3]),
            per(m.cpu.iter().sum()),
            m.cpu.iter().sum::<f64>() / m.elapsed.as_secs_f64(),
            std::thread::available_parallelism().map_or(0, |n| n.get()),
        );
    }
    if let Some(floor) = floor {
        print_floor(&floor, &rows);
    }
    Ok(())
}

/// PostgreSQL's floor and, when SQLite and one PostgreSQL replica both ran, the most
/// PostgreSQL could reach beside SQLite were its server CPU per job at that floor.
fn print_floor(floor: &outpost_e2e::pg_floor::Floor, rows: &[(Config, Measured)]) {
    let (w, r) = (floor.write.per_statement_us(), floor.read.per_statement_us());
    let least = 3.0 * w + 2.0 * r;
    println!();
    println!(
        "PostgreSQL's floor, same server, same run, {} connections: {} durable single-row INSERT transactions in \
         {:.2} s, {w:.0} µs of server CPU each; {} reads of one row by primary key in {:.2} s, {r:.0} µs each. \
         A job makes at least three durable writes (queued, leased, final) and two token checks (one per API \
         request), so ≥ {least:.0} µs of server CPU per job on any PostgreSQL store with those promises.",
        floor.write.connections,
        floor.write.statements,
        floor.write.elapsed.as_secs_f64(),
        floor.read.statements,
        floor.read.elapsed.as_secs_f64(),
    );
    let find = |c: Config| rows.iter().find(|(k, _)| *k == c).map(|(_, m)| m);
    if let (Some(sqlite), Some(pg)) = (find(Config::Sqlite), find(Config::Pg1)) {
        let per = |m: &Measured, s: f64| s * 1e6 / m.jobs as f64;
        let sqlite_all = per(sqlite, sqlite.cpu.iter().sum());
        let pg_rest = per(pg, pg.cpu[0] + pg.cpu[1] + pg.cpu[3]);
        println!(
            "When the cores are the limit, throughput goes as 1 / (CPU per job): with the control plane, agents \
             and client at their PostgreSQL run's {pg_rest:.0} µs per job and the server at that floor, one \
             PostgreSQL replica could reach at most {:.2}× SQLite's throughput (SQLite: {sqlite_all:.0} µs per job \
             in all; measured: {:.2}×). Even with them at SQLite's whole {sqlite_all:.0} µs, SQLite's own store \
             work included: at most {:.2}×.",
            sqlite_all / (pg_rest + least),
            (pg.jobs as f64 / pg.elapsed.as_secs_f64()) / (sqlite.jobs as f64 / sqlite.elapsed.as_secs_f64()),
            sqlite_all / (sqlite_all + least),
        );
    }
}
