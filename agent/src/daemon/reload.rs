//! Reloads: agent.yaml read again and applied, or refused with the running config kept.
//! Asked by SIGHUP or by `outpost-agent reload` over the control socket (systemd's
//! `ExecReload=`), which waits for the verdict; one reload runs at a time.

use std::sync::Arc;

use outpost_protocol::encoding::sha256_hex;
use tokio_util::sync::CancellationToken;

use super::{heartbeat, needs_vault, open_vault, prepare_connections, Ctx, Live, RunError, RELOAD_HEARTBEAT_WAIT};
use crate::config::AgentConfig;
use crate::control::{DaemonStatus, ReloadOutcome};
use crate::keys::KeyTrust;

/// Fields a reload cannot change under a running agent, with how to tell them apart.
fn restart_only_changes(old: &AgentConfig, new: &AgentConfig) -> Vec<&'static str> {
    let mut changed = Vec::new();
    let mut check = |name: &'static str, a: String, b: String| {
        if a != b {
            changed.push(name);
        }
    };
    check("state_dir", format!("{:?}", old.state_dir), format!("{:?}", new.state_dir));
    check("control_plane", format!("{:?}", old.control_plane), format!("{:?}", new.control_plane));
    check("proxy", format!("{:?}", old.proxy), format!("{:?}", new.proxy));
    check("audit", format!("{:?}", old.audit), format!("{:?}", new.audit));
    check("vault", format!("{:?}", old.vault), format!("{:?}", new.vault));
    check("metrics", format!("{:?}", old.metrics), format!("{:?}", new.metrics));
    check("cache.max_bytes", format!("{:?}", old.cache.max_bytes), format!("{:?}", new.cache.max_bytes));
    check("the cache being on or off", old.cache_enabled().to_string(), new.cache_enabled().to_string());
    check(
        "limits.max_concurrent_jobs",
        old.limits.max_concurrent_jobs.get().to_string(),
        new.limits.max_concurrent_jobs.get().to_string(),
    );
    check(
        "limits.long_poll_secs",
        old.limits.long_poll_secs.get().to_string(),
        new.limits.long_poll_secs.get().to_string(),
    );
    changed
}

/// Why a reload was refused (the running config stays). The texts are what the log, the
/// audit record, `status` and `outpost-agent reload` show.
#[derive(Debug, thiserror::Error)]
pub(super) enum ReloadRefusal {
    /// agent.yaml could not be read. The text repeats the cause's words on purpose: the
    /// log and the audit record print this error alone.
    #[error("{path}: {source}")]
    Read {
        /// The file, as shown.
        path: String,
        /// Why.
        #[source]
        source: outpost_common::fsutil::FileError,
    },
    /// agent.yaml is not UTF-8.
    #[error("{path}: not valid UTF-8")]
    NotUtf8 {
        /// The file, as shown.
        path: String,
    },
    /// agent.yaml does not parse or check.
    #[error(transparent)]
    Config(#[from] outpost_common::yamlcfg::ConfigError),
    /// Fields changed that only a restart applies.
    #[error("{} changed, which applies only at a restart (systemctl restart outpost-agent)", fields.join(", "))]
    RestartOnly {
        /// The fields, as named in agent.yaml.
        fields: Vec<&'static str>,
    },
    /// The trusted signing keys could not be loaded.
    #[error(transparent)]
    Keys(#[from] crate::keys::KeyTrustError),
    /// The vault, a connection, or no trusted key: as at start-up.
    #[error(transparent)]
    Run(#[from] RunError),
    /// The vault's mask key could not be read.
    #[error(transparent)]
    Vault(#[from] crate::vault::VaultError),
    /// The blocking task that builds the connections failed.
    #[error(transparent)]
    Task(#[from] tokio::task::JoinError),
}

/// Reads agent.yaml again and applies it: connections, egress policy, limits, cache
/// max-ages, trusted keys. Running jobs finish under the config they started with.
/// Anything wrong (a parse error, a connection that cannot be built, a field that needs a
/// restart) refuses the whole file and the running config stays.
async fn apply(ctx: &Ctx, path: &std::path::Path, digest: &mut Option<String>) -> Result<Vec<String>, ReloadRefusal> {
    // Read once: the digest audited is of exactly the text applied.
    let shown = path.display().to_string();
    let bytes = outpost_common::fsutil::read_capped_file(path, outpost_common::yamlcfg::MAX_CONFIG_LEN)
        .map_err(|source| ReloadRefusal::Read { path: shown.clone(), source })?;
    *digest = Some(sha256_hex(&bytes));
    let text = String::from_utf8(bytes).map_err(|_| ReloadRefusal::NotUtf8 { path: shown.clone() })?;
    let new = AgentConfig::parse(&shown, &text)?;
    let old = ctx.live();
    let restart = restart_only_changes(&old.cfg, &new);
    if !restart.is_empty() {
        return Err(ReloadRefusal::RestartOnly { fields: restart });
    }
    let enrolment = ctx.enrolment.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
    let keys = KeyTrust::load(&new, &enrolment)?;
    if keys.trusted().is_empty() {
        return Err(RunError::NoKeys.into());
    }
    let built = {
        let new = new.clone();
        tokio::task::spawn_blocking(move || -> Result<Live, ReloadRefusal> {
            // No terminal under systemd: a passphrase comes only from its credential.
            let vault = if needs_vault(&new) { Some(open_vault(&new, &crate::proxy::no_prompt)?) } else { None };
            let connections = prepare_connections(&new, vault.as_ref())?;
            let mask_key = match (&vault, new.masks_with_hash()) {
                (Some(v), true) => Some(v.mask_key()?),
                _ => None,
            };
            Ok(Live { cfg: new, connections, mask_key })
        })
        .await??
    };
    let mut names: Vec<String> = built.connections.keys().cloned().collect();
    names.sort();
    crate::connectors::privileges::check_all_in_background(&built.connections);
    *ctx.keys.write().unwrap_or_else(std::sync::PoisonError::into_inner) = keys;
    *ctx.live.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(built);
    Ok(names)
}

/// Reads agent.yaml again and applies it (or refuses it), audits the attempt and tells
/// systemd; the verdict is kept for `status` and returned. Reloads run one at a time.
pub(super) async fn reload_once(ctx: &Ctx) -> ReloadOutcome {
    let _one = ctx.reload_lock.lock().await;
    let now = ctx.clock.now();
    let Some(path) = ctx.config_path.clone() else {
        return ReloadOutcome {
            at: now,
            applied: false,
            config_sha256: None,
            connections: Vec::new(),
            reason: Some("this agent was started without a config file to read again".into()),
        };
    };
    crate::service::reloading();
    // Config errors span lines (a snippet of the file): the log gets all of it, the
    // audit record, the status and the verdict its first line.
    let mut digest = None;
    let outcome = apply(ctx, &path, &mut digest).await.map_err(|e| {
        tracing::error!(path = %path.display(), error = %e, "Config reload refused; the running config stays.");
        e.to_string().lines().next().unwrap_or_default().trim().to_owned()
    });
    let ts = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let rec = match &outcome {
        Ok(connections) => {
            tracing::info!(path = %path.display(), config_sha256 = digest.as_deref().unwrap_or_default(), connections = ?connections, "Reloaded agent.yaml; new jobs run under it.");
            crate::audit::ConfigRecord {
                event: "config_reload",
                ts,
                outcome: crate::audit::ReloadOutcome::Applied,
                config_sha256: digest.clone(),
                reason: None,
                connections: connections.clone(),
            }
        }
        Err(e) => crate::audit::ConfigRecord {
            event: "config_reload",
            ts,
            outcome: crate::audit::ReloadOutcome::Refused,
            config_sha256: digest.clone(),
            reason: Some(e.clone()),
            connections: Vec::new(),
        },
    };
    ctx.metrics.reload(outcome.is_ok());
    if let Err(e) = ctx.audit.record(&rec).await {
        tracing::error!(error = %e, "Audit record of the reload not written.");
    }
    if outcome.is_ok() {
        // The control plane learns the new connection names before systemd (or the
        // reload command) hears the reload is done, so that a dispatch right after it is
        // checked against them (bounded: an unreachable control plane does not hold the
        // reload up).
        let _ = tokio::time::timeout(RELOAD_HEARTBEAT_WAIT, heartbeat(ctx)).await;
    }
    let status = match &outcome {
        Ok(_) => ctx.status_line(),
        Err(e) => format!("Reload refused ({e}); running config kept. {}", ctx.status_line()),
    };
    crate::service::reloaded(&status);
    let verdict = ReloadOutcome {
        at: ctx.clock.now(),
        applied: outcome.is_ok(),
        config_sha256: digest,
        connections: ctx.connection_names(),
        reason: outcome.err(),
    };
    *ctx.last_reload.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(verdict.clone());
    verdict
}

/// Applies agent.yaml again at each SIGHUP (`kill -HUP`); each attempt, applied or
/// refused, is logged and written to the audit log. Returns once `shutdown` is
/// cancelled; a reload under way then finishes first.
pub(super) async fn reload_loop(ctx: Arc<Ctx>, mut hups: tokio::signal::unix::Signal, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            r = hups.recv() => if r.is_none() { return },
            () = shutdown.cancelled() => return,
        }
        reload_once(&ctx).await;
    }
}

/// The runner's side of the control socket, and the shutdown token that says whether the
/// agent is stopping.
pub(super) struct Control(pub(super) Arc<Ctx>, pub(super) CancellationToken);

impl crate::control::Handler for Control {
    fn status(&self) -> DaemonStatus {
        DaemonStatus { stopping: self.1.is_cancelled(), ..self.0.daemon_status() }
    }

    async fn reload(&self) -> ReloadOutcome {
        reload_once(&self.0).await
    }

    fn config_path(&self) -> Option<std::path::PathBuf> {
        self.0.config_path.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::ReloadRefusal;

    /// A refused reload's reason is shown by `status`, `outpost-agent reload` and the
    /// audit record: it names the fields or the file, and how to go on.
    #[test]
    fn a_refused_reload_says_what_and_how_to_go_on() {
        let e = ReloadRefusal::RestartOnly { fields: vec!["state_dir", "proxy"] };
        assert_eq!(
            e.to_string(),
            "state_dir, proxy changed, which applies only at a restart (systemctl restart outpost-agent)"
        );
        assert_eq!(ReloadRefusal::NotUtf8 { path: "agent.yaml".into() }.to_string(), "agent.yaml: not valid UTF-8");
        let missing = std::path::Path::new("/nonexistent/outpost/agent.yaml");
        let source = outpost_common::fsutil::read_capped_file(missing, 1024).expect_err("missing");
        let cause = source.to_string();
        let e = ReloadRefusal::Read { path: "agent.yaml".into(), source };
        assert_eq!(e.to_string(), format!("agent.yaml: {cause}"));
        assert!(std::error::Error::source(&e).is_some(), "the file error is kept as the source");
    }
}
