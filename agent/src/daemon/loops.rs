//! The daemon's loops: the sweep, the heartbeat and the long-poll that hands jobs out,
//! and the drain that waits for the spawned loops at shutdown.

#[allow(clippy::wildcard_imports)]
use super::*;

/// How often expired cache entries are deleted.
pub(super) const SWEEP_EVERY: Duration = Duration::from_secs(30);

/// Deletes cache entries past their connection's max-age: expired results are gone from
/// the disk within `SWEEP_EVERY`, not merely ignored.
pub(super) async fn sweep_loop(ctx: Arc<Ctx>, shutdown: CancellationToken) {
    let Some(cache) = ctx.cache.clone() else { return };
    loop {
        tokio::select! {
            () = tokio::time::sleep(SWEEP_EVERY) => {}
            () = shutdown.cancelled() => return,
        }
        // The caps in force now: a reload that shortens a max-age deletes at the next sweep.
        let (cache, caps, now) = (cache.clone(), ctx.live().cfg.cache_caps(), ctx.clock.now());
        match tokio::task::spawn_blocking(move || cache.sweep(&caps, now)).await {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => tracing::debug!(entries = n, "Deleted expired cache entries."),
            Ok(Err(e)) => tracing::warn!(error = %e, "Cache sweep failed."),
            Err(e) => tracing::warn!(error = %e, "Cache sweep task failed."),
        }
    }
}

/// Tells the control plane the version, the connection names (rebuilt each time: a
/// reload may have changed them) and the audit head.
pub(super) async fn heartbeat(ctx: &Ctx) {
    send_heartbeat(ctx, false).await;
}

/// [`heartbeat`], `stopping` when it is the last one before a clean exit.
pub(super) async fn send_heartbeat(ctx: &Ctx, stopping: bool) {
    let connections = ctx.connection_names();
    let body = Bytes::from(
        serde_json::to_vec(&Heartbeat {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            connections,
            audit_head: ctx.audit.head(),
            stopping,
        })
        .unwrap_or_default(),
    );
    match ctx.transport.send(Method::POST, PATH_HEARTBEAT, Some(body)).await {
        Ok((StatusCode::OK, _)) => ctx.reachable(),
        Ok((status, b)) => tracing::warn!(%status, body = %String::from_utf8_lossy(&b), "Heartbeat refused."),
        Err(e) => tracing::debug!(error = %e, "Heartbeat failed."),
    }
}

/// A [`heartbeat`] every `HEARTBEAT_EVERY` until `shutdown` is cancelled; one in flight
/// then is dropped (`run` sends the last one, `stopping`, itself).
pub(super) async fn heartbeat_loop(ctx: Arc<Ctx>, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => return,
            () = heartbeat(&ctx) => {}
        }
        tokio::select! {
            () = tokio::time::sleep(HEARTBEAT_EVERY) => {}
            () = shutdown.cancelled() => return,
        }
    }
}

pub(super) async fn poll_loop(ctx: Arc<Ctx>, shutdown: CancellationToken) {
    // Both are read once: a reload that changes them is refused (restart to apply).
    let limit = usize::try_from(ctx.live().cfg.limits.max_concurrent_jobs.get()).unwrap_or(4);
    let permits = Arc::new(Semaphore::new(limit));
    let mut running = JoinSet::new();
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(15));
    let wait = ctx.live().cfg.limits.long_poll_secs.get();
    loop {
        ctx.liveness.beat();
        while running.try_join_next().is_some() {}
        // With every slot busy the agent still polls, with max=0: the answer then carries
        // only cancels of the jobs it runs. That poll is dropped when a job ends, so a
        // free slot asks for work at once (a max=0 poll leases nothing, so nothing is lost).
        let max = permits.available_permits();
        let path = format!("{PATH_POLL}?wait={wait}&max={max}");
        let res = tokio::select! {
            r = ctx.transport.send(Method::GET, &path, None) => r,
            Some(_) = running.join_next(), if max == 0 => continue,
            () = shutdown.cancelled() => break,
        };
        let delay = match res {
            Ok((StatusCode::OK, body)) => match serde_json::from_slice::<PollResponse>(&body) {
                Ok(poll) => {
                    ctx.reachable();
                    backoff.reset();
                    // Before any of these jobs is verified: they may be signed by a key
                    // that only the newer key set names.
                    sync_key_set(&ctx, poll.key_set_version).await;
                    ctx.cancel_jobs(&poll.cancel);
                    for job in poll.jobs {
                        let Some(p) = Arc::clone(&permits).try_acquire_owned().ok() else {
                            tracing::error!(job_id = %job.job_id, "More jobs delivered than asked for; the lease will hand it out again.");
                            continue;
                        };
                        let ctx = Arc::clone(&ctx);
                        let span = tracing::info_span!("job", job_id = %job.job_id);
                        running.spawn(
                            async move {
                                process(&ctx, job).await;
                                drop(p);
                            }
                            .instrument(span),
                        );
                    }
                    continue;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "Control plane sent an invalid poll answer.");
                    backoff.next_delay()
                }
            },
            Ok((status, body)) => {
                let msg = String::from_utf8_lossy(&body);
                let delay = backoff.next_delay();
                if status == StatusCode::FORBIDDEN || status == StatusCode::UNAUTHORIZED {
                    // Logged each time (at error: nothing works until someone acts), and
                    // `status` says it instead of "connected".
                    tracing::error!(
                        %status,
                        body = %msg,
                        "The control plane refused this agent (revoked or unknown); enrol it again: outpost-agent enroll --token TOKEN"
                    );
                    // Its code and one line for a human, not the raw body.
                    let said = serde_json::from_slice::<outpost_protocol::wire::ErrorBody>(&body)
                        .map(|e| format!("{}: {}", e.code, e.message))
                        .unwrap_or_else(|_| msg.chars().take(200).collect());
                    let reason = format!("the control plane refused this agent ({}): {said}", status.as_u16());
                    ctx.unreachable(&reason, delay);
                } else {
                    tracing::warn!(%status, body = %msg, "Poll refused.");
                }
                delay
            }
            Err(e) => {
                let d = backoff.next_delay();
                ctx.unreachable(&e, d);
                d
            }
        };
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = shutdown.cancelled() => break,
        }
    }
    while running.try_join_next().is_some() {}
    if !running.is_empty() {
        tracing::info!(jobs = running.len(), "Waiting for running jobs to finish and report.");
        let drained =
            tokio::time::timeout(SHUTDOWN_GRACE, async { while running.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            tracing::warn!(
                jobs = running.len(),
                "Shutdown grace period over; abandoning running jobs (their leases will expire)."
            );
        }
    }
}

/// Waits for the spawned loops to return after `shutdown` was cancelled (each returns at
/// its next wait; one halfway through work, a renewal saving its identity say, finishes
/// it first), together at most `wait`. A loop still running then is named in the log and
/// aborted.
pub(super) async fn drain(loops: Vec<(&'static str, tokio::task::JoinHandle<()>)>, wait: Duration) {
    let deadline = tokio::time::Instant::now() + wait;
    for (name, mut handle) in loops {
        match tokio::time::timeout_at(deadline, &mut handle).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(task = name, error = %e, "A daemon loop ended abnormally."),
            Err(_) => {
                tracing::warn!(
                    task = name,
                    wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                    "A daemon loop did not stop at shutdown; aborting it."
                );
                handle.abort();
            }
        }
    }
}
