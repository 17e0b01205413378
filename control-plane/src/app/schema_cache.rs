//! The schema browser's catalogs, kept per agent and connection for `schema_cache_secs`
//! in this replica's memory, and the gate that lets one request at a time ask an agent
//! (the others wait for its answer). The handler that fills it is
//! the API's `schema` handler.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use outpost_protocol::catalog::Catalog;

/// Catalogs kept at most (one per agent and connection); the oldest goes first.
const MAX_CACHED: usize = 1_024;

/// One kept catalog.
#[derive(Debug, Clone)]
pub(crate) struct Cached {
    pub(crate) fetched_at: i64,
    /// When it arrived here, to tell a request whether it came after the request began.
    pub(crate) arrived: std::time::Instant,
    pub(crate) job_id: String,
    pub(crate) catalog: Arc<Catalog>,
}

/// An agent and one of its connections.
pub(crate) type Key = (String, String);

/// The catalogs of the schema browser, by `(agent, connection)`, and the requests asking
/// an agent now: one catalog job at a time per connection, the others wait for its answer.
#[derive(Debug, Default)]
pub struct SchemaCache {
    kept: Mutex<HashMap<Key, Cached>>,
    asking: Mutex<HashMap<Key, Arc<tokio::sync::Mutex<()>>>>,
}

impl SchemaCache {
    /// The kept catalog of `key` if it arrived after `since`.
    pub(crate) fn get_since(&self, key: &Key, since: std::time::Instant) -> Option<Cached> {
        let map = self.kept.lock().ok()?;
        map.get(key).filter(|hit| hit.arrived > since).cloned()
    }

    /// The kept catalog of `key` if it is younger than `max_age` seconds at `now`.
    pub(crate) fn get(&self, key: &Key, now: i64, max_age: u64) -> Option<Cached> {
        let map = self.kept.lock().ok()?;
        let hit = map.get(key)?;
        let age = u64::try_from(now.saturating_sub(hit.fetched_at)).unwrap_or(0);
        (age < max_age).then(|| hit.clone())
    }

    /// The gate of `key`: held while a request asks the agent.
    pub(crate) fn gate(&self, key: &Key) -> Arc<tokio::sync::Mutex<()>> {
        let Ok(mut map) = self.asking.lock() else { return Arc::default() };
        Arc::clone(map.entry(key.clone()).or_default())
    }

    /// Forgets the gate of `key` once no request holds or waits for it.
    pub(crate) fn release(&self, key: &Key, gate: Arc<tokio::sync::Mutex<()>>) {
        let Ok(mut map) = self.asking.lock() else { return };
        // Ours and the map's: nobody else has it.
        if Arc::strong_count(&gate) <= 2 {
            map.remove(key);
        }
    }

    pub(crate) fn put(&self, key: Key, value: Cached) {
        let Ok(mut map) = self.kept.lock() else { return };
        if map.len() >= MAX_CACHED && !map.contains_key(&key) {
            if let Some(oldest) = map.iter().min_by_key(|(_, v)| v.fetched_at).map(|(k, _)| k.clone()) {
                map.remove(&oldest);
            }
        }
        map.insert(key, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cached(at: i64, id: &str) -> Cached {
        Cached {
            fetched_at: at,
            arrived: std::time::Instant::now(),
            job_id: id.into(),
            catalog: Arc::new(Catalog::default()),
        }
    }

    #[test]
    fn a_kept_catalog_is_served_until_it_is_max_age_old() {
        let cache = SchemaCache::default();
        let key = ("edge-1".to_owned(), "sample".to_owned());
        cache.put(key.clone(), cached(1000, "j1"));
        assert_eq!(cache.get(&key, 1299, 300).map(|c| c.job_id), Some("j1".into()));
        assert!(cache.get(&key, 1300, 300).is_none(), "300 s old is too old");
        assert!(cache.get(&key, 1000, 0).is_none(), "0 turns the cache off");
        assert!(cache.get(&("edge-1".into(), "other".into()), 1000, 300).is_none());
    }

    #[test]
    fn the_cache_is_bounded_and_drops_the_oldest() {
        let cache = SchemaCache::default();
        for i in 0..=MAX_CACHED {
            cache.put((format!("a{i}"), "c".into()), cached(i64::try_from(i).unwrap_or(0), "j"));
        }
        let map = cache.kept.lock().expect("lock");
        assert_eq!(map.len(), MAX_CACHED);
        assert!(!map.contains_key(&("a0".to_owned(), "c".to_owned())));
    }

    #[tokio::test]
    async fn one_request_at_a_time_asks_the_agent_and_the_gate_is_then_forgotten() {
        let cache = SchemaCache::default();
        let key = ("edge-1".to_owned(), "sample".to_owned());
        let first = cache.gate(&key);
        let held = first.lock().await;
        let second = cache.gate(&key);
        assert!(Arc::ptr_eq(&first, &second), "the same gate for the same connection");
        assert!(second.try_lock().is_err(), "a second request waits");
        // What the first request keeps, the waiting one takes (it began before it arrived).
        let asked = std::time::Instant::now();
        cache.put(key.clone(), cached(1000, "j1"));
        assert_eq!(cache.get_since(&key, asked).map(|c| c.job_id), Some("j1".into()));
        assert!(cache.get_since(&key, std::time::Instant::now()).is_none(), "older than the request: ask again");
        drop(held);
        cache.release(&key, first);
        assert_eq!(cache.asking.lock().map(|m| m.len()).unwrap_or(0), 1, "still awaited by the second");
        cache.release(&key, second);
        assert_eq!(cache.asking.lock().map(|m| m.len()).unwrap_or(9), 0);
    }
}
