//! Latency samples and rates.

use std::time::Duration;

/// Latencies of completed operations over a measured interval.
#[derive(Debug, Default, Clone)]
pub struct Samples {
    latencies_us: Vec<u64>,
    pub elapsed: Duration,
    pub errors: u64,
}

impl Samples {
    pub fn record(&mut self, latency: Duration) {
        self.latencies_us.push(latency.as_micros() as u64);
    }

    pub fn merge(&mut self, other: Samples) {
        self.latencies_us.extend(other.latencies_us);
        self.errors += other.errors;
    }

    pub fn count(&self) -> usize {
        self.latencies_us.len()
    }

    /// Completed operations per second.
    pub fn rate(&self) -> f64 {
        self.count() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The `p`-th percentile latency in milliseconds (p in 0..=100).
    pub fn percentile_ms(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return f64::NAN;
        }
        let mut sorted = self.latencies_us.clone();
        sorted.sort_unstable();
        let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
        sorted[rank.min(sorted.len() - 1)] as f64 / 1000.0
    }
}

/// The median of a set of figures (one per round) and its range.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    /// The median, minimum and maximum of `values`, ignoring values that
    /// are not finite (NaN when none is).
    pub fn of(values: &[f64]) -> Self {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return Spread {
                median: f64::NAN,
                min: f64::NAN,
                max: f64::NAN,
            };
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Spread {
            median,
            min: v[0],
            max: v[n - 1],
        }
    }

    /// Every figure divided by `d`.
    pub fn scaled(self, d: f64) -> Self {
        Spread {
            median: self.median / d,
            min: self.min / d,
            max: self.max / d,
        }
    }
}
