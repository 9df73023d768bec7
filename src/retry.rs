//! Retry timing, one type for every retry in the SDK (MQTT reconnects, Pub/Sub requests, the
//! config fetch, the store's commit retries): a [`Policy`] says how a backoff grows, a
//! [`Backoff`] counts the failures. Delays are drawn with full jitter,
//! `random(floor, min(cap, base × 2^(failures − 1)))`, and a server's `Retry-After` is honoured
//! (plus, where the policy says so, a spread so a fleet does not come back in step).

use rand::Rng;
use std::time::Duration;

/// How a backoff grows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// The shortest delay: even an unlucky draw waits this long.
    pub floor: Duration,
    /// The ceiling after the first failure; it doubles with each further one.
    pub base: Duration,
    /// The longest delay, `Retry-After` included.
    pub cap: Duration,
    /// A `Retry-After` is lengthened by up to `1/retry_after_spread` of itself (0: not at all).
    pub retry_after_spread: u32,
    /// A young outage: while failures in a row have lasted less than the first duration, the
    /// jitter's ceiling is at most the second (a link black-holed for a minute or two is tried
    /// again within seconds of its return; a longer outage backs off to the cap).
    pub young: Option<(Duration, Duration)>,
}

/// The transports' young-outage rule: for the first two minutes of failures, retry within 8 s.
const TRANSPORT_YOUNG: Option<(Duration, Duration)> = Some((Duration::from_secs(120), Duration::from_secs(8)));

impl Policy {
    /// MQTT reconnects: base 1 s, cap 120 s.
    pub const MQTT: Policy =
        Policy { floor: Duration::ZERO, base: Duration::from_secs(1), cap: Duration::from_secs(120), retry_after_spread: 0, young: TRANSPORT_YOUNG };
    /// Pub/Sub requests: base 100 ms, cap 60 s.
    pub const PUBSUB: Policy =
        Policy { floor: Duration::ZERO, base: Duration::from_millis(100), cap: Duration::from_secs(60), retry_after_spread: 0, young: TRANSPORT_YOUNG };
    /// Config fetches: at least 10 s, base 30 s, cap 1 h; a `Retry-After` plus up to a fifth.
    pub const CONFIG_FETCH: Policy =
        Policy { floor: Duration::from_secs(10), base: Duration::from_secs(30), cap: Duration::from_secs(3600), retry_after_spread: 5, young: None };
    /// The store writer's commit retries: base 50 ms, cap 5 s.
    pub const STORE: Policy =
        Policy { floor: Duration::ZERO, base: Duration::from_millis(50), cap: Duration::from_secs(5), retry_after_spread: 0, young: None };

    /// The ceiling after `failures` consecutive failures (≥ 1): `min(cap, base × 2^(failures − 1))`,
    /// never below the floor.
    pub fn ceiling(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(31);
        self.base.saturating_mul(1u32 << doublings).min(self.cap).max(self.floor)
    }

    /// The delay after `failures` consecutive failures: full jitter between the floor and the
    /// ceiling; a longer `Retry-After` wins (plus the policy's spread), all up to the cap.
    pub fn delay(&self, failures: u32, retry_after: Option<Duration>, rng: &mut impl Rng) -> Duration {
        self.delay_under(self.ceiling(failures), retry_after, rng)
    }

    /// [`Policy::delay`] with the jitter's ceiling given.
    fn delay_under(&self, ceiling: Duration, retry_after: Option<Duration>, rng: &mut impl Rng) -> Duration {
        let (floor, ceiling) = (self.floor.as_millis() as u64, ceiling.as_millis() as u64);
        let jittered = Duration::from_millis(rng.random_range(floor..=ceiling.max(floor)));
        match retry_after {
            Some(ra) if ra > jittered => {
                let spread = match self.retry_after_spread {
                    0 => Duration::ZERO,
                    n => Duration::from_millis(rng.random_range(0..=(ra.as_millis() as u64) / u64::from(n))),
                };
                ra.saturating_add(spread).min(self.cap)
            }
            _ => jittered,
        }
    }
}

/// A backoff in progress: a policy and the failures counted so far.
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: Policy,
    failures: u32,
    /// When the first of the failures in a row happened.
    failing_since: Option<std::time::Instant>,
}

impl Backoff {
    /// A backoff with no failure yet.
    pub fn new(policy: Policy) -> Self {
        Backoff { policy, failures: 0, failing_since: None }
    }

    /// MQTT reconnects ([`Policy::MQTT`]).
    pub fn mqtt() -> Self {
        Backoff::new(Policy::MQTT)
    }

    /// Pub/Sub requests ([`Policy::PUBSUB`]).
    pub fn pubsub() -> Self {
        Backoff::new(Policy::PUBSUB)
    }

    /// The ceiling of the next delay.
    #[cfg(test)]
    pub fn ceiling(&self) -> Duration {
        self.policy.ceiling(self.failures.saturating_add(1))
    }

    /// The next delay (full jitter), counting one more failure.
    pub fn next_delay(&mut self) -> Duration {
        self.next_delay_with(None)
    }

    /// The delay after a failure that may have come with a `Retry-After`.
    pub fn next_delay_with(&mut self, retry_after: Option<Duration>) -> Duration {
        self.next_delay_at(retry_after, std::time::Instant::now(), &mut jitter_rng())
    }

    /// [`Backoff::next_delay_with`] at `now` with `rng`: within a young outage (the policy's
    /// `young` rule) the jitter's ceiling is the young one.
    pub fn next_delay_at(&mut self, retry_after: Option<Duration>, now: std::time::Instant, rng: &mut impl Rng) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let since = *self.failing_since.get_or_insert(now);
        let mut ceiling = self.policy.ceiling(self.failures);
        if let Some((span, young)) = self.policy.young {
            if now.saturating_duration_since(since) < span {
                ceiling = ceiling.min(young);
            }
        }
        self.policy.delay_under(ceiling, retry_after, rng)
    }

    /// Failures counted so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Success: start again from `base`.
    pub fn reset(&mut self) {
        self.failures = 0;
        self.failing_since = None;
    }
}

/// The longest `Retry-After` taken as given; every policy's cap is shorter anyway, and a clamp
/// here keeps absurd values (`9223372036854775`) from overflowing any arithmetic downstream.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(86_400);

/// Parses a `Retry-After` value given in delta-seconds, clamped to [`MAX_RETRY_AFTER`]. HTTP dates
/// are not honoured (Pub/Sub sends seconds); the jittered backoff applies instead.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let digits = value.trim();
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // More digits than a u64 holds is still "very long", not "absent".
    Some(digits.parse::<u64>().map_or(MAX_RETRY_AFTER, Duration::from_secs).min(MAX_RETRY_AFTER))
}

/// A generator for retry jitter: a small one (no cryptographic strength needed), seeded from the
/// OS on each failure that asks for a delay.
pub(crate) fn jitter_rng() -> rand::rngs::SmallRng {
    rand::SeedableRng::from_os_rng()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn delays_stay_under_the_growing_ceiling_and_the_cap() {
        let mut b = Backoff::pubsub();
        for attempt in 0..40u32 {
            let ceiling = b.ceiling();
            let want = Duration::from_millis(100).saturating_mul(1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX)).min(Duration::from_secs(60));
            assert_eq!(ceiling, want);
            assert!(b.next_delay() <= ceiling);
        }
        assert_eq!(b.ceiling(), Duration::from_secs(60));
        b.reset();
        assert_eq!(b.ceiling(), Duration::from_millis(100));
    }

    #[test]
    fn jitter_spreads_the_delays() {
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..50 {
            let mut b = Backoff::mqtt();
            for _ in 0..5 {
                b.next_delay();
            }
            seen.insert(b.next_delay().as_millis());
        }
        assert!(seen.len() > 10, "full jitter should not repeat itself: {seen:?}");
    }

    #[test]
    fn retry_after_is_honoured_within_the_cap() {
        let mut b = Backoff::pubsub();
        assert_eq!(b.next_delay_with(Some(Duration::from_secs(5))), Duration::from_secs(5));
        assert_eq!(b.next_delay_with(Some(Duration::from_secs(3600))), Duration::from_secs(60));
        assert_eq!(parse_retry_after(" 7 "), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(parse_retry_after("-5"), None);
    }

    #[test]
    fn absurd_retry_after_values_are_clamped_not_overflowed() {
        for huge in ["9223372036854775", "7700000000000000", "99999999999999999999999"] {
            assert_eq!(parse_retry_after(huge), Some(MAX_RETRY_AFTER), "{huge}");
            let mut rng = rand::rngs::SmallRng::seed_from_u64(3);
            for p in [Policy::CONFIG_FETCH, Policy::PUBSUB, Policy::MQTT] {
                assert_eq!(p.delay(1, parse_retry_after(huge), &mut rng), p.cap);
            }
        }
    }

    #[test]
    fn the_config_fetch_backoff_doubles_from_30_s_to_an_hour_with_jitter_above_the_floor() {
        let p = Policy::CONFIG_FETCH;
        let ms = |d: Duration| d.as_millis() as i64;
        let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
        let ceilings: Vec<i64> = (1..=9).map(|f| ms(p.ceiling(f))).collect();
        assert_eq!(ceilings, [30_000, 60_000, 120_000, 240_000, 480_000, 960_000, 1_920_000, 3_600_000, 3_600_000]);
        for failures in 1..40 {
            let mut seen = std::collections::BTreeSet::new();
            for _ in 0..200 {
                let d = ms(p.delay(failures, None, &mut rng));
                assert!((10_000..=ms(p.ceiling(failures))).contains(&d), "{failures}: {d}");
                seen.insert(d);
            }
            assert!(seen.len() > 100, "full jitter spreads the fleet: {}", seen.len());
        }
        // Retry-After lengthens the wait (plus up to a fifth, spread), within the cap.
        for _ in 0..100 {
            assert!((120_000..=144_000).contains(&ms(p.delay(1, Some(Duration::from_secs(120)), &mut rng))));
            assert!((10_000..=30_000).contains(&ms(p.delay(1, Some(Duration::from_secs(1)), &mut rng))));
        }
        assert_eq!(p.delay(1, Some(Duration::from_secs(86_400)), &mut rng), Duration::from_secs(3600));
    }

    #[test]
    fn a_young_outage_retries_within_seconds_and_an_old_one_backs_off_to_the_cap() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let t0 = std::time::Instant::now();
        let mut b = Backoff::mqtt();
        let mut now = t0;
        let mut longest_young = Duration::ZERO;
        for _ in 0..30 {
            let d = b.next_delay_at(None, now, &mut rng);
            if now.duration_since(t0) < Duration::from_secs(120) {
                longest_young = longest_young.max(d);
            }
            now += d + Duration::from_secs(10); // each attempt stalls 10 s
        }
        assert!(longest_young <= Duration::from_secs(8), "the first two minutes: {longest_young:?}");
        let late: Vec<Duration> = (0..20).map(|_| b.next_delay_at(None, now, &mut rng)).collect();
        assert!(late.iter().any(|d| *d > Duration::from_secs(30)), "then up to the cap: {late:?}");
        b.reset();
        assert!(b.next_delay_at(Some(Duration::from_secs(30)), now, &mut rng) >= Duration::from_secs(30), "a Retry-After is honoured, young or not");
    }
}
