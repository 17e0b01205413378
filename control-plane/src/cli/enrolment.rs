//! `enrollment-token …`: one-time tokens agents enrol with.

#[allow(clippy::wildcard_imports)]
use crate::*;

pub(crate) async fn enrollment_token(cmd: TokenCommand) -> Result<(), Failure> {
    match cmd {
        TokenCommand::Create { target, agent, pool, ttl } => {
            let cfg = target.load()?;
            let ttl_secs = parse_duration(&ttl)
                .ok_or_else(|| Failure::Usage(format!("--ttl {ttl:?}: expected e.g. 30m, 1h, 2d")))?;
            let app = app::open(cfg).await.context("cannot open the control plane's data dir")?;
            let (token, id, expires_at) =
                app.create_enrolment_token(&agent, pool.as_deref(), ttl_secs).await.map_err(|e| match e {
                    app::AppError::Usage(m) => Failure::Usage(m),
                    other => Failure::Other(other.into()),
                })?;
            let detail = serde_json::json!({ "token_id": id, "pool": pool, "expires_at": expires_at });
            audit_cli(&app.store, "enrollment_tokens.create", &agent, detail).await;
            let joins = pool.as_deref().map(|p| format!(" in pool {p:?}")).unwrap_or_default();
            eprintln!(
                "Enrolment token for agent {agent:?}{joins}, single use, expires at {} (unix {expires_at}):",
                fmt_time(expires_at)
            );
            println!("{token}");
            Ok(())
        }
        TokenCommand::List { target, json } => {
            let app = app::open(target.load()?).await.context("cannot open the control plane's data dir")?;
            let now = app.clock.now();
            let tokens = outpost_control_plane::store::Store::outstanding_enrol_tokens(&app.store, now)
                .await
                .map_err(anyhow::Error::new)?;
            if json {
                let tokens: Vec<_> = tokens.iter().map(outpost_control_plane::enrolment::token_view).collect();
                println!("{}", serde_json::json!({ "tokens": tokens }));
                return Ok(());
            }
            println!("{:<18} {:<24} {:<16} {:<26} {:<26}", "ID", "AGENT", "POOL", "CREATED", "EXPIRES");
            for t in tokens {
                let pool = t.pool.as_deref().unwrap_or("-");
                println!(
                    "{:<18} {:<24} {:<16} {:<26} {:<26}",
                    t.id,
                    t.agent,
                    pool,
                    fmt_time(t.created_at),
                    fmt_time(t.expires_at)
                );
            }
            Ok(())
        }
        TokenCommand::Revoke { target, id } => {
            let app = app::open(target.load()?).await.context("cannot open the control plane's data dir")?;
            match outpost_control_plane::store::Store::revoke_enrol_token(&app.store, id.clone())
                .await
                .map_err(anyhow::Error::new)?
            {
                Some(t) => {
                    let detail = serde_json::json!({ "agent": t.agent, "pool": t.pool, "expires_at": t.expires_at });
                    audit_cli(&app.store, "enrollment_tokens.revoke", &id, detail).await;
                    println!("Enrolment token {id} (agent {:?}) revoked.", t.agent);
                    Ok(())
                }
                None => Err(Failure::Usage(format!("no unused enrolment token {id:?}"))),
            }
        }
    }
}
