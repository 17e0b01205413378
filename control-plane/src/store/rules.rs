//! What both backends decide the same way, in Rust or as SQL text they share: whether an
//! enrolment token may be redeemed, when an enrolment takes effect, how a job list is filtered, how often a cancel is
//! repeated, and why an audit head was not stored.

use crate::store::{AuditHeadOutcome, RedeemError, StoredAuditHead};

/// The `WHERE` clause of [`Store::jobs`] on both backends, with `{p}` for the backend's
/// placeholder prefix (`?` or `$`): 1 owner, 3 state, 4 agent or `pool:NAME`, 5 connection.
pub(crate) fn jobs_filter_sql(p: char, text_cast: &str) -> String {
    format!(
        "({p}1{text_cast} IS NULL OR owner = {p}1) AND ({p}3{text_cast} IS NULL OR state = {p}3) \
         AND ({p}4{text_cast} IS NULL OR agent = {p}4 OR '{pool}' || pool = {p}4) \
         AND ({p}5{text_cast} IS NULL OR connection = {p}5)",
        pool = outpost_protocol::job::POOL_PREFIX
    )
}

/// Whether a stored enrolment token may enrol `agent` at `now`: the secret (compared in
/// constant time) first, then single use, the TTL and the bound name. Both backends read
/// the token row under a lock and then ask this.
pub(crate) fn check_redeem(
    stored_hash: &str,
    secret_sha256: &str,
    used_at: Option<i64>,
    expires_at: i64,
    bound: &str,
    agent: &str,
    now: i64,
) -> Result<(), RedeemError> {
    if !outpost_protocol::encoding::constant_time_eq(stored_hash.as_bytes(), secret_sha256.as_bytes()) {
        return Err(RedeemError::SecretMismatch);
    }
    if let Some(used_at) = used_at {
        return Err(RedeemError::Used { used_at });
    }
    if expires_at < now {
        return Err(RedeemError::Expired { expires_at });
    }
    if bound != agent {
        return Err(RedeemError::WrongAgent { bound: bound.to_owned() });
    }
    Ok(())
}

/// When an enrolment of a name takes effect: `now` for a new name; for a name enrolled
/// before, a second after both `now` and that enrolment. Admission refuses a certificate
/// issued before the name's enrolment time, and certificates carry whole seconds, so a
/// certificate issued in the same second as a re-enrolment (one stolen, renewed and then
/// revoked within that second) would otherwise pass for the new one. The new enrolment's
/// own certificate is issued at this time.
pub(crate) fn enrolment_time(previous: Option<i64>, now: i64) -> i64 {
    previous.map_or(now, |p| p.max(now) + 1)
}

/// How often a leased job's cancel is repeated to its agent until it reports, seconds.
pub(crate) const CANCEL_RESEND_SECS: i64 = 10;

/// Why a head was not stored: a stored one further along, or (when none is, or it is
/// not ahead) the certificate was not admitted.
pub(crate) fn behind_or_not_admitted(stored: Option<StoredAuditHead>, head: &StoredAuditHead) -> AuditHeadOutcome {
    match stored {
        Some(s) if s.seq > head.seq || (s.seq == head.seq && s.hash != head.hash) => AuditHeadOutcome::Behind(s),
        _ => AuditHeadOutcome::NotAdmitted,
    }
}
