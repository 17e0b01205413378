//! The agent's packages as an operator installs them, on this machine, as root: the
//! `.deb` built by `scripts/package.sh` (cargo-deb, lintian-checked) is installed with
//! `dpkg -i`, checked for its user, files, owners and modes and its systemd unit
//! (`systemd-analyze verify` and `security`), enrolled and run as the `outpost` user with
//! the master key from its systemd credential, upgraded in place to a newer version
//! (config edit, vault, cache key and audit log survive; the agent comes back and answers
//! from its cache), removed (config and state kept) and purged (gone). The `.rpm` is
//! built, rpmlint-checked and inspected with `rpm -qp`.
//!
//! Both tests change the machine (a package, a system user), so they run one at a time.

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, ensure, Context as _, Result};

static MACHINE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn sh(program: &str, args: &[&str], stdin: Option<&str>) -> Result<(i32, String, String)> {
    outpost_e2e::run_cmd(Path::new(program), args, stdin)
}

/// Runs and fails unless it exits 0; returns stdout + stderr.
fn ok(program: &str, args: &[&str], stdin: Option<&str>) -> Result<String> {
    let (code, out, err) = sh(program, args, stdin)?;
    ensure!(code == 0, "{program} {args:?} exited {code}:\n{out}\n{err}");
    Ok(format!("{out}{err}"))
}

fn require_root_and_tools(tools: &[&str]) -> Result<()> {
    let (_, uid, _) = sh("id", &["-u"], None)?;
    if uid.trim() != "0" {
        bail!("the package tests install packages and must run as root (CI does; run scripts/test.sh as root)");
    }
    for t in tools {
        let (code, _, _) = sh("sh", &["-c", &format!("command -v {t}")], None)?;
        ensure!(code == 0, "{t} is required by the package tests: run .ci/run (it installs lintian, rpmlint, rpm, cargo-deb, cargo-generate-rpm)");
    }
    Ok(())
}

/// `scripts/package.sh` with the test build's binaries; returns the package built.
fn package(args: &[&str]) -> Result<PathBuf> {
    let script = repo().join("scripts/package.sh");
    let mut all = vec!["--profile", "dev", "--agent-only"];
    all.extend_from_slice(args);
    let (code, out, err) = outpost_e2e::run_cmd(&script, &all, None)?;
    ensure!(code == 0, "package.sh {all:?} exited {code}:\n{err}");
    let last = out.lines().last().context("package.sh printed no package")?;
    Ok(repo().join(last))
}

fn mode_owner(path: &str) -> Result<(u32, String, String)> {
    let m = std::fs::metadata(path).with_context(|| path.to_owned())?;
    let name = |id: u32, db: &str| -> Result<String> {
        let (_, out, _) = sh("getent", &[db, &id.to_string()], None)?;
        Ok(out.split(':').next().unwrap_or_default().to_owned())
    };
    Ok((m.permissions().mode() & 0o7777, name(m.uid(), "passwd")?, name(m.gid(), "group")?))
}

fn sha256(path: &str) -> Result<String> {
    Ok(outpost_protocol::encoding::sha256_hex(&std::fs::read(path).with_context(|| path.to_owned())?))
}

fn purge_leftovers() -> Result<()> {
    let (code, _, _) = sh("dpkg-query", &["-W", "outpost-agent"], None)?;
    if code == 0 {
        ok("dpkg", &["--purge", "outpost-agent"], None)?;
    }
    Ok(())
}

/// `outpost-agent run` as systemd runs it: as `outpost`, with the master key decrypted
/// from its credential into a directory only that user reads ($CREDENTIALS_DIRECTORY).
struct Service {
    process: outpost_e2e::Process,
}

impl Service {
    fn start(root: &Path, tag: &str) -> Result<Self> {
        let creds = root.join(format!("credentials-{tag}"));
        std::fs::create_dir(&creds)?;
        let key = creds.join("outpost-master-key");
        ok(
            "systemd-creds",
            &[
                "decrypt",
                "--name=outpost-master-key",
                "/etc/outpost/credentials/outpost-master-key",
                key.to_str().context("path")?,
            ],
            None,
        )?;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o400))?;
        ok("chown", &["-R", "outpost:outpost", creds.to_str().context("path")?], None)?;
        std::fs::set_permissions(&creds, std::fs::Permissions::from_mode(0o500))?;
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o711))?;
        let args: Vec<String> =
            ["--reuid=outpost", "--regid=outpost", "--init-groups", "/usr/bin/outpost-agent", "run"]
                .map(str::to_owned)
                .to_vec();
        let creds_env = creds.display().to_string();
        let process = outpost_e2e::Process::spawn_with_env(
            Path::new("/usr/bin/setpriv"),
            &args,
            &root.join(format!("agent-{tag}.log")),
            &[("CREDENTIALS_DIRECTORY", &creds_env), ("OUTPOST_AGENT_CONFIG", "/etc/outpost/agent.yaml")],
        )?;
        process.wait_for_log("Control plane reachable", Duration::from_secs(30))?;
        Ok(Self { process })
    }

    fn stop(mut self) -> Result<()> {
        let status = self.process.terminate(Duration::from_secs(40))?;
        ensure!(status.success(), "the agent exited {status}");
        Ok(())
    }
}

fn job() -> serde_json::Value {
    serde_json::json!({
        "agent": "pkg-agent", "connection": "sample",
        "sql": "SELECT region, SUM(amount) AS total FROM orders GROUP BY region ORDER BY region",
        "render": {"kind": "bar", "x": "region", "y": ["total"]},
        "cache": {"max_age_secs": 3600}
    })
}

/// Runs the job; returns its audit record's cache field (`hit` or `miss`).
async fn run_job(cp: &outpost_e2e::ControlPlane) -> Result<String> {
    let id = cp.dispatch(job()).await?;
    let (status, body) = cp.wait_result(&id).await?;
    ensure!(status == 200, "job {id}: {status} {body}");
    let log = std::fs::read_to_string("/var/lib/outpost/audit.log")?;
    let rec = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|r| r["job_id"] == id.as_str())
        .with_context(|| format!("no audit record of {id}"))?;
    Ok(rec["cache"].as_str().unwrap_or_default().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_deb_installs_upgrades_in_place_keeps_state_on_remove_and_purges() -> Result<()> {
    let _machine = MACHINE.lock().await;
    require_root_and_tools(&["dpkg", "lintian", "systemd-analyze", "systemd-creds", "setpriv"])?;
    purge_leftovers()?;
    let old = package(&["--only", "deb", "--version", "0.1.0~test1"])?; // lintian: no errors, or this fails
    let new = package(&["--only", "deb", "--version", "0.1.0~test2", "--no-lint"])?;

    let installed = ok("dpkg", &["-i", old.to_str().context("path")?], None)?;
    assert!(installed.contains("will not start until enrolled"), "post-install message: {installed}");
    assert!(installed.contains("sudo -u outpost outpost-agent enroll --token -"), "{installed}");
    let passwd = ok("getent", &["passwd", "outpost"], None)?;
    let fields: Vec<&str> = passwd.trim().split(':').collect();
    assert_eq!((fields[5], fields[6]), ("/var/lib/outpost", "/usr/sbin/nologin"), "{passwd}");
    ok("getent", &["group", "outpost"], None)?;
    assert_eq!(mode_owner("/usr/bin/outpost-agent")?, (0o755, "root".into(), "root".into()));
    // Shared with the control plane's package: each file keeps its own mode.
    assert_eq!(mode_owner("/etc/outpost")?, (0o755, "root".into(), "root".into()));
    assert_eq!(mode_owner("/etc/outpost/agent.yaml")?, (0o640, "root".into(), "outpost".into()));
    assert_eq!(mode_owner("/var/lib/outpost")?, (0o700, "outpost".into(), "outpost".into()));
    assert_eq!(mode_owner("/etc/outpost/credentials/outpost-master-key")?, (0o600, "root".into(), "root".into()));
    assert_eq!(mode_owner("/usr/lib/systemd/system/outpost-agent.service")?.0, 0o644);
    assert!(Path::new("/usr/share/man/man1/outpost-agent.1.gz").exists());
    assert!(Path::new("/usr/share/outpost/agent.schema.json").exists());
    let conffiles = ok("dpkg-query", &["-W", "-f", "${Conffiles}", "outpost-agent"], None)?;
    assert!(conffiles.contains("/etc/outpost/agent.yaml"), "{conffiles}");
    let packaged = std::fs::read_to_string("/etc/outpost/agent.yaml")?;
    assert!(packaged.contains("  master_key: systemd\n"), "the packaged config takes the key from systemd only");
    let version = ok("runuser", &["-u", "outpost", "--", "outpost-agent", "--version"], None)?;
    assert_eq!(version.trim(), format!("outpost-agent {}", env!("CARGO_PKG_VERSION")));
    ok("runuser", &["-u", "outpost", "--", "outpost-agent", "config", "check"], None)?;
    ok("systemd-analyze", &["verify", "--man=no", "/usr/lib/systemd/system/outpost-agent.service"], None)?;
    let security =
        ok("systemd-analyze", &["security", "--offline=true", "/usr/lib/systemd/system/outpost-agent.service"], None)?;
    let score: f64 = security
        .lines()
        .find_map(|l| l.split("outpost-agent.service: ").nth(1)?.split(' ').next()?.parse().ok())
        .context("no overall exposure level")?;
    assert!(score <= 2.0, "systemd-analyze security rates the unit {score}:\n{security}");

    // Enrol and run as the service would; the first job fills the cache.
    let root = tempfile::tempdir()?;
    let mut cp = outpost_e2e::ControlPlane::init(root.path())?;
    cp.start()?;
    let token = cp.enrolment_token("pkg-agent").await?;
    ok("runuser", &["-u", "outpost", "--", "outpost-agent", "enroll", "--token", "-"], Some(&token))?;
    let service = Service::start(root.path(), "old")?;
    let first = run_job(&cp).await?;
    assert_eq!(first, "miss");
    service.stop()?;
    let mut edited = std::fs::read_to_string("/etc/outpost/agent.yaml")?;
    edited = edited.replace("  max_concurrent_jobs: 4\n", "  max_concurrent_jobs: 3 # edited by the operator\n");
    ensure!(edited.contains("edited by the operator"), "the packaged config has no max_concurrent_jobs: 4 line");
    std::fs::write("/etc/outpost/agent.yaml", &edited)?;
    let vault = sha256("/var/lib/outpost/vault.json")?;
    let credential = sha256("/etc/outpost/credentials/outpost-master-key")?;
    let audit_before = std::fs::read_to_string("/var/lib/outpost/audit.log")?;

    // Upgrade in place.
    ok("dpkg", &["-i", new.to_str().context("path")?], None)?;
    let status = ok("dpkg-query", &["-W", "-f", "${Version}", "outpost-agent"], None)?;
    assert_eq!(status, "0.1.0~test2");
    assert_eq!(std::fs::read_to_string("/etc/outpost/agent.yaml")?, edited, "the operator's edit survives");
    assert!(!Path::new("/etc/outpost/agent.yaml.dpkg-dist").exists());
    assert_eq!(mode_owner("/etc/outpost/agent.yaml")?, (0o640, "root".into(), "outpost".into()));
    assert_eq!(sha256("/var/lib/outpost/vault.json")?, vault, "the vault survives");
    assert_eq!(sha256("/etc/outpost/credentials/outpost-master-key")?, credential, "the master key survives");
    let service = Service::start(root.path(), "new")?;
    let again = run_job(&cp).await?;
    assert_eq!(again, "hit", "the cache and its key survive the upgrade");
    service.stop()?;
    let audit_after = std::fs::read_to_string("/var/lib/outpost/audit.log")?;
    assert!(audit_after.starts_with(&audit_before) && audit_after.len() > audit_before.len(), "the audit log survives");
    let verify = ok("runuser", &["-u", "outpost", "--", "outpost-agent", "audit", "verify"], None)?;
    assert!(verify.contains("OK"), "{verify}");

    // Remove keeps config and state; purge deletes them.
    ok("dpkg", &["--remove", "outpost-agent"], None)?;
    assert!(!Path::new("/usr/bin/outpost-agent").exists());
    assert_eq!(std::fs::read_to_string("/etc/outpost/agent.yaml")?, edited);
    assert!(Path::new("/var/lib/outpost/vault.json").exists() && Path::new("/var/lib/outpost/agent.key").exists());
    ok("dpkg", &["--purge", "outpost-agent"], None)?;
    for gone in ["/etc/outpost", "/var/lib/outpost", "/usr/lib/systemd/system/outpost-agent.service"] {
        assert!(!Path::new(gone).exists(), "{gone} is left after purge");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_rpm_passes_rpmlint_and_carries_its_config_scripts_and_unit() -> Result<()> {
    let _machine = MACHINE.lock().await;
    require_root_and_tools(&["rpm", "rpmlint"])?;
    let rpm = package(&["--only", "rpm", "--version", "0.1.0"])?; // rpmlint: no errors, or this fails
    let rpm = rpm.to_str().context("path")?;
    let files = ok("rpm", &["-qlvp", rpm], None)?;
    let line = |path: &str| files.lines().find(|l| l.ends_with(path)).map(str::to_owned).unwrap_or_default();
    assert!(line(" /etc/outpost/agent.yaml").starts_with("-rw-r-----"), "{files}");
    assert!(
        line(" /etc/outpost/agent.yaml").contains(" root ") && line(" /etc/outpost/agent.yaml").contains(" outpost "),
        "{files}"
    );
    assert!(line(" /usr/bin/outpost-agent").starts_with("-rwxr-xr-x"), "{files}");
    assert!(!line(" /usr/lib/systemd/system/outpost-agent.service").is_empty(), "{files}");
    let config = ok("rpm", &["-qp", "--configfiles", rpm], None)?;
    assert!(config.contains("/etc/outpost/agent.yaml"), "{config}");
    let scripts = ok("rpm", &["-qp", "--scripts", rpm], None)?;
    for want in ["useradd -r -g outpost", "systemd-creds encrypt", "disable --now outpost-agent", "try-restart"] {
        assert!(scripts.contains(want), "rpm scripts lack {want:?}:\n{scripts}");
    }
    Ok(())
}
