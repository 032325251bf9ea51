//! Rate-limited lines in the gateway's own log: at most one per key (a source address, a
//! connection) per interval, and that line says how many were held back since the previous
//! one. A flood of failures (a down upstream under load, a password sprayer) leaves a
//! readable log instead of thousands of identical lines a second; the audit trail keeps
//! every outcome either way.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Keys remembered at once; past this, keys whose interval has passed are forgotten.
const MAX_KEYS: usize = 10_000;

pub struct RateLog {
    every: Duration,
    /// Key → when its last line was written and how many were held back since.
    seen: Mutex<BTreeMap<String, (Instant, u64)>>,
}

impl RateLog {
    /// One line per key every `every` (usable in a `static`).
    pub const fn new(every: Duration) -> RateLog {
        RateLog {
            every,
            seen: Mutex::new(BTreeMap::new()),
        }
    }

    /// The interval, for the log line's wording.
    pub fn every(&self) -> Duration {
        self.every
    }

    /// `Some(held_back)` when a line for `key` should be written now (with the number of lines
    /// held back since the previous one), `None` when it should be held back.
    pub fn allow(&self, key: &str) -> Option<u64> {
        let now = Instant::now();
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((last, held)) = seen.get_mut(key) {
            if now.duration_since(*last) < self.every {
                *held += 1;
                return None;
            }
            let before = *held;
            *last = now;
            *held = 0;
            return Some(before);
        }
        if seen.len() >= MAX_KEYS {
            let every = self.every;
            seen.retain(|_, (last, _)| now.duration_since(*last) < every);
        }
        seen.insert(key.to_owned(), (now, 0));
        Some(0)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_key_per_interval_with_the_count_held_back() {
        let log = RateLog::new(Duration::from_millis(200));
        assert_eq!(log.allow("a"), Some(0));
        assert_eq!(log.allow("b"), Some(0), "keys are independent");
        for _ in 0..5 {
            assert_eq!(log.allow("a"), None);
        }
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(log.allow("a"), Some(5));
        assert_eq!(log.allow("a"), None);
    }
}
