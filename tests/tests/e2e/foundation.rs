//! End-to-end scenarios of the foundation: real binaries, real mutual TLS on loopback.
//!
//! `scripts/test.sh` runs this suite twice: on the embedded SQLite store, and with
//! `OUTPOST_TEST_STORE=postgres`, where each control plane gets a fresh database on the
//! local PostgreSQL server.

use std::collections::BTreeMap;

use anyhow::{Context as _, Result};
use outpost_e2e::{Agent, ControlPlane};
use outpost_protocol::enrol::EnrolmentToken;

/// A control plane and one enrolled, connected agent named `edge-1`; the control plane
/// runs on the backend under test (and says so).
async fn enrolled_pair(root: &std::path::Path) -> Result<(ControlPlane, Agent)> {
    let (cp, agent) = outpost_e2e::start_pair(root, "edge-1", "", &[]).await?;
    let log = cp.log_text();
    match &cp.pg {
        Some(db) => {
            assert!(log.contains("store=PostgreSQL"), "not on PostgreSQL: {log}");
            assert!(log.contains(db.url.rsplit('/').next().unwrap_or_default()), "{log}");
            assert!(!cp.data_dir.join("control-plane.db").exists(), "no SQLite file beside a PostgreSQL store");
        }
        None => assert!(log.contains("store=SQLite"), "{log}"),
    }
    Ok((cp, agent))
}

/// Dispatches a job and returns its id.
async fn dispatch(cp: &ControlPlane, job: serde_json::Value) -> Result<String> {
    cp.dispatch(job).await
}

fn sums_by_region(db: &std::path::Path) -> Result<BTreeMap<String, f64>> {
    let conn = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let mut stmt = conn.prepare("SELECT region, amount FROM orders")?;
    let mut sums = BTreeMap::new();
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, f64>(1)?)))?;
    for row in rows {
        let (region, amount) = row?;
        *sums.entry(region).or_insert(0.0) += amount;
    }
    Ok(sums)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrolled_agent_returns_a_bar_chart_whose_bars_match_the_sample_data() -> Result<()> {
    let root = tempfile::tempdir()?;
    let (cp, agent) = enrolled_pair(root.path()).await?;

    let id = dispatch(
        &cp,
        serde_json::json!({
            "agent": "edge-1", "connection": "sample",
            "sql": "SELECT region, SUM(amount) AS revenue FROM orders GROUP BY region ORDER BY region",
            "render": { "kind": "bar", "x": "region", "y": ["revenue"], "title": "Revenue by region" }
        }),
    )
    .await?;
    let res = cp.api()?.get(&format!("/v1/jobs/{id}/result?wait=30")).await?;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(res.header("content-type").as_deref(), Some("image/svg+xml"));
    assert!(res.header("content-security-policy").is_some_and(|c| c.contains("default-src 'none'")));

    // Parse the SVG: one bar per region, heights proportional to the independently computed sums.
    let svg = res.text();
    let doc = roxmltree::Document::parse(&svg)?;
    let bars: Vec<(String, f64, f64)> = doc
        .descendants()
        .filter(|n| n.has_tag_name("rect") && n.attribute("class") == Some("bar"))
        .map(|n| -> Result<_> {
            Ok((
                n.attribute("data-label").context("label")?.to_owned(),
                n.attribute("data-value").context("value")?.parse()?,
                n.attribute("height").context("height")?.parse()?,
            ))
        })
        .collect::<Result<_>>()?;
    let expected = sums_by_region(&agent.state_dir.join("sample.db"))?;
    assert_eq!(bars.len(), expected.len(), "one bar per region: {bars:?}");
    let (max_label, max_value) = expected.iter().max_by(|a, b| a.1.total_cmp(b.1)).context("regions")?;
    let max_height = bars.iter().find(|b| &b.0 == max_label).context("tallest bar")?.2;
    for (label, value, height) in &bars {
        let want = expected.get(label).with_context(|| format!("unexpected bar {label}"))?;
        assert!((value - want).abs() < 0.01, "{label}: bar value {value}, database says {want}");
        let ratio = height / max_height;
        assert!(
            (ratio - want / max_value).abs() < 0.01,
            "{label}: bar height ratio {ratio}, want {}",
            want / max_value
        );
    }
    assert!(svg.contains("Revenue by region"));

    // The job's status and the audit record agree.
    let status = cp.api()?.get(&format!("/v1/jobs/{id}")).await?.json()?;
    assert_eq!(status["state"], "succeeded");
    assert_eq!(status["stats"]["rows_read"], expected.len() as u64);
    let audit = agent.audit_records()?;
    let rec = audit.iter().find(|r| r["job_id"] == id.as_str()).context("audit record")?;
    assert_eq!(rec["verdict"], "accepted");
    assert_eq!(rec["rows_read"], expected.len() as u64);
    assert_eq!(rec["bytes_sent"], svg.len() as u64);
    assert_eq!(rec["connection"], "sample");
    Ok(())
}

/// Revenue by (month, region) of the sample data, computed apart from the agent.
fn revenue_by_month_and_region(db: &std::path::Path) -> Result<BTreeMap<(String, String), f64>> {
    let conn = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let mut stmt = conn.prepare("SELECT month, region, amount FROM orders")?;
    let mut sums = BTreeMap::new();
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, f64>(2)?)))?;
    for row in rows {
        let (month, region, amount) = row?;
        *sums.entry((month, region)).or_insert(0.0) += amount;
    }
    Ok(sums)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stacked_bar_chart_takes_its_series_from_a_column_without_a_pivot_in_sql() -> Result<()> {
    let root = tempfile::tempdir()?;
    let (cp, agent) = enrolled_pair(root.path()).await?;
    let api = cp.api()?;
    // Several y columns with a series column: refused before signing, naming the field.
    let res = api
        .post_json(
            "/v1/jobs",
            &serde_json::json!({ "agent": "edge-1", "connection": "sample", "sql": "SELECT 1",
                "render": { "kind": "bar", "x": "month", "y": ["revenue", "cost"], "series": "region" } }),
        )
        .await?;
    assert_eq!(res.status, 400, "{}", res.text());
    let msg = res.json()?["message"].as_str().unwrap_or_default().to_owned();
    assert!(msg.starts_with("render.series: ") && msg.contains("exactly one y column"), "{msg}");

    // Long rows (month, region, revenue), as the SQL gives them: no pivot.
    let id = dispatch(
        &cp,
        serde_json::json!({
            "agent": "edge-1", "connection": "sample",
            "sql": "SELECT month, region, ROUND(SUM(amount), 2) AS revenue FROM orders GROUP BY month, region ORDER BY month, region",
            "render": { "kind": "bar", "x": "month", "y": ["revenue"], "series": "region", "stacked": true }
        }),
    )
    .await?;
    let (status, svg) = cp.wait_result(&id).await?;
    assert_eq!(status, 200, "{svg}\nagent log:\n{}", agent.log_text());
    let doc = roxmltree::Document::parse(&svg)?;
    let attr = |n: roxmltree::Node<'_, '_>, a: &str| n.attribute(a).unwrap_or_default().to_owned();
    let bars: Vec<roxmltree::Node<'_, '_>> =
        doc.descendants().filter(|n| n.has_tag_name("rect") && n.attribute("class") == Some("bar")).collect();
    let expected = revenue_by_month_and_region(&agent.state_dir.join("sample.db"))?;
    assert_eq!(bars.len(), expected.len(), "one segment per month and region");
    for b in &bars {
        let key = (attr(*b, "data-label"), attr(*b, "data-series"));
        let want = expected.get(&key).with_context(|| format!("unexpected segment {key:?}"))?;
        let value: f64 = attr(*b, "data-value").parse()?;
        assert!((value - want).abs() < 0.01, "{key:?}: {value}, database says {want}");
    }
    // Each month's segments share one column and sit on each other.
    let months: std::collections::BTreeSet<String> = expected.keys().map(|(m, _)| m.clone()).collect();
    for month in &months {
        let mut column: Vec<(f64, f64, String)> = bars
            .iter()
            .filter(|b| attr(**b, "data-label") == *month)
            .map(|b| -> Result<_> { Ok((attr(*b, "y").parse()?, attr(*b, "height").parse()?, attr(*b, "x"))) })
            .collect::<Result<_>>()?;
        column.sort_by(|a, b| a.0.total_cmp(&b.0));
        assert!(column.windows(2).all(|w| w[0].2 == w[1].2 && (w[0].0 + w[0].1 - w[1].0).abs() < 0.02), "{column:?}");
    }
    // A legend names every region once, in the palette's colours.
    let regions: std::collections::BTreeSet<String> = expected.keys().map(|(_, r)| r.clone()).collect();
    let legend: Vec<String> = doc
        .descendants()
        .filter(|n| n.attribute("class") == Some("legend"))
        .filter_map(|n| n.text().map(str::to_owned))
        .collect();
    assert_eq!(legend.iter().cloned().collect::<std::collections::BTreeSet<_>>(), regions, "{legend:?}");
    assert_eq!(legend.len(), regions.len());
    let status = cp.job(&id).await?;
    assert_eq!(status["state"], "succeeded");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_job_returns_capped_json_rows() -> Result<()> {
    let root = tempfile::tempdir()?;
    let (cp, _agent) = enrolled_pair(root.path()).await?;
    let id = dispatch(
        &cp,
        serde_json::json!({
            "agent": "edge-1", "connection": "sample",
            "sql": "SELECT id, region, amount FROM orders WHERE amount > $1 ORDER BY id",
            "params": [{ "type": "float", "value": 0.0 }],
            "render": { "kind": "table", "format": "json", "max_rows": 5 }
        }),
    )
    .await?;
    let res = cp.api()?.get(&format!("/v1/jobs/{id}/result?wait=30")).await?;
    assert_eq!(res.status, 200, "{}", res.text());
    let table = res.json()?;
    assert_eq!(table["columns"], serde_json::json!(["id", "region", "amount"]));
    assert_eq!(table["rows"].as_array().map(Vec::len), Some(5));
    assert_eq!(table["truncated"], true);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reused_expired_and_mispinned_tokens_each_fail_with_their_own_message() -> Result<()> {
    let root = tempfile::tempdir()?;
    let mut cp = ControlPlane::init(root.path())?;
    cp.start()?;

    // A token whose CA pin does not match: refused before the secret is sent.
    let good = cp.enrolment_token("edge-1").await?;
    let mut tampered = EnrolmentToken::decode(&good)?;
    tampered.ca_sha256 = "00".repeat(32);
    let agent = Agent::new(root.path(), "edge-1", "")?;
    let (code, _, err) = agent.enroll(&tampered.encode())?;
    assert_ne!(code, 0);
    assert!(err.contains("does not match the pin"), "{err}");
    assert!(!agent.state_dir.join("agent.crt").exists());

    // The genuine token still works (the pin check spent nothing), once.
    let (code, out, err) = agent.enroll(&good)?;
    assert_eq!(code, 0, "{out}{err}");
    assert!(agent.state_dir.join("agent.crt").exists());
    let (code, _, err) = agent.enroll(&good)?;
    assert_ne!(code, 0);
    assert!(err.contains("already used"), "{err}");

    // An expired token: written into the store with an expiry in the past (as if its TTL ran out).
    let store = cp.store().await?;
    let mut expired = EnrolmentToken::decode(&cp.enrolment_token("edge-2").await?)?;
    expired.id = "0badc0ffee000001".into();
    let now = outpost_protocol::unix_now();
    outpost_control_plane::store::Store::create_enrol_token(
        &store,
        outpost_control_plane::store::EnrolTokenRecord {
            id: expired.id.clone(),
            agent: "edge-2".into(),
            pool: None,
            secret_sha256: outpost_protocol::encoding::sha256_hex(expired.secret.as_bytes()),
            created_at: now - 7200,
            expires_at: now - 3600,
        },
    )
    .await?;
    let agent2 = Agent::new(root.path(), "edge-2", "")?;
    let (code, _, err) = agent2.enroll(&expired.encode())?;
    assert_ne!(code, 0);
    assert!(err.contains("expired"), "{err}");

    // An altered secret is told apart from the others.
    let mut altered = EnrolmentToken::decode(&cp.enrolment_token("edge-2").await?)?;
    altered.secret = "f".repeat(64);
    let (code, _, err) = agent2.enroll(&altered.encode())?;
    assert_ne!(code, 0);
    assert!(err.contains("altered"), "{err}");

    // A damaged string is a usage error (exit 64) that says so.
    let (code, _, err) = agent2.enroll(&good[..good.len() - 5])?;
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("damaged"), "{err}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_answers_401_without_a_token_and_400_naming_the_bad_field() -> Result<()> {
    let root = tempfile::tempdir()?;
    let mut cp = ControlPlane::init(root.path())?;
    cp.start()?;
    let api = cp.api()?;

    let res = api.with_token(None).get("/v1/agents").await?;
    assert_eq!(res.status, 401);
    assert_eq!(res.json()?["code"], "unauthorized");
    let res = api.with_token(Some("opat_not-a-real-token")).get("/v1/agents").await?;
    assert_eq!(res.status, 401);

    let cases = [
        (serde_json::json!({ "agent": "edge-1", "connection": "sample", "render": { "kind": "table" } }), "sql"),
        (
            serde_json::json!({ "agent": "edge-1", "connection": "sample", "sql": "SELECT 1", "render": { "kind": "bar", "x": "a", "y": 5 } }),
            "render.y",
        ),
        (
            serde_json::json!({ "agent": "edge-1", "connection": "sample", "sql": "SELECT 1", "render": { "kind": "table" }, "colour": 1 }),
            "colour",
        ),
        (
            serde_json::json!({ "agent": "Bad Name", "connection": "sample", "sql": "SELECT 1", "render": { "kind": "table" } }),
            "agent",
        ),
        (
            serde_json::json!({ "agent": "nobody", "connection": "sample", "sql": "SELECT 1", "render": { "kind": "table" } }),
            "agent",
        ),
    ];
    for (body, field) in cases {
        let res = api.post_json("/v1/jobs", &body).await?;
        assert_eq!(res.status, 400, "{body}: {}", res.text());
        let err = res.json()?;
        assert_eq!(err["code"], "invalid_request");
        let msg = err["message"].as_str().unwrap_or_default();
        assert!(msg.starts_with(&format!("{field}:")) || msg.contains(&format!("`{field}`")), "{body} -> {msg}");
    }
    let res = api.post_raw("/v1/jobs", b"{not json").await?;
    assert_eq!(res.status, 400);

    let res = api.get("/v1/jobs/00000000-0000-4000-8000-000000000000").await?;
    assert_eq!(res.status, 404);
    assert_eq!(res.json()?["code"], "not_found");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_reconnects_after_control_plane_restart_and_queued_job_completes() -> Result<()> {
    let root = tempfile::tempdir()?;
    // A short lease, so a job delivered into a dead connection is handed out again quickly.
    let (mut cp, agent) =
        outpost_e2e::start_pair(root.path(), "edge-1", "  long_poll_secs: 2\n", &["--lease-secs", "2"]).await?;

    // Freeze the agent, queue a job, kill the control plane hard and start it again.
    agent.process()?.signal("STOP")?;
    let id = dispatch(
        &cp,
        serde_json::json!({ "agent": "edge-1", "connection": "sample", "sql": "SELECT COUNT(*) AS n FROM orders", "render": { "kind": "table" } }),
    )
    .await?;
    cp.kill()?;
    cp.start()?;
    agent.process()?.signal("CONT")?;

    let res = cp.api()?.get(&format!("/v1/jobs/{id}/result?wait=45")).await?;
    assert_eq!(res.status, 200, "{}\nagent log:\n{}", res.text(), agent.log_text());
    let table = res.json()?;
    assert!(table["rows"][0][0].as_i64().is_some_and(|n| n > 0), "{table}");
    let status = cp.api()?.get(&format!("/v1/jobs/{id}")).await?.json()?;
    assert_eq!(status["state"], "succeeded");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_agent_cleanly() -> Result<()> {
    let root = tempfile::tempdir()?;
    let (cp, mut agent) = enrolled_pair(root.path()).await?;
    let api = cp.api()?;
    let status_of = |v: &serde_json::Value| v["agents"][0]["status"].as_str().unwrap_or_default().to_owned();
    assert_eq!(status_of(&api.get("/v1/agents").await?.json()?), "online");
    let job = serde_json::json!({ "agent": "edge-1", "connection": "sample", "sql": "SELECT 1 AS n",
                                  "render": { "kind": "scalar", "column": "n" } });
    let first = dispatch(&cp, job.clone()).await?;
    assert_eq!(cp.wait_result(&first).await?.0, 200);
    let status = agent.stop()?;
    assert!(status.success(), "agent exit status {status:?}");
    // It told the control plane as it left: offline at once, not after offline_after_secs,
    // and a job for it says it waits for the agent.
    let agents = api.get("/v1/agents").await?.json()?;
    assert_eq!(status_of(&agents), "offline", "{agents}");
    let id = dispatch(&cp, job).await?;
    let v = api.get(&format!("/v1/jobs/{id}/result")).await?.json()?;
    assert_eq!(v["code"], "waiting_for_agent", "{v}");
    assert!(v["message"].as_str().unwrap_or_default().contains("last seen"), "{v}");
    // Its last head covers the shutdown checkpoint (the job's record, then the
    // checkpoint): the control plane has the log's end.
    let head = api.get("/v1/agents/edge-1/audit-head").await?.json()?;
    let lines = std::fs::read_to_string(agent.state_dir.join("audit.log"))?.lines().count() as u64;
    assert_eq!(head["head"]["seq"].as_u64(), Some(lines - 1), "{head}");
    // Back: online again, and the job runs.
    agent.start_connected()?;
    let (status, body) = cp.wait_result(&id).await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(status_of(&api.get("/v1/agents").await?.json()?), "online");
    Ok(())
}

#[test]
fn agent_config_check_names_file_line_and_field() -> Result<()> {
    let root = tempfile::tempdir()?;
    let cfg = root.path().join("agent.yaml");
    let check = |text: &str| -> Result<(i32, String)> {
        std::fs::write(&cfg, text)?;
        let (code, _, err) = outpost_e2e::run_cmd(
            &outpost_e2e::bin("outpost-agent"),
            &["--config", cfg.to_str().unwrap_or_default(), "config", "check"],
            None,
        )?;
        Ok((code, err))
    };
    let (code, err) = check("state_dir: /tmp/x\nlimits:\n  max_rows: 0\n")?;
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("agent.yaml:3:"), "{err}");
    assert!(err.contains("must be between 1 and 1000000"), "{err}");

    // A plaintext password is refused at its line, and the message says where secrets go.
    let (code, err) =
        check("state_dir: /tmp/x\nconnections:\n  main:\n    kind: sqlite\n    path: x.db\n    password: hunter2\n")?;
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("agent.yaml:6:"), "{err}");
    assert!(err.contains("credentials set"), "{err}");
    assert!(!err.contains("hunter2"), "the error does not echo the secret: {err}");

    // A credential the vault does not hold would make a reload refuse the file: every one
    // is reported in the same run, with the command that stores it.
    let state = root.path().join("state");
    let pg = |name: &str, cred: &str| {
        format!(
            "  {name}:\n    kind: postgres\n    host: db.internal\n    database: sales\n    user: ro\n    \
             tls: disable\n    password_credential: {cred}\n"
        )
    };
    let (code, err) = check(&format!(
        "state_dir: {}\nconnections:\n{}{}",
        state.display(),
        pg("main", "nosuch"),
        pg("other", "warehose")
    ))?;
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("connections.main.password_credential: \"nosuch\" is not in the vault"), "{err}");
    assert!(err.contains("connections.other.password_credential: \"warehose\""), "{err}");
    assert!(err.contains("outpost-agent credentials set nosuch"), "{err}");

    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/agent.yaml");
    let (code, out, err) = outpost_e2e::run_cmd(
        &outpost_e2e::bin("outpost-agent"),
        &["--config", example.to_str().unwrap_or_default(), "config", "check"],
        None,
    )?;
    assert_eq!(code, 0, "the shipped example config must be valid: {out}{err}");
    Ok(())
}

#[test]
fn init_refuses_to_overwrite_an_existing_data_dir_and_keeps_private_files_0600() -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let root = tempfile::tempdir()?;
    let cp = ControlPlane::init(root.path())?;
    let signing_keys: Vec<_> =
        std::fs::read_dir(cp.data_dir.join("signing-keys"))?.map(|e| e.map(|e| e.path())).collect::<Result<_, _>>()?;
    assert_eq!(signing_keys.len(), 1, "{signing_keys:?}");
    let signing_key = signing_keys[0].clone();
    let dir_mode = std::fs::metadata(cp.data_dir.join("signing-keys"))?.permissions().mode() & 0o777;
    assert_eq!(dir_mode, 0o700);
    // The database file exists only on the embedded store.
    let db = cp.pg.is_none().then(|| cp.data_dir.join("control-plane.db"));
    for f in ["ca.key", "server.key"].map(|f| cp.data_dir.join(f)).into_iter().chain(db).chain([signing_key.clone()]) {
        let mode = std::fs::metadata(&f)?.permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", f.display());
    }
    let before = std::fs::read(&signing_key)?;
    let (code, _, err) = outpost_e2e::run_cmd(
        &outpost_e2e::bin("outpost-control-plane"),
        &["init", "--data-dir", cp.data_dir.to_str().unwrap_or_default(), "--hostname", "localhost"],
        None,
    )?;
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("refusing to overwrite"), "{err}");
    assert_eq!(std::fs::read(&signing_key)?, before, "nothing was overwritten");
    Ok(())
}

#[test]
fn shipped_control_plane_config_is_valid_and_a_bad_one_names_the_line() -> Result<()> {
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/control-plane.yaml");
    let cp = outpost_e2e::bin("outpost-control-plane");
    let (code, out, err) =
        outpost_e2e::run_cmd(&cp, &["config", "check", "--config", example.to_str().unwrap_or_default()], None)?;
    assert_eq!(code, 0, "{out}{err}");
    let root = tempfile::tempdir()?;
    let bad = root.path().join("control-plane.yaml");
    std::fs::write(&bad, "data_dir: /tmp/x\njobs:\n  ttl_secs: 300\n  lease_sec: 5\n")?;
    let (code, _, err) =
        outpost_e2e::run_cmd(&cp, &["config", "check", "--config", bad.to_str().unwrap_or_default()], None)?;
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("control-plane.yaml:4:") && err.contains("lease_sec"), "{err}");
    // `config check PATH`, as the agent spells it, and the file the environment names.
    let (code, _, err) = outpost_e2e::run_cmd(&cp, &["config", "check", bad.to_str().unwrap_or_default()], None)?;
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("control-plane.yaml:4:"), "{err}");
    let (code, out, err) =
        outpost_e2e::run_cmd_env(&cp, &["config", "check"], None, &[("OUTPOST_CONTROL_PLANE_CONFIG", &example)])?;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("configs/control-plane.yaml: OK"), "{out}");
    Ok(())
}

/// Polls `GET /v1/agents` until `name` has `status`, for at most `secs`; returns its entry.
async fn agent_entry_when(cp: &ControlPlane, name: &str, status: &str, secs: u64) -> Result<serde_json::Value> {
    let last = std::cell::RefCell::new(serde_json::Value::Null);
    let seen = &last;
    outpost_e2e::eventually(&format!("{name} is {status}"), std::time::Duration::from_secs(secs), || async move {
        let list = cp.api()?.get("/v1/agents").await?.json()?;
        let entry = list["agents"]
            .as_array()
            .and_then(|a| a.iter().find(|e| e["name"] == name).cloned())
            .with_context(|| format!("{name} not listed: {list}"))?;
        let done = entry["status"] == status;
        *seen.borrow_mut() = entry;
        Ok(done)
    })
    .await
    .with_context(|| format!("last seen: {}", last.borrow()))?;
    Ok(last.into_inner())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_list_tells_online_offline_since_and_revoked_apart() -> Result<()> {
    let root = tempfile::tempdir()?;
    let serve = ["--long-poll-secs", "3", "--offline-after-secs", "10"];
    let (cp, edge1) = outpost_e2e::start_pair(root.path(), "edge-1", "", &serve).await?;
    let mut edge2 = Agent::new(root.path(), "edge-2", "")?;
    edge2.enroll_with(&cp).await?;
    edge2.start_connected()?;
    let online = agent_entry_when(&cp, "edge-1", "online", 5).await?;
    assert!(online["offline_since"].is_null(), "{online}");

    // The CLI revokes edge-2 from its own process: the running server refuses the agent's
    // next request (its long-poll ends within 3 s) and lists it as revoked.
    let out = cp.cli(&["agent", "revoke", "edge-2"])?;
    assert!(out.contains("revoked"), "{out}");
    edge2.process()?.wait_for_log("The control plane refused this agent", std::time::Duration::from_secs(15))?;
    let revoked = agent_entry_when(&cp, "edge-2", "revoked", 1).await?;
    assert!(revoked["revoked_at"].as_i64().is_some(), "{revoked}");

    // edge-1 goes silent (killed: no word to the control plane; a clean stop says so at
    // once, see sigterm_stops_the_agent_cleanly): still online within the 10 s threshold,
    // offline once 10 s have passed since it was last seen (moved in the store, not
    // waited for), with the time.
    edge1.process()?.signal("KILL")?;
    let silent = agent_entry_when(&cp, "edge-1", "online", 1).await?;
    assert!(silent["seconds_since_seen"].as_i64().unwrap_or(99) < 10, "{silent}");
    cp.age_last_seen("edge-1", 11)?;
    let offline = agent_entry_when(&cp, "edge-1", "offline", 1).await?;
    assert_eq!(offline["offline_since"], offline["last_seen"], "{offline}");
    assert!(offline["seconds_since_seen"].as_i64().unwrap_or(0) > 10, "{offline}");
    Ok(())
}

/// A typo in a connection name is refused at dispatch, naming the agent's connections (as
/// it reported them: names only), instead of failing later on the agent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dispatch_to_a_connection_the_agent_does_not_have_is_refused_naming_the_ones_it_has() -> Result<()> {
    let root = tempfile::tempdir()?;
    let (cp, _agent) = enrolled_pair(root.path()).await?;
    let api = cp.api()?;
    // The agent heartbeats as it starts; wait for the control plane to have heard it.
    outpost_e2e::eventually("the agent's connection names", std::time::Duration::from_secs(30), || async {
        let agents = api.get("/v1/agents").await?.json()?;
        Ok(agents["agents"][0]["connections"].as_array().is_some_and(|c| !c.is_empty()))
    })
    .await?;
    let job = |connection: &str| {
        serde_json::json!({ "agent": "edge-1", "connection": connection, "sql": "SELECT 1 AS n",
                            "render": { "kind": "scalar", "column": "n" } })
    };
    let res = api.post_json("/v1/jobs", &job("sampel")).await?;
    assert_eq!(res.status, 400, "{}", res.text());
    let err = res.json()?;
    assert_eq!(err["code"], "invalid_request");
    let msg = err["message"].as_str().unwrap_or_default();
    assert!(msg.starts_with("connection:") && msg.contains("\"sampel\"") && msg.contains("sample"), "{msg}");
    // The right name goes through and runs.
    let id = dispatch(&cp, job("sample")).await?;
    let (status, body) = cp.wait_result(&id).await?;
    assert_eq!(status, 200, "{body}");
    Ok(())
}

/// The control plane's first minutes: `serve` says where the console is, refuses a data
/// dir `init` never made (creating nothing, naming the fix) and says a busy port once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_prints_the_console_url_and_refuses_a_data_dir_init_never_made() -> Result<()> {
    let root = tempfile::tempdir()?;
    let cp_bin = outpost_e2e::bin("outpost-control-plane");
    let missing = root.path().join("no-such-dir");
    for (what, dir) in [("a missing dir", &missing), ("an empty dir", &root.path().to_path_buf())] {
        let d = dir.display().to_string();
        for args in [vec!["serve", "--data-dir", &d], vec!["user", "list", "--data-dir", &d]] {
            let (code, out, err) = outpost_e2e::run_cmd(&cp_bin, &args, None)?;
            assert_eq!(code, 64, "{what}, {args:?}: {out}{err}");
            assert!(err.contains("is not a control-plane data dir made by `init`"), "{what}: {err}");
            assert!(err.contains(&format!("outpost-control-plane init --data-dir {d} --hostname NAME")), "{err}");
        }
    }
    assert!(!missing.exists(), "nothing was created");
    assert!(!root.path().join("control-plane.db").exists(), "no database was created in the empty dir");

    let mut cp = ControlPlane::init(&root.path().join("cp"))?;
    cp.start()?;
    let port = cp.api_addr.rsplit(':').next().unwrap_or_default().to_owned();
    // Printed on stdout (the log line above it is on stderr: each has its own pipe).
    cp.process()?
        .wait_for_log(&format!("Console: https://localhost:{port}/console/"), std::time::Duration::from_secs(10))?;
    // The same ports again: one clear line, the OS's words once.
    let d = cp.data_dir.display().to_string();
    let args = ["serve", "--data-dir", &d, "--agent-listen", &cp.agent_addr, "--api-listen", &cp.api_addr];
    let mut all: Vec<&str> = args.to_vec();
    let store = cp.store_args();
    all.extend(store.iter().map(String::as_str));
    let (code, out, err) = outpost_e2e::run_cmd(&cp_bin, &all, None)?;
    assert_eq!(code, 1, "{out}{err}");
    assert_eq!(err.matches("Address already in use").count(), 1, "{err}");
    Ok(())
}

/// `init` names every address clients use in the server certificate (`--san`), keeps them
/// through a rotation, and ends by saying what to do next; a browser on the host can then
/// reach `https://127.0.0.1:…` with a verified handshake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_names_every_address_in_the_certificate_and_says_what_to_do_next() -> Result<()> {
    let root = tempfile::tempdir()?;
    let cp_bin = outpost_e2e::bin("outpost-control-plane");
    let dir = root.path().join("cp");
    let d = dir.display().to_string();
    let (code, _, err) = outpost_e2e::run_cmd(
        &cp_bin,
        &["init", "--data-dir", &d, "--hostname", "cp.example", "--san", "bad name"],
        None,
    )?;
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("--san \"bad name\""), "{err}");
    assert!(!dir.exists(), "a refused init creates nothing");
    let args = ["init", "--data-dir", &d, "--hostname", "cp.example", "--san", "127.0.0.1", "--san", "cp.internal"];
    let (code, out, err) = outpost_e2e::run_cmd(&cp_bin, &args, None)?;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Next steps:"), "{out}");
    assert!(out.contains(&format!("outpost-control-plane user password admin --data-dir {d}")), "{out}");
    assert!(out.contains(&format!("outpost-control-plane serve --data-dir {d}")), "{out}");
    assert!(out.contains("https://cp.example:8443/console/"), "{out}");
    assert!(out.contains("enrollment-token create"), "{out}");

    let sans = || -> Result<String> {
        let crt = dir.join("server.crt").display().to_string();
        let (code, out, err) = outpost_e2e::run_cmd(
            std::path::Path::new("openssl"),
            &["x509", "-in", &crt, "-noout", "-ext", "subjectAltName"],
            None,
        )?;
        anyhow::ensure!(code == 0, "openssl: {err}");
        Ok(out)
    };
    let names = sans()?;
    for want in ["DNS:cp.example", "IP Address:127.0.0.1", "DNS:cp.internal"] {
        assert!(names.contains(want), "{want} in {names}");
    }
    // Both spellings of enrolment name the same command.
    for spelling in ["enrollment-token", "enrolment-token"] {
        let (code, out, err) = outpost_e2e::run_cmd(&cp_bin, &[spelling, "list", "--data-dir", &d], None)?;
        assert_eq!(code, 0, "{spelling}: {out}{err}");
    }
    let (code, out, err) = outpost_e2e::run_cmd(&cp_bin, &["server-cert", "rotate", "--data-dir", &d], None)?;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("cp.example, 127.0.0.1, cp.internal"), "{out}");
    assert_eq!(sans()?, names, "a rotation keeps the names");

    // A real handshake to the IP address, verified against the CA.
    let serve: Vec<String> =
        ["serve", "--data-dir", &d, "--api-listen", "127.0.0.1:0", "--agent-listen", "127.0.0.1:0"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
    let p = outpost_e2e::Process::spawn(&cp_bin, &serve, &root.path().join("cp.log"))?;
    p.wait_for_log("Control plane listening.", std::time::Duration::from_secs(30))?;
    let (_, api) = outpost_e2e::listening_addrs(&p.lines())?;
    let ca = dir.join("ca.crt").display().to_string();
    let (code, out, err) = outpost_e2e::run_cmd(
        std::path::Path::new("openssl"),
        &["s_client", "-connect", &api, "-CAfile", &ca, "-verify_ip", "127.0.0.1", "-verify_return_error", "-brief"],
        Some(""),
    )?;
    assert_eq!(code, 0, "{out}{err}");
    assert!(err.contains("Verification: OK") || out.contains("Verification: OK"), "{out}{err}");
    Ok(())
}

/// A job for an agent that is not connected says why it waits, instead of "not there yet".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_for_an_offline_agent_says_it_waits_for_the_agent() -> Result<()> {
    let root = tempfile::tempdir()?;
    let mut cp = ControlPlane::init(root.path())?;
    cp.start()?;
    let mut agent = Agent::new(root.path(), "edge-2", "")?;
    agent.enroll_with(&cp).await?;
    let id = dispatch(
        &cp,
        serde_json::json!({ "agent": "edge-2", "connection": "sample", "sql": "SELECT 1 AS n",
                            "render": { "kind": "scalar", "column": "n" } }),
    )
    .await?;
    let res = cp.api()?.get(&format!("/v1/jobs/{id}/result")).await?;
    assert_eq!(res.status, 202, "{}", res.text());
    let v = res.json()?;
    assert_eq!(v["code"], "waiting_for_agent", "{v}");
    let msg = v["message"].as_str().unwrap_or_default();
    assert!(msg.starts_with("agent \"edge-2\" is offline (never seen since it enrolled)"), "{msg}");
    assert!(msg.contains("the job runs when it reconnects"), "{msg}");
    // Before it ever reported its connections, a job for one it does not have is accepted
    // by the control plane: the agent refuses it itself.
    let ghost = dispatch(
        &cp,
        serde_json::json!({ "agent": "edge-2", "connection": "ghost", "sql": "SELECT 1 AS n",
                            "render": { "kind": "scalar", "column": "n" } }),
    )
    .await?;
    // The agent comes: the job it waited for runs.
    agent.start_connected()?;
    let (status, body) = cp.wait_result(&id).await?;
    assert_eq!(status, 200, "{body}");
    let (status, body) = cp.wait_result(&ghost).await?;
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("unknown_connection"), "{body}");
    Ok(())
}

/// Recorded command-line sessions (tests/cmd/*.md: arguments, output, exit status) keep
/// both binaries' usage, errors and exit codes from drifting apart. After an intended
/// change: `TRYCMD=overwrite cargo test -p outpost-e2e --test foundation cli_sessions`.
#[test]
fn cli_sessions() {
    trycmd::TestCases::new()
        .register_bin("outpost-agent", outpost_e2e::bin("outpost-agent"))
        .register_bin("outpost-control-plane", outpost_e2e::bin("outpost-control-plane"))
        .env("OUTPOST_LOG_TARGET", "stderr")
        .env("OUTPOST_LOG", "error")
        .env("OUTPOST_AGENT_CONFIG", "/nonexistent/agent.yaml")
        .env("OUTPOST_CONTROL_PLANE_CONFIG", "/nonexistent/cp.yaml")
        .case("cmd/*.md");
}

/// Every listing of the control plane's CLI takes --json and answers the API's fields
/// under the API's key, never a secret or a hash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_cli_listing_answers_json_in_the_apis_words() -> Result<()> {
    let root = tempfile::tempdir()?;
    let (cp, _agent) = outpost_e2e::start_pair(root.path(), "edge-1", "", &[]).await?;
    cp.enrolment_token("edge-2").await?;
    let json = |args: &[&str]| -> Result<serde_json::Value> {
        let mut all = args.to_vec();
        all.push("--json");
        Ok(serde_json::from_str(&cp.cli(&all)?)?)
    };
    let agents = json(&["agent", "list"])?;
    assert_eq!(
        (agents["agents"][0]["name"].as_str(), agents["agents"][0]["status"].as_str()),
        (Some("edge-1"), Some("online")),
        "{agents}"
    );
    let api = cp.api()?.get("/v1/agents").await?.json()?;
    let keys = |v: &serde_json::Value| v.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>());
    assert_eq!(keys(&agents["agents"][0]), keys(&api["agents"][0]), "the API's fields");
    let users = json(&["user", "list"])?;
    assert_eq!(
        (users["users"][0]["name"].as_str(), users["users"][0]["has_password"].as_bool()),
        (Some("admin"), Some(true)),
        "{users}"
    );
    let tokens = json(&["token", "list"])?;
    assert_eq!(tokens["tokens"][0]["status"], "active", "{tokens}");
    let enrol = json(&["enrollment-token", "list"])?;
    assert_eq!(enrol["tokens"][0]["agent"], "edge-2", "{enrol}");
    let keys_list = json(&["signing-key", "list"])?;
    assert_eq!(keys_list["keys"][0]["status"], "active", "{keys_list}");
    for text in [agents.to_string(), users.to_string(), tokens.to_string(), enrol.to_string()] {
        assert!(!text.contains("hash") && !text.contains("opat_") && !text.contains("argon2"), "{text}");
    }
    Ok(())
}

/// An agent listener on a wildcard address (the packaged config's 0.0.0.0:7443) with no
/// agent_address: tokens name the init hostname and the port, which agents can dial,
/// never 0.0.0.0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wildcard_agent_listener_advertises_the_hostname_not_0_0_0_0() -> Result<()> {
    let root = tempfile::tempdir()?;
    let mut cp = ControlPlane::init(root.path())?;
    cp.agent_addr = "0.0.0.0:0".to_owned();
    cp.start()?;
    let port = cp.agent_addr.strip_prefix("0.0.0.0:").context("still on the wildcard")?.to_owned();
    assert_ne!(port, "0", "the listening line names the port the system chose");
    let token = outpost_protocol::enrol::EnrolmentToken::decode(&cp.enrolment_token("edge-1").await?)?;
    assert_eq!(token.addr, format!("localhost:{port}"));
    let mut agent = outpost_e2e::Agent::new(root.path(), "edge-1", "")?;
    let (code, out, err) = agent.enroll(&cp.enrolment_token("edge-1").await?)?;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(&format!("with the control plane at localhost:{port}")), "{out}");
    agent.start_connected()?;
    Ok(())
}

/// A data dir made by root (init run without `sudo -u outpost-cp`): the service's user is
/// told that it cannot read it and how to give it back, not that it was never made.
#[test]
fn a_data_dir_of_another_user_is_named_as_such_with_the_fix() -> Result<()> {
    let root = tempfile::tempdir()?;
    let cp = ControlPlane::init_on(root.path(), None)?;
    let bin = outpost_e2e::bin("outpost-control-plane");
    let dir = cp.data_dir.to_str().unwrap_or_default();
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&bin)
        .args(["user", "list", "--data-dir", dir])
        .output()?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{err}");
    assert!(err.contains("permission denied: the data dir belongs to another user"), "{err}");
    assert!(err.contains(&format!("sudo chown -R outpost-cp:outpost-cp {dir}")), "{err}");
    assert!(!err.contains("not a control-plane data dir made by `init`"), "{err}");
    Ok(())
}

/// After a clean stop the SQLite database file alone holds every change (the write-ahead
/// log is merged and emptied), so copying control-plane.db is a whole backup.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_stop_leaves_every_change_in_the_database_file() -> Result<()> {
    let root = tempfile::tempdir()?;
    let mut cp = ControlPlane::init_on(root.path(), None)?;
    cp.start()?;
    for i in 0..20 {
        cp.enrolment_token(&format!("edge-{i}")).await?;
    }
    let mut p = cp.take_process().context("running")?;
    assert!(p.terminate(std::time::Duration::from_secs(30))?.success());
    let wal = cp.data_dir.join("control-plane.db-wal");
    let wal_len = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    assert_eq!(wal_len, 0, "the WAL was merged at stop");
    let copy = root.path().join("copy.db");
    std::fs::copy(cp.data_dir.join("control-plane.db"), &copy)?;
    let db = rusqlite::Connection::open(&copy)?;
    let n: i64 = db.query_row("SELECT COUNT(*) FROM enrol_tokens", [], |r| r.get(0))?;
    assert_eq!(n, 20, "the file alone holds the tokens");
    Ok(())
}

/// README's first command: scripts/quickstart.sh runs two jobs and, with --keep, leaves
/// the control plane and the agent running with the console's address and a sign-in that
/// works, until Ctrl-C stops both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quickstart_runs_jobs_and_keeps_a_console_to_sign_in_to_until_ctrl_c() -> Result<()> {
    let root = tempfile::tempdir()?;
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/quickstart.sh");
    let log = root.path().join("quickstart.log");
    let mut p = outpost_e2e::Process::spawn(&script, &["--keep".to_owned()], &log)?;
    // Should an assertion fail: the script's children (control plane, agent) are stopped
    // first, since killing the script itself would leave them behind.
    struct StopChildren(u32);
    impl Drop for StopChildren {
        fn drop(&mut self) {
            let _ = std::process::Command::new("pkill").args(["-TERM", "-P", &self.0.to_string()]).status();
        }
    }
    let _children = StopChildren(p.pid());
    // The build inside is a no-op after the suite's own build.
    p.wait_for_log("Everything stays in", std::time::Duration::from_secs(600))?;
    let text = std::fs::read_to_string(&log)?;
    assert!(text.contains("table: ") && text.contains("revenue-by-region.svg"), "{text}");
    let after = |marker: &str| -> Option<String> {
        let rest = &text[text.find(marker)? + marker.len()..];
        rest.split_whitespace().next().map(|w| w.trim_end_matches([')', ':']).to_owned())
    };
    let console = after("Console: ").context("console address")?;
    let password = after("Sign in as admin with the password ").context("password")?;
    let ca = after("made just now (").context("CA path")?;
    let addr = console.trim_start_matches("https://").trim_end_matches("/console/").replace("localhost", "127.0.0.1");
    let api = outpost_e2e::Api::new(&addr, std::path::Path::new(&ca), None)?;
    let res = outpost_e2e::call(
        &api,
        "POST",
        "/v1/sessions",
        Some(&serde_json::json!({ "user": "admin", "password": password })),
    )
    .await?;
    assert_eq!(res.status, 201, "the printed sign-in works: {}", res.text());
    let page = api.get("/console/").await?;
    assert_eq!(page.status, 303, "the console answers, sending a stranger to sign in");
    let login = page.header("location").context("location")?;
    assert_eq!(api.get(&login).await?.status, 200, "its sign-in page ({login})");
    p.signal("INT")?;
    let status = p.terminate(std::time::Duration::from_secs(60))?;
    assert!(status.success(), "Ctrl-C ends it cleanly: {status:?}\n{}", std::fs::read_to_string(&log)?);
    // Both processes it started are gone: their ports no longer answer.
    assert!(tokio::net::TcpStream::connect(&addr).await.is_err(), "the control plane stopped");
    Ok(())
}

/// A control plane restored from a backup made before an agent enrolled: the agent is
/// told why it is refused (403 unknown_agent, enrol again), logs it, and `status` says it,
/// instead of reconnecting in silence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_unknown_to_a_restored_control_plane_hears_why_and_says_so() -> Result<()> {
    let root = tempfile::tempdir()?;
    let mut cp = ControlPlane::init_on(root.path(), None)?;
    let backup = root.path().join("backup");
    let (code, _, err) = outpost_e2e::run_cmd(
        std::path::Path::new("cp"),
        &["-a", cp.data_dir.to_str().unwrap_or_default(), backup.to_str().unwrap_or_default()],
        None,
    )?;
    anyhow::ensure!(code == 0, "backup: {err}");
    cp.start()?;
    let mut agent = outpost_e2e::Agent::new(root.path(), "edge-1", "")?;
    agent.enroll_with(&cp).await?;
    agent.start_connected()?;
    cp.kill()?;
    std::fs::remove_dir_all(&cp.data_dir)?;
    std::fs::rename(&backup, &cp.data_dir)?;
    cp.start()?;
    agent.process()?.wait_for_log("The control plane refused this agent", std::time::Duration::from_secs(60))?;
    assert!(agent.log_text().contains("unknown_agent"), "{}", agent.log_text());
    let (code, out, _) = agent.cli(&["status"], None, &[])?;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("reaches cloud:  NO") && out.contains("enrol this host again"), "{out}");
    assert!(cp.log_text().contains("Certificate names no enrolled agent; its requests are answered 403."));
    Ok(())
}

/// `outpost-control-plane openapi | head -c 10`: the reader goes away early; the command
/// ends quietly with the shell's code for a closed pipe, not a panic report.
#[test]
fn a_reader_that_stops_early_ends_the_command_quietly() -> Result<()> {
    use std::io::Read as _;
    let mut child = std::process::Command::new(outpost_e2e::bin("outpost-control-plane"))
        .arg("openapi")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let mut first = [0u8; 10];
    child.stdout.take().context("stdout")?.read_exact(&mut first)?; // then dropped: the pipe closes
    let out = child.wait_with_output()?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(141), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    Ok(())
}
