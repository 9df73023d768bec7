//! Delays in log-linear buckets: exact below 256 ms, then 128 buckets per power of two, so a
//! quantile read from the buckets is within 1/128 (< 0.8 %) of the exact one whatever the spread
//! of the delays, and a histogram costs at most a few thousand buckets instead of one entry per
//! distinct millisecond. `tools/rollup/sql/sli.sql` computes the same bucket numbers in
//! ClickHouse (`delay_bucket`), so both read the same quantiles.

use std::collections::BTreeMap;

/// Values below this are their own bucket.
const EXACT_BELOW: u64 = 256;
/// Buckets per power of two above it (the first 7 bits after the leading one).
const SUB_BITS: u32 = 7;

/// The bucket of a magnitude: itself below 256; above, 256 + 128 per power of two beyond 2^8
/// + the 7 bits after the leading one.
fn magnitude_bucket(v: u64) -> i64 {
    if v < EXACT_BELOW {
        return v as i64;
    }
    let e = 63 - v.leading_zeros(); // ≥ 8
    let sub = (v >> (e - SUB_BITS)) & ((1 << SUB_BITS) - 1);
    (EXACT_BELOW + u64::from(e - 8) * (1 << SUB_BITS) + sub) as i64
}

/// The smallest magnitude of a bucket.
fn magnitude_floor(b: i64) -> u64 {
    let b = b as u64;
    if b < EXACT_BELOW {
        return b;
    }
    let e = (b - EXACT_BELOW) / (1 << SUB_BITS) + 8;
    let sub = (b - EXACT_BELOW) % (1 << SUB_BITS);
    ((1 << SUB_BITS) + sub) << (e - u64::from(SUB_BITS))
}

/// The bucket of a delay in ms (negative delays — a clock ahead — mirror the positive ones below
/// zero, so bucket order is value order).
pub fn bucket(ms: i64) -> i64 {
    if ms >= 0 {
        magnitude_bucket(ms as u64)
    } else {
        -magnitude_bucket(ms.unsigned_abs()) - 1
    }
}

/// The value a bucket stands for: its bound nearest zero (the smallest magnitude in it).
pub fn value_of(b: i64) -> i64 {
    if b >= 0 {
        magnitude_floor(b) as i64
    } else {
        -(magnitude_floor(-(b + 1)).min(i64::MAX as u64) as i64)
    }
}

/// Counts of delays per bucket.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    counts: BTreeMap<i64, u64>,
}

impl Histogram {
    /// Counts one delay.
    pub fn add(&mut self, ms: i64) {
        *self.counts.entry(bucket(ms)).or_default() += 1;
    }

    /// How many delays were counted.
    pub fn len(&self) -> u64 {
        self.counts.values().sum()
    }

    /// The `q` quantile (0 < q ≤ 1) by rank — the bucket holding the ⌈q·n⌉-th smallest delay —
    /// as the value of that bucket; `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<i64> {
        let n = self.len();
        if n == 0 {
            return None;
        }
        let rank = ((q * n as f64).ceil() as u64).clamp(1, n);
        let mut seen = 0u64;
        self.counts
            .iter()
            .find(|(_, c)| {
                seen += **c;
                seen >= rank
            })
            .map(|(b, _)| value_of(*b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_exact_below_256_and_within_one_percent_above() {
        for v in 0..256 {
            assert_eq!(value_of(bucket(v)), v);
        }
        let mut previous = bucket(0);
        for v in (256..10_000_000i64).step_by(997).chain([i64::MAX / 3, i64::MAX]) {
            let b = bucket(v);
            assert!(b >= previous, "monotonic at {v}");
            previous = b;
            let got = value_of(b);
            assert!(got <= v && (v - got) as f64 / v as f64 <= 1.0 / 128.0, "{v} → {got}");
            assert_eq!(bucket(got), b, "a bucket's value is in it");
        }
        for v in [-1i64, -255, -256, -1_000_000, i64::MIN + 1, i64::MIN] {
            let got = value_of(bucket(v));
            assert!(got >= v && (got - v) as f64 <= v.unsigned_abs() as f64 / 128.0, "{v} → {got}");
        }
        assert!(bucket(-1) < bucket(0) && bucket(-300) < bucket(-1));
    }

    #[test]
    fn quantiles_stay_within_one_percent_of_the_exact_ones_and_memory_is_bounded() {
        // Delays spread over a day, one per 7 ms: exact quantiles by rank against the buckets'.
        let mut d = Histogram::default();
        let values: Vec<i64> = (0..86_400_000i64).step_by(7).map(|v| (v * 7919) % 86_400_000).collect();
        for v in &values {
            d.add(*v);
        }
        let mut sorted = values.clone();
        sorted.sort_unstable();
        for q in [0.5, 0.95, 0.99] {
            let exact = sorted[((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1];
            let got = d.quantile(q).unwrap();
            assert!((exact - got).abs() as f64 <= exact as f64 / 100.0, "q{q}: {got} vs {exact}");
        }
        assert!(d.counts.len() < 3_000, "{} buckets", d.counts.len());
        assert_eq!(d.len(), values.len() as u64);
        assert_eq!(Histogram::default().quantile(0.5), None);
    }
}
