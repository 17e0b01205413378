//! The job pipeline in-process: a job signed here is verified, checked against the policy,
//! run on a real SQLite file and rendered by [`execute`], with its audit record — no
//! binary, no control plane, no network (the transport is built but never dialled).

use outpost_protocol::{JobSpec, SigningKey};

use crate::audit::AuditOutcome;

use super::*;
use crate::daemon::testing::{ctx, key, START};

/// A job for `edge-1` on the sample connection, valid for the minute after the test
/// context's clock starts.
fn spec(sql: &str, render: serde_json::Value) -> JobSpec {
    let now = START;
    serde_json::from_value(serde_json::json!({
        "version": outpost_protocol::PROTOCOL_VERSION,
        "job_id": outpost_protocol::ids::new_job_id(),
        "audience": "edge-1",
        "issued_at": now,
        "expires_at": now + 60,
        "nonce": outpost_protocol::encoding::hex(&outpost_protocol::ids::random_bytes::<16>()),
        "connection": "sample",
        "sql": sql,
        "render": render,
    }))
    .expect("job spec")
}

fn delivered(spec: &JobSpec, key: &SigningKey) -> DeliveredJob {
    DeliveredJob { job_id: spec.job_id.clone(), envelope: outpost_protocol::sign_job(spec, key) }
}

async fn run(ctx: &Ctx, job: &DeliveredJob) -> (ResultReport, AuditRecord) {
    let (report, rec, _) = execute(ctx, job, CancellationToken::new()).await;
    (report, rec)
}

fn code(report: &ResultReport) -> &str {
    report.reason.as_ref().map_or("", |r| r.code.as_str())
}

const TABLE: &str = r#"{"kind":"table"}"#;

fn table() -> serde_json::Value {
    serde_json::from_str(TABLE).expect("json")
}

#[tokio::test]
async fn a_signed_job_runs_and_its_record_names_what_ran() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = key();
    let ctx = ctx(dir.path(), &key, "");
    let job = spec("SELECT 40 + 2 AS answer", table());
    let (report, rec) = run(&ctx, &delivered(&job, &key)).await;
    assert_eq!(report.status, JobOutcome::Succeeded, "{report:?}");
    let body = report.body.as_deref().map(outpost_protocol::encoding::b64_decode).expect("body").expect("base64");
    let body = String::from_utf8(body).expect("utf-8");
    assert!(body.contains("42"), "{body}");
    assert_eq!((rec.verdict, rec.outcome), ("accepted", AuditOutcome::Succeeded));
    assert_eq!(rec.sql_sha256.as_deref(), Some(sha256_hex(job.sql.as_bytes()).as_str()));
    assert_eq!(rec.bytes_sent, report.stats.bytes);
}

#[tokio::test]
async fn a_job_signed_by_a_key_the_agent_does_not_trust_is_rejected_before_any_query() {
    let dir = tempfile::tempdir().expect("tempdir");
    let trusted = key();
    let ctx = ctx(dir.path(), &trusted, "");
    let job = spec("SELECT 1 AS one", table());
    let (report, rec) = run(&ctx, &delivered(&job, &key())).await;
    assert_eq!(report.status, JobOutcome::Rejected);
    assert_eq!(code(&report), "unknown_key", "{report:?}");
    assert_eq!((rec.verdict, rec.outcome, rec.rows_read), ("rejected", AuditOutcome::Rejected, 0));
    assert!(rec.connection.is_none(), "nothing of an unverified job is recorded as fact");
}

#[tokio::test]
async fn a_job_whose_sql_was_changed_after_signing_is_rejected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = key();
    let ctx = ctx(dir.path(), &key, "");
    let job = spec("SELECT 1 AS one", table());
    let mut forged = delivered(&job, &key);
    // The signature stays; the signed bytes change.
    let payload = outpost_protocol::encoding::b64_decode(&forged.envelope.payload).expect("base64");
    let payload = String::from_utf8(payload).expect("utf-8").replace("SELECT 1 AS one", "SELECT 2 AS one");
    forged.envelope.payload = outpost_protocol::encoding::b64_encode(payload.as_bytes());
    let (report, rec) = run(&ctx, &forged).await;
    assert_eq!(report.status, JobOutcome::Rejected);
    assert_eq!(code(&report), "bad_signature", "{report:?}");
    assert_eq!(rec.rows_read, 0);
}

#[tokio::test]
async fn an_expired_job_and_one_for_another_agent_are_rejected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = key();
    let ctx = ctx(dir.path(), &key, "");
    let mut old = spec("SELECT 1 AS one", table());
    old.issued_at -= 3600;
    old.expires_at -= 3600;
    let (report, _) = run(&ctx, &delivered(&old, &key)).await;
    assert_eq!((report.status, code(&report)), (JobOutcome::Rejected, "expired"), "{report:?}");

    let mut elsewhere = spec("SELECT 1 AS one", table());
    elsewhere.audience = "edge-2".into();
    let (report, _) = run(&ctx, &delivered(&elsewhere, &key)).await;
    assert_eq!((report.status, code(&report)), (JobOutcome::Rejected, "wrong_audience"), "{report:?}");
}

#[tokio::test]
async fn a_job_runs_until_its_expiry_plus_the_skew_allowance_by_the_agents_clock_and_not_after() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = key();
    let ctx = ctx(dir.path(), &key, "");
    let skew = i64::try_from(ctx.live().cfg.limits.clock_skew_secs.get()).expect("skew");
    let job = spec("SELECT 1 AS one", table());
    // The agent's clock stands at the last second the job is accepted.
    ctx.clock.set(job.expires_at + skew);
    let (report, _) = run(&ctx, &delivered(&job, &key)).await;
    assert_eq!(report.status, JobOutcome::Succeeded, "{report:?}");
    // One second later, a job of the same lifetime (a new id, so not a replay) is too old.
    let late = spec("SELECT 1 AS one", table());
    assert_eq!((late.issued_at, late.expires_at), (job.issued_at, job.expires_at));
    ctx.clock.advance(1);
    let (report, rec) = run(&ctx, &delivered(&late, &key)).await;
    assert_eq!((report.status, code(&report)), (JobOutcome::Rejected, "expired"), "{report:?}");
    assert_eq!(rec.rows_read, 0);
}

#[tokio::test]
async fn a_job_delivered_twice_runs_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = key();
    let ctx = ctx(dir.path(), &key, "");
    let job = delivered(&spec("SELECT 1 AS one", table()), &key);
    let (first, _) = run(&ctx, &job).await;
    assert_eq!(first.status, JobOutcome::Succeeded, "{first:?}");
    let (again, rec) = run(&ctx, &job).await;
    assert_eq!((again.status, code(&again)), (JobOutcome::Rejected, "replayed"), "{again:?}");
    assert_eq!(rec.rows_read, 0);
}

#[tokio::test]
async fn a_render_kind_the_policy_does_not_allow_is_refused_before_the_query_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = key();
    let ctx = ctx(dir.path(), &key, "egress:\n  allowed_kinds: [scalar]\n");
    let job = spec("SELECT 1 AS one", table());
    let (report, rec) = run(&ctx, &delivered(&job, &key)).await;
    assert_eq!((report.status, code(&report)), (JobOutcome::Rejected, "egress_refused"), "{report:?}");
    assert_eq!((rec.verdict, rec.outcome, rec.rows_read), ("accepted", AuditOutcome::Rejected, 0));
    assert_eq!(rec.egress.len(), 1, "the decision is recorded: {:?}", rec.egress);
    assert!(report.body.is_none(), "nothing of the data leaves");
}

#[tokio::test]
async fn a_job_for_a_connection_the_agent_does_not_have_is_rejected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = key();
    let ctx = ctx(dir.path(), &key, "");
    let mut job = spec("SELECT 1 AS one", table());
    job.connection = "warehouse".into();
    let (report, _) = run(&ctx, &delivered(&job, &key)).await;
    assert_eq!((report.status, code(&report)), (JobOutcome::Rejected, "unknown_connection"), "{report:?}");
}
