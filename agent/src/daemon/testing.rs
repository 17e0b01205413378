//! The daemon's test fixture: a context as `run` builds it, with no control plane behind
//! its transport.

use outpost_protocol::SigningKey;

use super::*;

/// Where a test context's manual clock starts (unix seconds; 2026-01-01).
pub(crate) const START: i64 = 1_767_225_600;

/// A context as `run` builds it, over `dir`, trusting `key`; `extra` is appended to agent.yaml.
pub(crate) fn ctx(dir: &std::path::Path, key: &SigningKey, extra: &str) -> Ctx {
    let state_dir = dir.join("state");
    outpost_common::fsutil::create_private_dir(&state_dir).expect("state dir");
    let yaml = format!(
        "state_dir: {}\nconnections:\n  sample:\n    kind: sqlite\n    path: sample.db\n    sample: true\n\
         limits:\n  max_rows: 1000\n{extra}",
        state_dir.display()
    );
    let cfg = AgentConfig::parse("agent.yaml", &yaml).expect("agent.yaml");
    let enrolment = identity::Enrolment {
        agent: "edge-1".into(),
        address: "127.0.0.1:1".into(),
        server_name: "localhost".into(),
        ca_sha256: String::new(),
        enrolled_at: 0,
        not_after: i64::MAX,
        cert_issued_at: 0,
        signing_keys: vec![outpost_protocol::enrol::PublishedKey {
            key_id: key.key_id().0.clone(),
            public_key: outpost_protocol::encoding::b64_encode(&key.public_key()),
        }],
        key_set_version: 1,
        pool: None,
    };
    let keys = KeyTrust::load(&cfg, &enrolment).expect("keys");
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let route = crate::proxy::route_for(&cfg, &crate::proxy::no_prompt).expect("route");
    let transport = Transport::new("127.0.0.1:1".into(), route, "localhost", Arc::new(tls)).expect("transport");
    let connections = prepare_connections(&cfg, None).expect("connections");
    let audit = AuditLog::open(&cfg.audit_path()).expect("audit log");
    let seen = crate::replay::SeenJobs::open(&cfg.state_dir).expect("replay store");
    Ctx {
        clock: outpost_common::clock::Clock::manual(START),
        reachable: Reachability::default(),
        live: std::sync::RwLock::new(Arc::new(Live { cfg, connections, mask_key: None })),
        config_path: None,
        metrics: Arc::new(crate::metrics::Metrics::new()),
        liveness: crate::service::Liveness::default(),
        jobs_done: std::sync::atomic::AtomicU64::new(0),
        enrolment: std::sync::Mutex::new(enrolment),
        ca: rustls_pki_types::CertificateDer::from(Vec::new()),
        agent: "edge-1".into(),
        keys: std::sync::RwLock::new(keys),
        refused_key_set: std::sync::atomic::AtomicU64::new(0),
        transport,
        audit,
        seen,
        cache: None,
        running: std::sync::Mutex::default(),
        started_at: 0,
        reach_since: std::sync::atomic::AtomicI64::new(0),
        last_error: std::sync::Mutex::default(),
        last_job_at: std::sync::atomic::AtomicI64::new(0),
        reload_lock: tokio::sync::Mutex::new(()),
        last_reload: std::sync::Mutex::default(),
    }
}

/// A context whose certificate runs from `issued_at` to `not_after` (unix seconds).
pub(crate) fn ctx_with_certificate(dir: &std::path::Path, issued_at: i64, not_after: i64) -> Arc<Ctx> {
    let ctx = ctx(dir, &key(), "");
    {
        let mut e = ctx.enrolment.lock().expect("enrolment");
        e.cert_issued_at = issued_at;
        e.not_after = not_after;
    }
    Arc::new(ctx)
}

pub(crate) fn key() -> SigningKey {
    SigningKey::generate().expect("key").0
}

/// The log lines written on this thread while the guard lives: with tokio's (default)
/// current-thread test runtime, those of every task the test spawns.
#[derive(Clone, Default)]
pub(crate) struct Logs(Arc<std::sync::Mutex<Vec<u8>>>);

impl Logs {
    pub(crate) fn capture() -> (Self, tracing::subscriber::DefaultGuard) {
        let logs = Self::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || writer.clone())
            .finish();
        (logs, tracing::subscriber::set_default(subscriber))
    }

    /// How many lines contain `needle`.
    pub(crate) fn count(&self, needle: &str) -> usize {
        self.text().lines().filter(|l| l.contains(needle)).count()
    }

    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)).into_owned()
    }
}

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
