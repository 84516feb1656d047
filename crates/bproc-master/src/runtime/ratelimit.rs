//! Log lines that a remote peer can trigger are rate-limited, so a broken or
//! hostile peer cannot flood the master's log.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Allows at most `per_second` events in each wall-clock second.
pub struct RateLimit {
    per_second: u64,
    /// (second << 20) | count, updated atomically.
    slot: AtomicU64,
}

impl RateLimit {
    pub const fn new(per_second: u64) -> Self {
        RateLimit { per_second, slot: AtomicU64::new(0) }
    }

    pub fn allow(&self) -> bool {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        self.allow_at(now)
    }

    fn allow_at(&self, second: u64) -> bool {
        let mut cur = self.slot.load(Ordering::Relaxed);
        loop {
            let (sec, count) = (cur >> 20, cur & 0xF_FFFF);
            let next = if sec == second { (sec << 20) | (count + 1).min(0xF_FFFF) } else { (second << 20) | 1 };
            match self.slot.compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return next & 0xF_FFFF <= self.per_second,
                Err(actual) => cur = actual,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_per_second() {
        let r = RateLimit::new(2);
        assert!(r.allow_at(10));
        assert!(r.allow_at(10));
        assert!(!r.allow_at(10));
        assert!(r.allow_at(11));
    }
}
