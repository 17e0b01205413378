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
    pub fn body_bytes(&self) -> Result<Option<Vec<u8>>, ReportError> {
        match &self.body {
            None => Ok(None),
            Some(b) => b64_decode(b).map(Some).map_err(ReportError::BodyNotBase64),
        }
    }

    /// Checks the report's internal consistency (the receiver's side of validation).
    pub fn check(&self) -> Result<(), ReportError> {
        if !crate::ids::is_job_id(&self.job_id) {
            return Err(ReportError::NotJobId);
        }
        if self.stats.egress.len() > MAX_EGRESS_DECISIONS {
            return Err(ReportError::TooManyDecisions);
        }
        if let Some(index) =
            self.stats.egress.iter().position(|d| d.rule.len() > 64 || d.detail.chars().count() > MAX_DECISION_DETAIL)
        {
            return Err(ReportError::DecisionTooLong { index });
        }
        match self.status {
            JobOutcome::Succeeded => {
                let body = self.body_bytes()?.ok_or(ReportError::BodyMissing)?;
                if body.len() > MAX_BODY_LEN {
                    return Err(ReportError::BodyTooLarge);
                }
                match self.content_type.as_deref() {
                    Some("image/svg+xml" | "application/json" | "text/html; charset=utf-8") => Ok(()),
                    Some(other) => Err(ReportError::NotRendered { content_type: other.to_owned() }),
                    None => Err(ReportError::NoContentType),
                }
            }
            JobOutcome::Failed | JobOutcome::Rejected | JobOutcome::Cancelled => {
                if self.reason.is_none() {
                    return Err(ReportError::NoReason);
                }
                if self.body.is_some() {
                    return Err(ReportError::BodyNotAllowed);
                }
                Ok(())
            }
        }
    }
}

/// Why a result report is not consistent. Each text starts with the field at fault
/// (`body: …`); the control plane answers 400 with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    /// `job_id` is not a job id.
    #[error("job_id: not a job id")]
    NotJobId,
    /// More egress decisions than allowed.
    #[error("stats.egress: more than {MAX_EGRESS_DECISIONS} decisions")]
    TooManyDecisions,
    /// An egress decision's rule or detail is too long.
    #[error("stats.egress[{index}]: rule or detail too long")]
    DecisionTooLong {
        /// Its position.
        index: usize,
    },
    /// The body is not base64. The text repeats the decoder's words on purpose: the
    /// control plane's answer carries this error alone.
    #[error("body: {0}")]
    BodyNotBase64(#[source] base64::DecodeError),
    /// A success without a body.
    #[error("body: required when status is succeeded")]
    BodyMissing,
    /// A body over the limit.
    #[error("body: larger than {MAX_BODY_LEN} bytes")]
    BodyTooLarge,
    /// A content type that no renderer produces.
    #[error("content_type: {content_type:?} is not a rendered kind")]
    NotRendered {
        /// The type given.
        content_type: String,
    },
    /// A success without a content type.
    #[error("content_type: required when status is succeeded")]
    NoContentType,
    /// A failure without a reason.
    #[error("reason: required when status is failed, rejected or cancelled")]
    NoReason,
    /// A failure with a body.
    #[error("body: not allowed when status is failed, rejected or cancelled")]
    BodyNotAllowed,
}

#[cfg(test)]
mod tests {
    use super::*;

    const JOB: &str = "7f1c2b9e-0a4d-4c1e-9b7a-3d2f1e0c9b8a";

    /// The control plane answers an inconsistent report with the field and the words
    /// below; agents of other versions read them.
    #[test]
    fn an_inconsistent_report_names_the_field_at_fault() {
        let ok = ResultReport::succeeded(JOB, "image/svg+xml", b"<svg/>", ResultStats::default());
        assert_eq!(ok.check(), Ok(()));
        let said = |r: &ResultReport| r.check().expect_err("inconsistent").to_string();
        assert_eq!(said(&ResultReport { job_id: "x".into(), ..ok.clone() }), "job_id: not a job id");
        assert_eq!(said(&ResultReport { body: None, ..ok.clone() }), "body: required when status is succeeded");
        assert_eq!(
            said(&ResultReport { content_type: Some("text/plain".into()), ..ok.clone() }),
            "content_type: \"text/plain\" is not a rendered kind"
        );
        assert_eq!(
            said(&ResultReport { content_type: None, ..ok.clone() }),
            "content_type: required when status is succeeded"
        );
        let bad_body = ResultReport { body: Some("*".into()), ..ok.clone() };
        assert!(matches!(bad_body.check(), Err(ReportError::BodyNotBase64(_))));
        assert!(said(&bad_body).starts_with("body: "), "{}", said(&bad_body));
        let failed = ResultReport::refused(JOB, JobOutcome::Failed, "x", "y".into(), ResultStats::default());
        assert_eq!(failed.check(), Ok(()));
        assert_eq!(
            said(&ResultReport { reason: None, ..failed.clone() }),
            "reason: required when status is failed, rejected or cancelled"
        );
        assert_eq!(
            said(&ResultReport { body: Some(String::new()), ..failed }),
            "body: not allowed when status is failed, rejected or cancelled"
        );
    }
}
