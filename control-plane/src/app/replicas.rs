//! Wake-ups between replicas that share a PostgreSQL store (`NOTIFY` out, `LISTEN` in).

use std::sync::Arc;

use super::App;
use crate::store::backend::Backend;

/// Most wake-ups sent in one `NOTIFY` statement.
const MAX_WAKEUPS_PER_NOTIFY: usize = 256;

impl App {
    /// With a shared PostgreSQL store, carries wake-ups between replicas: this replica's
    /// are sent by `NOTIFY`, the others' arrive on a `LISTEN`ing connection and wake the
    /// long-polls and waiters here. That connection is re-opened with jittered backoff
    /// when it breaks, and every waiter is woken once it is back (notifications sent
    /// meanwhile are lost; the waiters re-read the store). Nothing to do on SQLite.
    pub fn start_replica_wakeups(self: &Arc<Self>) {
        let Backend::Postgres(pg) = &self.store else { return };
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        self.hub.publish_to(tx);
        let store = pg.clone();
        tokio::spawn(async move {
            // Whatever queued while the last statement ran goes out in the next one: one
            // commit for many wake-ups under load.
            let mut batch = Vec::new();
            let mut publisher = None;
            while rx.recv_many(&mut batch, MAX_WAKEUPS_PER_NOTIFY).await > 0 {
                let payloads = std::mem::take(&mut batch);
                let sent = match &publisher {
                    Some(p) => Ok(p),
                    None => store.publisher().await.map(|p| &*publisher.insert(p)),
                };
                let sent = match sent {
                    Ok(p) => p.notify_all(payloads).await,
                    Err(e) => Err(e),
                };
                if let Err(e) = sent {
                    // Connect again for the next batch.
                    publisher = None;
                    tracing::warn!(error = %e, "Could not tell the other replicas of a wake-up; they see it at their next poll.");
                }
            }
        });
        let app = Arc::clone(self);
        let pg = pg.clone();
        tokio::spawn(async move {
            let mut backoff = outpost_common::backoff::Backoff::new(
                std::time::Duration::from_millis(200),
                std::time::Duration::from_secs(10),
            );
            loop {
                match pg.listen().await {
                    Ok((client, mut notes)) => {
                        backoff.reset();
                        tracing::info!(
                            channel = crate::store::postgres::HUB_CHANNEL,
                            "Listening for other replicas' wake-ups."
                        );
                        app.hub.wake_all();
                        loop {
                            tokio::select! {
                                note = notes.recv() => match note {
                                    Some(p) => {
                                        if !app.hub.apply_remote(&p) {
                                            tracing::debug!(payload = %p, "Ignored a wake-up that is not ours.");
                                        }
                                    }
                                    None => break,
                                },
                                () = app.shutdown.cancelled() => return,
                            }
                        }
                        drop(client);
                        tracing::warn!("Lost the connection that listens for other replicas' wake-ups; reconnecting.");
                    }
                    Err(e) => tracing::warn!(error = %e, "Cannot listen for other replicas' wake-ups; retrying."),
                }
                tokio::select! {
                    () = tokio::time::sleep(backoff.next_delay()) => {}
                    () = app.shutdown.cancelled() => return,
                }
            }
        });
    }
}
