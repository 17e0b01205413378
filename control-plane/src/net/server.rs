//! The two listeners and their TLS.
//!
//! - **Agent listener**: TLS 1.3/1.2 (AEAD suites only, aws-lc-rs). A client must present
//!   a certificate signed by our CA *at the handshake*; without one the handshake fails.
//!   The one exception is a client that offers the ALPN protocol `outpost-enroll/1`: it
//!   gets a connection without client authentication on which only `POST /v1/enroll`
//!   exists (the enrolment token is its credential).
//! - **API listener**: TLS with the same server certificate; requests carry a bearer token.
//!
//! Shutdown: stop accepting, end long-polls at once, let in-flight requests finish
//! within a grace period.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::Request;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use rustls::server::{Acceptor, WebPkiClientVerifier};
use rustls::{RootCertStore, ServerConfig};
use tokio::net::TcpListener;
use tokio_rustls::LazyConfigAcceptor;
use tracing::Instrument as _;

use crate::app::App;
use crate::store::Store;

/// Longest a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long an HTTP/1.1 client may take to send a request's headers, and how long an idle
/// keep-alive connection waits for the next request: a connection that sends nothing is
/// closed instead of holding a file descriptor for good.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections one listener holds at once; past it, accepting waits for one to close. So
/// a flood on the API cannot take the file descriptors the agent listener needs (the
/// units raise LimitNOFILE well above twice this).
const MAX_CONNECTIONS_PER_LISTENER: usize = 4096;
/// How long in-flight requests get at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Server start-up failures.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// TLS configuration.
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// Client verifier.
    #[error("client certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    /// Loading keys.
    #[error(transparent)]
    Pki(#[from] crate::crypto::pki::PkiError),
    /// Binding a port.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// The crypto provider of the whole workspace.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

struct TlsConfigs {
    agent: Arc<ServerConfig>,
    enrol: Arc<ServerConfig>,
    api: Arc<ServerConfig>,
}

fn tls_configs(app: &App) -> Result<TlsConfigs, ServeError> {
    let (chain, key) = crate::crypto::pki::load_server_identity(&app.cfg.data_dir)?;
    let mut roots = RootCertStore::empty();
    roots.add(app.ca.cert_der().clone())?;
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider()).build()?;
    let versions: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13, &rustls::version::TLS12];

    let mut agent = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain.clone(), key.clone_key())?;
    agent.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];

    let mut enrol = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)?
        .with_no_client_auth()
        .with_single_cert(chain.clone(), key.clone_key())?;
    enrol.alpn_protocols = vec![outpost_protocol::wire::ALPN_ENROLL.to_vec()];

    let mut api = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    api.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsConfigs { agent: Arc::new(agent), enrol: Arc::new(enrol), api: Arc::new(api) })
}

/// Bound listeners, so callers learn the real ports before serving.
#[derive(Debug)]
pub struct Listeners {
    /// Agent listener.
    pub agent: TcpListener,
    /// API listener.
    pub api: TcpListener,
}

/// Binds both listeners.
pub async fn bind(agent: SocketAddr, api: SocketAddr) -> Result<Listeners, ServeError> {
    let a = TcpListener::bind(agent).await.map_err(|source| ServeError::Bind { addr: agent, source })?;
    let b = TcpListener::bind(api).await.map_err(|source| ServeError::Bind { addr: api, source })?;
    Ok(Listeners { agent: a, api: b })
}

/// Serves until `app.shutdown` is cancelled, then drains.
pub async fn serve(app: Arc<App>, listeners: Listeners) -> Result<(), ServeError> {
    let tls = Arc::new(tls_configs(&app)?);
    let retention = {
        let app = Arc::clone(&app);
        tokio::spawn(async move { app.retention_loop().await })
    };
    let schedules = {
        let app = Arc::clone(&app);
        tokio::spawn(async move { app.schedule_loop().await })
    };
    let graceful = Arc::new(GracefulShutdown::new());
    let agent_loop = accept_loop(Arc::clone(&app), listeners.agent, Arc::clone(&tls), Arc::clone(&graceful), true)
        .instrument(tracing::info_span!("agent_listener"));
    let api_loop = accept_loop(Arc::clone(&app), listeners.api, Arc::clone(&tls), Arc::clone(&graceful), false)
        .instrument(tracing::info_span!("api_listener"));
    tokio::join!(agent_loop, api_loop);
    retention.abort();
    schedules.abort();
    let graceful = Arc::try_unwrap(graceful).unwrap_or_else(|_| GracefulShutdown::new());
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("All connections closed."),
        () = tokio::time::sleep(SHUTDOWN_GRACE) => tracing::warn!("Shutdown grace period over; closing remaining connections."),
    }
    Ok(())
}

/// How long a connection whose certificate is refused is kept for its answers.
const REFUSED_CONNECTION_LIFETIME: Duration = Duration::from_secs(60);

/// Answers every request on the connection with `refusal` (403 and its reason), for at
/// most [`REFUSED_CONNECTION_LIFETIME`]: the agent hears why it is refused instead of
/// seeing its connections closed without a word.
async fn refuse_all<I>(
    io: I,
    builder: auto::Builder<TokioExecutor>,
    watcher: hyper_util::server::graceful::Watcher,
    refusal: crate::http::ApiError,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (status, code, message) = (refusal.status, refusal.code, refusal.message);
    let svc = service_fn(move |_req: Request<Incoming>| {
        let answer = crate::http::ApiError::new(status, code, message.clone()).into_response();
        async move { Ok::<_, std::convert::Infallible>(answer) }
    });
    let _ = tokio::time::timeout(
        REFUSED_CONNECTION_LIFETIME,
        watcher.watch(builder.serve_connection(io, svc).into_owned()),
    )
    .await;
}

/// Feeds the systemd watchdog every `every` while the store answers a read within that
/// time; stops (and says why, once) when it does not, so that systemd restarts the
/// service (`Restart=on-failure`). Ends at shutdown.
pub async fn feed_watchdog(app: Arc<App>, every: Duration) {
    let mut failing = false;
    loop {
        match tokio::time::timeout(every, app.store.active_signing_key()).await {
            Ok(Ok(_)) => {
                if failing {
                    tracing::warn!("The store answers again; feeding the systemd watchdog.");
                }
                failing = false;
                outpost_common::sdnotify::watchdog_ping();
            }
            outcome if !failing => {
                failing = true;
                let error = match outcome {
                    Ok(Err(e)) => e.to_string(),
                    _ => format!("no answer within {} ms", every.as_millis()),
                };
                tracing::error!(%error, "The store does not answer; no longer feeding the systemd watchdog.");
            }
            _ => {}
        }
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = app.shutdown.cancelled() => return,
        }
    }
}

async fn accept_loop(
    app: Arc<App>,
    listener: TcpListener,
    tls: Arc<TlsConfigs>,
    graceful: Arc<GracefulShutdown>,
    agent_side: bool,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS_PER_LISTENER));
    loop {
        let slot = tokio::select! {
            s = Arc::clone(&slots).acquire_owned() => match s {
                Ok(s) => s,
                Err(_) => return,
            },
            () = app.shutdown.cancelled() => return,
        };
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "Accept failed.");
                    // Back off briefly on resource exhaustion (EMFILE) instead of spinning.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = app.shutdown.cancelled() => return,
        };
        let _ = tcp.set_nodelay(true);
        let app = Arc::clone(&app);
        let tls = Arc::clone(&tls);
        let watcher = graceful.watcher();
        let span = tracing::debug_span!("conn", %peer);
        tokio::spawn(
            async move {
                let result = tokio::time::timeout(
                    HANDSHAKE_TIMEOUT,
                    LazyConfigAcceptor::new(Acceptor::default(), tcp),
                )
                .await;
                let start = match result {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => return tracing::debug!(error = %e, "TLS ClientHello refused."),
                    Err(_) => return tracing::debug!("TLS handshake timed out."),
                };
                let wants_enrol = start.client_hello().alpn().is_some_and(|mut protos| {
                    protos.any(|p| p == outpost_protocol::wire::ALPN_ENROLL)
                });
                let config = match (agent_side, wants_enrol) {
                    (true, true) => Arc::clone(&tls.enrol),
                    (true, false) => Arc::clone(&tls.agent),
                    (false, _) => Arc::clone(&tls.api),
                };
                let stream = match tokio::time::timeout(
                    HANDSHAKE_TIMEOUT,
                    start.into_stream(config),
                )
                .await
                {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => return tracing::debug!(error = %e, "TLS handshake failed."),
                    Err(_) => return tracing::debug!("TLS handshake timed out."),
                };
                let io = TokioIo::new(stream);
                // Held until the connection ends.
                let _slot = slot;
                // The protocol TLS agreed on (ALPN), not a guess from the first bytes: a
                // connection that sends nothing must meet the header timeout, which does not
                // run while hyper waits to tell HTTP/1.1 from HTTP/2.
                let h2 = io.inner().get_ref().1.alpn_protocol() == Some(b"h2".as_slice());
                let mut builder = auto::Builder::new(TokioExecutor::new());
                builder.http1().timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT);
                let builder = if h2 { builder.http2_only() } else { builder.http1_only() };
                if !agent_side {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let app = Arc::clone(&app);
                        async move {
                            Ok::<_, std::convert::Infallible>(crate::api::handle(app, peer, req).await)
                        }
                    });
                    let _ = watcher
                        .watch(builder.serve_connection(io, svc).into_owned())
                        .await;
                } else if wants_enrol {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let app = Arc::clone(&app);
                        async move {
                            Ok::<_, std::convert::Infallible>(
                                crate::net::agent_api::handle_enrol(app, peer, req).await,
                            )
                        }
                    });
                    let _ = watcher
                        .watch(builder.serve_connection(io, svc).into_owned())
                        .await;
                } else {
                    // One parse of the verified client certificate: name, issue time, expiry.
                    let facts =
                        io.inner().get_ref().1.peer_certificates().and_then(|c| c.first()).and_then(crate::crypto::pki::agent_cert_facts);
                    let Some(facts) = facts else {
                        return tracing::warn!("Client certificate has no valid agent name; connection closed.");
                    };
                    let agent = facts.name;
                    // The certificate chains to our CA; its name must also be an enrolled agent.
                    // Revocation and the certificate's age against the latest enrolment are
                    // checked again on every request, inside the store call that serves it.
                    let pool = match app.store.agent(agent.clone()).await {
                        Ok(Some(rec)) => {
                            // Admission is by name, so a certificate issued before the name's
                            // latest enrolment (e.g. one stolen, then revoked, then the name
                            // re-enrolled) must not come back to life.
                            if facts.issued_at < rec.enrolled_at {
                                tracing::warn!(
                                    agent_id = %agent,
                                    issued_at = facts.issued_at,
                                    enrolled_at = rec.enrolled_at,
                                    "Certificate issued before the agent's latest enrolment refused; its requests are answered 403."
                                );
                                let refusal = crate::http::ApiError::new(
                                    hyper::StatusCode::FORBIDDEN,
                                    "certificate_superseded",
                                    "this agent was enrolled again since this certificate was issued; it is no longer \
                                     accepted: enrol this host again (outpost-agent enroll --token TOKEN) or stop it",
                                );
                                return refuse_all(io, builder, watcher, refusal).await;
                            }
                            if rec.revoked_at.is_some() {
                                // Served so that it hears why: every request is answered 403 agent_revoked.
                                tracing::warn!(agent_id = %agent, "Revoked agent connected; its requests are refused.");
                            }
                            rec.pool
                        }
                        Ok(None) => {
                            tracing::warn!(agent_id = %agent, "Certificate names no enrolled agent; its requests are answered 403.");
                            // Told why, so that its log says what to do (a control plane
                            // restored from a backup older than the enrolment, say).
                            let refusal = crate::http::ApiError::new(
                                hyper::StatusCode::FORBIDDEN,
                                "unknown_agent",
                                "this control plane has no enrolled agent of this certificate's name (never enrolled \
                                 here, or the control plane was restored from a backup made before the enrolment): \
                                 enrol this host again with outpost-agent enroll --token TOKEN",
                            );
                            return refuse_all(io, builder, watcher, refusal).await;
                        }
                        Err(e) => return tracing::error!(error = %e, "Cannot look up the agent; connection closed."),
                    };
                    let revoked = app.hub.revocation(&agent);
                    // A TLS connection outlives the handshake's certificate check; end it when
                    // the certificate expires, so an agent must renew to stay connected.
                    let expires_in =
                        Duration::from_secs(u64::try_from(facts.not_after - app.clock.now()).unwrap_or(0));
                    let peer = Arc::new(crate::store::AgentPeer {
                        name: agent,
                        cert_issued_at: facts.issued_at,
                        pool,
                        public_key: Arc::from(facts.public_key),
                    });
                    let agent_for_log = peer.name.clone();
                    tracing::debug!(agent_id = %peer.name, "Agent connected.");
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let app = Arc::clone(&app);
                        let peer = Arc::clone(&peer);
                        async move { Ok::<_, std::convert::Infallible>(crate::net::agent_api::handle(app, peer, req).await) }
                    });
                    tokio::select! {
                        _ = watcher.watch(builder.serve_connection(io, svc).into_owned()) => {}
                        () = revoked.cancelled() => tracing::info!("Agent revoked; connection cut."),
                        () = tokio::time::sleep(expires_in) => tracing::info!(agent_id = %agent_for_log, "Agent certificate expired; connection closed."),
                    }
                }
            }
            .instrument(span),
        );
    }
}
