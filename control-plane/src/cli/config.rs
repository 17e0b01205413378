//! `config …`: check a control-plane.yaml, print its JSON schema.

#[allow(clippy::wildcard_imports)]
use crate::*;

pub(crate) fn config_cmd(cmd: ConfigCommand) -> Result<(), Failure> {
    match cmd {
        ConfigCommand::Check { path, config } => {
            let config = path.or(config).unwrap_or_else(outpost_control_plane::config::default_config_path);
            let cfg = ControlPlaneConfig::load(&config).map_err(|e| Failure::Usage(e.to_string()))?;
            let unreadable = cfg.unreadable_files();
            if !unreadable.is_empty() {
                let shown = config.display();
                return Err(Failure::Usage(
                    unreadable.iter().map(|m| format!("{shown}: {m}")).collect::<Vec<_>>().join("\nerror: "),
                ));
            }
            println!("{}: OK", config.display());
            Ok(())
        }
        ConfigCommand::Schema => {
            println!("{}", outpost_control_plane::config::json_schema());
            Ok(())
        }
    }
}
