//! Enrolment, accounted for, against the real binaries: every token created (API and
//! CLI), used, refused, revoked, every renewal, revocation and re-enrolment is a record in
//! the control plane's audit log; outstanding tokens are listed (never their secrets) and
//! revoked through the API, the CLI and the console; the CLI's actor is the effective
//! uid's account even with an empty `$USER`; and guessing at the enrolment endpoint is
//! throttled per source address and per token id.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{ensure, Context as _, Result};
use bytes::Bytes;
use http::Method;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use outpost_e2e::client::Api;
use outpost_e2e::{call, eventually, ok_json, Agent, ControlPlane};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, ServerName};
use serde_json::{json, Value};

/// The audit events with `action` (oldest first).
async fn events(api: &Api, action: &str) -> Result<Vec<Value>> {
    let v = ok_json(api, "GET", &format!("/v1/audit?action={action}&limit=1000"), None).await?;
    Ok(v["events"].as_array().context("events")?.clone())
}

/// The CLI with an empty `$USER` (the old code recorded `cli:unknown` then).
fn cli_without_user(cp: &ControlPlane, args: &[&str]) -> Result<String> {
    let mut all: Vec<&str> = args.to_vec();
    let dir = cp.data_dir.display().to_string();
    all.extend(["--data-dir", dir.as_str()]);
    let store: Vec<String> = cp.pg.iter().flat_map(|db| ["--store".to_owned(), db.url.clone()]).collect();
    all.extend(store.iter().map(String::as_str));
    let empty = std::path::Path::new("");
    let (code, out, err) = outpost_e2e::run_cmd_env(
        &outpost_e2e::bin("outpost-control-plane"),
        &all,
        None,
        &[("USER", empty), ("SUDO_USER", empty)],
    )?;
    ensure!(code == 0, "{args:?}: {out}{err}");
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_enrolment_step_is_audited_and_outstanding_tokens_are_listed_and_revoked() -> Result<()> {
    let root = tempfile::tempdir()?;
    let mut cp = ControlPlane::init(root.path())?;
    cp.start()?;
    let admin = cp.api()?;

    // Created through the API: the record says who, for which agent and pool, until when.
    let t1 =
        ok_json(&admin, "POST", "/v1/enrollment-tokens", Some(&json!({ "agent": "ea-1", "ttl_secs": 600 }))).await?;
    let t2 = ok_json(&admin, "POST", "/v1/enrollment-tokens", Some(&json!({ "agent": "ea-2", "pool": "pa" }))).await?;
    let (id1, id2) = (t1["id"].as_str().context("id")?, t2["id"].as_str().context("id")?);
    let created = events(&admin, "enrollment_tokens.create").await?;
    assert_eq!(created.len(), 2, "{created:?}");
    assert_eq!(created[1]["actor"], "admin");
    assert_eq!(created[1]["target"], "ea-2");
    assert_eq!(created[1]["detail"]["pool"], "pa");
    assert_eq!(created[1]["detail"]["token_id"], id2);
    assert_eq!(created[1]["detail"]["expires_at"], t2["expires_at"]);

    // Listed, never with a secret.
    let list = call(&admin, "GET", "/v1/enrollment-tokens", None).await?;
    assert_eq!(list.status, 200, "{}", list.text());
    let listed: Vec<String> = list.json()?["tokens"]
        .as_array()
        .context("tokens")?
        .iter()
        .filter_map(|t| t["id"].as_str().map(str::to_owned))
        .collect();
    let mut expected = vec![id1.to_owned(), id2.to_owned()];
    expected.sort();
    let mut listed = listed;
    listed.sort();
    assert_eq!(listed, expected);
    for t in [&t1, &t2] {
        let secret =
            outpost_protocol::enrol::EnrolmentToken::decode(t["token"].as_str().context("token")?)?.secret.clone();
        assert!(!list.text().contains(&secret), "a listed token's secret");
    }
    // The console's enrolment page lists them with a revoke button.
    let password = "correct horse battery staple";
    ok_json(&admin, "PATCH", "/v1/users/admin", Some(&json!({ "password": password }))).await?;
    let anon = admin.with_token(None);
    let res = call(&anon, "POST", "/v1/sessions", Some(&json!({ "user": "admin", "password": password }))).await?;
    ensure!(res.status == 201, "sign-in: {}", res.text());
    let cookie = res.header("set-cookie").context("cookie")?.split(';').next().context("cookie")?.to_owned();
    let page = call(&anon.with_header("cookie", &cookie), "GET", "/console/admin/enrolment", None).await?;
    assert_eq!(page.status, 200, "{}", page.text());
    for id in [id1, id2] {
        assert!(page.text().contains(&format!("data-api=\"DELETE /v1/enrollment-tokens/{id}\"")), "{}", page.text());
    }

    // Revoked through the API: it enrols nobody, and that refusal is recorded.
    let res = call(&admin, "DELETE", &format!("/v1/enrollment-tokens/{id2}"), None).await?;
    assert_eq!(res.status, 204, "{}", res.text());
    let listed = ok_json(&admin, "GET", "/v1/enrollment-tokens", None).await?;
    assert!(!listed.to_string().contains(id2), "{listed}");
    let ea2 = Agent::new(root.path(), "ea-2", "")?;
    let (code, _, _) = ea2.enroll(t2["token"].as_str().context("token")?)?;
    assert_ne!(code, 0, "a revoked token enrols nobody");
    let revoked = events(&admin, "enrollment_tokens.revoke").await?;
    assert_eq!((revoked.len(), revoked[0]["target"].as_str()), (1, Some(id2)));

    // The CLI: create, list, revoke, with an empty $USER; the actor is the effective uid's account.
    let (_, me, _) = outpost_e2e::run_cmd(std::path::Path::new("id"), &["-un"], None)?;
    let me = format!("cli:{}", me.trim());
    let token3 = cli_without_user(&cp, &["enrollment-token", "create", "--agent", "ea-3", "--ttl", "10m"])?;
    let id3 = outpost_protocol::enrol::EnrolmentToken::decode(token3.trim())?.id.clone();
    let out = cli_without_user(&cp, &["enrollment-token", "list"])?;
    assert!(out.contains(&id3) && out.contains("ea-3") && out.contains(id1), "{out}");
    cli_without_user(&cp, &["enrollment-token", "revoke", &id3])?;
    let by_cli: Vec<Value> =
        events(&admin, "enrollment_tokens.").await?.into_iter().filter(|e| e["credential"] == "cli").collect();
    assert_eq!(by_cli.len(), 2, "{by_cli:?}");
    for e in &by_cli {
        assert_eq!(e["actor"], me.as_str(), "{e}");
    }

    // Used: the agent's enrolment, from its address, with the token's id.
    let mut ea1 = Agent::new(root.path(), "ea-1", "")?;
    let (code, out, err) = ea1.enroll(t1["token"].as_str().context("token")?)?;
    ensure!(code == 0, "enrol: {out}{err}");
    let enrols = events(&admin, "agents.enrol").await?;
    let ok: Vec<&Value> = enrols.iter().filter(|e| e["outcome"] == "ok").collect();
    assert_eq!(ok.len(), 1, "{enrols:?}");
    assert_eq!(ok[0]["actor"], "agent:ea-1");
    assert_eq!(ok[0]["credential"], format!("enrolment-token:{id1}"));
    assert_eq!(ok[0]["remote"], "127.0.0.1");
    let refused: Vec<&Value> = enrols.iter().filter(|e| e["outcome"] == "denied").collect();
    assert_eq!(refused.len(), 1, "the revoked token's attempt: {enrols:?}");
    assert_eq!(refused[0]["detail"]["reason"], "token_unknown");
    assert_eq!(refused[0]["credential"], format!("enrolment-token:{id2}"));

    // Renewed (two thirds of its certificate's lifetime have passed): recorded as the
    // agent's own action.
    outpost_e2e::make_renewal_due(&ea1)?;
    ea1.start_connected()?;
    eventually("the renewal's audit record", Duration::from_secs(30), || async {
        Ok(events(&admin, "agents.renew").await?.iter().any(|e| e["actor"] == "agent:ea-1" && e["outcome"] == "ok"))
    })
    .await?;
    ea1.stop()?;

    // Revoked, then enrolled again: a re-enrolment, saying the name was revoked.
    ok_json(&admin, "POST", "/v1/agents/ea-1/revoke", None).await?;
    assert_eq!(events(&admin, "agents.revoke").await?.len(), 1);
    let again = Agent::new(&root.path().join("again"), "ea-1", "")?;
    again.enroll_with(&cp).await?;
    let re = events(&admin, "agents.reenrol").await?;
    assert_eq!(re.len(), 1, "{re:?}");
    assert_eq!((re[0]["actor"].as_str(), re[0]["detail"]["was_revoked"].as_bool()), (Some("agent:ea-1"), Some(true)));
    Ok(())
}

/// A TLS client for the enrolment listener, from a chosen local address.
async fn enrol_from(local: &str, cp: &ControlPlane, body: &Value) -> Result<(u16, Option<String>, String)> {
    let pem = std::fs::read(cp.data_dir.join("ca.crt"))?;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(&pem)?)?;
    let mut config =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
    config.alpn_protocols = vec![outpost_protocol::wire::ALPN_ENROLL.to_vec()];
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(format!("{local}:0").parse()?)?;
    let tcp = socket.connect(cp.agent_addr.parse()?).await?;
    let tls =
        tokio_rustls::TlsConnector::from(Arc::new(config)).connect(ServerName::try_from("localhost")?, tcp).await?;
    let (mut sender, conn) = http1::handshake(TokioIo::new(tls)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = http::Request::builder()
        .method(Method::POST)
        .uri(outpost_protocol::wire::PATH_ENROLL)
        .header(http::header::HOST, "localhost")
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(serde_json::to_vec(body)?)))?;
    let res = sender.send_request(req).await?;
    let status = res.status().as_u16();
    let retry = res.headers().get(http::header::RETRY_AFTER).and_then(|v| v.to_str().ok()).map(str::to_owned);
    #[allow(clippy::disallowed_methods)] // a small answer from our own server
    let text = String::from_utf8_lossy(&res.into_body().collect().await?.to_bytes()).into_owned();
    Ok((status, retry, text))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guessing_at_enrolment_is_throttled_per_address_and_per_token_and_a_real_agent_still_enrols() -> Result<()> {
    let root = tempfile::tempdir()?;
    let mut cp = ControlPlane::init(root.path())?;
    cp.start()?;
    let admin = cp.api()?;
    let csr =
        rcgen::CertificateParams::new(Vec::<String>::new())?.serialize_request(&rcgen::KeyPair::generate()?)?.pem()?;

    // One host guesses token ids: the 11th refused attempt in the window gets 429.
    let mut statuses = Vec::new();
    for i in 0..30 {
        let guess = json!({ "token_id": format!("{i:016x}"), "secret": "00", "agent": "guessed", "csr_pem": csr });
        let (status, retry, text) = enrol_from("127.0.0.2", &cp, &guess).await?;
        if status == 429 {
            let secs: u64 = retry.context("429 without Retry-After")?.parse()?;
            assert!((1..=900).contains(&secs), "{secs}");
            assert!(text.contains("too_many_attempts"), "{text}");
        }
        statuses.push(status);
    }
    assert!(statuses[..10].iter().all(|s| *s == 401), "the first ten are refused as guesses: {statuses:?}");
    assert!(statuses[10..].iter().all(|s| *s == 429), "then throttled: {statuses:?}");

    // Many hosts guess one token's secret: throttled per token id.
    let target = ok_json(&admin, "POST", "/v1/enrollment-tokens", Some(&json!({ "agent": "victim" }))).await?;
    let tid = target["id"].as_str().context("id")?.to_owned();
    let mut statuses = Vec::new();
    for i in 0..12 {
        let guess = json!({ "token_id": tid, "secret": format!("{i:064x}"), "agent": "victim", "csr_pem": csr });
        statuses.push(enrol_from(&format!("127.0.1.{}", i + 1), &cp, &guess).await?.0);
    }
    assert!(statuses[..10].iter().all(|s| *s == 401), "{statuses:?}");
    assert!(
        statuses[10..].iter().all(|s| *s == 429),
        "one token's secret cannot be guessed from many addresses: {statuses:?}"
    );

    // A real agent, from its own address with its own token, enrols at once.
    let agent = Agent::new(root.path(), "edge-1", "")?;
    agent.enroll_with(&cp).await?;

    // Each attempt is in the audit log, the throttled ones as such.
    let enrols = events(&admin, "agents.enrol").await?;
    let reason = |r: &str| enrols.iter().filter(|e| e["detail"]["reason"] == r).count();
    assert_eq!(reason("token_unknown"), 10);
    assert_eq!(reason("throttled_address"), 20);
    assert_eq!(reason("token_altered"), 10);
    assert_eq!(reason("throttled_token"), 2);
    assert!(enrols.iter().any(|e| e["outcome"] == "ok" && e["actor"] == "agent:edge-1"));
    assert!(enrols
        .iter()
        .filter(|e| e["outcome"] == "denied")
        .all(|e| e["remote"].as_str().is_some_and(|r| r.starts_with("127.0."))));
    Ok(())
}
