//! The SQLite backend's enrolment tokens, agents (admission, sightings, renewal,
//! revocation) and the agents' audit heads.

use rusqlite::{params, Connection, OptionalExtension};

use crate::store::{
    behind_or_not_admitted, check_redeem, enrolment_time, AgentPeer, AgentRecord, AuditHeadOutcome, EnrolTokenRecord,
    Enrolled, RedeemError, SqliteStore, StoreError, StoredAuditHead,
};

/// An enrolment token row: id, agent, pool, secret_sha256, created_at, expires_at.
fn enrol_token_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<EnrolTokenRecord> {
    Ok(EnrolTokenRecord {
        id: r.get(0)?,
        agent: r.get(1)?,
        pool: r.get(2)?,
        secret_sha256: r.get(3)?,
        created_at: r.get(4)?,
        expires_at: r.get(5)?,
    })
}

fn sqlite_audit_head(c: &Connection, agent: &str) -> Result<Option<StoredAuditHead>, StoreError> {
    Ok(c.prepare_cached("SELECT seq, hash, head, received_at FROM audit_heads WHERE agent = ?1")?
        .query_row(params![agent], |r| {
            Ok(StoredAuditHead { seq: r.get(0)?, hash: r.get(1)?, head_json: r.get(2)?, received_at: r.get(3)? })
        })
        .optional()?)
}

fn agent_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AgentRecord> {
    let conns: String = r.get(5)?;
    Ok(AgentRecord {
        name: r.get(0)?,
        enrolled_at: r.get(1)?,
        cert_not_after: r.get(2)?,
        last_seen: r.get(3)?,
        version: r.get(4)?,
        connections: serde_json::from_str(&conns).unwrap_or_default(),
        revoked_at: r.get(6)?,
        pool: r.get(7)?,
        stopped_at: r.get(8)?,
    })
}

const AGENT_COLS: &str =
    "name, enrolled_at, cert_not_after, last_seen, version, connections, revoked_at, pool, stopped_at";

/// Admits a request of `agent`: it must be enrolled, not revoked, and its certificate
/// must not predate the name's latest enrolment. Records it as seen in the same
/// statement, so the check costs no extra round trip.
pub(super) fn admit_agent(tx: &Connection, agent: &AgentPeer, now: i64) -> Result<Option<String>, StoreError> {
    let admitted: Option<Option<String>> = tx
        .prepare_cached(
            "UPDATE agents SET last_seen = ?2, stopped_at = NULL
             WHERE name = ?1 AND revoked_at IS NULL AND enrolled_at <= ?3
             RETURNING pool",
        )?
        .query_row(params![agent.name, now, agent.cert_issued_at], |r| r.get(0))
        .optional()?;
    if let Some(pool) = admitted {
        return Ok(pool);
    }
    let row: Option<(Option<i64>, i64)> = tx
        .prepare_cached("SELECT revoked_at, enrolled_at FROM agents WHERE name = ?1")?
        .query_row(params![agent.name], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    Err(match row {
        Some((None, enrolled_at)) => StoreError::CertificateSuperseded { agent: agent.name.clone(), enrolled_at },
        Some((revoked_at, _)) => StoreError::AgentRefused { agent: agent.name.clone(), revoked_at },
        None => StoreError::AgentRefused { agent: agent.name.clone(), revoked_at: None },
    })
}

pub(super) async fn create_enrol_token(store: &SqliteStore, t: EnrolTokenRecord) -> Result<(), StoreError> {
    store
        .with_conn(move |c| {
            c.execute(
                "INSERT INTO enrol_tokens (id, agent, secret_sha256, created_at, expires_at, pool)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![t.id, t.agent, t.secret_sha256, t.created_at, t.expires_at, t.pool],
            )?;
            Ok(())
        })
        .await
}

pub(super) async fn outstanding_enrol_tokens(
    store: &SqliteStore,
    now: i64,
) -> Result<Vec<EnrolTokenRecord>, StoreError> {
    store
        .with_conn(move |c| {
            Ok(c.prepare_cached(
                "SELECT id, agent, pool, secret_sha256, created_at, expires_at FROM enrol_tokens
                 WHERE used_at IS NULL AND expires_at >= ?1 ORDER BY created_at, id",
            )?
            .query_map(params![now], enrol_token_from_row)?
            .collect::<Result<Vec<_>, _>>()?)
        })
        .await
}

pub(super) async fn revoke_enrol_token(
    store: &SqliteStore,
    id: String,
) -> Result<Option<EnrolTokenRecord>, StoreError> {
    store
        .with_conn(move |c| {
            Ok(c.prepare_cached(
                "DELETE FROM enrol_tokens WHERE id = ?1 AND used_at IS NULL
                 RETURNING id, agent, pool, secret_sha256, created_at, expires_at",
            )?
            .query_row(params![id], enrol_token_from_row)
            .optional()?)
        })
        .await
}

pub(super) async fn redeem_enrol_token(
    store: &SqliteStore,
    id: String,
    secret_sha256: String,
    agent: String,
    now: i64,
    cert_lifetime_secs: i64,
) -> Result<Result<Enrolled, RedeemError>, StoreError> {
    store
        .with_conn(move |c| {
            let tx = c.savepoint()?;
            type TokenRow = (String, String, i64, Option<i64>, Option<String>);
            let row: Option<TokenRow> = tx
                .query_row(
                    "SELECT agent, secret_sha256, expires_at, used_at, pool FROM enrol_tokens WHERE id = ?1",
                    params![id],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
                )
                .optional()?;
            let Some((bound, stored_hash, expires_at, used_at, pool)) = row else {
                return Ok(Err(RedeemError::Unknown));
            };
            if let Err(refused) = check_redeem(&stored_hash, &secret_sha256, used_at, expires_at, &bound, &agent, now) {
                return Ok(Err(refused));
            }
            tx.execute("UPDATE enrol_tokens SET used_at = ?2 WHERE id = ?1", params![id, now])?;
            let previous: Option<i64> = tx
                .query_row("SELECT enrolled_at FROM agents WHERE name = ?1", params![agent], |r| r.get(0))
                .optional()?;
            let enrolled_at = enrolment_time(previous, now);
            let cert_not_after = enrolled_at.saturating_add(cert_lifetime_secs);
            // A new enrolment re-admits a revoked name (e.g. after a lost agent key).
            tx.execute(
                "INSERT INTO agents (name, enrolled_at, cert_not_after, pool) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(name) DO UPDATE SET enrolled_at = excluded.enrolled_at,
                     cert_not_after = excluded.cert_not_after, revoked_at = NULL, pool = excluded.pool",
                params![agent, enrolled_at, cert_not_after, pool],
            )?;
            // A new enrolment starts a new account of its audit log (a reinstalled agent
            // starts it again at 1).
            tx.execute("DELETE FROM audit_heads WHERE agent = ?1", params![agent])?;
            tx.commit()?;
            Ok(Ok(Enrolled { pool, enrolled_at, cert_not_after }))
        })
        .await
}

pub(super) async fn agent(store: &SqliteStore, name: String) -> Result<Option<AgentRecord>, StoreError> {
    store
        .with_read(move |c| {
            Ok(c.prepare_cached(&format!("SELECT {AGENT_COLS} FROM agents WHERE name = ?1"))?
                .query_row(params![name], agent_from_row)
                .optional()?)
        })
        .await
}

pub(super) async fn agents(store: &SqliteStore) -> Result<Vec<AgentRecord>, StoreError> {
    store
        .with_conn(|c| {
            let mut stmt = c.prepare_cached(&format!("SELECT {AGENT_COLS} FROM agents ORDER BY name"))?;
            let rows = stmt.query_map([], agent_from_row)?.collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
}

pub(super) async fn pool_members(store: &SqliteStore, pool: String) -> Result<Vec<AgentRecord>, StoreError> {
    store
        .with_conn(move |c| {
            let mut stmt =
                c.prepare_cached(&format!("SELECT {AGENT_COLS} FROM agents WHERE pool = ?1 ORDER BY name"))?;
            let rows = stmt.query_map(params![pool], agent_from_row)?.collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
}

pub(super) async fn touch_agent(
    store: &SqliteStore,
    agent: AgentPeer,
    now: i64,
    version: Option<String>,
    connections: Option<Vec<String>>,
) -> Result<(), StoreError> {
    store.with_conn(move |c| {
            let conns = connections.map(|v| serde_json::to_string(&v).unwrap_or_else(|_| "[]".into()));
            admit_agent(c, &agent, now)?;
            c.prepare_cached(
                "UPDATE agents SET version = COALESCE(?2, version), connections = COALESCE(?3, connections) WHERE name = ?1",
            )?
            .execute(params![agent.name, version, conns])?;
            Ok(())
        })
        .await
}

pub(super) async fn agent_stopped(store: &SqliteStore, agent: AgentPeer, now: i64) -> Result<(), StoreError> {
    store
        .with_conn(move |c| {
            c.prepare_cached(
                "UPDATE agents SET last_seen = ?2, stopped_at = ?2
                 WHERE name = ?1 AND revoked_at IS NULL AND enrolled_at <= ?3",
            )?
            .execute(params![agent.name, now, agent.cert_issued_at])?;
            Ok(())
        })
        .await
}

pub(super) async fn record_audit_head(
    store: &SqliteStore,
    agent: AgentPeer,
    head: StoredAuditHead,
) -> Result<AuditHeadOutcome, StoreError> {
    store
        .with_conn(move |c| {
            let n = c
                .prepare_cached(
                    "INSERT INTO audit_heads (agent, seq, hash, head, received_at)
                     SELECT ?1, ?2, ?3, ?4, ?5 WHERE EXISTS (
                         SELECT 1 FROM agents WHERE name = ?1 AND revoked_at IS NULL AND enrolled_at <= ?6)
                     ON CONFLICT(agent) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, head = excluded.head,
                         received_at = excluded.received_at
                     WHERE excluded.seq > audit_heads.seq
                        OR (excluded.seq = audit_heads.seq AND excluded.hash = audit_heads.hash)",
                )?
                .execute(params![
                    agent.name,
                    head.seq,
                    head.hash,
                    head.head_json,
                    head.received_at,
                    agent.cert_issued_at
                ])?;
            if n > 0 {
                return Ok(AuditHeadOutcome::Stored);
            }
            Ok(behind_or_not_admitted(sqlite_audit_head(c, &agent.name)?, &head))
        })
        .await
}

pub(super) async fn audit_head(store: &SqliteStore, agent: String) -> Result<Option<StoredAuditHead>, StoreError> {
    store.with_conn(move |c| sqlite_audit_head(c, &agent)).await
}

pub(super) async fn record_renewal(
    store: &SqliteStore,
    agent: AgentPeer,
    cert_not_after: i64,
    now: i64,
) -> Result<(), StoreError> {
    store
        .with_conn(move |c| {
            let tx = c.savepoint()?;
            admit_agent(&tx, &agent, now)?;
            tx.execute("UPDATE agents SET cert_not_after = ?2 WHERE name = ?1", params![agent.name, cert_not_after])?;
            tx.commit()?;
            Ok(())
        })
        .await
}

pub(super) async fn revoke_agent(
    store: &SqliteStore,
    name: String,
    now: i64,
) -> Result<Option<Vec<String>>, StoreError> {
    store.with_conn(move |c| {
            let tx = c.savepoint()?;
            let n = tx.execute("UPDATE agents SET revoked_at = COALESCE(revoked_at, ?2) WHERE name = ?1", params![name, now])?;
            if n == 0 {
                return Ok(None);
            }
            // A pool's job this agent held goes back to the pool; its own jobs fail.
            tx.execute(
                "UPDATE jobs SET state = 'queued', agent = '', lease_until = NULL
                 WHERE agent = ?1 AND pool IS NOT NULL AND state = 'leased'",
                params![name],
            )?;
            let failed = tx
                .prepare(
                    "UPDATE jobs SET state = 'failed', finished_at = ?2, lease_until = NULL, reason_code = 'agent_revoked',
                         reason_message = 'the agent was revoked before it returned a result'
                     WHERE agent = ?1 AND pool IS NULL AND state IN ('queued', 'leased') RETURNING id",
                )?
                .query_map(params![name, now], |r| r.get(0))?
                .collect::<Result<Vec<String>, _>>()?;
            tx.commit()?;
            Ok(Some(failed))
        })
        .await
}
