//! The agent's audit log as a security team checks it: the real agent writes a hash
//! chain with a checkpoint signed by its key when it stops; `outpost-agent audit verify`
//! passes on the untouched log and names the line of an edit, a removal or a reordering;
//! `audit tail` shows the jobs readably.

use anyhow::{Context as _, Result};

fn audit_cli(agent: &outpost_e2e::Agent, args: &[&str]) -> Result<(i32, String, String)> {
    let mut all = vec!["audit"];
    all.extend_from_slice(args);
    agent.cli(&all, None, &[])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_log_verifies_and_every_edit_is_named_by_line() -> Result<()> {
    let root = tempfile::tempdir()?;
    let (cp, mut agent) = outpost_e2e::start_pair(root.path(), "edge-1", "", &[]).await?;
    let mut ids = Vec::new();
    for region in ["north", "south", "east"] {
        let id = cp
            .dispatch(serde_json::json!({
                "agent": "edge-1", "connection": "sample",
                "sql": "SELECT COUNT(*) AS n FROM orders WHERE region = $1",
                "params": [{"type": "text", "value": region}],
                "render": {"kind": "scalar", "column": "n"}
            }))
            .await?;
        let (status, body) = cp.wait_result(&id).await?;
        assert_eq!(status, 200, "{body}");
        ids.push(id);
    }
    agent.stop()?;
    let log = agent.state_dir.join("audit.log");
    let good: Vec<String> = std::fs::read_to_string(&log)?.lines().map(str::to_owned).collect();
    let last: serde_json::Value = serde_json::from_str(good.last().context("empty log")?)?;
    assert_eq!((last["event"].as_str(), last["reason"].as_str()), (Some("checkpoint"), Some("shutdown")), "{last}");

    let (code, out, err) = audit_cli(&agent, &["verify"])?;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("OK: no record up to record ") && out.contains("was altered, removed, inserted or reordered"),
        "{out}"
    );
    // The log ends with the shutdown checkpoint: nothing after it is unproven.
    assert!(!out.contains("NOT PROVEN"), "{out}");
    assert!(out.contains("signed by the agent's current key"), "{out}");
    let (code, out, _) = audit_cli(&agent, &["verify", "--json"])?;
    assert_eq!(code, 0);
    let report: serde_json::Value = serde_json::from_str(&out)?;
    assert_eq!(report["records"], good.len() as u64);
    assert!(report["finding"].is_null(), "{report}");

    let (code, out, err) = audit_cli(&agent, &["tail", "-n", "4"])?;
    assert_eq!(code, 0, "{err}");
    let shown: Vec<&str> = out.lines().collect();
    assert_eq!(shown.len(), 4, "{out}");
    for (line, id) in shown.iter().zip(&ids) {
        assert!(line.contains(id.as_str()) && line.contains("accepted→succeeded"), "{line}");
    }
    assert!(shown[3].contains("signed checkpoint (shutdown)"), "{out}");

    // Who ran what: each job record names the signed requester, holds the SQL and the
    // parameters' types (not their values, by default).
    let jobs: Vec<serde_json::Value> = good
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|r| r["event"] == "job")
        .collect();
    assert_eq!(jobs.len(), 3);
    for j in &jobs {
        assert_eq!(j["requester"]["user"], "admin", "{j}");
        assert!(j["requester"]["via"].as_str().is_some_and(|v| v.starts_with("token:")), "{j}");
        assert_eq!(j["sql"], "SELECT COUNT(*) AS n FROM orders WHERE region = $1", "{j}");
        assert_eq!(j["param_types"], serde_json::json!(["text"]), "{j}");
        assert!(j.get("params").is_none() && !j.to_string().contains("north"), "{j}");
    }
    let (code, out, _) = audit_cli(&agent, &["tail", "--requester", "admin"])?;
    assert_eq!((code, out.lines().count()), (0, 3), "{out}");
    assert!(out.lines().all(|l| l.contains("by=admin")), "{out}");
    let (code, out, _) = audit_cli(&agent, &["tail", "--requester", "mallory"])?;
    assert_eq!((code, out.as_str()), (0, ""), "{out}");

    let job_line = good.iter().position(|l| l.contains(ids[1].as_str())).context("job line")?;
    let tampered = |lines: &[String]| -> Result<(i32, String)> {
        std::fs::write(&log, lines.iter().map(|l| format!("{l}\n")).collect::<String>())?;
        let (code, out, _) = audit_cli(&agent, &["verify"])?;
        Ok((code, out))
    };
    // Someone hides how many bytes left.
    let mut edited = good.clone();
    edited[job_line] = edited[job_line].replacen("\"bytes_sent\":", "\"bytes_sent\":1", 1);
    let (code, out) = tampered(&edited)?;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&format!("TAMPERED: line {}", job_line + 2)), "{out}");
    assert!(out.contains(&format!("line {} was altered", job_line + 1)), "{out}");
    // Someone removes the record.
    let mut removed = good.clone();
    removed.remove(job_line);
    let (code, out) = tampered(&removed)?;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&format!("TAMPERED: line {}", job_line + 1)) && out.contains("removed"), "{out}");
    std::fs::write(&log, good.iter().map(|l| format!("{l}\n")).collect::<String>())?;
    assert_eq!(audit_cli(&agent, &["verify"])?.0, 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_audit_reports_what_may_leave_and_flags_what_a_reviewer_must_fix() -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let root = tempfile::tempdir()?;
    let (_cp, agent) = outpost_e2e::enrolled_offline(root.path()).await?;
    let state = agent.state_dir.display().to_string();
    let enrolment: serde_json::Value = serde_json::from_slice(&std::fs::read(agent.state_dir.join("enrolment.json"))?)?;
    let write = |text: &str, mode: u32| -> Result<()> {
        std::fs::write(&agent.config, text)?;
        std::fs::set_permissions(&agent.config, std::fs::Permissions::from_mode(mode))?;
        Ok(())
    };
    let report = |args: &[&str]| -> Result<(i32, String)> {
        let mut all = vec!["config", "audit"];
        all.extend_from_slice(args);
        let (code, out, err) = agent.cli(&all, None, &[])?;
        Ok((code, format!("{out}{err}")))
    };

    // A careful config: charts only, masks, TLS verified, file 0640.
    write(
        &format!(
            "state_dir: {state}\nconnections:\n  warehouse:\n    kind: postgres\n    host: db.internal\n    \
             database: sales\n    user: outpost_ro\n    password_credential: warehouse\n\
             egress:\n  allow_raw_table: false\n  max_rows: 100\n  mask:\n    - column: '*email*'\n      with: hash\n"
        ),
        0o640,
    )?;
    let (code, out) = report(&["--json"])?;
    assert_eq!(code, 0, "{out}");
    let r: serde_json::Value = serde_json::from_str(&out)?;
    assert_eq!(r["control_plane"]["ca_sha256"], enrolment["ca_sha256"], "{r}");
    // What ties a signature to this config, this binary, this host and this moment.
    let digest = outpost_protocol::encoding::sha256_hex(&std::fs::read(&agent.config)?);
    assert_eq!(r["config_sha256"].as_str(), Some(digest.as_str()), "{r}");
    let exe = outpost_protocol::encoding::sha256_hex(&std::fs::read(outpost_e2e::bin("outpost-agent"))?);
    assert_eq!(r["agent_sha256"].as_str(), Some(exe.as_str()), "{r}");
    assert_eq!(r["agent_version"].as_str(), Some(env!("CARGO_PKG_VERSION")), "{r}");
    assert_eq!(
        r["host"].as_str().map(str::to_owned),
        std::fs::read_to_string("/proc/sys/kernel/hostname").ok().map(|h| h.trim().to_owned())
    );
    let made = chrono::DateTime::parse_from_rfc3339(r["generated_at"].as_str().unwrap_or_default())?;
    assert!((chrono::Utc::now().timestamp() - made.timestamp()).abs() < 60, "{r}");
    // A certificate issued seconds ago (24 h) is not a finding: it renews at 16 h.
    assert!(!r["findings"].as_array().context("findings")?.iter().any(|f| f["subject"] == "agent.crt"), "{r}");
    let (_, text) = report(&[])?;
    assert!(
        text.contains(&format!("(sha256:{digest})"))
            && text.contains("max size 4 MiB")
            && text.contains("at most 1 GiB"),
        "{text}"
    );
    assert_eq!(r["control_plane"]["agent"], "edge-1");
    let conn = &r["connections"][0];
    assert_eq!(
        (conn["name"].as_str(), conn["tls"].as_str(), conn["target"].as_str()),
        (Some("warehouse"), Some("verify_full"), Some("outpost_ro@db.internal:5432/sales"))
    );
    assert_eq!(
        (conn["egress"]["allow_raw_table"].as_bool(), conn["egress"]["max_rows"].as_u64()),
        (Some(false), Some(100))
    );
    assert_eq!(conn["egress"]["mask"], serde_json::json!(["*email* -> hash"]));
    let high: Vec<&serde_json::Value> =
        r["findings"].as_array().context("findings")?.iter().filter(|f| f["severity"] == "high").collect();
    assert!(high.is_empty(), "{high:?}");

    // A careless one: readable by all, TLS off across the network, a connection that
    // widens the policy, a connection URL with its password pasted as the database.
    write(
        &format!(
            "state_dir: {state}\nconnections:\n  warehouse:\n    kind: postgres\n    host: 10.1.2.3\n    \
             database: postgres://app:hunter2@10.1.2.3/sales\n    user: app\n    tls: disable\n    \
             egress:\n      max_rows: 5000\negress:\n  max_rows: 100\n"
        ),
        0o644,
    )?;
    let (code, out) = report(&[])?;
    assert_eq!(code, 1, "a HIGH finding fails the audit: {out}");
    for expected in [
        "[HIGH] connections.warehouse.tls: TLS is off to 10.1.2.3",
        "[MEDIUM] connections.warehouse.egress.max_rows: widens the top-level egress policy: 5000 instead of 100",
        "[MEDIUM] agent.yaml:",
        "is readable by every user",
        "a URL with a password in it",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
    }
    assert!(!out.contains("hunter2"), "the audit never prints a secret:\n{out}");

    // A tampered audit log is a HIGH finding too.
    write(&format!("state_dir: {state}\nconnections: {{}}\n"), 0o640)?;
    std::fs::write(agent.state_dir.join("audit.log"), "{\"seq\":3,\"prev\":\"00\"}\n")?;
    let (code, out) = report(&[])?;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("[HIGH] audit log:") && out.contains("line 1"), "{out}");
    Ok(())
}

/// Records cut from the end of the log after its last signed checkpoint leave no trace in
/// the chain; the head the agent reported to the control plane (kept there, signed by
/// the agent's certificate key) shows them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_tail_is_caught_with_the_head_the_control_plane_kept() -> Result<()> {
    let root = tempfile::tempdir()?;
    let (cp, mut agent) = outpost_e2e::start_pair(root.path(), "edge-1", "", &[]).await?;
    let admin = cp.api()?;
    let res = admin.get("/v1/agents/edge-1/audit-head").await?;
    // Before any result the agent may or may not have sent a heartbeat; either answer is
    // well formed.
    assert!(res.status == 200 || res.status == 404, "{}", res.text());
    for region in ["north", "south"] {
        let id = cp
            .dispatch(serde_json::json!({
                "agent": "edge-1", "connection": "sample",
                "sql": "SELECT COUNT(*) AS n FROM orders WHERE region = $1",
                "params": [{"type": "text", "value": region}],
                "render": {"kind": "scalar", "column": "n"}
            }))
            .await?;
        let (status, body) = cp.wait_result(&id).await?;
        assert_eq!(status, 200, "{body}");
    }
    // The first result brought a head with it (a result's head is kept at most once a
    // second per agent, so it may be the first job's record or a later one).
    let res = admin.get("/v1/agents/edge-1/audit-head").await?;
    assert_eq!(res.status, 200, "{}", res.text());
    let answer = res.json()?;
    let seq = answer["head"]["seq"].as_u64().context("head.seq")?;
    assert_eq!(answer["agent"], "edge-1");
    agent.stop()?;
    let log = agent.state_dir.join("audit.log");
    let good: Vec<String> = std::fs::read_to_string(&log)?.lines().map(str::to_owned).collect();
    let reported = usize::try_from(seq)? + 1; // lines up to and including the head's record
    assert!(reported <= good.len(), "head {seq} beyond the log's {} lines", good.len());
    let head_file = root.path().join("head.json");
    std::fs::write(&head_file, answer.to_string())?;
    let head_arg = head_file.to_str().context("path")?;

    // The whole log reaches the head.
    let (code, out, err) = audit_cli(&agent, &["verify", "--head", head_arg])?;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(&format!("OK: the log reaches record {seq}")), "{out}");

    // Cut from the head's record on (the shutdown checkpoint goes with it): the chain
    // alone cannot tell, and says so instead of OK…
    let cut: String = good[..reported - 1].iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&log, &cut)?;
    let (code, out, _) = audit_cli(&agent, &["verify"])?;
    assert!(!out.contains("TAMPERED"), "the chain alone holds: {out}");
    assert!(out.contains("NOT PROVEN") || code != 0, "it never claims the end is whole: {out}");
    // …and the control plane's head shows the cut, also when read from stdin.
    let (code, out, _) = audit_cli(&agent, &["verify", "--head", head_arg])?;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("TAMPERED") && out.contains("cut from the end"), "{out}");
    let (code, out, _) = agent.cli(&["audit", "verify", "--head", "-"], Some(&answer.to_string()), &[])?;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("cut from the end"), "{out}");

    // A head signed by another key (another agent's, or forged) proves nothing here.
    let mut forged = answer.clone();
    forged["head"]["signature"] = serde_json::json!("MEUCIQ");
    std::fs::write(&head_file, forged.to_string())?;
    let (code, out, _) = audit_cli(&agent, &["verify", "--head", head_arg])?;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("the head given is not valid"), "{out}");
    Ok(())
}
