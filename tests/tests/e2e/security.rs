//! Attacks on the foundation, against the real binaries: forged, expired and misaddressed
//! jobs, and TLS clients without the right certificate.

use std::sync::Arc;

use anyhow::{Context as _, Result};
use outpost_control_plane::store::{NewJob, SqliteStore, Store as _};
use outpost_e2e::{job_spec, Agent, ControlPlane};
use outpost_protocol::{sign_job, SigningKey};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_expired_and_misaddressed_jobs_are_rejected_and_never_run() -> Result<()> {
    let root = tempfile::tempdir()?;
    let (cp, mut agent) = outpost_e2e::enrolled_offline(root.path()).await?;

    // A hostile control plane (or anyone with write access to its queue) queues three jobs
    // while the agent is offline: one signed by a key the agent never trusted, one signed
    // by the real key but long expired, one signed by the real key for another agent.
    let store = SqliteStore::open(&cp.data_dir.join("control-plane.db"))?;
    let real_id = store.active_signing_key().await?.context("active key")?;
    let real_key = outpost_control_plane::crypto::signing::load(&cp.data_dir, &real_id)?;
    let (rogue_key, _) = SigningKey::generate().map_err(|e| anyhow::anyhow!("{e}"))?;
    let now = outpost_protocol::unix_now();
    let cases = [
        ("unknown_key", sign_job(&job_spec("edge-1", now, now + 300), &rogue_key)),
        ("expired", sign_job(&job_spec("edge-1", now - 900, now - 700), &real_key)),
        ("wrong_audience", sign_job(&job_spec("edge-2", now, now + 300), &real_key)),
    ];
    let mut ids = Vec::new();
    for (reason, env) in &cases {
        let id = env.unverified_job_id().context("job id")?;
        store
            .insert_job(NewJob {
                id: id.clone(),
                agent: "edge-1".into(),
                pool: None,
                connection: "sample".into(),
                envelope_json: serde_json::to_string(env)?,
                key_id: real_id.clone(), // the queue's bookkeeping can say anything
                created_at: now,
                expires_at: now + 300, // the queue's own bookkeeping says "deliverable"
                origin: Default::default(),
            })
            .await?;
        ids.push((id, *reason));
    }

    agent.start_connected()?;
    let api = cp.api()?;
    for (id, reason) in &ids {
        let res = api.get(&format!("/v1/jobs/{id}/result?wait=30")).await?;
        assert_eq!(res.status, 409, "{reason}: {}", res.text());
        let body = res.json()?;
        assert_eq!(body["state"], "rejected", "{reason}: {body}");
        assert_eq!(body["reason"], *reason, "{body}");
    }
    // The audit log proves none of them ran: rejected, zero rows, no body sent.
    let audit = agent.audit_records()?;
    for (id, reason) in &ids {
        let recs: Vec<_> = audit.iter().filter(|r| r["job_id"] == id.as_str()).collect();
        assert_eq!(recs.len(), 1, "{reason}: {recs:?}");
        assert_eq!(recs[0]["verdict"], "rejected");
        assert_eq!(recs[0]["reason"], *reason);
        assert_eq!(recs[0]["rows_read"], 0);
        // Nothing but the reason's message left (counted and hashed like a body).
        assert!(recs[0]["body_sha256"].is_null() && recs[0]["error_sha256"].is_string(), "{recs:?}");
        assert!(recs[0]["sql_sha256"].is_null(), "an unverified job's SQL is not even hashed");
    }
    assert!(audit.iter().all(|r| r["verdict"] == "rejected"), "no job was accepted: {audit:?}");
    Ok(())
}

/// Connects to `addr` with `config`, sends a request and returns what came back:
/// Ok(bytes) if the server answered at the HTTP level, Err if TLS failed.
async fn try_request(addr: &str, config: rustls::ClientConfig) -> Result<Vec<u8>> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let mut tls =
        tokio_rustls::TlsConnector::from(Arc::new(config)).connect(ServerName::try_from("localhost")?, tcp).await?;
    // With TLS 1.3 the server checks the client certificate after the client's side of
    // the handshake is done, so the refusal arrives as an alert on the first read.
    tls.write_all(b"GET /v1/agent/jobs/next HTTP/1.1\r\nhost: localhost\r\n\r\n").await?;
    let mut buf = Vec::new();
    tls.read_to_end(&mut buf).await?;
    Ok(buf)
}

fn client_builder(
    ca_pem: &[u8],
) -> Result<rustls::ConfigBuilder<rustls::ClientConfig, rustls::client::WantsClientCert>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(ca_pem)?)?;
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_listener_refuses_clients_without_a_certificate_from_its_ca() -> Result<()> {
    let root = tempfile::tempdir()?;
    let mut cp = ControlPlane::init(root.path())?;
    cp.start()?;
    let ca_pem = std::fs::read(cp.data_dir.join("ca.crt"))?;

    // No client certificate.
    let err = try_request(&cp.agent_addr, client_builder(&ca_pem)?.with_no_client_auth()).await;
    let msg = format!("{:#}", err.as_ref().err().context("a client without a certificate got an HTTP answer")?);
    assert!(msg.to_lowercase().contains("certificate"), "{msg}");

    // A client certificate from another CA, with a plausible agent name.
    let other_ca_key = rcgen::KeyPair::generate()?;
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let other_ca = ca_params.self_signed(&other_ca_key)?;
    let issuer = rcgen::Issuer::new(ca_params, &other_ca_key);
    let client_key = rcgen::KeyPair::generate()?;
    let mut leaf = rcgen::CertificateParams::new(Vec::<String>::new())?;
    leaf.distinguished_name.push(rcgen::DnType::CommonName, "edge-1");
    leaf.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let cert = leaf.signed_by(&client_key, &issuer)?;
    let config = client_builder(&ca_pem)?.with_client_auth_cert(
        vec![cert.der().clone(), other_ca.der().clone()],
        PrivateKeyDer::from_pem_slice(client_key.serialize_pem().as_bytes())?,
    )?;
    let err = try_request(&cp.agent_addr, config).await;
    let msg = format!("{:#}", err.as_ref().err().context("a client with a foreign certificate got an HTTP answer")?);
    assert!(msg.to_lowercase().contains("certificate") || msg.contains("UnknownCA"), "{msg}");

    // The API listener does not serve agent routes at all, with or without a token.
    for api in [cp.api()?.with_token(None), cp.api()?] {
        let res = api.get("/v1/agent/jobs/next").await?;
        assert_eq!((res.status, res.json()?["code"].clone()), (404, serde_json::json!("not_found")));
    }
    Ok(())
}

/// Puts a finished job back in the queue, as a compromised control plane replaying a
/// captured envelope would.
fn requeue(cp: &ControlPlane, id: &str) -> Result<()> {
    let db = rusqlite::Connection::open(cp.data_dir.join("control-plane.db"))?;
    db.busy_timeout(std::time::Duration::from_secs(5))?;
    let n = db.execute(
        "UPDATE jobs SET state = 'queued', lease_until = NULL, finished_at = NULL, report_sha256 = NULL,
             reason_code = NULL, reason_message = NULL, stats = NULL, content_type = NULL, body = NULL WHERE id = ?1",
        [id],
    )?;
    anyhow::ensure!(n == 1, "job {id} not found");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_envelope_is_rejected_before_and_after_an_agent_restart() -> Result<()> {
    let root = tempfile::tempdir()?;
    // A short long-poll, so the agent asks again soon after the queue is changed behind
    // the control plane's back (such a change wakes nobody).
    let (cp, mut agent) = outpost_e2e::start_pair(root.path(), "edge-1", "  long_poll_secs: 1\n", &[]).await?;
    let api = cp.api()?;
    let id = cp.dispatch(serde_json::json!({ "agent": "edge-1", "connection": "sample", "sql": "SELECT COUNT(*) FROM orders", "render": { "kind": "table" } })).await?;
    assert_eq!(api.get(&format!("/v1/jobs/{id}/result?wait=30")).await?.status, 200);

    for round in ["before restart", "after restart"] {
        if round == "after restart" {
            agent.stop()?;
            requeue(&cp, &id)?;
            agent.start_connected()?;
        } else {
            requeue(&cp, &id)?;
        }
        let res = api.get(&format!("/v1/jobs/{id}/result?wait=30")).await?;
        assert_eq!(res.status, 409, "{round}: {}", res.text());
        assert_eq!(res.json()?["reason"], "replayed", "{round}");
    }
    let audit = agent.audit_records()?;
    let verdicts: Vec<_> = audit
        .iter()
        .filter(|r| r["job_id"] == id.as_str())
        .map(|r| (r["verdict"].clone(), r["rows_read"].clone()))
        .collect();
    assert_eq!(
        verdicts,
        vec![
            (serde_json::json!("accepted"), serde_json::json!(1)),
            (serde_json::json!("rejected"), serde_json::json!(0)),
            (serde_json::json!("rejected"), serde_json::json!(0)),
        ]
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_agent_is_refused_at_once_its_jobs_fail_and_it_stays_revoked_after_a_restart() -> Result<()> {
    let root = tempfile::tempdir()?;
    let (mut cp, mut agent) = outpost_e2e::start_pair(root.path(), "edge-1", "", &[]).await?;
    let api = cp.api()?;
    let agents = api.get("/v1/agents").await?.json()?;
    assert_eq!(agents["agents"][0]["status"], "online", "{agents}");

    // A job queued while the agent is frozen, then the revocation.
    agent.process()?.signal("STOP")?;
    let id = cp.dispatch(serde_json::json!({ "agent": "edge-1", "connection": "sample", "sql": "SELECT 1", "render": { "kind": "table" } })).await?;
    let res = api.post_json("/v1/agents/edge-1/revoke", &serde_json::json!({})).await?;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(res.json()?["failed_jobs"], serde_json::json!([id]));
    let res = api.get(&format!("/v1/jobs/{id}/result")).await?;
    assert_eq!(res.json()?["reason"], "agent_revoked");
    agent.process()?.signal("CONT")?;

    // Its still-valid certificate no longer gets anything done: the agent says so.
    agent.process()?.wait_for_log("refused this agent", std::time::Duration::from_secs(30))?;
    assert_eq!(api.get("/v1/agents").await?.json()?["agents"][0]["status"], "revoked");
    let id2 = cp.dispatch(serde_json::json!({ "agent": "edge-1", "connection": "sample", "sql": "SELECT 1", "render": { "kind": "table" } })).await?;

    // After a control-plane restart the revocation holds.
    cp.kill()?;
    cp.start()?;
    assert_eq!(cp.api()?.get("/v1/agents").await?.json()?["agents"][0]["status"], "revoked");
    let res = cp.api()?.get(&format!("/v1/jobs/{id2}/result?wait=3")).await?;
    assert_eq!(res.status, 202, "never delivered to a revoked agent: {}", res.text());
    // (The first job may have reached the frozen agent's socket before the revocation;
    // its result is refused. The job queued after the revocation never reaches it.)
    assert!(agent.audit_records()?.iter().all(|r| r["job_id"] != id2.as_str()), "nothing ran after the revocation");
    assert_eq!(cp.api()?.get(&format!("/v1/jobs/{id}")).await?.json()?["state"], "failed");

    // Re-enrolment with a new token re-admits the name (recovery from a lost key).
    agent.stop()?;
    agent.enroll_with(&cp).await?;
    agent.start_connected()?;
    assert_eq!(cp.api()?.get(&format!("/v1/jobs/{id2}/result?wait=30")).await?.status, 200);
    Ok(())
}

/// The first certificate's lifetime in the renewal test: time for the agent to start and
/// renew under a loaded machine, and all the test waits of wall-clock time.
const SHORT_CERT_SECS: i64 = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_renews_its_certificate_with_a_new_key_and_keeps_working_past_the_first_expiry() -> Result<()> {
    let root = tempfile::tempdir()?;
    let (cp, mut agent) = outpost_e2e::enrolled_offline(root.path()).await?;
    // A first certificate from the control plane's CA that ends in a few seconds, with
    // two thirds of its lifetime behind it: the agent renews as soon as it runs, and the
    // first certificate's end comes without waiting out the control plane's shortest
    // lifetime (cert_lifetime_secs >= 10).
    outpost_e2e::shorten_certificate(&agent, &cp, SHORT_CERT_SECS)?;
    outpost_e2e::make_renewal_due(&agent)?;
    let key_before = std::fs::read(agent.state_dir.join("agent.key"))?;
    let cert_before = std::fs::read(agent.state_dir.join("agent.crt"))?;
    agent.start_connected()?;

    agent.process()?.wait_for_log("Certificate renewed with a new key pair", std::time::Duration::from_secs(30))?;
    assert_ne!(std::fs::read(agent.state_dir.join("agent.key"))?, key_before, "a new key pair");
    assert_ne!(std::fs::read(agent.state_dir.join("agent.crt"))?, cert_before, "a new certificate");

    // The connection made with the first certificate is closed when that certificate
    // expires; the agent carries on with the renewed one.
    cp.process()?.wait_for_log("Agent certificate expired; connection closed.", std::time::Duration::from_secs(30))?;
    let id = cp
        .dispatch(serde_json::json!({ "agent": "edge-1", "connection": "sample", "sql": "SELECT 1 AS one", "render": { "kind": "table" } }))
        .await?;
    let res = cp.api()?.get(&format!("/v1/jobs/{id}/result?wait=30")).await?;
    assert_eq!(res.status, 200, "{}\n{}", res.text(), agent.log_text());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_offline_past_its_certificate_expiry_says_it_must_enrol_again() -> Result<()> {
    let root = tempfile::tempdir()?;
    let (cp, mut agent) = outpost_e2e::start_pair(root.path(), "edge-1", "", &[]).await?;
    agent.stop()?;
    let status = |agent: &Agent| {
        outpost_e2e::run_cmd(
            &outpost_e2e::bin("outpost-agent"),
            &["--config", agent.config.to_str().unwrap_or_default(), "status"],
            None,
        )
    };
    let (_, before, _) = status(&agent)?;
    assert!(before.contains("certificate:    valid until"), "{before}");
    // The agent stays off until a minute past its certificate's end.
    outpost_e2e::expire_certificate(&agent, &cp, 60)?;
    // (status exits 1: the daemon is not running.)
    let (code, out, _) = status(&agent)?;
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("EXPIRED") && out.contains("outpost-agent enroll --token"), "{out}");
    let (code, _, err) = outpost_e2e::run_cmd(
        &outpost_e2e::bin("outpost-agent"),
        &["--config", agent.config.to_str().unwrap_or_default(), "run"],
        None,
    )?;
    assert_eq!(code, 1);
    assert!(err.contains("expired") && err.contains("enrolled again"), "{err}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_server_certificate_is_accepted_by_enrolled_agents_without_re_enrolment() -> Result<()> {
    let root = tempfile::tempdir()?;
    let (mut cp, agent) = outpost_e2e::start_pair(root.path(), "edge-1", "", &[]).await?;
    let before = std::fs::read(cp.data_dir.join("server.crt"))?;
    let ca_before = std::fs::read(cp.data_dir.join("ca.crt"))?;
    let (code, out, err) = outpost_e2e::run_cmd(
        &outpost_e2e::bin("outpost-control-plane"),
        &["server-cert", "rotate", "--data-dir", cp.data_dir.to_str().unwrap_or_default()],
        None,
    )?;
    assert_eq!(code, 0, "{out}{err}");
    assert_ne!(std::fs::read(cp.data_dir.join("server.crt"))?, before, "a new server certificate");
    assert_eq!(std::fs::read(cp.data_dir.join("ca.crt"))?, ca_before, "the same CA");

    cp.kill()?;
    cp.start()?;
    let id = cp
        .dispatch(serde_json::json!({ "agent": "edge-1", "connection": "sample", "sql": "SELECT 1 AS one", "render": { "kind": "table" } }))
        .await?;
    let res = cp.api()?.get(&format!("/v1/jobs/{id}/result?wait=30")).await?;
    assert_eq!(res.status, 200, "{}\n{}", res.text(), agent.log_text());
    Ok(())
}
