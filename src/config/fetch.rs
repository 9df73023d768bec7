//! Fetching the migration config from `remoteConfigUrl`: conditional GETs (`If-None-Match`,
//! 304), a least interval between scheduled fetches, full-jitter backoff after failures that
//! honours `Retry-After`, no scheduled fetch while the app is in the background, and the whole
//! state persisted so a restart neither refetches early nor forgets a backoff.
//!
//! This module fetches; it does not apply. An attempt is [`Fetcher::begin`] (which holds the
//! state's lock, so two attempts never overlap), [`Attempt::get`] (the HTTP request, answering a
//! [`Response`]: a document, not modified, or a failure) and [`Attempt::finish`] (records the
//! result and draws the backoff). Parsing the document, the stale-version rule and applying it
//! are the publisher's. One `dualpub-worker` task ([`run`]) polls on schedule; `refreshConfig` (a
//! silent push) asks for an attempt now.

use crate::clock::Clock;
use crate::error::ConfigError;
use crate::http::without_url;
use crate::retry::Policy;
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{watch, Notify};

/// How one HTTP request may take, connection included.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(20);
/// How long `refreshConfig` may take in all, waiting for a fetch in progress included (an iOS
/// silent push gets about 30 s).
pub const REFRESH_TIMEOUT: Duration = Duration::from_secs(25);
/// The scheduler re-reads the clock at least this often (the wall clock may jump).
const RECHECK: Duration = Duration::from_secs(300);
/// The longest backoff, `Retry-After` included: a server cannot lock a device out for longer.
pub const BACKOFF_CAP_MS: i64 = Policy::CONFIG_FETCH.cap.as_millis() as i64;

/// What one fetch did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, uniffi::Enum)]
pub enum FetchResult {
    /// A new document was applied: this is its version.
    Applied {
        /// The document's `version`.
        version: u64,
    },
    /// The document in force is the server's (HTTP 304, or the same document again).
    NotModified,
    /// The server answered with a document the SDK refused (malformed, too large, older than
    /// one fetched before); the last known good stays in force. Retried after a backoff.
    Rejected {
        /// Why.
        reason: String,
    },
    /// No usable answer: network error, timeout, HTTP 429, 5xx or another unexpected status.
    /// Retried after a backoff.
    Failed {
        /// Why (no URL, no credentials).
        reason: String,
    },
    /// No attempt was made: an earlier failure's backoff lasts until `until_ms`.
    InBackoff {
        /// End of the backoff, ms since the epoch.
        until_ms: i64,
    },
    /// `SdkConfig.remoteConfigUrl` is not set.
    NotConfigured,
}

impl FetchResult {
    /// The `result` label of `dualpub_config_fetches_total`.
    pub fn label(&self) -> &'static str {
        match self {
            FetchResult::Applied { .. } => "applied",
            FetchResult::NotModified => "not_modified",
            FetchResult::Rejected { .. } => "rejected",
            FetchResult::Failed { .. } => "failed",
            FetchResult::InBackoff { .. } => "in_backoff",
            FetchResult::NotConfigured => "not_configured",
        }
    }

    /// Whether the fetch counts as a failure (starts or extends a backoff).
    pub fn is_failure(&self) -> bool {
        matches!(self, FetchResult::Rejected { .. } | FetchResult::Failed { .. })
    }
}

/// The fetcher's persisted state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct FetchState {
    /// The URL this state belongs to: a new `remoteConfigUrl` starts afresh.
    pub url: Option<String>,
    /// The ETag of the document fetched last, sent as `If-None-Match`.
    pub etag: Option<String>,
    /// The newest document version fetched so far (older ones are refused as stale).
    pub newest_version: Option<u64>,
    /// When the last attempt started.
    pub last_attempt_ms: Option<i64>,
    /// When the server last answered usefully (a document or 304).
    pub last_success_ms: Option<i64>,
    /// How the last attempt ended.
    pub last_result: Option<FetchResult>,
    /// Consecutive failed attempts.
    pub failures: u32,
    /// No attempt before this time.
    pub backoff_until_ms: Option<i64>,
}

impl FetchState {
    /// The end of the backoff in force at `now`, if any. A backoff that ends further away than
    /// [`BACKOFF_CAP_MS`] can only come from a clock that went back; it is ignored rather than
    /// locking the device out.
    pub fn backoff_until(&self, now_ms: i64) -> Option<i64> {
        self.backoff_until_ms.filter(|&u| u > now_ms && u - now_ms <= BACKOFF_CAP_MS)
    }

    /// When the next scheduled fetch is due: after the backoff, and `interval_ms` after the last
    /// successful fetch (at once if there was none, or if it lies in the future).
    pub fn next_due_ms(&self, now_ms: i64, interval_ms: i64) -> i64 {
        if let Some(until) = self.backoff_until(now_ms) {
            return until;
        }
        match self.last_success_ms {
            Some(t) if t <= now_ms => t.saturating_add(interval_ms),
            _ => now_ms,
        }
    }

    /// Records an attempt that ended at `now_ms`: a success clears the backoff, a failure draws
    /// the next one ([`Policy::CONFIG_FETCH`]), counted from the end so a slow failure still waits.
    pub fn record(&mut self, now_ms: i64, result: FetchResult, retry_after_ms: Option<i64>, rng: &mut impl Rng) {
        if result.is_failure() {
            self.failures = self.failures.saturating_add(1);
            let retry_after = retry_after_ms.map(|ms| Duration::from_millis(ms.max(0) as u64));
            let delay = Policy::CONFIG_FETCH.delay(self.failures, retry_after, rng);
            self.backoff_until_ms = Some(now_ms + delay.as_millis() as i64);
        } else {
            self.failures = 0;
            self.backoff_until_ms = None;
            self.last_success_ms = Some(now_ms);
        }
        self.last_result = Some(result);
    }
}

/// Why an attempt is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Trigger {
    /// The schedule: only if due, in the foreground and not in backoff.
    Schedule,
    /// `refreshConfig`: now, unless in backoff.
    Refresh,
}

/// The config fetcher of one publisher.
pub(crate) struct Fetcher {
    url: Option<reqwest::Url>,
    interval_ms: i64,
    http: reqwest::Client,
    clock: Arc<dyn Clock>,
    /// Held for a whole attempt: attempts never overlap.
    state: tokio::sync::Mutex<FetchState>,
    /// A copy of the state for `configStatus` (readable without waiting for an attempt).
    snapshot: Mutex<FetchState>,
    foreground: AtomicBool,
    wake: Notify,
    /// Attempts started so far (lets a waiting `refreshConfig` use a fetch that began after it).
    started: AtomicU64,
}

impl Fetcher {
    /// A fetcher for `url` (none: every attempt says `NotConfigured`) resuming from `state`, or
    /// starting afresh if `state` belongs to another URL (ETag, versions and backoff are the old
    /// server's). The flag says whether a saved state was dropped that way.
    pub fn new(url: Option<reqwest::Url>, interval_secs: u32, http: reqwest::Client, clock: Arc<dyn Clock>, state: FetchState) -> (Self, bool) {
        let url_text = url.as_ref().map(|u| u.to_string());
        let afresh = state.url != url_text && state != FetchState::default();
        let state = if state.url == url_text { state } else { FetchState { url: url_text, ..FetchState::default() } };
        let fetcher = Fetcher {
            started: AtomicU64::new(0),
            url,
            interval_ms: i64::from(interval_secs) * 1000,
            http,
            clock,
            snapshot: Mutex::new(state.clone()),
            state: tokio::sync::Mutex::new(state),
            foreground: AtomicBool::new(true),
            wake: Notify::new(),
        };
        (fetcher, afresh)
    }

    /// The state as of the last finished attempt.
    pub fn snapshot(&self) -> FetchState {
        self.snapshot.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// When the next scheduled fetch is due (`None` without a URL).
    pub fn next_due_ms(&self) -> Option<i64> {
        self.url.as_ref()?;
        let now = self.clock.now_ms();
        Some(self.snapshot().next_due_ms(now, self.interval_ms))
    }

    /// The clock the fetcher schedules by.
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// The app moved to the foreground (`true`) or the background. Scheduled fetches happen only
    /// in the foreground; coming back starts one at once if it is due.
    pub fn set_foreground(&self, foreground: bool) {
        self.foreground.store(foreground, Ordering::SeqCst);
        self.wake.notify_one();
    }

    /// Whether the app said it is in the foreground (the default).
    pub fn foreground(&self) -> bool {
        self.foreground.load(Ordering::SeqCst)
    }

    /// Starts an attempt: `Err` with the answer when none is made (`None`: the schedule did not
    /// call for one — not due, in the background or in backoff; with [`Trigger::Refresh`] always
    /// `Some`). A refresh that had to wait for the lock while another attempt started and ended
    /// gets that attempt's result. The attempt holds the fetcher's lock until it is finished.
    pub async fn begin(&self, trigger: Trigger) -> Result<Attempt<'_>, Option<FetchResult>> {
        let Some(url) = &self.url else {
            return Err((trigger == Trigger::Refresh).then_some(FetchResult::NotConfigured));
        };
        let asked = self.started.load(Ordering::SeqCst);
        let mut state = self.state.lock().await;
        let now = self.clock.now_ms();
        match trigger {
            Trigger::Schedule if !self.foreground() || state.next_due_ms(now, self.interval_ms) > now => return Err(None),
            Trigger::Refresh if self.started.load(Ordering::SeqCst) != asked => return Err(state.last_result.clone()),
            _ => {}
        }
        if let Some(until_ms) = state.backoff_until(now) {
            return Err(Some(FetchResult::InBackoff { until_ms }));
        }
        self.started.fetch_add(1, Ordering::SeqCst);
        state.last_attempt_ms = Some(now);
        Ok(Attempt { fetcher: self, url, state })
    }
}

/// What the config server answered.
#[derive(Debug)]
pub(crate) enum Response {
    /// HTTP 200 with a body of at most [`crate::config::MAX_DOCUMENT_BYTES`] UTF-8 bytes.
    Document {
        /// The body.
        text: String,
        /// Its ETag (at most 256 bytes), to send as `If-None-Match` once it is accepted.
        etag: Option<String>,
    },
    /// HTTP 304: the document in force is the server's.
    NotModified,
    /// A body the SDK refuses before parsing it (too large, not UTF-8).
    Refused(ConfigError),
    /// No usable answer (network error, timeout, 429, 5xx, another status).
    Failed {
        /// Why (no URL: it may carry a key).
        reason: String,
        /// The server's `Retry-After`, in ms.
        retry_after_ms: Option<i64>,
    },
}

/// One attempt in progress; holds the fetcher's lock.
pub(crate) struct Attempt<'a> {
    fetcher: &'a Fetcher,
    url: &'a reqwest::Url,
    state: tokio::sync::MutexGuard<'a, FetchState>,
}

impl Attempt<'_> {
    /// The newest document version fetched before (an older one must be refused as stale).
    pub fn newest_version(&self) -> Option<u64> {
        self.state.newest_version
    }

    /// The GET, conditional on the ETag of the document in force.
    pub async fn get(&self) -> Response {
        use reqwest::header::{ACCEPT, ETAG, IF_NONE_MATCH, RETRY_AFTER};
        let mut req = self.fetcher.http.get(self.url.clone()).timeout(FETCH_TIMEOUT).header(ACCEPT, "application/json");
        if let Some(etag) = &self.state.etag {
            req = req.header(IF_NONE_MATCH, etag.as_str());
        }
        let failed = |reason: String| Response::Failed { reason, retry_after_ms: None };
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => return failed(format!("network error: {}", without_url(&e))),
        };
        let status = resp.status().as_u16();
        let header = |name| resp.headers().get(name).and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok()).map(str::to_owned);
        let retry_after_ms = header(RETRY_AFTER).as_deref().and_then(crate::retry::parse_retry_after).map(|d| d.as_millis() as i64);
        let etag = header(ETAG).filter(|e| e.len() <= 256);
        match status {
            304 if self.state.etag.is_none() => return failed("HTTP 304 to a request without If-None-Match".into()),
            304 => return Response::NotModified,
            200 => {}
            _ => return Response::Failed { reason: format!("HTTP {status}"), retry_after_ms },
        }
        // Read no more than a document may have.
        let body = match crate::http::body_up_to(resp, crate::config::MAX_DOCUMENT_BYTES).await {
            Ok(Some(body)) => body,
            Ok(None) => return Response::Refused(ConfigError::TooLarge(crate::config::MAX_DOCUMENT_BYTES + 1)),
            Err(e) => return failed(format!("network error reading the document: {}", without_url(&e))),
        };
        match String::from_utf8(body) {
            Ok(text) => Response::Document { text, etag },
            Err(_) => Response::Refused(ConfigError::Malformed("the document is not UTF-8".into())),
        }
    }

    /// Records how the attempt ended (`accepted`: the version and ETag of a document the
    /// publisher accepted); returns the state to show and persist. The lock is released when
    /// the attempt is dropped.
    pub fn finish(&mut self, result: FetchResult, retry_after_ms: Option<i64>, accepted: Option<(u64, Option<String>)>) -> FetchState {
        let ended = self.fetcher.clock.now_ms();
        self.state.record(ended, result, retry_after_ms, &mut crate::retry::jitter_rng());
        if let Some((version, etag)) = accepted {
            // An accepted document: its ETag (or none) is the one to send from now on.
            self.state.etag = etag;
            self.state.newest_version = Some(self.state.newest_version.unwrap_or(0).max(version));
        }
        *self.fetcher.snapshot.lock().unwrap_or_else(|p| p.into_inner()) = self.state.clone();
        self.state.clone()
    }
}

/// The scheduled fetches of one publisher, on the SDK runtime, until shutdown: `attempt` runs
/// one scheduled attempt (the publisher's fetch-and-apply).
pub(crate) async fn run<F, Fut>(fetcher: &Fetcher, mut attempt: F, mut shutdown: watch::Receiver<bool>)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<FetchResult>>,
{
    if fetcher.url.is_none() {
        return;
    }
    loop {
        if *shutdown.borrow() {
            return;
        }
        let wait = if fetcher.foreground() {
            tokio::select! {
                _ = attempt() => {}
                _ = shutdown.changed() => return,
            }
            let now = fetcher.now_ms();
            let due = fetcher.next_due_ms().unwrap_or(now);
            Some(Duration::from_millis(due.saturating_sub(now).max(1000) as u64).min(RECHECK))
        } else {
            None // in the background only a wake (foreground, shutdown) starts anything
        };
        tokio::select! {
            _ = async { match wait { Some(w) => tokio::time::sleep(w).await, None => std::future::pending().await } } => {}
            _ = fetcher.wake.notified() => {}
            _ = shutdown.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn the_schedule_waits_for_the_interval_and_the_backoff() {
        let mut rng = rand::rngs::SmallRng::seed_from_u64(1);
        let interval = 900_000;
        let mut s = FetchState::default();
        assert_eq!(s.next_due_ms(1_000, interval), 1_000, "never fetched: due now");
        s.record(1_000, FetchResult::NotModified, None, &mut rng);
        assert_eq!(s.next_due_ms(2_000, interval), 901_000);
        s.record(901_000, FetchResult::Failed { reason: "HTTP 503".into() }, None, &mut rng);
        let until = s.backoff_until_ms.unwrap();
        assert!((911_000..=931_000).contains(&until), "{until}");
        assert_eq!(s.next_due_ms(905_000, interval), until);
        assert!(s.next_due_ms(until, interval) <= until, "backoff over: due at once");
        s.record(until, FetchResult::Applied { version: 3 }, None, &mut rng);
        assert_eq!((s.failures, s.backoff_until_ms, s.last_success_ms), (0, None, Some(until)));
    }

    #[test]
    fn a_clock_that_went_back_locks_nobody_out() {
        let mut s = FetchState { backoff_until_ms: Some(10 * BACKOFF_CAP_MS), last_success_ms: Some(i64::MAX / 2), ..Default::default() };
        assert_eq!(s.backoff_until(1_000), None);
        assert_eq!(s.next_due_ms(1_000, 900_000), 1_000);
        s.backoff_until_ms = Some(1_000 + BACKOFF_CAP_MS);
        assert_eq!(s.backoff_until(1_000), Some(1_000 + BACKOFF_CAP_MS));
    }

    #[test]
    fn the_state_survives_a_json_round_trip() {
        let s = FetchState {
            url: Some("https://c.example/x.json".into()),
            etag: Some("\"abc\"".into()),
            newest_version: Some(4),
            last_attempt_ms: Some(5),
            last_success_ms: Some(5),
            last_result: Some(FetchResult::Rejected { reason: "x".into() }),
            failures: 2,
            backoff_until_ms: Some(9),
        };
        assert_eq!(serde_json::from_str::<FetchState>(&serde_json::to_string(&s).unwrap()).unwrap(), s);
        assert_eq!(serde_json::from_str::<FetchState>("{}").unwrap(), FetchState::default());
    }
}
