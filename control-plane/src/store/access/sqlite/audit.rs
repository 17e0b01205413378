//! The SQLite backend's audit log of the control plane.

use rusqlite::params;

use crate::store::access::{like_escape, AuditEvent, AuditFilter};
use crate::store::{SqliteStore, StoreError};

pub(super) async fn add_audit(store: &SqliteStore, e: AuditEvent) -> Result<(), StoreError> {
    store
        .with_conn_small(move |c| {
            c.prepare_cached(
                "INSERT INTO cloud_audit (at, actor, credential, action, target, outcome, status, remote, detail)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?
            .execute(params![
                e.at,
                e.actor,
                e.credential,
                e.action,
                e.target,
                e.outcome,
                e.status,
                e.remote,
                e.detail.map(|d| d.to_string())
            ])?;
            Ok(())
        })
        .await
}

pub(super) async fn audit(store: &SqliteStore, f: AuditFilter) -> Result<Vec<AuditEvent>, StoreError> {
    store.with_conn(move |c| {
            let (action_exact, action_prefix) = match &f.action {
                Some(a) if a.ends_with('.') => (None, Some(format!("{}%", like_escape(a)))),
                Some(a) => (Some(a.clone()), None),
                None => (None, None),
            };
            let mut stmt = c.prepare_cached(
                "SELECT seq, at, actor, credential, action, target, outcome, status, remote, detail FROM cloud_audit
                 WHERE (?1 IS NULL OR actor = ?1) AND (?2 IS NULL OR action = ?2) AND (?3 IS NULL OR action LIKE ?3 ESCAPE '\\')
                   AND (?4 IS NULL OR outcome = ?4) AND (?5 IS NULL OR at >= ?5) AND (?6 IS NULL OR at < ?6)
                   AND (?7 IS NULL OR seq > ?7) AND (?8 IS NULL OR target = ?8)
                 ORDER BY seq LIMIT ?9",
            )?;
            let rows = stmt
                .query_map(
                    params![
                        f.actor,
                        action_exact,
                        action_prefix,
                        f.outcome,
                        f.since,
                        f.until,
                        f.after,
                        f.target,
                        f.limit
                    ],
                    |r| {
                        let detail: Option<String> = r.get(9)?;
                        Ok(AuditEvent {
                            seq: r.get(0)?,
                            at: r.get(1)?,
                            actor: r.get(2)?,
                            credential: r.get(3)?,
                            action: r.get(4)?,
                            target: r.get(5)?,
                            outcome: r.get(6)?,
                            status: r.get(7)?,
                            remote: r.get(8)?,
                            detail: detail.and_then(|d| serde_json::from_str(&d).ok()),
                        })
                    },
                )?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
}
