//! Randomness for spreading fault timing and impairing packets: an
//! xorshift generator seeded from std's per-process random hash keys.
//! Enough spread for a lab, nothing for secrets.

use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant};

/// An xorshift64 generator.
pub(crate) struct XorShift(u64);

impl XorShift {
    /// A generator seeded differently on every call.
    pub(crate) fn seeded() -> Self {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(Instant::now().elapsed().as_nanos());
        XorShift(h.finish() | 1)
    }

    /// A generator that gives the same sequence for the same seed (a
    /// benchmark others can rerun).
    pub(crate) fn from_seed(seed: u64) -> Self {
        // xorshift never leaves zero; any other state is fine.
        XorShift(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform in [0, 1).
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A random duration below `limit`.
pub(crate) fn random_below(limit: Duration) -> Duration {
    limit.mul_f64(XorShift::seeded().unit())
}
