//! One connection in the audit report: its target, TLS and egress policy as a reviewer
//! reads them, and the findings about it (a policy wider than the top-level one, errors
//! sent in full, masks usable in conditions, raw tables, privileged roles, TLS off).

use super::{ConnectionView, EgressView, Severity};
use crate::config::{AgentConfig, ConnectionConfig, ConnectionKind, DbTls};
use crate::policy::EgressPolicy;

impl EgressView {
    fn of(p: &EgressPolicy) -> Self {
        Self {
            allowed_kinds: p.allowed_kinds.iter().map(|k| kind_name(*k)).collect(),
            allow_raw_table: p.allow_raw_table,
            max_rows: p.max_rows,
            max_points: p.max_points,
            max_bytes: p.max_bytes,
            mask: p.mask.iter().map(|m| format!("{} -> {}", m.column.as_str(), mask_name(m.with))).collect(),
            errors: p.errors.name(),
            masked_predicates: match p.masked_predicates {
                crate::policy::MaskedPredicates::Allow => "allow",
                crate::policy::MaskedPredicates::Refuse => "refuse",
            },
        }
    }
}

fn kind_name(k: crate::policy::RenderKind) -> String {
    serde_json::to_value(k).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

fn mask_name(m: crate::policy::MaskWith) -> String {
    serde_json::to_value(m).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

/// The view of connection `name`, adding its findings through `add`; `top` is the
/// top-level egress policy it is compared with.
pub(super) fn view(
    cfg: &AgentConfig,
    top: &EgressPolicy,
    name: &str,
    c: &ConnectionConfig,
    add: &mut impl FnMut(Severity, &str, String),
) -> ConnectionView {
    let subject = format!("connections.{name}");
    let policy = cfg.egress_policy(name);
    for (field, widened) in widening(top, &policy) {
        add(
            Severity::Medium,
            &format!("{subject}.egress.{field}"),
            format!("widens the top-level egress policy: {widened}"),
        );
    }
    if policy.errors == crate::scrub::ErrorsMode::Full {
        let (severity, masks) = if policy.mask.is_empty() {
            (Severity::Medium, "")
        } else {
            (Severity::High, ", the values of masked columns included")
        };
        add(
            severity,
            &format!("{subject}.egress.errors"),
            format!(
                "errors: full sends database error messages as they are; they can quote values from rows{masks} \
                 (the default, scrubbed, removes every fragment that is not in the job's SQL)"
            ),
        );
    }
    if !policy.mask.is_empty() && policy.masked_predicates == crate::policy::MaskedPredicates::Allow {
        add(
            Severity::Low,
            &format!("{subject}.egress.masked_predicates"),
            "masked columns may be used in conditions (WHERE, joins, GROUP BY, ORDER BY): which rows match \
             reveals their values one comparison at a time; set masked_predicates: refuse, or grant the \
             agent's role only the columns it needs"
                .into(),
        );
    }
    if policy.allow_raw_table && policy.allowed_kinds.contains(&crate::policy::RenderKind::Table) {
        add(
            Severity::Low,
            &format!("{subject}.egress"),
            format!("raw rows may leave as tables (up to {} rows); set allow_raw_table: false to allow only charts and scalars", policy.max_rows),
        );
    }
    let (target, tls) = match c.kind {
        ConnectionKind::Sqlite => {
            let file = c.path.as_deref().map(|p| cfg.in_state_dir(p)).unwrap_or_default();
            (file.display().to_string(), "n/a".to_owned())
        }
        ConnectionKind::Postgres | ConnectionKind::Mysql => {
            let host = c.host.clone().unwrap_or_default();
            let default_port = if c.kind == ConnectionKind::Postgres { 5432 } else { 3306 };
            let target = redact(&format!(
                "{}@{host}:{}/{}",
                c.user.as_deref().unwrap_or("?"),
                c.port.unwrap_or(default_port),
                c.database.as_deref().unwrap_or("?")
            ));
            if c.allow_privileged {
                add(
                    Severity::High,
                    &format!("{subject}.allow_privileged"),
                    "the agent uses this connection even if its database role is a superuser, may read or \
                     write server files, run programs, signal other sessions, create roles or write tables: a \
                     job's function could then do so inside the read-only transaction. Connect as a \
                     least-privilege role (docs/DATABASES.md) and remove allow_privileged"
                        .into(),
                );
            }
            let tls = match c.tls {
                DbTls::VerifyFull => {
                    if let Some(ca) = &c.ca_file {
                        if std::fs::metadata(ca).is_err() {
                            add(
                                Severity::High,
                                &format!("{subject}.ca_file"),
                                format!("{} cannot be read", ca.display()),
                            );
                        }
                    }
                    "verify_full".to_owned()
                }
                DbTls::Disable => {
                    let local = is_loopback(&host);
                    add(
                        if local { Severity::Low } else { Severity::High },
                        &format!("{subject}.tls"),
                        if local {
                            format!("TLS is off to {host} (this host): fine for a local server")
                        } else {
                            format!(
                                "TLS is off to {host}: the password and every row cross the network in clear; \
                                 use tls: verify_full with the server's CA in ca_file"
                            )
                        },
                    );
                    "disable".to_owned()
                }
            };
            (target, tls)
        }
    };
    ConnectionView {
        name: name.to_owned(),
        kind: format!("{:?}", c.kind).to_ascii_lowercase(),
        target,
        tls,
        password_credential: c.password_credential.clone(),
        query_timeout_secs: cfg.query_timeout(name, None).as_secs(),
        cache_max_age_secs: cfg.cache_cap(name),
        allow_privileged: c.allow_privileged,
        egress: EgressView::of(&policy),
    }
}

/// `text` with the password of any `scheme://user:password@` replaced by `***`.
pub(super) fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail.find(['/', ' ', '"', '\'']).unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rsplit_once('@').and_then(|(userinfo, host)| Some((userinfo.split_once(':')?.0, host))) {
            Some((user, host)) => {
                out.push_str(user);
                out.push_str(":***@");
                out.push_str(host);
            }
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// Fields where `own` lets more out than `top`: (field, "what").
fn widening(top: &EgressPolicy, own: &EgressPolicy) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    let extra: Vec<String> = own.allowed_kinds.difference(&top.allowed_kinds).map(|k| kind_name(*k)).collect();
    if !extra.is_empty() {
        out.push(("allowed_kinds", format!("adds {}", extra.join(", "))));
    }
    if own.allow_raw_table && !top.allow_raw_table {
        out.push(("allow_raw_table", "allows raw tables".to_owned()));
    }
    for (field, a, b) in [
        ("max_rows", top.max_rows, own.max_rows),
        ("max_points", top.max_points, own.max_points),
        ("max_bytes", top.max_bytes, own.max_bytes),
    ] {
        if b > a {
            out.push((field, format!("{b} instead of {a}")));
        }
    }
    out
}

fn is_loopback(host: &str) -> bool {
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback()) || host.starts_with('/')
}
