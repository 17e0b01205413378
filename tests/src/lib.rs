//! Harness for Outpost's end-to-end tests: starts the real `outpost-control-plane` and
//! `outpost-agent` binaries as separate processes in a temp dir, talks to the API over
//! real TLS, and cleans up (kills every process it started) on drop, also when a test
//! fails.
//!
//! Binaries are taken from `OUTPOST_BIN_DIR`, or from the workspace's `target/debug`;
//! `scripts/test.sh` builds them first.
#![forbid(unsafe_code)]

pub mod client;
pub mod measure;
pub mod pg;
pub mod pg_floor;
pub mod proc;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};

pub use client::{call, ok_json, share_connection, signed_in, user_with_token, Api, HttpResponse, TEST_PASSWORD};
pub use measure::{cpu_secs, machine, postgres_cpu_secs};
pub use proc::Process;

/// Checks `probe` until it answers `true`, backing off from 20 ms to 500 ms; fails
/// naming `what` after `timeout`. For state outside our processes (a database's session
/// list) that has no event to wait on.
pub async fn eventually<F, Fut>(what: &str, timeout: Duration, mut probe: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut delay = Duration::from_millis(20);
    loop {
        if probe().await? {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting until {what}");
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(500));
    }
}

/// [`eventually`] for a probe that blocks (a process, a file, a socket), outside an async test.
pub fn eventually_blocking<F>(what: &str, timeout: Duration, mut probe: F) -> Result<()>
where
    F: FnMut() -> Result<bool>,
{
    let deadline = std::time::Instant::now() + timeout;
    let mut delay = Duration::from_millis(20);
    loop {
        if probe()? {
            return Ok(());
        }
        if std::time::Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting until {what}");
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_millis(500));
    }
}

/// Path of one of the project's binaries.
pub fn bin(name: &str) -> PathBuf {
    let dir = std::env::var_os("OUTPOST_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug"));
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} is missing: run `cargo build --workspace --bins` first (scripts/test.sh does)",
        p.display()
    );
    p
}

/// The agent and API addresses a control plane bound, from its "Control plane listening."
/// log line (which names them even when it was asked for port 0).
pub fn listening_addrs(lines: &[String]) -> Result<(String, String)> {
    let line = lines.iter().find(|l| l.contains("Control plane listening.")).context("no listening line")?;
    let field = |name: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(name)?.strip_prefix('='))
            .map(str::to_owned)
            .with_context(|| format!("no {name} in {line:?}"))
    };
    Ok((field("agent_listen")?, field("api_listen")?))
}

/// A free TCP port on 127.0.0.1 for a third-party server that cannot be given port 0 and
/// tell what it bound (tinyproxy, the OpenID provider); our own servers bind port 0 (bound and released; the kernel does not hand it out again at once).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(0)
}

/// Runs a command to completion; returns (exit code, stdout, stderr).
pub fn run_cmd(program: &Path, args: &[&str], stdin: Option<&str>) -> Result<(i32, String, String)> {
    run_cmd_env(program, args, stdin, &[])
}

/// Like [`run_cmd`], with extra environment variables (see [`proc::CLEARED_ENV`]).
pub fn run_cmd_env(
    program: &Path,
    args: &[&str],
    stdin: Option<&str>,
    env: &[(&str, &Path)],
) -> Result<(i32, String, String)> {
    use std::io::Write as _;
    let mut cmd = std::process::Command::new(program);
    cmd.args(args).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    for v in proc::CLEARED_ENV {
        cmd.env_remove(v);
    }
    cmd.envs(env.iter().copied());
    cmd.stdin(if stdin.is_some() { std::process::Stdio::piped() } else { std::process::Stdio::null() });
    let mut child = cmd.spawn().with_context(|| format!("spawning {}", program.display()))?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// The PostgreSQL server the tests use (`OUTPOST_TEST_PG_URL`, default the local one).
pub fn pg_server_url() -> String {
    outpost_control_plane::store::testdb::base_url()
}

/// A new, empty database on the test server ([`outpost_control_plane::store::testdb`],
/// which the store's own tests use too), dropped when this is dropped.
pub struct PgDatabase {
    /// Its URL.
    pub url: String,
    db: Option<outpost_control_plane::store::testdb::EmptyDb>,
}

impl PgDatabase {
    /// Creates `outpost_e2e_<random>`.
    pub fn create() -> Result<Self> {
        let db = on_own_runtime(|| outpost_control_plane::store::testdb::EmptyDb::create("outpost_e2e"))?
            .map_err(anyhow::Error::msg)?;
        Ok(Self { url: db.url.clone(), db: Some(db) })
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        if let Some(db) = self.db.take() {
            let _ = on_own_runtime(move || db.drop());
        }
    }
}

/// Runs a future on a runtime of its own, on a thread of its own: the callers may be
/// inside a test's runtime, which cannot block on another, or outside any.
fn on_own_runtime<F, Fut>(f: F) -> Result<Fut::Output>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future,
    Fut::Output: Send + 'static,
{
    std::thread::spawn(move || -> Result<Fut::Output> {
        Ok(tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(f()))
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the test database's thread panicked"))?
}

/// The backend the end-to-end tests run the control plane on: `OUTPOST_TEST_STORE=postgres`
/// gives each control plane a fresh PostgreSQL database; otherwise the embedded SQLite.
pub fn store_under_test() -> Result<Option<Arc<PgDatabase>>> {
    match std::env::var("OUTPOST_TEST_STORE").as_deref() {
        Ok("postgres") => Ok(Some(Arc::new(PgDatabase::create()?))),
        Ok("sqlite") | Err(_) => Ok(None),
        Ok(other) => bail!("OUTPOST_TEST_STORE={other:?}: expected sqlite or postgres"),
    }
}

/// A control plane in a temp dir: initialised, and started with [`ControlPlane::start`].
pub struct ControlPlane {
    /// The data dir.
    pub data_dir: PathBuf,
    /// Agent listener.
    pub agent_addr: String,
    /// API listener.
    pub api_addr: String,
    /// The admin API token from `init`.
    pub admin_token: String,
    /// The admin's first console password, printed once by `init`.
    pub admin_password: String,
    /// Extra `serve` flags.
    pub serve_args: Vec<String>,
    /// A control-plane.yaml to serve with (`--config`) instead of `--data-dir`; it must
    /// name `data_dir`.
    pub config: Option<PathBuf>,
    process: Option<Process>,
    log: PathBuf,
    /// The PostgreSQL database it keeps its state in (`None`: the embedded SQLite).
    /// Declared last: dropped after the process is gone.
    pub pg: Option<Arc<PgDatabase>>,
}

impl ControlPlane {
    /// Runs `init` in `root/cp`, on the backend [`store_under_test`] chooses.
    pub fn init(root: &Path) -> Result<Self> {
        Self::init_on(root, store_under_test()?)
    }

    /// Runs `init` in `root/cp` with its state in `pg` (or the embedded SQLite).
    pub fn init_on(root: &Path, pg: Option<Arc<PgDatabase>>) -> Result<Self> {
        let data_dir = root.join("cp");
        let mut args = vec!["init", "--data-dir", data_dir.to_str().unwrap_or_default(), "--hostname", "localhost"];
        if let Some(db) = &pg {
            args.extend(["--store", db.url.as_str()]);
        }
        let (code, out, err) = run_cmd(&bin("outpost-control-plane"), &args, None)?;
        if code != 0 {
            bail!("init failed ({code}): {err}");
        }
        let admin_token = out.lines().find(|l| l.starts_with("opat_")).context("no admin token printed")?.to_owned();
        let admin_password = out
            .lines()
            .skip_while(|l| !l.starts_with("Console password of user \"admin\""))
            .nth(1)
            .context("no first admin password printed")?
            .to_owned();
        Ok(Self {
            data_dir,
            agent_addr: "127.0.0.1:0".to_owned(),
            api_addr: "127.0.0.1:0".to_owned(),
            admin_token,
            admin_password,
            serve_args: Vec::new(),
            config: None,
            pg,
            process: None,
            log: root.join("control-plane.log"),
        })
    }

    /// Two replicas (`root/cp` and `root/cp2`) on a new PostgreSQL database, started.
    pub fn two_started_replicas(root: &Path) -> Result<(Self, Self)> {
        let db = Arc::new(PgDatabase::create()?);
        let mut cp1 = Self::init_on(root, Some(db))?;
        let mut cp2 = cp1.replica(root, "cp2")?;
        cp1.start()?;
        cp2.start()?;
        Ok((cp1, cp2))
    }

    /// Another replica of this control plane in `root/<name>`: a copy of the data dir
    /// (keys travel as files, never through the database), the same database, its own
    /// listeners. Only with a PostgreSQL store.
    pub fn replica(&self, root: &Path, name: &str) -> Result<Self> {
        anyhow::ensure!(self.pg.is_some(), "replicas share a PostgreSQL store");
        let data_dir = root.join(name);
        let (code, _, err) = run_cmd(
            Path::new("cp"),
            &["-a", self.data_dir.to_str().unwrap_or_default(), data_dir.to_str().unwrap_or_default()],
            None,
        )?;
        anyhow::ensure!(code == 0, "copying the data dir: {err}");
        Ok(Self {
            data_dir,
            agent_addr: "127.0.0.1:0".to_owned(),
            api_addr: "127.0.0.1:0".to_owned(),
            admin_token: self.admin_token.clone(),
            admin_password: self.admin_password.clone(),
            serve_args: self.serve_args.clone(),
            config: None,
            pg: self.pg.clone(),
            process: None,
            log: root.join(format!("{name}.log")),
        })
    }

    /// The store this control plane uses, opened directly (as a second process would).
    pub async fn store(&self) -> Result<outpost_control_plane::store::backend::Backend> {
        let pg = self.pg.as_ref().map(|db| outpost_control_plane::store::postgres::PgOptions {
            url: db.url.clone(),
            password_file: None,
            ca_file: None,
            max_connections: 4,
        });
        Ok(outpost_control_plane::app::open_store(&self.data_dir, pg.as_ref()).await?)
    }

    /// Runs `sql` on this control plane's database from outside, as a second process
    /// would (SQLite: the data dir's file; PostgreSQL: its test database).
    pub fn store_sql(&self, sql: &str) -> Result<()> {
        match &self.pg {
            Some(db) => {
                let (code, _, err) = run_cmd(Path::new("psql"), &["-X", "-q", "-d", &db.url, "-c", sql], None)?;
                anyhow::ensure!(code == 0, "psql {sql:?}: {err}");
            }
            None => {
                let c = rusqlite::Connection::open(self.data_dir.join("control-plane.db"))?;
                c.busy_timeout(Duration::from_secs(10))?;
                c.execute_batch(sql).with_context(|| format!("sqlite {sql:?}"))?;
            }
        }
        Ok(())
    }

    /// Moves agent `name`'s last contact `secs` seconds into the past: time passing for
    /// the offline threshold without waiting for it.
    pub fn age_last_seen(&self, name: &str, secs: i64) -> Result<()> {
        anyhow::ensure!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'), "agent name {name:?}");
        self.store_sql(&format!("UPDATE agents SET last_seen = last_seen - {secs} WHERE name = '{name}'"))
    }

    pub fn store_args(&self) -> Vec<String> {
        self.pg.iter().flat_map(|db| ["--store".to_owned(), db.url.clone()]).collect()
    }

    /// Starts `serve` and waits until it listens.
    pub fn start(&mut self) -> Result<()> {
        self.start_with_env(&[])
    }

    /// Starts `serve` with extra environment variables (such as `NOTIFY_SOCKET`) and
    /// waits until it listens.
    pub fn start_with_env(&mut self, env: &[(&str, &str)]) -> Result<()> {
        let (target_flag, target) = match &self.config {
            Some(c) => ("--config", c.display().to_string()),
            None => ("--data-dir", self.data_dir.display().to_string()),
        };
        let mut args = vec![
            "serve".to_owned(),
            target_flag.into(),
            target,
            "--agent-listen".into(),
            self.agent_addr.clone(),
            "--api-listen".into(),
            self.api_addr.clone(),
        ];
        args.extend(self.serve_args.iter().cloned());
        args.extend(self.store_args());
        let p = Process::spawn_with_env(&bin("outpost-control-plane"), &args, &self.log, env)?;
        p.wait_for_log("Control plane listening.", Duration::from_secs(30))?;
        // Port 0 the first time: the system chose, the log says what. A restart keeps them.
        (self.agent_addr, self.api_addr) = listening_addrs(&p.lines())?;
        self.process = Some(p);
        Ok(())
    }

    /// The running process.
    pub fn process(&self) -> Result<&Process> {
        self.process.as_ref().context("control plane not started")
    }

    /// The running control plane's process id.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(Process::pid)
    }

    /// The running process, which the caller now stops (as it wishes).
    pub fn take_process(&mut self) -> Option<Process> {
        self.process.take()
    }

    /// Kills the process with SIGKILL and waits for it.
    pub fn kill(&mut self) -> Result<()> {
        if let Some(mut p) = self.process.take() {
            p.kill_hard()?;
        }
        Ok(())
    }

    /// An API client with the admin token.
    pub fn api(&self) -> Result<Api> {
        Api::new(&self.api_addr, &self.data_dir.join("ca.crt"), Some(self.admin_token.clone()))
    }

    /// Creates an enrolment token through the API.
    pub async fn enrolment_token(&self, agent: &str) -> Result<String> {
        let res = self
            .api()?
            .post_json("/v1/enrollment-tokens", &serde_json::json!({ "agent": agent, "ttl_secs": 600 }))
            .await?;
        if res.status != 201 {
            bail!("token creation failed: {} {}", res.status, res.text());
        }
        Ok(res.json()?["token"].as_str().context("no token")?.to_owned())
    }

    /// Dispatches a job through the API; returns its id.
    pub async fn dispatch(&self, job: serde_json::Value) -> Result<String> {
        let res = self.api()?.post_json("/v1/jobs", &job).await?;
        if res.status != 202 {
            bail!("dispatch: {} {}", res.status, res.text());
        }
        Ok(res.json()?["id"].as_str().context("no job id")?.to_owned())
    }

    /// The control plane's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Runs `outpost-control-plane ARGS --data-dir DATA_DIR` (beside a running `serve`);
    /// returns its stdout, failing unless it exits 0.
    pub fn cli(&self, args: &[&str]) -> Result<String> {
        let mut all: Vec<&str> = args.to_vec();
        let dir = self.data_dir.display().to_string();
        all.extend(["--data-dir", dir.as_str()]);
        let store = self.store_args();
        all.extend(store.iter().map(String::as_str));
        let (code, out, err) = run_cmd(&bin("outpost-control-plane"), &all, None)?;
        if code != 0 {
            bail!("outpost-control-plane {args:?} failed ({code}): {out}{err}");
        }
        Ok(out)
    }

    /// Asks to cancel job `id`; returns (HTTP status, JSON answer).
    pub async fn cancel(&self, id: &str) -> Result<(u16, serde_json::Value)> {
        let res = self.api()?.request(http::Method::POST, &format!("/v1/jobs/{id}/cancel"), None).await?;
        Ok((res.status, res.json()?))
    }

    /// The job's JSON view (`GET /v1/jobs/{id}`).
    pub async fn job(&self, id: &str) -> Result<serde_json::Value> {
        let res = self.api()?.get(&format!("/v1/jobs/{id}")).await?;
        anyhow::ensure!(res.status == 200, "GET job {id}: {} {}", res.status, res.text());
        res.json()
    }

    /// Waits up to 30 s for job `id` to end; returns (HTTP status, JSON or text body).
    pub async fn wait_result(&self, id: &str) -> Result<(u16, String)> {
        let res = self.api()?.get(&format!("/v1/jobs/{id}/result?wait=30")).await?;
        Ok((res.status, res.text()))
    }
}

/// Ages `agent`'s identity as if its certificate had run out `secs_ago` seconds ago while
/// it was stopped: the certificate is issued again by `cp`'s CA for the same key and
/// subject with a validity that ended then, and `enrolment.json` records that expiry.
/// Time is moved in the data, not waited for.
pub fn expire_certificate(agent: &Agent, cp: &ControlPlane, secs_ago: i64) -> Result<()> {
    let ended = outpost_protocol::unix_now() - secs_ago;
    reissue_certificate(agent, cp, ended - 3600, ended)
}

/// Gives stopped `agent` a certificate that ends `secs` seconds from now, issued by `cp`'s
/// CA for the same key and subject from now (never before its enrolment, or the control
/// plane would refuse it), and records it in `enrolment.json`: a lifetime shorter than the
/// control plane's minimum, so that a test sees it run out without waiting long.
pub fn shorten_certificate(agent: &Agent, cp: &ControlPlane, secs: i64) -> Result<()> {
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(agent.state_dir.join("enrolment.json"))?)?;
    let now = outpost_protocol::unix_now();
    let issued_at = now.max(record["enrolled_at"].as_i64().context("enrolled_at")?);
    reissue_certificate(agent, cp, issued_at, now + secs)
}

/// The control plane's own issuance, for `agent`'s key, with another validity; the
/// agent's record follows.
fn reissue_certificate(agent: &Agent, cp: &ControlPlane, issued_at: i64, not_after: i64) -> Result<()> {
    let state = &agent.state_dir;
    let key = rcgen::KeyPair::from_pem(&std::fs::read_to_string(state.join("agent.key"))?).context("agent.key")?;
    let csr = rcgen::CertificateParams::default().serialize_request(&key)?.pem()?;
    let ca = outpost_control_plane::crypto::pki::Ca::load(&cp.data_dir)?;
    std::fs::write(state.join("agent.crt"), ca.issue_agent_cert(&agent.name, &csr, issued_at, not_after)?)?;
    let record_path = state.join("enrolment.json");
    let mut record: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&record_path)?)?;
    record["not_after"] = not_after.into();
    record["cert_issued_at"] = issued_at.into();
    std::fs::write(&record_path, serde_json::to_vec_pretty(&record)?)?;
    Ok(())
}

/// Ages `agent`'s record of when its (still valid) certificate arrived, so that two thirds
/// of its lifetime have passed and its next start renews at once: time moved in the data,
/// not waited for.
pub fn make_renewal_due(agent: &Agent) -> Result<()> {
    let record_path = agent.state_dir.join("enrolment.json");
    let mut record: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&record_path)?)?;
    let not_after = record["not_after"].as_i64().context("not_after")?;
    let left = (not_after - outpost_protocol::unix_now()).max(1);
    // renew_at = issued + 2/3 (not_after - issued): with issued = not_after - 3 * left, now.
    record["cert_issued_at"] = (not_after - 3 * left).into();
    std::fs::write(&record_path, serde_json::to_vec_pretty(&record)?)?;
    Ok(())
}

/// An agent in a temp dir with its own agent.yaml.
pub struct Agent {
    /// Agent name.
    pub name: String,
    /// Path of agent.yaml.
    pub config: PathBuf,
    /// State dir.
    pub state_dir: PathBuf,
    process: Option<Process>,
    log: PathBuf,
}

impl Agent {
    /// Writes an agent.yaml with the sample connection and `extra_limits` lines under `limits:`.
    pub fn new(root: &Path, name: &str, extra_limits: &str) -> Result<Self> {
        let dir = root.join(format!("agent-{name}"));
        std::fs::create_dir_all(&dir)?;
        let state_dir = dir.join("state");
        let config = dir.join("agent.yaml");
        std::fs::write(
            &config,
            format!(
                "state_dir: {}\nconnections:\n  sample:\n    kind: sqlite\n    path: sample.db\n    sample: true\nlimits:\n  max_rows: 1000\n{extra_limits}",
                state_dir.display()
            ),
        )?;
        Ok(Self { name: name.to_owned(), config, state_dir, process: None, log: dir.join("agent.log") })
    }

    /// Runs `outpost-agent --config CONFIG ARGS` with `stdin` and extra environment;
    /// returns (exit code, stdout, stderr).
    pub fn cli(&self, args: &[&str], stdin: Option<&str>, env: &[(&str, &Path)]) -> Result<(i32, String, String)> {
        let mut all = vec!["--config", self.config.to_str().unwrap_or_default()];
        all.extend_from_slice(args);
        run_cmd_env(&bin("outpost-agent"), &all, stdin, env)
    }

    /// Runs `outpost-agent enroll --token -` (token on stdin); returns (exit code, stdout, stderr).
    pub fn enroll(&self, token: &str) -> Result<(i32, String, String)> {
        self.cli(&["enroll", "--token", "-"], Some(token), &[])
    }

    /// Enrols with a fresh token from `cp` for this agent's name; fails unless it worked.
    pub async fn enroll_with(&self, cp: &ControlPlane) -> Result<()> {
        let (code, out, err) = self.enroll(&cp.enrolment_token(&self.name).await?)?;
        if code != 0 {
            bail!("enroll failed ({code}): {out}{err}");
        }
        Ok(())
    }

    /// Starts `run` (does not wait for the control plane).
    pub fn start(&mut self) -> Result<()> {
        self.start_with_env(&[])
    }

    /// Starts `run` with extra environment variables (such as `HTTPS_PROXY`).
    pub fn start_with_env(&mut self, env: &[(&str, &str)]) -> Result<()> {
        let args = vec!["--config".to_owned(), self.config.display().to_string(), "run".into()];
        self.process = Some(Process::spawn_with_env(&bin("outpost-agent"), &args, &self.log, env)?);
        Ok(())
    }

    /// Starts `run` and waits until it has reached the control plane.
    pub fn start_connected(&mut self) -> Result<()> {
        self.start()?;
        self.process()?.wait_for_log("Control plane reachable", Duration::from_secs(30))
    }

    /// The running process.
    pub fn process(&self) -> Result<&Process> {
        self.process.as_ref().context("agent not started")
    }

    /// The running agent's process id.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(Process::pid)
    }

    /// Kills the agent with SIGKILL (no clean-up of any kind) and waits for it.
    pub fn kill(&mut self) -> Result<()> {
        if let Some(mut p) = self.process.take() {
            p.kill_hard()?;
        }
        Ok(())
    }

    /// Stops with SIGTERM and waits for a clean exit.
    pub fn stop(&mut self) -> Result<std::process::ExitStatus> {
        let mut p = self.process.take().context("agent not started")?;
        p.terminate(Duration::from_secs(40))
    }

    /// The audit log's records.
    pub fn audit_records(&self) -> Result<Vec<serde_json::Value>> {
        let text = std::fs::read_to_string(self.state_dir.join("audit.log")).unwrap_or_default();
        text.lines().map(|l| serde_json::from_str(l).with_context(|| format!("audit line {l:?}"))).collect()
    }

    /// The agent's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// A started control plane (with `serve_args`) and an enrolled, connected agent `name`
/// whose agent.yaml has `extra_limits` under `limits:`.
pub async fn start_pair(
    root: &Path,
    name: &str,
    extra_limits: &str,
    serve_args: &[&str],
) -> Result<(ControlPlane, Agent)> {
    let mut cp = ControlPlane::init(root)?;
    cp.serve_args = serve_args.iter().map(|a| (*a).to_owned()).collect();
    cp.start()?;
    let mut agent = Agent::new(root, name, extra_limits)?;
    agent.enroll_with(&cp).await?;
    agent.start_connected()?;
    Ok((cp, agent))
}

/// A started control plane and an agent `edge-1` that is enrolled but not running, for
/// tests that tamper with the control plane's state before the agent connects.
pub async fn enrolled_offline(root: &Path) -> Result<(ControlPlane, Agent)> {
    let mut cp = ControlPlane::init(root)?;
    cp.start()?;
    let agent = Agent::new(root, "edge-1", "")?;
    agent.enroll_with(&cp).await?;
    Ok((cp, agent))
}

/// Every file under `dir`, recursively (for scans of what an agent or a control plane
/// left on disk).
pub fn files_under(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).with_context(|| dir.display().to_string())? {
        let p = e?.path();
        if p.is_dir() {
            out.extend(files_under(&p)?);
        } else {
            out.push(p);
        }
    }
    Ok(out)
}

/// A table job on the sample connection, as a hostile party would build it by hand.
pub fn job_spec(audience: &str, issued_at: i64, expires_at: i64) -> outpost_protocol::JobSpec {
    use outpost_protocol::{RenderSpec, TableFormat, TableSpec, PROTOCOL_VERSION};
    outpost_protocol::JobSpec {
        version: PROTOCOL_VERSION,
        job_id: outpost_protocol::ids::new_job_id(),
        audience: audience.into(),
        issued_at,
        expires_at,
        nonce: outpost_protocol::ids::new_nonce(),
        connection: "sample".into(),
        sql: "SELECT COUNT(*) FROM orders".into(),
        params: vec![],
        render: RenderSpec::Table(TableSpec { format: TableFormat::Json, max_rows: None }),
        cache: Default::default(),
        timeout_secs: None,
        requester: None,
    }
}

/// A started control plane and an enrolled, connected agent `edge-1` whose agent.yaml is
/// `state_dir` plus `config` (which names connections to database servers; the vault
/// entry `warehouse` holds their password).
pub async fn control_plane_and_agent(root: &std::path::Path, config: &str) -> Result<(ControlPlane, Agent)> {
    let mut cp = ControlPlane::init(root)?;
    cp.start()?;
    let mut agent = Agent::new(root, "edge-1", "")?;
    std::fs::write(&agent.config, format!("state_dir: {}\n{config}", agent.state_dir.display()))?;
    // The credential first: config check fails on a credential the vault does not hold.
    let (code, _, err) = agent.cli(&["credentials", "set", "warehouse"], Some("not-needed-with-trust-auth\n"), &[])?;
    anyhow::ensure!(code == 0, "credentials set: {err}");
    let (code, _, err) = agent.cli(&["config", "check"], None, &[])?;
    anyhow::ensure!(code == 0, "config check: {err}");
    agent.enroll_with(&cp).await?;
    agent.start_connected()?;
    Ok((cp, agent))
}

/// A CA named `ca_name` and a server certificate for `names`, as PEM: (ca, cert, key).
pub fn certificates(ca_name: &str, names: &[&str]) -> Result<(String, String, String)> {
    let ca_key = rcgen::KeyPair::generate()?;
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, ca_name);
    let ca = ca_params.self_signed(&ca_key)?;
    let issuer = rcgen::Issuer::new(ca_params, &ca_key);
    let key = rcgen::KeyPair::generate()?;
    let leaf = rcgen::CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())?;
    let cert = leaf.signed_by(&key, &issuer)?;
    Ok((ca.pem(), cert.pem(), key.serialize_pem()))
}
