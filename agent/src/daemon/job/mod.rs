//! One job: verify, execute within the policy, render, audit and upload (`process` over
//! the daemon's `Ctx`); reading through the result cache is `fetch`, a catalog job is
//! `catalog`.

#[allow(clippy::wildcard_imports)]
use super::*;
use crate::audit::AuditOutcome;

mod catalog;
mod fetch;
#[cfg(test)]
mod tests;

pub(super) async fn process(ctx: &Ctx, job: DeliveredJob) {
    if !outpost_protocol::ids::is_job_id(&job.job_id) {
        // Not even a report can name such a job (its lease runs out on the control plane),
        // but the audit log still shows it arrived.
        tracing::error!(job_id = ?job.job_id, "Control plane delivered a job with an invalid id; ignored.");
        let mut rec = audit_base(&job);
        rec.job_id = job.job_id.chars().take(64).collect();
        rec.reason = Some("malformed".into());
        if let Err(e) = ctx.audit.record(&rec).await {
            tracing::error!(error = %e, "Audit record not written.");
        }
        ctx.metrics.job(&rec);
        return;
    }
    let started = Instant::now();
    let cancel = CancellationToken::new();
    ctx.running().insert(job.job_id.clone(), cancel.clone());
    let registered = RunningGuard { ctx, id: job.job_id.clone() };
    ctx.metrics.running(1);
    crate::service::status(&ctx.status_line());
    let (mut report, mut rec, upload_until) = execute(ctx, &job, cancel).await;
    let elapsed = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    report.stats.duration_ms = elapsed;
    rec.duration_ms = elapsed;
    // A failure's message leaves too: the ledger counts and hashes it like a body.
    if let Some(reason) = &report.reason {
        rec.bytes_sent = reason.message.len() as u64;
        rec.error_sha256 = Some(sha256_hex(reason.message.as_bytes()));
    }
    if let Err(e) = ctx.audit.record(&rec).await {
        tracing::error!(error = %e, "Audit record not written; the result is withheld.");
        report = ResultReport::refused(
            &job.job_id,
            JobOutcome::Failed,
            "audit_failed",
            "the agent could not write its audit log; the result was withheld".into(),
            ResultStats::default(),
        );
    }
    ctx.metrics.job(&rec);
    // How far the audit log now reaches (this job's record included), signed.
    report.audit_head = ctx.audit.head();
    upload(ctx, &report, upload_until).await;
    ctx.metrics.running(-1);
    ctx.jobs_done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    ctx.last_job_at.store(ctx.clock.now(), std::sync::atomic::Ordering::Relaxed);
    drop(registered);
    crate::service::status(&ctx.status_line());
}

/// A parameter's type as the job names it.
pub(super) fn param_type(p: &outpost_protocol::Param) -> &'static str {
    match p {
        outpost_protocol::Param::Null => "null",
        outpost_protocol::Param::Bool(_) => "bool",
        outpost_protocol::Param::Int(_) => "int",
        outpost_protocol::Param::Float(_) => "float",
        outpost_protocol::Param::Text(_) => "text",
    }
}

pub(super) fn audit_base(job: &DeliveredJob) -> AuditRecord {
    AuditRecord {
        event: "job",
        ts: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        job_id: job.job_id.clone(),
        key_id: Some(job.envelope.key_id.clone()),
        verdict: "rejected",
        outcome: AuditOutcome::Rejected,
        reason: None,
        connection: None,
        sql_sha256: None,
        requester: None,
        sql: None,
        param_types: Vec::new(),
        params: None,
        rows_read: 0,
        cache: None,
        bytes_sent: 0,
        body_sha256: None,
        error_sha256: None,
        truncated: false,
        egress: Vec::new(),
        duration_ms: 0,
    }
}

pub(super) async fn execute(
    ctx: &Ctx,
    job: &DeliveredJob,
    cancel: CancellationToken,
) -> (ResultReport, AuditRecord, i64) {
    let mut rec = audit_base(job);
    let live = ctx.live();
    let now = ctx.clock.now();
    let reject = |rec: &mut AuditRecord, code: &str, message: String| {
        tracing::warn!(reason = code, error = %message, "Job rejected.");
        rec.reason = Some(code.to_owned());
        ResultReport::refused(&job.job_id, JobOutcome::Rejected, code, message, ResultStats::default())
    };
    let pool = ctx.enrolment.lock().map(|e| e.pool.clone()).unwrap_or_default();
    let opts = VerifyOptions {
        audience: ctx.agent.clone(),
        pool,
        now,
        max_lifetime_secs: i64::try_from(live.cfg.limits.max_job_lifetime_secs.get()).unwrap_or(600),
        clock_skew_secs: i64::try_from(live.cfg.limits.clock_skew_secs.get()).unwrap_or(60),
    };
    let verified = job.envelope.verify(read_keys(ctx).trusted(), &opts);
    let verified = match verified {
        Ok(v) => v,
        Err(e) => return (reject(&mut rec, e.code(), e.to_string()), rec, now + UPLOAD_GRACE_SECS),
    };
    let spec = verified.spec;
    let upload_until = spec.expires_at + UPLOAD_GRACE_SECS;
    if spec.job_id != job.job_id {
        let msg = format!("delivered as job {} but the signed job id is {}", job.job_id, spec.job_id);
        return (reject(&mut rec, "malformed", msg), rec, upload_until);
    }
    let keep_until = spec.expires_at.saturating_add(opts.clock_skew_secs);
    match ctx.seen.check_and_record(&spec.job_id, &spec.nonce, keep_until, now).await {
        Ok(()) => {}
        Err(e @ crate::replay::ReplayError::Replayed { .. }) => {
            return (reject(&mut rec, "replayed", e.to_string()), rec, upload_until)
        }
        Err(e) => return (reject(&mut rec, "replay_store_failed", e.to_string()), rec, upload_until),
    }
    rec.verdict = "accepted";
    rec.connection = Some(spec.connection.clone());
    rec.sql_sha256 = Some(sha256_hex(spec.sql.as_bytes()));
    // Who ran what: the signed requester, the statement and its parameters' types.
    rec.requester.clone_from(&spec.requester);
    if live.cfg.audit.sql_text == crate::config::SqlText::Full {
        rec.sql = Some(spec.sql.clone());
    }
    rec.param_types = spec.params.iter().map(param_type).collect();
    if live.cfg.audit.param_values {
        rec.params = serde_json::to_value(&spec.params).ok();
    }
    tracing::info!(key_id = %verified.key_id, connection = %spec.connection, "Job verified.");
    let Some(conn) = live.connections.get(&spec.connection) else {
        rec.outcome = AuditOutcome::Rejected;
        let msg = format!("this agent has no connection named {:?}", spec.connection);
        return (reject(&mut rec, "unknown_connection", msg), rec, upload_until);
    };
    let policy = live.cfg.egress_policy(&spec.connection);
    if let Err(decision) = policy.check_spec(&spec.render) {
        rec.outcome = AuditOutcome::Rejected;
        let report = reject(&mut rec, "egress_refused", decision.detail.clone());
        return (with_decisions(report, &mut rec, vec![decision]), rec, upload_until);
    }
    // A catalog job runs the agent's own metadata statements, not the job's SQL (it has
    // none), and skips the result cache; its answer is egress like any result.
    if let outpost_protocol::RenderSpec::Catalog(caps) = spec.render {
        let timeout = live.cfg.query_timeout(&spec.connection, spec.timeout_secs);
        let limits = QueryLimits { max_rows: 0, timeout, cancel, provenance: false, conditions: false };
        let report = catalog::execute(conn, caps, &policy, limits, &mut rec, &job.job_id).await;
        return (report, rec, upload_until);
    }
    let max_rows = usize::try_from(live.cfg.limits.max_rows.get()).unwrap_or(10_000);
    let limits = QueryLimits {
        max_rows,
        timeout: live.cfg.query_timeout(&spec.connection, spec.timeout_secs),
        cancel,
        provenance: policy.needs_provenance(),
        conditions: policy.needs_provenance() && policy.masked_predicates == crate::policy::MaskedPredicates::Refuse,
    };
    // `logged`: what the log may show of `message` (`None`: all of it, the agent's own words).
    let failed = |rec: &mut AuditRecord, code: &str, message: String, logged: Option<&str>, stats: ResultStats| {
        if code == "cancelled" {
            tracing::info!("Job cancelled at the control plane's request; its query was stopped.");
            rec.outcome = AuditOutcome::Cancelled;
            rec.reason = Some(code.to_owned());
            return ResultReport::refused(&job.job_id, JobOutcome::Cancelled, code, message, stats);
        }
        tracing::warn!(reason = code, error = %logged.unwrap_or(&message), "Job failed.");
        rec.outcome = AuditOutcome::Failed;
        rec.reason = Some(code.to_owned());
        ResultReport::refused(&job.job_id, JobOutcome::Failed, code, message, stats)
    };
    // A database's error text is egress: `egress.errors` decides what of it leaves (with
    // an egress decision when something was removed); the log gets the scrubbed text,
    // whatever the mode.
    let query_failed =
        |rec: &mut AuditRecord, e: &QueryError, stats: ResultStats, decisions: &mut Vec<EgressDecision>| {
            let known = crate::scrub::Known::new(&spec.sql, &spec.params);
            let out = crate::scrub::outgoing(policy.errors, e, &known);
            decisions.extend(out.decision);
            failed(rec, e.code(), out.message, Some(&out.logged), stats)
        };
    let mut decisions = Vec::new();
    let truncation = |decisions: &mut Vec<EgressDecision>| {
        decisions.push(EgressDecision {
            action: EgressAction::Truncated,
            rule: "limits.max_rows".into(),
            detail: format!("the query returned more than {max_rows} rows; the agent read the first {max_rows}"),
        });
    };
    let mut columns = 0;
    // Rows from the database or the cache go into the renderer's sink as they come; a
    // cache hit goes through the same egress checks and masks as a miss.
    let make = || fetch::RenderSink::for_job(&spec, &policy);
    let (sink, fetched) = fetch::cached_query(ctx, &live.cfg, job, &spec, conn, limits, &mut rec, &make).await;
    let rows_read = sink.rows() as u64;
    rec.rows_read = rows_read;
    let cache_hit = rec.cache == Some("hit");
    let stats = ResultStats { rows_read, cache_hit, ..ResultStats::default() };
    let truncated = match fetched {
        Ok(f) => f.truncated,
        Err(QueryError::Sink(message)) => {
            let report = failed(&mut rec, "render_failed", message, None, stats);
            return (with_decisions(report, &mut rec, decisions), rec, upload_until);
        }
        // The policy's own words (column names, rules): nothing from a row.
        Err(QueryError::Refused(d)) => {
            decisions.push(d.clone());
            let report = failed(&mut rec, "egress_refused", d.detail, None, stats);
            return (with_decisions(report, &mut rec, decisions), rec, upload_until);
        }
        Err(e) => {
            let report = query_failed(&mut rec, &e, stats, &mut decisions);
            return (with_decisions(report, &mut rec, decisions), rec, upload_until);
        }
    };
    if truncated {
        truncation(&mut decisions);
    }
    let (rendered, stats) = match sink {
        // A line, area or scatter chart: the rows went into its downsampler and were
        // never held all at once.
        fetch::RenderSink::Chart(mut chart) => match chart.finish(truncated) {
            Ok(r) => {
                let truncated = r.truncated;
                (r, ResultStats { truncated, ..stats })
            }
            Err(e) => {
                let report = failed(&mut rec, "render_failed", e.to_string(), None, stats);
                return (with_decisions(report, &mut rec, decisions), rec, upload_until);
            }
        },
        fetch::RenderSink::Rows(crate::connectors::Collect(mut rs)) => {
            rs.truncated = truncated;
            columns = rs.columns.len();
            let stats = ResultStats { truncated, ..stats };
            // Masks follow each column's source, whatever the query calls it; a masked
            // column may be a label but not drawn to scale.
            let masked = policy
                .check_rows(&spec.render, rs.rows.len())
                .and_then(|()| policy.column_masks(&rs.columns, rs.provenance.as_ref()))
                .and_then(|masks| policy.check_drawn(&spec.render, &rs.columns, &masks).map(|()| masks))
                .and_then(|masks| policy.apply_masks(&mut rs, &masks, live.mask_key.as_deref()));
            match masked {
                Ok(Some(d)) => decisions.push(d),
                Ok(None) => {}
                Err(d) => {
                    decisions.push(d.clone());
                    let report = failed(&mut rec, "egress_refused", d.detail, None, stats);
                    return (with_decisions(report, &mut rec, decisions), rec, upload_until);
                }
            }
            let (render_rows, render_points) = policy.render_limits(&spec.render, rs.columns.len(), max_rows);
            match crate::render::render_with(&spec.render, &rs, render_rows, render_points) {
                Ok(r) => {
                    let truncated = r.truncated;
                    (r, ResultStats { truncated, ..stats })
                }
                Err(e) => {
                    let report = failed(&mut rec, "render_failed", e.to_string(), None, stats);
                    return (with_decisions(report, &mut rec, decisions), rec, upload_until);
                }
            }
        }
    };
    decisions.extend(rendered.decisions.iter().cloned());
    let rows_available = usize::try_from(stats.rows_read).unwrap_or(usize::MAX);
    match policy.check_output(&spec.render, &rendered, rows_available, columns) {
        Ok(more) => decisions.extend(more),
        Err(d) => {
            decisions.push(d.clone());
            let report = failed(&mut rec, "egress_refused", d.detail, None, stats);
            return (with_decisions(report, &mut rec, decisions), rec, upload_until);
        }
    }
    let (rows_read, cache_hit) = (stats.rows_read, stats.cache_hit);
    let report = ResultReport::succeeded(&job.job_id, rendered.content_type, &rendered.body, stats);
    rec.outcome = AuditOutcome::Succeeded;
    rec.bytes_sent = report.stats.bytes;
    rec.body_sha256 = Some(sha256_hex(&rendered.body));
    rec.truncated = rendered.truncated;
    tracing::info!(rows_read, cache_hit, bytes = report.stats.bytes, egress = decisions.len(), "Job succeeded.");
    (with_decisions(report, &mut rec, decisions), rec, upload_until)
}

/// States the egress decisions in the report and in the audit record.
pub(super) fn with_decisions(
    mut report: ResultReport,
    rec: &mut AuditRecord,
    decisions: Vec<EgressDecision>,
) -> ResultReport {
    let mut decisions = decisions;
    decisions.truncate(outpost_protocol::report::MAX_EGRESS_DECISIONS);
    rec.egress.clone_from(&decisions);
    report.stats.egress = decisions;
    report
}

pub(super) async fn upload(ctx: &Ctx, report: &ResultReport, until: i64) {
    let body = Bytes::from(serde_json::to_vec(report).unwrap_or_default());
    let path = format!("{PATH_JOBS}{}/result", report.job_id);
    let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(5));
    loop {
        match ctx.transport.send(Method::POST, &path, Some(body.clone())).await {
            Ok((StatusCode::OK, _)) => return tracing::debug!("Report uploaded."),
            Ok((status, b)) if status.is_client_error() => {
                return tracing::warn!(%status, body = %String::from_utf8_lossy(&b), "Report refused by the control plane.");
            }
            Ok((status, _)) => tracing::warn!(%status, "Report upload failed; retrying."),
            Err(e) => tracing::info!(error = %e, "Report upload failed; retrying."),
        }
        if ctx.clock.now() > until {
            return tracing::warn!("Giving up on the report upload: the job is long expired.");
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
}
