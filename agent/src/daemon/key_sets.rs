//! Job-signing key sets: the trusted keys, fetched and checked when the poll announces a newer set.

#[allow(clippy::wildcard_imports)]
use super::*;

pub(super) fn read_keys(ctx: &Ctx) -> std::sync::RwLockReadGuard<'_, KeyTrust> {
    ctx.keys.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Brings the trusted keys up to the control plane's key-set `version`: fetches the
/// statements after the one held and applies them in order, each verified against the
/// keys trusted at that moment. Every change, and every refusal, is an audit record; a
/// refusal leaves the keys as they were (jobs signed by a key not trusted are rejected).
pub(super) async fn sync_key_set(ctx: &Ctx, version: u64) {
    use std::sync::atomic::Ordering;
    let (wants, mode, held) = {
        let k = read_keys(ctx);
        (k.wants(version), k.mode(), k.version())
    };
    if !wants {
        if mode == crate::config::KeyTrustMode::PinnedOnly
            && version > held
            && version > ctx.refused_key_set.swap(version, Ordering::SeqCst)
        {
            tracing::warn!(
                key_set_version = version,
                "The control plane published key set {version}; key_trust is pinned_only, so it is not used. \
                 Jobs signed by keys missing from trusted_keys will be rejected."
            );
            audit_key_set(ctx, "refused", version, Some("pinned_only".into()), None).await;
        }
        return;
    }
    loop {
        let held = read_keys(ctx).version();
        let path = format!("{PATH_KEY_SETS}?after={held}");
        let statements = match ctx.transport.send(Method::GET, &path, None).await {
            Ok((StatusCode::OK, body)) => match serde_json::from_slice::<KeySetsResponse>(&body) {
                Ok(r) => r.statements,
                Err(e) => {
                    tracing::warn!(error = %e, "Control plane sent an invalid key-set answer.");
                    return;
                }
            },
            Ok((status, body)) => {
                tracing::warn!(%status, body = %String::from_utf8_lossy(&body), "Key-set fetch refused.");
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "Key-set fetch failed; the next poll tries again.");
                return;
            }
        };
        if statements.is_empty() {
            return;
        }
        for statement in &statements {
            let offered = statement.unverified().map(|s| s.version).unwrap_or(0);
            let result = ctx.keys.write().unwrap_or_else(std::sync::PoisonError::into_inner).apply(statement);
            match result {
                Ok(applied) => {
                    tracing::info!(
                        key_set_version = applied.version,
                        added = ?applied.added,
                        removed = ?applied.removed,
                        signed_by = ?applied.signed_by,
                        "Job-signing keys updated from a signed key set."
                    );
                    audit_key_set(ctx, "accepted", applied.version, None, Some(applied)).await;
                }
                Err(e) => {
                    if offered > ctx.refused_key_set.swap(offered, Ordering::SeqCst) {
                        tracing::error!(
                            key_set_version = offered,
                            reason = e.code(),
                            error = %e,
                            "Refused a key-set update; the trusted keys stay as they were."
                        );
                        audit_key_set(ctx, "refused", offered, Some(e.code().into()), None).await;
                    }
                    return;
                }
            }
        }
        if read_keys(ctx).version() >= version {
            return;
        }
    }
}

pub(super) async fn audit_key_set(
    ctx: &Ctx,
    verdict: &'static str,
    version: u64,
    reason: Option<String>,
    applied: Option<crate::keys::Applied>,
) {
    let applied =
        applied.unwrap_or(crate::keys::Applied { version, added: vec![], removed: vec![], signed_by: vec![] });
    let rec = KeySetRecord {
        event: "key_set",
        ts: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        verdict,
        version,
        reason,
        added: applied.added,
        removed: applied.removed,
        signed_by: applied.signed_by,
    };
    if let Err(e) = ctx.audit.record(&rec).await {
        tracing::error!(error = %e, "Audit record of a key-set change not written.");
    }
}
