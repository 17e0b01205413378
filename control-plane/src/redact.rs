//! What a caller who may not read a job's SQL sees of its failure.
//!
//! A database's error text often quotes the statement (SQLite's `no such column: x in
//! SELECT region, x AS v FROM orders at offset 15`) or a value from the data. Callers who
//! may not read a job's SQL — a project's `view-app` collaborators, embed viewers — get
//! only the failure's code and a generic sentence, in every answer that carries a failure
//! (job view, result, project results, embed results, and the console built on them).
//!
//! Who may read a job's SQL ([`may_read_sql`]): an admin; for a project's job, whoever the
//! project gives `view-logic`, `edit` or ownership; for an ad-hoc job, the user who
//! dispatched it (who wrote the SQL). Embed tokens never.

use outpost_protocol::Reason;

use crate::app::App;
use crate::auth::access::Caller;
use crate::http::ApiError;
use crate::store::{JobRecord, JobState};

/// Longest failure code shown as is; a longer or odd one becomes `query_failed`.
const MAX_CODE_LEN: usize = 64;

/// Whether `caller` may read the SQL of job `rec` (and so its failure text).
pub async fn may_read_sql(app: &App, caller: &Caller, rec: &JobRecord) -> Result<bool, ApiError> {
    if caller.is_admin() {
        return Ok(true);
    }
    match &rec.origin.project_id {
        Some(pid) => Ok(app.project_access(caller, pid).await?.1.can_see_logic()),
        None => Ok(rec.origin.owner.as_deref() == Some(caller.user_id.as_str())),
    }
}

/// A failure's code as shown to anyone: a short snake_case name, else `query_failed`
/// (the code comes from the agent; it is shown, so it is held to that shape).
pub fn public_code(code: &str) -> &str {
    let plain = !code.is_empty()
        && code.len() <= MAX_CODE_LEN
        && code.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if plain {
        code
    } else {
        "query_failed"
    }
}

/// The generic sentence for a failure of a job that ended in `state` with `code`.
pub fn generic_message(state: JobState, code: &str) -> String {
    let code = public_code(code);
    match state {
        JobState::Expired => format!("the job expired ({code})"),
        JobState::Cancelled => format!("the job was cancelled ({code})"),
        JobState::Rejected => format!("the agent refused the job ({code})"),
        _ => format!("the query failed ({code})"),
    }
}

/// `reason` as a caller who may not read the SQL sees it: its code and a generic sentence.
pub fn redacted(state: JobState, reason: &Reason) -> Reason {
    Reason { code: public_code(&reason.code).to_owned(), message: generic_message(state, &reason.code) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_redacted_failure_keeps_its_code_and_never_its_text() {
        let r = Reason {
            code: "query_failed".into(),
            message: "no such column: x in SELECT region, x AS v FROM orders at offset 15".into(),
        };
        let shown = redacted(JobState::Failed, &r);
        assert_eq!(shown.code, "query_failed");
        assert_eq!(shown.message, "the query failed (query_failed)");
        // A code that could carry text is not shown as is.
        let odd = Reason { code: "SELECT secret FROM t".into(), message: String::new() };
        assert_eq!(redacted(JobState::Failed, &odd).code, "query_failed");
        assert_eq!(
            redacted(JobState::Expired, &Reason { code: "expired".into(), message: "x".into() }).message,
            "the job expired (expired)"
        );
    }
}
