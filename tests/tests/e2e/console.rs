//! The console in a real browser: Debian's Chromium driven by `playwright-core`
//! (tests/browser/*.mjs), against a real `outpost-control-plane serve`, a real enrolled
//! agent on the sample data, and — for the script-in-SVG check — a rogue agent played by
//! this test with a real enrolled identity over mutual TLS. Screenshots are kept under
//! `target/console-screenshots/` (CI artefacts).

use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use outpost_e2e::{Agent, Api};
use serde_json::{json, Value};

const BAR_SQL: &str = "SELECT region, SUM(amount) AS revenue FROM orders GROUP BY region ORDER BY region";

/// tests/browser, with its npm packages installed (`npm ci`, done by `.ci/run`).
pub fn browser_dir() -> Result<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("browser");
    ensure!(
        dir.join("node_modules/playwright-core").is_dir() && dir.join("node_modules/oidc-provider").is_dir(),
        "the browser tests need their npm packages: run `npm ci` in {} (.ci/run does)",
        dir.display()
    );
    Ok(dir)
}

/// Debian's Chromium (`apt-get install chromium`), or `OUTPOST_CHROMIUM`.
pub fn chromium() -> Result<PathBuf> {
    let p = std::env::var_os("OUTPOST_CHROMIUM").map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    ensure!(
        p.exists(),
        "no Chromium at {}: apt-get install chromium (.ci/run does), or set OUTPOST_CHROMIUM",
        p.display()
    );
    Ok(p)
}

/// Where screenshots go: target/console-screenshots/<name>.
pub fn screenshots(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"), PathBuf::from);
    target.join("console-screenshots").join(name)
}

/// Runs `node SCRIPT CONFIG` with `cfg` (plus `out`), fails with its output unless it
/// exits 0, and returns what it wrote to `out`.
pub fn run_node(script: &str, root: &Path, mut cfg: Value) -> Result<Value> {
    let dir = browser_dir()?;
    let cfg_path = root.join(format!("{script}.json"));
    let out_path = root.join(format!("{script}.out.json"));
    cfg["out"] = json!(out_path);
    cfg["chromium"] = json!(chromium()?);
    std::fs::write(&cfg_path, serde_json::to_vec_pretty(&cfg)?)?;
    let out = std::process::Command::new("node")
        .arg(dir.join(script))
        .arg(&cfg_path)
        .current_dir(&dir)
        .output()
        .context("node (apt-get install nodejs)")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    if !out.status.success() {
        bail!("{script} failed ({}):\n{stdout}\n{stderr}", out.status);
    }
    serde_json::from_slice(&std::fs::read(&out_path)?).context("browser script output")
}

async fn ok(api: &Api, method: &str, path: &str, body: Value) -> Result<Value> {
    let m: http::Method = method.parse()?;
    let res = api.request(m, path, Some(serde_json::to_vec(&body)?)).await?;
    ensure!((200..300).contains(&res.status), "{method} {path}: {} {}", res.status, res.text());
    Ok(if res.body.is_empty() { Value::Null } else { res.json()? })
}

/// Plays agent `rogue` (a real enrolled identity): takes the next job and answers it with
/// an SVG that carries script in every way SVG allows.
async fn rogue_agent_answers(agent: &Agent) -> Result<String> {
    use outpost_agent::{identity, proxy, transport};
    use outpost_protocol::wire::{PollResponse, PATH_JOBS, PATH_POLL};
    let id = identity::load(&agent.state_dir)?;
    let cfg = transport::mtls_config(&id)?;
    let t = transport::Transport::new(
        id.enrolment.address.clone(),
        proxy::Route::direct(),
        &id.enrolment.server_name,
        cfg,
    )?;
    let (status, body) = t.send(http::Method::GET, &format!("{PATH_POLL}?wait=20"), None).await?;
    ensure!(status == 200, "poll: {status}");
    let poll: PollResponse = serde_json::from_slice(&body)?;
    let job = poll.jobs.first().context("the rogue agent got no job")?.job_id.clone();
    let evil = r##"<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" viewBox="0 0 800 450" onload="window.__pwned='onload';alert('onload')">
<script>window.__pwned='script';alert('script')</script>
<rect class="bar" x="100" y="100" width="80" height="200" fill="#4477aa" data-label="North" onmouseover="window.__pwned='hover'"/>
<image href="data:," onerror="window.__pwned='onerror'"/>
<a xlink:href="javascript:window.__pwned='link'"><text x="10" y="20">click</text></a>
<foreignObject width="100" height="100"><iframe xmlns="http://www.w3.org/1999/xhtml" src="javascript:parent.__pwned='iframe'"></iframe></foreignObject>
<set attributeName="onmouseover" to="alert(1)"/><animate attributeName="href" to="javascript:alert(1)"/>
</svg>"##;
    let report = outpost_protocol::ResultReport::succeeded(
        &job,
        "image/svg+xml",
        evil.as_bytes(),
        outpost_protocol::ResultStats { rows_read: 1, ..Default::default() },
    );
    let (status, body) = t
        .send(http::Method::POST, &format!("{PATH_JOBS}{job}/result"), Some(serde_json::to_vec(&report)?.into()))
        .await?;
    ensure!(status.is_success(), "upload: {status} {}", String::from_utf8_lossy(&body));
    Ok(job)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_chromium_users_run_a_chart_live_share_a_project_viewers_never_see_sql_and_svg_script_never_runs(
) -> Result<()> {
    browser_dir()?;
    chromium()?;
    let root = tempfile::tempdir()?;
    // The agent masks the `product` column, so the console has an egress decision to show.
    let mask = "egress:\n  mask:\n    - column: product\n      with: hash\n";
    let (cp, _agent) = outpost_e2e::start_pair(root.path(), "edge-1", mask, &[]).await?;
    let admin = cp.api()?;
    let pw = json!({ "admin": "admin-pass-1234", "ed": "editor-pass-1234", "vi": "viewer-pass-1234" });
    ok(&admin, "PATCH", "/v1/users/admin", json!({ "password": pw["admin"] })).await?;
    ok(&admin, "POST", "/v1/users", json!({ "name": "ed", "role": "editor", "password": pw["ed"] })).await?;
    ok(&admin, "POST", "/v1/users", json!({ "name": "vi", "role": "viewer", "password": pw["vi"] })).await?;
    ok(&admin, "POST", "/v1/users", json!({ "name": "spare", "role": "viewer" })).await?;

    // The rogue agent's job, answered before the browser looks at it.
    let rogue = Agent::new(root.path(), "rogue", "")?;
    rogue.enroll_with(&cp).await?;
    let dispatched = cp
        .dispatch(json!({ "agent": "rogue", "connection": "sample", "sql": "SELECT 1 AS a, 2 AS b",
            "render": { "kind": "bar", "x": "a", "y": ["b"] } }))
        .await?;
    let answered = rogue_agent_answers(&rogue).await?;
    ensure!(answered == dispatched);

    let regions: Vec<String> = {
        let id = cp
            .dispatch(json!({ "agent": "edge-1", "connection": "sample",
            "sql": "SELECT DISTINCT region FROM orders ORDER BY region", "render": { "kind": "table" } }))
            .await?;
        let (status, text) = cp.wait_result(&id).await?;
        ensure!(status == 200, "{text}");
        let v: Value = serde_json::from_str(&text)?;
        v["rows"].as_array().context("rows")?.iter().filter_map(|r| r[0].as_str().map(str::to_owned)).collect()
    };
    ensure!(regions.len() >= 3, "sample regions: {regions:?}");

    let shots = screenshots("console");
    let out = run_node(
        "console.mjs",
        root.path(),
        json!({
            "base_url": format!("https://localhost:{}", cp.api_addr.rsplit(':').next().unwrap_or_default()),
            "passwords": pw, "bar_sql": BAR_SQL, "regions": regions, "rogue_job": dispatched,
            "screenshots": shots,
        }),
    )?;

    // What the browser did is real: the enrolment token it showed enrols an agent …
    let token = out["enrol_token"].as_str().context("enrol token")?;
    let edge9 = Agent::new(root.path(), "edge-9", "")?;
    let (code, _, err) = edge9.enroll(token)?;
    ensure!(code == 0, "the token from the console enrols edge-9: {err}");
    // … the API token it showed works, with the one scope picked …
    let token = out["api_token"].as_str().context("api token")?;
    let reporting = admin.with_token(Some(token));
    ensure!(reporting.get("/v1/jobs").await?.status == 200, "the console's token reads results");
    ensure!(reporting.get("/v1/agents").await?.status == 403, "and nothing else");
    // … the role change, the disabling and the revocation happened …
    let users = ok(&admin, "GET", "/v1/users", Value::Null).await?;
    let spare = users["users"].as_array().context("users")?.iter().find(|u| u["name"] == "spare").context("spare")?;
    ensure!(spare["role"] == "editor" && spare["disabled"] == true, "{spare}");
    let agents = ok(&admin, "GET", "/v1/agents", Value::Null).await?;
    ensure!(
        agents["agents"].as_array().context("agents")?.iter().any(|a| a["name"] == "rogue" && a["status"] == "revoked"),
        "rogue revoked: {agents}"
    );
    // … the project is shared with vi as view-app …
    let pid = out["project_id"].as_str().context("project id")?;
    let p = ok(&admin, "GET", &format!("/v1/projects/{pid}"), Value::Null).await?;
    ensure!(p["grants"] == json!([{ "user": "vi", "access": "view-app" }]), "grants: {}", p["grants"]);
    // … and every step is in the audit log under the user's session.
    let audit = ok(&admin, "GET", "/v1/audit?limit=1000", Value::Null).await?;
    let events = audit["events"].as_array().context("events")?;
    let by = |actor: &str, action: &str| {
        events.iter().any(|e| {
            e["actor"] == actor
                && e["action"] == action
                && e["outcome"] == "ok"
                && e["credential"].as_str().is_some_and(|c| c.starts_with("session:"))
        })
    };
    for (actor, action) in [
        ("admin", "enrollment_tokens.create"),
        ("admin", "shares.create"),
        ("admin", "session.delete"),
        ("ed", "jobs.dispatch"),
        ("ed", "projects.create"),
        ("ed", "projects.run"),
        ("ed", "projects.grant"),
        ("ed", "embed_tokens.create"),
        ("vi", "projects.read"),
    ] {
        ensure!(by(actor, action), "audit: no {action} by {actor} with a session");
    }
    ensure!(
        events.iter().any(|e| e["action"] == "groups.create" && e["outcome"] == "denied" && e["actor"] == "admin"),
        "the forged request without CSRF token is audited as denied"
    );
    let pngs = std::fs::read_dir(&shots)?.count();
    ensure!(pngs >= 9, "screenshots kept in {}: {pngs}", shots.display());
    Ok(())
}

/// Starts a control plane whose `oidc:` section names a provider on `port` (not yet
/// running), with `extra` lines under `oidc:`.
async fn sso_control_plane(root: &Path, port: u16, extra: &str) -> Result<(outpost_e2e::ControlPlane, String)> {
    let (ca, cert, key) = outpost_e2e::certificates("Test IdP CA", &["localhost"])?;
    for (name, pem) in [("idp-ca.crt", &ca), ("idp.crt", &cert), ("idp.key", &key)] {
        std::fs::write(root.join(name), pem)?;
    }
    std::fs::write(root.join("client-secret"), "s3cret-of-the-console-client\n")?;
    let mut cp = outpost_e2e::ControlPlane::init(root)?;
    // The redirect URI in the config names the API's port before it starts: chosen here.
    let cp_port = outpost_e2e::free_port();
    cp.api_addr = format!("127.0.0.1:{cp_port}");
    let base = format!("https://localhost:{cp_port}");
    let yaml = root.join("control-plane.yaml");
    std::fs::write(
        &yaml,
        format!(
            "data_dir: {}\noidc:\n  issuer: https://localhost:{port}\n  client_id: outpost-console\n  \
             client_secret_file: {}\n  redirect_uri: {base}/console/oidc/callback\n  ca_file: {}\n{extra}",
            cp.data_dir.display(),
            root.join("client-secret").display(),
            root.join("idp-ca.crt").display(),
        ),
    )?;
    cp.config = Some(yaml);
    cp.start()?;
    Ok((cp, base))
}

/// What oidc.mjs needs to run the provider for the control plane at `base`.
fn provider_config(root: &Path, port: u16, base: &str, shots: &str) -> Value {
    json!({
        "port": port, "cert": root.join("idp.crt"), "key": root.join("idp.key"),
        "client_id": "outpost-console", "client_secret": "s3cret-of-the-console-client",
        "redirect_uri": format!("{base}/console/oidc/callback"), "base_url": base,
        "screenshots": screenshots(shots),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_sign_on_with_a_real_openid_provider_and_every_forged_answer_refused() -> Result<()> {
    browser_dir()?;
    let root = tempfile::tempdir()?;
    let port = outpost_e2e::free_port();
    let (cp, base) = sso_control_plane(root.path(), port, "  default_role: viewer\n").await?;
    let mut cfg = provider_config(root.path(), port, &base, "oidc");
    cfg["default_role"] = json!("viewer");
    let out = run_node("oidc.mjs", root.path(), cfg)?;
    ensure!(out["refusals"].as_object().map_or(0, serde_json::Map::len) == 5, "five refusals: {out}");

    // The user exists now, with the default role and no password (SSO only).
    let admin = cp.api()?;
    let users = ok(&admin, "GET", "/v1/users", Value::Null).await?;
    let alice = users["users"].as_array().context("users")?.iter().find(|u| u["name"] == "alice@example.com");
    let alice = alice.context("alice@example.com was created at her first sign-in")?;
    ensure!(alice["role"] == "viewer" && alice["has_password"] == false, "{alice}");
    // The audit log has the sign-in and each refusal with its reason.
    let audit = ok(&admin, "GET", "/v1/audit?action=session.create_sso&limit=100", Value::Null).await?;
    let events = audit["events"].as_array().context("events")?;
    ensure!(
        events.iter().any(|e| e["outcome"] == "ok" && e["actor"] == "alice@example.com"),
        "signed-in event: {events:?}"
    );
    for reason in ["wrong state", "wrong audience", "expired", "wrong nonce", "bad signature"] {
        ensure!(
            events.iter().any(|e| e["outcome"] == "denied"
                && e["status"] == 401
                && e["detail"]["error"].as_str().is_some_and(|d| d.contains(reason))),
            "no denied sign-in for {reason:?} in the audit log"
        );
    }
    // The client secret is in no log.
    ensure!(!cp.log_text().contains("s3cret-of-the-console-client"), "client secret in the log");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_default_role_single_sign_on_admits_only_users_an_admin_added() -> Result<()> {
    browser_dir()?;
    let root = tempfile::tempdir()?;
    let port = outpost_e2e::free_port();
    let (cp, base) = sso_control_plane(root.path(), port, "  map_by: email\n").await?;
    let admin = cp.api()?;
    ok(&admin, "POST", "/v1/users", json!({ "name": "bob@example.com", "role": "editor" })).await?;
    let mut cfg = provider_config(root.path(), port, &base, "oidc-existing-only");
    cfg["scenario"] = json!("existing-only");
    let out = run_node("oidc.mjs", root.path(), cfg)?;
    ensure!(out["refusals"]["unknown-user"].is_string(), "{out}");
    let users = ok(&admin, "GET", "/v1/users", Value::Null).await?;
    let names: Vec<&str> =
        users["users"].as_array().context("users")?.iter().filter_map(|u| u["name"].as_str()).collect();
    ensure!(!names.iter().any(|n| n.starts_with("mallory")), "no user was created: {names:?}");
    Ok(())
}

/// The SQL of the workbench test's first job: its comment names it.
const NAMED_SQL: &str =
    "-- Revenue by region\nSELECT region, SUM(amount) AS revenue FROM orders GROUP BY region ORDER BY region";
/// A line chart's rows in long form, `(x, series, y)`, in the millions: one line per
/// region, compact ticks.
const LINE_SQL: &str = "SELECT CAST(substr(month, 6, 2) AS INTEGER) AS m, region, ROUND(SUM(amount) * 1000) AS sales \
                        FROM orders GROUP BY month, region ORDER BY month, region";
/// A table whose cells a spreadsheet would misread: a formula, a NULL, a comma, a quote.
const CSV_SQL: &str = "SELECT '=1+2' AS f, NULL AS n, 'a,b' AS c, -5 AS neg, 'say \"hi\"' AS q";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_chromium_an_analyst_runs_with_ctrl_enter_reads_errors_beside_the_editor_and_edits_reruns_and_downloads_named_jobs(
) -> Result<()> {
    browser_dir()?;
    chromium()?;
    let root = tempfile::tempdir()?;
    let (cp, _agent) = outpost_e2e::start_pair(root.path(), "edge-1", "", &[]).await?;
    let admin = cp.api()?;
    let password = "editor-pass-1234";
    ok(&admin, "POST", "/v1/users", json!({ "name": "ed", "role": "editor", "password": password })).await?;
    ok(&admin, "POST", "/v1/shares", json!({ "agent": "edge-1", "connection": "sample", "user": "ed" })).await?;
    let out = run_node(
        "workbench.mjs",
        root.path(),
        json!({
            "base_url": format!("https://localhost:{}", cp.api_addr.rsplit(':').next().unwrap_or_default()),
            "password": password, "named_sql": NAMED_SQL, "csv_sql": CSV_SQL, "line_sql": LINE_SQL,
            "csv_expected": "f,n,c,neg,q\r\n'=1+2,,\"a,b\",-5,\"say \"\"hi\"\"\"\r\n",
            "screenshots": screenshots("workbench"),
        }),
    )?;
    // The re-run is the same spec, dispatched again by ed (a new job, signed anew).
    let spec = |id: &str| {
        let path = format!("/v1/jobs/{id}/spec");
        let admin = admin.clone();
        async move { ok(&admin, "GET", &path, Value::Null).await }
    };
    let first = spec(out["first_job"].as_str().context("first job")?).await?;
    let again = spec(out["rerun_job"].as_str().context("re-run job")?).await?;
    for k in ["agent", "connection", "sql", "params", "render", "cache"] {
        ensure!(first[k] == again[k], "{k}: {} vs {}", first[k], again[k]);
    }
    ensure!(again["requester"]["user"] == "ed" && again["issued_at"].as_i64() >= first["issued_at"].as_i64());
    let listed = ok(&admin, "GET", "/v1/jobs?owner=ed", Value::Null).await?;
    // The query page's schema panel ran a catalog job for ed too; not one of ed's queries.
    let queries = listed["jobs"].as_array().map_or(0, |js| js.iter().filter(|j| j["name"] != "Schema catalog").count());
    ensure!(queries == 5, "ed ran 5 jobs: {listed}");
    // The line chart's options went out as the API names them, and only those set.
    let line = spec(out["line_job"].as_str().context("line job")?).await?;
    ensure!(
        line["render"] == json!({ "kind": "line", "x": "m", "y": ["sales"], "series": "region", "format": "compact" }),
        "{}",
        line["render"]
    );
    // Every download was a read of the result, audited under ed's session.
    let audit = ok(&admin, "GET", "/v1/audit?action=jobs.result&limit=1000", Value::Null).await?;
    ensure!(
        audit["events"].as_array().context("events")?.iter().any(|e| e["actor"] == "ed"
            && e["target"] == out["table_job"]
            && e["credential"].as_str().is_some_and(|c| c.starts_with("session:"))),
        "the CSV download is audited"
    );
    Ok(())
}

/// The SQL the editor test types and runs.
const EDITOR_SQL: &str = "SELECT region, SUM(amount) AS revenue FROM orders GROUP BY region ORDER BY region";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_chromium_the_sql_editor_highlights_completes_the_schema_runs_with_ctrl_enter_and_breaks_no_csp(
) -> Result<()> {
    browser_dir()?;
    chromium()?;
    let root = tempfile::tempdir()?;
    let (cp, _agent) = outpost_e2e::start_pair(root.path(), "edge-1", "", &[]).await?;
    let admin = cp.api()?;
    let password = "editor-pass-1234";
    ok(&admin, "POST", "/v1/users", json!({ "name": "ed", "role": "editor", "password": password })).await?;
    ok(&admin, "POST", "/v1/shares", json!({ "agent": "edge-1", "connection": "sample", "user": "ed" })).await?;
    let out = run_node(
        "editor.mjs",
        root.path(),
        json!({
            "base_url": format!("https://localhost:{}", cp.api_addr.rsplit(':').next().unwrap_or_default()),
            "password": password, "sql": EDITOR_SQL, "regions": ["North", "South"],
            // The sample database's tables, as the schema browser gives them to the page.
            "schema": {
                "orders": ["id", "region", "month", "product", "quantity", "amount"],
                "monthly_revenue": [{ "name": "month", "type": "text" }, { "name": "region", "type": "text" },
                    { "name": "revenue", "type": "real", "masked": true }],
            },
            "screenshots": screenshots("editor"),
        }),
    )?;
    // The job the browser ran with Ctrl-Enter carries the SQL typed into the editor.
    let id = out["job"].as_str().context("job id")?;
    let spec = ok(&admin, "GET", &format!("/v1/jobs/{id}/spec"), Value::Null).await?;
    ensure!(spec["sql"] == EDITOR_SQL && spec["requester"]["user"] == "ed", "{spec}");
    Ok(())
}
