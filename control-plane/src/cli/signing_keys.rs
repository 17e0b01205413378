//! `signing-key …`: the job-signing key ring.

#[allow(clippy::wildcard_imports)]
use crate::*;

pub(crate) async fn signing_key(cmd: SigningKeyCommand) -> Result<(), Failure> {
    use outpost_control_plane::app::key_ring::{self, KeyRingError};
    let refused = |e: KeyRingError| match e {
        KeyRingError::Refused(m) => Failure::Usage(m),
        other => Failure::Other(other.into()),
    };
    let now = outpost_control_plane::clock::Clock::system().now();
    match cmd {
        SigningKeyCommand::List { target, json } => {
            let app = app::open(target.load()?).await.context("cannot open the control plane's data dir")?;
            let (keys, version) =
                outpost_control_plane::store::Store::signing_keys(&app.store).await.map_err(anyhow::Error::new)?;
            if json {
                let keys: Vec<_> = keys
                    .iter()
                    .map(|k| {
                        serde_json::json!({
                            "key_id": k.key_id, "public_key": k.public_key, "status": k.status,
                            "created_at": k.created_at, "activated_at": k.activated_at, "retired_at": k.retired_at,
                        })
                    })
                    .collect();
                println!("{}", serde_json::json!({ "key_set_version": version, "keys": keys }));
                return Ok(());
            }
            println!("Key set version {version}.");
            println!("{:<26} {:<9} {:<26} {:<46}", "KEY ID", "STATUS", "CREATED", "PUBLIC KEY");
            for k in keys {
                println!("{:<26} {:<9} {:<26} {:<46}", k.key_id, k.status, fmt_time(k.created_at), k.public_key);
            }
            Ok(())
        }
        SigningKeyCommand::Rotate { target, stage } => {
            let cfg = target.load()?;
            let app = app::open(cfg).await.context("cannot open the control plane's data dir")?;
            let r = key_ring::rotate(&app.store, &app.cfg.data_dir, stage, now).await.map_err(refused)?;
            if stage {
                println!("Staged {} as the next job-signing key (key set version {}).", r.key.key_id, r.version);
                println!("It signs nothing until `signing-key rotate`. Public key, for agents that pin keys:");
                println!(
                    "  - key_id: {}
    public_key: {}",
                    r.key.key_id, r.key.public_key
                );
            } else {
                println!("{} now signs new jobs (key set version {}).", r.key.key_id, r.version);
                if let Some(old) = r.demoted {
                    println!("{old} is now `previous`: agents still accept it. Retire it once its jobs are done:");
                    println!("  outpost-control-plane signing-key retire {old}");
                }
            }
            Ok(())
        }
        SigningKeyCommand::Retire { target, key_id } => {
            let app = app::open(target.load()?).await.context("cannot open the control plane's data dir")?;
            let r = key_ring::retire(&app.store, &app.cfg.data_dir, &key_id, now).await.map_err(refused)?;
            println!(
                "{key_id} retired (key set version {}); {} undelivered job(s) re-signed with the active key.",
                r.version, r.resigned
            );
            Ok(())
        }
    }
}
