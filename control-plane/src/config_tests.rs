//! Tests of control-plane.yaml parsing and checks ([`super`]).

use super::*;

fn parse(oidc: &str) -> Result<ControlPlaneConfig, String> {
    let text = format!("data_dir: /var/lib/outpost-cp\noidc:\n{oidc}");
    let cfg: ControlPlaneConfig = yamlcfg::parse_str("cp.yaml", &text).map_err(|e| e.to_string())?;
    cfg.check("cp.yaml").map_err(|e| e.to_string())?;
    Ok(cfg)
}

const GOOD: &str = "  issuer: https://idp.example.com\n  client_id: outpost\n  client_secret: s3cret\n  \
                    redirect_uri: https://outpost.example.com/console/oidc/callback\n";

#[test]
fn single_sign_on_settings_are_checked_and_the_secret_is_redacted() {
    let cfg = parse(GOOD).expect("valid");
    let o = cfg.oidc.expect("oidc");
    assert_eq!((o.map_by, o.default_role), (OidcMapBy::Email, None));
    assert!(!format!("{o:?}").contains("s3cret"), "the secret is redacted in Debug");
    for (bad, field) in [
        (GOOD.replace("https://idp", "http://idp"), "oidc.issuer"),
        (GOOD.replace("/console/oidc/callback", "/callback"), "oidc.redirect_uri"),
        (format!("{GOOD}  client_secret_file: /etc/x\n"), "oidc.client_secret"),
        (GOOD.replace("  client_secret: s3cret\n", ""), "oidc.client_secret"),
        (format!("{GOOD}  scopes: [\"a b\"]\n"), "oidc.scopes"),
    ] {
        let e = parse(&bad).expect_err(field);
        assert!(e.contains(field), "{field}: {e}");
    }
    let e = parse(&format!("{GOOD}  default_role: owner\n")).expect_err("unknown role");
    assert!(e.contains("cp.yaml") && e.contains("owner"), "{e}");
    let e = parse(&format!("{GOOD}  clientid: x\n")).expect_err("unknown field");
    assert!(e.contains("clientid") && e.contains("line"), "{e}");
}

fn parse_store(extra: &str) -> Result<ControlPlaneConfig, String> {
    let text = format!("data_dir: /var/lib/outpost-cp\n{extra}");
    let cfg: ControlPlaneConfig = yamlcfg::parse_str("cp.yaml", &text).map_err(|e| e.to_string())?;
    cfg.check("cp.yaml").map_err(|e| e.to_string())?;
    Ok(cfg)
}

#[test]
fn the_store_is_sqlite_by_default_or_a_checked_postgres_url_whose_password_is_redacted() {
    let cfg = parse_store("").expect("default");
    assert!(cfg.pg_options().is_none());
    let cfg = parse_store("store: postgres://outpost:hunter2@db.example.com:5432/outpost\n").expect("valid");
    let pg = cfg.pg_options().expect("postgres");
    assert_eq!(pg.max_connections, DEFAULT_STORE_CONNECTIONS);
    for shown in [format!("{cfg:?}"), format!("{pg:?}"), cfg.store.to_string()] {
        assert!(!shown.contains("hunter2"), "the password is redacted: {shown}");
        assert!(shown.contains("outpost:***@db.example.com"), "{shown}");
    }
    for (bad, field, why) in [
        ("store: mysql://db/x\n", "store", "postgres://"),
        ("store: postgres://db.example.com\n", "store", "no database name"),
        ("store: postgres://db/x?sslmode=sometimes\n", "store", "sslmode"),
        ("store_password_file: /etc/outpost/pg\n", "store_password_file", "sqlite"),
        ("store: postgres://db/x\nstore_max_connections: 1\n", "store_max_connections", "between 2 and 256"),
    ] {
        let e = parse_store(bad).expect_err(bad);
        assert!(e.contains(field) && e.contains(why), "{bad}: {e}");
    }
}

#[test]
fn config_check_names_each_unreadable_file_and_never_opens_a_fifo() {
    let dir = tempfile::tempdir().expect("temp dir");
    let fifo = dir.path().join("password");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status().expect("mkfifo runs");
    assert!(made.success());
    let text = format!(
        "data_dir: /tmp/x\nstore: postgres://a@b/c\nstore_password_file: {}\nstore_ca_file: {}\n",
        fifo.display(),
        dir.path().join("missing.pem").display()
    );
    let cfg: ControlPlaneConfig = serde_saphyr::from_str(&text).expect("parses");
    let problems = cfg.unreadable_files();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems[0].starts_with("store_password_file: ") && problems[0].ends_with("not a regular file"));
    assert!(problems[1].starts_with("store_ca_file: ") && problems[1].contains("No such file"));
}

#[test]
fn embed_frame_ancestors_are_origins_and_nothing_else() {
    let ok = parse_store("embed:\n  frame_ancestors: [\"https://app.example.com\", \"https://*.example.org:8443\", \"http://127.0.0.1:9\"]\n")
        .expect("origins");
    assert_eq!(ok.embed.frame_ancestors.len(), 3);
    assert!(parse_store("").expect("default").embed.frame_ancestors.is_empty(), "no framing by default");
    // Anything that could end the directive, add another or widen it is refused, by index.
    for (bad, i) in [
        ("[\"*\"]", 0),
        ("[\"https://a.example; script-src *\"]", 0),
        ("[\"https://ok.example\", \"'self' https://x\"]", 1),
        ("[\"app.example.com\"]", 0),
        ("[\"https://a.example/path\"]", 0),
        ("[\"javascript://x\"]", 0),
        ("[\"https://\"]", 0),
        ("[\"https://a.example:99999x\"]", 0),
    ] {
        let e = parse_store(&format!("embed:\n  frame_ancestors: {bad}\n")).expect_err(bad);
        assert!(e.contains(&format!("embed.frame_ancestors[{i}]")), "{bad}: {e}");
    }
}

#[test]
fn schedules_have_defaults_and_checked_bounds() {
    let d = parse_store("").expect("default");
    assert_eq!((d.schedules.min_interval_secs, d.schedules.max_queued_per_agent), (300, 4));
    let set = parse_store("schedules:\n  min_interval_secs: 60\n  max_queued_per_agent: 10\n").expect("set");
    assert_eq!((set.schedules.min_interval_secs, set.schedules.max_queued_per_agent), (60, 10));
    let e = parse_store("schedules:\n  min_interval_secs: 59\n").expect_err("too short");
    assert!(e.contains("schedules.min_interval_secs") && e.contains("between 60 and 86400"), "{e}");
    let e = parse_store("schedules:\n  max_queued_per_agent: 0\n").expect_err("none");
    assert!(e.contains("schedules.max_queued_per_agent") && e.contains("between 1 and 1000"), "{e}");
    assert!(parse_store("schedules:\n  every: 5\n").is_err(), "unknown keys are refused");
}

#[test]
fn kept_filter_sets_per_tile_have_a_default_and_checked_bounds() {
    let d = parse_store("").expect("defaults");
    assert_eq!(d.results.keep_variants_per_tile, DEFAULT_KEEP_VARIANTS_PER_TILE);
    let set = parse_store("results:\n  keep_variants_per_tile: 3\n").expect("set");
    assert_eq!(set.results.keep_variants_per_tile, 3);
    for bad in ["0", "10001"] {
        let e = parse_store(&format!("results:\n  keep_variants_per_tile: {bad}\n")).expect_err(bad);
        assert!(e.contains("results.keep_variants_per_tile") && e.contains("between 1 and 10000"), "{e}");
    }
}
