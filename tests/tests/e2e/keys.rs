//! Job-signing key rotation against the real binaries: `signing-key rotate|retire|list`
//! beside a running control plane, agents that learn keys only from statements signed by
//! a key they trust, and agents that trust only their own config.

use std::time::Duration;

use anyhow::{Context as _, Result};
use outpost_control_plane::store::{KeySetChange, NewJob, SigningKeyRecord, SqliteStore, Store as _};
use outpost_e2e::{Agent, ControlPlane};
use outpost_protocol::encoding::b64_encode;
use outpost_protocol::keyset::{entry, KeySet, KeyStatus};
use outpost_protocol::{sign_job, SigningKey};

fn job() -> serde_json::Value {
    serde_json::json!({
        "agent": "edge-1", "connection": "sample",
        "sql": "SELECT COUNT(*) AS n FROM orders",
        "render": { "kind": "table", "format": "json" }
    })
}

/// (key id, status, public key).
type KeyRow = (String, String, String);

/// `signing-key list --json`: the key set version and the keys.
fn keys(cp: &ControlPlane) -> Result<(u64, Vec<KeyRow>)> {
    let v: serde_json::Value = serde_json::from_str(&cp.cli(&["signing-key", "list", "--json"])?)?;
    let list = v["keys"]
        .as_array()
        .context("keys")?
        .iter()
        .map(|k| {
            let s = |f: &str| k[f].as_str().unwrap_or_default().to_owned();
            (s("key_id"), s("status"), s("public_key"))
        })
        .collect();
    Ok((v["key_set_version"].as_u64().context("version")?, list))
}

fn with_status(list: &[KeyRow], status: &str) -> Vec<String> {
    list.iter().filter(|k| k.1 == status).map(|k| k.0.clone()).collect()
}

/// The audit's job record for `id`.
fn job_record(agent: &Agent, id: &str) -> Result<serde_json::Value> {
    agent.audit_records()?.into_iter().find(|r| r["job_id"] == id).with_context(|| format!("no audit record of {id}"))
}

fn key_set_records(agent: &Agent) -> Result<Vec<serde_json::Value>> {
    Ok(agent.audit_records()?.into_iter().filter(|r| r["event"] == "key_set").collect())
}

fn agent_status(agent: &Agent) -> Result<String> {
    // Exit 1 when the agent is offline (the daemon is not running) is status's verdict,
    // not a failure to read the enrolment; anything else needing attention is.
    let (code, out, err) = agent.cli(&["status"], None, &[])?;
    let offline_only = out.contains("needs attention: the daemon is not running\n");
    anyhow::ensure!(code == 0 || (code == 1 && offline_only), "status failed ({code}): {out}{err}");
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_and_retirement_lose_no_job_and_reach_an_agent_that_was_offline() -> Result<()> {
    let root = tempfile::tempdir()?;
    let (cp, mut agent) = outpost_e2e::start_pair(root.path(), "edge-1", "", &[]).await?;
    let (v1, list) = keys(&cp)?;
    assert_eq!(v1, 1);
    let a = with_status(&list, "active").pop().context("an active key")?;
    let first = cp.dispatch(job()).await?;
    assert_eq!(cp.wait_result(&first).await?.0, 200);

    // The agent is away while the operator rotates and retires: one job is queued under
    // the old key, one under the new.
    agent.stop()?;
    let queued_under_a = cp.dispatch(job()).await?;
    let out = cp.cli(&["signing-key", "rotate"])?;
    let (_, list) = keys(&cp)?;
    let b = with_status(&list, "active").pop().context("new active key")?;
    assert_ne!(a, b);
    assert_eq!(with_status(&list, "previous"), vec![a.clone()], "{out}");
    let queued_under_b = cp.dispatch(job()).await?;
    let out = cp.cli(&["signing-key", "retire", &a])?;
    assert!(out.contains("1 undelivered job(s) re-signed"), "{out}");
    let (v3, list) = keys(&cp)?;
    assert_eq!(v3, 3);
    assert_eq!(with_status(&list, "retired"), vec![a.clone()]);
    assert!(
        !cp.data_dir.join("signing-keys").join(format!("{}.key", a.replace(':', "-"))).exists(),
        "the retired private key is deleted"
    );
    // Retiring the active key is refused with the way forward.
    let refused = cp.cli(&["signing-key", "retire", &b]).expect_err("must be refused").to_string();
    assert!(refused.contains("is the active key"), "{refused}");

    // Back online: it walks key sets 2 and 3 (2 is signed by a, which it trusts) and
    // both queued jobs complete, signed by b.
    agent.start_connected()?;
    for id in [&queued_under_a, &queued_under_b] {
        let (status, body) = cp.wait_result(id).await?;
        assert_eq!(status, 200, "{id}: {body}");
        assert_eq!(job_record(&agent, id)?["key_id"], b.as_str());
    }
    let sets = key_set_records(&agent)?;
    let accepted: Vec<u64> =
        sets.iter().filter(|r| r["verdict"] == "accepted").filter_map(|r| r["version"].as_u64()).collect();
    assert_eq!(accepted, vec![2, 3], "{sets:?}");
    assert_eq!(sets[0]["added"], serde_json::json!([b]));
    assert_eq!(sets[1]["removed"], serde_json::json!([a]));
    let status = agent_status(&agent)?;
    assert!(status.contains(&b) && !status.contains(&a) && status.contains("version 3"), "{status}");

    // A rotation while the agent is connected: the next job is signed by c and runs.
    cp.cli(&["signing-key", "rotate"])?;
    let (_, list) = keys(&cp)?;
    let c = with_status(&list, "active").pop().context("active key c")?;
    let live = cp.dispatch(job()).await?;
    assert_eq!(cp.wait_result(&live).await?.0, 200);
    assert_eq!(job_record(&agent, &live)?["key_id"], c.as_str());

    // The learned keys survive a restart of the agent.
    agent.stop()?;
    assert!(agent_status(&agent)?.contains("version 4"));
    agent.start_connected()?;
    let after_restart = cp.dispatch(job()).await?;
    assert_eq!(cp.wait_result(&after_restart).await?.0, 200);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_only_agent_refuses_key_set_updates_and_trusts_only_its_config() -> Result<()> {
    let root = tempfile::tempdir()?;
    let mut cp = ControlPlane::init(root.path())?;
    cp.start()?;
    let (_, list) = keys(&cp)?;
    let (a_id, _, a_pub) = list.first().cloned().context("key a")?;
    let pin = |pins: &[(&str, &str)]| -> String {
        let mut s = String::from("trusted_keys:\n");
        for (id, public) in pins {
            s.push_str(&format!("  - key_id: {id}\n    public_key: {public}\n"));
        }
        s + "key_trust: pinned_only\n"
    };
    let mut agent = Agent::new(root.path(), "edge-1", &pin(&[(&a_id, &a_pub)]))?;
    agent.enroll_with(&cp).await?;
    agent.start_connected()?;
    let first = cp.dispatch(job()).await?;
    assert_eq!(cp.wait_result(&first).await?.0, 200);

    // The operator stages b; the control plane announces key set 2; the agent refuses it.
    let staged = cp.cli(&["signing-key", "rotate", "--stage"])?;
    assert!(staged.contains("public_key:"), "prints the key to pin: {staged}");
    cp.cli(&["signing-key", "rotate"])?;
    let (_, list) = keys(&cp)?;
    let (b_id, _, b_pub) = list.iter().find(|k| k.1 == "active").cloned().context("key b")?;
    let refused = cp.dispatch(job()).await?;
    let (status, body) = cp.wait_result(&refused).await?;
    assert_eq!(status, 409, "{body}");
    let body: serde_json::Value = serde_json::from_str(&body)?;
    assert_eq!(body["reason"], "unknown_key", "{body}");
    let sets = key_set_records(&agent)?;
    assert!(
        !sets.is_empty() && sets.iter().all(|r| r["verdict"] == "refused" && r["reason"] == "pinned_only"),
        "{sets:?}"
    );
    assert!(!agent.state_dir.join("key-set.json").exists(), "nothing learned");

    // The customer pins b in agent.yaml and restarts: jobs run again.
    agent.stop()?;
    let cfg = std::fs::read_to_string(&agent.config)?;
    let cfg = cfg.replace(&pin(&[(&a_id, &a_pub)]), &pin(&[(&a_id, &a_pub), (&b_id, &b_pub)]));
    std::fs::write(&agent.config, cfg)?;
    agent.start_connected()?;
    let after = cp.dispatch(job()).await?;
    assert_eq!(cp.wait_result(&after).await?.0, 200);
    assert_eq!(job_record(&agent, &after)?["key_id"], b_id.as_str());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_set_not_signed_by_a_trusted_key_is_refused_and_its_key_signs_nothing() -> Result<()> {
    let root = tempfile::tempdir()?;
    let (cp, mut agent) = outpost_e2e::enrolled_offline(root.path()).await?;
    // While the agent is not running, someone with write access to the control plane's
    // database (not its key files) publishes a key set naming their own key, signed by
    // that key, and queues a job signed by it.
    let store = SqliteStore::open(&cp.data_dir.join("control-plane.db"))?;
    let (rogue, _) = SigningKey::generate().map_err(|e| anyhow::anyhow!("{e}"))?;
    let (existing, version) = store.signing_keys().await?;
    let mut demoted = existing[0].clone();
    demoted.status = "previous".into();
    let statement =
        KeySet { version: version + 1, issued_at: 0, keys: vec![entry(&rogue, KeyStatus::Active)] }.sign(&[&rogue]);
    let rogue_rec = SigningKeyRecord {
        key_id: rogue.key_id().0.clone(),
        public_key: b64_encode(&rogue.public_key()),
        status: "active".into(),
        created_at: 0,
        activated_at: Some(0),
        retired_at: None,
    };
    store
        .commit_key_set(KeySetChange {
            version: version + 1,
            statement_json: serde_json::to_string(&statement)?,
            keys: vec![demoted, rogue_rec],
            resign: None,
            envelopes: None,
            now: 0,
        })
        .await?;
    let now = outpost_protocol::unix_now();
    let spec = outpost_e2e::job_spec("edge-1", now, now + 300);
    store
        .insert_job(NewJob {
            id: spec.job_id.clone(),
            agent: "edge-1".into(),
            pool: None,
            connection: "sample".into(),
            envelope_json: serde_json::to_string(&sign_job(&spec, &rogue))?,
            key_id: rogue.key_id().0.clone(),
            created_at: now,
            expires_at: now + 300,
            origin: Default::default(),
        })
        .await?;
    agent.start_connected()?;
    let (status, body) = cp.wait_result(&spec.job_id).await?;
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("unknown_key"), "{body}");
    agent.process()?.wait_for_log("Refused a key-set update", Duration::from_secs(10))?;
    let sets = key_set_records(&agent)?;
    assert_eq!(sets.len(), 1, "{sets:?}");
    assert_eq!(sets[0]["verdict"], "refused");
    assert_eq!(sets[0]["reason"], "untrusted");
    assert!(!agent_status(&agent)?.contains(&rogue.key_id().0));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_dispatched_while_keys_rotate_and_retire_all_complete() -> Result<()> {
    let root = tempfile::tempdir()?;
    let (cp, agent) = outpost_e2e::start_pair(root.path(), "edge-1", "", &[]).await?;
    let cp = std::sync::Arc::new(cp);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let dispatcher = {
        let (cp, stop) = (std::sync::Arc::clone(&cp), std::sync::Arc::clone(&stop));
        tokio::spawn(async move {
            let mut ids = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::SeqCst) || ids.len() < 20 {
                ids.push(cp.dispatch(job()).await?);
            }
            anyhow::Ok(ids)
        })
    };
    // Two full rotations (rotate, then retire the old key) while jobs keep coming.
    for _ in 0..2 {
        cp.cli(&["signing-key", "rotate"])?;
        let (_, list) = keys(&cp)?;
        for old in with_status(&list, "previous") {
            cp.cli(&["signing-key", "retire", &old])?;
        }
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut ids = dispatcher.await??;
    // One more after the last retirement, so the agent has seen the final key set.
    ids.push(cp.dispatch(job()).await?);
    let (version, list) = keys(&cp)?;
    assert_eq!(version, 5);
    let active = with_status(&list, "active").pop().context("active")?;
    for id in &ids {
        let (status, body) = cp.wait_result(id).await?;
        assert_eq!(status, 200, "{id}: {body}");
    }
    // Every job ran exactly once, and the agent ends up trusting only the active key.
    let records = agent.audit_records()?;
    for id in &ids {
        let n = records.iter().filter(|r| r["job_id"] == id.as_str() && r["verdict"] == "accepted").count();
        assert_eq!(n, 1, "{id}");
    }
    let status = agent_status(&agent)?;
    let trusted = status.lines().find(|l| l.starts_with("trusted keys:")).context("trusted keys line")?;
    assert_eq!(trusted.trim_start_matches("trusted keys:").trim(), active, "{status}");
    Ok(())
}
