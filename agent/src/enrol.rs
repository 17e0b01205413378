//! `outpost-agent enroll`: trade a one-time token for a client certificate.
//!
//! The private key is generated here and only a CSR leaves the host. The control plane
//! is trusted only if its CA matches the SHA-256 pin inside the token. Every way the
//! token can be refused gets its own message.

use std::path::Path;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use outpost_protocol::enrol::{EnrolRequest, EnrolResponse, EnrolmentToken, TokenFormatError};
use outpost_protocol::wire::{ErrorBody, PATH_ENROLL};
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

use crate::identity::{self, Enrolment};
use crate::transport::{self, TransportError};

/// Enrolment failures, one per thing the operator can do something about.
#[derive(Debug, thiserror::Error)]
pub enum EnrolError {
    /// The token string is not a valid token.
    #[error(transparent)]
    Token(#[from] TokenFormatError),
    /// The CA pin did not match, or TLS failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// Already used.
    #[error("enrolment refused: this token was already used. Create a new one with: outpost-control-plane enrollment-token create --agent {agent}")]
    TokenUsed {
        /// Agent name.
        agent: String,
    },
    /// Expired.
    #[error("enrolment refused: this token has expired. Create a new one with: outpost-control-plane enrollment-token create --agent {agent}")]
    TokenExpired {
        /// Agent name.
        agent: String,
    },
    /// Unknown or altered.
    #[error("enrolment refused: the control plane does not recognise this token ({message}); it may have been altered or belong to another control plane")]
    TokenInvalid {
        /// Server's message.
        message: String,
    },
    /// Any other refusal.
    #[error("enrolment refused by the control plane ({status}): {code}: {message}")]
    Refused {
        /// HTTP status.
        status: StatusCode,
        /// Error code.
        code: String,
        /// Message.
        message: String,
    },
    /// The answer does not fit what we asked for.
    #[error("the control plane's answer is invalid: {0}")]
    BadResponse(String),
    /// Key generation or CSR.
    #[error("cannot create the agent key or CSR: {0}")]
    Key(#[from] rcgen::Error),
    /// Writing the identity.
    #[error(transparent)]
    Identity(#[from] identity::IdentityError),
}

/// What enrolment produced.
#[derive(Debug)]
pub struct Enrolled {
    /// The record written.
    pub enrolment: Enrolment,
}

/// Enrols with `token_text`, writing the identity into `state_dir`.
/// `address_override` replaces the token's address (e.g. behind NAT).
pub async fn enroll(
    token_text: &str,
    state_dir: &Path,
    address_override: Option<&str>,
    route: &crate::proxy::Route,
) -> Result<Enrolled, EnrolError> {
    let token = EnrolmentToken::decode(token_text)?;
    let addr = address_override.unwrap_or(&token.addr).to_owned();

    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, token.agent.as_str());
    params.distinguished_name = dn;
    let csr_pem = params.serialize_request(&key)?.pem()?;

    let body = serde_json::to_vec(&EnrolRequest {
        token_id: token.id.clone(),
        secret: token.secret.clone(),
        agent: token.agent.clone(),
        csr_pem,
    })
    .map_err(|e| EnrolError::BadResponse(e.to_string()))?;
    let body = zeroize::Zeroizing::new(body);
    let req = Request::post(format!("https://{addr}{PATH_ENROLL}"))
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::HOST, addr.as_str())
        .body(Full::new(Bytes::copy_from_slice(&body)))
        .map_err(|e| EnrolError::BadResponse(e.to_string()))?;
    let (status, bytes) = transport::enrol_request(route, &addr, &token.server_name, &token.ca_sha256, req).await?;
    if status != StatusCode::OK {
        let err: ErrorBody = serde_json::from_slice(&bytes)
            .unwrap_or(ErrorBody { code: "unknown".into(), message: String::from_utf8_lossy(&bytes).into_owned() });
        return Err(match err.code.as_str() {
            "token_used" => EnrolError::TokenUsed { agent: token.agent.clone() },
            "token_expired" => EnrolError::TokenExpired { agent: token.agent.clone() },
            "token_unknown" | "token_altered" | "token_wrong_agent" => {
                EnrolError::TokenInvalid { message: err.message }
            }
            _ => EnrolError::Refused { status, code: err.code, message: err.message },
        });
    }
    let res: EnrolResponse = serde_json::from_slice(&bytes).map_err(|e| EnrolError::BadResponse(e.to_string()))?;
    let ca = CertificateDer::from_pem_slice(res.ca_pem.as_bytes())
        .map_err(|e| EnrolError::BadResponse(format!("ca_pem: {e}")))?;
    if outpost_protocol::encoding::sha256_hex(&ca) != token.ca_sha256.to_ascii_lowercase() {
        return Err(EnrolError::BadResponse("ca_pem does not match the pin in the token".into()));
    }
    let cert = CertificateDer::from_pem_slice(res.certificate_pem.as_bytes())
        .map_err(|e| EnrolError::BadResponse(format!("certificate_pem: {e}")))?;
    check_certificate(&cert, &token.agent, key.public_key_raw())?;
    let mut keys = outpost_protocol::TrustedKeys::new();
    for k in &res.signing_keys {
        keys.insert_b64(&k.public_key, Some(&k.key_id)).map_err(|e| EnrolError::BadResponse(e.to_string()))?;
    }
    if keys.is_empty() {
        return Err(EnrolError::BadResponse("no job-signing key was sent".into()));
    }
    let enrolment = Enrolment {
        agent: token.agent.clone(),
        address: addr,
        server_name: token.server_name.clone(),
        ca_sha256: token.ca_sha256.to_ascii_lowercase(),
        enrolled_at: outpost_protocol::unix_now(),
        not_after: res.not_after,
        cert_issued_at: outpost_protocol::unix_now(),
        signing_keys: res.signing_keys,
        key_set_version: res.key_set_version,
        pool: res.pool,
    };
    let key_pem = zeroize::Zeroizing::new(key.serialize_pem());
    identity::save(state_dir, &key_pem, &res.certificate_pem, &res.ca_pem, &enrolment)?;
    // Keys learned under an earlier enrolment give way to the ones just received.
    crate::keys::forget(state_dir).map_err(|source| {
        let path = state_dir.join(crate::keys::KEY_SET_FILE);
        identity::IdentityError::from(outpost_common::fsutil::FileError::Io { path, source })
    })?;
    Ok(Enrolled { enrolment })
}

/// The issued certificate must name us and carry our public key.
pub(crate) fn check_certificate(
    cert: &CertificateDer<'_>,
    agent: &str,
    our_public_key: &[u8],
) -> Result<(), EnrolError> {
    let (_, parsed) =
        x509_parser::parse_x509_certificate(cert).map_err(|e| EnrolError::BadResponse(format!("certificate: {e}")))?;
    let cn = parsed.subject().iter_common_name().next().and_then(|c| c.as_str().ok()).unwrap_or_default();
    if cn != agent {
        return Err(EnrolError::BadResponse(format!("certificate is for {cn:?}, not {agent:?}")));
    }
    if parsed.public_key().subject_public_key.data.as_ref() != our_public_key {
        return Err(EnrolError::BadResponse("certificate does not carry this agent's public key".into()));
    }
    Ok(())
}
