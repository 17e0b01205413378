//! Certificate renewal: when, and the loop that renews before the certificate runs out.

#[allow(clippy::wildcard_imports)]
use super::*;

/// When to renew: at two thirds of the certificate's lifetime.
pub fn renew_at(issued_at: i64, not_after: i64) -> i64 {
    issued_at + (not_after - issued_at).max(0) * 2 / 3
}

/// Longest the renewal loop waits before it reads the wall clock again. Its sleeps run on
/// the monotonic clock, which stands still while the host is suspended and ignores a
/// corrected system clock; cut into steps, a wait never overshoots the due time by more.
pub(super) const RECHECK_EVERY: Duration = Duration::from_secs(60);

/// Renews the certificate at two thirds of its lifetime (by [`Ctx::clock`]), with a new
/// key pair each time, over the current mutual-TLS identity; jobs in flight are not
/// disturbed. A failed renewal is retried with backoff, and said to be fatal once the
/// certificate has expired. Returns once
/// `shutdown` is cancelled, at any wait and during a request, but never halfway through
/// saving a new identity.
pub(super) async fn renewal_loop(ctx: Arc<Ctx>, shutdown: CancellationToken) {
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(60));
    loop {
        let (issued_at, not_after) = {
            let e = ctx.enrolment.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            (e.cert_issued_at, e.not_after)
        };
        let wait = renew_at(issued_at, not_after) - ctx.clock.now();
        if wait > 0 {
            let step = Duration::from_secs(u64::try_from(wait).unwrap_or(0)).min(RECHECK_EVERY);
            tokio::select! {
                () = tokio::time::sleep(step) => continue,
                () = shutdown.cancelled() => return,
            }
        }
        // Asking may be cut short by a shutdown (nothing is written yet); once the new
        // certificate is in hand, installing it is not: it finishes, then the loop returns.
        let asked = tokio::select! {
            biased;
            () = shutdown.cancelled() => return,
            r = request(&ctx) => r,
        };
        let renewed = match asked {
            Ok(new) => install(&ctx, new).await,
            Err(e) => Err(e),
        };
        match renewed {
            Ok(new_not_after) => {
                backoff.reset();
                tracing::info!(not_after = %rfc3339(new_not_after), "Certificate renewed with a new key pair.");
            }
            Err(e) => {
                let delay = backoff.next_delay();
                if ctx.clock.now() >= not_after {
                    tracing::error!(
                        error = %e,
                        expired_at = %rfc3339(not_after),
                        "Certificate expired before it could be renewed; enrol again: outpost-agent enroll --token TOKEN"
                    );
                } else {
                    tracing::warn!(
                        error = %e,
                        retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(0),
                        "Certificate renewal failed; retrying."
                    );
                }
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = shutdown.cancelled() => return,
                }
            }
        }
    }
}

/// A new key pair and the certificate the control plane issued for it, checked but not
/// yet saved.
pub(super) struct Issued {
    key: rcgen::KeyPair,
    cert: rustls_pki_types::CertificateDer<'static>,
    res: outpost_protocol::wire::RenewResponse,
}

/// Why a renewal failed (logged, then retried with backoff). Each variant keeps its cause
/// as its source and prints it as it was printed before (`transparent`).
#[derive(Debug, thiserror::Error)]
pub(super) enum RenewalError {
    /// The new key pair or its certificate request could not be made.
    #[error(transparent)]
    Key(#[from] rcgen::Error),
    /// The request could not be written.
    #[error(transparent)]
    Encode(serde_json::Error),
    /// The control plane could not be reached.
    #[error(transparent)]
    Transport(#[from] crate::transport::TransportError),
    /// The control plane refused (its status and answer, as sent).
    #[error("control plane answered {status}: {body}")]
    Refused {
        /// The status.
        status: StatusCode,
        /// The answer's text.
        body: String,
    },
    /// The answer was not a renewal response.
    #[error(transparent)]
    Decode(serde_json::Error),
    /// The certificate in the answer is not PEM.
    #[error("certificate: {0}")]
    Pem(rustls_pki_types::pem::Error),
    /// The certificate is not for this agent's name and new key.
    #[error(transparent)]
    Certificate(#[from] crate::enrol::EnrolError),
    /// The renewed identity could not be saved.
    #[error(transparent)]
    Save(#[from] crate::identity::IdentityError),
}

/// Asks the control plane for a certificate over a new key pair and checks it; writes
/// nothing, so it may be dropped at any await.
pub(super) async fn request(ctx: &Ctx) -> Result<Issued, RenewalError> {
    use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};
    use rustls_pki_types::pem::PemObject as _;
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, ctx.agent.as_str());
    params.distinguished_name = dn;
    let csr_pem = params.serialize_request(&key).and_then(|c| c.pem())?;
    let body = serde_json::to_vec(&outpost_protocol::wire::RenewRequest { csr_pem }).map_err(RenewalError::Encode)?;
    let (status, bytes) =
        ctx.transport.send(Method::POST, outpost_protocol::wire::PATH_RENEW, Some(Bytes::from(body))).await?;
    if status != StatusCode::OK {
        return Err(RenewalError::Refused { status, body: String::from_utf8_lossy(&bytes).into_owned() });
    }
    let res: outpost_protocol::wire::RenewResponse = serde_json::from_slice(&bytes).map_err(RenewalError::Decode)?;
    let cert =
        rustls_pki_types::CertificateDer::from_pem_slice(res.certificate_pem.as_bytes()).map_err(RenewalError::Pem)?;
    crate::enrol::check_certificate(&cert, &ctx.agent, key.public_key_raw())?;
    Ok(Issued { key, cert, res })
}

/// Saves the renewed identity and switches the transport and the audit signer to it;
/// the new certificate's expiry.
pub(super) async fn install(ctx: &Ctx, issued: Issued) -> Result<i64, RenewalError> {
    let Issued { key, cert, res } = issued;
    let key_pem = zeroize::Zeroizing::new(key.serialize_pem());
    let mut enrolment = ctx.enrolment.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
    enrolment.not_after = res.not_after;
    enrolment.cert_issued_at = ctx.clock.now();
    identity::save_renewal(&ctx.live().cfg.state_dir, &key_pem, &res.certificate_pem, &enrolment)?;
    *ctx.enrolment.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = enrolment.clone();
    let key_der = rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let signer = crate::audit::Signer::from_pkcs8(key_der.secret_der());
    let id = Identity { enrolment, cert, key: key_der, ca: ctx.ca.clone() };
    let config = transport::mtls_config(&id)?;
    // New connections present the new certificate first, then checkpoints and audit heads
    // are signed by its key (`audit verify` names each key): the control plane checks a
    // head against the certificate of the connection it came on.
    ctx.transport.set_config(config).await;
    match signer {
        Ok(signer) => {
            if let Err(e) = ctx.audit.set_signer(signer).await {
                tracing::error!(error = %e, "Audit checkpoints keep the previous key.");
            }
        }
        Err(e) => tracing::error!(error = %e, "The renewed key cannot sign audit checkpoints."),
    }
    Ok(res.not_after)
}
