//! `outpost-control-plane`: parses the command line and calls the library.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use outpost_control_plane::app;
use outpost_control_plane::auth::access::{self, Password, Role, Scope, Scopes};
use outpost_control_plane::config::ControlPlaneConfig;
use outpost_control_plane::store::access::{AccessStore, AuditEvent};
use outpost_control_plane::store::backend::Backend;
use outpost_control_plane::store::StoreError;
use zeroize::Zeroize as _;

mod cli;
use cli::agents::agent_cmd;
use cli::config::config_cmd;
use cli::enrolment::enrollment_token;
use cli::init::init;
use cli::serve::serve;
use cli::server_cert::server_cert;
use cli::signing_keys::signing_key;
use cli::support::{audit_cli, fmt_time, parse_duration, shell_word};
use cli::tokens::token_cmd;
use cli::users::user_cmd;

/// Exit code for bad usage or config (sysexits EX_USAGE).
const EX_USAGE: u8 = outpost_common::process::EX_USAGE;

/// Outpost control plane: enrols agents, signs jobs and serves the API.
///
/// Start with `init`, then `serve`; agents enrol with a token from
/// `enrollment-token create`.
#[derive(Debug, Parser)]
#[command(name = "outpost-control-plane", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a data dir: CA, server certificate, job-signing key, database, and the admin's
    /// API token and first console password.
    ///
    /// The token and password are printed once; only their hashes are stored. Refuses an existing,
    /// non-empty directory.
    Init {
        /// Directory to create (0700).
        #[arg(long)]
        data_dir: PathBuf,
        /// Name (DNS name or IP address) agents and API clients use to reach this control plane.
        #[arg(long)]
        hostname: String,
        /// A further DNS name or IP address for the server certificate, such as 127.0.0.1
        /// for a browser on this host (repeat for several).
        #[arg(long = "san", value_name = "NAME")]
        sans: Vec<String>,
        /// Keep the state in this PostgreSQL database (`postgres://USER@HOST/DB`, empty)
        /// instead of the embedded SQLite file; further replicas get a copy of the data dir.
        #[arg(long, env = "OUTPOST_STORE")]
        store: Option<String>,
        /// A file holding the PostgreSQL password.
        #[arg(long)]
        store_password_file: Option<PathBuf>,
    },
    /// Run the agent listener (mutual TLS) and the API listener (TLS + bearer token).
    Serve {
        #[command(flatten)]
        target: Target,
        /// Agent listener address (overrides the config).
        #[arg(long)]
        agent_listen: Option<std::net::SocketAddr>,
        /// API listener address (overrides the config).
        #[arg(long)]
        api_listen: Option<std::net::SocketAddr>,
        /// `host:port` agents are told to dial in enrolment tokens (overrides the config).
        #[arg(long)]
        agent_address: Option<String>,
        /// Seconds a delivered job stays leased before it is handed out again (overrides the config).
        #[arg(long)]
        lease_secs: Option<u64>,
        /// Lifetime of agent certificates issued from now on, seconds (overrides the config).
        #[arg(long)]
        cert_lifetime_secs: Option<u64>,
        /// Longest an agent's long-poll is held open, seconds (overrides the config).
        #[arg(long)]
        long_poll_secs: Option<u64>,
        /// An agent not heard from for this long is shown `offline`, seconds (overrides the config).
        #[arg(long)]
        offline_after_secs: Option<u64>,
    },
    /// Enrolment tokens (`enrolment-token` is the same command).
    #[command(name = "enrollment-token", alias = "enrolment-token", subcommand)]
    EnrollmentToken(TokenCommand),
    /// Enrolled agents.
    #[command(subcommand)]
    Agent(AgentCommand),
    /// Job-signing keys: list, rotate, retire.
    ///
    /// A running `serve` picks up every change at its next job; agents learn new keys from
    /// a key-set statement signed by a key they already trust.
    #[command(name = "signing-key", subcommand)]
    SigningKey(SigningKeyCommand),
    /// The control plane's own TLS server certificate.
    #[command(name = "server-cert", subcommand)]
    ServerCert(ServerCertCommand),
    /// Check a config file and exit non-zero with the errors.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Users of the API and console: add, list, disable, enable, set a password.
    ///
    /// Roles: admin (users, agents, tokens, keys; every connection and project), editor
    /// (queries on connections shared with them, their projects), viewer (rendered results
    /// of projects shared with them).
    #[command(subcommand)]
    User(UserCommand),
    /// API tokens: create (shown once), list, revoke, rotate.
    #[command(subcommand)]
    Token(ApiTokenCommand),
    /// Print the API's OpenAPI document (also served at /v1/openapi.json and in docs/openapi.json).
    Openapi,
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Add a local user. With --password-stdin the first line of standard input is the
    /// password (12 characters or more), stored as an Argon2id hash; without it the user
    /// can use API tokens only until `user password` sets one.
    Add {
        #[command(flatten)]
        target: Target,
        /// Sign-in name (letters, digits, '.', '_', '@', '-'; e-mail addresses fit).
        name: String,
        /// admin, editor or viewer.
        #[arg(long)]
        role: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List users with role, status and last sign-in.
    List {
        #[command(flatten)]
        target: Target,
        /// Print JSON (the API's fields) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Disable a user: their sessions end and their API tokens stop working at once.
    Disable {
        #[command(flatten)]
        target: Target,
        /// The user's name.
        name: String,
    },
    /// Enable a disabled user again (their unexpired, unrevoked tokens work again).
    Enable {
        #[command(flatten)]
        target: Target,
        /// The user's name.
        name: String,
    },
    /// Set a user's password from the first line of standard input; ends their sessions.
    Password {
        #[command(flatten)]
        target: Target,
        /// The user's name.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
enum ApiTokenCommand {
    /// Create an API token for a user; prints it once (only its hash is stored).
    Create {
        #[command(flatten)]
        target: Target,
        /// The user the token acts as.
        #[arg(long)]
        user: String,
        /// A scope (repeat for several), or `*` for all of the user's role (the default).
        /// Scopes: agents:read agents:admin jobs:dispatch results:read projects:read
        /// projects:write projects:run embed:create tokens:write users:admin audit:read results:purge.
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// A label shown in listings.
        #[arg(long, default_value = "cli")]
        name: String,
        /// Lifetime, e.g. 30d, 12h.
        #[arg(long, default_value = "90d")]
        expires_in: String,
    },
    /// List tokens (all users, or one with --user), with scopes, expiry and last use.
    List {
        #[command(flatten)]
        target: Target,
        /// Only this user's tokens.
        #[arg(long)]
        user: Option<String>,
        /// Print JSON (the API's fields) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token; it stops working at once.
    Revoke {
        #[command(flatten)]
        target: Target,
        /// The token id (see `token list`).
        id: String,
    },
    /// Replace a token: a new one with the same user, scopes and label, then the old one
    /// revoked. Use it for the admin token from `init`.
    Rotate {
        #[command(flatten)]
        target: Target,
        /// The token id (see `token list`).
        id: String,
        /// Lifetime of the new token, e.g. 30d, 12h.
        #[arg(long, default_value = "90d")]
        expires_in: String,
    },
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Create a one-time token bound to one agent name; prints one string to give to `outpost-agent enroll --token`.
    Create {
        #[command(flatten)]
        target: Target,
        /// The agent name the token is bound to.
        #[arg(long)]
        agent: String,
        /// Enrol the agent into this pool: it then also runs jobs addressed to `pool:NAME`
        /// (each such job goes to one live member, and to another if that one dies).
        #[arg(long)]
        pool: Option<String>,
        /// Lifetime, e.g. 30m, 1h, 2d (1 minute to 7 days).
        #[arg(long, default_value = "1h")]
        ttl: String,
    },
    /// List the outstanding (unused, unexpired) tokens: id, agent, pool, expiry; never secrets.
    List {
        #[command(flatten)]
        target: Target,
        /// Print JSON (the API's fields) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Revoke an unused token by its id (from `list`): it enrols nobody from now on.
    Revoke {
        #[command(flatten)]
        target: Target,
        /// The token's id.
        id: String,
    },
}

#[derive(Debug, Subcommand)]
enum AgentCommand {
    /// List agents with their status and certificate expiry.
    List {
        #[command(flatten)]
        target: Target,
        /// Print JSON (the API's fields) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Revoke an agent: every request with its certificate is refused from now on (also
    /// after a restart) and its queued jobs fail. A running control plane sees it on the
    /// agent's next request; `POST /v1/agents/NAME/revoke` also cuts open connections at once.
    /// Enrolling the name again with a new token re-admits it.
    Revoke {
        #[command(flatten)]
        target: Target,
        /// The agent's name.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
enum SigningKeyCommand {
    /// List the keys (active, next, previous, retired) with their public keys and dates.
    List {
        #[command(flatten)]
        target: Target,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Make a new key active (or the staged `next` one); the old active key stays accepted
    /// as `previous` until retired, so no job in flight is lost.
    ///
    /// With --stage, only add a `next` key: agents learn it now and it signs nothing until
    /// the next `rotate`. Agents in `key_trust: pinned_only` mode learn nothing from the
    /// control plane: add the printed public key to their `trusted_keys` before rotating.
    Rotate {
        #[command(flatten)]
        target: Target,
        /// Add a `next` key without making it active.
        #[arg(long)]
        stage: bool,
    },
    /// Retire a `previous` or `next` key: agents stop accepting it, its undelivered jobs are
    /// re-signed by the active key, and its private key file is deleted.
    Retire {
        #[command(flatten)]
        target: Target,
        /// The key id, e.g. ed25519:0123456789abcdef (see `signing-key list`).
        key_id: String,
    },
}

#[derive(Debug, Subcommand)]
enum ServerCertCommand {
    /// Issue a new server certificate and key from the same CA (agents pin the CA, so none
    /// has to enrol again). Restart `serve` to use it.
    Rotate {
        #[command(flatten)]
        target: Target,
        /// Name for the new certificate (default: the name given at init). Agents check the
        /// name they enrolled with; a different name means enrolling them again.
        #[arg(long)]
        hostname: Option<String>,
        /// Further DNS names or IP addresses, replacing those given before (repeat for
        /// several; default: keep them).
        #[arg(long = "san", value_name = "NAME")]
        sans: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Validate control-plane.yaml (PATH, else --config, else $OUTPOST_CONTROL_PLANE_CONFIG,
    /// else /etc/outpost/control-plane.yaml); exits 64 with the file, line and field of
    /// the problem.
    Check {
        /// The file to check.
        path: Option<PathBuf>,
        /// The file to check (the same as PATH, as the other commands spell it).
        #[arg(long, conflicts_with = "path")]
        config: Option<PathBuf>,
    },
    /// Print the JSON Schema of control-plane.yaml (also in configs/control-plane.schema.json).
    Schema,
}

/// Which installation: a config file, or a data dir with default settings.
#[derive(Debug, Args)]
struct Target {
    /// Path of control-plane.yaml (default: $OUTPOST_CONTROL_PLANE_CONFIG, else
    /// /etc/outpost/control-plane.yaml, when no --data-dir is given).
    #[arg(long, conflicts_with = "data_dir")]
    config: Option<PathBuf>,
    /// Data dir made by `init` (used with default settings when no --config is given).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// The store: `sqlite` or a `postgres://` URL (overrides the config's `store`).
    #[arg(long, env = "OUTPOST_STORE")]
    store: Option<String>,
}

impl Target {
    fn load(&self) -> Result<ControlPlaneConfig, Failure> {
        let mut cfg = match (&self.config, &self.data_dir) {
            (Some(path), _) => ControlPlaneConfig::load(path).map_err(|e| Failure::Usage(e.to_string()))?,
            (None, Some(dir)) => ControlPlaneConfig::with_data_dir(dir.clone()),
            (None, None) => {
                let path = outpost_control_plane::config::default_config_path();
                if !path.exists() {
                    return Err(Failure::Usage(format!(
                        "give --config FILE or --data-dir DIR (there is no {}; ${} names another file)",
                        path.display(),
                        outpost_control_plane::config::CONFIG_ENV
                    )));
                }
                ControlPlaneConfig::load(&path).map_err(|e| Failure::Usage(e.to_string()))?
            }
        };
        if let Some(url) = &self.store {
            cfg.store = outpost_control_plane::config::StoreUrl::new(url.clone());
            cfg.check("--store").map_err(|e| Failure::Usage(e.to_string()))?;
        }
        Ok(cfg)
    }
}

enum Failure {
    Usage(String),
    Other(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Other(e)
    }
}

fn main() -> ExitCode {
    outpost_common::process::quiet_broken_pipe();
    let cli = match outpost_common::process::parse_args::<Cli>() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    outpost_common::process::init_logging(if matches!(cli.command, Command::Serve { .. }) { "info" } else { "warn" });
    let rt = match outpost_common::process::runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(m)) => {
            eprintln!("error: {m}");
            ExitCode::from(EX_USAGE)
        }
        Err(Failure::Other(e)) => {
            let text = error_text(&e);
            eprintln!("error: {text}");
            // (A port below 1024 is refused with the same words; that is not about files.)
            if text.contains("Permission denied (os error 13)") && !text.contains("cannot listen on") {
                eprintln!(
                    "hint: the control plane's files must belong to the service's user: run commands as \
                     sudo -u outpost-cp outpost-control-plane …; files a command run as root wrote can be given \
                     back with sudo chown -R outpost-cp:outpost-cp DATA_DIR"
                );
            }
            let usage = e.chain().any(|c| {
                matches!(
                    c.downcast_ref::<app::AppError>(),
                    Some(app::AppError::NotInitialised(_) | app::AppError::NotReadable(_))
                )
            });
            if usage {
                ExitCode::from(EX_USAGE)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// An error and its causes, `: `-separated, each said once: some errors print their
/// source in their own text (`Address already in use (os error 98)` twice otherwise).
fn error_text(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if text.is_empty() || out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

async fn run(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Init { data_dir, hostname, sans, store, store_password_file } => {
            init(data_dir, hostname, sans, store, store_password_file).await
        }
        Command::Serve {
            target,
            agent_listen,
            api_listen,
            agent_address,
            lease_secs,
            cert_lifetime_secs,
            long_poll_secs,
            offline_after_secs,
        } => {
            let mut cfg = target.load()?;
            if let Some(a) = agent_listen {
                cfg.agent_listen = a;
            }
            if let Some(a) = api_listen {
                cfg.api_listen = a;
            }
            if let Some(a) = agent_address {
                cfg.agent_address = Some(a);
            }
            if let Some(l) = lease_secs {
                cfg.jobs.lease_secs = l;
            }
            if let Some(l) = cert_lifetime_secs {
                cfg.cert_lifetime_secs = l;
            }
            if let Some(l) = long_poll_secs {
                cfg.jobs.long_poll_secs = l;
            }
            if let Some(o) = offline_after_secs {
                cfg.offline_after_secs = o;
            }
            cfg.check("command line").map_err(|e| Failure::Usage(e.to_string()))?;
            serve(cfg).await.map_err(Failure::Other)
        }
        Command::EnrollmentToken(cmd) => enrollment_token(cmd).await,
        Command::Agent(cmd) => agent_cmd(cmd).await,
        Command::SigningKey(cmd) => signing_key(cmd).await,
        Command::ServerCert(cmd) => server_cert(cmd),
        Command::Config(cmd) => config_cmd(cmd),
        Command::User(cmd) => user_cmd(cmd).await,
        Command::Token(cmd) => token_cmd(cmd).await,
        Command::Openapi => {
            print!("{}", outpost_control_plane::api::openapi::document_json());
            Ok(())
        }
    }
}
