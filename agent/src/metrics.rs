//! The agent's local metrics: counts and durations, served in the Prometheus text format
//! at `GET /metrics` on the address `metrics.listen` names (loopback unless
//! `metrics.allow_non_loopback`).
//!
//! Every job is counted from its audit record, so the metrics and the audit log cannot
//! disagree. Labels are from fixed sets (verdicts, outcomes, reason codes, egress
//! actions, cache results): no SQL, connection values or data ever become a label.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

use crate::audit::{AuditOutcome, AuditRecord};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobLabels {
    verdict: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabels {
    action: String,
}

/// The agent's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    jobs: Family<JobLabels, Counter>,
    rejections: Family<ReasonLabels, Counter>,
    failures: Family<ReasonLabels, Counter>,
    cache: Family<ResultLabels, Counter>,
    egress: Family<ActionLabels, Counter>,
    reloads: Family<ResultLabels, Counter>,
    duration: Histogram,
    bytes_sent: Counter,
    rows_read: Counter,
    running: Gauge,
    reachable: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh set, all zero.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("outpost_agent");
        let jobs = Family::<JobLabels, Counter>::default();
        registry.register("jobs", "Jobs received, by verdict (accepted, rejected) and outcome", jobs.clone());
        let rejections = Family::<ReasonLabels, Counter>::default();
        registry.register("rejections", "Jobs rejected before running, by reason", rejections.clone());
        let failures = Family::<ReasonLabels, Counter>::default();
        registry.register("failures", "Accepted jobs that failed or were refused, by reason", failures.clone());
        let cache = Family::<ResultLabels, Counter>::default();
        registry.register("cache_lookups", "Result-cache lookups, by result (hit, miss, damaged)", cache.clone());
        let egress = Family::<ActionLabels, Counter>::default();
        registry.register("egress_decisions", "Egress-policy decisions applied to results, by action", egress.clone());
        let reloads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "config_reloads",
            "SIGHUP reloads of agent.yaml, by result (applied, refused)",
            reloads.clone(),
        );
        let duration = Histogram::new(exponential_buckets(0.001, 2.0, 20));
        registry.register("job_duration_seconds", "Time from receiving a job to its audit record", duration.clone());
        let bytes_sent = Counter::default();
        registry.register(
            "result_bytes_sent",
            "Bytes of rendered results sent to the control plane",
            bytes_sent.clone(),
        );
        let rows_read = Counter::default();
        registry.register("rows_read", "Rows read from databases (or the cache) by jobs", rows_read.clone());
        let running = Gauge::default();
        registry.register("jobs_running", "Jobs running now", running.clone());
        let reachable = Gauge::default();
        registry.register(
            "control_plane_reachable",
            "1 when the last request to the control plane was answered",
            reachable.clone(),
        );
        Self {
            registry,
            jobs,
            rejections,
            failures,
            cache,
            egress,
            reloads,
            duration,
            bytes_sent,
            rows_read,
            running,
            reachable,
        }
    }

    /// Counts a job from its audit record (written for every job, whatever its end).
    pub fn job(&self, rec: &AuditRecord) {
        if rec.event != "job" {
            return;
        }
        self.jobs.get_or_create(&JobLabels { verdict: rec.verdict.into(), outcome: rec.outcome.as_str().into() }).inc();
        if let Some(reason) = &rec.reason {
            let labels = ReasonLabels { reason: reason.clone() };
            if rec.verdict == "rejected" || rec.outcome == AuditOutcome::Rejected {
                self.rejections.get_or_create(&labels).inc();
            } else if rec.outcome != AuditOutcome::Succeeded {
                self.failures.get_or_create(&labels).inc();
            }
        }
        if let Some(c) = rec.cache {
            self.cache.get_or_create(&ResultLabels { result: c.into() }).inc();
        }
        for d in &rec.egress {
            let action = serde_json::to_value(d.action).ok().and_then(|v| v.as_str().map(str::to_owned));
            self.egress.get_or_create(&ActionLabels { action: action.unwrap_or_else(|| "other".into()) }).inc();
        }
        self.bytes_sent.inc_by(rec.bytes_sent);
        self.rows_read.inc_by(rec.rows_read);
        #[allow(clippy::cast_precision_loss)]
        self.duration.observe(rec.duration_ms as f64 / 1000.0);
    }

    /// A job started (`+1`) or ended (`-1`).
    pub fn running(&self, delta: i64) {
        self.running.inc_by(delta);
    }

    /// Whether the control plane answered the last request.
    pub fn reachable(&self, yes: bool) {
        self.reachable.set(i64::from(yes));
    }

    /// A SIGHUP reload, applied or refused.
    pub fn reload(&self, applied: bool) {
        let result = if applied { "applied" } else { "refused" };
        self.reloads.get_or_create(&ResultLabels { result: result.into() }).inc();
    }

    /// The text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// Binds the metrics listener (an error names the address, so a port clash is plain).
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("metrics.listen {addr}: {e}")))
}

const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

fn answer(metrics: &Metrics, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, ctype: &str, body: String| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = status;
        if let Ok(v) = http::HeaderValue::from_str(ctype) {
            r.headers_mut().insert(http::header::CONTENT_TYPE, v);
        }
        r
    };
    match (req.method(), req.uri().path()) {
        (&http::Method::GET, "/metrics") => reply(StatusCode::OK, CONTENT_TYPE, metrics.encode()),
        (_, "/metrics") => reply(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "GET only\n".into()),
        _ => reply(StatusCode::NOT_FOUND, "text/plain", "only /metrics is served here\n".into()),
    }
}

/// Serves `GET /metrics` on `listener` until `shutdown`.
pub async fn serve(listener: tokio::net::TcpListener, metrics: Arc<Metrics>, shutdown: CancellationToken) {
    loop {
        let (stream, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "Metrics listener: accept failed.");
                    continue;
                }
            },
            () = shutdown.cancelled() => return,
        };
        let metrics = Arc::clone(&metrics);
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let resp = answer(&metrics, &req);
                async move { Ok::<_, Infallible>(resp) }
            });
            let conn =
                hyper::server::conn::http1::Builder::new().serve_connection(hyper_util::rt::TokioIo::new(stream), svc);
            tokio::select! {
                r = conn => if let Err(e) = r { tracing::debug!(error = %e, "Metrics connection ended."); },
                () = shutdown.cancelled() => {}
            }
        });
    }
}
