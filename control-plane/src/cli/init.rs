//! `init`: a new data dir, and what to do next.

#[allow(clippy::wildcard_imports)]
use crate::*;

/// `init`: makes the data dir and prints what was made, once, with the next steps.
pub(crate) async fn init(
    data_dir: PathBuf,
    hostname: String,
    sans: Vec<String>,
    store: Option<String>,
    store_password_file: Option<PathBuf>,
) -> Result<(), Failure> {
    let mut cfg = ControlPlaneConfig::with_data_dir(data_dir.clone());
    if let Some(url) = store {
        cfg.store = outpost_control_plane::config::StoreUrl::new(url);
    }
    cfg.store_password_file = store_password_file;
    cfg.check("--store").map_err(|e| Failure::Usage(e.to_string()))?;
    let out = app::init(&data_dir, &hostname, &sans, cfg.pg_options().as_ref()).await.map_err(|e| match e {
        app::AppError::DataDirExists(_) | app::AppError::Usage(_) => Failure::Usage(e.to_string()),
        other => Failure::Other(anyhow::Error::new(other).context("init failed")),
    })?;
    println!("Initialised {}.", data_dir.display());
    println!("CA pin (sha256):      {}", out.ca_sha256);
    println!("Job-signing key id:   {}", out.signing_key_id);
    println!(
        "Admin API token of user \"admin\", expires {} (shown once; only its hash is stored):",
        fmt_time(out.admin_token_expires_at)
    );
    println!("{}", out.admin_token.as_str());
    println!(
        "Console password of user \"admin\" (shown once; only its hash is stored; change it with \
         `user password admin`):"
    );
    println!("{}", out.admin_password.as_str());
    // The commands of the next steps: with no flag when the config file they read
    // by default names this data dir (a packaged install), else --data-dir (and the
    // store, which --data-dir alone would take to be SQLite).
    let packaged = outpost_control_plane::config::default_config_path();
    let same = |a: &std::path::Path, b: &std::path::Path| {
        a.canonicalize().ok().zip(b.canonicalize().ok()).is_some_and(|(a, b)| a == b)
    };
    // The same data dir and the same store: the file then leads to this one.
    let by_default = ControlPlaneConfig::load(&packaged).ok().filter(|c| {
        same(&c.data_dir, &data_dir)
            && c.store.postgres() == cfg.store.postgres()
            && c.store_password_file == cfg.store_password_file
    });
    let (target, listen) = if let Some(c) = &by_default {
        (String::new(), c.clone())
    } else {
        let mut t = format!(" --data-dir {}", shell_word(&data_dir.display().to_string()));
        if let Some(url) = cfg.store.postgres() {
            // Never the password a URL may hold (it would be on screen and, once
            // run, in the process list): it belongs in store_password_file.
            let shown = outpost_control_plane::store::postgres::redact_url(url);
            t.push_str(&format!(" --store {}", shell_word(&shown)));
        }
        (t, cfg.clone())
    };
    let console =
        format!("https://{}/console/", outpost_control_plane::config::host_port(&hostname, listen.api_listen.port()));
    println!();
    if cfg.store.postgres().is_some_and(|u| outpost_control_plane::store::postgres::redact_url(u) != u) {
        println!(
            "(The store URL's password is shown as ***: give the commands below the real URL in \
             $OUTPOST_STORE, or put the password in a file named by store_password_file in \
             control-plane.yaml.)"
        );
    }
    println!("Next steps:");
    println!(
        "  1. Start the control plane (API and console on {}, agents on {}):",
        listen.api_listen, listen.agent_listen
    );
    if by_default.is_some() {
        println!("       sudo systemctl enable --now outpost-control-plane");
        println!(
            "     (its commands read {}; `outpost-control-plane serve` runs it in the foreground)",
            packaged.display()
        );
    } else {
        println!("       outpost-control-plane serve{target}");
    }
    println!("     then sign in as admin, with the password above, at {console}");
    println!("  2. Choose your own admin password (asked for, not echoed):");
    println!("       outpost-control-plane user password admin{target}");
    println!("  3. Enrol an agent: create a one-time token and give it to `outpost-agent enroll`:");
    println!("       outpost-control-plane enrollment-token create{target} --agent NAME");
    Ok(())
}
