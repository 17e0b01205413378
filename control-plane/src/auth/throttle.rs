//! The sign-in throttle: failed password sign-ins counted per user name, so that guessing
//! one account's password is slowed down. Counters are per process (per replica).

use std::collections::HashMap;
use std::sync::Mutex;

/// Failed sign-ins allowed per user name within [`THROTTLE_WINDOW_SECS`].
pub const MAX_SIGN_IN_FAILURES: u32 = 5;
/// The window of [`MAX_SIGN_IN_FAILURES`], seconds.
pub const THROTTLE_WINDOW_SECS: i64 = 900;
/// Names tracked at most (the oldest windows are dropped first).
const THROTTLE_MAX_NAMES: usize = 10_000;

/// Counts failed sign-ins per user name, so that guessing one account's password is
/// slowed to [`MAX_SIGN_IN_FAILURES`] tries per [`THROTTLE_WINDOW_SECS`] (per process).
#[derive(Debug, Default)]
pub struct SignInThrottle {
    failures: Mutex<HashMap<String, (u32, i64)>>,
}

impl SignInThrottle {
    /// `Err(seconds to wait)` while `name` is locked out.
    pub fn check(&self, name: &str, now: i64) -> Result<(), i64> {
        let map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        match map.get(name) {
            Some((n, start)) if *n >= MAX_SIGN_IN_FAILURES && now - start < THROTTLE_WINDOW_SECS => {
                Err(THROTTLE_WINDOW_SECS - (now - start))
            }
            _ => Ok(()),
        }
    }

    /// Records a failure. When the table is full, names whose window has passed go
    /// first, then the oldest names not locked out, and only then the oldest locked-out
    /// ones: a flood of made-up names neither stops the counting nor unlocks a name
    /// under attack (it only costs the flood's own oldest entries).
    pub fn failed(&self, name: &str, now: i64) {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= THROTTLE_MAX_NAMES && !map.contains_key(name) {
            map.retain(|_, (_, start)| now - *start < THROTTLE_WINDOW_SECS);
        }
        if map.len() >= THROTTLE_MAX_NAMES && !map.contains_key(name) {
            // An eighth at a time, so that a flood does not sort the table per request.
            let mut by_age: Vec<(bool, i64, String)> =
                map.iter().map(|(k, (n, start))| (*n >= MAX_SIGN_IN_FAILURES, *start, k.clone())).collect();
            by_age.sort_unstable();
            for (_, _, k) in by_age.into_iter().take(THROTTLE_MAX_NAMES / 8) {
                map.remove(&k);
            }
        }
        let e = map.entry(name.to_owned()).or_insert((0, now));
        if now - e.1 >= THROTTLE_WINDOW_SECS {
            *e = (0, now);
        }
        e.0 += 1;
    }

    /// Forgets the failures of `name` after a successful sign-in.
    pub fn succeeded(&self, name: &str) {
        self.failures.lock().unwrap_or_else(|e| e.into_inner()).remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sixth_failure_within_the_window_locks_the_name_out() {
        let t = SignInThrottle::default();
        for _ in 0..MAX_SIGN_IN_FAILURES {
            assert!(t.check("ana", 100).is_ok());
            t.failed("ana", 100);
        }
        assert_eq!(t.check("ana", 160), Err(THROTTLE_WINDOW_SECS - 60));
        assert!(t.check("bob", 160).is_ok(), "per name");
        assert!(t.check("ana", 100 + THROTTLE_WINDOW_SECS).is_ok(), "the window passes");
        t.succeeded("ana");
        assert!(t.check("ana", 160).is_ok());
    }

    /// A flood of made-up names (ten times the table) neither unlocks a name under
    /// attack nor stops the counting for a name attacked after it.
    #[test]
    fn a_flood_of_names_does_not_unlock_anyone_and_counting_goes_on() {
        let t = SignInThrottle::default();
        for _ in 0..MAX_SIGN_IN_FAILURES {
            t.failed("admin", 100);
        }
        assert!(t.check("admin", 101).is_err());
        for i in 0..(THROTTLE_MAX_NAMES * 10) {
            t.failed(&format!("made-up-{i}"), 101 + i64::try_from(i / 1000).expect("small"));
        }
        assert!(t.check("admin", 300).is_err(), "still locked out after the flood");
        for _ in 0..MAX_SIGN_IN_FAILURES {
            t.failed("ops", 300);
        }
        assert!(t.check("ops", 301).is_err(), "a name attacked after the flood is counted and locked out");
        let size = t.failures.lock().expect("lock").len();
        assert!(size <= THROTTLE_MAX_NAMES, "bounded: {size}");
    }
}
