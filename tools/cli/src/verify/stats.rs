//! The statistics behind a verdict: a one-sided upper confidence bound on a discrepancy rate
//! (exact binomial, Clopper–Pearson) and the least traffic that can show a rate below a threshold.

/// ln(n!) for the binomial terms (Stirling series beyond a small table; error < 1e-10).
fn ln_factorial(n: u64) -> f64 {
    if n < 2 {
        return 0.0;
    }
    if n < 64 {
        return (2..=n).map(|k| (k as f64).ln()).sum();
    }
    let x = n as f64;
    x * x.ln() - x + 0.5 * (2.0 * std::f64::consts::PI * x).ln() + 1.0 / (12.0 * x) - 1.0 / (360.0 * x.powi(3))
}

/// P(X ≤ k) for X ~ Binomial(n, p), summed in log space (k is small next to n in practice).
fn binomial_cdf(k: u64, n: u64, p: f64) -> f64 {
    if p <= 0.0 {
        return 1.0;
    }
    if p >= 1.0 {
        return if k >= n { 1.0 } else { 0.0 };
    }
    let (lp, lq) = (p.ln(), (1.0 - p).ln());
    let ln_n = ln_factorial(n);
    (0..=k.min(n)).map(|i| (ln_n - ln_factorial(i) - ln_factorial(n - i) + i as f64 * lp + (n - i) as f64 * lq).exp()).sum::<f64>().min(1.0)
}

/// The one-sided upper bound, at `confidence` (e.g. 0.95), of a rate seen as `x` events in `n`
/// trials: the largest p for which seeing at most `x` still has probability 1 − confidence
/// (Clopper–Pearson). 1 when `n` is 0.
pub fn upper_bound(x: u64, n: u64, confidence: f64) -> f64 {
    if n == 0 {
        return 1.0;
    }
    if x >= n {
        return 1.0;
    }
    if x > EXACT_UP_TO {
        return wilson_upper(x, n, confidence);
    }
    let alpha = 1.0 - confidence;
    let (mut lo, mut hi) = (x as f64 / n as f64, 1.0);
    for _ in 0..100 {
        let mid = (lo + hi) / 2.0;
        if binomial_cdf(x, n, mid) > alpha {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    hi
}

/// Beyond this many events the exact sum gives way to the Wilson bound (equal to 4 digits there).
const EXACT_UP_TO: u64 = 10_000;

/// The one-sided Wilson score upper bound (normal approximation; z of the 95 % one-sided bound
/// unless `confidence` is another of 0.90 or 0.99).
fn wilson_upper(x: u64, n: u64, confidence: f64) -> f64 {
    let z = if (confidence - 0.90).abs() < 1e-9 {
        1.281_551_565_5
    } else if (confidence - 0.99).abs() < 1e-9 {
        2.326_347_874
    } else {
        1.644_853_626_951_472_2
    };
    let (x, n) = (x as f64, n as f64);
    let p = x / n;
    let z2 = z * z;
    ((p + z2 / (2.0 * n) + z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt()) / (1.0 + z2 / n)).min(1.0)
}

/// The least number of trials for which zero events bound the rate at or below `threshold` at
/// `confidence` ("rule of three" at 95 %: about 3 / threshold).
pub fn min_trials(threshold: f64, confidence: f64) -> u64 {
    if threshold <= 0.0 || threshold >= 1.0 {
        return u64::MAX;
    }
    ((1.0 - confidence).ln() / (1.0 - threshold).ln()).ceil() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_events_give_the_rule_of_three() {
        let b = upper_bound(0, 3_000, 0.95);
        assert!((b - 0.000998).abs() < 1e-5, "{b}");
        assert_eq!(min_trials(0.001, 0.95), 2_995);
        assert!(upper_bound(0, 2_995, 0.95) <= 0.001 && upper_bound(0, 2_994, 0.95) > 0.001);
        assert_eq!(upper_bound(0, 0, 0.95), 1.0);
    }

    #[test]
    fn the_bound_matches_published_clopper_pearson_values() {
        // One-sided 95 % upper limits: x = 1, n = 100 → 0.0466; x = 10, n = 1000 → 0.01679.
        assert!((upper_bound(1, 100, 0.95) - 0.0466).abs() < 5e-4, "{}", upper_bound(1, 100, 0.95));
        assert!((upper_bound(10, 1_000, 0.95) - 0.01679).abs() < 2e-4, "{}", upper_bound(10, 1_000, 0.95));
        // A hundred clean samples bound the loss only below about 3 %.
        assert!((upper_bound(0, 100, 0.95) - 0.0295).abs() < 5e-4);
        assert!(upper_bound(5, 10_000_000, 0.95) < 1.1e-6);
        // Many events: the Wilson bound, close to the exact one where both apply, and no hang.
        let (exact, wilson) = (upper_bound(10_000, 1_000_000, 0.95), wilson_upper(10_000, 1_000_000, 0.95));
        assert!((exact - wilson).abs() / exact < 1e-3, "{exact} {wilson}");
        assert!(upper_bound(u64::MAX / 2, u64::MAX - 1, 0.95) > 0.5);
    }
}
