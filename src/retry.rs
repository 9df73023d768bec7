//! Retry timing: exponential backoff with full jitter (GUIDE §5) and `Retry-After`.

use rand::Rng;
use std::time::Duration;

/// Full-jitter exponential backoff: `sleep = random(0, min(cap, base × 2^attempt))`.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
}

impl Backoff {
    /// MQTT reconnects: base 1 s, cap 120 s.
    pub fn mqtt() -> Self {
        Backoff::new(Duration::from_secs(1), Duration::from_secs(120))
    }

    /// Pub/Sub requests: base 100 ms, cap 60 s.
    pub fn pubsub() -> Self {
        Backoff::new(Duration::from_millis(100), Duration::from_secs(60))
    }

    /// A backoff with the given base and cap.
    pub fn new(base: Duration, cap: Duration) -> Self {
        Backoff { base, cap, attempt: 0 }
    }

    /// The ceiling of the next delay, `min(cap, base × 2^attempt)`.
    pub fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(31)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// The next delay (full jitter), counting one more failed attempt.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        let ms = ceiling.as_millis() as u64;
        Duration::from_millis(if ms == 0 { 0 } else { rand::rng().random_range(0..=ms) })
    }

    /// The delay after a failure that came with a `Retry-After`: the server's wish, but never
    /// less than our own jittered delay and never more than the cap.
    pub fn next_delay_with(&mut self, retry_after: Option<Duration>) -> Duration {
        let own = self.next_delay();
        match retry_after {
            Some(ra) => ra.max(own).min(self.cap),
            None => own,
        }
    }

    /// Failed attempts so far.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Success: start again from `base`.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// Parses a `Retry-After` value given in delta-seconds. HTTP dates are not honoured (Pub/Sub
/// sends seconds); the jittered backoff applies instead.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }
}
