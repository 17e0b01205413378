//! `credentials …`: the vault of connection secrets.

#[allow(clippy::wildcard_imports)]
use crate::*;

pub(crate) fn passphrase_prompt(confirm: bool) -> Result<secrecy::SecretString, outpost_agent::vault::VaultError> {
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

pub(crate) fn credentials(cfg: &AgentConfig, cmd: CredentialsCommand) -> ExitCode {
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
