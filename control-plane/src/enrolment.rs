//! Enrolment, accounted for and slowed down: the audit records of enrolment tokens and of
//! agents enrolling, renewing and re-enrolling; how an outstanding token is listed (the
//! API's handlers are in `api::enrolment`); the throttle on enrolment attempts; and
//! who a CLI user is.
//!
//! Enrolment is the one door into the agent listener without a client certificate, so it
//! is throttled twice: per source address (one host guessing many tokens) and per token
//! id (many hosts guessing one token's secret). After [`MAX_ENROL_FAILURES`] refused
//! attempts within [`ENROL_WINDOW_SECS`], further attempts get `429` with `Retry-After`
//! until the window passes. Counters are per process (per replica).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;

use http::{HeaderValue, Response, StatusCode};

use crate::app::App;
use crate::http::{ApiError, Body};
use crate::store::access::AuditEvent;
use crate::store::EnrolTokenRecord;

/// Refused enrolment attempts allowed per source address, and per token id, in a window.
pub const MAX_ENROL_FAILURES: u32 = 10;
/// The window of [`MAX_ENROL_FAILURES`], seconds.
pub const ENROL_WINDOW_SECS: i64 = 900;
/// Keys tracked at most per counter (the oldest windows are dropped first).
const MAX_TRACKED: usize = 10_000;

/// Failures per key within a fixed window that starts at the first failure.
#[derive(Debug)]
struct Counter<K> {
    failures: Mutex<HashMap<K, (u32, i64)>>,
}

impl<K> Default for Counter<K> {
    fn default() -> Self {
        Self { failures: Mutex::new(HashMap::new()) }
    }
}

impl<K: std::hash::Hash + Eq + Clone> Counter<K> {
    fn check(&self, key: &K, now: i64) -> Result<(), i64> {
        let map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        match map.get(key) {
            Some((n, start)) if *n >= MAX_ENROL_FAILURES && now - start < ENROL_WINDOW_SECS => {
                Err(ENROL_WINDOW_SECS - (now - start))
            }
            _ => Ok(()),
        }
    }

    fn failed(&self, key: &K, now: i64) {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_TRACKED {
            map.retain(|_, (_, start)| now - *start < ENROL_WINDOW_SECS);
        }
        if map.len() >= MAX_TRACKED && !map.contains_key(key) {
            return;
        }
        let e = map.entry(key.clone()).or_insert((0, now));
        if now - e.1 >= ENROL_WINDOW_SECS {
            *e = (0, now);
        }
        e.0 += 1;
    }
}

/// Refused enrolment attempts per source address and per token id.
#[derive(Debug, Default)]
pub struct EnrolThrottle {
    by_address: Counter<IpAddr>,
    by_token: Counter<String>,
}

impl EnrolThrottle {
    /// `Err(seconds to wait)` while `addr` is locked out.
    pub fn check_address(&self, addr: IpAddr, now: i64) -> Result<(), i64> {
        self.by_address.check(&addr, now)
    }

    /// `Err(seconds to wait)` while token `id` is locked out.
    pub fn check_token(&self, id: &str, now: i64) -> Result<(), i64> {
        self.by_token.check(&id.to_owned(), now)
    }

    /// Counts a refused attempt from `addr` (with token `id`, when one was given).
    pub fn failed(&self, addr: IpAddr, id: Option<&str>, now: i64) {
        self.by_address.failed(&addr, now);
        if let Some(id) = id {
            self.by_token.failed(&id.to_owned(), now);
        }
    }
}

/// A 429 answer with `Retry-After`.
pub fn too_many(wait_secs: i64, what: &str) -> Response<Body> {
    let mut res = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_attempts",
        format!("too many refused enrolment attempts {what}; try again in {wait_secs} s"),
    )
    .into_response();
    res.headers_mut().insert(http::header::RETRY_AFTER, HeaderValue::from(wait_secs.max(1)));
    res
}

/// A token id as it may appear in the audit log: the 16 hex digits tokens have, else
/// `invalid` (the id comes from whoever connected).
pub fn audit_token_id(id: &str) -> &str {
    if id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        id
    } else {
        "invalid"
    }
}

/// Records an enrolment attempt or an agent's own action: actor `agent:<name>`.
pub async fn audit_agent(
    app: &App,
    agent: &str,
    credential: String,
    action: &str,
    status: StatusCode,
    remote: Option<SocketAddr>,
    detail: serde_json::Value,
) {
    let outcome = match status.as_u16() {
        0..=399 => "ok",
        401 | 403 | 429 => "denied",
        _ => "failed",
    };
    app.record_audit(AuditEvent {
        seq: 0,
        at: app.clock.now(),
        actor: format!("agent:{agent}"),
        credential,
        action: action.into(),
        target: Some(agent.into()),
        outcome: outcome.into(),
        status: status.as_u16(),
        remote: remote.map(|r| r.ip().to_string()),
        detail: Some(detail),
    })
    .await;
}

/// A token as listed: never its secret or the secret's hash.
pub fn token_view(t: &EnrolTokenRecord) -> serde_json::Value {
    serde_json::json!({
        "id": t.id, "agent": t.agent, "pool": t.pool, "created_at": t.created_at, "expires_at": t.expires_at,
    })
}

/// The account name of this process's effective user (from `/proc/self/status` and
/// `/etc/passwd`), `uid:<n>` when it has none; never `$USER`, which anyone can set.
pub fn effective_user() -> String {
    let uid = std::fs::read_to_string("/proc/self/status").ok().and_then(|s| effective_uid(&s));
    match uid {
        Some(uid) => std::fs::read_to_string("/etc/passwd")
            .ok()
            .and_then(|p| account_name(&p, uid))
            .unwrap_or_else(|| format!("uid:{uid}")),
        None => "unknown".into(),
    }
}

/// The effective uid from `/proc/<pid>/status` text (`Uid: real effective saved fs`).
pub fn effective_uid(status: &str) -> Option<u32> {
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// The name of `uid` in `/etc/passwd` text (`name:x:uid:gid:…`); the first entry wins.
pub fn account_name(passwd: &str, uid: u32) -> Option<String> {
    passwd.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        let _password = f.next()?;
        let id: u32 = f.next()?.parse().ok()?;
        (id == uid && !name.is_empty()).then(|| name.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cli_user_is_the_effective_uids_account() {
        let status = "Name:\tx\nUid:\t1000\t0\t0\t0\nGid:\t1000\t1000\t1000\t1000\n";
        assert_eq!(effective_uid(status), Some(0), "effective, not real");
        let passwd =
            "# comment\nroot:x:0:0:root:/root:/bin/bash\nana:x:1000:1000::/home/ana:/bin/sh\nbad:x:zz:1::/:/bin/sh\n";
        assert_eq!(account_name(passwd, 0).as_deref(), Some("root"));
        assert_eq!(account_name(passwd, 1000).as_deref(), Some("ana"));
        assert_eq!(account_name(passwd, 4242), None);
        // The real process: some account or uid:N, never empty.
        let me = effective_user();
        assert!(!me.is_empty() && me != "unknown", "{me}");
    }

    #[test]
    fn the_eleventh_refusal_in_a_window_is_throttled_per_address_and_per_token() {
        let t = EnrolThrottle::default();
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().expect("ip"), "192.0.2.2".parse().expect("ip"));
        for _ in 0..MAX_ENROL_FAILURES {
            assert!(t.check_address(a, 100).is_ok());
            t.failed(a, Some("00112233aabbccdd"), 100);
        }
        assert_eq!(t.check_address(a, 100), Err(ENROL_WINDOW_SECS));
        assert_eq!(t.check_token("00112233aabbccdd", 101), Err(ENROL_WINDOW_SECS - 1));
        assert!(t.check_address(b, 100).is_ok(), "another address is not slowed");
        assert!(t.check_token("ffffffffffffffff", 100).is_ok(), "nor another token");
        assert!(t.check_address(a, 100 + ENROL_WINDOW_SECS).is_ok(), "the window passes");
        assert_eq!(audit_token_id("00112233aabbccdd"), "00112233aabbccdd");
        assert_eq!(audit_token_id("SELECT 1; --"), "invalid");
    }
}
