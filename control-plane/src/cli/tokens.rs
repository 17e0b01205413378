//! `token …`: API tokens.

#[allow(clippy::wildcard_imports)]
use crate::*;

pub(crate) async fn token_cmd(cmd: ApiTokenCommand) -> Result<(), Failure> {
    let days = |s: &str| -> Result<i64, Failure> {
        let secs = parse_duration(s).filter(|n| (3600..=3650 * 86_400).contains(n)).ok_or_else(|| {
            Failure::Usage(format!("--expires-in {s:?}: expected e.g. 12h, 30d (1 hour to 3650 days)"))
        })?;
        Ok(outpost_control_plane::clock::Clock::system().now() + i64::try_from(secs).unwrap_or(86_400))
    };
    match cmd {
        ApiTokenCommand::Create { target, user, scopes, name, expires_in } => {
            let app = app::open(target.load()?).await.context("cannot open the control plane's data dir")?;
            let expires_at = days(&expires_in)?;
            let u = app
                .store
                .user_by_name(user.clone())
                .await
                .map_err(anyhow::Error::new)?
                .ok_or_else(|| Failure::Usage(format!("no user named {user:?}")))?;
            let scopes = if scopes.is_empty() { vec!["*".to_owned()] } else { scopes };
            let set = Scopes::parse_list(&scopes, Scopes::ALL).map_err(|m| Failure::Usage(format!("--scope: {m}")))?;
            if !set.is_subset_of(u.role.scopes()) {
                return Err(Failure::Usage(format!(
                    "--scope: {user} is {} and may not hold {}",
                    u.role,
                    set.names()
                        .into_iter()
                        .filter(|n| Scope::parse(n).is_some_and(|s| !u.role.scopes().has(s)))
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            let (secret, id) =
                app::issue_api_token(&app.store, &u.id, &name, set, expires_at).await.map_err(anyhow::Error::new)?;
            audit_cli(
                &app.store,
                "tokens.create",
                &id,
                serde_json::json!({ "user": user, "scopes": set.names(), "expires_at": expires_at }),
            )
            .await;
            eprintln!(
                "Token {id} for {user:?}, expires {} (shown once; only its hash is stored):",
                fmt_time(expires_at)
            );
            println!("{}", secret.as_str());
            Ok(())
        }
        ApiTokenCommand::List { target, user, json } => {
            let app = app::open(target.load()?).await.context("cannot open the control plane's data dir")?;
            let uid = match &user {
                Some(n) => Some(
                    app.store
                        .user_by_name(n.clone())
                        .await
                        .map_err(anyhow::Error::new)?
                        .ok_or_else(|| Failure::Usage(format!("no user named {n:?}")))?
                        .id,
                ),
                None => None,
            };
            let now = app.clock.now();
            if json {
                let tokens = app.store.tokens(uid).await.map_err(anyhow::Error::new)?;
                let tokens: Vec<_> =
                    tokens.iter().map(|t| outpost_control_plane::api::access::token_view(t, now)).collect();
                println!("{}", serde_json::json!({ "tokens": tokens }));
                return Ok(());
            }
            println!(
                "{:<17} {:<20} {:<16} {:<8} {:<26} {:<26} SCOPES",
                "ID", "USER", "NAME", "STATUS", "EXPIRES", "LAST USED"
            );
            for t in app.store.tokens(uid).await.map_err(anyhow::Error::new)? {
                let status = t.status(now);
                println!(
                    "{:<17} {:<20} {:<16} {:<8} {:<26} {:<26} {}",
                    t.id,
                    t.user,
                    t.name,
                    status,
                    t.expires_at.map(fmt_time).unwrap_or_else(|| "never".into()),
                    t.last_used.map(fmt_time).unwrap_or_else(|| "never".into()),
                    t.scopes
                );
            }
            Ok(())
        }
        ApiTokenCommand::Revoke { target, id } => {
            let app = app::open(target.load()?).await.context("cannot open the control plane's data dir")?;
            if !app.store.revoke_token(id.clone(), app.clock.now()).await.map_err(anyhow::Error::new)? {
                return Err(Failure::Usage(format!("no active token with id {id:?}")));
            }
            audit_cli(&app.store, "tokens.revoke", &id, serde_json::json!({})).await;
            println!("Token {id} revoked; it no longer works.");
            Ok(())
        }
        ApiTokenCommand::Rotate { target, id, expires_in } => {
            let app = app::open(target.load()?).await.context("cannot open the control plane's data dir")?;
            let expires_at = days(&expires_in)?;
            let old = app
                .store
                .token(id.clone())
                .await
                .map_err(anyhow::Error::new)?
                .filter(|t| t.revoked_at.is_none())
                .ok_or_else(|| Failure::Usage(format!("no active token with id {id:?}")))?;
            let scopes = Scopes::from_stored(&old.scopes).map_err(|m| Failure::Other(anyhow::anyhow!(m)))?;
            let (secret, new_id) = app::issue_api_token(&app.store, &old.user_id, &old.name, scopes, expires_at)
                .await
                .map_err(anyhow::Error::new)?;
            app.store.revoke_token(id.clone(), app.clock.now()).await.map_err(anyhow::Error::new)?;
            audit_cli(&app.store, "tokens.rotate", &id, serde_json::json!({ "new": new_id, "user": old.user })).await;
            eprintln!(
                "Token {id} revoked; its replacement {new_id} for {:?} expires {}:",
                old.user,
                fmt_time(expires_at)
            );
            println!("{}", secret.as_str());
            Ok(())
        }
    }
}
