//! The API's OpenAPI document: served at `/v1/openapi.json` as committed in
//! `docs/openapi.json`, and fuzzed by schemathesis (from PyPI) against the real control
//! plane over TLS: no 5xx, no status, content type or body outside the document.

use std::path::Path;
use std::process::Command;

use anyhow::{ensure, Context as _, Result};
use outpost_e2e::{Agent, ControlPlane};
use serde_json::json;

/// Runs schemathesis with the admin `token`, limited to operations `filter` selects.
fn schemathesis(cp: &ControlPlane, token: &str, filter: &[&str], report: &Path) -> Result<(bool, String)> {
    let url = format!("https://localhost:{}/v1/openapi.json", cp.api_addr.rsplit(':').next().unwrap_or_default());
    let ca = cp.data_dir.join("ca.crt");
    let mut cmd = Command::new("schemathesis");
    cmd.args(["run", &url, "--tls-verify"])
        .arg(&ca)
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
        ])
        .args(["--max-examples", "25", "--seed", "20261123", "--no-color", "--report", "junit", "--report-junit-path"])
        .arg(report)
        // `GET /v1/jobs/{id}/result?wait=N` is a long poll of up to 60 s by design (the
        // enrolled agent here never runs, so a job stays queued): the default 10 s read
        // timeout took that for a network error once the stateful phase reached a real job.
        .args(["--request-timeout", "65"])
        .args(filter)
        // Its cache (.schemathesis/) goes under target/, not into the source tree.
        .current_dir(report.parent().unwrap_or(Path::new(".")))
        .env("SCHEMATHESIS_HOOKS", "")
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy");
    let out = cmd
        .output()
        .context("schemathesis is not installed: run `pip install schemathesis` (scripts/test.sh says how)")?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    Ok((out.status.success(), text))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_served_document_is_the_committed_one_and_schemathesis_finds_no_5xx_or_schema_break() -> Result<()> {
    let root = tempfile::tempdir()?;
    let mut cp = ControlPlane::init(root.path())?;
    cp.start()?;
    let admin = cp.api()?;
    let served = admin.get("/v1/openapi.json").await?;
    ensure!(served.status == 200, "{}", served.text());
    let committed = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json"))?;
    assert_eq!(served.text(), committed, "docs/openapi.json differs from what the control plane serves");
    // Something to find: an enrolled agent, a share, a project.
    Agent::new(root.path(), "edge-1", "")?.enroll_with(&cp).await?;
    for (path, body) in [
        ("/v1/users", json!({ "name": "ed", "role": "editor", "password": "correct horse battery staple" })),
        ("/v1/shares", json!({ "agent": "edge-1", "connection": "sample", "user": "ed" })),
        ("/v1/groups", json!({ "name": "analysts" })),
    ] {
        let res = admin.post_json(path, &body).await?;
        ensure!(res.status == 201, "{path}: {}", res.text());
    }
    let reports = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/schemathesis");
    std::fs::create_dir_all(&reports)?;
    // Everything but the two operations that could take the run's own credential away
    // (revoking its token, disabling its user); those run last with a token of their own.
    let keep = ["--exclude-operation-id", "tokens.revoke", "--exclude-operation-id", "users.update"];
    let (ok, out) = schemathesis(&cp, &cp.admin_token, &keep, &reports.join("main.xml"))?;
    assert!(ok, "schemathesis found problems:\n{out}");
    assert!(out.contains("passed"), "{out}");
    let spare = cp.cli(&["token", "create", "--user", "admin", "--name", "fuzz"])?.trim().to_owned();
    let last = [
        "--include-operation-id",
        "tokens.revoke",
        "--include-operation-id",
        "users.update",
        "--phases",
        "coverage,fuzzing",
    ];
    let (ok, out) = schemathesis(&cp, &spare, &last, &reports.join("destructive.xml"))?;
    assert!(ok, "schemathesis found problems:\n{out}");
    // The control plane is still up and no request was answered 5xx.
    let audit = admin.get("/v1/audit?outcome=failed&limit=1000").await?;
    ensure!(audit.status == 200, "{}", audit.text());
    let events = audit.json()?["events"].as_array().cloned().unwrap_or_default();
    let server_errors: Vec<_> = events.iter().filter(|e| e["status"].as_u64().unwrap_or(0) >= 500).collect();
    assert!(server_errors.is_empty(), "5xx answers: {server_errors:?}");
    Ok(())
}
