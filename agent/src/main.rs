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
const EX_USAGE: u8 = 64;

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
    /// certificate in the state dir.
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
    /// Show this agent's enrolment: name, control plane, certificate expiry, trusted keys.
    Status,
    /// Config file tools.
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Validate agent.yaml; exits 64 with the file, line and field of every problem.
    Check,
    /// Print the JSON Schema of agent.yaml.
    Schema,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    outpost_common::process::init_logging();
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
    let cfg = match AgentConfig::load(&cli.config) {
        Ok(c) => c,
        Err(e) => return usage(e),
    };
    match cli.command {
        Command::Config(ConfigCommand::Check) => {
            println!(
                "{}: OK ({} connection(s), {} pinned key(s), state dir {})",
                cli.config.display(),
                cfg.connections.len(),
                cfg.trusted_keys.len(),
                cfg.state_dir.display()
            );
            ExitCode::SUCCESS
        }
        Command::Config(ConfigCommand::Schema) => ExitCode::SUCCESS,
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
            match outpost_agent::enrol::enroll(&token, &cfg.state_dir, cfg.control_plane.address.as_deref()).await {
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
                if e.not_after < now {
                    ExitCode::FAILURE
                } else {
                    ExitCode::SUCCESS
                }
            }
            Err(e) => failure(e),
        },
        Command::Run => {
            let shutdown = CancellationToken::new();
            let trigger = shutdown.clone();
            tokio::spawn(async move {
                outpost_common::process::shutdown_signal().await;
                tracing::info!("Shutting down: no new jobs; running jobs finish and report.");
                trigger.cancel();
            });
            match outpost_agent::runner::run(cfg, shutdown).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => failure(e),
            }
        }
    }
}
