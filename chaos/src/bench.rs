//! Benchmarks: repeated scenario runs summarised as median, p90 and max.

use std::time::Duration;

/// Summary statistics of a set of durations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// Number of samples.
    pub runs: usize,
    /// Median (nearest rank).
    pub median: Duration,
    /// 90th percentile (nearest rank).
    pub p90: Duration,
    /// Largest sample.
    pub max: Duration,
}

impl Summary {
    /// Summarises `samples`; `None` when there are none.
    pub fn of(samples: &[Duration]) -> Option<Summary> {
        if samples.is_empty() {
            return None;
        }
        let mut s = samples.to_vec();
        s.sort_unstable();
        let rank = |q: f64| s[((q * s.len() as f64).ceil() as usize).clamp(1, s.len()) - 1];
        Some(Summary {
            runs: s.len(),
            median: rank(0.5),
            p90: rank(0.9),
            max: *s.last()?,
        })
    }
}

/// Seconds with millisecond precision, for tables.
pub fn secs(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let ms = |v: u64| Duration::from_millis(v);
        let samples: Vec<Duration> = (1..=10).rev().map(|v| ms(v * 100)).collect();
        let s = Summary::of(&samples).expect("samples");
        assert_eq!((s.runs, s.median, s.p90, s.max), (10, ms(500), ms(900), ms(1000)));
        assert_eq!(Summary::of(&[]), None);
        assert_eq!(Summary::of(&[ms(7)]).expect("one").p90, ms(7));
    }
}
