//! The audit report as text a reviewer reads and signs.

use super::{Report, Severity};

/// The report as text: facts first, then findings.
pub fn render_text(r: &Report) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let _ = writeln!(o, "Outpost agent configuration audit");
    let _ = writeln!(o, "made at:         {} on host {}", r.generated_at, r.host);
    let _ = writeln!(
        o,
        "agent:           version {}, executable sha256:{}",
        r.agent_version,
        r.agent_sha256.as_deref().unwrap_or("unreadable")
    );
    let _ = writeln!(
        o,
        "config:          {} (sha256:{})",
        r.config.display(),
        r.config_sha256.as_deref().unwrap_or("unreadable")
    );
    let _ = writeln!(o, "state dir:       {}", r.state_dir.display());
    match &r.control_plane {
        Some(cp) => {
            let _ = writeln!(o, "control plane:   {} (certificate name {})", cp.address, cp.server_name);
            let _ = writeln!(o, "pinned CA:       sha256:{}", cp.ca_sha256);
            let _ = writeln!(o, "agent name:      {} (certificate until {})", cp.agent, cp.certificate_not_after);
            if let Some(p) = &cp.pool {
                let _ = writeln!(o, "pool:            {p} (also runs jobs addressed to pool:{p})");
            }
        }
        None => {
            let _ = writeln!(o, "control plane:   not enrolled");
        }
    }
    let _ = writeln!(
        o,
        "job-signing keys: {} (pinned: {:?}; from enrolment: {:?})",
        r.key_trust, r.pinned_keys, r.enrolment_keys
    );
    let _ = writeln!(o, "master key:      {}", r.master_key);
    let _ = writeln!(o, "result cache:    {}", r.cache);
    let _ = writeln!(o, "audit log:       {}", r.audit_log);
    let _ = writeln!(o, "metrics:         {}", r.metrics);
    let _ = writeln!(o, "connections:");
    for c in &r.connections {
        let _ = writeln!(o, "  {} ({}): {}", c.name, c.kind, c.target);
        let _ = writeln!(
            o,
            "    tls {}, password {}, timeout {} s, cache max age {} s",
            c.tls,
            c.password_credential.as_deref().map_or("none".to_owned(), |p| format!("from vault entry {p:?}")),
            c.query_timeout_secs,
            c.cache_max_age_secs
        );
        if c.allow_privileged {
            let _ = writeln!(o, "    allow_privileged: a role with privileges beyond reading is accepted");
        }
        let e = &c.egress;
        let _ = writeln!(
            o,
            "    may leave: {} | raw tables {} | max rows {} | max points {} | max size {} | errors {}",
            e.allowed_kinds.join(", "),
            if e.allow_raw_table { "yes" } else { "no" },
            e.max_rows,
            e.max_points,
            bytes(u64::try_from(e.max_bytes).unwrap_or(u64::MAX)),
            e.errors
        );
        if !e.mask.is_empty() {
            let _ = writeln!(o, "    masked: {} (in conditions: {})", e.mask.join("; "), e.masked_predicates);
        }
    }
    if let Some(checks) = &r.connection_checks {
        let _ = writeln!(o, "databases reached (as a job would):");
        for c in checks {
            let _ = writeln!(o, "  {}", crate::health::describe(c).replace('\n', "\n  "));
        }
    }
    if r.findings.is_empty() {
        let _ = writeln!(o, "findings: none");
    } else {
        let _ = writeln!(o, "findings ({}):", r.findings.len());
        for f in &r.findings {
            let sev = match f.severity {
                Severity::High => "HIGH",
                Severity::Medium => "MEDIUM",
                Severity::Low => "LOW",
            };
            let _ = writeln!(o, "  [{sev}] {}: {}", f.subject, f.message);
        }
    }
    o
}

/// A size as people write it: `1 GiB`, `512 KiB`, `1.5 MiB`, `900 B`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut unit = 0;
    let mut whole = n;
    while whole >= 1024 && unit < UNITS.len() - 1 {
        whole /= 1024;
        unit += 1;
    }
    let scale = 1u64 << (10 * unit);
    if n.is_multiple_of(scale) {
        format!("{} {}", n / scale, UNITS[unit])
    } else {
        // One decimal, rounded down: a limit is never shown larger than it is.
        let tenths = n.saturating_mul(10) / scale;
        format!("{}.{} {}", tenths / 10, tenths % 10, UNITS[unit])
    }
}

/// A duration as people say it: `45 s`, `16 min`, `7 h 59 min`, `89 d 23 h`.
pub fn duration(secs: i64) -> String {
    let secs = secs.max(0);
    match secs {
        0..=59 => format!("{secs} s"),
        60..=3599 => format!("{} min", secs / 60),
        3600..=86_399 => format!("{} h {} min", secs / 3600, secs % 3600 / 60),
        _ => format!("{} d {} h", secs / 86_400, secs % 86_400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_and_durations_read_as_people_write_them() {
        assert_eq!(super::bytes(1_073_741_824), "1 GiB");
        assert_eq!(super::bytes(1 << 20), "1 MiB");
        assert_eq!(super::bytes(1_572_864), "1.5 MiB");
        assert_eq!(super::bytes(900), "900 B");
        assert_eq!(super::bytes(1_048_575), "1023.9 KiB");
        assert_eq!(super::duration(45), "45 s");
        assert_eq!(super::duration(16 * 60 + 5), "16 min");
        assert_eq!(super::duration(7 * 3600 + 59 * 60), "7 h 59 min");
        assert_eq!(super::duration(90 * 86_400 - 3600), "89 d 23 h");
    }
}
