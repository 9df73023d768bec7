//! Wall-clock time: the free function most of the SDK uses, and the [`Clock`] the config
//! fetcher schedules by, so a test or a simulation can move time forward at will.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch (0 if the clock is before 1970).
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// The time the SDK has observed running on this data directory, across runs: what the outbox's
/// age cap counts. It continues from the total persisted by the last run (`base_ms`) on the
/// monotonic clock, so a wall clock set forward (or back) ages nothing, and neither do the
/// hours the app was not running or the device slept (the monotonic clock stops in deep sleep).
#[derive(Debug, Clone, Copy)]
pub struct RunClock {
    start: std::time::Instant,
    base_ms: i64,
}

impl RunClock {
    /// A run clock continuing from `base_ms` observed by earlier runs.
    pub fn resume(base_ms: i64) -> Self {
        RunClock { start: std::time::Instant::now(), base_ms: base_ms.max(0) }
    }

    /// The observed time now, in ms.
    pub fn now_ms(&self) -> i64 {
        self.at(std::time::Instant::now())
    }

    /// The observed time at `instant` (of this run), in ms.
    pub fn at(&self, instant: std::time::Instant) -> i64 {
        let since = instant.saturating_duration_since(self.start).as_millis();
        self.base_ms.saturating_add(i64::try_from(since).unwrap_or(i64::MAX))
    }

    /// The observed time this run started at, in ms.
    pub fn base_ms(&self) -> i64 {
        self.base_ms
    }

    /// A time an earlier run stored (`None`: written before the run clock existed, so it counts
    /// as this run's start), never later than this run's start.
    pub fn restored(&self, stored_ms: Option<i64>) -> i64 {
        stored_ms.unwrap_or(self.base_ms).min(self.base_ms)
    }
}

impl Default for RunClock {
    fn default() -> Self {
        RunClock::resume(0)
    }
}

/// A source of wall-clock time in ms since the epoch.
pub trait Clock: Send + Sync {
    /// Now, in ms since the epoch.
    fn now_ms(&self) -> i64;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        now_ms()
    }
}

/// A clock that moves only when told to (tests and simulations).
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    /// A clock showing `start_ms`.
    pub fn new(start_ms: i64) -> Self {
        ManualClock(AtomicI64::new(start_ms))
    }

    /// Moves the clock forward (or back, with a negative `ms`).
    pub fn advance_ms(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }

    /// Sets the clock.
    pub fn set_ms(&self, ms: i64) {
        self.0.store(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}
