//! A circuit breaker per transport (docs/CONTRACT.md#circuit-breaker): after `threshold` consecutive failures — or
//! after consecutive failures spanning [`SPAN`], so that an outage seen one attempt per
//! upload burst is noticed by its length, not after as many bursts — it opens for a period that
//! grows with every re-opening; when the period ends, one probe may pass (half-open); its
//! success closes the breaker, its failure re-opens it for longer.

use std::time::{Duration, Instant};

/// The breaker's state at a given moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Requests flow.
    Closed,
    /// No requests until the instant.
    Open(Instant),
    /// One probe may pass.
    HalfOpen,
}

/// A consecutive-failure circuit breaker.
#[derive(Debug, Clone)]
pub struct Breaker {
    threshold: u32,
    base: Duration,
    cap: Duration,
    consecutive: u32,
    /// When the first of the consecutive failures happened.
    failing_since: Option<Instant>,
    opens: u32,
    open_until: Option<Instant>,
}

/// Two or more consecutive failures at least this far apart open the breaker whatever the
/// threshold: with an upload window a transport tries once a burst, so five failures would take
/// sixteen windows (eight minutes at 30 s, hours at longer windows).
const SPAN: Duration = Duration::from_secs(30);

impl Breaker {
    /// Opens after `threshold` consecutive failures for `min(cap, base × 2^reopenings)`.
    pub fn new(threshold: u32, base: Duration, cap: Duration) -> Self {
        Breaker { threshold, base, cap, consecutive: 0, failing_since: None, opens: 0, open_until: None }
    }

    /// Pub/Sub: 5 failures (or failures spanning 30 s), open 2 s, doubling up to 1 minute (one
    /// probe a minute costs the battery nothing and notices a recovered backend quickly).
    pub fn pubsub() -> Self {
        Breaker::new(5, Duration::from_secs(2), Duration::from_secs(60))
    }

    /// The state at `now`.
    pub fn state(&self, now: Instant) -> BreakerState {
        match self.open_until {
            None => BreakerState::Closed,
            Some(t) if now < t => BreakerState::Open(t),
            Some(_) => BreakerState::HalfOpen,
        }
    }

    /// Lets the probe pass now if the breaker is open (the app flushes, or the link is likely
    /// back): its outcome decides as at the end of the open period.
    pub fn probe_now(&mut self, now: Instant) {
        if self.open_until.is_some_and(|t| now < t) {
            self.open_until = Some(now);
        }
    }

    /// A request succeeded: close. Returns whether it had been open.
    pub fn success(&mut self) -> bool {
        let was_open = self.open_until.is_some();
        self.consecutive = 0;
        self.failing_since = None;
        self.opens = 0;
        self.open_until = None;
        was_open
    }

    /// A request failed at `now`. Returns whether this failure opened the breaker (a failed
    /// half-open probe re-opens it, for longer).
    pub fn failure(&mut self, now: Instant) -> bool {
        self.consecutive = self.consecutive.saturating_add(1);
        let since = *self.failing_since.get_or_insert(now);
        let long = self.consecutive >= 2 && now.saturating_duration_since(since) >= SPAN;
        let probe_failed = matches!(self.state(now), BreakerState::HalfOpen);
        if probe_failed || (self.open_until.is_none() && (self.consecutive >= self.threshold || long)) {
            self.open(now);
            return true;
        }
        false
    }

    /// Opens at once (a configuration error such as 403/404 will not heal by retrying).
    pub fn trip(&mut self, now: Instant) -> bool {
        let was_open = matches!(self.state(now), BreakerState::Open(_));
        self.open(now);
        !was_open
    }

    fn open(&mut self, now: Instant) {
        let factor = 1u32.checked_shl(self.opens.min(31)).unwrap_or(u32::MAX);
        let period = self.base.saturating_mul(factor).min(self.cap);
        self.opens = self.opens.saturating_add(1);
        self.open_until = Some(now + period);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_the_threshold_and_probes_once() {
        let mut b = Breaker::new(3, Duration::from_secs(2), Duration::from_secs(10));
        let t0 = Instant::now();
        assert!(!b.failure(t0));
        assert!(!b.failure(t0));
        assert!(b.failure(t0), "third consecutive failure opens");
        assert_eq!(b.state(t0), BreakerState::Open(t0 + Duration::from_secs(2)));
        let later = t0 + Duration::from_secs(2);
        assert_eq!(b.state(later), BreakerState::HalfOpen);
        assert!(b.failure(later), "a failed probe re-opens");
        assert_eq!(b.state(later), BreakerState::Open(later + Duration::from_secs(4)), "for longer");
        let t2 = later + Duration::from_secs(4);
        assert!(b.success(), "a good probe closes");
        assert_eq!(b.state(t2), BreakerState::Closed);
        assert!(!b.failure(t2), "the count starts again");
    }

    #[test]
    fn two_failures_thirty_seconds_apart_open_it_whatever_the_threshold() {
        let mut b = Breaker::new(5, Duration::from_secs(2), Duration::from_secs(60));
        let t0 = Instant::now();
        assert!(!b.failure(t0), "one failure is no outage");
        assert!(!b.failure(t0 + Duration::from_secs(29)), "29 s of failures: not yet");
        assert!(b.failure(t0 + Duration::from_secs(30)), "failing for 30 s: open");
        b.success();
        assert!(!b.failure(t0 + Duration::from_secs(100)), "a success starts the span again");
    }

    #[test]
    fn success_resets_the_count_and_the_period_is_capped() {
        let mut b = Breaker::new(2, Duration::from_secs(4), Duration::from_secs(10));
        let t = Instant::now();
        b.failure(t);
        b.success();
        assert!(!b.failure(t), "not consecutive");
        for _ in 0..10 {
            b.trip(t);
        }
        assert_eq!(b.state(t), BreakerState::Open(t + Duration::from_secs(10)));
    }

    #[test]
    fn a_probe_may_be_let_through_early_and_a_closed_breaker_stays_closed() {
        let mut b = Breaker::new(1, Duration::from_secs(60), Duration::from_secs(60));
        let t0 = Instant::now();
        b.probe_now(t0);
        assert_eq!(b.state(t0), BreakerState::Closed, "nothing to let through");
        assert!(b.failure(t0));
        let t1 = t0 + Duration::from_secs(5);
        b.probe_now(t1);
        assert_eq!(b.state(t1), BreakerState::HalfOpen, "the probe goes 55 s early");
        assert!(b.failure(t1), "and its failure re-opens the breaker");
        assert_eq!(b.state(t1), BreakerState::Open(t1 + Duration::from_secs(60)));
    }
}
