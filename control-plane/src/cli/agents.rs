//! `agent …`: list and revoke enrolled agents.

#[allow(clippy::wildcard_imports)]
use crate::*;

pub(crate) async fn agent_cmd(cmd: AgentCommand) -> Result<(), Failure> {
    match cmd {
        AgentCommand::List { target, json } => {
            let app = app::open(target.load()?).await.context("cannot open the control plane's data dir")?;
            let agents = outpost_control_plane::store::Store::agents(&app.store).await.map_err(anyhow::Error::new)?;
            if json {
                let offline_after = i64::try_from(app.cfg.offline_after_secs).unwrap_or(90);
                let now = app.clock.now();
                let agents: Vec<_> = agents
                    .iter()
                    .map(|a| outpost_control_plane::api::jobs::agent_view(a, a.connections.clone(), now, offline_after))
                    .collect();
                println!("{}", serde_json::json!({ "agents": agents }));
                return Ok(());
            }
            println!("{:<24} {:<16} {:<8} {:<26} {:<26}", "NAME", "POOL", "STATUS", "LAST SEEN", "CERTIFICATE UNTIL");
            let offline_after = i64::try_from(app.cfg.offline_after_secs).unwrap_or(90);
            let now = app.clock.now();
            for a in agents {
                // The API's words: revoked, online, offline.
                let status = a.status(now, offline_after);
                let seen = a.last_seen.map(fmt_time).unwrap_or_else(|| "never".into());
                let pool = a.pool.as_deref().unwrap_or("-");
                println!("{:<24} {:<16} {:<8} {:<26} {:<26}", a.name, pool, status, seen, fmt_time(a.cert_not_after));
            }
            Ok(())
        }
        AgentCommand::Revoke { target, name } => {
            let app = app::open(target.load()?).await.context("cannot open the control plane's data dir")?;
            match app.revoke_agent(&name).await.map_err(anyhow::Error::new)? {
                Some(failed) => {
                    audit_cli(&app.store, "agents.revoke", &name, serde_json::json!({ "failed_jobs": failed.len() }))
                        .await;
                    println!("Agent {name:?} revoked; {} queued job(s) failed.", failed.len());
                    Ok(())
                }
                None => Err(Failure::Usage(format!("no agent named {name:?}"))),
            }
        }
    }
}
