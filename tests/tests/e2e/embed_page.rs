//! The embed page in real Chromium, framed by a page of another origin (issue 23): the
//! host page on `http://127.0.0.1:PORT` (served by this test) frames
//! `https://localhost:CP/embed/dashboards/{id}?token=…`; the frame shows the token
//! customer's number and chart, no SQL, agent or connection names, runs no script and fits
//! a narrow frame. The control plane lists two host origins in `embed.frame_ancestors`;
//! the project narrows them to one (`embed_origins`), and the other gets nothing drawn.
//! Screenshots under `target/console-screenshots/embed/`.

use anyhow::{ensure, Context, Result};
use outpost_e2e::{call, ok_json, Agent, ControlPlane};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::console::{browser_dir, chromium, run_node, screenshots};

const BAR_SQL: &str = "SELECT region, SUM(amount) AS revenue FROM orders GROUP BY region ORDER BY region";
const COUNT_SQL: &str = "SELECT ROUND(SUM(amount), 2) AS n FROM orders WHERE region = $1";

/// Serves `html` to every request on a port of its own (the host application's origin).
pub(crate) async fn host_page(html: String) -> Result<u16> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let html = html.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf).await;
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/html; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    html.len()
                );
                let _ = conn.write_all(head.as_bytes()).await;
                let _ = conn.write_all(html.as_bytes()).await;
            });
        }
    });
    Ok(port)
}

/// The embed page's address for `token` on project `pid`, as a host page frames it.
pub(crate) fn embed_frame_src(cp: &ControlPlane, pid: &str, token: &str) -> String {
    let cp_port = cp.api_addr.rsplit(':').next().unwrap_or_default();
    format!("https://localhost:{cp_port}/embed/dashboards/{pid}?token={token}")
}

/// The host application's page: it frames the URL after its `#` in an iframe titled `title`.
pub(crate) fn host_html(title: &str) -> String {
    format!(
        "<!doctype html><html><head><title>Host app</title></head><body>\
         <h1>Host application</h1><iframe id=\"outpost\" title=\"{title}\" style=\"width: 100%; height: 700px; border: 0\"></iframe>\
         <script>document.getElementById('outpost').src = decodeURIComponent(location.hash.slice(1));</script>\
         </body></html>"
    )
}

/// A control plane whose `embed.frame_ancestors` are `ancestors`, and agent `edge-1`
/// enrolled and connected.
pub(crate) async fn framed_pair(root: &std::path::Path, ancestors: &[&str]) -> Result<(ControlPlane, Agent)> {
    let mut cp = ControlPlane::init(root)?;
    let config = root.join("control-plane.yaml");
    let list = ancestors.iter().map(|a| format!("\"{a}\"")).collect::<Vec<_>>().join(", ");
    std::fs::write(&config, format!("data_dir: {}\nembed:\n  frame_ancestors: [{list}]\n", cp.data_dir.display()))?;
    cp.config = Some(config);
    cp.start()?;
    let mut agent = Agent::new(root, "edge-1", "")?;
    agent.enroll_with(&cp).await?;
    agent.start_connected()?;
    Ok((cp, agent))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_chromium_a_page_of_another_origin_frames_the_embed_page_and_an_unlisted_origin_cannot() -> Result<()> {
    browser_dir()?;
    chromium()?;
    let root = tempfile::tempdir()?;
    // The host page's origin is only known once it listens; the frame's URL is filled in
    // by the browser script (it reads `#frame-src` from the query).
    let host_port = host_page(host_html("Sales")).await?;
    let allowed = format!("http://127.0.0.1:{host_port}");
    let unlisted = format!("http://localhost:{host_port}");
    let (cp, _agent) = framed_pair(root.path(), &[&allowed, &unlisted]).await?;
    let admin = cp.api()?;

    let body = |origins: Value| {
        json!({ "name": "Sales", "embed_origins": origins, "queries": [
            { "name": "Revenue by region", "agent": "edge-1", "connection": "sample", "sql": BAR_SQL,
              "render": { "kind": "bar", "x": "region", "y": ["revenue"], "title": "Revenue" } },
            { "name": "Your orders", "agent": "edge-1", "connection": "sample", "sql": COUNT_SQL,
              "render": { "kind": "scalar", "column": "n" }, "customer_param": 1 } ] })
    };
    // A project may only narrow the control plane's list.
    let res = call(&admin, "POST", "/v1/projects", Some(&body(json!([allowed, "https://elsewhere.example"])))).await?;
    ensure!(res.status == 400 && res.text().contains("embed_origins[1]"), "{} {}", res.status, res.text());
    let project = ok_json(&admin, "POST", "/v1/projects", Some(&body(json!([allowed])))).await?;
    let pid = project["id"].as_str().context("project id")?.to_owned();
    ensure!(project["embed_origins"] == json!([allowed]), "{project}");
    let mut numbers = serde_json::Map::new();
    for customer in ["North", "South"] {
        let run =
            ok_json(&admin, "POST", &format!("/v1/projects/{pid}/run"), Some(&json!({ "customer": customer }))).await?;
        for j in run["jobs"].as_array().context("jobs")? {
            let id = j["id"].as_str().unwrap_or_default();
            let res = call(&admin, "GET", &format!("/v1/jobs/{id}/result?wait=30"), None).await?;
            ensure!(res.status == 200, "{}", res.text());
            if res.header("content-type").is_some_and(|c| c.starts_with("application/json")) {
                let v: Value = serde_json::from_str(&res.text())?;
                let shown = v["formatted"].as_str().map_or_else(|| v["value"].to_string(), str::to_owned);
                numbers.insert(customer.to_owned(), json!(shown));
            }
        }
    }
    ensure!(numbers["North"] != numbers["South"], "the customers' numbers differ: {numbers:?}");
    let token =
        ok_json(&admin, "POST", &format!("/v1/projects/{pid}/embed-tokens"), Some(&json!({ "customer": "North" })))
            .await?["token"]
            .as_str()
            .context("token")?
            .to_owned();
    let frame_src = embed_frame_src(&cp, &pid, &token);

    let out = tokio::task::spawn_blocking({
        let root = root.path().to_owned();
        move || {
            run_node(
                "embed.mjs",
                &root,
                json!({
                    "allowed_host": allowed,
                    "unlisted_host": unlisted,
                    "frame_src": frame_src,
                    "north": numbers["North"], "south": numbers["South"],
                    "forbidden": ["FROM orders", "edge-1", "sample", "SUM(amount)"],
                    "screenshots": screenshots("embed"),
                }),
            )
        }
    })
    .await??;
    ensure!(out["allowed"]["shown"] == json!(true), "{out}");
    ensure!(out["unlisted"]["shown"] == json!(false), "{out}");
    // Each tile the frame drew was an audited embed read under the customer.
    let audit = ok_json(&admin, "GET", "/v1/audit?actor=embed:North&action=embed.result&outcome=ok", None).await?;
    ensure!(audit["events"].as_array().is_some_and(|e| e.len() >= 2), "{audit}");
    Ok(())
}
