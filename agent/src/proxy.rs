//! Reaching the control plane through an HTTP `CONNECT` proxy.
//!
//! The proxy comes from agent.yaml (`proxy.url`) or, when that is unset and
//! `proxy.from_environment` is true (the default), from `HTTPS_PROXY`/`https_proxy`;
//! `NO_PROXY`/`no_proxy` and `proxy.no_proxy` list hosts reached directly. Only `http://`
//! proxies are supported: the agent sends `CONNECT host:port`, and once the proxy answers
//! 2xx, TLS (mutual TLS after enrolment) runs end to end through the tunnel. The proxy
//! sees the control plane's host and port and ciphertext, nothing else.
//!
//! Basic authentication: the user name is in agent.yaml; the password is a vault entry
//! (`outpost-agent credentials set NAME`, named by `proxy.password_credential`). A
//! password inside `HTTPS_PROXY`'s user info is accepted too (a common convention). It is
//! never logged: [`Proxy`]'s `Debug` and `Display` show `user:[REDACTED]@host:port`.

use std::net::IpAddr;
use std::time::Duration;

use outpost_protocol::encoding::b64_encode;
use secrecy::{ExposeSecret as _, SecretString};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// Longest proxy response head read.
const MAX_HEAD: usize = 16 * 1024;

/// A proxy to use.
#[derive(Clone)]
pub struct Proxy {
    /// `host:port` of the proxy.
    pub addr: String,
    /// User name and password for basic authentication.
    pub auth: Option<(String, SecretString)>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self}")
    }
}

impl std::fmt::Display for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.auth {
            Some((user, _)) => write!(f, "http://{user}:[REDACTED]@{}", self.addr),
            None => write!(f, "http://{}", self.addr),
        }
    }
}

/// A parse error in a proxy URL or a `NO_PROXY` entry (never holding the password).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ProxyConfigError(pub String);

/// Why the proxy's password could not be read from the vault.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// The vault could not be opened or read.
    #[error(transparent)]
    Vault(#[from] crate::vault::VaultError),
    /// The vault holds no entry of that name.
    #[error("no such credential in the vault; store it with: outpost-agent credentials set {name}")]
    Missing {
        /// The entry asked for.
        name: String,
    },
}

/// Why a tunnel could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// TCP to the proxy failed.
    #[error("cannot connect to the proxy {proxy}: {reason}")]
    Connect {
        /// Proxy address.
        proxy: String,
        /// Why.
        reason: String,
    },
    /// The proxy answered something other than 2xx.
    #[error("the proxy {proxy} refused the tunnel to {target}: {status}{hint}")]
    Refused {
        /// Proxy address.
        proxy: String,
        /// The target.
        target: String,
        /// The status line.
        status: String,
        /// What to do.
        hint: &'static str,
    },
    /// The proxy's answer was not HTTP or too long.
    #[error("the proxy {proxy} sent an invalid answer to CONNECT {target}: {reason}")]
    Protocol {
        /// Proxy address.
        proxy: String,
        /// The target.
        target: String,
        /// Why.
        reason: String,
    },
}

/// Parses `http://[user[:password]@]host[:port][/]`; port defaults to 80 (3128 is
/// common but a URL without a port means 80).
pub fn parse_url(url: &str) -> Result<Proxy, ProxyConfigError> {
    let bad = |m: &str| ProxyConfigError(format!("proxy URL {:?}: {m}", redact_url(url)));
    let rest = match url.split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
        Some((scheme, _)) => return Err(bad(&format!("scheme {scheme:?} is not supported; use http://"))),
        None => url,
    };
    let rest = rest.trim_end_matches('/');
    if rest.contains('/') || rest.contains('?') || rest.contains('#') {
        return Err(bad("a proxy URL has no path"));
    }
    let (userinfo, hostport) = match rest.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, rest),
    };
    let addr = if hostport.starts_with('[') {
        if hostport.contains("]:") {
            hostport.to_owned()
        } else {
            format!("{hostport}:80")
        }
    } else {
        match hostport.rsplit_once(':') {
            Some((_, port)) if port.parse::<u16>().is_ok() => hostport.to_owned(),
            Some(_) => return Err(bad("the port is not a number")),
            None => format!("{hostport}:80"),
        }
    };
    if hostport.is_empty() || addr.starts_with(':') {
        return Err(bad("no host"));
    }
    let auth = match userinfo {
        None => None,
        Some(u) => {
            let (user, pass) = u.split_once(':').unwrap_or((u, ""));
            Some((percent_decode(user), SecretString::from(percent_decode(pass))))
        }
    };
    Ok(Proxy { addr, auth })
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The URL with any password replaced, for messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let userinfo = &url[s + 3..at];
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{}{user}:[REDACTED]{}", &url[..s + 3], &url[at..])
        }
        (None, Some(at)) => format!("[REDACTED]{}", &url[at..]),
        _ => url.to_owned(),
    }
}

/// One `NO_PROXY` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
enum NoProxyRule {
    /// `*`: everything goes direct.
    All,
    /// A host name and its subdomains (`example.com`, `.example.com`).
    Domain(String),
    /// An address or network.
    Net(IpAddr, u8),
}

/// Hosts reached directly.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NoProxy {
    rules: Vec<(NoProxyRule, Option<u16>)>,
}

impl NoProxy {
    /// Parses a comma-separated list: host names (`.example.com` or `example.com` also
    /// match subdomains), IP addresses, CIDR networks (`10.0.0.0/8`), `*`; each with an
    /// optional `:port`.
    pub fn parse(list: &str) -> Result<Self, ProxyConfigError> {
        let mut rules = Vec::new();
        for raw in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            rules.push(parse_rule(raw)?);
        }
        Ok(Self { rules })
    }

    /// Adds the rules of `other`.
    pub fn extend(&mut self, other: NoProxy) {
        self.rules.extend(other.rules);
    }

    /// Whether `host:port` is reached directly.
    pub fn matches(&self, host: &str, port: u16) -> bool {
        let host = host.trim_start_matches('[').trim_end_matches(']').trim_end_matches('.').to_ascii_lowercase();
        let ip = host.parse::<IpAddr>().ok();
        self.rules.iter().any(|(rule, p)| {
            p.is_none_or(|p| p == port)
                && match rule {
                    NoProxyRule::All => true,
                    NoProxyRule::Domain(d) => host == *d || host.ends_with(&format!(".{d}")),
                    NoProxyRule::Net(net, bits) => ip.is_some_and(|ip| in_net(ip, *net, *bits)),
                }
        })
    }
}

fn parse_rule(raw: &str) -> Result<(NoProxyRule, Option<u16>), ProxyConfigError> {
    let bad = |m: &str| ProxyConfigError(format!("NO_PROXY entry {raw:?}: {m}"));
    if raw == "*" {
        return Ok((NoProxyRule::All, None));
    }
    if let Some((net, bits)) = raw.split_once('/') {
        let ip: IpAddr = net.parse().map_err(|_| bad("not an IP network"))?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let bits: u8 = bits.parse().ok().filter(|b| *b <= max).ok_or_else(|| bad("bad prefix length"))?;
        return Ok((NoProxyRule::Net(ip, bits), None));
    }
    if let Ok(ip) = raw.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
        return Ok((NoProxyRule::Net(ip, if ip.is_ipv4() { 32 } else { 128 }), None));
    }
    let (host, port) = match raw.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') || h.ends_with(']') => {
            (h, Some(p.parse::<u16>().map_err(|_| bad("the port is not a number"))?))
        }
        _ => (raw, None),
    };
    if let Ok(ip) = host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
        return Ok((NoProxyRule::Net(ip, if ip.is_ipv4() { 32 } else { 128 }), port));
    }
    let d = host.trim_start_matches("*.").trim_start_matches('.').trim_end_matches('.').to_ascii_lowercase();
    if d.is_empty() {
        return Err(bad("empty host"));
    }
    Ok((NoProxyRule::Domain(d), port))
}

fn in_net(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = if bits == 0 { 0 } else { u32::MAX << (32 - u32::from(bits)) };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = if bits == 0 { 0 } else { u128::MAX << (128 - u32::from(bits)) };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// Which proxy, if any, to use for which host.
#[derive(Debug, Clone, Default)]
pub struct Route {
    proxy: Option<Proxy>,
    no_proxy: NoProxy,
}

impl Route {
    /// Direct connections only.
    pub fn direct() -> Self {
        Self::default()
    }

    /// The proxy for `addr` (`host:port`), or `None` to connect directly.
    pub fn proxy_for(&self, addr: &str) -> Option<&Proxy> {
        let proxy = self.proxy.as_ref()?;
        match split_host_port(addr) {
            Some((host, port)) if self.no_proxy.matches(host, port) => None,
            _ => Some(proxy),
        }
    }

    /// Resolves agent.yaml's `proxy` section and the environment (`env` looks a variable
    /// up); `password` reads a vault entry.
    pub fn resolve(
        section: &crate::config::ProxySection,
        env: &dyn Fn(&str) -> Option<String>,
        password: &dyn Fn(&str) -> Result<SecretString, CredentialError>,
    ) -> Result<Self, ProxyConfigError> {
        let var = |upper: &str, lower: &str| env(lower).or_else(|| env(upper)).filter(|v| !v.trim().is_empty());
        let mut no_proxy = NoProxy::default();
        for e in &section.no_proxy {
            no_proxy.extend(NoProxy::parse(e)?);
        }
        let mut proxy = match (&section.url, section.from_environment) {
            (Some(url), _) => Some(parse_url(url)?),
            (None, true) => var("HTTPS_PROXY", "https_proxy")
                .map(|u| parse_url(&u).map_err(|e| ProxyConfigError(format!("HTTPS_PROXY: {}", e.0))))
                .transpose()?,
            (None, false) => None,
        };
        if section.from_environment {
            if let Some(list) = var("NO_PROXY", "no_proxy") {
                no_proxy.extend(NoProxy::parse(&list).map_err(|e| ProxyConfigError(format!("NO_PROXY: {}", e.0)))?);
            }
        }
        if let (Some(p), Some(user)) = (proxy.as_mut(), &section.username) {
            let pass = match &section.password_credential {
                Some(name) => {
                    password(name).map_err(|e| ProxyConfigError(format!("proxy.password_credential {name:?}: {e}")))?
                }
                None => SecretString::from(String::new()),
            };
            p.auth = Some((user.clone(), pass));
        }
        Ok(Self { proxy, no_proxy })
    }
}

/// The route for `cfg` with this process's environment, reading a proxy password from
/// the vault (opened with `prompt` if it is passphrase-protected).
pub fn route_for(
    cfg: &crate::config::AgentConfig,
    prompt: crate::vault::PassphrasePrompt<'_>,
) -> Result<Route, ProxyConfigError> {
    let password = |name: &str| -> Result<SecretString, CredentialError> {
        let vault = crate::vault::Vault::open(&cfg.state_dir, &cfg.vault_keys(), prompt)?;
        vault.get(name)?.ok_or_else(|| CredentialError::Missing { name: name.to_owned() })
    };
    let route = Route::resolve(&cfg.proxy, &|k| std::env::var(k).ok(), &password)?;
    match &route.proxy {
        Some(p) => {
            tracing::info!(proxy = %p, "Reaching the control plane through an HTTP proxy (unless NO_PROXY matches).")
        }
        None => tracing::debug!("No proxy configured; connecting directly."),
    }
    Ok(route)
}

/// A prompt for processes without a terminal.
pub fn no_prompt(_: bool) -> Result<SecretString, crate::vault::VaultError> {
    Err(crate::vault::VaultError::NoKey(format!(
        "the vault is passphrase-protected and there is no terminal; provide the systemd credential {}",
        crate::vault::SYSTEMD_PASSPHRASE
    )))
}

/// Splits `host:port` (IPv6 in brackets).
pub fn split_host_port(addr: &str) -> Option<(&str, u16)> {
    let (host, port) = addr.rsplit_once(':')?;
    Some((host, port.parse().ok()?))
}

/// Opens a tunnel to `target` (`host:port`) through `proxy`.
pub async fn connect(proxy: &Proxy, target: &str, timeout: Duration) -> Result<TcpStream, ProxyError> {
    let shown = proxy.addr.clone();
    let mut tcp = tokio::time::timeout(timeout, TcpStream::connect(&proxy.addr))
        .await
        .map_err(|_| ProxyError::Connect { proxy: shown.clone(), reason: "timed out".into() })?
        .map_err(|e| ProxyError::Connect { proxy: shown.clone(), reason: e.to_string() })?;
    let _ = tcp.set_nodelay(true);
    let mut req = zeroize::Zeroizing::new(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n"));
    if let Some((user, pass)) = &proxy.auth {
        let creds = zeroize::Zeroizing::new(format!("{user}:{}", pass.expose_secret()));
        req.push_str(&format!("Proxy-Authorization: Basic {}\r\n", b64_encode(creds.as_bytes())));
    }
    req.push_str("\r\n");
    let protocol = |reason: String| ProxyError::Protocol { proxy: shown.clone(), target: target.to_owned(), reason };
    let head = tokio::time::timeout(timeout, async {
        tcp.write_all(req.as_bytes()).await.map_err(|e| protocol(e.to_string()))?;
        // Read byte by byte up to the blank line: after a 2xx the proxy sends nothing
        // until we speak, and nothing past the head may be swallowed.
        let mut head = Vec::with_capacity(256);
        while !head.ends_with(b"\r\n\r\n") {
            if head.len() >= MAX_HEAD {
                return Err(protocol(format!("response head longer than {MAX_HEAD} bytes")));
            }
            let b = tcp.read_u8().await.map_err(|e| protocol(format!("connection closed: {e}")))?;
            head.push(b);
        }
        Ok(head)
    })
    .await
    .map_err(|_| protocol("no answer in time".into()))??;
    let text = String::from_utf8_lossy(&head);
    let status_line = text.lines().next().unwrap_or_default().trim().to_owned();
    let code = status_line
        .strip_prefix("HTTP/1.")
        .and_then(|r| r.get(2..5))
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| protocol(format!("not an HTTP status line: {status_line:?}")))?;
    if (200..300).contains(&code) {
        return Ok(tcp);
    }
    let hint = match code {
        // tinyproxy answers a CONNECT with bad credentials 401, others 407.
        401 | 407 if proxy.auth.is_some() => {
            " (check proxy.username and the password stored under proxy.password_credential)"
        }
        401 | 407 => " (the proxy wants credentials: set proxy.username and proxy.password_credential)",
        403 => " (the proxy's policy does not allow this destination or port; ask its administrators)",
        _ => "",
    };
    let status: String = status_line.chars().filter(|c| !c.is_control()).take(200).collect();
    Err(ProxyError::Refused { proxy: shown, target: target.to_owned(), status, hint })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_with_defaults_and_never_show_the_password() {
        let p = parse_url("http://bob:s%40cret@proxy.corp:3128/").expect("url");
        assert_eq!(p.addr, "proxy.corp:3128");
        let (user, pass) = p.auth.clone().expect("auth");
        assert_eq!((user.as_str(), pass.expose_secret()), ("bob", "s@cret"));
        assert!(!format!("{p:?} {p}").contains("cret"));
        assert_eq!(parse_url("proxy.corp").expect("bare").addr, "proxy.corp:80");
        assert_eq!(parse_url("http://[::1]:3128").expect("v6").addr, "[::1]:3128");
        let err = parse_url("https://bob:pw@proxy:443").expect_err("https");
        assert!(err.0.contains("use http://") && !err.0.contains("pw@"), "{err}");
        assert!(parse_url("http://proxy:port").is_err());
        assert_eq!(redact_url("http://bob:pw@p:1"), "http://bob:[REDACTED]@p:1");
    }

    #[test]
    fn no_proxy_matches_domains_suffixes_addresses_networks_and_ports() {
        let np =
            NoProxy::parse("example.com, .corp.internal, 10.0.0.0/8, 192.168.1.5, localhost:7443, ::1").expect("list");
        assert!(np.matches("example.com", 443));
        assert!(np.matches("api.example.com", 443));
        assert!(!np.matches("badexample.com", 443));
        assert!(np.matches("cp.corp.internal", 1));
        assert!(np.matches("10.20.30.40", 8443));
        assert!(!np.matches("11.0.0.1", 8443));
        assert!(np.matches("192.168.1.5", 1));
        assert!(np.matches("localhost", 7443));
        assert!(!np.matches("localhost", 7444));
        assert!(np.matches("[::1]", 7443));
        assert!(NoProxy::parse("*").expect("all").matches("anything", 1));
        assert!(!NoProxy::default().matches("anything", 1));
        assert!(NoProxy::parse("10.0.0.0/33").is_err());
    }

    /// A proxy password missing from the vault says which entry and how to store it.
    #[test]
    fn a_missing_proxy_password_names_the_entry_and_the_command_that_stores_it() {
        let section = crate::config::ProxySection {
            url: Some("http://proxy.corp:3128".into()),
            username: Some("bob".into()),
            password_credential: Some("proxy-pw".into()),
            no_proxy: vec![],
            from_environment: false,
        };
        let missing = |name: &str| Err(CredentialError::Missing { name: name.to_owned() });
        let err = Route::resolve(&section, &|_| None, &missing).expect_err("no password");
        assert_eq!(
            err.0,
            "proxy.password_credential \"proxy-pw\": no such credential in the vault; store it with: \
             outpost-agent credentials set proxy-pw"
        );
        let found = |_: &str| Ok(SecretString::from("pw".to_owned()));
        let route = Route::resolve(&section, &|_| None, &found).expect("route");
        assert!(route.proxy_for("cp.example.com:443").is_some_and(|p| p.auth.is_some()));
    }
}
