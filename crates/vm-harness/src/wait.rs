//! Polling with a deadline: the harness never sleeps a fixed time, it waits for an event.

use std::thread;
use std::time::{Duration, Instant};

/// Calls `probe` until it returns `Some`, sleeping `interval` between calls, and gives up at
/// `deadline`.
///
/// `probe` is always called at least once, and once more at (or just after) the deadline, so a
/// condition that became true during the last sleep is still seen. Returns `None` on timeout.
///
/// ```
/// use std::time::{Duration, Instant};
/// let start = Instant::now();
/// let got = vm_harness::wait_until(
///     start + Duration::from_secs(1),
///     Duration::from_millis(1),
///     || (start.elapsed() >= Duration::from_millis(5)).then_some(42),
/// );
/// assert_eq!(got, Some(42));
/// ```
pub fn wait_until<T>(deadline: Instant, interval: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    loop {
        if let Some(value) = probe() {
            return Some(value);
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        thread::sleep(interval.min(deadline - now));
    }
}

/// [`wait_until`] with a timeout counted from now.
pub fn wait_for<T>(timeout: Duration, interval: Duration, probe: impl FnMut() -> Option<T>) -> Option<T> {
    wait_until(Instant::now() + timeout, interval, probe)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_first_some() {
        let mut calls = 0;
        let got = wait_for(Duration::from_secs(5), Duration::from_millis(1), || {
            calls += 1;
            (calls == 3).then_some(calls)
        });
        assert_eq!(got, Some(3));
    }

    #[test]
    fn times_out_after_a_last_probe() {
        let start = Instant::now();
        let mut calls = 0;
        let got: Option<()> = wait_for(Duration::from_millis(30), Duration::from_millis(10), || {
            calls += 1;
            None
        });
        assert_eq!(got, None);
        assert!(start.elapsed() >= Duration::from_millis(30));
        assert!(calls >= 2, "probed {calls} times");
    }

    #[test]
    fn past_deadline_probes_once() {
        let mut calls = 0;
        let got: Option<()> = wait_until(Instant::now(), Duration::from_secs(10), || {
            calls += 1;
            None
        });
        assert_eq!((got, calls), (None, 1));
    }
}
