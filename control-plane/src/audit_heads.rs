//! The agents' audit heads: each agent signs the end of its audit log's hash chain (seq
//! and hash) with its certificate's key and sends it with every heartbeat and result. The
//! control plane checks the signature under the key of the certificate the connection
//! was made with, keeps the furthest head per agent, and serves it to auditors
//! (`GET /v1/agents/{name}/audit-head`), so that `outpost-agent audit verify --head`
//! detects records cut from the end of the log.
//!
//! A head from a result is stored at most once per second per agent (a heartbeat's
//! always is): a busy agent does not add a database write to every job.

use std::collections::HashMap;
use std::sync::Mutex;

use hyper::StatusCode;
use outpost_protocol::audit_head::AuditHead;

use crate::app::App;
use crate::store::{AgentPeer, AuditHeadOutcome, Store, StoredAuditHead};

/// Most agents whose last stored head time is remembered (beyond it the map is cleared:
/// at worst one extra write per agent).
const MAX_REMEMBERED: usize = 10_000;

/// When each agent's head was last stored from a result, unix seconds.
#[derive(Debug, Default)]
pub struct HeadPace {
    last: Mutex<HashMap<String, i64>>,
}

impl HeadPace {
    /// Whether a head from a result of `agent` at `now` is due to be stored (and notes it).
    fn due(&self, agent: &str, now: i64) -> bool {
        let mut last = self.last.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if last.get(agent).is_some_and(|&t| t >= now) {
            return false;
        }
        if last.len() >= MAX_REMEMBERED {
            last.clear();
        }
        last.insert(agent.to_owned(), now);
        true
    }
}

/// Where a head came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadSource {
    /// A heartbeat: always stored.
    Heartbeat,
    /// A result report: stored at most once a second per agent.
    Result,
}

/// Checks `head` against the agent's certificate key and keeps it if it is the agent's
/// furthest. A head that does not verify, or that is behind the stored one, is never
/// stored; it is logged and recorded in the audit log (the request it came with goes on:
/// a result is never lost over its head).
pub async fn accept(app: &App, peer: &AgentPeer, head: &AuditHead, source: HeadSource) {
    let now = app.clock.now();
    let agent = peer.name.as_str();
    if source == HeadSource::Result && !app.head_pace.due(agent, now) {
        return;
    }
    let problem = match head.verify() {
        Ok(key) if *key == *peer.public_key => None,
        Ok(_) => Some("signed by a key other than the agent certificate's".to_owned()),
        Err(e) => Some(e.to_string()),
    };
    if let Some(problem) = problem {
        refuse(app, agent, head.seq, problem).await;
        return;
    }
    let (Ok(seq), Ok(head_json)) = (i64::try_from(head.seq), serde_json::to_string(head)) else {
        refuse(app, agent, head.seq, "seq out of range".into()).await;
        return;
    };
    let stored = StoredAuditHead { seq, hash: head.hash.clone(), head_json, received_at: now };
    match app.store.record_audit_head(peer.clone(), stored).await {
        // A late request of a certificate no longer admitted changes nothing.
        Ok(AuditHeadOutcome::Stored | AuditHeadOutcome::NotAdmitted) => {}
        Ok(AuditHeadOutcome::Behind(kept)) => {
            // The agent's log is shorter than, or differs from, what it reported before:
            // records were cut or rewritten. Kept loud; the furthest head stays.
            tracing::error!(agent_id = %agent, reported = head.seq, kept = kept.seq,
                "An agent reported an audit head behind the one it reported before: its log was cut or rewritten.");
            let detail =
                serde_json::json!({ "seq": head.seq, "kept_seq": kept.seq, "problem": "behind the stored head" });
            crate::enrolment::audit_agent(
                app,
                agent,
                "mtls".into(),
                "agents.audit_head",
                StatusCode::CONFLICT,
                None,
                detail,
            )
            .await;
        }
        Err(e) => tracing::warn!(agent_id = %agent, error = %e, "An agent's audit head could not be stored."),
    }
}

/// Logs and audits a head that is not kept.
async fn refuse(app: &App, agent: &str, seq: u64, problem: String) {
    tracing::error!(agent_id = %agent, seq, problem, "An agent's audit head was refused.");
    let detail = serde_json::json!({ "seq": seq, "problem": problem });
    crate::enrolment::audit_agent(
        app,
        agent,
        "mtls".into(),
        "agents.audit_head",
        StatusCode::BAD_REQUEST,
        None,
        detail,
    )
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_result_head_is_due_once_a_second_per_agent() {
        let pace = HeadPace::default();
        assert!(pace.due("edge-1", 100));
        assert!(!pace.due("edge-1", 100), "same second");
        assert!(pace.due("edge-2", 100), "another agent");
        assert!(pace.due("edge-1", 101));
    }
}
