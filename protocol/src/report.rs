//! The result report an agent uploads for every job it received.
//!
//! A report carries only the rendered body (a capped table or an SVG), never a raw
//! result set, and the statistics a user and an auditor want to see.

use serde::{Deserialize, Serialize};

use crate::encoding::{b64_decode, b64_encode};

/// Largest rendered body the control plane accepts (bytes).
pub const MAX_BODY_LEN: usize = 4 * 1024 * 1024;

/// How a job ended on the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobOutcome {
    /// The query ran and the result was rendered.
    Succeeded,
    /// The job was valid but could not be completed (query error, render error, ...).
    Failed,
    /// The job was refused before anything ran (verification or policy).
    Rejected,
    /// The control plane asked to stop the job while it ran; the query was stopped on
    /// the database server and nothing was rendered.
    Cancelled,
}

/// Why a job failed or was rejected: a stable code and a human message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reason {
    /// Stable short name, e.g. `expired`, `unknown_key`, `query_failed`.
    pub code: String,
    /// One line for a human.
    pub message: String,
}

/// Most egress decisions one report may carry.
pub const MAX_EGRESS_DECISIONS: usize = 64;

/// Longest `detail` of an egress decision (characters).
pub const MAX_DECISION_DETAIL: usize = 512;

/// What the agent's egress policy did to a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EgressAction {
    /// Fewer rows left than the query returned.
    Truncated,
    /// A column's values were replaced (`***` or a keyed hash).
    Masked,
    /// A chart shows fewer points than the result had.
    Downsampled,
    /// Nothing left: the result broke a rule.
    Refused,
}

/// One decision of the agent's local egress policy, stated so that a user can see why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EgressDecision {
    /// What was done.
    pub action: EgressAction,
    /// The policy field that decided (`max_rows`, `mask`, `allowed_kinds`, ...).
    pub rule: String,
    /// One line for a human.
    pub detail: String,
}

/// What the agent measured while running a job.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResultStats {
    /// Rows in the result: read from the database, or from the agent's cache on a hit.
    pub rows_read: u64,
    /// Bytes of the rendered body.
    pub bytes: u64,
    /// Time from verification to rendered body, milliseconds.
    pub duration_ms: u64,
    /// Whether the result came from the local cache.
    pub cache_hit: bool,
    /// Whether rows were cut by a row cap.
    pub truncated: bool,
    /// What the agent's egress policy truncated, masked, downsampled or refused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<EgressDecision>,
}

/// The agent's answer to one job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResultReport {
    /// The job this answers.
    pub job_id: String,
    /// How it ended.
    pub status: JobOutcome,
    /// Set when `status` is not `succeeded`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
    /// MIME type of `body`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// Rendered bytes, standard base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Measurements.
    #[serde(default)]
    pub stats: ResultStats,
    /// How far the agent's audit log reached once this job's record was written,
    /// signed by the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_head: Option<crate::audit_head::AuditHead>,
}

impl ResultReport {
    /// A successful report with a rendered body.
    pub fn succeeded(job_id: &str, content_type: &str, body: &[u8], mut stats: ResultStats) -> Self {
        stats.bytes = body.len() as u64;
        Self {
            job_id: job_id.to_owned(),
            status: JobOutcome::Succeeded,
            reason: None,
            content_type: Some(content_type.to_owned()),
            body: Some(b64_encode(body)),
            stats,
            audit_head: None,
        }
    }

    /// A failed or rejected report.
    pub fn refused(job_id: &str, status: JobOutcome, code: &str, message: String, stats: ResultStats) -> Self {
        Self {
            job_id: job_id.to_owned(),
            status,
            reason: Some(Reason { code: code.to_owned(), message }),
            content_type: None,
            body: None,
            stats,
            audit_head: None,
        }
    }

    /// Decodes the body, if any.
    pub fn body_bytes(&self) -> Result<Option<Vec<u8>>, String> {
        match &self.body {
            None => Ok(None),
            Some(b) => b64_decode(b).map(Some).map_err(|e| format!("body: {e}")),
        }
    }

    /// Checks the report's internal consistency (the receiver's side of validation).
    pub fn check(&self) -> Result<(), String> {
        if !crate::ids::is_job_id(&self.job_id) {
            return Err("job_id: not a job id".into());
        }
        if self.stats.egress.len() > MAX_EGRESS_DECISIONS {
            return Err(format!("stats.egress: more than {MAX_EGRESS_DECISIONS} decisions"));
        }
        if let Some(i) =
            self.stats.egress.iter().position(|d| d.rule.len() > 64 || d.detail.chars().count() > MAX_DECISION_DETAIL)
        {
            return Err(format!("stats.egress[{i}]: rule or detail too long"));
        }
        match self.status {
            JobOutcome::Succeeded => {
                let body = self.body_bytes()?.ok_or("body: required when status is succeeded")?;
                if body.len() > MAX_BODY_LEN {
                    return Err(format!("body: larger than {MAX_BODY_LEN} bytes"));
                }
                match self.content_type.as_deref() {
                    Some("image/svg+xml" | "application/json" | "text/html; charset=utf-8") => Ok(()),
                    Some(other) => Err(format!("content_type: {other:?} is not a rendered kind")),
                    None => Err("content_type: required when status is succeeded".into()),
                }
            }
            JobOutcome::Failed | JobOutcome::Rejected | JobOutcome::Cancelled => {
                if self.reason.is_none() {
                    return Err("reason: required when status is failed, rejected or cancelled".into());
                }
                if self.body.is_some() {
                    return Err("body: not allowed when status is failed, rejected or cancelled".into());
                }
                Ok(())
            }
        }
    }
}
