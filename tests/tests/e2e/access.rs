//! Access control end to end, over real TLS against the real `outpost-control-plane`
//! binary (and a real agent where results matter): every endpoint × every role, data
//! access, projects and grants, sessions and CSRF, API token revocation, embed tokens,
//! results sealed at rest and gone after retention, and the audit log.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::{ensure, Context as _, Result};
use outpost_e2e::client::{Api, HttpResponse};
use outpost_e2e::{call, eventually, ok_json, share_connection, user_with_token, Agent, ControlPlane};
use serde_json::{json, Value};

const PASSWORD: &str = outpost_e2e::TEST_PASSWORD;
const BAR_SQL: &str = "SELECT region, SUM(amount) AS revenue FROM orders GROUP BY region ORDER BY region";
const COUNT_SQL: &str = "SELECT ROUND(SUM(amount), 2) AS n FROM orders WHERE region = $1";

/// Signs in and returns a client that sends the session cookie and the CSRF token.
async fn session(api: &Api, user: &str, password: &str) -> Result<(Api, HttpResponse)> {
    let anon = api.with_token(None);
    let res = call(&anon, "POST", "/v1/sessions", Some(&json!({ "user": user, "password": password }))).await?;
    ensure!(res.status == 201, "sign-in of {user}: {} {}", res.status, res.text());
    let cookie = res.header("set-cookie").context("no Set-Cookie")?;
    let pair = cookie.split(';').next().context("cookie")?.to_owned();
    let csrf = res.json()?["csrf_token"].as_str().context("csrf")?.to_owned();
    Ok((anon.with_header("cookie", &pair).with_header("x-csrf-token", &csrf), res))
}

fn project_body(agent: &str, connection: &str, name: &str) -> Value {
    json!({
        "name": name,
        "queries": [
            { "name": "Revenue by region", "agent": agent, "connection": connection, "sql": BAR_SQL,
              "render": { "kind": "bar", "x": "region", "y": ["revenue"], "title": "Revenue" } },
            { "name": "Orders of this customer", "agent": agent, "connection": connection, "sql": COUNT_SQL,
              "render": { "kind": "scalar", "column": "n" }, "customer_param": 1 }
        ]
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Anonymous,
    Viewer,
    Editor,
    Admin,
}

/// Who may call a route: letters of roles (V, E, A), or a special kind.
#[derive(Debug, Clone, Copy)]
enum Allowed {
    Roles(&'static str),
    /// Anyone, signed in or not.
    Public,
    /// Only with a session cookie (every signed-in role).
    Session,
    /// Only with an embed token: every API credential is refused 401.
    Embed,
    /// Only with an embed token that lets its viewer change filters: every API credential
    /// is refused 401, and this table's token (which lets its viewer change nothing) 403;
    /// tests/tests/e2e/embed_viewer_filters.rs has the token that may.
    EmbedViewer,
}

struct Row {
    method: &'static str,
    path: &'static str,
    body: Option<&'static str>,
    allowed: Allowed,
}

macro_rules! row {
    ($m:literal, $p:literal, $b:expr, $a:expr) => {
        Row { method: $m, path: $p, body: $b, allowed: $a }
    };
}

/// Every endpoint of the API with who may call it; `{…}` are filled per call.
fn table() -> Vec<Row> {
    use Allowed::*;
    vec![
        row!("POST", "/v1/sessions", Some(r#"{"user": "{me}", "password": "{password}"}"#), Public),
        row!("DELETE", "/v1/sessions/current", None, Session),
        row!("GET", "/v1/me", None, Roles("VEA")),
        row!("GET", "/v1/users", None, Roles("A")),
        row!("POST", "/v1/users", Some(r#"{"name": "new-{n}", "role": "viewer"}"#), Roles("A")),
        row!("PATCH", "/v1/users/{fresh_user}", Some(r#"{"role": "editor"}"#), Roles("A")),
        row!("GET", "/v1/groups", None, Roles("A")),
        row!("POST", "/v1/groups", Some(r#"{"name": "grp-{n}"}"#), Roles("A")),
        row!("DELETE", "/v1/groups/{fresh_group}", None, Roles("A")),
        row!("PUT", "/v1/groups/{fresh_group}/members/vi", None, Roles("A")),
        row!("DELETE", "/v1/groups/{fresh_group}/members/vi", None, Roles("A")),
        row!("GET", "/v1/shares", None, Roles("A")),
        row!("POST", "/v1/shares", Some(r#"{"agent": "edge-1", "connection": "c{n}", "user": "vi"}"#), Roles("A")),
        row!("DELETE", "/v1/shares/{fresh_share}", None, Roles("A")),
        row!("GET", "/v1/agents", None, Roles("EA")),
        row!("POST", "/v1/agents/spare/revoke", None, Roles("A")),
        row!("GET", "/v1/agents/edge-1/audit-head", None, Roles("A")),
        row!("GET", "/v1/agents/edge-1/connections/sample/schema", None, Roles("EA")),
        row!("POST", "/v1/enrollment-tokens", Some(r#"{"agent": "new-agent-{n}"}"#), Roles("A")),
        row!("GET", "/v1/enrollment-tokens", None, Roles("A")),
        row!("DELETE", "/v1/enrollment-tokens/{fresh_enrol_token}", None, Roles("A")),
        row!("GET", "/v1/jobs", None, Roles("VEA")),
        row!(
            "POST",
            "/v1/jobs",
            Some(
                r#"{"agent": "edge-1", "connection": "sample", "sql": "SELECT 1 AS n", "render": {"kind": "scalar", "column": "n"}}"#
            ),
            Roles("EA")
        ),
        row!("GET", "/v1/jobs/{job}", None, Roles("EA")),
        row!("GET", "/v1/jobs/{job}/result", None, Roles("EA")),
        row!("GET", "/v1/jobs/{job}/spec", None, Roles("EA")),
        row!("POST", "/v1/jobs/{editor_job}/cancel", None, Roles("EA")),
        row!("GET", "/v1/projects", None, Roles("VEA")),
        row!("POST", "/v1/projects", Some("{project_body}"), Roles("EA")),
        row!("GET", "/v1/projects/{project}", None, Roles("VEA")),
        row!("PUT", "/v1/projects/{project}", Some("{project_body}"), Roles("EA")),
        row!("DELETE", "/v1/projects/{editor_project}", None, Roles("EA")),
        row!("PUT", "/v1/projects/{project}/grants/{fresh_user}", Some(r#"{"access": "view-app"}"#), Roles("EA")),
        row!("DELETE", "/v1/projects/{project}/grants/{fresh_user}", None, Roles("EA")),
        row!("POST", "/v1/projects/{project}/run", Some(r#"{"customer": "north"}"#), Roles("VEA")),
        row!("GET", "/v1/projects/{project}/results", None, Roles("VEA")),
        row!("POST", "/v1/projects/{project}/embed-tokens", Some(r#"{"customer": "north"}"#), Roles("EA")),
        row!("POST", "/v1/projects/{editor_project}/embed-tokens/revoke", None, Roles("EA")),
        row!("GET", "/v1/embed/project", None, Embed),
        row!("GET", "/v1/embed/results/0", None, Embed),
        row!("POST", "/v1/embed/run", Some(r#"{}"#), EmbedViewer),
        row!("GET", "/v1/tokens", None, Roles("VEA")),
        row!("POST", "/v1/tokens", Some(r#"{"name": "t{n}", "scopes": ["results:read"]}"#), Roles("VEA")),
        row!("DELETE", "/v1/tokens/{own_token}", None, Roles("VEA")),
        row!("GET", "/v1/audit", None, Roles("A")),
        row!("POST", "/v1/results/purge", Some("{}"), Roles("A")),
        row!("GET", "/v1/openapi.json", None, Public),
    ]
}

struct World {
    cp: ControlPlane,
    admin: Api,
    editor: Api,
    viewer: Api,
    anon: Api,
    project: String,
    job: String,
    embed_token: String,
    n: AtomicU32,
}

impl World {
    fn api(&self, role: Role) -> &Api {
        match role {
            Role::Anonymous => &self.anon,
            Role::Viewer => &self.viewer,
            Role::Editor => &self.editor,
            Role::Admin => &self.admin,
        }
    }

    fn name(role: Role) -> &'static str {
        match role {
            Role::Anonymous | Role::Viewer => "vi",
            Role::Editor => "ed",
            Role::Admin => "admin",
        }
    }

    /// Fills the `{…}` of `text`, creating fresh objects where asked.
    async fn fill(&self, role: Role, text: &str) -> Result<String> {
        let n = self.n.fetch_add(1, Ordering::Relaxed);
        let mut v: HashMap<&str, String> = HashMap::new();
        v.insert("{n}", n.to_string());
        v.insert("{me}", Self::name(role).into());
        v.insert("{password}", PASSWORD.into());
        v.insert("{project}", self.project.clone());
        v.insert("{job}", self.job.clone());
        v.insert("{project_body}", project_body("edge-1", "sample", &format!("p{n}")).to_string());
        if text.contains("{fresh_user}") {
            let name = format!("fresh-{n}");
            ok_json(&self.admin, "POST", "/v1/users", Some(&json!({ "name": name, "role": "viewer" }))).await?;
            v.insert("{fresh_user}", name);
        }
        if text.contains("{fresh_group}") {
            let name = format!("fg-{n}");
            ok_json(&self.admin, "POST", "/v1/groups", Some(&json!({ "name": name }))).await?;
            v.insert("{fresh_group}", name);
        }
        if text.contains("{fresh_share}") {
            let s = ok_json(
                &self.admin,
                "POST",
                "/v1/shares",
                Some(&json!({ "agent": "edge-1", "connection": format!("fs{n}"), "user": "vi" })),
            )
            .await?;
            v.insert("{fresh_share}", s["id"].as_str().context("share id")?.into());
        }
        if text.contains("{fresh_enrol_token}") {
            let t = ok_json(&self.admin, "POST", "/v1/enrollment-tokens", Some(&json!({ "agent": format!("ft-{n}") })))
                .await?;
            v.insert("{fresh_enrol_token}", t["id"].as_str().context("enrolment token id")?.into());
        }
        if text.contains("{editor_job}") {
            let j = ok_json(
                &self.editor,
                "POST",
                "/v1/jobs",
                Some(&json!({ "agent": "edge-1", "connection": "sample", "sql": "SELECT 1 AS n", "render": { "kind": "scalar", "column": "n" } })),
            )
            .await?;
            v.insert("{editor_job}", j["id"].as_str().context("job id")?.into());
        }
        if text.contains("{editor_project}") {
            let p = ok_json(&self.editor, "POST", "/v1/projects", Some(&project_body("edge-1", "sample", "doomed")))
                .await?;
            v.insert("{editor_project}", p["id"].as_str().context("project id")?.into());
        }
        if text.contains("{own_token}") {
            let owner = if role == Role::Anonymous { &self.viewer } else { self.api(role) };
            let t =
                ok_json(owner, "POST", "/v1/tokens", Some(&json!({ "name": "doomed", "scopes": ["results:read"] })))
                    .await?;
            v.insert("{own_token}", t["id"].as_str().context("token id")?.into());
        }
        let mut out = text.to_owned();
        for (k, val) in &v {
            out = out.replace(k, val);
        }
        Ok(out)
    }
}

/// What an admin can see of the state, without the fields that change by merely being
/// looked at (last use, last seen).
async fn fingerprint(admin: &Api) -> Result<Value> {
    fn strip(v: &mut Value) {
        match v {
            Value::Object(m) => {
                for k in ["last_used", "last_seen", "seconds_since_seen", "offline_since", "last_sign_in"] {
                    m.remove(k);
                }
                m.values_mut().for_each(strip);
            }
            Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let mut out = serde_json::Map::new();
    for path in [
        "/v1/users",
        "/v1/groups",
        "/v1/shares",
        "/v1/projects",
        "/v1/tokens?all=true",
        "/v1/jobs?all=true&limit=1000",
        "/v1/agents",
    ] {
        let mut v = ok_json(admin, "GET", path, None).await?;
        strip(&mut v);
        out.insert(path.into(), v);
    }
    Ok(Value::Object(out))
}

async fn world(root: &std::path::Path) -> Result<World> {
    let mut cp = ControlPlane::init(root)?;
    cp.start()?;
    let admin = cp.api()?;
    // Two enrolled agents that never connect: jobs stay queued, so nothing moves under
    // the fingerprints.
    Agent::new(root, "edge-1", "")?.enroll_with(&cp).await?;
    Agent::new(root, "spare", "")?.enroll_with(&cp).await?;
    ok_json(&admin, "PATCH", "/v1/users/admin", Some(&json!({ "password": PASSWORD }))).await?;
    let editor = user_with_token(&admin, "ed", "editor").await?;
    let viewer = user_with_token(&admin, "vi", "viewer").await?;
    share_connection(&admin, "edge-1", "sample", "ed").await?;
    let p = ok_json(&editor, "POST", "/v1/projects", Some(&project_body("edge-1", "sample", "Sales"))).await?;
    let project = p["id"].as_str().context("project id")?.to_owned();
    ok_json(&editor, "PUT", &format!("/v1/projects/{project}/grants/vi"), Some(&json!({ "access": "view-app" })))
        .await?;
    ok_json(&editor, "POST", &format!("/v1/projects/{project}/run"), Some(&json!({ "customer": "north" }))).await?;
    let j = ok_json(
        &editor,
        "POST",
        "/v1/jobs",
        Some(&json!({ "agent": "edge-1", "connection": "sample", "sql": "SELECT 1 AS n", "render": { "kind": "scalar", "column": "n" } })),
    )
    .await?;
    let e = ok_json(
        &editor,
        "POST",
        &format!("/v1/projects/{project}/embed-tokens"),
        Some(&json!({ "customer": "north" })),
    )
    .await?;
    Ok(World {
        anon: admin.with_token(None),
        admin,
        editor,
        viewer,
        project,
        job: j["id"].as_str().context("job id")?.to_owned(),
        embed_token: e["token"].as_str().context("embed token")?.to_owned(),
        cp,
        n: AtomicU32::new(0),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_answers_every_role_as_the_table_says_and_a_refusal_changes_nothing() -> Result<()> {
    let root = tempfile::tempdir()?;
    let w = world(root.path()).await?;
    let rows = table();
    // The table covers the whole API: every route of the OpenAPI document, once.
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json"),
    )?)?;
    let mut documented: Vec<(String, String)> = Vec::new();
    for (path, ops) in doc["paths"].as_object().context("paths")? {
        for m in ops.as_object().context("ops")?.keys() {
            documented.push((m.to_uppercase(), path.clone()));
        }
    }
    // A table path fits a template when every literal segment of the template is there.
    let fits = |path: &str, tmpl: &str| {
        let (a, b): (Vec<&str>, Vec<&str>) = (path.split('/').collect(), tmpl.split('/').collect());
        a.len() == b.len() && a.iter().zip(&b).all(|(x, t)| t.starts_with('{') || x == t)
    };
    for (m, p) in &documented {
        let n = rows.iter().filter(|r| r.method == m && fits(r.path, p)).count();
        assert_eq!(n, 1, "{m} {p} appears {n} times in the table");
    }
    assert_eq!(documented.len(), rows.len(), "the table has rows for routes that do not exist");

    let mut checked = 0;
    for row in &rows {
        for role in [Role::Anonymous, Role::Viewer, Role::Editor, Role::Admin] {
            let path = w.fill(role, row.path).await?;
            let body = match row.body {
                Some(b) => Some(serde_json::from_str::<Value>(&w.fill(role, b).await?)?),
                None => None,
            };
            let what = format!("{:?} {} {path}", role, row.method);
            let expect_ok = match row.allowed {
                Allowed::Public => true,
                Allowed::Roles(letters) => match role {
                    Role::Anonymous => false,
                    Role::Viewer => letters.contains('V'),
                    Role::Editor => letters.contains('E'),
                    Role::Admin => letters.contains('A'),
                },
                Allowed::Session | Allowed::Embed | Allowed::EmbedViewer => false,
            };
            let api = w.api(role);
            if expect_ok {
                let res = call(api, row.method, &path, body.as_ref()).await?;
                assert!(
                    (200..300).contains(&res.status),
                    "{what}: expected success, got {} {}",
                    res.status,
                    res.text()
                );
            } else {
                let before = fingerprint(&w.admin).await?;
                let res = call(api, row.method, &path, body.as_ref()).await?;
                let expected = match (role, row.allowed) {
                    (Role::Anonymous, _) | (_, Allowed::Embed | Allowed::EmbedViewer) => 401,
                    (_, Allowed::Session) => 400,
                    _ => 403,
                };
                assert_eq!(res.status, expected, "{what}: {}", res.text());
                let err = res.json()?;
                assert!(err["code"].is_string() && err["message"].is_string(), "{what}: error shape {err}");
                assert_eq!(fingerprint(&w.admin).await?, before, "{what} was refused but changed something");
            }
            checked += 1;
        }
        // The credential these routes do take.
        match row.allowed {
            Allowed::Session => {
                for user in ["vi", "ed", "admin"] {
                    let (s, _) = session(&w.admin, user, PASSWORD).await?;
                    let res = call(&s, row.method, row.path, None).await?;
                    assert_eq!(res.status, 204, "{user} signs out: {}", res.text());
                    assert_eq!(call(&s, "GET", "/v1/me", None).await?.status, 401, "the session is over on the server");
                }
            }
            Allowed::Embed => {
                let res = call(&w.anon.with_token(Some(&w.embed_token)), row.method, row.path, None).await?;
                assert!((200..300).contains(&res.status), "embed {}: {} {}", row.path, res.status, res.text());
                // And the embed token is no API credential.
                let res = call(&w.anon.with_token(Some(&w.embed_token)), "GET", "/v1/me", None).await?;
                assert_eq!(res.status, 401);
            }
            Allowed::EmbedViewer => {
                let before = fingerprint(&w.admin).await?;
                let res =
                    call(&w.anon.with_token(Some(&w.embed_token)), row.method, row.path, Some(&json!({}))).await?;
                assert_eq!(res.status, 403, "embed {} without viewer_filters: {}", row.path, res.text());
                assert_eq!(fingerprint(&w.admin).await?, before, "a refused embed run changed something");
            }
            _ => {}
        }
    }
    assert_eq!(checked, rows.len() * 4);

    // Every refusal is in the audit log with who, what, status and from where.
    let denied = ok_json(&w.admin, "GET", "/v1/audit?actor=vi&outcome=denied&limit=1000", None).await?;
    let events = denied["events"].as_array().context("events")?;
    assert!(events.iter().any(|e| e["action"] == "users.list" && e["status"] == 403), "{denied}");
    assert!(events.iter().all(|e| e["remote"].as_str().is_some_and(|r| r.starts_with("127.0.0.1:"))));
    assert!(events.iter().all(|e| e["credential"].as_str().is_some_and(|c| c.starts_with("token:"))));
    let anon = ok_json(&w.admin, "GET", "/v1/audit?actor=anonymous&action=jobs.&limit=1000", None).await?;
    assert!(anon["events"]
        .as_array()
        .context("events")?
        .iter()
        .all(|e| e["status"] == 401 && e["outcome"] == "denied"));
    let sign_ins = ok_json(&w.admin, "GET", "/v1/audit?action=session.create&outcome=ok", None).await?;
    assert!(sign_ins["events"].as_array().context("events")?.len() >= 4, "{sign_ins}");
    drop(w.cp);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_sees_the_chart_of_a_shared_project_but_never_its_sql_and_data_access_only_narrows() -> Result<()> {
    let root = tempfile::tempdir()?;
    let (cp, agent) = outpost_e2e::start_pair(root.path(), "edge-1", "", &[]).await?;
    let admin = cp.api()?;
    let editor = user_with_token(&admin, "ed", "editor").await?;
    let viewer = user_with_token(&admin, "vi", "viewer").await?;
    let mut seen_by_viewer: Vec<String> = Vec::new();

    // Nothing is shared yet: the editor sees no agent and cannot dispatch; nothing is signed.
    assert_eq!(ok_json(&editor, "GET", "/v1/agents", None).await?["agents"], json!([]));
    let job = json!({ "agent": "edge-1", "connection": "sample", "sql": BAR_SQL, "render": { "kind": "bar", "x": "region", "y": ["revenue"] } });
    let res = call(&editor, "POST", "/v1/jobs", Some(&job)).await?;
    assert_eq!(res.status, 403, "{}", res.text());
    assert!(res.text().contains("not shared with you"), "{}", res.text());
    // Shared through a group.
    ok_json(&admin, "POST", "/v1/groups", Some(&json!({ "name": "analysts" }))).await?;
    ok_json(&admin, "PUT", "/v1/groups/analysts/members/ed", None).await?;
    ok_json(
        &admin,
        "POST",
        "/v1/shares",
        Some(&json!({ "agent": "edge-1", "connection": "sample", "group": "analysts" })),
    )
    .await?;
    let agents = ok_json(&editor, "GET", "/v1/agents", None).await?;
    assert_eq!(agents["agents"][0]["connections"], json!(["sample"]), "only the shared connection is shown");
    let res = call(&editor, "POST", "/v1/jobs", Some(&job)).await?;
    assert_eq!(res.status, 202, "{}", res.text());
    // A share does not make a connection: one the agent does not have (by the names it
    // reported) is refused at dispatch, naming no connection that was not shared. (An
    // agent that has not reported yet refuses it itself: foundation.rs,
    // a_job_for_an_offline_agent_says_it_waits_for_the_agent.)
    ok_json(&admin, "POST", "/v1/shares", Some(&json!({ "agent": "edge-1", "connection": "ghost", "user": "ed" })))
        .await?;
    let res = call(
        &editor,
        "POST",
        "/v1/jobs",
        Some(&json!({ "agent": "edge-1", "connection": "ghost", "sql": "SELECT 1", "render": { "kind": "table" } })),
    )
    .await?;
    assert_eq!(res.status, 400, "the control plane refuses an unknown connection: {}", res.text());
    let msg = res.json()?["message"].as_str().unwrap_or_default().to_owned();
    assert!(msg.contains("no connection \"ghost\"") && !msg.contains("sample,"), "{msg}");

    // The editor saves a project and shares the app (not the logic) with the viewer.
    let p = ok_json(&editor, "POST", "/v1/projects", Some(&project_body("edge-1", "sample", "Sales"))).await?;
    let pid = p["id"].as_str().context("id")?.to_owned();
    ok_json(&editor, "PUT", &format!("/v1/projects/{pid}/grants/vi"), Some(&json!({ "access": "view-app" }))).await?;
    let res =
        call(&editor, "PUT", &format!("/v1/projects/{pid}/grants/vi"), Some(&json!({ "access": "edit" }))).await?;
    assert_eq!(res.status, 400, "a viewer cannot be given edit: {}", res.text());
    // The viewer cannot dispatch ad-hoc jobs even on a connection shared with them.
    ok_json(&admin, "POST", "/v1/shares", Some(&json!({ "agent": "edge-1", "connection": "sample", "user": "vi" })))
        .await?;
    let res = call(&viewer, "POST", "/v1/jobs", Some(&job)).await?;
    assert_eq!(res.status, 403);
    seen_by_viewer.push(res.text());
    // The viewer refreshes the project and reads the chart.
    let run = call(&viewer, "POST", &format!("/v1/projects/{pid}/run"), Some(&json!({ "customer": "North" }))).await?;
    assert_eq!(run.status, 202, "{}", run.text());
    seen_by_viewer.push(run.text());
    let bar_job = run.json()?["jobs"][0]["id"].as_str().context("job")?.to_owned();
    let chart = call(&viewer, "GET", &format!("/v1/jobs/{bar_job}/result?wait=30"), None).await?;
    assert_eq!(chart.status, 200, "{}", chart.text());
    assert_eq!(chart.header("content-type").as_deref(), Some("image/svg+xml"));
    let svg = chart.text();
    assert!(svg.contains("<svg") && svg.contains("North"), "{svg}");
    seen_by_viewer.push(svg);
    for path in [
        format!("/v1/projects/{pid}"),
        "/v1/projects".to_owned(),
        format!("/v1/projects/{pid}/results?customer=North"),
        format!("/v1/jobs/{bar_job}"),
        "/v1/jobs".to_owned(),
    ] {
        let res = call(&viewer, "GET", &path, None).await?;
        assert_eq!(res.status, 200, "{path}: {}", res.text());
        seen_by_viewer.push(res.text());
    }
    let view = ok_json(&viewer, "GET", &format!("/v1/projects/{pid}"), None).await?;
    assert_eq!(view["access"], "view-app");
    assert_eq!(view["queries"][0], json!({ "index": 0, "name": "Revenue by region", "render_kind": "bar" }));
    for text in &seen_by_viewer {
        for secret in ["SUM(amount)", "FROM orders", "region = $1", "\"sql\"", "\"connection\"", "\"agent\""] {
            assert!(!text.contains(secret), "the viewer received {secret:?}: {text}");
        }
    }
    // With view-logic the viewer may read the SQL; still not edit it.
    ok_json(&editor, "PUT", &format!("/v1/projects/{pid}/grants/vi"), Some(&json!({ "access": "view-logic" }))).await?;
    let view = ok_json(&viewer, "GET", &format!("/v1/projects/{pid}"), None).await?;
    assert_eq!(view["queries"][0]["sql"], BAR_SQL);
    let res =
        call(&viewer, "PUT", &format!("/v1/projects/{pid}"), Some(&project_body("edge-1", "sample", "X"))).await?;
    assert_eq!(res.status, 403);
    // Someone without a grant sees nothing of the project or its jobs.
    let other = user_with_token(&admin, "other", "editor").await?;
    assert_eq!(call(&other, "GET", &format!("/v1/projects/{pid}"), None).await?.status, 403);
    assert_eq!(call(&other, "GET", &format!("/v1/jobs/{bar_job}/result"), None).await?.status, 403);
    assert_eq!(ok_json(&other, "GET", "/v1/projects", None).await?["projects"], json!([]));
    // The project runs with its owner's data access: when the owner leaves the group,
    // the viewer's refresh is refused before anything is signed.
    let jobs_before = agent.audit_records()?.len();
    ok_json(&admin, "DELETE", "/v1/groups/analysts/members/ed", None).await?;
    let res = call(&viewer, "POST", &format!("/v1/projects/{pid}/run"), Some(&json!({ "customer": "North" }))).await?;
    assert_eq!(res.status, 403, "{}", res.text());
    assert!(res.text().contains("owner no longer has access"), "{}", res.text());
    let res = call(&editor, "POST", "/v1/jobs", Some(&job)).await?;
    assert_eq!(res.status, 403);
    assert_eq!(agent.audit_records()?.len(), jobs_before, "refused jobs never reached the agent");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_shows_a_first_admin_password_once_that_signs_in_and_is_stored_only_as_a_hash() -> Result<()> {
    let root = tempfile::tempdir()?;
    let mut cp = ControlPlane::init(root.path())?;
    assert_eq!(cp.admin_password.len(), 23, "{:?}", cp.admin_password);
    cp.start()?;
    let (me, _) = session(&cp.api()?, "admin", &cp.admin_password).await?;
    let users = call(&me, "GET", "/v1/users", None).await?;
    assert_eq!(users.status, 200, "the first password signs in as an admin: {}", users.text());
    // Not in any file of the data dir (the database holds its Argon2id hash).
    for file in outpost_e2e::files_under(&cp.data_dir)? {
        let bytes = std::fs::read(&file)?;
        assert!(
            !bytes.windows(cp.admin_password.len()).any(|w| w == cp.admin_password.as_bytes()),
            "{} holds the password",
            file.display()
        );
    }
    // Once the admin chooses a password, the first one stops working.
    let (code, _, err) = outpost_e2e::run_cmd(
        &outpost_e2e::bin("outpost-control-plane"),
        &["user", "password", "admin", "--data-dir", cp.data_dir.to_str().unwrap_or_default()],
        Some(&format!("{PASSWORD}\n")),
    )?;
    assert_eq!(code, 0, "{err}");
    let res = call(
        &cp.api()?.with_token(None),
        "POST",
        "/v1/sessions",
        Some(&json!({ "user": "admin", "password": cp.admin_password })),
    )
    .await?;
    assert_eq!(res.status, 401, "{}", res.text());
    session(&cp.api()?, "admin", PASSWORD).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_secure_cookies_with_csrf_and_revoked_tokens_or_disabled_users_stop_at_once() -> Result<()> {
    let root = tempfile::tempdir()?;
    let mut cp = ControlPlane::init(root.path())?;
    cp.start()?;
    let admin = cp.api()?;
    let editor = user_with_token(&admin, "ed", "editor").await?;
    let (s, res) = session(&admin, "ed", PASSWORD).await?;
    let cookie = res.header("set-cookie").context("cookie")?;
    for attr in
        ["__Host-outpost_session=opss_", "; Secure", "; HttpOnly", "; SameSite=Strict", "; Path=/", "; Max-Age=43200"]
    {
        assert!(cookie.contains(attr), "{attr} missing in {cookie}");
    }
    let me = ok_json(&s, "GET", "/v1/me", None).await?;
    assert_eq!(
        (me["user"].as_str(), me["role"].as_str(), me["credential"].as_str()),
        (Some("ed"), Some("editor"), Some("session"))
    );
    // A state-changing request with the cookie but without the CSRF header is refused.
    let no_csrf = admin.with_token(None).with_header("cookie", cookie.split(';').next().context("pair")?);
    let res = call(&no_csrf, "POST", "/v1/tokens", Some(&json!({ "name": "x", "scopes": ["results:read"] }))).await?;
    assert_eq!(res.status, 403, "{}", res.text());
    let res = call(&s, "POST", "/v1/tokens", Some(&json!({ "name": "x", "scopes": ["results:read"] }))).await?;
    assert_eq!(res.status, 201, "{}", res.text());
    // A token cannot hold more than its creator's role.
    let res = call(&s, "POST", "/v1/tokens", Some(&json!({ "name": "x", "scopes": ["users:admin"] }))).await?;
    assert_eq!(res.status, 403, "{}", res.text());
    // A narrower token: results only.
    let t = ok_json(
        &editor,
        "POST",
        "/v1/tokens",
        Some(&json!({ "name": "ro", "scopes": ["results:read"], "expires_in_days": 1 })),
    )
    .await?;
    let ro = admin.with_token(Some(t["token"].as_str().context("token")?));
    let res = call(&ro, "GET", "/v1/agents", None).await?;
    assert_eq!(res.status, 403);
    assert!(res.text().contains("lacks the scope agents:read"), "{}", res.text());
    assert_eq!(call(&ro, "GET", "/v1/jobs", None).await?.status, 200);
    // Listed with last use, never with its secret.
    let list = ok_json(&editor, "GET", "/v1/tokens", None).await?;
    let listed =
        list["tokens"].as_array().context("tokens")?.iter().find(|x| x["id"] == t["id"]).context("listed")?.clone();
    assert!(listed["last_used"].is_i64(), "{listed}");
    assert!(!list.to_string().contains(t["token"].as_str().unwrap_or("-")), "a secret was listed");
    // Revoked: refused at once.
    ok_json(&editor, "DELETE", &format!("/v1/tokens/{}", t["id"].as_str().unwrap_or_default()), None).await?;
    let res = call(&ro, "GET", "/v1/jobs", None).await?;
    assert_eq!(res.status, 401, "{}", res.text());
    // Revoked from the CLI while the server runs: refused at the next request.
    let t2 = ok_json(&editor, "POST", "/v1/tokens", Some(&json!({ "name": "cli", "scopes": ["*"] }))).await?;
    let api2 = admin.with_token(Some(t2["token"].as_str().context("token")?));
    assert_eq!(call(&api2, "GET", "/v1/me", None).await?.status, 200);
    let out = cp.cli(&["token", "revoke", t2["id"].as_str().context("id")?])?;
    assert!(out.contains("revoked"), "{out}");
    assert_eq!(call(&api2, "GET", "/v1/me", None).await?.status, 401);
    // Disabling the user ends their session and stops their tokens.
    let out = cp.cli(&["user", "disable", "ed"])?;
    assert!(out.contains("disabled"), "{out}");
    assert_eq!(call(&s, "GET", "/v1/me", None).await?.status, 401);
    assert_eq!(call(&editor, "GET", "/v1/me", None).await?.status, 401);
    cp.cli(&["user", "enable", "ed"])?;
    assert_eq!(call(&editor, "GET", "/v1/me", None).await?.status, 200, "an enabled user's tokens work again");
    // The admin token from init is an ordinary token: rotated, the old one stops.
    let tokens = cp.cli(&["token", "list", "--user", "admin"])?;
    let init_id = tokens
        .lines()
        .find(|l| l.contains(" init "))
        .and_then(|l| l.split_whitespace().next())
        .context("init token")?;
    let new_token = cp.cli(&["token", "rotate", init_id])?.trim().to_owned();
    assert!(new_token.starts_with("opat_"), "{new_token}");
    assert_eq!(call(&admin, "GET", "/v1/me", None).await?.status, 401, "the old admin token is revoked");
    let admin = admin.with_token(Some(&new_token));
    assert_eq!(ok_json(&admin, "GET", "/v1/me", None).await?["role"], "admin");
    // Password guessing is slowed: after five failures even the right password waits.
    for _ in 0..5 {
        let res = call(
            &admin.with_token(None),
            "POST",
            "/v1/sessions",
            Some(&json!({ "user": "ed", "password": "wrong password!" })),
        )
        .await?;
        assert_eq!(res.status, 401);
    }
    let res =
        call(&admin.with_token(None), "POST", "/v1/sessions", Some(&json!({ "user": "ed", "password": PASSWORD })))
            .await?;
    assert_eq!(res.status, 429, "{}", res.text());
    // An unknown user is refused like a wrong password.
    let res =
        call(&admin.with_token(None), "POST", "/v1/sessions", Some(&json!({ "user": "nobody", "password": PASSWORD })))
            .await?;
    assert_eq!((res.status, res.json()?["message"].clone()), (401, json!("invalid user name or password")));
    // The CLI's changes are in the audit log too.
    let audit = ok_json(&admin, "GET", "/v1/audit?action=tokens.revoke", None).await?;
    assert!(audit["events"].as_array().context("events")?.iter().any(|e| e["credential"] == "cli"), "{audit}");
    // The last admin cannot be disabled.
    let res = call(&admin, "PATCH", "/v1/users/admin", Some(&json!({ "disabled": true }))).await?;
    assert_eq!(res.status, 409, "{}", res.text());
    Ok(())
}

/// Signs claims with the control plane's own embed key (read from its data dir), to make
/// tokens the API would never issue: expired, or with another algorithm.
fn forge(data_dir: &std::path::Path, header: &Value, claims: &Value, sign: bool) -> Result<String> {
    use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
    use outpost_protocol::encoding::b64url_encode;
    let pkcs8 = std::fs::read(data_dir.join("embed-signing.key"))?;
    let pair = Ed25519KeyPair::from_pkcs8(&pkcs8).map_err(|_| anyhow::anyhow!("bad key"))?;
    let input =
        format!("{}.{}", b64url_encode(header.to_string().as_bytes()), b64url_encode(claims.to_string().as_bytes()));
    let sig = if sign { b64url_encode(pair.sign(input.as_bytes()).as_ref()) } else { String::new() };
    let _ = pair.public_key();
    Ok(format!("{input}.{sig}"))
}

fn jwt_part(token: &str, i: usize) -> Result<Value> {
    let part = token.split('.').nth(i).context("part")?;
    Ok(serde_json::from_slice(&outpost_protocol::encoding::b64url_decode(part)?)?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embed_tokens_read_one_project_for_one_customer_and_every_forgery_is_refused() -> Result<()> {
    let root = tempfile::tempdir()?;
    let (cp, _agent) = outpost_e2e::start_pair(root.path(), "edge-1", "", &[]).await?;
    let admin = cp.api()?;
    let editor = user_with_token(&admin, "ed", "editor").await?;
    share_connection(&admin, "edge-1", "sample", "ed").await?;
    let p1 = ok_json(&editor, "POST", "/v1/projects", Some(&project_body("edge-1", "sample", "Sales"))).await?;
    let p1 = p1["id"].as_str().context("id")?.to_owned();
    let p2 = ok_json(&editor, "POST", "/v1/projects", Some(&project_body("edge-1", "sample", "Other"))).await?;
    let p2 = p2["id"].as_str().context("id")?.to_owned();
    for customer in ["North", "South"] {
        let run =
            ok_json(&editor, "POST", &format!("/v1/projects/{p1}/run"), Some(&json!({ "customer": customer }))).await?;
        for j in run["jobs"].as_array().context("jobs")? {
            let res = call(
                &editor,
                "GET",
                &format!("/v1/jobs/{}/result?wait=30", j["id"].as_str().unwrap_or_default()),
                None,
            )
            .await?;
            assert_eq!(res.status, 200, "{}", res.text());
        }
    }
    // What the count query gives for each customer, asked directly.
    let mut direct = HashMap::new();
    for customer in ["North", "South"] {
        let id = cp
            .dispatch(json!({ "agent": "edge-1", "connection": "sample", "sql": COUNT_SQL,
                              "params": [{ "type": "text", "value": customer }], "render": { "kind": "scalar", "column": "n" } }))
            .await?;
        direct.insert(customer, cp.wait_result(&id).await?.1);
    }
    assert_ne!(direct["North"], direct["South"]);

    let mint = |customer: &str, ttl: Option<u64>| {
        let mut body = json!({ "customer": customer });
        if let Some(t) = ttl {
            body["ttl_secs"] = t.into();
        }
        body
    };
    let t = ok_json(&editor, "POST", &format!("/v1/projects/{p1}/embed-tokens"), Some(&mint("North", None))).await?;
    let token = t["token"].as_str().context("token")?.to_owned();
    let header = jwt_part(&token, 0)?;
    let claims = jwt_part(&token, 1)?;
    assert_eq!(header["alg"], "EdDSA");
    assert_eq!(claims["exp"].as_i64().unwrap_or(0) - claims["iat"].as_i64().unwrap_or(0), 900, "default 15 minutes");
    let embed = admin.with_token(Some(&token));
    let proj = ok_json(&embed, "GET", "/v1/embed/project", None).await?;
    assert_eq!((proj["project"]["id"].as_str(), proj["customer"].as_str()), (Some(p1.as_str()), Some("North")));
    assert!(!proj.to_string().contains("FROM orders"), "no SQL through an embed token");
    let res = call(&embed, "GET", "/v1/embed/results/1", None).await?;
    assert_eq!((res.status, res.text()), (200, direct["North"].clone()), "the north customer's own number");
    let res = call(&embed, "GET", "/v1/embed/results/0", None).await?;
    assert_eq!(res.header("content-type").as_deref(), Some("image/svg+xml"));
    embed_page_shows_the_customers_results_only(&admin, &p1, &p2, &token, &direct["North"]).await?;
    // Nothing else: no API route, no other query index.
    assert_eq!(call(&embed, "GET", "/v1/projects", None).await?.status, 401);
    assert_eq!(call(&embed, "GET", &format!("/v1/projects/{p2}"), None).await?.status, 401);
    assert_eq!(call(&embed, "GET", "/v1/embed/results/7", None).await?.status, 404);
    // The lifetime is capped by policy.
    let res =
        call(&editor, "POST", &format!("/v1/projects/{p1}/embed-tokens"), Some(&mint("North", Some(86_400)))).await?;
    assert_eq!(res.status, 400, "{}", res.text());

    let now = outpost_protocol::unix_now();
    let refused = |tok: String| {
        let api = admin.with_token(Some(&tok));
        async move { call(&api, "GET", "/v1/embed/results/1", None).await }
    };
    // Tampered: another project (or customer) in the claims, the signature kept.
    let mut other = claims.clone();
    other["prj"] = p2.clone().into();
    let parts: Vec<&str> = token.split('.').collect();
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        outpost_protocol::encoding::b64url_encode(other.to_string().as_bytes()),
        parts[2]
    );
    let res = refused(tampered).await?;
    assert_eq!((res.status, res.json()?["message"].clone()), (401, json!("embed token signature is invalid")));
    let mut south = claims.clone();
    south["sub"] = "South".into();
    let res = refused(format!(
        "{}.{}.{}",
        parts[0],
        outpost_protocol::encoding::b64url_encode(south.to_string().as_bytes()),
        parts[2]
    ))
    .await?;
    assert_eq!(res.status, 401);
    // alg none, unsigned; HS256 "signed" with our public key; both pinned out.
    let none = forge(&cp.data_dir, &json!({ "alg": "none", "kid": header["kid"] }), &claims, false)?;
    let res = refused(none).await?;
    assert_eq!(res.status, 401, "{}", res.text());
    assert!(res.text().contains("algorithm"), "{}", res.text());
    let hs = forge(&cp.data_dir, &json!({ "alg": "HS256", "kid": header["kid"] }), &claims, true)?;
    assert_eq!(refused(hs).await?.status, 401);
    // Expired (signed with the real key, so only the expiry is wrong).
    let mut old = claims.clone();
    old["iat"] = (now - 1000).into();
    old["exp"] = (now - 10).into();
    let expired = forge(&cp.data_dir, &header, &old, true)?;
    let res = refused(expired).await?;
    assert_eq!((res.status, res.json()?["message"].clone()), (401, json!("embed token has expired")));
    // A token of the other project reads only that project.
    let t2 =
        ok_json(&editor, "POST", &format!("/v1/projects/{p2}/embed-tokens"), Some(&mint("North", Some(60)))).await?;
    let embed2 = admin.with_token(Some(t2["token"].as_str().context("token")?));
    assert_eq!(ok_json(&embed2, "GET", "/v1/embed/project", None).await?["project"]["id"], p2.as_str());
    let res = call(&embed2, "GET", "/v1/embed/results/1", None).await?;
    assert_eq!(res.status, 404, "project 2 never ran: nothing of project 1 leaks: {}", res.text());
    // Revoked by project: project 1's tokens stop, project 2's do not.
    ok_json(&editor, "POST", &format!("/v1/projects/{p1}/embed-tokens/revoke"), None).await?;
    let page = call(&admin.with_token(None), "GET", &format!("/embed/dashboards/{p1}?token={token}"), None).await?;
    assert_eq!(page.status, 401, "a revoked token's page is refused: {}", page.text());

    let res = call(&embed, "GET", "/v1/embed/results/1", None).await?;
    assert_eq!(res.status, 401, "{}", res.text());
    assert_eq!(call(&embed2, "GET", "/v1/embed/project", None).await?.status, 200);
    // Embed reads are audited under the customer and the token id.
    let audit = ok_json(&admin, "GET", "/v1/audit?actor=embed:North&action=embed.result&outcome=ok", None).await?;
    let ev = &audit["events"][0];
    assert_eq!(ev["credential"], format!("embed:{}", claims["jti"].as_str().unwrap_or_default()));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_are_sealed_at_rest_and_gone_from_the_database_file_after_retention() -> Result<()> {
    let root = tempfile::tempdir()?;
    let mut cp = ControlPlane::init(root.path())?;
    let config = root.path().join("control-plane.yaml");
    std::fs::write(&config, format!("data_dir: {}\nresults:\n  retention_secs: 3\n", cp.data_dir.display()))?;
    cp.config = Some(config);
    cp.start()?;
    let mut agent = Agent::new(root.path(), "edge-1", "")?;
    agent.enroll_with(&cp).await?;
    agent.start_connected()?;
    let marker = "outpost-marker-7d1f3a";
    let id = cp
        .dispatch(json!({ "agent": "edge-1", "connection": "sample",
                          "sql": format!("SELECT '{marker}' AS label, COUNT(*) AS n FROM orders"),
                          "render": { "kind": "table", "format": "json" } }))
        .await?;
    let (status, body) = cp.wait_result(&id).await?;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(marker), "{body}");
    let db = cp.data_dir.join("control-plane.db");
    let wal = cp.data_dir.join("control-plane.db-wal");
    let on_disk = |needle: &[u8]| -> Result<bool> {
        let mut found = false;
        for f in [&db, &wal] {
            if let Ok(bytes) = std::fs::read(f) {
                found |= bytes.windows(needle.len()).any(|w| w == needle);
            }
        }
        Ok(found)
    };
    assert!(!on_disk(marker.as_bytes())?, "the rendered result is on disk in clear");
    // The sealed body as stored, to look for after the purge.
    let sealed: Vec<u8> = {
        let c = rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        c.query_row("SELECT body FROM jobs WHERE id = ?1", [&id], |r| r.get(0))?
    };
    assert!(sealed.len() > 28);
    let probe = &sealed[12..sealed.len().min(12 + 48)];
    assert!(on_disk(probe)?, "the sealed body is where we looked");
    // Retention is 3 s: the job and its result go, and their bytes with them.
    let api = cp.api()?;
    eventually("the result is deleted after retention", Duration::from_secs(30), || async {
        Ok(call(&api, "GET", &format!("/v1/jobs/{id}/result"), None).await?.status == 404)
    })
    .await?;
    eventually("the sealed bytes are gone from the database files", Duration::from_secs(30), || async {
        Ok(!on_disk(probe)?)
    })
    .await?;
    let c = rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let n: i64 = c.query_row("SELECT COUNT(*) FROM jobs WHERE id = ?1", [&id], |r| r.get(0))?;
    assert_eq!(n, 0);
    // An admin may also purge at once; others may not.
    let res = ok_json(&api, "POST", "/v1/results/purge", Some(&json!({ "older_than_secs": 0 }))).await?;
    assert!(res["deleted"].is_u64(), "{res}");
    let viewer = user_with_token(&api, "vi", "viewer").await?;
    assert_eq!(call(&viewer, "POST", "/v1/results/purge", Some(&json!({}))).await?.status, 403);
    // The key is a file beside the database, owner-only.
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(cp.data_dir.join("results.key"))?.permissions());
    assert_eq!(mode & 0o777, 0o600);
    Ok(())
}

/// The embed page (`/embed/dashboards/{id}?token=…`): the token's customer's numbers, no
/// SQL, agent or connection names; framed by no one by default; refused for another
/// project, without a token, or with a malformed one.
async fn embed_page_shows_the_customers_results_only(
    api: &Api,
    p1: &str,
    p2: &str,
    token: &str,
    north: &str,
) -> Result<()> {
    let anon = api.with_token(None);
    let page = call(&anon, "GET", &format!("/embed/dashboards/{p1}?token={token}"), None).await?;
    let html = page.text();
    assert_eq!(page.status, 200, "{html}");
    let csp = page.header("content-security-policy").unwrap_or_default();
    assert!(csp.contains("frame-ancestors 'none'") && !csp.contains("script-src"), "{csp}");
    assert_eq!(page.header("x-frame-options"), None, "framing is the CSP's to allow");
    assert_eq!(page.header("referrer-policy").as_deref(), Some("no-referrer"));
    assert_eq!(page.header("cache-control").as_deref(), Some("no-store"));
    let scalar: serde_json::Value = serde_json::from_str(north)?;
    let shown = scalar["formatted"].as_str().map_or_else(|| scalar["value"].to_string(), str::to_owned);
    assert!(html.contains(&format!("<strong>{shown}</strong>")), "north's number {shown} in {html}");
    assert!(html.contains("<svg"), "the chart tile: {html}");
    for secret in ["FROM orders", "edge-1", "<script", "data-sql"] {
        assert!(!html.contains(secret), "{secret:?} on the embed page: {html}");
    }
    for (path, why) in [
        (format!("/embed/dashboards/{p2}?token={token}"), "another project's page"),
        (format!("/embed/dashboards/{p1}"), "no token"),
        (format!("/embed/dashboards/{p1}?token=%3Cscript%3E"), "a malformed token"),
    ] {
        let res = call(&anon, "GET", &path, None).await?;
        assert_eq!(res.status, 401, "{why}: {}", res.text());
        assert!(!res.text().contains("Sales") && !res.text().contains("Other"), "{why} names no project");
    }
    Ok(())
}
