//! `connections test` and the missing-credential check of `status`.

#[allow(clippy::wildcard_imports)]
use crate::*;

/// Reads a passphrase at the terminal (twice when one is being chosen).
/// Each `password_credential` (of a connection or the proxy) that the vault does not
/// hold, one line each (names only: the vault's values stay sealed).
pub(crate) fn missing_credentials(cfg: &AgentConfig) -> Vec<String> {
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

pub(crate) async fn test_connections(cfg: &AgentConfig, name: Option<String>, json: bool) -> ExitCode {
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
pub(crate) async fn probe_connections(
    cfg: &AgentConfig,
) -> Result<Vec<outpost_agent::health::ConnectionReport>, String> {
    // Only opened when a connection names a password credential.
    let vault = if cfg.connections.values().any(|c| c.password_credential.is_some()) {
        Some(
            outpost_agent::vault::Vault::open(&cfg.state_dir, &cfg.vault_keys(), &passphrase_prompt)
                .map_err(|e| format!("{e} (the vault holds the connections' passwords)"))?,
        )
    } else {
        None
    };
    let connectors = outpost_agent::daemon::prepare_connections(cfg, vault.as_ref()).map_err(|e| e.to_string())?;
    let mut names: Vec<&String> = connectors.keys().collect();
    names.sort();
    let mut reports = Vec::new();
    for n in names {
        reports.push(outpost_agent::health::test(n, &connectors[n]).await);
    }
    Ok(reports)
}
