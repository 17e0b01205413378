//! `outpost-agent`: parses the command line and calls the library.
#![forbid(unsafe_code)]

use std::io::Read as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use outpost_agent::config::{AgentConfig, DEFAULT_CONFIG_PATH};
use outpost_agent::runner::rfc3339;
use tokio_util::sync::CancellationToken;

/// Exit code for bad usage or config (sysexits EX_USAGE).
const EX_USAGE: u8 = outpost_common::process::EX_USAGE;

/// Outpost agent: runs signed jobs against your databases, inside your network, and
/// sends back only rendered results.
///
/// First `enroll` with a token from the control plane's operator, then `run` (normally
/// under systemd). `config check` validates agent.yaml; `status` shows the enrolment.
#[derive(Debug, Parser)]
#[command(name = "outpost-agent", version, about, long_about)]
struct Cli {
    /// Path of agent.yaml.
    #[arg(long, global = true, default_value = DEFAULT_CONFIG_PATH, env = "OUTPOST_AGENT_CONFIG")]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Enrol with a one-time token: generates this agent's key (it never leaves the host),
    /// verifies the control plane against the CA pin in the token, and stores the issued
    /// certificate in the state dir. (`enrol` is the same command.)
    #[command(alias = "enrol")]
    Enroll {
        /// The token printed by `outpost-control-plane enrollment-token create`.
        /// Use `-` to read it from stdin (keeps it out of the process list).
        #[arg(long)]
        token: String,
    },
    /// Run the agent: dial out over mutual TLS, wait for signed jobs, run them within
    /// local policy, report rendered results. Stops on SIGTERM/SIGINT after running
    /// jobs have reported.
    Run,
    /// Show this agent's enrolment (name, control plane, certificate expiry, trusted keys)
    /// and, from the running daemon, whether it reaches the control plane, the jobs it
    /// runs and ran, and the last reload. Exits 1 when something needs attention: the
    /// certificate expired, the daemon is not running, or it cannot reach the control
    /// plane (the last line says which).
    Status,
    /// Apply agent.yaml in the running agent now and wait for its verdict (systemd's
    /// `ExecReload=`, so `systemctl reload` returns only once the file applies or was
    /// refused). Exits 0 when applied; 1 when refused (the running config stays; the
    /// reason is printed and the journal has the whole error) or no agent runs.
    Reload,
    /// Config file tools.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// The credentials vault: database and proxy secrets, AES-256-GCM encrypted in the
    /// state dir under a master key kept apart (systemd credential, key file or passphrase).
    /// agent.yaml names a credential; it never holds one.
    #[command(subcommand)]
    Credentials(CredentialsCommand),
    /// The encrypted result cache (state_dir/cache): raw results kept on this host only,
    /// so that a repeated query within its max-age does not hit the database again.
    #[command(subcommand)]
    Cache(CacheCommand),
    /// The vault's data key, which seals the credentials and derives the cache key.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// The local audit log (a hash chain with signed checkpoints): one record per job,
    /// key-set change and damaged cache entry.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// The configured databases: reach them as a job would, without running a query of
    /// yours.
    #[command(subcommand)]
    Connections(ConnectionsCommand),
}

#[derive(Debug, Subcommand)]
enum ConnectionsCommand {
    /// Connect to each configured database (or the one named) with its settings and the
    /// vault's credential, run the privileged-role check, and show the server version,
    /// the database user, the TLS in use and whether the session is read-only. Exits 1
    /// when a connection could not run a job.
    Test {
        /// Only this connection.
        name: Option<String>,
        /// One JSON object per connection, in an array.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Check the hash chain and the signed checkpoints; names the first line that was
    /// altered, removed, inserted or reordered. Exits 1 when the log was tampered with.
    Verify {
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// The log to check (default: the one agent.yaml names).
        #[arg(long)]
        log: Option<PathBuf>,
        /// The audit head the control plane kept for this agent (the JSON answer of
        /// `GET /v1/agents/NAME/audit-head`, or `-` for standard input): proves that no
        /// record was cut from the log's end before it.
        #[arg(long, value_name = "FILE")]
        head: Option<PathBuf>,
    },
    /// Show the last records, one line each (time, event, job, verdict, outcome, rows,
    /// bytes sent, egress decisions).
    Tail {
        /// How many records.
        #[arg(short = 'n', long, default_value_t = 20)]
        lines: usize,
        /// Print the records as JSON lines, as stored.
        #[arg(long)]
        json: bool,
        /// Only jobs asked for by this user (name or account id, as the control plane
        /// signed it into the job).
        #[arg(long, value_name = "NAME")]
        requester: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum CacheCommand {
    /// Entries and bytes on disk, per connection, and the max-age policy allows each.
    Stats {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete cached results now: all of them, or one connection's. Works while the
    /// agent runs (a purged entry is a miss for the next job).
    Purge {
        /// Only this connection's entries.
        #[arg(long)]
        connection: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Replace the data key with a new random one: every credential is re-encrypted
    /// under it (one atomic write of vault.json) and every cache entry sealed under the
    /// old key is deleted, so copies of them in backups or snapshots stay unreadable
    /// once the old vault file is gone. Stop the agent first; an interrupted rotation
    /// leaves a vault that opens with the old key or the new one.
    Rotate,
}

#[derive(Debug, Subcommand)]
enum CredentialsCommand {
    /// Store the secret for NAME: typed at the terminal without echo, or read from stdin
    /// when it is not a terminal (one trailing newline is dropped). Replaces an earlier one.
    /// A running agent uses it from its next reload: add --reload to apply it now.
    Set {
        /// The credential's name (usually the connection's name).
        name: String,
        /// Then ask the running agent to reload and wait for its verdict (as
        /// `outpost-agent reload`), so that the secret is in force when this returns.
        #[arg(long)]
        reload: bool,
    },
    /// List the stored names and when each was set (never a value).
    List {
        /// Print JSON: `{"credentials": [{"name", "set_at"}]}` (unix seconds).
        #[arg(long)]
        json: bool,
    },
    /// Remove the secret stored for NAME.
    Remove {
        /// The credential's name.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Validate agent.yaml (PATH, or the --config file); exits 64 with the file, line and
    /// field of the problem. Use it on an edited copy before `systemctl reload`.
    Check {
        /// The file to check (default: --config).
        path: Option<PathBuf>,
    },
    /// Print the JSON Schema of agent.yaml.
    Schema,
    /// A report to sign off on: control plane and pinned CA, job-signing keys, every
    /// connection with the egress policy in force, cache, master-key source, audit log;
    /// then findings (HIGH, MEDIUM, LOW): files others can read, plaintext secrets,
    /// policies wider than the top-level one, TLS off, certificates close to expiry, a
    /// tampered audit log. Exits 1 when there is a HIGH finding.
    Audit {
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Also reach each database as `connections test` does (server, user, TLS,
        /// read-only session, the privileged-role check) and report what it found; a
        /// connection that could not run a job is a finding.
        #[arg(long)]
        connections: bool,
    },
}

fn main() -> ExitCode {
    outpost_common::process::quiet_broken_pipe();
    let cli = match outpost_common::process::parse_args::<Cli>() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    outpost_common::process::init_logging(if matches!(cli.command, Command::Run) { "info" } else { "warn" });
    let rt = match outpost_common::process::runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(run(cli))
}

fn usage(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::from(EX_USAGE)
}

fn failure(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::FAILURE
}

async fn run(cli: Cli) -> ExitCode {
    if let Command::Config(ConfigCommand::Schema) = cli.command {
        println!("{}", outpost_agent::config::json_schema());
        return ExitCode::SUCCESS;
    }
    let config_path = match &cli.command {
        Command::Config(ConfigCommand::Check { path: Some(p) }) => p.clone(),
        _ => cli.config.clone(),
    };
    if let Command::Reload = cli.command {
        // The running agent reads and judges the file; an invalid one must still reach it
        // (to be refused there, in its audit log), so only its state dir is looked up here.
        return reload(&outpost_agent::config::state_dir_of(&cli.config), &cli.config).await;
    }
    let cfg = match AgentConfig::load(&config_path) {
        Ok(c) => c,
        Err(e) => return usage(e),
    };
    match cli.command {
        Command::Config(ConfigCommand::Check { .. }) => {
            // Every credential the connections name must be in the vault, or a reload
            // would refuse the file: all of them are reported at once.
            let missing = missing_credentials(&cfg);
            if !missing.is_empty() {
                for m in &missing {
                    eprintln!("error: {}: {m}", config_path.display());
                }
                return ExitCode::from(EX_USAGE);
            }
            println!(
                "{}: OK ({} connection(s), {} pinned key(s), state dir {})",
                config_path.display(),
                cfg.connections.len(),
                cfg.trusted_keys.len(),
                cfg.state_dir.display()
            );
            ExitCode::SUCCESS
        }
        Command::Config(ConfigCommand::Schema) => ExitCode::SUCCESS,
        Command::Config(ConfigCommand::Audit { json, connections }) => {
            let mut report = outpost_agent::config_audit::audit(&cli.config, &cfg, outpost_protocol::unix_now());
            if connections {
                match probe_connections(&cfg).await {
                    Ok(checks) => report.add_connection_checks(checks),
                    Err(e) => return failure(e),
                }
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default());
            } else {
                print!("{}", outpost_agent::config_audit::render_text(&report));
            }
            if report.has_high() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Command::Enroll { token } => {
            let token = if token == "-" {
                let mut s = String::new();
                if let Err(e) = std::io::stdin().take(64 * 1024).read_to_string(&mut s) {
                    return usage(format!("cannot read the token from stdin: {e}"));
                }
                zeroize::Zeroizing::new(s)
            } else {
                zeroize::Zeroizing::new(token)
            };
            let route = match outpost_agent::proxy::route_for(&cfg, &passphrase_prompt) {
                Ok(r) => r,
                Err(e) => return usage(format!("proxy: {e}")),
            };
            match outpost_agent::enrol::enroll(&token, &cfg.state_dir, cfg.control_plane.address.as_deref(), &route)
                .await
            {
                Ok(done) => {
                    let e = &done.enrolment;
                    println!("Enrolled as agent {:?} with the control plane at {}.", e.agent, e.address);
                    println!("Certificate valid until {}.", rfc3339(e.not_after));
                    for k in &e.signing_keys {
                        println!("Trusting job-signing key {}.", k.key_id);
                    }
                    println!("Identity written to {}. Next: outpost-agent run", cfg.state_dir.display());
                    ExitCode::SUCCESS
                }
                Err(outpost_agent::enrol::EnrolError::Token(e)) => usage(e),
                Err(e) => failure(e),
            }
        }
        Command::Status => match outpost_agent::identity::load(&cfg.state_dir) {
            Ok(id) => {
                let e = &id.enrolment;
                let now = outpost_protocol::unix_now();
                println!("agent:          {}", e.agent);
                println!(
                    "control plane:  {} ({})",
                    cfg.control_plane.address.as_deref().unwrap_or(&e.address),
                    e.server_name
                );
                println!("CA pin:         sha256:{}", e.ca_sha256);
                println!("enrolled at:    {}", rfc3339(e.enrolled_at));
                if e.not_after < now {
                    println!(
                        "certificate:    EXPIRED at {}; enrol again: outpost-agent enroll --token TOKEN",
                        rfc3339(e.not_after)
                    );
                } else {
                    println!("certificate:    valid until {} ({} s left)", rfc3339(e.not_after), e.not_after - now);
                }
                match outpost_agent::keys::KeyTrust::load(&cfg, &id.enrolment) {
                    Ok(keys) => {
                        let ids: Vec<String> = keys
                            .trusted()
                            .ids()
                            .map(|k| if keys.is_pinned(k) { format!("{k} (pinned)") } else { k.to_owned() })
                            .collect();
                        println!("trusted keys:   {}", ids.join(", "));
                        match keys.mode() {
                            outpost_agent::config::KeyTrustMode::Learn => {
                                println!("key updates:    learned from signed key sets (version {})", keys.version())
                            }
                            outpost_agent::config::KeyTrustMode::PinnedOnly => {
                                println!("key updates:    refused (key_trust: pinned_only)")
                            }
                        }
                    }
                    Err(e) => println!("trusted keys:   ERROR: {e}"),
                }
                println!(
                    "connections:    {}",
                    cfg.connections.keys().map(|c| c.as_str()).collect::<Vec<_>>().join(", ")
                );
                println!("audit log:      {}", cfg.audit_path().display());
                println!("result cache:   {}", cache_summary(&cfg));
                let mut attention = Vec::new();
                if e.not_after < now {
                    attention.push("the certificate expired".to_owned());
                }
                attention.extend(daemon_status(&cfg.state_dir, now).await);
                if attention.is_empty() {
                    ExitCode::SUCCESS
                } else {
                    println!("needs attention: {}", attention.join("; "));
                    ExitCode::FAILURE
                }
            }
            Err(e) => failure(e),
        },
        Command::Reload => ExitCode::SUCCESS,
        Command::Credentials(cmd) => {
            let reload_after = matches!(cmd, CredentialsCommand::Set { reload: true, .. });
            let code = credentials(&cfg, cmd);
            if reload_after && code == ExitCode::SUCCESS {
                return reload(&cfg.state_dir, &config_path).await;
            }
            code
        }
        Command::Cache(cmd) => cache(&cfg, cmd),
        Command::Keys(KeysCommand::Rotate) => rotate_keys(&cfg),
        Command::Connections(ConnectionsCommand::Test { name, json }) => test_connections(&cfg, name, json).await,
        Command::Audit(cmd) => audit(&cfg, cmd),
        Command::Run => {
            let shutdown = CancellationToken::new();
            let trigger = shutdown.clone();
            tokio::spawn(async move {
                outpost_common::process::shutdown_signal().await;
                tracing::info!("Shutting down: no new jobs; running jobs finish and report.");
                trigger.cancel();
            });
            let signals = outpost_agent::runner::Signals {
                shutdown,
                reload: outpost_common::process::hangups(),
                config_path: Some(cli.config.clone()),
            };
            match outpost_agent::runner::run(cfg, signals, &passphrase_prompt).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => failure(e),
            }
        }
    }
}

/// How long `reload` waits for the agent's verdict (it may open the vault and build every
/// connection again).
const RELOAD_WAIT: std::time::Duration = std::time::Duration::from_secs(80);

/// How long `status` waits for the daemon's answer.
const STATUS_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

async fn reload(state_dir: &std::path::Path, config: &std::path::Path) -> ExitCode {
    use outpost_agent::control::{ask, Answer, Request};
    let config = std::path::absolute(config).unwrap_or_else(|_| config.to_owned());
    let request = Request::Reload { config: Some(config.display().to_string()) };
    match ask(state_dir, request, RELOAD_WAIT).await {
        Ok(Answer::Reload(r)) if r.applied => {
            println!(
                "Reloaded agent.yaml (sha256 {}); connections: {}. New jobs run under it.",
                r.config_sha256.as_deref().unwrap_or("?"),
                r.connections.join(", ")
            );
            ExitCode::SUCCESS
        }
        Ok(Answer::Reload(r)) => failure(format!(
            "the agent refused agent.yaml: {}; the running config stays (the journal has the whole error)",
            r.reason.as_deref().unwrap_or("no reason given")
        )),
        Ok(other) => failure(format!("unexpected answer from the agent: {other:?}")),
        Err(e) => failure(e),
    }
}

/// Prints the running daemon's state; returns what needs attention.
async fn daemon_status(state_dir: &std::path::Path, now: i64) -> Vec<String> {
    use outpost_agent::control::{ask, Answer, Reach, Request};
    let ago = |t: i64| format!("{} ({} s ago)", rfc3339(t), (now - t).max(0));
    match ask(state_dir, Request::Status, STATUS_WAIT).await {
        Ok(Answer::Status(d)) => {
            let state = if d.stopping { "STOPPING: running jobs finish and report" } else { "running" };
            println!("daemon:         {state} (pid {}, version {}, since {})", d.pid, d.version, ago(d.started_at));
            let mut attention = Vec::new();
            match d.reach {
                Reach::Connected => println!("reaches cloud:  yes, since {}", ago(d.reach_since)),
                Reach::Connecting => println!("reaches cloud:  not yet (connecting since {})", ago(d.reach_since)),
                Reach::Unreachable => {
                    println!(
                        "reaches cloud:  NO since {}: {}",
                        ago(d.reach_since),
                        d.last_error.as_deref().unwrap_or("unknown error")
                    );
                    attention.push(format!("the control plane at {} is unreachable", d.control_plane));
                }
            }
            let last = d.last_job_at.map(ago).unwrap_or_else(|| "none since the start".to_owned());
            println!("jobs:           {} running, {} done since the start; last {last}", d.jobs_running, d.jobs_done);
            match &d.last_reload {
                None => println!("last reload:    none since the start"),
                Some(r) if r.applied => println!(
                    "last reload:    applied {} (sha256 {})",
                    ago(r.at),
                    r.config_sha256.as_deref().unwrap_or("?")
                ),
                Some(r) => {
                    println!(
                        "last reload:    REFUSED {}: {}; the config from before stays",
                        ago(r.at),
                        r.reason.as_deref().unwrap_or("no reason given")
                    );
                    attention.push("the last reload was refused (agent.yaml on disk is not what runs)".to_owned());
                }
            }
            attention
        }
        Ok(other) => {
            println!("daemon:         unexpected answer: {other:?}");
            vec!["the daemon's answer was not understood".to_owned()]
        }
        Err(outpost_agent::control::ControlError::NotRunning(_)) => {
            println!("daemon:         not running (start it: systemctl start outpost-agent)");
            vec!["the daemon is not running".to_owned()]
        }
        Err(e) => {
            println!("daemon:         cannot tell: {e}");
            vec![format!("the daemon could not be asked ({e})")]
        }
    }
}

/// Reads a passphrase at the terminal (twice when one is being chosen).
/// Each `password_credential` (of a connection or the proxy) that the vault does not
/// hold, one line each (names only: the vault's values stay sealed).
fn missing_credentials(cfg: &AgentConfig) -> Vec<String> {
    let mut named: Vec<(String, String)> = cfg
        .connections
        .iter()
        .filter_map(|(n, c)| {
            c.password_credential.as_ref().map(|cred| (format!("connections.{}", n.as_str()), cred.to_string()))
        })
        .collect();
    if let Some(cred) = &cfg.proxy.password_credential {
        named.push(("proxy".to_owned(), cred.clone()));
    }
    if named.is_empty() {
        return Vec::new();
    }
    let vault = outpost_agent::vault::Vault::path(&cfg.state_dir);
    let stored = match outpost_agent::vault::Vault::stored_names(&cfg.state_dir) {
        Ok(names) => names,
        Err(e) if !vault.exists() => {
            let _ = e;
            Vec::new()
        }
        Err(e) => {
            return vec![format!(
                "the vault {} cannot be read to check the connections' credentials ({e}); run the check as the \
                 service's user",
                vault.display()
            )]
        }
    };
    named
        .into_iter()
        .filter(|(_, cred)| !stored.contains(cred))
        .map(|(at, cred)| {
            format!(
                "{at}.password_credential: {cred:?} is not in the vault ({}); store it with: \
                 outpost-agent credentials set {cred}",
                vault.display()
            )
        })
        .collect()
}

async fn test_connections(cfg: &AgentConfig, name: Option<String>, json: bool) -> ExitCode {
    let mut cfg = cfg.clone();
    if let Some(n) = &name {
        if !cfg.connections.keys().any(|k| k.as_str() == n.as_str()) {
            let known: Vec<&str> = cfg.connections.keys().map(|k| k.as_str()).collect();
            return usage(format!("no connection {n:?} in the config (it has: {})", known.join(", ")));
        }
        cfg.connections.retain(|k, _| k.as_str() == n.as_str());
    }
    let reports = match probe_connections(&cfg).await {
        Ok(r) => r,
        Err(e) => return failure(e),
    };
    if !json {
        for r in &reports {
            println!("{}", outpost_agent::health::describe(r));
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&reports).unwrap_or_default());
    }
    if reports.iter().all(|r| r.ok) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Reaches each configured database as a job would (see `connections test`).
async fn probe_connections(cfg: &AgentConfig) -> Result<Vec<outpost_agent::health::ConnectionReport>, String> {
    // Only opened when a connection names a password credential.
    let vault = if cfg.connections.values().any(|c| c.password_credential.is_some()) {
        Some(
            outpost_agent::vault::Vault::open(&cfg.state_dir, &cfg.vault_keys(), &passphrase_prompt)
                .map_err(|e| format!("{e} (the vault holds the connections' passwords)"))?,
        )
    } else {
        None
    };
    let connectors = outpost_agent::runner::prepare_connections(cfg, vault.as_ref()).map_err(|e| e.to_string())?;
    let mut names: Vec<&String> = connectors.keys().collect();
    names.sort();
    let mut reports = Vec::new();
    for n in names {
        reports.push(outpost_agent::health::test(n, &connectors[n]).await);
    }
    Ok(reports)
}

fn passphrase_prompt(confirm: bool) -> Result<secrecy::SecretString, outpost_agent::vault::VaultError> {
    use outpost_agent::vault::VaultError;
    use secrecy::ExposeSecret as _;
    let ask = |prompt: &str| {
        rpassword::prompt_password(prompt)
            .map(secrecy::SecretString::from)
            .map_err(|e| VaultError::NoKey(format!("cannot read the vault passphrase from the terminal: {e}")))
    };
    let first = ask("Vault passphrase: ")?;
    if confirm && ask("Repeat the passphrase: ")?.expose_secret() != first.expose_secret() {
        return Err(VaultError::NoKey("the two passphrases differ; nothing was created".into()));
    }
    Ok(first)
}

fn cache(cfg: &AgentConfig, cmd: CacheCommand) -> ExitCode {
    use outpost_agent::cache::Index;
    if !Index::exists(&cfg.state_dir) {
        println!("The cache is empty (nothing at {}).", cfg.state_dir.join(outpost_agent::cache::CACHE_DIR).display());
        return ExitCode::SUCCESS;
    }
    let index = match Index::open(&cfg.state_dir) {
        Ok(i) => i,
        Err(e) => return failure(e),
    };
    match cmd {
        CacheCommand::Stats { json } => {
            let stats = match index.stats() {
                Ok(s) => s,
                Err(e) => return failure(e),
            };
            let caps = cfg.cache_caps();
            if json {
                let per: Vec<_> = stats
                    .by_connection
                    .iter()
                    .map(|(c, n, b)| {
                        serde_json::json!({ "connection": c, "entries": n, "bytes": b, "max_age_secs": caps.get(c) })
                    })
                    .collect();
                let out = serde_json::json!({
                    "entries": stats.entries, "bytes": stats.bytes, "max_bytes": cfg.cache.max_bytes.get(),
                    "connections": per,
                });
                println!("{out}");
                return ExitCode::SUCCESS;
            }
            println!("{:<24} {:>8} {:>14}  MAX AGE", "CONNECTION", "ENTRIES", "BYTES");
            for (name, cap) in &caps {
                let (n, b) = stats.by_connection.iter().find(|c| &c.0 == name).map(|c| (c.1, c.2)).unwrap_or_default();
                let age = if *cap == 0 { "off".to_owned() } else { format!("{cap} s") };
                println!("{name:<24} {n:>8} {b:>14}  {age}");
            }
            for (name, n, b) in stats.by_connection.iter().filter(|c| !caps.contains_key(&c.0)) {
                println!("{name:<24} {n:>8} {b:>14}  (not configured; deleted by the next sweep)");
            }
            println!(
                "{:<24} {:>8} {:>14}  of {} bytes allowed",
                "total",
                stats.entries,
                stats.bytes,
                cfg.cache.max_bytes.get()
            );
            ExitCode::SUCCESS
        }
        CacheCommand::Purge { connection } => match index.purge(connection.as_deref()) {
            Ok(n) => {
                match connection {
                    Some(c) => eprintln!("Deleted {n} cached result(s) of connection {c:?}."),
                    None => eprintln!("Deleted {n} cached result(s)."),
                }
                ExitCode::SUCCESS
            }
            Err(e) => failure(e),
        },
    }
}

/// One line for `status`: what the cache holds and what policy allows.
fn cache_summary(cfg: &AgentConfig) -> String {
    if !cfg.cache_enabled() {
        return "off (max-age 0 for every connection)".into();
    }
    let held = if outpost_agent::cache::Index::exists(&cfg.state_dir) {
        match outpost_agent::cache::Index::open(&cfg.state_dir).and_then(|i| i.stats()) {
            Ok(s) => format!("{} entries, {} bytes", s.entries, s.bytes),
            Err(e) => format!("ERROR: {e}"),
        }
    } else {
        "empty".into()
    };
    let caps: Vec<String> = cfg.cache_caps().iter().map(|(c, s)| format!("{c} {s} s")).collect();
    format!("{held} (of {} allowed; max-age {})", cfg.cache.max_bytes.get(), caps.join(", "))
}

fn rotate_keys(cfg: &AgentConfig) -> ExitCode {
    use outpost_agent::vault::{StateLock, Vault, RUN_LOCK, VAULT_LOCK};
    if !Vault::exists(&cfg.state_dir) {
        return usage(format!("no vault at {} yet; nothing to rotate", Vault::path(&cfg.state_dir).display()));
    }
    let _running = match StateLock::try_acquire(&cfg.state_dir, RUN_LOCK) {
        Ok(Some(l)) => l,
        Ok(None) => {
            return failure(format!(
            "outpost-agent run is using {}; stop it first (systemctl stop outpost-agent), rotate, then start it again",
            cfg.state_dir.display()
        ))
        }
        Err(e) => return failure(e),
    };
    let _vault_lock = match StateLock::acquire(&cfg.state_dir, VAULT_LOCK) {
        Ok(l) => l,
        Err(e) => return failure(e),
    };
    let mut vault = match Vault::open(&cfg.state_dir, &cfg.vault_keys(), &passphrase_prompt) {
        Ok(v) => v,
        Err(e) => return failure(e),
    };
    outpost_common::process::pause_point("rotate:before-write");
    let (old, new) = match vault.rotate_data_key() {
        Ok(ids) => ids,
        Err(e) => return failure(format!("{e}; the vault is unchanged")),
    };
    eprintln!("Rotated the vault's data key {old} -> {new}; re-encrypted {} credential(s).", vault.list().len());
    Vault::remove_stale_temps(&cfg.state_dir);
    outpost_common::process::pause_point("rotate:before-cache-shred");
    // The cache key derives from the data key: entries sealed under the old one are
    // deleted now (and, were this interrupted, when the cache is next opened).
    if outpost_agent::cache::Index::exists(&cfg.state_dir) {
        match outpost_agent::cache::Index::open(&cfg.state_dir).and_then(|i| i.shred_other_keys(&new)) {
            Ok(n) => eprintln!("Deleted {n} cached result(s) sealed under the old key."),
            Err(e) => return failure(format!("the vault is rotated, but the old cache entries were not deleted: {e}; they will be when the agent next starts")),
        }
    }
    ExitCode::SUCCESS
}

fn credentials(cfg: &AgentConfig, cmd: CredentialsCommand) -> ExitCode {
    use outpost_agent::vault::Vault;
    use std::io::IsTerminal as _;
    let keys = cfg.vault_keys();
    match cmd {
        CredentialsCommand::Set { name, reload } => {
            if let Err(e) = outpost_protocol::job::validate_name(&name) {
                return usage(format!("credential name {name:?}: {e}"));
            }
            let secret = if std::io::stdin().is_terminal() {
                match rpassword::prompt_password(format!("Secret for {name}: ")) {
                    Ok(s) => zeroize::Zeroizing::new(s),
                    Err(e) => return failure(format!("cannot read the secret from the terminal: {e}")),
                }
            } else {
                let mut s = zeroize::Zeroizing::new(String::new());
                let limit = outpost_agent::vault::MAX_SECRET as u64 + 2;
                if let Err(e) = std::io::stdin().take(limit).read_to_string(&mut s) {
                    return failure(format!("cannot read the secret from stdin: {e}"));
                }
                let trimmed = s.strip_suffix('\n').map(|t| t.strip_suffix('\r').unwrap_or(t)).unwrap_or(&s);
                zeroize::Zeroizing::new(trimmed.to_owned())
            };
            let secret = secrecy::SecretString::from(secret.to_string());
            let _lock = match outpost_agent::vault::StateLock::acquire(&cfg.state_dir, outpost_agent::vault::VAULT_LOCK)
            {
                Ok(l) => l,
                Err(e) => return failure(e),
            };
            let mut vault = match Vault::open_or_create(&cfg.state_dir, &keys, &passphrase_prompt) {
                Ok(v) => v,
                Err(e) => return failure(e),
            };
            match vault.set(&name, &secret, outpost_protocol::unix_now()) {
                Ok(()) => {
                    eprintln!(
                        "Stored the secret for {name:?} in {} (sealed with a {} key).",
                        Vault::path(&cfg.state_dir).display(),
                        vault.sealed_with().replace('_', " ")
                    );
                    if !reload && outpost_agent::control::socket_path(&cfg.state_dir).exists() {
                        eprintln!(
                            "A running agent uses it from its next reload: sudo systemctl reload outpost-agent \
                             (or add --reload to this command)."
                        );
                    }
                    ExitCode::SUCCESS
                }
                Err(outpost_agent::vault::VaultError::Invalid(m)) => usage(m),
                Err(e) => failure(e),
            }
        }
        CredentialsCommand::List { json } => {
            if !Vault::exists(&cfg.state_dir) {
                if json {
                    println!("{}", serde_json::json!({ "credentials": [] }));
                } else {
                    println!("No credentials stored (no vault at {}).", Vault::path(&cfg.state_dir).display());
                }
                return ExitCode::SUCCESS;
            }
            match Vault::open(&cfg.state_dir, &keys, &passphrase_prompt) {
                Ok(v) if json => {
                    let list: Vec<_> = v
                        .list()
                        .into_iter()
                        .map(|(name, at)| serde_json::json!({ "name": name, "set_at": at }))
                        .collect();
                    println!("{}", serde_json::json!({ "credentials": list }));
                    ExitCode::SUCCESS
                }
                Ok(v) => {
                    println!("{:<32} SET AT", "NAME");
                    for (name, at) in v.list() {
                        println!("{name:<32} {}", rfc3339(at));
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => failure(e),
            }
        }
        CredentialsCommand::Remove { name } => {
            if !Vault::exists(&cfg.state_dir) {
                return usage(format!("no credential named {name:?} (no vault yet)"));
            }
            let _lock = match outpost_agent::vault::StateLock::acquire(&cfg.state_dir, outpost_agent::vault::VAULT_LOCK)
            {
                Ok(l) => l,
                Err(e) => return failure(e),
            };
            let mut vault = match Vault::open(&cfg.state_dir, &keys, &passphrase_prompt) {
                Ok(v) => v,
                Err(e) => return failure(e),
            };
            match vault.remove(&name) {
                Ok(true) => {
                    eprintln!("Removed the secret for {name:?}.");
                    ExitCode::SUCCESS
                }
                Ok(false) => {
                    usage(format!("no credential named {name:?}; `outpost-agent credentials list` shows them"))
                }
                Err(e) => failure(e),
            }
        }
    }
}

fn audit(cfg: &AgentConfig, cmd: AuditCommand) -> ExitCode {
    use outpost_agent::audit;
    match cmd {
        AuditCommand::Verify { json, log, head } => {
            let path = log.unwrap_or_else(|| cfg.audit_path());
            let current = audit::show::certificate_key(&cfg.state_dir.join(outpost_agent::identity::CERT_FILE));
            let head = match head.as_deref().map(audit::show::read_head).transpose() {
                Ok(h) => h,
                Err(e) => {
                    eprintln!("error: --head: {e}");
                    return ExitCode::from(64);
                }
            };
            let report = match audit::verify_with_head(&path, current.as_deref(), head.as_ref()) {
                Ok(r) => r,
                Err(e) => return failure(e),
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default());
            } else {
                print!("{}", audit::show::describe(&path, &report));
            }
            if report.finding.is_some() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        AuditCommand::Tail { lines, json, requester } => match audit::tail(&cfg.audit_path(), lines, &|r| {
            requester.as_deref().is_none_or(|who| audit::show::requested_by(r, who))
        }) {
            Ok(records) => {
                for r in &records {
                    if json {
                        println!("{r}");
                    } else {
                        println!("{}", audit::show::line(r));
                    }
                }
                ExitCode::SUCCESS
            }
            Err(e) => failure(e),
        },
    }
}
