//! The embed viewer filters as a customer's security reviewer attacks them, against the
//! real binaries and the agent's sample data (each `orders.region` is one end customer):
//! a viewer of customer North's embed tries to see South's rows, to change what the token
//! fixed, to inject markup or headers, to flood the agent, and to run with a token or an
//! owner that may no longer run anything; and no embed answer names SQL, agents,
//! connections or the owner. Each attempt is kept here with the defence it meets.
//!
//! Runs on the backend `OUTPOST_TEST_STORE` names (SQLite by default, `postgres`).

use std::time::Duration;

use anyhow::{ensure, Context as _, Result};
use outpost_e2e::client::{Api, HttpResponse};
use outpost_e2e::{call, ok_json, share_connection, user_with_token, Agent, ControlPlane};
use serde_json::{json, Value};

use crate::dashboard_filters::enc;

/// One end customer's orders (`$1`, the token's customer), in a period the viewer may
/// change (`$2`, `$3`), with a parameter named like the customer bound beside it (`$4`).
const SQL: &str = "SELECT region, COUNT(*) AS n FROM orders \
                   WHERE region = $1 AND month || '-01' BETWEEN $2 AND $3 AND $4 IS NOT NULL GROUP BY region";

fn project() -> Value {
    json!({ "name": "Per customer", "parameters": [
        { "name": "customer", "label": "Customer", "kind": "choice", "choices": ["North", "South", "East"],
          "default": "South" },
        { "name": "period", "label": "Period", "kind": "date_range",
          "default": { "from": "2025-01-01", "to": "2025-12-31" } },
        { "name": "note", "label": "Note", "kind": "text", "default": "" }
    ], "queries": [
        { "name": "Your numbers", "agent": "edge-1", "connection": "sample", "sql": SQL,
          "render": { "kind": "table" }, "customer_param": 1,
          "bind": { "2": "period.from", "3": "period.to", "4": "customer" } }
    ]})
}

/// The first half of 2025, as a token fixes it.
fn half() -> Value {
    json!({ "from": "2025-01-01", "to": "2025-06-30" })
}

fn q(f: &Value) -> String {
    format!("filters={}", enc(&f.to_string()))
}

fn message(r: &HttpResponse) -> String {
    r.json().ok().and_then(|v| v["message"].as_str().map(str::to_owned)).unwrap_or_default()
}

/// A control plane whose agents take at most `cap` waiting refreshes, an agent `edge-1`
/// enrolled (not started), editor `ed` owning the project: (cp, agent, admin, ed, pid).
async fn setup(root: &std::path::Path, cap: u32) -> Result<(ControlPlane, Agent, Api, Api, String)> {
    let mut cp = ControlPlane::init(root)?;
    let config = root.join("control-plane.yaml");
    std::fs::write(
        &config,
        format!("data_dir: {}\nschedules:\n  max_queued_per_agent: {cap}\n", cp.data_dir.display()),
    )?;
    cp.config = Some(config);
    cp.start()?;
    let agent = Agent::new(root, "edge-1", "")?;
    agent.enroll_with(&cp).await?;
    let admin = cp.api()?;
    let ed = user_with_token(&admin, "ed", "editor").await?;
    share_connection(&admin, "edge-1", "sample", "ed").await?;
    let p = ok_json(&ed, "POST", "/v1/projects", Some(&project())).await?;
    let pid = p["id"].as_str().context("project id")?.to_owned();
    Ok((cp, agent, admin, ed, pid))
}

async fn token(ed: &Api, pid: &str, body: Value) -> Result<String> {
    let t = ok_json(ed, "POST", &format!("/v1/projects/{pid}/embed-tokens"), Some(&body)).await?;
    Ok(t["token"].as_str().context("token")?.to_owned())
}

/// Whether `text` names the data behind the embed or its owner: SQL, the agent, the
/// connection, the owner's name.
fn leaks(text: &str) -> Option<&'static str> {
    let words: Vec<&str> = text.split(|c: char| !c.is_alphanumeric() && c != '-' && c != '_').collect();
    ["edge-1", "sample", "SELECT", "orders", "ed"].into_iter().find(|w| words.contains(w))
}

/// Every embed answer a test saw, checked for leaks at its end.
#[derive(Default)]
struct Seen(Vec<(String, String)>);

impl Seen {
    fn keep(&mut self, what: &str, r: &HttpResponse) {
        let headers: Vec<String> = r.headers.iter().map(|(k, v)| format!("{k}: {v:?}")).collect();
        self.0.push((what.to_owned(), format!("{}\n{}\n{}", r.status, headers.join("\n"), r.text())));
    }

    fn check(&self) -> Result<()> {
        for (what, text) in &self.0 {
            if let Some(w) = leaks(text) {
                anyhow::bail!("{what} names {w:?}:\n{text}");
            }
        }
        ensure!(!self.0.is_empty(), "nothing seen");
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_can_neither_see_another_customer_nor_change_what_the_token_fixed() -> Result<()> {
    let root = tempfile::tempdir()?;
    let (_cp, mut agent, _admin, ed, pid) = setup(root.path(), 8).await?;
    agent.start_connected()?;
    let mut seen = Seen::default();
    // The editor cannot bind a parameter to the customer's position either.
    let mut bad = project();
    bad["queries"][0]["bind"] = json!({ "1": "customer", "2": "period.from", "3": "period.to", "4": "note" });
    let r = call(&ed, "POST", "/v1/projects", Some(&bad)).await?;
    ensure!(
        r.status == 400 && message(&r).starts_with("queries[0].bind.1: position 1 is customer_param's"),
        "{}: {}",
        r.status,
        r.text()
    );

    let free_token =
        token(&ed, &pid, json!({ "customer": "North", "viewer_filters": ["customer", "period", "note"] })).await?;
    let free = ed.with_token(Some(&free_token));
    // The parameter named like the customer, set to another customer: runs, shows North.
    let south = json!({ "customer": "South" });
    let r = call(&free, "POST", "/v1/embed/run", Some(&json!({ "filters": south }))).await?;
    seen.keep("run customer=South", &r);
    ensure!(r.status == 202, "{}: {}", r.status, r.text());
    let r = call(&free, "GET", &format!("/v1/embed/results/0?{}&wait=30", q(&south)), None).await?;
    seen.keep("result customer=South", &r);
    let rows = r.json()?["rows"].clone();
    ensure!(r.status == 200 && rows.as_array().is_some_and(|x| !x.is_empty()), "{}: {}", r.status, r.text());
    ensure!(rows.as_array().into_iter().flatten().all(|row| row[0] == "North"), "only North's rows: {rows}");
    // A second `filters=` in the address is not read: the first one decides, checked.
    let two = format!("/v1/embed/results/0?{}&{}", q(&south), q(&json!({ "sub": "South" })));
    let r = call(&free, "GET", &two, None).await?;
    seen.keep("two filters=", &r);
    ensure!(r.status == 200 && r.json()?["rows"] == rows, "{}: {}", r.status, r.text());

    // Keys that are no parameter the viewer may change, however named.
    for key in ["sub", "customer_param", "1", "$1", "Customer", "customer ", "period.from", "", "__proto__"] {
        let f = json!({ key: "South" });
        for (what, r) in [
            ("run", call(&free, "POST", "/v1/embed/run", Some(&json!({ "filters": f }))).await?),
            ("project", call(&free, "GET", &format!("/v1/embed/project?{}", q(&f)), None).await?),
        ] {
            seen.keep(&format!("{what} key {key:?}"), &r);
            let m = message(&r);
            ensure!(
                r.status == 400 && m.starts_with(&format!("filters.{key}: this embed does not let")),
                "{key:?}: {m}"
            );
        }
    }
    // Not an object; a `filters` key twice in the body; a value of odd shape.
    for body in [
        r#"{"filters": ["customer", "South"]}"#,
        r#"{"filters": "customer=South"}"#,
        r#"{"filters": {"customer": "North"}, "filters": {"customer": "South"}}"#,
        r#"{"filters": {"customer": "North"}, "customer": "South"}"#,
        r#"{"filters": {"customer": ["South"]}}"#,
        r#"{"filters": {"customer": {"from": "North", "to": "South"}}}"#,
        r#"{"filters": {"customer": "North\u0000South"}}"#,
    ] {
        let r = free.request(http::Method::POST, "/v1/embed/run", Some(body.as_bytes().to_vec())).await?;
        seen.keep(body, &r);
        ensure!(r.status == 400, "{body}: {} {}", r.status, r.text());
    }
    // Duplicate keys: the last one is what is checked and what runs.
    let r = free
        .request(
            http::Method::POST,
            "/v1/embed/run",
            Some(br#"{"filters": {"customer": "Atlantis", "customer": "South"}}"#.to_vec()),
        )
        .await?;
    seen.keep("duplicate customer", &r);
    ensure!(r.status == 202 && r.json()?["filters"]["customer"] == "South", "{}: {}", r.status, r.text());
    // Date ranges of odd shape are refused; one reversed or unbounded runs nothing wider.
    for period in [
        json!("2025-01-01"),
        json!("2025-01-01.."),
        json!({ "from": "2025-01-01" }),
        json!({ "from": "2025-01-01", "to": "2025-06-30", "customer": "South" }),
        json!(["2025-01-01", "2025-06-30"]),
        json!({ "from": "2025-13-01", "to": "2025-06-30" }),
        json!({ "from": "2025-01-01'--", "to": "2025-06-30" }),
        json!(20_250_101),
    ] {
        let r = call(&free, "POST", "/v1/embed/run", Some(&json!({ "filters": { "period": period } }))).await?;
        seen.keep(&format!("period {period}"), &r);
        ensure!(r.status == 400 && message(&r).starts_with("filters.period"), "{period}: {} {}", r.status, r.text());
    }
    for period in [json!({ "from": "2025-06-30", "to": "2025-01-01" }), json!("0001-01-01..9999-12-31")] {
        let f = json!({ "period": period });
        let r = call(&free, "POST", "/v1/embed/run", Some(&json!({ "filters": f }))).await?;
        seen.keep(&format!("period {period}"), &r);
        if r.status == 202 {
            let r = call(&free, "GET", &format!("/v1/embed/results/0?{}&wait=30", q(&f)), None).await?;
            seen.keep(&format!("result period {period}"), &r);
            let rows = r.json()?["rows"].clone();
            ensure!(rows.as_array().into_iter().flatten().all(|row| row[0] == "North"), "{period}: {rows}");
        } else {
            ensure!(r.status == 400 && message(&r).starts_with("filters.period"), "{period}: {}", r.text());
        }
    }

    // A token that fixes the period and a note: the API refuses any change of them.
    let fixed = token(
        &ed,
        &pid,
        json!({ "customer": "North", "filters": { "period": half(), "note": "<b>fixed</b>" },
                "viewer_filters": ["customer"] }),
    )
    .await?;
    let api = ed.with_token(Some(&fixed));
    for (f, says) in [
        (json!({ "period": half() }), "filters.period: is fixed by the embed token"),
        (
            json!({ "period": { "from": "2024-01-01", "to": "2026-01-01" } }),
            "filters.period: is fixed by the embed token",
        ),
        (json!({ "note": "mine" }), "filters.note: is fixed by the embed token"),
        (json!({ "Period": half() }), "filters.Period: this embed does not let"),
        (json!({ "period.from": "2024-01-01" }), "filters.period.from: this embed does not let"),
    ] {
        let r = call(&api, "GET", &format!("/v1/embed/results/0?{}", q(&f)), None).await?;
        seen.keep(&format!("fixed {f}"), &r);
        ensure!(r.status == 400 && message(&r).starts_with(says), "{f}: {}", message(&r));
    }
    // The page: no spelling of the address changes the period or the note.
    let anon = ed.with_token(None);
    let page = |extra: &str| format!("/embed/dashboards/{pid}?token={fixed}&f.customer=South&{extra}");
    let year = enc(&json!({ "period": { "from": "2024-01-01", "to": "2026-01-01" } }).to_string());
    for extra in [
        "f.period.from=2024-01-01&f.period.to=2026-01-01".to_owned(),
        "f.period=2024-01-01..2026-01-01".to_owned(),
        format!("filters={year}"),
        "f.Period=2024-01-01..2026-01-01&F.period=2024-01-01..2026-01-01".to_owned(),
        "f.%70eriod=2024-01-01..2026-01-01&f%2Eperiod=2024-01-01..2026-01-01".to_owned(),
        "f.period%2Efrom=2024-01-01&f.period.from%00=2024-01-01".to_owned(),
        "f.note=mine&f.note.from=a&f.note.to=b".to_owned(),
        "f.customer=East&f.customer=South".to_owned(),
    ] {
        let r = call(&anon, "GET", &page(&extra), None).await?;
        seen.keep(&format!("page {extra}"), &r);
        let html = r.text();
        ensure!(r.status == 200, "{extra}: {}\n{html}", r.status);
        ensure!(html.contains("Period: 2025-01-01..2025-06-30"), "{extra}: the token's period:\n{html}");
        ensure!(html.contains("Note: &lt;b&gt;fixed&lt;/b&gt;"), "{extra}: the token's note, escaped:\n{html}");
        ensure!(!html.contains("<b>fixed"), "{extra}: markup from the token is escaped:\n{html}");
        ensure!(!html.contains("name=\"f.period") && !html.contains("name=\"f.note"), "{extra}: no field:\n{html}");
        ensure!(!html.contains("<td>South</td>") && !html.contains("<td>East</td>"), "{extra}: North only:\n{html}");
    }

    // Values reflected in the page are escaped: a refused choice, a free text.
    let xss = "\"><script>alert(1)</script><img src=x onerror=alert(1)>";
    let r =
        call(&anon, "GET", &page(&format!("f.customer={}", enc(xss))).replace("f.customer=South&", ""), None).await?;
    seen.keep("page xss choice", &r);
    let html = r.text();
    ensure!(r.status == 400 && html.contains("data-filters-error"), "{}:\n{html}", r.status);
    ensure!(!html.contains("<script") && !html.contains("<img") && html.contains("&lt;script&gt;"), "{html}");
    let url = format!("/embed/dashboards/{pid}?token={free_token}&f.note={}", enc(xss));
    let r = call(&anon, "GET", &url, None).await?;
    seen.keep("page xss text", &r);
    let html = r.text();
    ensure!(r.status == 200, "{}:\n{html}", r.status);
    ensure!(!html.contains("<script") && !html.contains("<img") && html.contains("&lt;script&gt;"), "{html}");
    ensure!(html.contains("value=\"&quot;&gt;&lt;script&gt;"), "the field's value is escaped:\n{html}");
    seen.check()
}

/// Ed's queued jobs (the owner's: every viewer's run is one).
async fn queued(ed: &Api) -> Result<usize> {
    let v = ok_json(ed, "GET", "/v1/jobs?state=queued", None).await?;
    Ok(v["jobs"].as_array().context("jobs")?.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floods_stay_within_the_agents_share_and_bad_tokens_or_owners_run_nothing() -> Result<()> {
    let root = tempfile::tempdir()?;
    // The agent is enrolled but not running: every run stays queued.
    let (_cp, _agent, admin, ed, pid) = setup(root.path(), 2).await?;
    let mut seen = Seen::default();
    let token_text =
        token(&ed, &pid, json!({ "customer": "North", "viewer_filters": ["customer", "period", "note"] })).await?;
    let viewer = ed.with_token(Some(&token_text));

    // Twenty viewers at once, each with a period nothing has run for.
    let mut asks = tokio::task::JoinSet::new();
    for d in 1..=20 {
        let viewer = viewer.clone();
        let f = json!({ "period": { "from": "2025-01-01", "to": format!("2025-02-{d:02}") } });
        asks.spawn(async move { call(&viewer, "POST", "/v1/embed/run", Some(&json!({ "filters": f }))).await });
    }
    let mut ran = 0;
    while let Some(r) = asks.join_next().await {
        let r = r??;
        seen.keep("flood", &r);
        ensure!(matches!(r.status, 202 | 429), "{}: {}", r.status, r.text());
        ran += r.json()?["runs"].as_array().into_iter().flatten().filter(|x| x["outcome"] == "queued").count();
    }
    ensure!(ran == 2 && queued(&ed).await? == 2, "at most max_queued_per_agent (2) wait: {ran} queued");
    // Past the share: 429, and nothing more waits.
    let more = json!({ "filters": { "period": { "from": "2025-03-01", "to": "2025-03-02" } } });
    let r = call(&viewer, "POST", "/v1/embed/run", Some(&more)).await?;
    seen.keep("busy", &r);
    ensure!(r.status == 429 && r.json()?["runs"][0]["outcome"] == "busy", "{}: {}", r.status, r.text());
    ensure!(queued(&ed).await? == 2, "still two");

    // A body past the API's limit, and many keys or deep nesting within it: refused.
    let big = format!(r#"{{"filters": {{"note": "{}"}}}}"#, "x".repeat(300 * 1024));
    let r = viewer.request(http::Method::POST, "/v1/embed/run", Some(big.into_bytes())).await?;
    seen.keep("big body", &r);
    ensure!(r.status == 413, "{}: {}", r.status, r.text());
    let keys: serde_json::Map<String, Value> = (0..10_000).map(|i| (format!("k{i}"), json!("v"))).collect();
    let r = call(&viewer, "POST", "/v1/embed/run", Some(&json!({ "filters": keys }))).await?;
    seen.keep("many keys", &r);
    ensure!(r.status == 400 && message(&r).starts_with("filters.k"), "{}: {}", r.status, message(&r));
    let deep = format!(r#"{{"filters": {{"note": {}1{}}}}}"#, "[".repeat(5000), "]".repeat(5000));
    let r = viewer.request(http::Method::POST, "/v1/embed/run", Some(deep.into_bytes())).await?;
    seen.keep("deep", &r);
    ensure!(r.status == 400, "{}: {}", r.status, r.text());
    let long = json!({ "filters": { "note": "x".repeat(201) } });
    let r = call(&viewer, "POST", "/v1/embed/run", Some(&long)).await?;
    seen.keep("long text", &r);
    ensure!(r.status == 400 && message(&r).starts_with("filters.note: is 201 characters"), "{}", message(&r));
    ensure!(queued(&ed).await? == 2, "nothing more queued by refused requests");

    // The page while the agent is busy reloads itself; CR/LF in its address stays
    // percent-encoded in the Refresh header, which points at the page only.
    let anon = ed.with_token(None);
    let url = format!(
        "/embed/dashboards/{pid}?token={token_text}&f.note=y&x=%0D%0ASet-Cookie:%20a=b&u=https://evil.example/"
    );
    let r = call(&anon, "GET", &url, None).await?;
    seen.keep("page busy", &r);
    let refresh = r.header("refresh").unwrap_or_default();
    ensure!(r.status == 200 && r.text().contains("data-busy"), "{}: {}", r.status, r.text());
    ensure!(refresh.starts_with(&format!("15; url=/embed/dashboards/{pid}?token=")), "{refresh}");
    ensure!(!refresh.contains(['\r', '\n']) && refresh.contains("%0D%0A"), "{refresh}");
    ensure!(r.header("set-cookie").is_none(), "no header from the address");

    // A token of another project on this project's page shows nothing of either.
    let other = ok_json(&ed, "POST", "/v1/projects", Some(&json!({ "name": "Secret other", "queries": [] }))).await;
    let other_pid = match other {
        Ok(p) => p["id"].as_str().context("id")?.to_owned(),
        Err(_) => {
            let mut body = project();
            body["name"] = json!("Secret other");
            ok_json(&ed, "POST", "/v1/projects", Some(&body)).await?["id"].as_str().context("id")?.to_owned()
        }
    };
    let theirs = token(&ed, &other_pid, json!({ "customer": "North", "viewer_filters": ["customer"] })).await?;
    let r = call(&anon, "GET", &format!("/embed/dashboards/{pid}?token={theirs}"), None).await?;
    seen.keep("other project's token", &r);
    ensure!(r.status == 401 && !r.text().contains("Secret other") && !r.text().contains("Per customer"), "{r:?}");
    // A token without viewer_filters runs nothing.
    let plain = ed.with_token(Some(&token(&ed, &pid, json!({ "customer": "North" })).await?));
    let r = call(&plain, "POST", "/v1/embed/run", Some(&json!({}))).await?;
    seen.keep("no viewer_filters", &r);
    ensure!(r.status == 403, "{}: {}", r.status, r.text());

    // The owner loses the connection, then is disabled: runs refused, nothing named.
    let shares = ok_json(&admin, "GET", "/v1/shares", None).await?;
    let share = shares["shares"].as_array().context("shares")?.iter().find(|s| s["user"] == "ed").context("ed's")?;
    let sid = share["id"].as_str().context("share id")?.to_owned();
    ok_json(&admin, "DELETE", &format!("/v1/shares/{sid}"), None).await?;
    let fresh = json!({ "filters": { "period": { "from": "2025-04-01", "to": "2025-04-02" } } });
    let r = call(&viewer, "POST", "/v1/embed/run", Some(&fresh)).await?;
    seen.keep("unshared", &r);
    ensure!(r.status == 403, "{}: {}", r.status, r.text());
    let r = call(&anon, "GET", &format!("/embed/dashboards/{pid}?token={token_text}&f.note=z"), None).await?;
    seen.keep("page unshared", &r);
    share_connection(&admin, "edge-1", "sample", "ed").await?;
    ok_json(&admin, "PATCH", "/v1/users/ed", Some(&json!({ "disabled": true }))).await?;
    let r = call(&viewer, "POST", "/v1/embed/run", Some(&fresh)).await?;
    seen.keep("owner disabled", &r);
    ensure!(r.status == 403, "{}: {}", r.status, r.text());
    ok_json(&admin, "PATCH", "/v1/users/ed", Some(&json!({ "disabled": false }))).await?;
    ensure!(queued(&ed).await? == 2, "nothing more queued");

    // Revoked: the API, the run and the page all refuse the old token.
    ok_json(&admin, "POST", &format!("/v1/projects/{pid}/embed-tokens/revoke"), None).await?;
    for (what, r) in [
        ("revoked run", call(&viewer, "POST", "/v1/embed/run", Some(&fresh)).await?),
        ("revoked project", call(&viewer, "GET", "/v1/embed/project", None).await?),
        ("revoked page", call(&anon, "GET", &format!("/embed/dashboards/{pid}?token={token_text}"), None).await?),
    ] {
        seen.keep(what, &r);
        ensure!(r.status == 401 && !r.text().contains("Per customer"), "{what}: {} {}", r.status, r.text());
    }
    // Expired: a 10-second token, looked at until the control plane's clock passes it.
    let short = ed.with_token(Some(
        &token(&ed, &pid, json!({ "customer": "North", "ttl_secs": 10, "viewer_filters": ["note"] })).await?,
    ));
    outpost_e2e::eventually("the short token expires", Duration::from_secs(30), || {
        let short = short.clone();
        async move {
            let r = call(&short, "POST", "/v1/embed/run", Some(&json!({ "filters": { "note": "late" } }))).await?;
            ensure!(matches!(r.status, 401 | 429), "{}: {}", r.status, r.text());
            Ok(r.status == 401 && message(&r).contains("expired"))
        }
    })
    .await?;
    ensure!(queued(&ed).await? == 2, "the short token's runs found the share full, then expired");
    seen.check()
}
