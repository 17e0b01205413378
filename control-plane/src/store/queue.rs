//! Handing jobs out so that one bad record never blocks the others.
//!
//! Envelopes are stored sealed ([`ResultCipher::seal_envelope`]); one that does not open
//! counts as unreadable like one that does not parse.
//!
//! A job row whose envelope the control plane cannot parse (a damaged row, a bad restore,
//! a bug of an older version) would otherwise fail every poll that leases it, and the
//! good jobs queued behind it would wait until it expired. [`lease_deliverable`] checks
//! each leased envelope; a bad one is marked `failed` with code `corrupt_job` in a
//! transaction of its own, and the lease goes on with the rest, so the agent still gets
//! up to `max` good jobs. The caller logs and audits what was failed. Nothing of the bad
//! row's content is logged or kept: it may hold SQL.

use outpost_protocol::Envelope;

use crate::crypto::sealing::ResultCipher;
use crate::store::{AgentPeer, LeaseBatch, Store, StoreError};

/// The reason code of a job failed because its stored record cannot be read.
pub const CORRUPT_JOB: &str = "corrupt_job";
/// Its message (the same for every such job; the row's content is never quoted).
pub const CORRUPT_JOB_MESSAGE: &str =
    "the control plane cannot read this job's stored envelope; it was never delivered; dispatch it again";

/// Most leases tried in one call (each one fails at least one bad job, so this bounds
/// the work a poll does on a queue full of damaged rows; the next poll goes on).
const MAX_ROUNDS: usize = 8;

/// What was wrong with a stored envelope, without its content.
pub fn check_envelope(envelope_json: &str) -> Result<Envelope, &'static str> {
    let e: Envelope =
        serde_json::from_str(envelope_json).map_err(|_| "the envelope is not valid JSON of an envelope")?;
    let payload = outpost_protocol::encoding::b64_decode(&e.payload).map_err(|_| "the payload is not base64")?;
    outpost_protocol::encoding::b64_decode(&e.signature).map_err(|_| "the signature is not base64")?;
    serde_json::from_slice::<serde_json::Value>(&payload).map_err(|_| "the signed payload is not JSON")?;
    Ok(e)
}

/// The job spec inside a stored (sealed or clear) envelope of job `id`, for showing it;
/// a problem in the words of [`check_envelope`] when it cannot be read. The signature is
/// not checked here: the control plane signed it, and only agents act on it.
pub fn open_spec(cipher: &ResultCipher, id: &str, stored: &str) -> Result<outpost_protocol::JobSpec, &'static str> {
    let json = cipher.open_envelope(id, stored).ok_or("the sealed envelope does not open")?;
    let env = check_envelope(&json)?;
    let payload = outpost_protocol::encoding::b64_decode(&env.payload).map_err(|_| "the payload is not base64")?;
    let spec: outpost_protocol::JobSpec =
        serde_json::from_slice(&payload).map_err(|_| "the payload is not a job spec")?;
    if spec.job_id != id {
        return Err("the envelope belongs to another job");
    }
    Ok(spec)
}

/// `envelope_json` signed again by `active` (a key rotation's re-signing); `None` when it
/// cannot be read, and the job is then failed as `corrupt_job` (logged by id only).
pub(crate) fn resigned(
    id: &str,
    stored: &str,
    active: &outpost_protocol::SigningKey,
    cipher: Option<&ResultCipher>,
) -> Option<String> {
    let opened = match cipher {
        Some(c) => c.open_envelope(id, stored).ok_or("the sealed envelope does not open"),
        None => Ok(stored.to_owned()),
    };
    let checked = opened
        .and_then(|json| check_envelope(&json))
        .and_then(|old| outpost_protocol::encoding::b64_decode(&old.payload).map_err(|_| "the payload is not base64"))
        .and_then(|payload| serde_json::to_string(&active.sign_payload(&payload)).map_err(|_| "cannot encode"))
        .map(|json| match cipher {
            Some(c) => c.seal_envelope(id, &json),
            None => json,
        });
    match checked {
        Ok(new) => Some(new),
        Err(problem) => {
            tracing::error!(job_id = %id, problem, "A job's stored envelope cannot be read; it fails as corrupt_job instead of being re-signed.");
            None
        }
    }
}

/// A job failed as `corrupt_job` by [`lease_deliverable`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorruptJob {
    /// Job id.
    pub id: String,
    /// What was wrong (never the content).
    pub problem: &'static str,
}

/// A lease of good jobs: the batch (only parseable envelopes) with each one parsed, and
/// the jobs failed on the way.
#[derive(Debug, Default)]
pub struct Deliverable {
    /// Expired, cancelled, cancels and the key-set version, as the store gave them.
    pub batch: LeaseBatch,
    /// The leased jobs' ids and envelopes, oldest first.
    pub jobs: Vec<(String, Envelope)>,
    /// Jobs failed as `corrupt_job`.
    pub corrupt: Vec<CorruptJob>,
}

/// Leases up to `max` jobs of `agent` whose envelopes can be read; a leased job whose
/// envelope cannot be read is failed (`corrupt_job`) in its own transaction, and another
/// is leased in its place.
pub async fn lease_deliverable<S: Store>(
    store: &S,
    cipher: &ResultCipher,
    agent: &AgentPeer,
    now: i64,
    lease_secs: i64,
    max: usize,
) -> Result<Deliverable, StoreError> {
    let mut out = Deliverable::default();
    for round in 0..MAX_ROUNDS {
        let want = max.saturating_sub(out.jobs.len());
        let batch = store.lease_jobs(agent.clone(), now, lease_secs, want).await?;
        let leased = batch.jobs.len();
        let mut bad_now = 0;
        for j in &batch.jobs {
            let opened = cipher.open_envelope(&j.id, &j.envelope_json).ok_or("the sealed envelope does not open");
            match opened.and_then(|json| check_envelope(&json)) {
                Ok(e) => out.jobs.push((j.id.clone(), e)),
                Err(problem) => {
                    // Only a job still leased to this agent is failed: never one another
                    // replica handed out again meanwhile.
                    if store.fail_corrupt_job(j.id.clone(), agent.name.clone(), now, CORRUPT_JOB_MESSAGE.into()).await?
                    {
                        out.corrupt.push(CorruptJob { id: j.id.clone(), problem });
                    }
                    bad_now += 1;
                }
            }
        }
        if round == 0 {
            out.batch = LeaseBatch { jobs: Vec::new(), ..batch };
        } else {
            out.batch.expired.extend(batch.expired);
            out.batch.cancelled.extend(batch.cancelled);
            out.batch.cancel.extend(batch.cancel);
            out.batch.key_set_version = batch.key_set_version;
        }
        // Lease again only when bad jobs took places the queue may fill with good ones.
        if bad_now == 0 || leased < want || out.jobs.len() >= max {
            break;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_envelope_is_checked_without_quoting_it() {
        let (key, _) = outpost_protocol::SigningKey::generate().expect("key");
        let good = serde_json::to_string(&key.sign_payload(b"{\"sql\":\"SELECT 1\"}")).expect("json");
        assert!(check_envelope(&good).is_ok());
        for bad in ["{}", "not json", "{\"key_id\":\"k\",\"payload\":\"!!\",\"signature\":\"\"}"] {
            let problem = check_envelope(bad).expect_err(bad);
            assert!(!problem.contains(bad), "{problem}");
        }
    }
}
