//! How many idle agents one control-plane replica holds long-polls for, and at what
//! memory. Simulated agents on loopback that are real protocol-wise: each redeems its
//! own enrolment token over TLS (ALPN `outpost-enroll/1`, `POST /v1/enroll` with a CSR
//! for a fresh P-256 key), then opens one mutual-TLS HTTP/2 connection with the issued
//! certificate (the agent's own client TLS config and keep-alive pings) and leaves a
//! `GET /v1/agent/jobs/next?wait=300&max=1` pending. When every agent is parked, the
//! control plane's RSS, peak RSS and open descriptors are read from `/proc`; then one job
//! is dispatched to one simulated agent, whose pending poll must return it. All agents
//! live in this one process, on one tokio runtime, one task and one connection each.
//! Used by `scripts/bench.sh`; prints a Markdown table.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _, Result};
use bytes::Bytes;
use clap::Parser;
use http::{Request, StatusCode};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use outpost_control_plane::store::{EnrolTokenRecord, Store as _};
use outpost_e2e::{ControlPlane, PgDatabase};
use outpost_protocol::encoding::{hex, sha256_hex};
use outpost_protocol::enrol::{EnrolRequest, EnrolResponse};
use outpost_protocol::wire::{ALPN_ENROLL, PATH_ENROLL, PATH_POLL};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::TlsConnector;

/// Outpost idle-connection benchmark.
#[derive(Debug, Parser)]
struct Args {
    /// Simulated agents, each with one parked long-poll.
    #[arg(long, default_value_t = 10_000)]
    agents: usize,
    /// The control plane's store.
    #[arg(long, value_enum, default_value_t = StoreKind::Postgres)]
    store: StoreKind,
    /// After measuring, hold the connections this long (covering the agents' 15 s
    /// keep-alive pings) and read the RSS again; 0 skips it.
    #[arg(long, default_value_t = 20)]
    hold_secs: u64,
    /// Enrolments and connection set-ups in flight at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum StoreKind {
    Sqlite,
    Postgres,
}

/// What every simulated agent needs to know about the control plane.
struct Target {
    /// Its agent listener.
    addr: String,
    /// Its CA (DER) and that CA's pin.
    ca: CertificateDer<'static>,
    ca_sha256: String,
    /// TLS for enrolment: trusts exactly that CA, offers ALPN `outpost-enroll/1`.
    enrol_tls: Arc<rustls::ClientConfig>,
}

/// What a simulated agent reports to the bench.
enum Event {
    /// Enrolled, connected, and its first long-poll is sent.
    Parked,
    /// Could not get there.
    Failed(String),
    /// A long-poll came back with jobs: (status, body, when).
    Jobs(StatusCode, Bytes, Instant),
    /// A long-poll failed after the agent was parked.
    Broken(String),
}

/// From `/proc/<pid>/status`: (VmRSS, VmHWM, threads), in KiB and count.
fn proc_status(pid: &str) -> Result<(u64, u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> Result<u64> {
        let line = text.lines().find(|l| l.starts_with(name)).with_context(|| format!("no {name} in status"))?;
        Ok(line.split_whitespace().nth(1).context("value")?.parse()?)
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?, field("Threads:")?))
}

fn open_fds(pid: &str) -> Result<usize> {
    Ok(std::fs::read_dir(format!("/proc/{pid}/fd"))?.count())
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

#[allow(clippy::disallowed_methods)] // `collect` runs on a `Limited` body
async fn read_body(body: hyper::body::Incoming) -> Result<Bytes> {
    Ok(Limited::new(body, 8 * 1024 * 1024)
        .collect()
        .await
        .map_err(|e| anyhow::anyhow!("reading body: {e}"))?
        .to_bytes())
}

async fn tls_connect(
    addr: &str,
    config: Arc<rustls::ClientConfig>,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await.with_context(|| format!("connecting to {addr}"))?;
    tcp.set_nodelay(true)?;
    Ok(TlsConnector::from(config).connect(ServerName::try_from("localhost")?, tcp).await?)
}

/// Enrols `name` with a token (id, secret) as `outpost-agent enroll` does: a fresh P-256
/// key, a CSR naming the agent, `POST /v1/enroll` on an enrolment connection. Returns the
/// mutual-TLS client config for the issued certificate (the agent's own).
async fn enrol(target: &Target, name: &str, token_id: String, secret: String) -> Result<Arc<rustls::ClientConfig>> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = rcgen::CertificateParams::default();
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, name);
    params.distinguished_name = dn;
    let csr_pem = params.serialize_request(&key)?.pem()?;
    let body = serde_json::to_vec(&EnrolRequest { token_id, secret, agent: name.to_owned(), csr_pem })?;

    let tls = tls_connect(&target.addr, Arc::clone(&target.enrol_tls)).await?;
    let (mut sender, conn) = http1::handshake(TokioIo::new(tls)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = Request::post(PATH_ENROLL)
        .header(http::header::HOST, target.addr.as_str())
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))?;
    let res = sender.send_request(req).await?;
    let status = res.status();
    let bytes = read_body(res.into_body()).await?;
    ensure!(status == StatusCode::OK, "enrol {name}: {status} {}", String::from_utf8_lossy(&bytes));
    drop(sender); // closes the enrolment connection
    let res: EnrolResponse = serde_json::from_slice(&bytes)?;
    let cert = CertificateDer::from_pem_slice(res.certificate_pem.as_bytes())?;
    let identity = outpost_agent::identity::Identity {
        enrolment: outpost_agent::identity::Enrolment {
            agent: name.to_owned(),
            address: target.addr.clone(),
            server_name: "localhost".into(),
            ca_sha256: target.ca_sha256.clone(),
            enrolled_at: outpost_protocol::unix_now(),
            not_after: res.not_after,
            cert_issued_at: outpost_protocol::unix_now(),
            signing_keys: res.signing_keys,
            key_set_version: res.key_set_version,
            pool: res.pool,
        },
        cert,
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        ca: target.ca.clone(),
    };
    Ok(outpost_agent::transport::mtls_config(&identity)?)
}

/// Opens the agent's one HTTP/2 connection, with the agent's keep-alive settings.
async fn connect(target: &Target, config: Arc<rustls::ClientConfig>) -> Result<http2::SendRequest<Full<Bytes>>> {
    let tls = tls_connect(&target.addr, config).await?;
    let (sender, conn) = http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .keep_alive_interval(Duration::from_secs(15))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true)
        .handshake(TokioIo::new(tls))
        .await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

fn poll_request(target: &Target) -> Result<Request<Full<Bytes>>> {
    Ok(Request::get(format!("https://{}{PATH_POLL}?wait=300&max=1", target.addr)).body(Full::new(Bytes::new()))?)
}

/// One simulated agent: enrol and connect while holding a set-up permit, send the
/// long-poll, report `Parked`, then wait. An empty answer (the long-poll ran out) is
/// followed by the next poll, as the agent does; an answer with jobs is reported.
async fn simulated_agent(
    target: Arc<Target>,
    permits: Arc<Semaphore>,
    name: String,
    token: (String, String),
    events: mpsc::UnboundedSender<(usize, Event)>,
    idx: usize,
) {
    let permit = permits.acquire_owned().await;
    let setup = async {
        let config = enrol(&target, &name, token.0, token.1).await?;
        let mut sender = connect(&target, config).await?;
        sender.ready().await?;
        let pending = sender.send_request(poll_request(&target)?);
        anyhow::Ok((sender, pending))
    };
    let (mut sender, mut pending) = match setup.await {
        Ok(x) => x,
        Err(e) => {
            let _ = events.send((idx, Event::Failed(format!("{e:#}"))));
            return;
        }
    };
    drop(permit);
    let _ = events.send((idx, Event::Parked));
    loop {
        let answered = async {
            let res = pending.await?;
            let status = res.status();
            let body = read_body(res.into_body()).await?;
            anyhow::Ok((status, body))
        };
        match answered.await {
            Ok((status, body)) => {
                let empty = status == StatusCode::OK
                    && serde_json::from_slice::<serde_json::Value>(&body)
                        .ok()
                        .and_then(|v| v["jobs"].as_array().map(Vec::is_empty))
                        .unwrap_or(false);
                if !empty {
                    let _ = events.send((idx, Event::Jobs(status, body, Instant::now())));
                    return;
                }
            }
            Err(e) => {
                let _ = events.send((idx, Event::Broken(format!("{e:#}"))));
                return;
            }
        }
        let next = async {
            sender.ready().await?;
            anyhow::Ok(sender.send_request(poll_request(&target)?))
        };
        pending = match next.await {
            Ok(p) => p,
            Err(e) => {
                let _ = events.send((idx, Event::Broken(format!("{e:#}"))));
                return;
            }
        };
    }
}

/// Fails early, with the fix, when this machine cannot hold `agents` connections: the
/// bench and the control plane (which inherits the limit) each need a descriptor per
/// agent, and every agent uses two local ports (its enrolment connection lingers in
/// TIME_WAIT beside its long-poll connection).
fn check_limits(agents: usize) -> Result<()> {
    let limits = std::fs::read_to_string("/proc/self/limits")?;
    let soft = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .context("no open-files limit in /proc/self/limits")?;
    if let Ok(n) = soft.parse::<usize>() {
        ensure!(n >= agents + 256, "ulimit -n is {n}: {agents} agents need at least {}; raise it", agents + 256);
    }
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")?;
    let ports: Vec<usize> = range.split_whitespace().filter_map(|p| p.parse().ok()).collect();
    if let [low, high] = ports[..] {
        ensure!(
            high - low + 1 >= 2 * agents + 1000,
            "the local port range {low}-{high} is too small for {agents} agents (two ports each): \
             widen net.ipv4.ip_local_port_range"
        );
    }
    Ok(())
}

/// Creates one enrolment token per agent directly in the store; returns (id, secret) each.
async fn create_tokens(cp: &ControlPlane, names: &[String]) -> Result<Vec<(String, String)>> {
    let store = cp.store().await?;
    let now = outpost_protocol::unix_now();
    let tokens: Vec<(String, String)> = names
        .iter()
        .map(|_| (hex(&outpost_protocol::ids::random_bytes::<8>()), hex(&outpost_protocol::ids::random_bytes::<32>())))
        .collect();
    let records: Vec<EnrolTokenRecord> = names
        .iter()
        .zip(&tokens)
        .map(|(name, (id, secret))| EnrolTokenRecord {
            id: id.clone(),
            agent: name.clone(),
            pool: None,
            secret_sha256: sha256_hex(secret.as_bytes()),
            created_at: now,
            expires_at: now + 3600,
        })
        .collect();
    let records = Arc::new(std::sync::Mutex::new(records));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (store, records) = (store.clone(), Arc::clone(&records));
        workers.push(tokio::spawn(async move {
            loop {
                let next = records.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.pop();
                let Some(r) = next else { return anyhow::Ok(()) };
                store.create_enrol_token(r).await?;
            }
        }));
    }
    for w in workers {
        w.await??;
    }
    Ok(tokens)
}

/// Agents whose `last_seen` is set: each one's long-poll has reached the store (a poll
/// records the agent as seen before it parks). Read from the store directly, so that
/// the check does not allocate inside the control plane being measured.
async fn seen_agents(store: &outpost_control_plane::store::backend::Backend) -> Result<usize> {
    Ok(store.agents().await?.iter().filter(|a| a.last_seen.is_some()).count())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let load = std::fs::read_to_string("/proc/loadavg")?.split_whitespace().take(3).collect::<Vec<_>>().join(" ");
    ensure!(args.agents > 0 && args.concurrency > 0, "--agents and --concurrency must be positive");
    check_limits(args.agents)?;
    let root = tempfile::tempdir()?;
    let db = match args.store {
        StoreKind::Postgres => Some(Arc::new(PgDatabase::create()?)),
        StoreKind::Sqlite => None,
    };
    let mut cp = ControlPlane::init_on(root.path(), db)?;
    cp.serve_args = ["--long-poll-secs", "300", "--offline-after-secs", "400"].map(str::to_owned).to_vec();
    cp.start()?;
    let pid = cp.process()?.pid().to_string();
    let api = cp.api()?;
    // One admin request, so the API path is warm in the baseline too.
    let res = api.get("/v1/agents").await?;
    ensure!(res.status == 200, "agents: {} {}", res.status, res.text());
    let (base_rss, _, base_threads) = proc_status(&pid)?;
    let base_fds = open_fds(&pid)?;

    let names: Vec<String> = (0..args.agents).map(|i| format!("idle-{i:05}")).collect();
    let started = Instant::now();
    let tokens = create_tokens(&cp, &names).await?;
    let tokens_took = started.elapsed();
    eprintln!("{} enrolment tokens created in the store in {:.1} s", tokens.len(), tokens_took.as_secs_f64());

    let ca_pem = std::fs::read(cp.data_dir.join("ca.crt"))?;
    let ca = CertificateDer::from_pem_slice(&ca_pem)?.into_owned();
    let mut enrol_tls = (*outpost_e2e::client::tls_config(&cp.data_dir.join("ca.crt"))?).clone();
    enrol_tls.alpn_protocols = vec![ALPN_ENROLL.to_vec()];
    let target = Arc::new(Target {
        addr: cp.agent_addr.clone(),
        ca_sha256: sha256_hex(&ca),
        ca,
        enrol_tls: Arc::new(enrol_tls),
    });

    let (tx, mut rx) = mpsc::unbounded_channel();
    let permits = Arc::new(Semaphore::new(args.concurrency));
    let started = Instant::now();
    for (idx, (name, token)) in names.iter().zip(tokens).enumerate() {
        tokio::spawn(simulated_agent(Arc::clone(&target), Arc::clone(&permits), name.clone(), token, tx.clone(), idx));
    }
    drop(tx);
    let (mut parked, mut failed, mut broken) = (0usize, Vec::new(), Vec::new());
    let mut early_jobs = 0usize;
    while parked + failed.len() < args.agents {
        let Some((idx, ev)) = rx.recv().await else { bail!("simulated agents vanished") };
        match ev {
            Event::Parked => {
                parked += 1;
                if parked % 1000 == 0 {
                    eprintln!("{parked} agents parked after {:.1} s", started.elapsed().as_secs_f64());
                }
            }
            Event::Failed(e) => failed.push((idx, e)),
            Event::Broken(e) => broken.push((idx, e)),
            Event::Jobs(..) => early_jobs += 1,
        }
    }
    let setup_took = started.elapsed();
    eprintln!(
        "{parked} agents enrolled, connected and polling after {:.1} s ({:.0}/s); {} failed",
        setup_took.as_secs_f64(),
        parked as f64 / setup_took.as_secs_f64(),
        failed.len()
    );
    for (idx, e) in failed.iter().take(5) {
        eprintln!("  {}: {e}", names[*idx]);
    }

    // Every parked poll has reached the store.
    let store = cp.store().await?;
    let seen_since = Instant::now();
    let want = parked;
    outpost_e2e::eventually("every parked agent's long-poll has reached the store", Duration::from_secs(300), || {
        let store = store.clone();
        async move { Ok(seen_agents(&store).await? >= want) }
    })
    .await?;
    eprintln!(
        "all {want} long-polls seen by the store {:.1} s after the last was sent",
        seen_since.elapsed().as_secs_f64()
    );
    let pending_now = parked - broken.len();
    let (rss, hwm, threads) = proc_status(&pid)?;
    let fds = open_fds(&pid)?;
    let (client_rss, client_hwm, _) = proc_status("self")?;

    let held = if args.hold_secs > 0 {
        tokio::time::sleep(Duration::from_secs(args.hold_secs)).await;
        Some(proc_status(&pid)?)
    } else {
        None
    };

    // The control plane's own view (after the RSS readings: a 10,000-agent answer is a
    // large allocation of its own): every simulated agent is online.
    let view = api.get("/v1/agents").await?.json()?;
    let online = view["agents"].as_array().map_or(0, |a| a.iter().filter(|a| a["status"] == "online").count());
    let (after_list, _, _) = proc_status(&pid)?;

    // Liveness: one job to one parked agent comes back on its pending poll.
    let chosen = names.len() / 2;
    let dispatched = Instant::now();
    let job_id = cp
        .dispatch(serde_json::json!({
            "agent": names[chosen], "connection": "sample", "sql": "SELECT 1",
            "render": { "kind": "table", "format": "json" },
        }))
        .await?;
    let woke = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match rx.recv().await {
                Some((idx, Event::Jobs(status, body, at))) if idx == chosen => return Ok((status, body, at)),
                Some((idx, Event::Broken(e))) => broken.push((idx, e)),
                Some((idx, Event::Jobs(status, _, _))) => {
                    bail!("agent {} got an unexpected answer: {status}", names[idx])
                }
                Some(_) => {}
                None => bail!("simulated agents vanished"),
            }
        }
    })
    .await
    .context("the chosen agent's long-poll did not return the job within 30 s")??;
    let (status, body, at) = woke;
    ensure!(status == StatusCode::OK, "poll answered {status}: {}", String::from_utf8_lossy(&body));
    let poll: serde_json::Value = serde_json::from_slice(&body)?;
    ensure!(poll["jobs"][0]["job_id"] == job_id.as_str(), "the poll returned {poll}, not job {job_id}");
    let wake = at - dispatched;

    let added = rss.saturating_sub(base_rss);
    let store_name = match args.store {
        StoreKind::Postgres => "PostgreSQL",
        StoreKind::Sqlite => "SQLite",
    };
    println!("machine: {}; load average before the run: {load}", outpost_e2e::machine());
    println!();
    println!(
        "One control plane ({store_name} store, --long-poll-secs 300). Each simulated agent enrolled over TLS \
         with its own token and CSR, then holds one mutual-TLS HTTP/2 connection (keep-alive pings every 15 s, \
         as the agent) with one pending GET /v1/agent/jobs/next?wait=300&max=1."
    );
    println!();
    println!(
        "| store | agents | parked long-polls | baseline RSS | control-plane RSS | peak RSS | RSS per connection | open fds |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    println!(
        "| {store_name} | {parked} | {pending_now} | {} | {} | {} | {:.1} KiB | {fds} |",
        mib(base_rss),
        mib(rss),
        mib(hwm),
        added as f64 / pending_now.max(1) as f64
    );
    println!();
    println!(
        "- control-plane RSS with every agent parked: {:.0} MB (10^6 bytes); threads {base_threads} -> {threads}; \
         open fds {base_fds} -> {fds}",
        rss as f64 * 1024.0 / 1e6
    );
    if let Some((rss, hwm, _)) = held {
        println!("- {} s later (keep-alive pings exchanged): RSS {}, peak {}", args.hold_secs, mib(rss), mib(hwm));
    }
    println!(
        "- agents online in GET /v1/agents: {online}; failed to enrol or connect: {}; control-plane RSS after \
         that one listing: {}",
        failed.len(),
        mib(after_list)
    );
    println!(
        "- enrolment + connection + first poll of all agents: {:.1} s at concurrency {} ({:.0} agents/s)",
        setup_took.as_secs_f64(),
        args.concurrency,
        parked as f64 / setup_took.as_secs_f64()
    );
    println!(
        "- bench client (all simulated agents, one tokio runtime): RSS {} (peak {})",
        mib(client_rss),
        mib(client_hwm)
    );
    println!(
        "- liveness: a job dispatched to {} came back on its pending long-poll {:.1} ms after dispatch",
        names[chosen],
        wake.as_secs_f64() * 1000.0
    );
    if early_jobs > 0 || !broken.is_empty() {
        println!("- long-polls answered early: {early_jobs}; broken: {}", broken.len());
    }
    for (idx, e) in broken.iter().take(5) {
        eprintln!("broken long-poll of {}: {e}", names[*idx]);
    }
    ensure!(failed.is_empty(), "{} agents could not enrol or connect", failed.len());
    ensure!(broken.is_empty(), "{} parked long-polls broke", broken.len());
    Ok(())
}
