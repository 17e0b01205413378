//! `reload` and `status`: asking the running agent over its control socket.

#[allow(clippy::wildcard_imports)]
use crate::*;

/// How long `reload` waits for the agent's verdict (it may open the vault and build every
/// connection again).
pub(crate) const RELOAD_WAIT: std::time::Duration = std::time::Duration::from_secs(80);

/// How long `status` waits for the daemon's answer.
pub(crate) const STATUS_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

pub(crate) async fn reload(state_dir: &std::path::Path, config: &std::path::Path) -> ExitCode {
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
pub(crate) async fn daemon_status(state_dir: &std::path::Path, now: i64) -> Vec<String> {
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
