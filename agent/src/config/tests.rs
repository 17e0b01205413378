//! Unit tests of agent.yaml parsing: defaults, located errors, per-connection settings.

use super::*;

const GOOD: &str = "state_dir: /var/lib/outpost\nconnections:\n  sample:\n    kind: sqlite\n    path: sample.db\n    sample: true\nlimits:\n  max_rows: 500\n";

#[test]
fn example_config_parses_with_defaults() {
    let cfg = AgentConfig::parse("agent.yaml", GOOD).expect("valid config");
    assert_eq!(cfg.limits.max_rows.get(), 500);
    assert_eq!(cfg.limits.clock_skew_secs.get(), DEFAULT_CLOCK_SKEW_SECS);
    assert_eq!(cfg.audit_path(), PathBuf::from("/var/lib/outpost/audit.log"));
}

#[test]
fn out_of_range_limit_names_file_line_and_range() {
    let text = GOOD.replace("max_rows: 500", "max_rows: 0");
    let err = AgentConfig::parse("agent.yaml", &text).expect_err("0 rows");
    let msg = err.to_string();
    assert!(msg.contains("agent.yaml:8:"), "{msg}");
    assert!(msg.contains("must be between 1 and 1000000, got 0"), "{msg}");
}

#[test]
fn unknown_field_and_bad_connection_name_are_located() {
    let err = AgentConfig::parse("agent.yaml", &GOOD.replace("sample: true", "sampel: true")).expect_err("typo");
    assert!(err.to_string().contains("agent.yaml:6:"), "{err}");
    let err = AgentConfig::parse("agent.yaml", &GOOD.replace("  sample:\n", "  Sample DB:\n")).expect_err("name");
    assert!(err.to_string().contains("agent.yaml:3:"), "{err}");
    assert!(err.to_string().contains("connection name \"Sample DB\": must be 1 to "), "{err}");
}

#[test]
fn the_cache_cap_is_per_connection_and_zero_turns_it_off() {
    let cfg = AgentConfig::parse("agent.yaml", GOOD).expect("defaults");
    assert_eq!(cfg.cache_cap("sample"), DEFAULT_CACHE_MAX_AGE_SECS);
    assert!(cfg.cache_enabled());
    let text = GOOD.replace("sample: true\n", "sample: true\n    cache_max_age_secs: 0\n");
    let cfg = AgentConfig::parse("agent.yaml", &text).expect("off for sample");
    assert_eq!(cfg.cache_cap("sample"), 0);
    assert!(!cfg.cache_enabled());
    let text = format!("{GOOD}cache:\n  max_age_secs: 60\n  max_bytes: 0\n");
    let cfg = AgentConfig::parse("agent.yaml", &text).expect("no space");
    assert_eq!(cfg.cache_cap("sample"), 0, "no space means no cache");
    let err =
        AgentConfig::parse("agent.yaml", &format!("{GOOD}cache:\n  max_age_secs: 9999999\n")).expect_err("too long");
    assert!(err.to_string().contains("agent.yaml:10:"), "{err}");
}

#[test]
fn a_postgres_connection_needs_its_server_fields_and_refuses_sqlite_ones() {
    let pg = "state_dir: /s\nconnections:\n  wh:\n    kind: postgres\n    host: db\n    database: a\n    user: u\n";
    let cfg = AgentConfig::parse("agent.yaml", pg).expect("valid");
    let c = cfg.connections.values().next().expect("one");
    assert_eq!((c.tls, c.port, c.pool_size), (DbTls::VerifyFull, None, None), "secure defaults");
    assert!(!c.allow_privileged, "a privileged role is refused unless the connection allows it");
    let allowed = AgentConfig::parse("agent.yaml", &format!("{pg}    allow_privileged: true\n")).expect("allowed");
    assert!(allowed.connections.values().all(|c| c.allow_privileged));
    let err =
        AgentConfig::parse("agent.yaml", &GOOD.replace("sample: true", "sample: true\n    allow_privileged: true"))
            .expect_err("sqlite");
    assert!(err.to_string().contains("connections.sample.allow_privileged"), "{err}");
    let err = AgentConfig::parse("agent.yaml", &pg.replace("    user: u\n", "")).expect_err("no user");
    assert!(err.to_string().contains("connections.wh.user"), "{err}");
    let err = AgentConfig::parse("agent.yaml", &format!("{pg}    path: x.db\n")).expect_err("path");
    assert!(err.to_string().contains("connections.wh.path"), "{err}");
    let err = AgentConfig::parse("agent.yaml", &format!("{pg}    password: hunter2\n")).expect_err("secret");
    assert!(err.to_string().contains("agent.yaml:8:") && !err.to_string().contains("hunter2"), "{err}");
    let err = AgentConfig::parse("agent.yaml", &GOOD.replace("path: sample.db", "path: sample.db\n    host: db"))
        .expect_err("host");
    assert!(err.to_string().contains("connections.sample.host"), "{err}");
}

#[test]
fn trusted_key_id_must_match_the_key() {
    let text = format!(
        "{GOOD}trusted_keys:\n  - key_id: ed25519:0000000000000000\n    public_key: {}\n",
        outpost_protocol::encoding::b64_encode(&[1u8; 32])
    );
    let err = AgentConfig::parse("agent.yaml", &text).expect_err("mismatch");
    assert!(err.to_string().contains("trusted_keys[0]"), "{err}");
}

#[test]
fn the_state_dir_is_found_in_a_file_that_is_broken_elsewhere() {
    let dir = tempfile::tempdir().expect("temp dir");
    let at = |text: &str| {
        let p = dir.path().join("agent.yaml");
        std::fs::write(&p, text).expect("write");
        state_dir_of(&p)
    };
    assert_eq!(at("state_dir: /srv/a\nconnections: {}\n"), PathBuf::from("/srv/a"));
    assert_eq!(at("state_dir: /srv/b\nlimits:\n  max_rows: [oops\n"), PathBuf::from("/srv/b"));
    assert_eq!(at("state_dir: \"/srv/c\"\nnot yaml: : :\n  - [\n"), PathBuf::from("/srv/c"));
    assert_eq!(at("state_dir: /srv/d   # where the state is\nnot yaml: [\n"), PathBuf::from("/srv/d"));
    assert_eq!(at("connections: {}\n"), PathBuf::from(DEFAULT_STATE_DIR));
    assert_eq!(state_dir_of(&dir.path().join("missing.yaml")), PathBuf::from(DEFAULT_STATE_DIR));
}
