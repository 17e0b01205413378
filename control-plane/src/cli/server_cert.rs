//! `server-cert rotate`: a new server certificate from the CA, for the names in meta.json.

#[allow(clippy::wildcard_imports)]
use crate::*;

pub(crate) fn server_cert(cmd: ServerCertCommand) -> Result<(), Failure> {
    let ServerCertCommand::Rotate { target, hostname, sans } = cmd;
    let cfg = target.load()?;
    let mut meta = app::load_meta(&cfg.data_dir).map_err(anyhow::Error::new)?;
    if let Some(h) = hostname {
        meta.hostname = h;
    }
    if !sans.is_empty() {
        app::check_extra_names(&sans).map_err(|e| Failure::Usage(e.to_string()))?;
        meta.extra_names = sans;
    }
    let ca = outpost_control_plane::crypto::pki::Ca::load(&cfg.data_dir).map_err(anyhow::Error::new)?;
    ca.rotate_server_cert(&cfg.data_dir, &meta.hostname, &meta.extra_names).map_err(anyhow::Error::new)?;
    app::write_meta(&cfg.data_dir, &meta).map_err(anyhow::Error::new)?;
    let names = std::iter::once(meta.hostname.as_str())
        .chain(meta.extra_names.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join(", ");
    println!("New server certificate for {names} written to {}; restart `serve` to use it.", cfg.data_dir.display());
    Ok(())
}
