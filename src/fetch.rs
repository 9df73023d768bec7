//! Fetching the migration config from `remoteConfigUrl`: conditional GETs (`If-None-Match`,
//! 304), a least interval between scheduled fetches, full-jitter backoff after failures that
//! honours `Retry-After`, no scheduled fetch while the app is in the background, and the whole
//! state persisted so a restart neither refetches early nor forgets a backoff.
//!
//! One `dualpub-worker` task ([`run`]) polls on schedule; `refreshConfig` (a silent push) asks
//! for a fetch now. Both go through [`Fetcher::attempt`], which holds the state's lock for the
//! whole attempt, so two fetches never overlap.

use crate::clock::Clock;
use crate::error::ConfigError;
use crate::publisher::Shared;
use crate::remote::ConfigSource;
use crate::rollout::RolloutDecision;
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{watch, Notify};

/// The first backoff ceiling after a failed fetch; it doubles with every further failure.
pub const BACKOFF_BASE_MS: i64 = 30_000;
/// The shortest backoff: even an unlucky draw waits this long.
pub const BACKOFF_FLOOR_MS: i64 = 10_000;
/// The longest backoff, `Retry-After` included: a server cannot lock a device out for longer.
pub const BACKOFF_CAP_MS: i64 = 3_600_000;
/// How long one HTTP request may take, connection included.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(20);
/// How long `refreshConfig` may take in all, waiting for a fetch in progress included (an iOS
/// silent push gets about 30 s).
pub const REFRESH_TIMEOUT: Duration = Duration::from_secs(25);
/// The scheduler re-reads the clock at least this often (the wall clock may jump).
const RECHECK: Duration = Duration::from_secs(300);

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
    /// the next one (see [`backoff_delay_ms`]), counted from the end so a slow failure still waits.
    pub fn record(&mut self, now_ms: i64, result: FetchResult, retry_after_ms: Option<i64>, rng: &mut impl Rng) {
        if result.is_failure() {
            self.failures = self.failures.saturating_add(1);
            self.backoff_until_ms = Some(now_ms + backoff_delay_ms(self.failures, retry_after_ms, rng));
        } else {
            self.failures = 0;
            self.backoff_until_ms = None;
            self.last_success_ms = Some(now_ms);
        }
        self.last_result = Some(result);
    }
}

/// The ceiling of the backoff after `failures` consecutive failures (≥ 1):
/// `min(cap, base × 2^(failures − 1))` = 30 s, 60 s, 2 min, … 1 h.
pub fn backoff_ceiling_ms(failures: u32) -> i64 {
    let doublings = failures.saturating_sub(1).min(20);
    (BACKOFF_BASE_MS << doublings).min(BACKOFF_CAP_MS)
}

/// The backoff after `failures` consecutive failures: full jitter between the floor and the
/// ceiling, so a fleet that failed together does not come back together. A `Retry-After` is
/// honoured, plus up to a fifth more so the fleet does not return in step; all up to the cap.
pub fn backoff_delay_ms(failures: u32, retry_after_ms: Option<i64>, rng: &mut impl Rng) -> i64 {
    let ceiling = backoff_ceiling_ms(failures).max(BACKOFF_FLOOR_MS);
    let jittered = rng.random_range(BACKOFF_FLOOR_MS..=ceiling);
    match retry_after_ms {
        Some(ra) if ra > jittered => (ra + rng.random_range(0..=ra / 5)).min(BACKOFF_CAP_MS),
        _ => jittered,
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
    started: std::sync::atomic::AtomicU64,
}

impl Fetcher {
    /// A fetcher for `url` (none: every attempt says `NotConfigured`) resuming from `state`, or
    /// starting afresh if `state` belongs to another URL (ETag, versions and backoff are the old
    /// server's).
    pub fn new(url: Option<reqwest::Url>, interval_secs: u32, http: reqwest::Client, clock: Arc<dyn Clock>, state: FetchState) -> Self {
        let url_text = url.as_ref().map(|u| u.to_string());
        let state = if state.url == url_text {
            state
        } else {
            if state != FetchState::default() {
                log::info!("dualpub remoteConfigUrl changed: the fetch state starts afresh");
            }
            FetchState { url: url_text, ..FetchState::default() }
        };
        Fetcher {
            started: std::sync::atomic::AtomicU64::new(0),
            url,
            interval_ms: i64::from(interval_secs) * 1000,
            http,
            clock,
            snapshot: Mutex::new(state.clone()),
            state: tokio::sync::Mutex::new(state),
            foreground: AtomicBool::new(true),
            wake: Notify::new(),
        }
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

    /// One attempt. `None` when the schedule did not call for one (not due, in the background
    /// or in backoff); with [`Trigger::Refresh`] always `Some`. A refresh that had to wait for
    /// the lock while another attempt started and ended returns that attempt's result.
    pub async fn attempt(&self, shared: &Shared, trigger: Trigger) -> Option<FetchResult> {
        let Some(url) = &self.url else {
            return (trigger == Trigger::Refresh).then_some(FetchResult::NotConfigured);
        };
        let asked = self.started.load(Ordering::SeqCst);
        let (result, change) = {
            let mut state = self.state.lock().await;
            let now = self.clock.now_ms();
            match trigger {
                Trigger::Schedule if !self.foreground() || state.next_due_ms(now, self.interval_ms) > now => return None,
                Trigger::Refresh if self.started.load(Ordering::SeqCst) != asked => return state.last_result.clone(),
                _ => {}
            }
            if let Some(until_ms) = state.backoff_until(now) {
                return Some(FetchResult::InBackoff { until_ms });
            }
            self.started.fetch_add(1, Ordering::SeqCst);
            state.last_attempt_ms = Some(now);
            let answer = self.fetch(shared, url, &state).await;
            if shared.lock().closed {
                // Closed meanwhile: nothing to record, nobody to tell.
                return Some(FetchResult::Failed { reason: "the publisher is closed".into() });
            }
            let result = answer.result;
            let ended = self.clock.now_ms();
            state.record(ended, result.clone(), answer.retry_after_ms, &mut rand::rng());
            if let Some(v) = answer.version {
                // An accepted document: its ETag (or none) is the one to send from now on.
                state.etag = answer.etag;
                state.newest_version = Some(state.newest_version.unwrap_or(0).max(v));
            }
            shared.metrics.config_fetched(result.label());
            let level = if result.is_failure() { log::Level::Warn } else { log::Level::Info };
            shared.event(level, "config_fetch", || match state.backoff_until_ms {
                Some(until) if result.is_failure() => format!("{result:?}; next attempt in {} s", (until - ended) / 1000),
                _ => format!("{result:?}"),
            });
            *self.snapshot.lock().unwrap_or_else(|p| p.into_inner()) = state.clone();
            if let Ok(json) = serde_json::to_string(&*state) {
                shared.lock().outbox.persist_fetch_state(json);
            }
            (result, answer.change)
        };
        // The listener hears of a change once no fetcher lock is held (it may call refreshConfig).
        if let Some((old, new)) = change {
            shared.tell_listener(old, new);
        }
        Some(result)
    }

    /// The GET itself and what follows from its answer.
    async fn fetch(&self, shared: &Shared, url: &reqwest::Url, state: &FetchState) -> Answer {
        use reqwest::header::{ACCEPT, ETAG, IF_NONE_MATCH, RETRY_AFTER};
        let mut req = self.http.get(url.clone()).timeout(FETCH_TIMEOUT).header(ACCEPT, "application/json");
        if let Some(etag) = &state.etag {
            req = req.header(IF_NONE_MATCH, etag.as_str());
        }
        let failed = |reason: String| Answer::only(FetchResult::Failed { reason });
        let refused = |e: ConfigError| {
            shared.config_refused(&e);
            Answer::only(FetchResult::Rejected { reason: e.to_string() })
        };
        let mut resp = match req.send().await {
            Ok(r) => r,
            Err(e) => return failed(format!("network error: {}", crate::transport::pubsub::without_url(&e))),
        };
        let status = resp.status().as_u16();
        let header = |name| resp.headers().get(name).and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok()).map(str::to_owned);
        let retry_after_ms = header(RETRY_AFTER).as_deref().and_then(crate::retry::parse_retry_after).map(|d| d.as_millis() as i64);
        let etag = header(ETAG).filter(|e| e.len() <= 256);
        match status {
            304 if state.etag.is_none() => return failed("HTTP 304 to a request without If-None-Match".into()),
            304 => return Answer::only(FetchResult::NotModified),
            200 => {}
            _ => return Answer { retry_after_ms, ..failed(format!("HTTP {status}")) },
        }
        // Read at most one byte more than a document may have.
        let mut body = Vec::new();
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    body.extend_from_slice(&chunk);
                    if body.len() > crate::config::MAX_DOCUMENT_BYTES {
                        return refused(ConfigError::TooLarge(body.len()));
                    }
                }
                Ok(None) => break,
                Err(e) => return failed(format!("network error reading the document: {}", crate::transport::pubsub::without_url(&e))),
            }
        }
        let Ok(text) = String::from_utf8(body) else {
            return refused(ConfigError::Malformed("the document is not UTF-8".into()));
        };
        match apply(shared, &text, state.newest_version) {
            Ok((result, version, change)) => Answer { result, retry_after_ms: None, etag, version: Some(version), change },
            Err(e) => Answer::only(FetchResult::Rejected { reason: e.to_string() }),
        }
    }
}

/// How a fetch ended: the result, the server's `Retry-After` (ms), and for an accepted document
/// its ETag, its version and the change of decision it made.
struct Answer {
    result: FetchResult,
    retry_after_ms: Option<i64>,
    etag: Option<String>,
    version: Option<u64>,
    change: Option<(RolloutDecision, RolloutDecision)>,
}

impl Answer {
    fn only(result: FetchResult) -> Self {
        Answer { result, retry_after_ms: None, etag: None, version: None, change: None }
    }
}

/// Parses and applies a fetched document; refused (and counted) if it is older than one fetched
/// before. Returns the result, the document's version and the change of decision, if any.
type Applied = (FetchResult, u64, Option<(RolloutDecision, RolloutDecision)>);
fn apply(shared: &Shared, text: &str, newest: Option<u64>) -> Result<Applied, crate::DualPubError> {
    let config = shared.parse_document(text)?;
    let version = config.version;
    if let Some(newest) = newest.filter(|&n| version < n) {
        let e = ConfigError::StaleVersion { version, newest };
        shared.config_refused(&e);
        return Err(e.into());
    }
    if shared.active().config == config {
        return Ok((FetchResult::NotModified, version, None));
    }
    let (_, change) = shared.apply_quietly(config, ConfigSource::Fetched)?;
    Ok((FetchResult::Applied { version }, version, change))
}

/// The scheduled fetches of one publisher, on the SDK runtime, until shutdown.
pub(crate) async fn run(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let fetcher = &shared.fetcher;
    if fetcher.url.is_none() {
        return;
    }
    loop {
        if *shutdown.borrow() {
            return;
        }
        let wait = if fetcher.foreground() {
            tokio::select! {
                _ = fetcher.attempt(&shared, Trigger::Schedule) => {}
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
    fn the_backoff_doubles_from_30_s_to_an_hour_with_jitter_above_the_floor() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let ceilings: Vec<i64> = (1..=9).map(backoff_ceiling_ms).collect();
        assert_eq!(ceilings, [30_000, 60_000, 120_000, 240_000, 480_000, 960_000, 1_920_000, 3_600_000, 3_600_000]);
        for failures in 1..40 {
            let mut seen = std::collections::BTreeSet::new();
            for _ in 0..200 {
                let d = backoff_delay_ms(failures, None, &mut rng);
                assert!((BACKOFF_FLOOR_MS..=backoff_ceiling_ms(failures)).contains(&d), "{failures}: {d}");
                seen.insert(d);
            }
            assert!(seen.len() > 100, "full jitter spreads the fleet: {}", seen.len());
        }
        // Retry-After lengthens the wait (plus up to a fifth, spread), within the cap.
        for _ in 0..100 {
            assert!((120_000..=144_000).contains(&backoff_delay_ms(1, Some(120_000), &mut rng)));
            assert!((BACKOFF_FLOOR_MS..=backoff_ceiling_ms(1)).contains(&backoff_delay_ms(1, Some(1_000), &mut rng)));
        }
        assert_eq!(backoff_delay_ms(1, Some(86_400_000), &mut rng), BACKOFF_CAP_MS);
    }

    #[test]
    fn the_schedule_waits_for_the_interval_and_the_backoff() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
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
