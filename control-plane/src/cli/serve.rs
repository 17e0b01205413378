//! `serve`: the control plane's listeners until a signal stops it.

#[allow(clippy::wildcard_imports)]
use crate::*;

pub(crate) async fn serve(mut cfg: ControlPlaneConfig) -> anyhow::Result<()> {
    // Bound first, so that a listener given port 0 is told (and advertised to agents) with
    // the port the system chose.
    let listeners = outpost_control_plane::net::server::bind(cfg.agent_listen, cfg.api_listen).await?;
    cfg.agent_listen = listeners.agent.local_addr()?;
    cfg.api_listen = listeners.api.local_addr()?;
    let app = app::open(cfg).await.context("cannot start the control plane")?;
    let store = match &app.store {
        outpost_control_plane::store::backend::Backend::Postgres(pg) => {
            pg.describe().await.map_err(anyhow::Error::new)?
        }
        outpost_control_plane::store::backend::Backend::Sqlite(_) => "SQLite (embedded)".to_owned(),
    };
    app.start_replica_wakeups();
    let api = listeners.api.local_addr()?;
    // The server certificate names the hostname given to `init`: that is the address a
    // browser must use.
    let console =
        format!("https://{}/console/", outpost_control_plane::config::host_port(&app.meta.hostname, api.port()));
    tracing::info!(
        agent_listen = %listeners.agent.local_addr()?,
        api_listen = %api,
        store = %store,
        console = %console,
        "Control plane listening."
    );
    let listening = listeners.agent.local_addr()?;
    let agent = app.cfg.advertised_agent_address(&app.meta.hostname);
    println!("Console: {console} (API listening on {api}; agents connect to {agent}, listening on {listening})");
    let shutdown = app.shutdown.clone();
    tokio::spawn(async move {
        outpost_common::process::shutdown_signal().await;
        tracing::info!("Shutting down.");
        outpost_common::sdnotify::stopping("Stopping: open requests finish");
        shutdown.cancel();
    });
    if let Some(every) = outpost_common::sdnotify::watchdog_interval() {
        tokio::spawn(outpost_control_plane::net::server::feed_watchdog(std::sync::Arc::clone(&app), every));
    }
    outpost_common::sdnotify::ready(&format!(
        "Serving the console at {console}; agents connect to {agent}; store: {store}"
    ));
    outpost_control_plane::net::server::serve(std::sync::Arc::clone(&app), listeners).await?;
    if let Err(e) = app.store.close().await {
        tracing::warn!(error = %e, "The database's write-ahead log was not merged at stop; the next start does it.");
    }
    Ok(())
}
