//! Debug mode (the migration config's `debugMode`, docs/CONTRACT.md#config-fields):
//! switched by the remote config or locally; raises the log level, streams rate-limited events
//! to a [`DebugListener`] the app may register (for an in-app debug screen), and keeps the recent
//! warnings and errors for `debugReport()`.
//!
//! [`Events`] is the one funnel every log line of a publisher goes through: it logs, keeps what
//! `debugReport()` shows and feeds the debug listener.
//! Coordinates are rounded to about 1 km unless the app opts in; tokens and passwords are never
//! part of any message.

use crate::error::{DualPubError, Error};
use std::collections::VecDeque;
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::broadcast;

/// Events per second a listener receives at most (bursts up to [`BURST`]).
pub const EVENTS_PER_SECOND: f64 = 20.0;
/// Largest burst of events.
pub const BURST: f64 = 50.0;
/// Warnings and errors kept for `debugReport()`.
pub const RECENT: usize = 20;
/// Debug events a stream may fall behind by before it loses the oldest.
pub const STREAM_CAPACITY: usize = 256;

/// One thing the SDK did, for an in-app debug screen.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct DebugEvent {
    /// Wall clock, ms since the epoch.
    pub timestamp_ms: i64,
    /// `error`, `warn`, `info` or `debug`.
    pub level: String,
    /// What kind of event: `accepted`, `mqtt`, `pubsub`, `config`, `storage`, …
    pub kind: String,
    /// A human sentence (coordinates rounded unless opted in; never a token or password).
    pub message: String,
}

/// Implemented by the app to receive debug events while debug mode is on. Called on an SDK
/// thread (`dualpub-debug`), never the main thread; must return quickly.
#[uniffi::export(foreign)]
pub trait DebugListener: Send + Sync {
    /// One event.
    fn on_debug_event(&self, event: DebugEvent);
}

/// A token bucket.
struct RateLimit {
    tokens: f64,
    at: Instant,
}

impl RateLimit {
    fn allow(&mut self) -> bool {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.at).as_secs_f64() * EVENTS_PER_SECOND).min(BURST);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The debug side of one publisher.
pub struct Debug {
    inner: Mutex<Inner>,
}

struct Inner {
    sink: Option<SyncSender<DebugEvent>>,
    /// The debug event streams' channel (`DualPublisher.debugEvents`): bounded, a slow stream
    /// loses the oldest (counted by the stream in `dropped`).
    stream: broadcast::Sender<DebugEvent>,
    limit: RateLimit,
    dropped: u64,
    recent: VecDeque<String>,
}

impl Default for Debug {
    fn default() -> Self {
        Debug {
            inner: Mutex::new(Inner {
                sink: None,
                stream: broadcast::Sender::new(STREAM_CAPACITY),
                limit: RateLimit { tokens: BURST, at: Instant::now() },
                dropped: 0,
                recent: VecDeque::new(),
            }),
        }
    }
}

impl Debug {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers (or with `None` removes) the listener; events go to it from a thread of its own.
    pub fn set_listener(&self, listener: Option<Arc<dyn DebugListener>>) {
        let sink = listener.and_then(|l| {
            let (tx, rx) = sync_channel::<DebugEvent>(256);
            std::thread::Builder::new()
                .name("dualpub-debug".into())
                .spawn(move || {
                    for event in rx {
                        let l = l.clone();
                        // An app callback that throws or panics must not take the SDK down.
                        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || l.on_debug_event(event)));
                    }
                })
                .ok()
                .map(|_| tx)
        });
        self.lock().sink = sink;
    }

    /// Logs `message` at `level`, keeps warnings and errors for the report, and, in debug mode,
    /// sends it to the listener (rate-limited; what the limit drops is counted).
    pub fn event(&self, debug_mode: bool, level: log::Level, kind: &str, message: String) {
        log::log!(level, "dualpub {kind}: {message}");
        let mut i = self.lock();
        if level <= log::Level::Warn {
            if i.recent.len() == RECENT {
                i.recent.pop_front();
            }
            i.recent.push_back(format!("{} {level} {kind}: {message}", crate::clock::now_ms()));
        }
        if !debug_mode || (i.sink.is_none() && i.stream.receiver_count() == 0) {
            return;
        }
        if !i.limit.allow() {
            i.dropped += 1;
            return;
        }
        let e = DebugEvent { timestamp_ms: crate::clock::now_ms(), level: level.as_str().to_ascii_lowercase(), kind: kind.into(), message };
        let _ = i.stream.send(e.clone()); // no stream: nobody to tell
        if let Some(sink) = &i.sink {
            if let Err(TrySendError::Full(_)) = sink.try_send(e) {
                i.dropped += 1;
            }
        }
    }

    /// A new stream of the events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<DebugEvent> {
        self.lock().stream.subscribe()
    }

    /// A stream missed `n` events (it fell behind by more than the channel holds).
    pub fn missed(&self, n: u64) {
        self.lock().dropped += n;
    }

    /// The recent warnings and errors, oldest first.
    pub fn recent(&self) -> Vec<String> {
        self.lock().recent.iter().cloned().collect()
    }

    /// Events the rate limit (or a slow listener) dropped.
    pub fn dropped(&self) -> u64 {
        self.lock().dropped
    }
}

/// The one funnel for a publisher's log lines: the platform log, `debugReport()`'s recent
/// errors, and (in debug mode) the app's [`DebugListener`].
#[derive(Default)]
pub(crate) struct Events {
    debug: Debug,
    /// Debug mode in force (the config's `debugMode`, unless the app set it locally).
    on: std::sync::atomic::AtomicBool,
}

impl Events {
    /// Logs a failure through this funnel (so `debugReport()` shows it) when
    /// [`Error::log_level`] says so, and returns the public error.
    pub(crate) fn failed(&self, e: Error) -> DualPubError {
        if let Some(level) = e.log_level() {
            self.event(level, e.kind(), || e.to_string());
        }
        e.into()
    }

    /// Logs an event and, in debug mode, streams it to the app's debug listener. `message` is
    /// only formatted when someone will see it.
    pub fn event(&self, level: log::Level, kind: &str, message: impl FnOnce() -> String) {
        let debug = self.debug_mode();
        if level <= log::max_level() || level <= log::Level::Warn || debug {
            // Bounded: a hostile value quoted in a message must not flood logs or the report.
            self.debug.event(debug, level, kind, crate::error::bounded_log(message()));
        }
    }

    /// Whether debug mode is on.
    pub fn debug_mode(&self) -> bool {
        self.on.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Switches debug mode; returns whether it changed.
    pub fn set_debug_mode(&self, on: bool) -> bool {
        self.on.swap(on, std::sync::atomic::Ordering::SeqCst) != on
    }

    /// Registers (or with `None` removes) the app's listener.
    pub fn set_listener(&self, listener: Option<Arc<dyn DebugListener>>) {
        self.debug.set_listener(listener);
    }

    /// The recent warnings and errors, oldest first.
    pub fn recent(&self) -> Vec<String> {
        self.debug.recent()
    }

    /// Events the rate limit (or a slow listener) dropped.
    pub fn dropped(&self) -> u64 {
        self.debug.dropped()
    }

    /// A new stream of debug events (see [`Debug::subscribe`]).
    pub fn subscribe(&self) -> broadcast::Receiver<DebugEvent> {
        self.debug.subscribe()
    }

    /// A stream missed `n` events.
    pub fn missed(&self, n: u64) {
        self.debug.missed(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Collect(Mutex<Vec<DebugEvent>>);
    impl DebugListener for Collect {
        fn on_debug_event(&self, event: DebugEvent) {
            self.0.lock().unwrap().push(event);
        }
    }

    #[test]
    fn events_are_rate_limited_and_recent_errors_kept() {
        let d = Debug::default();
        let c = Arc::new(Collect(Mutex::new(Vec::new())));
        d.set_listener(Some(c.clone()));
        for n in 0..200 {
            d.event(true, log::Level::Info, "test", format!("event {n}"));
        }
        d.event(false, log::Level::Error, "test", "not streamed outside debug mode".into());
        std::thread::sleep(std::time::Duration::from_millis(200));
        let got = c.0.lock().unwrap().len();
        assert!((50..=60).contains(&got), "burst of 50 (+ refill), got {got}");
        assert!(d.dropped() >= 140);
        assert_eq!(d.recent().len(), 1, "only warnings and errors are kept");
        assert!(d.recent()[0].contains("not streamed"));
    }

    #[test]
    fn the_sdks_own_failures_are_logged_and_reach_the_debug_report() {
        let events = Events::default();
        let _ = events.failed(Error::Sqlite(rusqlite::Error::InvalidQuery));
        let _ = events.failed(Error::Validation(crate::error::ValidationError::TimestampInFuture));
        let recent = events.recent();
        assert_eq!(recent.len(), 1, "{recent:?}");
        assert!(recent[0].contains("storage") && recent[0].contains("reading the outbox"), "{recent:?}");
    }
}
