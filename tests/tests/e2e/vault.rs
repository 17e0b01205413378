//! The credentials vault through the real `outpost-agent credentials` commands.

use anyhow::Result;
use outpost_e2e::{files_under, Agent};

#[test]
fn credentials_are_stored_sealed_listed_without_values_and_refused_with_a_wrong_key() -> Result<()> {
    let root = tempfile::tempdir()?;
    let agent = Agent::new(root.path(), "edge-1", "")?;
    let canary = "pw-canary-7f3a9c";
    let (code, out, err) = agent.cli(&["credentials", "set", "warehouse"], Some(&format!("{canary}\n")), &[])?;
    assert_eq!(code, 0, "{out}{err}");
    assert!(err.contains("sealed with a key file"), "{err}");
    let (code, out, err) = agent.cli(&["credentials", "list"], None, &[])?;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("warehouse") && !out.contains(canary), "{out}");
    // No file in the state dir holds the secret in plaintext.
    for f in files_under(&agent.state_dir)? {
        let bytes = std::fs::read(&f)?;
        assert!(!bytes.windows(canary.len()).any(|w| w == canary.as_bytes()), "{} holds the secret", f.display());
    }

    // config check reads the vault's names (never its values, no master key needed): a
    // connection naming a stored credential passes, a misspelt one is named.
    let yaml = std::fs::read_to_string(&agent.config)?;
    anyhow::ensure!(yaml.contains("connections:\n"), "the harness config has a connections section: {yaml}");
    let with_conn = |cred: &str| {
        yaml.replacen(
            "connections:\n",
            &format!(
                "connections:\n  dw:\n    kind: postgres\n    host: db.internal\n    database: sales\n    \
                 user: ro\n    tls: disable\n    password_credential: {cred}\n"
            ),
            1,
        )
    };
    std::fs::write(&agent.config, with_conn("warehouse"))?;
    let (code, out, err) = agent.cli(&["config", "check"], None, &[])?;
    assert_eq!(code, 0, "{out}{err}");
    std::fs::write(&agent.config, with_conn("warehuose"))?;
    let (code, _, err) = agent.cli(&["config", "check"], None, &[])?;
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("connections.dw.password_credential: \"warehuose\" is not in the vault"), "{err}");
    std::fs::write(&agent.config, &yaml)?;

    // Another master key: a clear error, and the vault is left as it was.
    let vault = agent.state_dir.join("vault.json");
    let before = std::fs::read(&vault)?;
    std::fs::write(agent.state_dir.join("master.key"), [9u8; 32])?;
    let (code, _, err) = agent.cli(&["credentials", "set", "other"], Some("x\n"), &[])?;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("does not open") && err.contains("Nothing was changed"), "{err}");
    assert_eq!(std::fs::read(&vault)?, before);

    // A systemd credential (LoadCredential=) is preferred over the key file.
    let creds = root.path().join("creds");
    std::fs::create_dir(&creds)?;
    std::fs::write(creds.join("outpost-master-key"), "cd".repeat(32))?;
    let other = Agent::new(root.path(), "edge-2", "")?;
    let env = [("CREDENTIALS_DIRECTORY", creds.as_path())];
    let (code, _, err) = other.cli(&["credentials", "set", "db"], Some("s3cret\n"), &env)?;
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("sealed with a systemd key"), "{err}");
    assert!(!other.state_dir.join("master.key").exists());
    let (code, _, err) = other.cli(&["credentials", "remove", "db"], None, &env)?;
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = other.cli(&["credentials", "remove", "db"], None, &env)?;
    assert_eq!(code, 64, "removing twice names the problem: {err}");
    Ok(())
}
