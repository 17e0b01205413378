//! What the audit log says: one record type per event (a job, a config reload, a change
//! of the trusted keys, a refused cache entry), serialised as one JSON object a line.

use serde::Serialize;

/// How a job ended, as its record's `outcome` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditOutcome {
    /// `succeeded`: the query ran and the rendered result was sent.
    Succeeded,
    /// `failed`: the job was valid but could not be completed.
    Failed,
    /// `rejected`: refused before anything ran (verification or policy).
    Rejected,
    /// `cancelled`: stopped at the control plane's request.
    Cancelled,
}

impl AuditOutcome {
    /// The word the audit log and the metrics use.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditOutcome::Succeeded => "succeeded",
            AuditOutcome::Failed => "failed",
            AuditOutcome::Rejected => "rejected",
            AuditOutcome::Cancelled => "cancelled",
        }
    }
}

/// How a SIGHUP reload ended, as its record's `outcome` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReloadOutcome {
    /// `applied`: new jobs run under the file as read.
    Applied,
    /// `refused`: the file was not valid; the running config stays.
    Refused,
}

/// One audit record.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AuditRecord {
    /// `job`.
    pub event: &'static str,
    /// RFC 3339 time the job ended.
    pub ts: String,
    /// Job id (as delivered, when the envelope could not be verified).
    pub job_id: String,
    /// Signing key id named by the envelope.
    pub key_id: Option<String>,
    /// `accepted` (signature, audience and lifetime verified) or `rejected`.
    pub verdict: &'static str,
    /// `succeeded`, `failed`, `rejected` or `cancelled`.
    pub outcome: AuditOutcome,
    /// Reason code when not succeeded.
    pub reason: Option<String>,
    /// Connection (verified jobs only).
    pub connection: Option<String>,
    /// SHA-256 of the SQL text, hex (verified jobs only).
    pub sql_sha256: Option<String>,
    /// Who asked for the job, as the control plane signed it (verified jobs only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requester: Option<outpost_protocol::Requester>,
    /// The SQL text (verified jobs, unless `audit.sql_text: hash_only`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sql: Option<String>,
    /// The parameters' types, in order (verified jobs).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub param_types: Vec<&'static str>,
    /// The parameters' values (only with `audit.param_values: true`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub params: Option<serde_json::Value>,
    /// Rows in the result: read from the database, or from the cache on a hit.
    pub rows_read: u64,
    /// The result cache: `hit`, `miss` (then stored if the query ended well; also when an
    /// entry of an earlier agent's format was deleted), `damaged` (an entry did not
    /// authenticate; deleted, the query ran), `off` (max-age 0 by the job or policy);
    /// absent when the job did not get that far.
    pub cache: Option<&'static str>,
    /// Bytes of the rendered body sent to the control plane.
    pub bytes_sent: u64,
    /// SHA-256 (hex) of exactly the rendered bytes sent: with `bytes_sent`, the egress
    /// ledger a security team reconciles with what the control plane stored.
    pub body_sha256: Option<String>,
    /// SHA-256 (hex) of the failure message sent (the report's reason message) when the
    /// job did not succeed; `bytes_sent` is then that message's length. Under the default
    /// `egress.errors: scrubbed` it is the scrubbed text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_sha256: Option<String>,
    /// Whether rows were cut at the row cap.
    pub truncated: bool,
    /// What the egress policy truncated, masked, downsampled or refused (absent: nothing).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<outpost_protocol::EgressDecision>,
    /// Milliseconds from receipt to report.
    pub duration_ms: u64,
}

/// A SIGHUP reload of agent.yaml, applied or refused.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ConfigRecord {
    /// `config_reload`.
    pub event: &'static str,
    /// RFC 3339 time.
    pub ts: String,
    /// `applied` or `refused`.
    pub outcome: ReloadOutcome,
    /// SHA-256 of agent.yaml as read.
    pub config_sha256: Option<String>,
    /// Why it was refused.
    pub reason: Option<String>,
    /// The connections offered after the reload.
    pub connections: Vec<String>,
}

/// A change of the trusted job-signing keys, accepted or refused.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct KeySetRecord {
    /// `key_set`.
    pub event: &'static str,
    /// RFC 3339 time.
    pub ts: String,
    /// `accepted` or `refused`.
    pub verdict: &'static str,
    /// The statement's version (as offered, when refused).
    pub version: u64,
    /// Reason code when refused.
    pub reason: Option<String>,
    /// Key ids newly trusted.
    pub added: Vec<String>,
    /// Key ids no longer trusted.
    pub removed: Vec<String>,
    /// Trusted keys whose signatures verified.
    pub signed_by: Vec<String>,
}

/// A cache entry that did not authenticate or parse: deleted, and the query ran instead.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CacheRecord {
    /// `cache`.
    pub event: &'static str,
    /// RFC 3339 time.
    pub ts: String,
    /// `damaged` (it did not authenticate or decode) or `outdated` (written in an earlier
    /// agent's format); either way it was deleted and the query ran.
    pub verdict: &'static str,
    /// The job that looked the entry up.
    pub job_id: String,
    /// The connection.
    pub connection: String,
    /// Why the entry was refused (never any of its content).
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The audit log on disk names outcomes with these words; they must not change.
    #[test]
    fn outcomes_are_written_with_the_same_words_as_before() {
        let words = |v: serde_json::Value| v.as_str().map(str::to_owned).unwrap_or_default();
        for (outcome, word) in [
            (AuditOutcome::Succeeded, "succeeded"),
            (AuditOutcome::Failed, "failed"),
            (AuditOutcome::Rejected, "rejected"),
            (AuditOutcome::Cancelled, "cancelled"),
        ] {
            assert_eq!(words(serde_json::to_value(outcome).expect("json")), word);
            assert_eq!(outcome.as_str(), word);
        }
        for (outcome, word) in [(ReloadOutcome::Applied, "applied"), (ReloadOutcome::Refused, "refused")] {
            assert_eq!(words(serde_json::to_value(outcome).expect("json")), word);
        }
    }
}
