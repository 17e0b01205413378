//! TLS from the agent to a real PostgreSQL server: a throw-away instance of the machine's
//! PostgreSQL (`initdb`, then `postgres` with `ssl=on`, run as the `postgres` user on a
//! free port, stopped when the test ends) with a certificate for `localhost` from a CA
//! the test makes. The connector must verify the chain against `ca_file` and the name
//! against `host`, and refuse everything else before a query is sent.
//!
//! The shared test server is left alone. The PostgreSQL binaries come from
//! `OUTPOST_TEST_PG_BINDIR` or `/usr/lib/postgresql/<version>/bin`; if they are missing
//! the test fails saying so (it never skips).

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result};
use outpost_agent::connectors::postgres::PostgresConnector;
use outpost_agent::connectors::{QueryError, QueryLimits, ServerSettings};
use outpost_agent::resultset::Value;

fn pg_bindir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("OUTPOST_TEST_PG_BINDIR") {
        return Ok(PathBuf::from(dir));
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .context("PostgreSQL server binaries not found in /usr/lib/postgresql: apt-get install postgresql, or set OUTPOST_TEST_PG_BINDIR")?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    found.sort();
    found.pop().context("no initdb under /usr/lib/postgresql/*/bin; set OUTPOST_TEST_PG_BINDIR")
}

/// A PostgreSQL instance of our own, killed on drop.
struct Instance {
    _process: outpost_e2e::Process,
    port: u16,
    _dir: tempfile::TempDir,
}

fn owner_ids(path: &Path) -> Result<(u32, u32)> {
    use std::os::unix::fs::MetadataExt as _;
    let m = std::fs::metadata(path)?;
    Ok((m.uid(), m.gid()))
}

fn start_instance(cert: &str, key: &str) -> Result<Instance> {
    let bindir = pg_bindir()?;
    // The instance runs as the owner of the server binaries' data: the `postgres` user.
    let (uid, gid) = owner_ids(Path::new("/var/lib/postgresql"))
        .context("/var/lib/postgresql (the postgres user's home) is missing")?;
    let dir = tempfile::Builder::new().prefix("outpost-pgtls").tempdir()?;
    std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
        .context("handing a temp dir to the postgres user needs root (CI and the dev machine run tests as root)")?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))?;
    let data = dir.path().join("data");
    let as_postgres = |program: &Path| {
        let mut c = std::process::Command::new("setpriv");
        c.args(["--reuid", &uid.to_string(), "--regid", &gid.to_string(), "--clear-groups", "--"]).arg(program);
        c
    };
    let out = as_postgres(&bindir.join("initdb"))
        .args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"])
        .arg(&data)
        .output()
        .context("initdb")?;
    anyhow::ensure!(out.status.success(), "initdb: {}", String::from_utf8_lossy(&out.stderr));
    for (name, pem, mode) in [("server.crt", cert, 0o644), ("server.key", key, 0o600)] {
        let p = data.join(name);
        std::fs::write(&p, pem)?;
        std::os::unix::fs::chown(&p, Some(uid), Some(gid))?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode))?;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let args: Vec<String> = [
        "--reuid",
        &uid.to_string(),
        "--regid",
        &gid.to_string(),
        "--clear-groups",
        "--",
        &bindir.join("postgres").display().to_string(),
        "-D",
        &data.display().to_string(),
        "-p",
        &port.to_string(),
        "-k",
        &dir.path().display().to_string(),
        "-c",
        "listen_addresses=127.0.0.1",
        "-c",
        "ssl=on",
        "-c",
        "ssl_cert_file=server.crt",
        "-c",
        "ssl_key_file=server.key",
        "-c",
        "fsync=off",
    ]
    .map(str::to_owned)
    .to_vec();
    let log = dir.path().join("postgres.log");
    let process = outpost_e2e::Process::spawn(Path::new("/usr/bin/setpriv"), &args, &log)?;
    process
        .wait_for_log("database system is ready to accept connections", Duration::from_secs(60))
        .with_context(|| std::fs::read_to_string(&log).unwrap_or_default())?;
    Ok(Instance { _process: process, port, _dir: dir })
}

fn connector(host: &str, port: u16, ca: &Path) -> PostgresConnector {
    PostgresConnector::new(ServerSettings {
        host: host.to_owned(),
        port,
        database: "postgres".into(),
        user: "postgres".into(),
        password: None,
        tls_ca: Some(ca.to_owned()),
        pool_size: 1,
        // This test's own server logs in as its superuser, `postgres`.
        allow_privileged: true,
    })
    .expect("connector")
}

fn limits() -> QueryLimits {
    QueryLimits::new(10, Duration::from_secs(10))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_to_postgres_verifies_the_chain_and_the_name() -> Result<()> {
    let (ca, cert, key) = outpost_e2e::certificates("outpost test database CA", &["localhost"])?;
    let pg = start_instance(&cert, &key)?;
    let files = tempfile::tempdir()?;
    let ca_file = files.path().join("db-ca.pem");
    std::fs::write(&ca_file, &ca)?;

    // The right CA and name: the session is encrypted, as the server itself reports.
    let ok = connector("localhost", pg.port, &ca_file);
    let rs =
        ok.query("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()".into(), vec![], limits()).await?;
    assert_eq!(rs.rows[0][0], Value::Bool(true), "{rs:?}");
    assert!(matches!(&rs.rows[0][1], Value::Text(v) if v.starts_with("TLSv1.")), "{rs:?}");

    // Another CA: refused during the handshake, nothing runs. (One with the same name
    // as the real CA is refused too, for its signature.)
    let (other_ca, _, _) = outpost_e2e::certificates("another CA", &["localhost"])?;
    let other_file = files.path().join("other-ca.pem");
    std::fs::write(&other_file, other_ca)?;
    let err = connector("localhost", pg.port, &other_file)
        .query("SELECT 1".into(), vec![], limits())
        .await
        .expect_err("a server certificate from another CA is refused");
    let msg = err.to_string();
    assert!(matches!(err, QueryError::Open { .. }), "{err:?}");
    assert!(msg.contains("invalid peer certificate: UnknownIssuer"), "{msg}");
    let (same_name, _, _) = outpost_e2e::certificates("outpost test database CA", &["localhost"])?;
    std::fs::write(&other_file, same_name)?;
    let err = connector("localhost", pg.port, &other_file)
        .query("SELECT 1".into(), vec![], limits())
        .await
        .expect_err("a CA of the same name but another key is refused");
    assert!(err.to_string().contains("invalid peer certificate: BadSignature"), "{err}");

    // The right CA, the wrong name (the certificate is for localhost only).
    let err = connector("127.0.0.1", pg.port, &ca_file)
        .query("SELECT 1".into(), vec![], limits())
        .await
        .expect_err("a certificate for another name is refused");
    let msg = err.to_string();
    assert!(matches!(err, QueryError::Open { .. }), "{err:?}");
    assert!(msg.contains("invalid peer certificate") && msg.contains("not valid for name"), "{msg}");
    Ok(())
}
