//! `outpost-agent`: parses the command line and calls the library.
#![forbid(unsafe_code)]

use std::io::Read as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use outpost_agent::config::{AgentConfig, DEFAULT_CONFIG_PATH};
use outpost_agent::daemon::rfc3339;
use tokio_util::sync::CancellationToken;

mod cli;
use cli::audit::audit;
use cli::cache::{cache, cache_summary, rotate_keys};
use cli::connections::{missing_credentials, probe_connections, test_connections};
use cli::credentials::{credentials, passphrase_prompt};
use cli::service::{daemon_status, reload};

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
            let signals = outpost_agent::daemon::Signals {
                shutdown,
                reload: outpost_common::process::hangups(),
                config_path: Some(cli.config.clone()),
            };
            match outpost_agent::daemon::run(cfg, signals, &passphrase_prompt).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => failure(e),
            }
        }
    }
}
