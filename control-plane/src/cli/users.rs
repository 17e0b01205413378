//! `user …`: console users and their passwords.

#[allow(clippy::wildcard_imports)]
use crate::*;

/// The password: asked for at a terminal without echo, twice; else the first line of
/// standard input.
pub(crate) fn read_password_line() -> Result<Password, Failure> {
    use std::io::IsTerminal as _;
    if std::io::stdin().is_terminal() {
        let ask = |prompt: &str| {
            rpassword::prompt_password(prompt)
                .map(zeroize::Zeroizing::new)
                .map_err(|e| Failure::Usage(format!("cannot read the password from the terminal: {e}")))
        };
        let first = ask("New password (12 characters or more): ")?;
        let again = ask("The same password again: ")?;
        if *first != *again {
            return Err(Failure::Usage("the two passwords differ; nothing was changed".into()));
        }
        return Ok(Password::new(first.to_string()));
    }
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| Failure::Usage(format!("cannot read the password from standard input: {e}")))?;
    let p = Password::new(line.trim_end_matches(['\r', '\n']).to_owned());
    line.zeroize();
    Ok(p)
}

pub(crate) async fn user_cmd(cmd: UserCommand) -> Result<(), Failure> {
    use outpost_control_plane::store::access::{UserRecord, UserUpdate};
    let open = |t: &Target| -> Result<ControlPlaneConfig, Failure> { t.load() };
    match cmd {
        UserCommand::Add { target, name, role, password_stdin } => {
            let app = app::open(open(&target)?).await.context("cannot open the control plane's data dir")?;
            access::validate_principal_name(&name).map_err(|m| Failure::Usage(format!("user name {name:?}: {m}")))?;
            let role = Role::parse(&role)
                .ok_or_else(|| Failure::Usage(format!("--role {role:?}: expected admin, editor or viewer")))?;
            let password_hash = if password_stdin {
                let p = read_password_line()?;
                Some(access::hash_password(p.expose()).map_err(|e| Failure::Usage(e.to_string()))?)
            } else {
                None
            };
            let has_password = password_hash.is_some();
            let user = UserRecord {
                id: access::new_id(),
                name: name.clone(),
                role,
                password_hash,
                created_at: app.clock.now(),
                disabled_at: None,
                last_sign_in: None,
            };
            if !app.store.create_user(user).await.map_err(anyhow::Error::new)? {
                return Err(Failure::Usage(format!("a user named {name:?} already exists")));
            }
            audit_cli(&app.store, "users.create", &name, serde_json::json!({ "role": role })).await;
            println!("User {name:?} added as {role}.");
            if !has_password {
                println!("No password: they can use API tokens (`token create --user {name}`) until `user password {name}` sets one.");
            }
            Ok(())
        }
        UserCommand::List { target, json } => {
            let app = app::open(open(&target)?).await.context("cannot open the control plane's data dir")?;
            if json {
                let users = app.store.users().await.map_err(anyhow::Error::new)?;
                let users: Vec<_> = users.iter().map(outpost_control_plane::api::access::user_view).collect();
                println!("{}", serde_json::json!({ "users": users }));
                return Ok(());
            }
            println!("{:<32} {:<7} {:<9} {:<9} {:<26}", "NAME", "ROLE", "STATUS", "PASSWORD", "LAST SIGN-IN");
            for u in app.store.users().await.map_err(anyhow::Error::new)? {
                let status = if u.disabled_at.is_some() { "disabled" } else { "enabled" };
                let pw = if u.password_hash.is_some() { "set" } else { "none" };
                let seen = u.last_sign_in.map(fmt_time).unwrap_or_else(|| "never".into());
                println!("{:<32} {:<7} {:<9} {:<9} {:<26}", u.name, u.role.to_string(), status, pw, seen);
            }
            Ok(())
        }
        UserCommand::Disable { target, name } => {
            let update = UserUpdate { disabled: Some(true), ..Default::default() };
            let done = "disabled: their sessions ended and their tokens no longer work";
            update_user(&target, &name, update, serde_json::json!({ "disabled": true }), done).await
        }
        UserCommand::Enable { target, name } => {
            let update = UserUpdate { disabled: Some(false), ..Default::default() };
            update_user(&target, &name, update, serde_json::json!({ "disabled": false }), "enabled").await
        }
        UserCommand::Password { target, name } => {
            let p = read_password_line()?;
            let hash = access::hash_password(p.expose()).map_err(|e| Failure::Usage(e.to_string()))?;
            let update = UserUpdate { password_hash: Some(hash), ..Default::default() };
            let detail = serde_json::json!({ "password_changed": true });
            update_user(&target, &name, update, detail, "has a new password; their sessions ended").await
        }
    }
}

/// Applies `update` to user `name`, records it and says `done`.
pub(crate) async fn update_user(
    target: &Target,
    name: &str,
    update: outpost_control_plane::store::access::UserUpdate,
    detail: serde_json::Value,
    done: &str,
) -> Result<(), Failure> {
    let app = app::open(target.load()?).await.context("cannot open the control plane's data dir")?;
    let result = app.store.update_user(name.to_owned(), update, app.clock.now()).await;
    match result {
        Ok(Some(_)) => {
            audit_cli(&app.store, "users.update", name, detail).await;
            println!("User {name:?} {done}.");
            Ok(())
        }
        Ok(None) => Err(Failure::Usage(format!("no user named {name:?}"))),
        Err(StoreError::Conflict(m)) => Err(Failure::Usage(m)),
        Err(other) => Err(Failure::Other(other.into())),
    }
}
