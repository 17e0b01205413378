//! `cache …` and `keys rotate`: the encrypted result cache and its keys.

#[allow(clippy::wildcard_imports)]
use crate::*;

pub(crate) fn cache(cfg: &AgentConfig, cmd: CacheCommand) -> ExitCode {
    use outpost_agent::cache::Index;
    if !Index::exists(&cfg.state_dir) {
        println!("The cache is empty (nothing at {}).", cfg.state_dir.join(outpost_agent::cache::CACHE_DIR).display());
        return ExitCode::SUCCESS;
    }
    let index = match Index::open(&cfg.state_dir) {
        Ok(i) => i,
        Err(e) => return failure(e),
    };
    match cmd {
        CacheCommand::Stats { json } => {
            let stats = match index.stats() {
                Ok(s) => s,
                Err(e) => return failure(e),
            };
            let caps = cfg.cache_caps();
            if json {
                let per: Vec<_> = stats
                    .by_connection
                    .iter()
                    .map(|(c, n, b)| {
                        serde_json::json!({ "connection": c, "entries": n, "bytes": b, "max_age_secs": caps.get(c) })
                    })
                    .collect();
                let out = serde_json::json!({
                    "entries": stats.entries, "bytes": stats.bytes, "max_bytes": cfg.cache.max_bytes.get(),
                    "connections": per,
                });
                println!("{out}");
                return ExitCode::SUCCESS;
            }
            println!("{:<24} {:>8} {:>14}  MAX AGE", "CONNECTION", "ENTRIES", "BYTES");
            for (name, cap) in &caps {
                let (n, b) = stats.by_connection.iter().find(|c| &c.0 == name).map(|c| (c.1, c.2)).unwrap_or_default();
                let age = if *cap == 0 { "off".to_owned() } else { format!("{cap} s") };
                println!("{name:<24} {n:>8} {b:>14}  {age}");
            }
            for (name, n, b) in stats.by_connection.iter().filter(|c| !caps.contains_key(&c.0)) {
                println!("{name:<24} {n:>8} {b:>14}  (not configured; deleted by the next sweep)");
            }
            println!(
                "{:<24} {:>8} {:>14}  of {} bytes allowed",
                "total",
                stats.entries,
                stats.bytes,
                cfg.cache.max_bytes.get()
            );
            ExitCode::SUCCESS
        }
        CacheCommand::Purge { connection } => match index.purge(connection.as_deref()) {
            Ok(n) => {
                match connection {
                    Some(c) => eprintln!("Deleted {n} cached result(s) of connection {c:?}."),
                    None => eprintln!("Deleted {n} cached result(s)."),
                }
                ExitCode::SUCCESS
            }
            Err(e) => failure(e),
        },
    }
}

/// One line for `status`: what the cache holds and what policy allows.
pub(crate) fn cache_summary(cfg: &AgentConfig) -> String {
    if !cfg.cache_enabled() {
        return "off (max-age 0 for every connection)".into();
    }
    let held = if outpost_agent::cache::Index::exists(&cfg.state_dir) {
        match outpost_agent::cache::Index::open(&cfg.state_dir).and_then(|i| i.stats()) {
            Ok(s) => format!("{} entries, {} bytes", s.entries, s.bytes),
            Err(e) => format!("ERROR: {e}"),
        }
    } else {
        "empty".into()
    };
    let caps: Vec<String> = cfg.cache_caps().iter().map(|(c, s)| format!("{c} {s} s")).collect();
    format!("{held} (of {} allowed; max-age {})", cfg.cache.max_bytes.get(), caps.join(", "))
}

pub(crate) fn rotate_keys(cfg: &AgentConfig) -> ExitCode {
    use outpost_agent::vault::{StateLock, Vault, RUN_LOCK, VAULT_LOCK};
    if !Vault::exists(&cfg.state_dir) {
        return usage(format!("no vault at {} yet; nothing to rotate", Vault::path(&cfg.state_dir).display()));
    }
    let _running = match StateLock::try_acquire(&cfg.state_dir, RUN_LOCK) {
        Ok(Some(l)) => l,
        Ok(None) => {
            return failure(format!(
            "outpost-agent run is using {}; stop it first (systemctl stop outpost-agent), rotate, then start it again",
            cfg.state_dir.display()
        ))
        }
        Err(e) => return failure(e),
    };
    let _vault_lock = match StateLock::acquire(&cfg.state_dir, VAULT_LOCK) {
        Ok(l) => l,
        Err(e) => return failure(e),
    };
    let mut vault = match Vault::open(&cfg.state_dir, &cfg.vault_keys(), &passphrase_prompt) {
        Ok(v) => v,
        Err(e) => return failure(e),
    };
    outpost_common::process::pause_point("rotate:before-write");
    let (old, new) = match vault.rotate_data_key() {
        Ok(ids) => ids,
        Err(e) => return failure(format!("{e}; the vault is unchanged")),
    };
    eprintln!("Rotated the vault's data key {old} -> {new}; re-encrypted {} credential(s).", vault.list().len());
    Vault::remove_stale_temps(&cfg.state_dir);
    outpost_common::process::pause_point("rotate:before-cache-shred");
    // The cache key derives from the data key: entries sealed under the old one are
    // deleted now (and, were this interrupted, when the cache is next opened).
    if outpost_agent::cache::Index::exists(&cfg.state_dir) {
        match outpost_agent::cache::Index::open(&cfg.state_dir).and_then(|i| i.shred_other_keys(&new)) {
            Ok(n) => eprintln!("Deleted {n} cached result(s) sealed under the old key."),
            Err(e) => return failure(format!("the vault is rotated, but the old cache entries were not deleted: {e}; they will be when the agent next starts")),
        }
    }
    ExitCode::SUCCESS
}
