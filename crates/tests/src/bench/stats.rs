//! Samples of one measurement and their order statistics (nearest-rank percentiles).

use std::time::Duration;

/// Timings of one measured thing, in the order they were taken.
#[derive(Debug, Clone, Default)]
pub struct Samples {
    times: Vec<Duration>,
}

impl Samples {
    pub fn new() -> Samples {
        Samples::default()
    }

    pub fn push(&mut self, d: Duration) {
        self.times.push(d);
    }

    /// How many runs were timed.
    pub fn runs(&self) -> usize {
        self.times.len()
    }

    fn sorted(&self) -> Vec<Duration> {
        let mut v = self.times.clone();
        v.sort_unstable();
        v
    }

    /// The `p`-th percentile (0..=100) by nearest rank; zero without samples.
    pub fn percentile(&self, p: f64) -> Duration {
        let v = self.sorted();
        if v.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
        v[rank.clamp(1, v.len()) - 1]
    }

    /// The median; for an even count, the mean of the two middle samples.
    pub fn median(&self) -> Duration {
        let v = self.sorted();
        match v.len() {
            0 => Duration::ZERO,
            n if n % 2 == 1 => v[n / 2],
            n => (v[n / 2 - 1] + v[n / 2]) / 2,
        }
    }

    pub fn min(&self) -> Duration {
        self.times.iter().copied().min().unwrap_or_default()
    }

    pub fn max(&self) -> Duration {
        self.times.iter().copied().max().unwrap_or_default()
    }
}

/// Milliseconds with three decimals.
pub fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1e3)
}

/// `a / b` of two durations (how many times slower `a` is), NaN if `b` is zero.
pub fn ratio(a: Duration, b: Duration) -> f64 {
    if b.is_zero() {
        f64::NAN
    } else {
        a.as_secs_f64() / b.as_secs_f64()
    }
}

/// Throughput in MB/s (MB = 10^6 bytes) of `bytes` moved in `d`.
pub fn mb_per_s(bytes: u64, d: Duration) -> f64 {
    if d.is_zero() {
        f64::NAN
    } else {
        bytes as f64 / 1e6 / d.as_secs_f64()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(ms: &[u64]) -> Samples {
        let mut s = Samples::new();
        for &m in ms {
            s.push(Duration::from_millis(m));
        }
        s
    }

    #[test]
    fn order_statistics() {
        let s = samples(&[5, 1, 4, 2, 3]);
        assert_eq!(s.median(), Duration::from_millis(3));
        assert_eq!(s.min(), Duration::from_millis(1));
        assert_eq!(s.max(), Duration::from_millis(5));
        assert_eq!(s.percentile(10.0), Duration::from_millis(1));
        assert_eq!(s.percentile(90.0), Duration::from_millis(5));
        assert_eq!(samples(&[1, 3]).median(), Duration::from_millis(2));
        assert_eq!(Samples::new().median(), Duration::ZERO);
    }
}
