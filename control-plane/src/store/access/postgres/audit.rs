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
    let client = store.client().await?;
    let stmt = client
        .prepare_cached(
            "INSERT INTO cloud_audit (at, actor, credential, action, target, outcome, status, remote, detail)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .await?;
    let status = i64::from(e.status);
    let detail = e.detail.map(|d| d.to_string());
    client
        .execute(
            &stmt,
            &[&e.at, &e.actor, &e.credential, &e.action, &e.target, &e.outcome, &status, &e.remote, &detail],
        )
        .await?;
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
