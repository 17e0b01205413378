//! The control plane's own hardening, end to end against the real binaries: a failure's
//! text (which may quote the SQL or a value) never reaches a caller who may not read the
//! SQL, in any answer that carries it; the sign-in audit actor is never the raw typed
//! name; the audit filter's LIKE wildcards are escaped.

use anyhow::{ensure, Context as _, Result};
use outpost_e2e::client::Api;
use outpost_e2e::{call, ok_json, share_connection, user_with_token};
use serde_json::json;

const PASSWORD: &str = outpost_e2e::TEST_PASSWORD;
/// A column that does not exist: SQLite's error text names it and quotes the statement.
const BAD_COLUMN: &str = "cph_nosuch_col";

/// A client carrying `user`'s session cookie (for console pages).
async fn session(api: &Api, user: &str) -> Result<Api> {
    let anon = api.with_token(None);
    let res = call(&anon, "POST", "/v1/sessions", Some(&json!({ "user": user, "password": PASSWORD }))).await?;
    ensure!(res.status == 201, "sign-in of {user}: {} {}", res.status, res.text());
    let cookie = res.header("set-cookie").context("no Set-Cookie")?;
    let pair = cookie.split(';').next().context("cookie")?.to_owned();
    let csrf = res.json()?["csrf_token"].as_str().context("csrf")?.to_owned();
    Ok(anon.with_header("cookie", &pair).with_header("x-csrf-token", &csrf))
}

/// What a caller who may not read the SQL must never see in any answer.
fn assert_no_sql(what: &str, text: &str) {
    for needle in [BAD_COLUMN, "FROM orders", "SELECT", "no such column"] {
        assert!(!text.contains(needle), "{what} shows {needle:?}: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_that_quotes_the_sql_reaches_only_those_who_may_read_the_sql() -> Result<()> {
    let root = tempfile::tempdir()?;
    let (cp, _agent) = outpost_e2e::start_pair(root.path(), "edge-1", "", &[]).await?;
    let admin = cp.api()?;
    let editor = user_with_token(&admin, "ed", "editor").await?;
    let app_viewer = user_with_token(&admin, "vi", "viewer").await?;
    let logic_viewer = user_with_token(&admin, "lo", "viewer").await?;
    share_connection(&admin, "edge-1", "sample", "ed").await?;
    let bad_sql = format!("SELECT region, {BAD_COLUMN} AS v FROM orders WHERE region = $1");
    let project = ok_json(
        &editor,
        "POST",
        "/v1/projects",
        Some(&json!({ "name": "Broken", "queries": [
            { "name": "Broken chart", "agent": "edge-1", "connection": "sample", "sql": bad_sql,
              "render": { "kind": "bar", "x": "region", "y": ["v"] }, "customer_param": 1 }] })),
    )
    .await?;
    let pid = project["id"].as_str().context("project id")?.to_owned();
    ok_json(&editor, "PUT", &format!("/v1/projects/{pid}/grants/vi"), Some(&json!({ "access": "view-app" }))).await?;
    ok_json(&editor, "PUT", &format!("/v1/projects/{pid}/grants/lo"), Some(&json!({ "access": "view-logic" }))).await?;

    // The view-app collaborator runs the project: the job is theirs, its SQL is not.
    let run =
        ok_json(&app_viewer, "POST", &format!("/v1/projects/{pid}/run"), Some(&json!({ "customer": "North" }))).await?;
    let job = run["jobs"][0]["id"].as_str().context("job id")?.to_owned();
    let res = call(&app_viewer, "GET", &format!("/v1/jobs/{job}/result?wait=30"), None).await?;
    assert_eq!(res.status, 409, "the query fails: {}", res.text());
    let failed = res.json()?;
    assert_eq!(failed["reason"], "query_failed");
    assert_eq!(failed["message"], "the query failed (query_failed)");
    assert_no_sql("the result answer to view-app", &res.text());

    // Those who may read the SQL see the database's own words: the owner, a view-logic
    // collaborator, an admin.
    for (who, api) in [("owner", &editor), ("view-logic", &logic_viewer), ("admin", &admin)] {
        let v = ok_json(api, "GET", &format!("/v1/jobs/{job}"), None).await?;
        let msg = v["reason"]["message"].as_str().unwrap_or_default();
        assert!(msg.contains(BAD_COLUMN), "{who} reads the failure text: {v}");
        let res = call(api, "GET", &format!("/v1/jobs/{job}/result"), None).await?;
        assert!(res.text().contains(BAD_COLUMN), "{who} reads it in the result answer: {}", res.text());
        let r = ok_json(api, "GET", &format!("/v1/projects/{pid}/results?customer=North"), None).await?;
        assert!(r.to_string().contains(BAD_COLUMN), "{who} reads it in the project's results: {r}");
        // Who ran which SQL: the job's own SQL, parameters and signed requester.
        let spec = ok_json(api, "GET", &format!("/v1/jobs/{job}/spec"), None).await?;
        assert_eq!(spec["sql"], bad_sql.as_str(), "{who}: {spec}");
        assert_eq!(spec["params"], json!([{ "type": "text", "value": "North" }]), "{who}: {spec}");
        assert_eq!(spec["requester"]["user"], "vi", "{who}: the viewer ran it: {spec}");
        assert_eq!(spec["requester"]["project"], pid.as_str(), "{who}: {spec}");
        assert_eq!(spec["connection"], "sample");
    }
    let res = call(&app_viewer, "GET", &format!("/v1/jobs/{job}/spec"), None).await?;
    assert_eq!(res.status, 403, "view-app never reads the SQL: {}", res.text());
    assert_no_sql("the spec answer to view-app", &res.text());

    // The view-app collaborator, in every answer that carries the failure.
    let v = ok_json(&app_viewer, "GET", &format!("/v1/jobs/{job}"), None).await?;
    assert_eq!(v["state"], "failed");
    assert_eq!(v["reason"], json!({ "code": "query_failed", "message": "the query failed (query_failed)" }));
    assert_no_sql("the job view to view-app", &v.to_string());
    let list = ok_json(&app_viewer, "GET", "/v1/jobs", None).await?;
    ensure!(list.to_string().contains(&job), "the job is in their list: {list}");
    assert_no_sql("the job list to view-app", &list.to_string());
    let r = ok_json(&app_viewer, "GET", &format!("/v1/projects/{pid}/results?customer=North"), None).await?;
    assert_eq!(r["queries"][0]["job"]["reason"]["code"], "query_failed", "{r}");
    assert_no_sql("the project's results to view-app", &r.to_string());

    // The console pages built on those answers.
    let browser = session(&cp.api()?, "vi").await?;
    for page in
        [format!("/console/jobs/{job}"), format!("/console/jobs/{job}/result"), format!("/console/projects/{pid}")]
    {
        let res = call(&browser, "GET", &page, None).await?;
        assert_eq!(res.status, 200, "{page}: {}", res.text());
        assert_no_sql(&format!("console page {page} to view-app"), &res.text());
    }
    let owner_browser = session(&cp.api()?, "ed").await?;
    let res = call(&owner_browser, "GET", &format!("/console/jobs/{job}"), None).await?;
    assert!(res.text().contains(BAD_COLUMN), "the owner's console page shows the failure text");
    assert!(res.text().contains("data-sql") && res.text().contains("Requested by <strong>vi</strong>"), "and the SQL");

    // An embed viewer never reads SQL.
    let t =
        ok_json(&editor, "POST", &format!("/v1/projects/{pid}/embed-tokens"), Some(&json!({ "customer": "North" })))
            .await?;
    let embed = admin.with_token(Some(t["token"].as_str().context("embed token")?));
    let res = call(&embed, "GET", "/v1/embed/results/0?wait=5", None).await?;
    assert_eq!(res.status, 409, "{}", res.text());
    assert_eq!(res.json()?["message"], "the query failed (query_failed)");
    assert_no_sql("the embed result", &res.text());
    Ok(())
}

/// Runs `sql` on the control plane's database directly, as damage from outside would.
fn damage(cp: &outpost_e2e::ControlPlane, sql: &str) -> Result<()> {
    match &cp.pg {
        Some(db) => {
            let (code, _, err) =
                outpost_e2e::run_cmd(std::path::Path::new("psql"), &["-X", "-q", "-d", &db.url, "-c", sql], None)?;
            ensure!(code == 0, "psql: {err}");
        }
        None => {
            let c = rusqlite::Connection::open(cp.data_dir.join("control-plane.db"))?;
            c.busy_timeout(std::time::Duration::from_secs(10))?;
            c.execute_batch(sql)?;
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_row_that_cannot_be_read_fails_alone_and_the_job_behind_it_runs() -> Result<()> {
    let root = tempfile::tempdir()?;
    let (cp, mut agent) = outpost_e2e::enrolled_offline(root.path()).await?;
    let job = json!({ "agent": "edge-1", "connection": "sample", "sql": "SELECT 42 AS n",
                      "render": { "kind": "scalar", "column": "n" } });
    let bad = cp.dispatch(job.clone()).await?;
    let good = cp.dispatch(job).await?;
    damage(&cp, &format!("UPDATE jobs SET envelope = '{{\"payload\": CPH-ROW-TEXT' WHERE id = '{bad}'"))?;
    // The agent asks for one job at a time: the damaged one is first in line.
    agent.start_connected()?;
    let (status, body) = cp.wait_result(&good).await?;
    assert_eq!(status, 200, "the job behind the damaged one runs: {body}");
    assert!(body.contains("42"), "{body}");
    let v = cp.job(&bad).await?;
    assert_eq!(v["state"], "failed", "{v}");
    assert_eq!(v["reason"]["code"], "corrupt_job", "{v}");
    assert!(!v.to_string().contains("CPH-ROW-TEXT"), "the row's content is never quoted: {v}");
    let audit = ok_json(&cp.api()?, "GET", "/v1/audit?action=jobs.corrupt", None).await?;
    let events = audit["events"].as_array().context("events")?;
    assert_eq!(events.len(), 1, "{audit}");
    assert_eq!(
        (events[0]["target"].as_str(), events[0]["actor"].as_str()),
        (Some(bad.as_str()), Some("control-plane"))
    );
    assert!(!cp.log_text().contains("CPH-ROW-TEXT"), "nor logged");
    assert!(cp.log_text().contains("corrupt_job"), "the control plane logs it");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_typed_into_the_name_field_never_reaches_the_audit_log() -> Result<()> {
    let root = tempfile::tempdir()?;
    let mut cp = outpost_e2e::ControlPlane::init(root.path())?;
    cp.start()?;
    let admin = cp.api()?;
    user_with_token(&admin, "ana", "viewer").await?;
    let anon = admin.with_token(None);
    let typed = "Pa55word-typed-in-the-name-field";
    for (user, password) in [(typed, "whatever-password"), (typed, "another-password"), ("ana", "wrong-password-x")] {
        let res = call(&anon, "POST", "/v1/sessions", Some(&json!({ "user": user, "password": password }))).await?;
        assert_eq!(res.status, 401, "{}", res.text());
    }
    let audit = ok_json(&admin, "GET", "/v1/audit?action=session.create", None).await?;
    assert!(!audit.to_string().contains(typed), "the typed name is not stored: {audit}");
    let actors: Vec<&str> =
        audit["events"].as_array().context("events")?.iter().filter_map(|e| e["actor"].as_str()).collect();
    assert_eq!(actors.len(), 3, "{audit}");
    assert!(actors[0].starts_with("unknown:") && actors[0].len() == "unknown:".len() + 32, "{actors:?}");
    assert_eq!(actors[0], actors[1], "the same typed name gives the same stand-in, so guesses can be counted");
    assert_eq!(actors[2], "ana", "a name that matches an account is recorded as that account");
    Ok(())
}

/// The `jobs.envelope` column of job `id`, read straight from the control plane's database.
fn stored_envelope(cp: &outpost_e2e::ControlPlane, id: &str) -> Result<String> {
    let sql = format!("SELECT envelope FROM jobs WHERE id = '{id}'");
    match &cp.pg {
        Some(db) => {
            let (code, out, err) =
                outpost_e2e::run_cmd(std::path::Path::new("psql"), &["-X", "-At", "-d", &db.url, "-c", &sql], None)?;
            ensure!(code == 0, "psql: {err}");
            Ok(out.trim().to_owned())
        }
        None => {
            let c = rusqlite::Connection::open_with_flags(
                cp.data_dir.join("control-plane.db"),
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
            )?;
            Ok(c.query_row(&sql, [], |r| r.get(0))?)
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jobs_sql_is_sealed_at_rest_and_the_job_still_runs() -> Result<()> {
    let root = tempfile::tempdir()?;
    let (cp, _agent) = outpost_e2e::start_pair(root.path(), "edge-1", "", &[]).await?;
    let canary = "CPH-ENVELOPE-CANARY-7";
    let id = cp
        .dispatch(json!({ "agent": "edge-1", "connection": "sample", "sql": format!("SELECT '{canary}' AS n"),
                          "render": { "kind": "scalar", "column": "n" } }))
        .await?;
    let (status, body) = cp.wait_result(&id).await?;
    assert_eq!(status, 200, "the agent got the job and ran it: {body}");
    assert!(body.contains(canary), "{body}");
    let stored = stored_envelope(&cp, &id)?;
    assert!(stored.starts_with("sealed1:"), "{stored}");
    assert!(!stored.contains(canary), "{stored}");
    // Whatever a reader of the database tries, the SQL is not there: the column is no
    // envelope, and no base64 in it decodes to the SQL.
    assert!(serde_json::from_str::<outpost_protocol::Envelope>(&stored).is_err(), "an envelope in clear: {stored}");
    let decoded = outpost_protocol::encoding::b64_decode(stored.trim_start_matches("sealed1:"))?;
    assert!(!String::from_utf8_lossy(&decoded).contains(canary), "sealed, not encoded");
    Ok(())
}

/// A dispatch to a connection the agent does not have lists the agent's connections to
/// an admin only; an editor learns no connection that was not shared with them, and a
/// view-app collaborator running a project learns neither agent nor connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_connection_is_named_to_each_caller_only_as_far_as_they_may_see() -> Result<()> {
    let root = tempfile::tempdir()?;
    let (cp, _agent) = outpost_e2e::start_pair(root.path(), "edge-1", "", &[]).await?;
    let admin = cp.api()?;
    // Wait until the agent has reported its connection names.
    outpost_e2e::eventually("the agent's connection names", std::time::Duration::from_secs(30), || async {
        Ok(ok_json(&admin, "GET", "/v1/agents", None).await?["agents"][0]["connections"] == json!(["sample"]))
    })
    .await?;
    let editor = user_with_token(&admin, "ed", "editor").await?;
    let viewer = user_with_token(&admin, "vi", "viewer").await?;
    // The editor has a share for a connection the agent no longer has (and not `sample`).
    ok_json(&admin, "POST", "/v1/shares", Some(&json!({ "agent": "edge-1", "connection": "gone", "user": "ed" })))
        .await?;
    let job = json!({ "agent": "edge-1", "connection": "gone", "sql": "SELECT 1 AS n",
                      "render": { "kind": "scalar", "column": "n" } });
    let res = call(&admin, "POST", "/v1/jobs", Some(&job)).await?;
    assert_eq!(res.status, 400, "{}", res.text());
    assert!(res.text().contains("its connections, as last reported: sample"), "the admin is told: {}", res.text());
    let res = call(&editor, "POST", "/v1/jobs", Some(&job)).await?;
    assert_eq!(res.status, 400, "{}", res.text());
    assert!(!res.text().contains("sample") && res.text().contains("GET /v1/agents"), "{}", res.text());
    // A project of the editor's on that connection, run by a view-app collaborator.
    let project = ok_json(
        &editor,
        "POST",
        "/v1/projects",
        Some(&json!({ "name": "Gone", "queries": [
            { "name": "q", "agent": "edge-1", "connection": "gone", "sql": "SELECT 1 AS n",
              "render": { "kind": "scalar", "column": "n" } }] })),
    )
    .await?;
    let pid = project["id"].as_str().context("project id")?.to_owned();
    ok_json(&editor, "PUT", &format!("/v1/projects/{pid}/grants/vi"), Some(&json!({ "access": "view-app" }))).await?;
    let res = call(&viewer, "POST", &format!("/v1/projects/{pid}/run"), Some(&json!({}))).await?;
    assert_eq!(res.status, 400, "{}", res.text());
    for hidden in ["edge-1", "gone", "sample"] {
        assert!(!res.text().contains(hidden), "view-app learns {hidden}: {}", res.text());
    }
    assert!(res.text().contains("ask its owner"), "{}", res.text());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_that_leaves_the_body_unread_says_connection_close_and_a_read_one_keeps_alive() -> Result<()> {
    let root = tempfile::tempdir()?;
    let mut cp = outpost_e2e::ControlPlane::init(root.path())?;
    cp.start()?;
    let body = json!({"agent": "edge-1", "connection": "sample", "sql": "SELECT 1", "render": {"kind": "table"}});
    // No token: refused before the body is read (and an unknown path, and a wrong method).
    for (method, path) in [("POST", "/v1/jobs"), ("POST", "/v1/nowhere"), ("PUT", "/v1/jobs")] {
        let mut conn = cp.api()?.with_token(None).connect().await?;
        let res = conn.request(method.parse()?, path, Some(serde_json::to_vec(&body)?)).await?;
        assert!(res.status >= 400, "{method} {path}: {}", res.status);
        assert_eq!(res.header("connection").as_deref(), Some("close"), "{method} {path}: {}", res.status);
    }
    // A body the server read (even one it then refuses) leaves the connection usable.
    let mut conn = cp.api()?.connect().await?;
    let res = conn.request("POST".parse()?, "/v1/jobs", Some(b"{\"agent\": 5}".to_vec())).await?;
    assert_eq!(res.status, 400, "{}", res.text());
    assert_eq!(res.header("connection"), None);
    let again = conn.get("/v1/agents").await?;
    assert_eq!(again.status, 200, "the same connection serves the next request");
    // A request without a body is refused without closing.
    let mut anon = cp.api()?.with_token(None).connect().await?;
    assert_eq!(anon.get("/v1/agents").await?.status, 401);
    assert_eq!(anon.get("/v1/agents").await?.status, 401, "still open");
    Ok(())
}
