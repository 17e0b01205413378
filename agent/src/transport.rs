//! Talking to the control plane: TLS client configs and one long-lived HTTP/2
//! connection over mutual TLS, re-established on demand.
//!
//! The agent only ever dials out. Its TLS trusts exactly one CA, the control plane's,
//! pinned by SHA-256 at enrolment: at enrolment by [`PinnedCaVerifier`] (the presented
//! chain must contain a CA whose hash equals the pin, and the server certificate must
//! chain to it for the expected name; there is no trust-on-first-use and no switch to
//! turn verification off), afterwards by an ordinary WebPKI verifier whose only root is
//! that CA. TLS 1.3 is preferred, 1.2 allowed, AEAD suites only (aws-lc-rs defaults).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::identity::Identity;

/// TCP connect plus TLS handshake must finish within this.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest response body read from the control plane.
pub const MAX_RESPONSE: usize = 8 * 1024 * 1024;

/// Transport failures.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// Could not reach the control plane.
    #[error("cannot connect to the control plane at {addr}: {reason}")]
    Connect {
        /// Address dialled.
        addr: String,
        /// Why.
        reason: String,
    },
    /// The control plane's CA does not match the pin.
    #[error("the control plane at {addr} presented a CA whose SHA-256 does not match the pin in the enrolment token; refusing to talk to it")]
    PinMismatch {
        /// Address dialled.
        addr: String,
    },
    /// The TLS handshake failed.
    #[error("TLS handshake with {addr} failed: {reason}")]
    Handshake {
        /// Address dialled.
        addr: String,
        /// Why.
        reason: String,
    },
    /// The HTTP proxy did not open a tunnel.
    #[error(transparent)]
    Proxy(#[from] crate::proxy::ProxyError),
    /// HTTP-level failure (connection dropped mid-request and the like).
    #[error("request to the control plane failed: {0}")]
    Http(String),
    /// Bad TLS configuration (our certificate or key).
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

const VERSIONS: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13, &rustls::version::TLS12];

/// Verifies the server against a CA that is taken from the presented chain only if its
/// SHA-256 equals the pin.
#[derive(Debug)]
pub struct PinnedCaVerifier {
    pin: String,
    mismatch: Arc<AtomicBool>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for PinnedCaVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(ca) = intermediates.iter().find(|c| outpost_protocol::encoding::sha256_hex(c) == self.pin) else {
            self.mismatch.store(true, Ordering::SeqCst);
            return Err(rustls::Error::InvalidCertificate(rustls::CertificateError::ApplicationVerificationFailure));
        };
        let mut roots = RootCertStore::empty();
        roots.add(ca.clone().into_owned())?;
        let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&self.provider))
            .build()
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        inner.verify_server_cert(end_entity, &[], server_name, ocsp, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

fn server_name(name: &str) -> Result<ServerName<'static>, TransportError> {
    ServerName::try_from(name.to_owned())
        .map_err(|e| TransportError::Http(format!("control plane name {name:?} is not a valid DNS name or IP: {e}")))
}

async fn dial(addr: &str, route: &crate::proxy::Route) -> Result<TcpStream, TransportError> {
    if let Some(proxy) = route.proxy_for(addr) {
        return Ok(crate::proxy::connect(proxy, addr, CONNECT_TIMEOUT).await?);
    }
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| TransportError::Connect { addr: addr.to_owned(), reason: "timed out".into() })?
        .map_err(|e| TransportError::Connect { addr: addr.to_owned(), reason: e.to_string() })?;
    let _ = tcp.set_nodelay(true);
    Ok(tcp)
}

/// Sends one HTTP/1.1 request to the enrolment endpoint, trusting only a CA with the given pin.
pub async fn enrol_request(
    route: &crate::proxy::Route,
    addr: &str,
    name: &str,
    ca_pin: &str,
    req: Request<Full<Bytes>>,
) -> Result<(StatusCode, Bytes), TransportError> {
    let mismatch = Arc::new(AtomicBool::new(false));
    let verifier =
        PinnedCaVerifier { pin: ca_pin.to_ascii_lowercase(), mismatch: Arc::clone(&mismatch), provider: provider() };
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)?
        .dangerous() // not weaker: the custom verifier pins the CA by hash and then runs WebPKI checks
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    config.alpn_protocols = vec![outpost_protocol::wire::ALPN_ENROLL.to_vec()];
    let tcp = dial(addr, route).await?;
    let tls =
        tokio::time::timeout(CONNECT_TIMEOUT, TlsConnector::from(Arc::new(config)).connect(server_name(name)?, tcp))
            .await
            .map_err(|_| TransportError::Handshake { addr: addr.to_owned(), reason: "timed out".into() })?;
    let tls = match tls {
        Ok(t) => t,
        Err(_) if mismatch.load(Ordering::SeqCst) => return Err(TransportError::PinMismatch { addr: addr.to_owned() }),
        Err(e) => return Err(TransportError::Handshake { addr: addr.to_owned(), reason: e.to_string() }),
    };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| TransportError::Http(e.to_string()))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let res = sender.send_request(req).await.map_err(|e| TransportError::Http(e.to_string()))?;
    read_response(res).await
}

#[allow(clippy::disallowed_methods)] // `collect` runs on a `Limited` body: the agent's one capped body read
async fn read_response(res: Response<hyper::body::Incoming>) -> Result<(StatusCode, Bytes), TransportError> {
    let status = res.status();
    let body = Limited::new(res.into_body(), MAX_RESPONSE)
        .collect()
        .await
        .map_err(|e| TransportError::Http(format!("reading response: {e}")))?
        .to_bytes();
    Ok((status, body))
}

/// Builds the mutual-TLS client config from the enrolled identity.
pub fn mtls_config(identity: &Identity) -> Result<Arc<ClientConfig>, TransportError> {
    let mut roots = RootCertStore::empty();
    roots.add(identity.ca.clone())?;
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)?
        .with_root_certificates(roots)
        .with_client_auth_cert(vec![identity.cert.clone()], identity.key.clone_key())?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// One HTTP/2 connection to the control plane, shared by the long-poll, result uploads
/// and heartbeats, and redialled when it breaks.
pub struct Transport {
    addr: String,
    route: crate::proxy::Route,
    name: ServerName<'static>,
    config: std::sync::RwLock<Arc<ClientConfig>>,
    sender: tokio::sync::Mutex<Option<http2::SendRequest<Full<Bytes>>>>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport").field("addr", &self.addr).finish_non_exhaustive()
    }
}

impl Transport {
    /// A transport to `addr` (through a proxy when `route` says so), expecting
    /// certificate name `name`.
    pub fn new(
        addr: String,
        route: crate::proxy::Route,
        name: &str,
        config: Arc<ClientConfig>,
    ) -> Result<Self, TransportError> {
        Ok(Self {
            addr,
            route,
            name: server_name(name)?,
            config: std::sync::RwLock::new(config),
            sender: tokio::sync::Mutex::new(None),
        })
    }

    /// The address dialled.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    async fn connect(&self) -> Result<http2::SendRequest<Full<Bytes>>, TransportError> {
        let tcp = dial(&self.addr, &self.route).await?;
        let tls = tokio::time::timeout(
            CONNECT_TIMEOUT,
            TlsConnector::from(self.current_config()).connect(self.name.clone(), tcp),
        )
        .await
        .map_err(|_| TransportError::Handshake { addr: self.addr.clone(), reason: "timed out".into() })?
        .map_err(|e| TransportError::Handshake { addr: self.addr.clone(), reason: e.to_string() })?;
        let (sender, conn) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .keep_alive_interval(Duration::from_secs(15))
            .keep_alive_timeout(Duration::from_secs(10))
            .keep_alive_while_idle(true)
            .handshake(TokioIo::new(tls))
            .await
            .map_err(|e| TransportError::Handshake { addr: self.addr.clone(), reason: e.to_string() })?;
        let addr = self.addr.clone();
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(peer = %addr, error = %e, "Control-plane connection closed.");
            }
        });
        match self.route.proxy_for(&self.addr) {
            Some(p) => {
                tracing::info!(peer = %self.addr, proxy = %p, "Connected to the control plane over mutual TLS, through the proxy.")
            }
            None => tracing::info!(peer = %self.addr, "Connected to the control plane over mutual TLS."),
        }
        Ok(sender)
    }

    async fn sender(&self) -> Result<http2::SendRequest<Full<Bytes>>, TransportError> {
        let mut guard = self.sender.lock().await;
        if let Some(s) = guard.as_ref() {
            if !s.is_closed() {
                return Ok(s.clone());
            }
        }
        *guard = None;
        let s = self.connect().await?;
        *guard = Some(s.clone());
        Ok(s)
    }

    fn current_config(&self) -> Arc<ClientConfig> {
        Arc::clone(&self.config.read().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// Switches to a new client identity (after renewal). Requests in flight finish on the
    /// current connection; the next request dials with the new certificate.
    pub async fn set_config(&self, config: Arc<ClientConfig>) {
        *self.config.write().unwrap_or_else(std::sync::PoisonError::into_inner) = config;
        self.reset().await;
    }

    /// Drops the current connection so that the next request dials again.
    pub async fn reset(&self) {
        *self.sender.lock().await = None;
    }

    /// Sends a request (path and query relative to the control plane) and reads the answer.
    pub async fn send(
        &self,
        method: http::Method,
        path_and_query: &str,
        body: Option<Bytes>,
    ) -> Result<(StatusCode, Bytes), TransportError> {
        let mut sender = self.sender().await?;
        let uri = format!("https://{}{}", self.addr, path_and_query);
        let mut builder = Request::builder().method(method).uri(uri);
        if body.is_some() {
            builder = builder.header(http::header::CONTENT_TYPE, "application/json");
        }
        let req = builder.body(Full::new(body.unwrap_or_default())).map_err(|e| TransportError::Http(e.to_string()))?;
        let result = async {
            sender.ready().await.map_err(|e| TransportError::Http(e.to_string()))?;
            let res = sender.send_request(req).await.map_err(|e| TransportError::Http(e.to_string()))?;
            read_response(res).await
        }
        .await;
        if result.is_err() {
            self.reset().await;
        }
        result
    }
}
