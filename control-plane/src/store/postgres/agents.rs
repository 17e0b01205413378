//! The PostgreSQL backend's enrolment tokens, agents (admission, sightings, renewal,
//! revocation) and the agents' audit heads.

use tokio_postgres::Row;

use crate::store::{
    behind_or_not_admitted, check_redeem, enrolment_time, AgentPeer, AgentRecord, AuditHeadOutcome, EnrolTokenRecord,
    Enrolled, PgStore, RedeemError, Store, StoreError, StoredAuditHead,
};

fn agent_from_row(r: &Row) -> AgentRecord {
    let conns: String = r.get(5);
    AgentRecord {
        name: r.get(0),
        enrolled_at: r.get(1),
        cert_not_after: r.get(2),
        last_seen: r.get(3),
        version: r.get(4),
        connections: serde_json::from_str(&conns).unwrap_or_default(),
        revoked_at: r.get(6),
        pool: r.get(7),
        stopped_at: r.get(8),
    }
}

const AGENT_COLS: &str =
    "name, enrolled_at, cert_not_after, last_seen, version, connections, revoked_at, pool, stopped_at";

/// Admits a request of `agent` (see the SQLite backend's `admit_agent`) and returns its
/// pool. Locks the agent's row for the rest of the transaction, so a revocation cannot
/// slip between the check and the work.
async fn admit_agent(
    tx: &deadpool_postgres::Transaction<'_>,
    agent: &AgentPeer,
    now: i64,
) -> Result<Option<String>, StoreError> {
    let stmt = tx
        .prepare_cached(
            "UPDATE agents SET last_seen = $2, stopped_at = NULL
             WHERE name = $1 AND revoked_at IS NULL AND enrolled_at <= $3
             RETURNING pool",
        )
        .await?;
    if let Some(row) = tx.query_opt(&stmt, &[&agent.name, &now, &agent.cert_issued_at]).await? {
        return Ok(row.get(0));
    }
    Err(refusal(tx, agent).await?)
}

/// Why `agent` was not admitted: revoked, unknown, or its certificate superseded.
pub(super) async fn refusal(
    tx: &impl deadpool_postgres::GenericClient,
    agent: &AgentPeer,
) -> Result<StoreError, StoreError> {
    let row = tx.query_opt("SELECT revoked_at, enrolled_at FROM agents WHERE name = $1", &[&agent.name]).await?;
    Ok(match row.map(|r| (r.get::<_, Option<i64>>(0), r.get::<_, i64>(1))) {
        Some((None, enrolled_at)) => StoreError::CertificateSuperseded { agent: agent.name.clone(), enrolled_at },
        Some((revoked_at, _)) => StoreError::AgentRefused { agent: agent.name.clone(), revoked_at },
        None => StoreError::AgentRefused { agent: agent.name.clone(), revoked_at: None },
    })
}

/// A job row: [`JOB_COLS`], then the body or NULL, `cancel_requested_at`, the origin and the pool.
fn enrol_token_from_row(r: &Row) -> EnrolTokenRecord {
    EnrolTokenRecord {
        id: r.get(0),
        agent: r.get(1),
        pool: r.get(2),
        secret_sha256: r.get(3),
        created_at: r.get(4),
        expires_at: r.get(5),
    }
}

pub(super) async fn create_enrol_token(store: &PgStore, t: EnrolTokenRecord) -> Result<(), StoreError> {
    let client = store.client().await?;
    client
        .execute(
            "INSERT INTO enrol_tokens (id, agent, secret_sha256, created_at, expires_at, pool)
                 VALUES ($1, $2, $3, $4, $5, $6)",
            &[&t.id, &t.agent, &t.secret_sha256, &t.created_at, &t.expires_at, &t.pool],
        )
        .await?;
    Ok(())
}

pub(super) async fn outstanding_enrol_tokens(store: &PgStore, now: i64) -> Result<Vec<EnrolTokenRecord>, StoreError> {
    let client = store.client().await?;
    let rows = client
        .query(
            "SELECT id, agent, pool, secret_sha256, created_at, expires_at FROM enrol_tokens
                 WHERE used_at IS NULL AND expires_at >= $1 ORDER BY created_at, id",
            &[&now],
        )
        .await?;
    Ok(rows.iter().map(enrol_token_from_row).collect())
}

pub(super) async fn revoke_enrol_token(store: &PgStore, id: String) -> Result<Option<EnrolTokenRecord>, StoreError> {
    let client = store.client().await?;
    let row = client
        .query_opt(
            "DELETE FROM enrol_tokens WHERE id = $1 AND used_at IS NULL
                 RETURNING id, agent, pool, secret_sha256, created_at, expires_at",
            &[&id],
        )
        .await?;
    Ok(row.as_ref().map(enrol_token_from_row))
}

pub(super) async fn redeem_enrol_token(
    store: &PgStore,
    id: String,
    secret_sha256: String,
    agent: String,
    now: i64,
    cert_lifetime_secs: i64,
) -> Result<Result<Enrolled, RedeemError>, StoreError> {
    let mut client = store.client().await?;
    let tx = client.transaction().await?;
    let row = tx
        .query_opt(
            "SELECT agent, secret_sha256, expires_at, used_at, pool FROM enrol_tokens WHERE id = $1 FOR UPDATE",
            &[&id],
        )
        .await?;
    let Some(row) = row else {
        return Ok(Err(RedeemError::Unknown));
    };
    let (bound, stored_hash, expires_at, used_at, pool): (String, String, i64, Option<i64>, Option<String>) =
        (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
    if let Err(refused) = check_redeem(&stored_hash, &secret_sha256, used_at, expires_at, &bound, &agent, now) {
        return Ok(Err(refused));
    }
    tx.execute("UPDATE enrol_tokens SET used_at = $2 WHERE id = $1", &[&id, &now]).await?;
    // Waits for the requests of the old enrolment in flight (they hold the agent's
    // advisory lock shared), and they for this (transitions.rs, migration 008).
    tx.execute("SELECT pg_advisory_xact_lock(1, hashtext($1))", &[&agent]).await?;
    let previous: Option<i64> =
        tx.query_opt("SELECT enrolled_at FROM agents WHERE name = $1 FOR UPDATE", &[&agent]).await?.map(|r| r.get(0));
    let enrolled_at = enrolment_time(previous, now);
    let cert_not_after = enrolled_at.saturating_add(cert_lifetime_secs);
    tx.execute(
        "INSERT INTO agents (name, enrolled_at, cert_not_after, pool) VALUES ($1, $2, $3, $4)
             ON CONFLICT (name) DO UPDATE SET enrolled_at = excluded.enrolled_at,
                 cert_not_after = excluded.cert_not_after, revoked_at = NULL, pool = excluded.pool",
        &[&agent, &enrolled_at, &cert_not_after, &pool],
    )
    .await?;
    // A new enrolment starts a new account of its audit log.
    tx.execute("DELETE FROM audit_heads WHERE agent = $1", &[&agent]).await?;
    tx.commit().await?;
    Ok(Ok(Enrolled { pool, enrolled_at, cert_not_after }))
}

pub(super) async fn agent(store: &PgStore, name: String) -> Result<Option<AgentRecord>, StoreError> {
    let client = store.client().await?;
    let stmt = client.prepare_cached(&format!("SELECT {AGENT_COLS} FROM agents WHERE name = $1")).await?;
    Ok(client.query_opt(&stmt, &[&name]).await?.as_ref().map(agent_from_row))
}

pub(super) async fn agents(store: &PgStore) -> Result<Vec<AgentRecord>, StoreError> {
    let client = store.client().await?;
    let rows = client.query(&format!("SELECT {AGENT_COLS} FROM agents ORDER BY name"), &[]).await?;
    Ok(rows.iter().map(agent_from_row).collect())
}

pub(super) async fn pool_members(store: &PgStore, pool: String) -> Result<Vec<AgentRecord>, StoreError> {
    let client = store.client().await?;
    let stmt = client.prepare_cached(&format!("SELECT {AGENT_COLS} FROM agents WHERE pool = $1 ORDER BY name")).await?;
    Ok(client.query(&stmt, &[&pool]).await?.iter().map(agent_from_row).collect())
}

pub(super) async fn touch_agent(
    store: &PgStore,
    agent: AgentPeer,
    now: i64,
    version: Option<String>,
    connections: Option<Vec<String>>,
) -> Result<(), StoreError> {
    let conns = connections.map(|v| serde_json::to_string(&v).unwrap_or_else(|_| "[]".into()));
    let mut client = store.client().await?;
    let tx = client.transaction().await?;
    admit_agent(&tx, &agent, now).await?;
    let stmt = tx
        .prepare_cached(
            "UPDATE agents SET version = COALESCE($2, version), connections = COALESCE($3, connections)
                 WHERE name = $1",
        )
        .await?;
    tx.execute(&stmt, &[&agent.name, &version, &conns]).await?;
    tx.commit().await?;
    Ok(())
}

pub(super) async fn agent_stopped(store: &PgStore, agent: AgentPeer, now: i64) -> Result<(), StoreError> {
    let client = store.client().await?;
    let stmt = client
        .prepare_cached(
            "UPDATE agents SET last_seen = $2, stopped_at = $2
                 WHERE name = $1 AND revoked_at IS NULL AND enrolled_at <= $3",
        )
        .await?;
    client.execute(&stmt, &[&agent.name, &now, &agent.cert_issued_at]).await?;
    Ok(())
}

pub(super) async fn record_audit_head(
    store: &PgStore,
    agent: AgentPeer,
    head: StoredAuditHead,
) -> Result<AuditHeadOutcome, StoreError> {
    let client = store.client().await?;
    let stmt = client
        .prepare_cached(
            "INSERT INTO audit_heads (agent, seq, hash, head, received_at)
                 SELECT $1, $2, $3, $4, $5 WHERE EXISTS (
                     SELECT 1 FROM agents WHERE name = $1 AND revoked_at IS NULL AND enrolled_at <= $6)
                 ON CONFLICT (agent) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, head = excluded.head,
                     received_at = excluded.received_at
                 WHERE excluded.seq > audit_heads.seq
                    OR (excluded.seq = audit_heads.seq AND excluded.hash = audit_heads.hash)",
        )
        .await?;
    let n = client
        .execute(
            &stmt,
            &[&agent.name, &head.seq, &head.hash, &head.head_json, &head.received_at, &agent.cert_issued_at],
        )
        .await?;
    if n > 0 {
        return Ok(AuditHeadOutcome::Stored);
    }
    Ok(behind_or_not_admitted(store.audit_head(agent.name).await?, &head))
}

pub(super) async fn audit_head(store: &PgStore, agent: String) -> Result<Option<StoredAuditHead>, StoreError> {
    let client = store.client().await?;
    let stmt = client.prepare_cached("SELECT seq, hash, head, received_at FROM audit_heads WHERE agent = $1").await?;
    Ok(client.query_opt(&stmt, &[&agent]).await?.map(|r| StoredAuditHead {
        seq: r.get(0),
        hash: r.get(1),
        head_json: r.get(2),
        received_at: r.get(3),
    }))
}

pub(super) async fn record_renewal(
    store: &PgStore,
    agent: AgentPeer,
    cert_not_after: i64,
    now: i64,
) -> Result<(), StoreError> {
    let mut client = store.client().await?;
    let tx = client.transaction().await?;
    admit_agent(&tx, &agent, now).await?;
    tx.execute("UPDATE agents SET cert_not_after = $2 WHERE name = $1", &[&agent.name, &cert_not_after]).await?;
    tx.commit().await?;
    Ok(())
}

pub(super) async fn revoke_agent(store: &PgStore, name: String, now: i64) -> Result<Option<Vec<String>>, StoreError> {
    let mut client = store.client().await?;
    let tx = client.transaction().await?;
    // Waits for the agent's requests in flight (they hold the agent's advisory lock
    // shared), and they for this: nothing is leased to the agent after this commits
    // (transitions.rs, migration 008).
    tx.execute("SELECT pg_advisory_xact_lock(1, hashtext($1))", &[&name]).await?;
    tx.execute("SELECT 1 FROM agents WHERE name = $1 FOR UPDATE", &[&name]).await?;
    let n =
        tx.execute("UPDATE agents SET revoked_at = COALESCE(revoked_at, $2) WHERE name = $1", &[&name, &now]).await?;
    if n == 0 {
        return Ok(None);
    }
    // A pool's job this agent held goes back to the pool; its own jobs fail.
    tx.execute(
        "UPDATE jobs SET state = 'queued', agent = '', lease_until = NULL
             WHERE agent = $1 AND pool IS NOT NULL AND state = 'leased'",
        &[&name],
    )
    .await?;
    let failed = tx
        .query(
            "UPDATE jobs SET state = 'failed', finished_at = $2, lease_until = NULL, reason_code = 'agent_revoked',
                     reason_message = 'the agent was revoked before it returned a result'
                 WHERE agent = $1 AND pool IS NULL AND state IN ('queued', 'leased') RETURNING id",
            &[&name, &now],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    tx.commit().await?;
    Ok(Some(failed))
}
