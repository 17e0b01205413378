//! Request and response bodies of the agent endpoints on the control plane.

use serde::{Deserialize, Serialize};

use crate::envelope::Envelope;

/// Path of the long-poll for jobs.
pub const PATH_POLL: &str = "/v1/agent/jobs/next";
/// Path prefix of result upload: `/v1/agent/jobs/{id}/result`.
pub const PATH_JOBS: &str = "/v1/agent/jobs/";
/// Path of the heartbeat.
pub const PATH_HEARTBEAT: &str = "/v1/agent/heartbeat";
/// Path of certificate renewal (over mutual TLS, with the current certificate).
pub const PATH_RENEW: &str = "/v1/agent/renew";
/// Path of the key-set statements: `GET /v1/agent/key-sets?after=N`.
pub const PATH_KEY_SETS: &str = "/v1/agent/key-sets";
/// Most statements in one [`KeySetsResponse`]; an agent further behind asks again.
pub const MAX_KEY_SETS_PER_RESPONSE: usize = 32;
/// Path of enrolment (the only path served without a client certificate).
pub const PATH_ENROLL: &str = "/v1/enroll";
/// ALPN protocol a client offers to reach the enrolment endpoint without a client certificate.
pub const ALPN_ENROLL: &[u8] = b"outpost-enroll/1";

/// One job handed to an agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveredJob {
    /// The control plane's id for the job (also inside the signed payload).
    pub job_id: String,
    /// The signed envelope.
    pub envelope: Envelope,
}

/// Answer of the long-poll: zero or more jobs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PollResponse {
    /// Jobs now leased to the caller.
    pub jobs: Vec<DeliveredJob>,
    /// The control plane's current key-set version. An agent that holds an older one
    /// fetches the statements from [`PATH_KEY_SETS`] before it verifies these jobs.
    #[serde(default)]
    pub key_set_version: u64,
    /// Jobs leased to the caller that a user asked to stop: the agent cancels their
    /// queries on the database server and reports them `cancelled`. Ids of jobs the
    /// agent is not running are ignored. Repeated until the job reports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cancel: Vec<String>,
}

/// Answer of [`PATH_KEY_SETS`]: the statements after the asked version, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeySetsResponse {
    /// At most [`MAX_KEY_SETS_PER_RESPONSE`].
    pub statements: Vec<crate::keyset::SignedKeySet>,
}

/// Heartbeat body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Heartbeat {
    /// The agent's version.
    pub version: String,
    /// Names of the connections the agent offers (names only).
    #[serde(default)]
    pub connections: Vec<String>,
    /// How far the agent's audit log reached, signed by the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_head: Option<crate::audit_head::AuditHead>,
    /// The agent is stopping cleanly (its last heartbeat): offline from now on, until it
    /// connects again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stopping: bool,
}

/// Body of a renewal request: a CSR for a new key pair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenewRequest {
    /// PKCS#10 CSR, PEM, for a key generated for this renewal.
    pub csr_pem: String,
}

/// Answer of a renewal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenewResponse {
    /// The new client certificate, PEM.
    pub certificate_pem: String,
    /// Its expiry, unix seconds.
    pub not_after: i64,
}

/// A JSON error body, on both listeners: a stable code and a human message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Stable short name.
    pub code: String,
    /// One line for a human.
    pub message: String,
}
