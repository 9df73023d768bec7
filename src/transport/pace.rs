//! What the link shows of itself, and the limits that follow from it (docs/CONTRACT.md#stalls-and-slow-links).
//!
//! A phone's link may be black-holed (a NAT that forgot the flow: packets vanish, nothing says
//! so), slow (16 KB/s on a weak cell) or cut after a few kilobytes. Fixed timeouts serve none of
//! these: 30 s is too long to keep the radio on for a dead link, and too short for a big
//! request on a slow one, which is then sent again whole. So:
//!
//! - [`Rtt`]: the round trips a transport sees (MQTT's CONNACK and lone PUBACKs); a connection
//!   with no progress for [`Rtt::stall_after`] — a multiple of it, at most [`STALL_MAX`] — is
//!   given up as stalled.
//! - [`Pace`]: the throughput Pub/Sub requests show; each request is sized to upload in about
//!   [`UPLOAD_TARGET`] at that rate and given a timeout from its own size, halved after a
//!   failure and grown back after successes.
//! - [`Window`]: MQTT's in-flight window, halved when a connection dies with publishes in
//!   flight, grown back by one for every window's worth acknowledged (as TCP grows its own).

use std::time::Duration;

/// The longest any connection or request waits without progress.
pub const STALL_MAX: Duration = Duration::from_secs(10);

/// The shortest stall limit, however short the round trip: a loaded phone can pause a process
/// for a second, and a broker taking a fleet's connections at once can take seconds to answer
/// a CONNECT (1,000 devices connecting through the demo's TLS front timed out at 2 s).
pub const STALL_MIN: Duration = Duration::from_secs(3);

/// Round trips without progress after which a link counts as stalled.
const STALL_RTTS: u32 = 8;

/// How long one Pub/Sub request should take to upload at the rate the link shows.
pub const UPLOAD_TARGET: Duration = Duration::from_millis(2_500);

/// The rate assumed before a request has measured one: a weak cellular link.
pub const ASSUMED_RATE: f64 = 16.0 * 1024.0;

/// The first request's size limit, before the link has shown its rate.
const START_BYTES: usize = 40 * 1024;

/// The smallest size limit (a request always carries at least one message).
const MIN_BYTES: usize = 1024;

/// The round trip a transport sees on its link: a smoothed estimate of the samples.
#[derive(Debug, Clone, Default)]
pub(crate) struct Rtt {
    srtt: Option<Duration>,
}

impl Rtt {
    /// One round-trip sample (a CONNACK after CONNECT, a PUBACK of a publish that had the
    /// link to itself).
    pub fn sample(&mut self, d: Duration) {
        self.srtt = Some(match self.srtt {
            None => d,
            Some(s) => (s * 7 + d) / 8,
        });
    }

    /// How long a connection may go without progress: [`STALL_RTTS`] round trips, within
    /// [`STALL_MIN`]..=[`STALL_MAX`]; [`STALL_MAX`] before any round trip was seen.
    pub fn stall_after(&self) -> Duration {
        self.srtt.map_or(STALL_MAX, |s| (s * STALL_RTTS).clamp(STALL_MIN, STALL_MAX))
    }
}

/// Pub/Sub's request size and timeout, following the throughput its requests show.
#[derive(Debug, Clone)]
pub(crate) struct Pace {
    /// Bytes per second the last requests showed (smoothed), once one has.
    rate: Option<f64>,
    /// The next request's size limit, bytes.
    limit: usize,
}

impl Default for Pace {
    fn default() -> Self {
        Pace { rate: None, limit: START_BYTES }
    }
}

impl Pace {
    /// The next request's size limit: at most `max` (the app's `maxBatchBytes`).
    pub fn batch_bytes(&self, max: usize) -> usize {
        self.limit.min(max)
    }

    /// The rate assumed for the next request, bytes per second.
    pub fn rate(&self) -> f64 {
        self.rate.unwrap_or(ASSUMED_RATE)
    }

    /// A request of `bytes` may take this long: twice its upload time at the rate shown, plus
    /// the stall limit for the answer, capped by `cap` (the client's own timeout).
    pub fn timeout(&self, bytes: usize, cap: Duration) -> Duration {
        let upload = Duration::from_secs_f64(2.0 * bytes as f64 / self.rate());
        (STALL_MAX + upload).min(cap)
    }

    /// A request of `bytes` was answered (whatever the status) after `elapsed`: the rate it showed joins the
    /// estimate, and the limit grows to what uploads in [`UPLOAD_TARGET`] at that rate — at once
    /// after a request of at least half the limit (its time measured the link), at most doubling
    /// after a smaller one (its time was mostly the round trip).
    pub fn answered(&mut self, bytes: usize, elapsed: Duration) {
        let sample = bytes as f64 / elapsed.as_secs_f64().max(0.001);
        // A small request says little about the rate (its time is mostly the round trip): it
        // can raise the estimate, never lower it.
        let rate = match self.rate {
            None => sample,
            Some(r) if bytes < self.limit / 4 => r.max(sample),
            Some(r) => 0.75 * r + 0.25 * sample,
        };
        self.rate = Some(rate);
        let fits = (rate * UPLOAD_TARGET.as_secs_f64()) as usize;
        if fits > self.limit {
            self.limit = if bytes.saturating_mul(2) >= self.limit { fits } else { fits.min(self.limit.saturating_mul(2)) };
        }
    }

    /// A request of `bytes` failed without an answer (a timeout, a connection cut): the next
    /// one is at most half its size, and a timeout halves the rate assumed.
    pub fn failed(&mut self, bytes: usize, timed_out: bool) {
        self.limit = (bytes.min(self.limit) / 2).max(MIN_BYTES);
        if timed_out {
            self.rate = Some(self.rate() / 2.0);
        }
    }
}

/// MQTT's in-flight window: how many publishes one connection may have unacknowledged.
#[derive(Debug, Clone)]
pub(crate) struct Window {
    size: usize,
    max: usize,
    /// Publishes acknowledged since the window last grew.
    acked: usize,
}

/// The smallest in-flight window.
const MIN_WINDOW: usize = 2;

impl Window {
    /// A window of `max`, its largest.
    pub fn new(max: usize) -> Self {
        Window { size: max, max, acked: 0 }
    }

    /// Publishes that may be in flight now.
    pub fn size(&self) -> usize {
        self.size
    }

    /// One publish was acknowledged: after a window's worth, the window grows by one (up to
    /// `max`). Slowly, since every publish beyond what the link carries is sent twice.
    pub fn acked(&mut self) {
        self.acked += 1;
        if self.acked >= self.size {
            self.acked = 0;
            self.size = (self.size + 1).min(self.max);
        }
    }

    /// A connection broke with `unacked` publishes in flight after `delivered` were
    /// acknowledged on it: the window halves, and is no larger than what that connection
    /// carried, so a link that cuts connections after a few kilobytes gets some publishes
    /// through each time instead of the same first ones again and again.
    pub fn failed(&mut self, unacked: usize, delivered: usize) {
        if unacked > 0 {
            self.acked = 0;
            self.size = (self.size / 2).min(delivered).max(MIN_WINDOW);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stall_limit_is_a_multiple_of_the_round_trip_within_bounds() {
        let mut r = Rtt::default();
        assert_eq!(r.stall_after(), STALL_MAX, "nothing seen yet");
        r.sample(Duration::from_millis(1));
        assert_eq!(r.stall_after(), STALL_MIN, "loopback: the floor");
        let mut cell = Rtt::default();
        cell.sample(Duration::from_millis(600));
        assert_eq!(cell.stall_after(), Duration::from_millis(4_800), "eight round trips of a cellular link");
        cell.sample(Duration::from_secs(30));
        assert_eq!(cell.stall_after(), STALL_MAX, "never above 10 s");
    }

    #[test]
    fn a_slow_link_gets_requests_that_upload_in_seconds_and_timeouts_that_fit_them() {
        let mut p = Pace::default();
        assert_eq!(p.batch_bytes(10_000_000), START_BYTES);
        // 16 KB/s: a 40 KiB request takes 2.5 s.
        let rate = 16_384.0;
        for _ in 0..10 {
            let b = p.batch_bytes(10_000_000);
            p.answered(b, Duration::from_secs_f64(b as f64 / rate));
        }
        let b = p.batch_bytes(10_000_000);
        assert!((30_000..=45_000).contains(&b), "sized to the link: {b}");
        assert!(p.timeout(b, Duration::from_secs(30)) <= Duration::from_secs(16), "{:?}", p.timeout(b, Duration::from_secs(30)));
        assert!(p.timeout(b, Duration::from_secs(30)) >= STALL_MAX + Duration::from_secs_f64(b as f64 / rate), "time to upload it");
    }

    #[test]
    fn a_fast_link_grows_the_request_to_the_app_s_limit() {
        let mut p = Pace::default();
        for _ in 0..20 {
            let b = p.batch_bytes(1_000_000);
            p.answered(b, Duration::from_millis(20));
        }
        assert_eq!(p.batch_bytes(1_000_000), 1_000_000);
    }

    #[test]
    fn a_fast_link_takes_the_app_s_limit_after_one_full_request() {
        // A backlog after an outage on a good link: the first request (40 KiB) measures the
        // link, the next carries what uploads in 2.5 s at that rate, capped by the app's limit.
        let mut p = Pace::default();
        p.answered(START_BYTES, Duration::from_millis(40)); // about 1 MB/s
        assert_eq!(p.batch_bytes(1_000_000), 1_000_000);
        // One message answered in its round trip only doubles the limit.
        let mut q = Pace::default();
        q.failed(START_BYTES, false);
        q.answered(700, Duration::from_millis(1));
        assert_eq!(q.batch_bytes(usize::MAX), START_BYTES);
    }

    #[test]
    fn failures_halve_the_request_down_to_one_message() {
        let mut p = Pace::default();
        p.failed(START_BYTES, true);
        assert_eq!(p.batch_bytes(usize::MAX), START_BYTES / 2);
        assert_eq!(p.rate(), ASSUMED_RATE / 2.0, "a timeout halves the rate assumed");
        for _ in 0..20 {
            let b = p.batch_bytes(usize::MAX);
            p.failed(b, false);
        }
        assert_eq!(p.batch_bytes(usize::MAX), MIN_BYTES);
        p.answered(MIN_BYTES, Duration::from_millis(100));
        assert!(p.batch_bytes(usize::MAX) > MIN_BYTES, "and grows back after a success");
    }

    #[test]
    fn a_small_request_never_drags_the_rate_down() {
        let mut p = Pace::default();
        p.answered(40_000, Duration::from_millis(100)); // 400 KB/s
        let before = p.rate();
        p.answered(700, Duration::from_millis(300)); // one message, mostly round trip
        assert_eq!(p.rate(), before);
    }

    #[test]
    fn the_mqtt_window_halves_on_a_cut_and_grows_back() {
        let mut w = Window::new(64);
        w.failed(0, 0);
        assert_eq!(w.size(), 64, "a clean end costs nothing");
        w.failed(60, 4);
        assert_eq!(w.size(), 4, "no more than the broken connection carried");
        w.failed(3, 9);
        assert_eq!(w.size(), MIN_WINDOW, "halved, down to its least");
        w.acked();
        w.acked();
        assert_eq!(w.size(), 3, "a window's worth acknowledged: one more");
        (0..10_000).for_each(|_| w.acked());
        assert_eq!(w.size(), 64, "capped at its largest");
    }
}
