//! The PostgreSQL backend's audit log of the control plane.

use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use crate::store::access::{AuditEvent, AuditFilter};
use crate::store::postgres::PgStore;
use crate::store::StoreError;

const AUDIT_COLS: &str = "seq, at, actor, credential, action, target, outcome, status, remote, detail";

fn audit_from_row(r: &Row) -> Result<AuditEvent, StoreError> {
    let seq: i64 = r.get(0);
    let status: i64 = r.get(7);
    let detail: Option<String> = r.get(9);
    Ok(AuditEvent {
        seq,
        at: r.get(1),
        actor: r.get(2),
        credential: r.get(3),
        action: r.get(4),
        target: r.get(5),
        outcome: r.get(6),
        status: u16::try_from(status).map_err(|_| StoreError::Corrupt {
            table: "cloud_audit",
            reason: format!("event {seq}: status {status} is not an HTTP status"),
        })?,
        remote: r.get(8),
        detail: detail.and_then(|d| serde_json::from_str(&d).ok()),
    })
}

pub(super) async fn add_audit(store: &PgStore, e: AuditEvent) -> Result<(), StoreError> {
    store.audit_writer().add(e).await
}

/// Most records written in one statement.
const MAX_AUDIT_BATCH: usize = 256;

/// Records waiting for the writer (bounded: past it, callers wait to hand theirs in).
const AUDIT_QUEUE: usize = 4096;

type Pending = (AuditEvent, tokio::sync::oneshot::Sender<Result<(), StoreError>>);

/// The cloud audit log's writer on PostgreSQL: group commit.
///
/// Every API request writes a record, and each was its own transaction: one WAL flush per
/// request, two per job (issue 24). Records handed in while a write is in progress go out
/// together in the next one, as one statement and one commit, in the order they were
/// handed in. [`add`](Self::add) still returns only once its record is committed, so an
/// answer is never sent before its record is on disk, and a caller that goes away (a
/// client hanging up) does not take its record with it: it is already queued. When a
/// batch fails, its records are written again one by one, so each caller learns its own
/// outcome and one bad record does not fail the others. A record queued when the process
/// is killed (SIGKILL) before its commit is lost with the request, which never got its
/// answer either; a graceful stop lets requests in flight finish, and their records
/// with them.
#[derive(Clone)]
pub(crate) struct AuditWriter {
    tx: tokio::sync::mpsc::Sender<Pending>,
}

impl AuditWriter {
    /// Starts the writer over `pool`; it ends when the last handle is dropped.
    pub(crate) fn start(pool: deadpool_postgres::Pool) -> Self {
        let (tx, rx) = tokio::sync::mpsc::channel(AUDIT_QUEUE);
        tokio::spawn(write_batches(pool, rx));
        Self { tx }
    }

    async fn add(&self, e: AuditEvent) -> Result<(), StoreError> {
        let (done, outcome) = tokio::sync::oneshot::channel();
        let gone = || crate::store::postgres::postgres_error("the audit writer has stopped");
        self.tx.send((e, done)).await.map_err(|_| gone())?;
        outcome.await.map_err(|_| gone())?
    }
}

async fn write_batches(pool: deadpool_postgres::Pool, mut rx: tokio::sync::mpsc::Receiver<Pending>) {
    let mut batch = Vec::with_capacity(MAX_AUDIT_BATCH);
    while rx.recv_many(&mut batch, MAX_AUDIT_BATCH).await > 0 {
        let pending = std::mem::take(&mut batch);
        match insert(&pool, pending.iter().map(|p| &p.0)).await {
            Ok(()) => {
                for (_, done) in pending {
                    let _ = done.send(Ok(()));
                }
            }
            Err(e) if pending.len() == 1 => {
                if let Some((_, done)) = pending.into_iter().next() {
                    let _ = done.send(Err(e));
                }
            }
            Err(_) => {
                for (event, done) in pending {
                    let _ = done.send(insert(&pool, std::iter::once(&event)).await);
                }
            }
        }
    }
}

/// Inserts `events` in one statement, in order.
async fn insert<'a>(
    pool: &deadpool_postgres::Pool,
    events: impl Iterator<Item = &'a AuditEvent>,
) -> Result<(), StoreError> {
    let events: Vec<&AuditEvent> = events.collect();
    let at: Vec<i64> = events.iter().map(|e| e.at).collect();
    let actor: Vec<&str> = events.iter().map(|e| e.actor.as_str()).collect();
    let credential: Vec<&str> = events.iter().map(|e| e.credential.as_str()).collect();
    let action: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
    let target: Vec<Option<&str>> = events.iter().map(|e| e.target.as_deref()).collect();
    let outcome: Vec<&str> = events.iter().map(|e| e.outcome.as_str()).collect();
    let status: Vec<i64> = events.iter().map(|e| i64::from(e.status)).collect();
    let remote: Vec<Option<&str>> = events.iter().map(|e| e.remote.as_deref()).collect();
    let detail: Vec<Option<String>> = events.iter().map(|e| e.detail.as_ref().map(ToString::to_string)).collect();
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached(
            "INSERT INTO cloud_audit (at, actor, credential, action, target, outcome, status, remote, detail)
                 SELECT at, actor, credential, action, target, outcome, status, remote, detail
                 FROM unnest($1::BIGINT[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], $6::TEXT[],
                             $7::BIGINT[], $8::TEXT[], $9::TEXT[])
                      WITH ORDINALITY AS r(at, actor, credential, action, target, outcome, status, remote, detail, i)
                 ORDER BY i",
        )
        .await?;
    client.execute(&stmt, &[&at, &actor, &credential, &action, &target, &outcome, &status, &remote, &detail]).await?;
    Ok(())
}

pub(super) async fn audit(store: &PgStore, f: AuditFilter) -> Result<Vec<AuditEvent>, StoreError> {
    // Only the conditions asked for are in the statement (so the planner can use the
    // primary key for `after` and the time index for `since`/`until`); every value is
    // a parameter. At most 2^8 statement shapes, each prepared once per connection.
    let action_exact = f.action.as_ref().filter(|a| !a.ends_with('.'));
    let action_prefix =
        f.action.as_ref().filter(|a| a.ends_with('.')).map(|a| format!("{}%", crate::store::access::like_escape(a)));
    let limit = i64::from(f.limit);
    let conditions: [(&str, Option<&(dyn ToSql + Sync)>); 8] = [
        ("actor = $?", f.actor.as_ref().map(|v| v as _)),
        ("action = $?", action_exact.map(|v| v as _)),
        // SQLite's LIKE ignores ASCII case: ILIKE matches the same events. Both escape
        // `%`, `_` and `\` of the given prefix with `\` (see `like_escape`).
        ("action ILIKE $? ESCAPE '\\'", action_prefix.as_ref().map(|v| v as _)),
        ("outcome = $?", f.outcome.as_ref().map(|v| v as _)),
        ("at >= $?", f.since.as_ref().map(|v| v as _)),
        ("at < $?", f.until.as_ref().map(|v| v as _)),
        ("seq > $?", f.after.as_ref().map(|v| v as _)),
        ("target = $?", f.target.as_ref().map(|v| v as _)),
    ];
    let mut sql = format!("SELECT {AUDIT_COLS} FROM cloud_audit WHERE TRUE");
    let mut params: Vec<&(dyn ToSql + Sync)> = Vec::new();
    for (clause, value) in conditions {
        if let Some(v) = value {
            params.push(v);
            sql.push_str(" AND ");
            sql.push_str(&clause.replace("$?", &format!("${}", params.len())));
        }
    }
    params.push(&limit);
    sql.push_str(&format!(" ORDER BY seq LIMIT ${}", params.len()));
    let client = store.client().await?;
    let stmt = client.prepare_cached(&sql).await?;
    client.query(&stmt, &params).await?.iter().map(audit_from_row).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::access::AccessStore;

    fn event(actor: &str, target: &str) -> AuditEvent {
        AuditEvent {
            seq: 0,
            at: 1,
            actor: actor.into(),
            credential: "token:ci".into(),
            action: "jobs.dispatch".into(),
            target: Some(target.into()),
            outcome: "ok".into(),
            status: 202,
            remote: Some("192.0.2.1".into()),
            detail: Some(serde_json::json!({ "n": target })),
        }
    }

    /// Records handed in together are written as one batch in order; a record the
    /// database refuses (PostgreSQL text cannot hold NUL) fails alone and its neighbours
    /// are kept, each caller told its own outcome.
    #[tokio::test]
    async fn a_batch_keeps_its_order_and_a_refused_record_fails_alone() {
        crate::store::testdb::on_postgres(|s| async move {
            let (tx, rx) = tokio::sync::mpsc::channel(8);
            let mut outcomes = Vec::new();
            for (actor, target) in [("ann", "j1"), ("bad\0actor", "j2"), ("bob", "j3")] {
                let (done, outcome) = tokio::sync::oneshot::channel();
                tx.send((event(actor, target), done)).await.expect("queued");
                outcomes.push(outcome);
            }
            // All three are queued before the writer starts: one batch.
            drop(tx);
            write_batches(s.pool_for_tests(), rx).await;
            let mut results = Vec::new();
            for outcome in outcomes {
                results.push(outcome.await.expect("answered").is_ok());
            }
            assert_eq!(results, [true, false, true]);
            let stored = s.audit(AuditFilter { limit: 10, ..Default::default() }).await.expect("read");
            let targets: Vec<_> = stored.iter().map(|e| e.target.as_deref().unwrap_or("")).collect();
            assert_eq!(targets, ["j1", "j3"]);
            assert_eq!(stored[0].detail, Some(serde_json::json!({ "n": "j1" })), "every field is written");
        })
        .await;
    }

    /// Many requests at once: every record is committed before its caller returns.
    #[tokio::test]
    async fn concurrent_records_are_all_committed_before_their_callers_return() {
        crate::store::testdb::on_postgres(|s| async move {
            let mut adds = tokio::task::JoinSet::new();
            for i in 0..300 {
                let s = s.clone();
                adds.spawn(async move {
                    add_audit(&s, event("ann", &format!("j{i}"))).await.expect("add");
                    // Readable as soon as the call returns.
                    let mine = s
                        .audit(AuditFilter { target: Some(format!("j{i}")), limit: 2, ..Default::default() })
                        .await
                        .expect("read");
                    assert_eq!(mine.len(), 1, "j{i}");
                });
            }
            while let Some(done) = adds.join_next().await {
                done.expect("no panic");
            }
            let all = s.audit(AuditFilter { limit: 1000, ..Default::default() }).await.expect("read");
            assert_eq!(all.len(), 300);
        })
        .await;
    }
}
