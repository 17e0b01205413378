//! A small HTTPS client for the control plane's API, trusting only its CA.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context as _, Result};
use bytes::Bytes;
use http::{HeaderMap, Method, Request};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// A response.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
}

impl HttpResponse {
    /// Body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Body as JSON.
    pub fn json(&self) -> Result<serde_json::Value> {
        serde_json::from_slice(&self.body).with_context(|| format!("not JSON: {}", self.text()))
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
    }
}

/// TLS config trusting exactly the CA in `ca_path`.
pub fn tls_config(ca_path: &Path) -> Result<Arc<rustls::ClientConfig>> {
    let pem = std::fs::read(ca_path).with_context(|| format!("reading {}", ca_path.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(&pem)?)?;
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// API client; `token` is sent as a bearer token when set.
#[derive(Clone)]
pub struct Api {
    addr: String,
    token: Option<String>,
    tls: Arc<rustls::ClientConfig>,
    headers: Vec<(String, String)>,
}

/// One kept-alive HTTP/1.1 connection.
pub struct Conn {
    sender: http1::SendRequest<Full<Bytes>>,
    api: Api,
}

impl Api {
    /// A client for `addr` trusting the CA at `ca_path`.
    pub fn new(addr: &str, ca_path: &Path, token: Option<String>) -> Result<Self> {
        Ok(Self { addr: addr.to_owned(), token, tls: tls_config(ca_path)?, headers: Vec::new() })
    }

    /// The same client with another token (or none).
    pub fn with_token(&self, token: Option<&str>) -> Self {
        Self { token: token.map(str::to_owned), ..self.clone() }
    }

    /// The same client sending one more header on every request (e.g. a cookie).
    pub fn with_header(&self, name: &str, value: &str) -> Self {
        let mut c = self.clone();
        c.headers.push((name.to_owned(), value.to_owned()));
        c
    }

    /// Opens a connection for several requests.
    pub async fn connect(&self) -> Result<Conn> {
        let tcp = TcpStream::connect(&self.addr).await?;
        tcp.set_nodelay(true)?;
        let tls = TlsConnector::from(Arc::clone(&self.tls)).connect(ServerName::try_from("localhost")?, tcp).await?;
        let (sender, conn) = http1::handshake(TokioIo::new(tls)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Conn { sender, api: self.clone() })
    }

    /// One request on a fresh connection.
    pub async fn request(&self, method: Method, path: &str, body: Option<Vec<u8>>) -> Result<HttpResponse> {
        self.connect().await?.request(method, path, body).await
    }

    /// GET.
    pub async fn get(&self, path: &str) -> Result<HttpResponse> {
        self.request(Method::GET, path, None).await
    }

    /// POST JSON.
    pub async fn post_json(&self, path: &str, body: &serde_json::Value) -> Result<HttpResponse> {
        self.request(Method::POST, path, Some(serde_json::to_vec(body)?)).await
    }

    /// POST raw bytes as JSON content.
    pub async fn post_raw(&self, path: &str, body: &[u8]) -> Result<HttpResponse> {
        self.request(Method::POST, path, Some(body.to_vec())).await
    }
}

impl Conn {
    /// Sends one request on this connection.
    #[allow(clippy::disallowed_methods)] // `collect` runs on a `Limited` body
    pub async fn request(&mut self, method: Method, path: &str, body: Option<Vec<u8>>) -> Result<HttpResponse> {
        let mut b = Request::builder().method(method).uri(path).header(http::header::HOST, "localhost");
        if let Some(t) = &self.api.token {
            b = b.header(http::header::AUTHORIZATION, format!("Bearer {t}"));
        }
        for (k, v) in &self.api.headers {
            b = b.header(k.as_str(), v.as_str());
        }
        if body.is_some() {
            b = b.header(http::header::CONTENT_TYPE, "application/json");
        }
        let req = b.body(Full::new(Bytes::from(body.unwrap_or_default())))?;
        self.sender.ready().await?;
        let res = self.sender.send_request(req).await?;
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let body = http_body_util::Limited::new(res.into_body(), 64 * 1024 * 1024)
            .collect()
            .await
            .map_err(|e| anyhow::anyhow!("reading body: {e}"))?
            .to_bytes();
        Ok(HttpResponse { status, headers, body })
    }

    /// GET.
    pub async fn get(&mut self, path: &str) -> Result<HttpResponse> {
        self.request(Method::GET, path, None).await
    }

    /// POST JSON.
    pub async fn post_json(&mut self, path: &str, body: &serde_json::Value) -> Result<HttpResponse> {
        self.request(Method::POST, path, Some(serde_json::to_vec(body)?)).await
    }
}

/// The password the API tests give the users they create.
pub const TEST_PASSWORD: &str = "correct horse battery staple";

/// `method path` with an optional JSON body, whatever the status.
pub async fn call(api: &Api, method: &str, path: &str, body: Option<&serde_json::Value>) -> Result<HttpResponse> {
    let m = Method::from_bytes(method.as_bytes())?;
    api.request(m, path, body.map(serde_json::to_vec).transpose()?).await
}

/// [`call`] that must succeed (2xx); its JSON body, or `Null` when empty.
pub async fn ok_json(
    api: &Api,
    method: &str,
    path: &str,
    body: Option<&serde_json::Value>,
) -> Result<serde_json::Value> {
    let res = call(api, method, path, body).await?;
    anyhow::ensure!((200..300).contains(&res.status), "{method} {path}: {} {}", res.status, res.text());
    if res.body.is_empty() {
        return Ok(serde_json::Value::Null);
    }
    res.json()
}

/// Creates a user with [`TEST_PASSWORD`] and an API token for them (scopes `*`); returns
/// a client acting as them.
pub async fn user_with_token(admin: &Api, name: &str, role: &str) -> Result<Api> {
    let user = serde_json::json!({ "name": name, "role": role, "password": TEST_PASSWORD });
    ok_json(admin, "POST", "/v1/users", Some(&user)).await?;
    let token = serde_json::json!({ "name": "test", "scopes": ["*"], "user": name });
    let t = ok_json(admin, "POST", "/v1/tokens", Some(&token)).await?;
    Ok(admin.with_token(Some(t["token"].as_str().context("token")?)))
}

/// Shares `agent`'s `connection` with `user` (as `admin`), so they may run jobs on it.
pub async fn share_connection(admin: &Api, agent: &str, connection: &str, user: &str) -> Result<()> {
    let share = serde_json::json!({ "agent": agent, "connection": connection, "user": user });
    ok_json(admin, "POST", "/v1/shares", Some(&share)).await.map(|_| ())
}

/// A console session of `user` (password [`TEST_PASSWORD`]): the API's sign-in, its
/// cookie sent with every request of the returned client.
pub async fn signed_in(api: &Api, user: &str) -> Result<Api> {
    let anon = api.with_token(None);
    let body = serde_json::json!({ "user": user, "password": TEST_PASSWORD });
    let res = call(&anon, "POST", "/v1/sessions", Some(&body)).await?;
    anyhow::ensure!(res.status == 201, "sign-in of {user}: {}", res.status);
    let cookie = res.header("set-cookie").context("cookie")?.split(';').next().context("pair")?.to_owned();
    Ok(anon.with_header("cookie", &cookie))
}
