//! The pure-Rust core behind the exported `DualPublisher`: accepts locations, keeps the
//! decision in force, and hands work to the two transport tasks. See ARCHITECTURE.md for the
//! flow of one location and the threads.

use crate::config::{MigrationConfig, SdkConfig};
use crate::error::DualPubError;
use crate::location::Location;
use crate::metrics::{Gauges, Metrics, MetricsSnapshot};
use crate::outbox::{Completed, DeadLetter, Outbox, Row, Transport};
use crate::rollout::{decide, RolloutDecision};
use crate::token::{TokenCache, TokenProvider};
use crate::transport::{mqtt, pubsub};
use crate::{clock, runtime, store, wire};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::{watch, Notify};

/// What `flush` achieved.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct FlushReport {
    /// Every location accepted before the call was acknowledged by every transport owing it.
    pub completed: bool,
    /// Of those, still owed to MQTT.
    pub pending_mqtt: u64,
    /// Of those, still owed to Pub/Sub.
    pub pending_pubsub: u64,
    /// How long the call waited.
    pub elapsed_ms: u64,
}

/// The config in force and the decision it gives this device.
#[derive(Debug, Clone)]
pub(crate) struct Active {
    pub config: MigrationConfig,
    pub decision: RolloutDecision,
    pub source: crate::remote::ConfigSource,
    pub applied_at_ms: i64,
}

/// Everything behind the outbox lock. The decision lives here too, so that a location accepted
/// after `apply_config` returns is routed by the new decision, never the old one.
pub(crate) struct State {
    pub outbox: Outbox,
    pub next_seq: u64,
    /// Every location with a sequence number up to this one is on disk.
    pub durable_seq: u64,
    pub active: Arc<Active>,
    pub closed: bool,
}

/// State shared by the API and the transport tasks.
pub(crate) struct Shared {
    pub settings: SdkConfig,
    pub state: Mutex<State>,
    /// Signalled whenever rows leave the outbox (for `flush`).
    pub progress: Condvar,
    pub metrics: Metrics,
    pub wake_mqtt: Notify,
    pub wake_pubsub: Notify,
    /// Pub/Sub sends rows up to this sequence number at once instead of waiting for the
    /// latency limit (set by `flush`).
    pub flush_target: AtomicU64,
    /// Debug mode in force (the config's `debugMode`, unless the app set it locally).
    pub debug_mode: AtomicBool,
    /// `setDebugMode` from the app, which wins over the config.
    pub debug_local: Mutex<Option<bool>>,
    /// The app opted in to precise coordinates in debug output.
    pub precise_coordinates: AtomicBool,
    /// Debug events, listener and recent errors.
    pub debug: crate::debug::Debug,
    /// The app's listener for decision changes.
    pub config_listener: Mutex<Option<Arc<dyn crate::remote::ConfigListener>>>,
    /// Config documents or values refused since start-up.
    pub config_rejected: AtomicU64,
    /// Fetches the migration config from `remoteConfigUrl`.
    pub fetcher: crate::fetch::Fetcher,
}

impl Shared {
    /// Locks the state; a poisoned lock (a panic elsewhere) is recovered, never propagated.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records rows that left the outbox while the lock `st` is still held (so a `flush` that
    /// sees them gone also sees them counted), then releases it and wakes `flush` waiters.
    pub fn completed(&self, st: MutexGuard<'_, State>, done: &[Completed]) {
        for c in done {
            if let Some(o) = c.outcome {
                self.metrics.outcome(o);
            }
        }
        drop(st);
        self.progress.notify_all();
    }

    /// Acknowledges rows for `t`, recording latency from acceptance.
    pub fn ack(&self, t: Transport, acked: &[(u64, Instant)]) {
        let now = Instant::now();
        let seqs: Vec<u64> = acked.iter().map(|(s, _)| *s).collect();
        let mut st = self.lock();
        let done = st.outbox.ack(t, &seqs);
        self.metrics.published(t, acked.iter().map(|(_, at)| now.duration_since(*at).as_secs_f64() * 1000.0));
        self.completed(st, &done);
    }

    /// Logs an event and, in debug mode, streams it to the app's debug listener.
    pub fn event(&self, level: log::Level, kind: &str, message: impl FnOnce() -> String) {
        let debug = self.debug_mode.load(Ordering::Relaxed);
        if level <= log::max_level() || level <= log::Level::Warn || debug {
            self.debug.event(debug, level, kind, message());
        }
    }

    /// Recomputes debug mode from the config and the app's local switch; takes effect at once
    /// (log level and event stream).
    pub fn refresh_debug_mode(&self, config_debug: bool) {
        let local = *self.debug_local.lock().unwrap_or_else(|p| p.into_inner());
        let on = local.unwrap_or(config_debug);
        let was = self.debug_mode.swap(on, Ordering::SeqCst);
        if was != on {
            crate::logging::debug_mode_changed(on);
            self.event(log::Level::Info, "debug", || format!("debug mode {}", if on { "on" } else { "off" }));
        }
    }

    /// Wakes the task of transport `t`.
    pub fn wake(&self, t: Transport) {
        match t {
            Transport::Mqtt => self.wake_mqtt.notify_one(),
            Transport::PubSub => self.wake_pubsub.notify_one(),
        }
    }

    /// The decision in force.
    pub fn active(&self) -> Arc<Active> {
        self.lock().active.clone()
    }

    /// Applies the outbox caps: the oldest locations beyond them are dropped, counted and logged.
    pub fn enforce_limits(&self, st: &mut State) {
        let max_age = Duration::from_secs(u64::from(self.settings.max_outbox_age_hours) * 3600);
        for (why, n) in st.outbox.evict(self.settings.max_outbox_rows as usize, max_age) {
            self.metrics.dropped(why.as_str(), n);
            self.event(log::Level::Warn, "dropped", || format!("{n} location(s): {}", why.as_str()));
        }
    }

    /// Counts and logs a refused config.
    pub fn config_refused(&self, e: &crate::error::ConfigError) {
        self.config_rejected.fetch_add(1, Ordering::SeqCst);
        self.metrics.config_rejected(e.metric_reason(), 1);
        self.event(log::Level::Warn, "config", || format!("refused a config: {e}"));
    }

    /// Parses a config document (GUIDE §4): refused whole (and counted) if malformed; invalid
    /// overrides and forbidden fields are left out, counted and logged.
    pub fn parse_document(&self, json: &str) -> Result<MigrationConfig, crate::error::ConfigError> {
        let parsed = MigrationConfig::parse(json).inspect_err(|e| self.config_refused(e))?;
        for why in &parsed.skipped {
            self.metrics.config_rejected("invalid_override", 1);
            self.event(log::Level::Warn, "config", || format!("skipped an invalid override: {why}"));
        }
        for why in &parsed.ignored {
            self.metrics.config_rejected("ignored_field", 1);
            self.event(log::Level::Warn, "config", || format!("ignored {why}"));
        }
        Ok(parsed.config)
    }

    /// Applies `config` at once (from `source`); returns the new decision. An invalid config is
    /// refused and counted, and the one in force stays. The app's `ConfigListener` hears of a
    /// change before this returns, on this thread.
    pub fn apply(&self, config: MigrationConfig, source: crate::remote::ConfigSource) -> Result<RolloutDecision, DualPubError> {
        let (decision, change) = self.apply_quietly(config, source)?;
        if let Some((old, new)) = change {
            self.tell_listener(old, new);
        }
        Ok(decision)
    }

    /// Tells the app's `ConfigListener` (if any) that the decision changed; whatever it throws
    /// or panics with stays here.
    pub fn tell_listener(&self, old: RolloutDecision, new: RolloutDecision) {
        let listener = self.config_listener.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(l) = listener {
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || l.on_decision_changed(old, new)));
        }
    }

    /// As [`Shared::apply`], leaving the listener to the caller: returns the new decision and,
    /// if it changed, (old, new) to tell the listener once the caller holds no lock.
    pub fn apply_quietly(
        &self,
        config: MigrationConfig,
        source: crate::remote::ConfigSource,
    ) -> Result<(RolloutDecision, Option<(RolloutDecision, RolloutDecision)>), DualPubError> {
        config.validate().inspect_err(|e| self.config_refused(e))?;
        let s = &self.settings;
        let decision = decide(&config, &s.device_id, s.company_id.as_deref());
        let mut st = self.lock();
        if st.closed {
            return Err(DualPubError::Closed);
        }
        let applied_at_ms = clock::now_ms();
        st.outbox.persist_config(store::StoredConfig { json: config.to_json().to_string(), source: source.as_str().into(), applied_at_ms });
        let old = std::mem::replace(&mut st.active, Arc::new(Active { config, decision: decision.clone(), source, applied_at_ms }));
        // A decision that stops Pub/Sub (an emergency above all) also stops what is queued
        // for it; MQTT takes over anything that would otherwise be owed to nobody.
        let done = if old.decision.pubsub_enabled && !decision.pubsub_enabled {
            st.outbox.stop_owing(Transport::PubSub, Transport::Mqtt)
        } else {
            Vec::new()
        };
        let config_debug = st.active.config.debug_mode;
        self.completed(st, &done);
        self.refresh_debug_mode(config_debug);
        let change = (old.decision != decision).then(|| (old.decision.clone(), decision.clone()));
        if change.is_some() {
            self.metrics.decision_changed();
            self.event(log::Level::Info, "config", || {
                format!(
                    "decision changed (config v{} -> v{}): mqtt {} -> {}, pubsub {} -> {}, reason {} -> {}",
                    old.decision.config_version,
                    decision.config_version,
                    old.decision.mqtt_enabled,
                    decision.mqtt_enabled,
                    old.decision.pubsub_enabled,
                    decision.pubsub_enabled,
                    old.decision.reason.as_str(),
                    decision.reason.as_str()
                )
            });
        }
        self.wake(Transport::Mqtt);
        self.wake(Transport::PubSub);
        Ok((decision, change))
    }

    /// Called by the store thread after each group commit.
    fn committed(&self, commit: store::Commit) {
        {
            let mut st = self.lock();
            // Durable, or the disk failed: either way the transports may have them now.
            st.outbox.make_visible(&commit.durable);
            match &commit.failed {
                None => {
                    if let Some(&max) = commit.durable.iter().max() {
                        st.durable_seq = st.durable_seq.max(max);
                    }
                }
                Some(e) => {
                    self.metrics.storage_error();
                    self.event(log::Level::Error, "storage", || format!("cannot persist the outbox ({e}); delivering from memory and retrying"));
                }
            }
        }
        self.progress.notify_all();
        if !commit.durable.is_empty() {
            self.wake(Transport::Mqtt);
            self.wake(Transport::PubSub);
        }
    }
}

/// Starts the `dualpub-store` thread; the returned receiver fires when it has finished.
fn start_store_writer(
    db: store::Store,
    rx: std::sync::mpsc::Receiver<store::Msg>,
    shared: std::sync::Weak<Shared>,
) -> Result<std::sync::mpsc::Receiver<()>, DualPubError> {
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("dualpub-store".into())
        .spawn(move || {
            store::run_writer(db, rx, |commit| {
                if let Some(shared) = shared.upgrade() {
                    shared.committed(commit);
                }
            });
            let _ = done_tx.send(());
        })
        .map_err(|e| DualPubError::Internal { reason: format!("cannot start the store thread: {e}") })?;
    Ok(done_rx)
}

/// The SDK core. Cheap to call from any thread: `send_location(s)`, `apply_config*`,
/// `decision` and `metrics` never touch the network or the disk. `new` opens the outbox
/// database (a few ms), `flush` and `await_durable` wait by design, and `close` waits for the
/// last commit: call those off the UI thread.
pub struct Publisher {
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    /// The store writer's channel (to stop it) and the signal it sends when done.
    store_tx: std::sync::mpsc::Sender<store::Msg>,
    store_done: Mutex<Option<std::sync::mpsc::Receiver<()>>>,
}

/// How long `close` waits for the last group commit.
const CLOSE_PERSIST_TIMEOUT: Duration = Duration::from_secs(5);

impl Publisher {
    /// Validates `config`, starts the transport tasks on the SDK runtime and returns at once;
    /// connections are made in the background.
    pub fn new(config: SdkConfig, token_provider: Option<Arc<dyn TokenProvider>>) -> Result<Self, DualPubError> {
        Self::with_clock(config, token_provider, Arc::new(crate::clock::SystemClock))
    }

    /// As [`Publisher::new`], with the clock the config fetcher schedules by (a
    /// [`crate::clock::ManualClock`] lets a test or simulation move time at will).
    pub fn with_clock(config: SdkConfig, token_provider: Option<Arc<dyn TokenProvider>>, clock: Arc<dyn crate::clock::Clock>) -> Result<Self, DualPubError> {
        crate::logging::init();
        config.validate()?;
        let mqtt_options = mqtt::options(&config)?;
        let http = pubsub::http_client(&config)?;
        let rt = runtime::handle()?;

        // The outbox database: opened here (a few ms), written only by the store thread.
        let (db, report) = store::Store::open(std::path::Path::new(&config.data_dir), config.max_storage_bytes)
            .map_err(|e| DualPubError::Storage { reason: e.to_string() })?;
        let load = |e: rusqlite::Error| DualPubError::Storage { reason: format!("reading the outbox: {e}") };
        let rows = db.load_rows().map_err(load)?;
        let dead_letters = db.load_dead_letters().map_err(load)?;
        let max_seq = db.max_seq().map_err(load)?;
        // The last known good config wins over the one compiled into the app: an emergency
        // rollback reaches a phone that starts offline.
        let persisted = match db.load_config().map_err(load)? {
            Some(stored) => match MigrationConfig::from_json(&stored.json) {
                Ok(c) => Some((c, stored.applied_at_ms)),
                Err(e) => {
                    log::error!("dualpub ignores its persisted config ({e})");
                    None
                }
            },
            None => None,
        };
        let mut fetch_state: crate::fetch::FetchState = match db.load_fetch_state().map_err(load)? {
            Some(json) => serde_json::from_str(&json).unwrap_or_else(|e| {
                log::error!("dualpub ignores its saved config-fetch state ({e})");
                Default::default()
            }),
            None => Default::default(),
        };
        if persisted.is_none() {
            // A 304 must not confirm a document this device no longer has.
            fetch_state.etag = None;
        }
        let config_url = match &config.remote_config_url {
            Some(u) => Some(crate::config::https_url("remoteConfigUrl", u, config.allow_insecure)?),
            None => None,
        };
        let fetcher = crate::fetch::Fetcher::new(config_url, config.config_fetch_interval_secs, http.clone(), clock, fetch_state);
        let (migration, source, applied_at_ms) = match (persisted, &config.migration) {
            (Some((c, at)), _) => (c, crate::remote::ConfigSource::Persisted, at),
            (None, Some(c)) => (c.clone(), crate::remote::ConfigSource::App, clock::now_ms()),
            (None, None) => (MigrationConfig::default(), crate::remote::ConfigSource::Defaults, clock::now_ms()),
        };
        let decision = decide(&migration, &config.device_id, config.company_id.as_deref());
        log::info!(
            "dualpub starting for device bucket {} (config v{} from {}): mqtt={} pubsub={} reason={}",
            decision.bucket,
            decision.config_version,
            source.as_str(),
            decision.mqtt_enabled,
            decision.pubsub_enabled,
            decision.reason.as_str()
        );
        let (store_tx, store_rx) = std::sync::mpsc::channel();
        let mut outbox = Outbox::with_sink(store_tx.clone());
        let recovered = rows.len();
        outbox.restore(rows, dead_letters);
        if recovered > 0 {
            log::info!("dualpub resumes {recovered} location(s) from the outbox");
        }

        let shared = Arc::new(Shared {
            settings: config,
            state: Mutex::new(State {
                outbox,
                next_seq: max_seq + 1,
                durable_seq: max_seq,
                active: Arc::new(Active { config: migration, decision, source, applied_at_ms }),
                closed: false,
            }),
            progress: Condvar::new(),
            metrics: Metrics::default(),
            wake_mqtt: Notify::new(),
            wake_pubsub: Notify::new(),
            flush_target: AtomicU64::new(0),
            debug_mode: AtomicBool::new(false),
            debug_local: Mutex::new(None),
            precise_coordinates: AtomicBool::new(false),
            debug: crate::debug::Debug::default(),
            config_listener: Mutex::new(None),
            config_rejected: AtomicU64::new(0),
            fetcher,
        });
        if let (Some(aside), Some(reason)) = (&report.moved_aside, &report.reason) {
            log::error!("dualpub outbox database was unreadable ({reason}); moved aside to {} and started fresh", aside.display());
            shared.metrics.storage_reset();
        }
        shared.metrics.recovered(recovered as u64);
        let config_debug = shared.active().config.debug_mode;
        shared.refresh_debug_mode(config_debug);
        let store_done = start_store_writer(db, store_rx, Arc::downgrade(&shared))?;
        let (shutdown, rx) = watch::channel(false);
        rt.spawn(mqtt::run(shared.clone(), mqtt_options, rx.clone()));
        rt.spawn(pubsub::run(shared.clone(), http, TokenCache::new(token_provider), rx.clone()));
        rt.spawn(crate::fetch::run(shared.clone(), rx));
        Ok(Publisher { shared, shutdown, store_tx, store_done: Mutex::new(Some(store_done)) })
    }

    /// Validates `location`, gives it an eventId and queues it for every transport the decision
    /// names. Returns the eventId. Does no I/O.
    pub fn send_location(&self, location: Location) -> Result<String, DualPubError> {
        Ok(self.send_locations(vec![location])?.remove(0))
    }

    /// Queues several locations at once (backlog import), in order. All are validated first:
    /// if one is invalid, none is queued and the error names its index.
    pub fn send_locations(&self, locations: Vec<Location>) -> Result<Vec<String>, DualPubError> {
        let now = clock::now_ms();
        for (i, loc) in locations.iter().enumerate() {
            if let Err(e) = loc.validate(now) {
                self.shared.metrics.rejected(e.metric_reason());
                let reason = if locations.len() > 1 { format!("location {i}: {e}") } else { e.to_string() };
                return Err(DualPubError::InvalidLocation { reason });
            }
        }
        let s = &self.shared.settings;
        let encoded: Vec<(Arc<str>, Arc<[u8]>, i64)> = locations
            .iter()
            .map(|loc| {
                let id = wire::new_event_id();
                let payload = wire::encode(&id, &s.device_id, s.company_id.as_deref(), loc);
                (Arc::from(id), Arc::from(payload), loc.timestamp_ms)
            })
            .collect();
        let (mqtt, pubsub) = {
            let mut st = self.shared.lock();
            if st.closed {
                return Err(DualPubError::Closed);
            }
            let d = &st.active.decision;
            // While Pub/Sub's breaker is open, new locations go to MQTT too (fallback).
            let fallback = d.pubsub_enabled && !d.mqtt_enabled && d.fallback_to_mqtt && self.shared.metrics.circuit_open(Transport::PubSub);
            let (mqtt, pubsub) = (d.mqtt_enabled || fallback, d.pubsub_enabled);
            if fallback {
                self.shared.metrics.fallback(encoded.len() as u64);
            }
            for (id, payload, ts) in &encoded {
                let seq = st.next_seq;
                st.next_seq += 1;
                st.outbox.insert(Row::new(seq, id.clone(), payload.clone(), *ts, mqtt, pubsub));
            }
            self.shared.enforce_limits(&mut st);
            (mqtt, pubsub)
        };
        self.shared.metrics.accepted(encoded.len() as u64);
        if self.shared.debug_mode.load(Ordering::Relaxed) {
            let precise = self.shared.precise_coordinates.load(Ordering::Relaxed);
            for ((id, _, _), loc) in encoded.iter().zip(&locations) {
                self.shared.event(log::Level::Debug, "accepted", || {
                    let (lat, lon) = (crate::logging::coordinate(loc.latitude, precise), crate::logging::coordinate(loc.longitude, precise));
                    format!("{id} at {lat},{lon} for {}", match (mqtt, pubsub) { (true, true) => "mqtt+pubsub", (true, false) => "mqtt", _ => "pubsub" })
                });
            }
        }
        if mqtt {
            self.shared.wake(Transport::Mqtt);
        }
        if pubsub {
            self.shared.wake(Transport::PubSub);
        }
        Ok(encoded.into_iter().map(|(id, _, _)| id.to_string()).collect())
    }

    /// Applies a migration config at once; returns the new decision. An invalid config is
    /// refused and the one in force stays.
    pub fn apply_config(&self, config: MigrationConfig) -> Result<RolloutDecision, DualPubError> {
        self.shared.apply(config, crate::remote::ConfigSource::App)
    }

    /// Applies the host app's remote values (Firebase Remote Config keys of seed 000 §3.1) on
    /// top of the config in force.
    pub fn apply_remote_values(&self, values: std::collections::HashMap<String, String>) -> Result<RolloutDecision, DualPubError> {
        let current = self.shared.active().config.clone();
        let config = crate::remote::from_remote_values(&current, &values).inspect_err(|e| self.shared.config_refused(e))?;
        self.shared.apply(config, crate::remote::ConfigSource::Host)
    }

    /// What the SDK knows about the config in force and about fetching it.
    pub fn config_status(&self) -> crate::remote::ConfigStatus {
        let a = self.shared.active();
        let f = self.shared.fetcher.snapshot();
        crate::remote::ConfigStatus {
            version: a.config.version,
            source: a.source,
            applied_at_ms: a.applied_at_ms,
            rejected: self.shared.config_rejected.load(Ordering::SeqCst),
            last_fetch_at_ms: f.last_attempt_ms,
            last_fetch_result: f.last_result.clone(),
            etag: f.etag.clone(),
            backoff_until_ms: f.backoff_until(self.shared.fetcher.now_ms()),
            consecutive_fetch_failures: f.failures,
            next_fetch_at_ms: if self.shared.fetcher.foreground() { self.shared.fetcher.next_due_ms() } else { None },
        }
    }

    /// Fetches the config from `remoteConfigUrl` now (a silent push said it changed), unless an
    /// earlier failure's backoff is in force, and applies it. A fetch that starts while this call
    /// waits for one in progress answers for it too. Blocks at most
    /// [`crate::fetch::REFRESH_TIMEOUT`]: background threads only (an async task gets `Internal`).
    pub fn refresh_config(&self) -> Result<crate::fetch::FetchResult, DualPubError> {
        self.run_fetch(crate::fetch::Trigger::Refresh).map(|r| r.unwrap_or(crate::fetch::FetchResult::NotConfigured))
    }

    /// Runs the fetch schedule once, now, as the background task does when its timer fires:
    /// fetches only if due, in the foreground and not in backoff. `None` when it made no attempt.
    /// Blocks like [`Publisher::refresh_config`]. For tests and simulations with a `ManualClock`.
    pub fn poll_config(&self) -> Result<Option<crate::fetch::FetchResult>, DualPubError> {
        self.run_fetch(crate::fetch::Trigger::Schedule)
    }

    fn run_fetch(&self, trigger: crate::fetch::Trigger) -> Result<Option<crate::fetch::FetchResult>, DualPubError> {
        use crate::fetch::{FetchResult, REFRESH_TIMEOUT};
        if self.is_closed() {
            return Err(DualPubError::Closed);
        }
        if tokio::runtime::Handle::try_current().is_ok() {
            // Blocking here would hold an async worker (perhaps one the fetch itself needs).
            return Err(DualPubError::Internal { reason: "refreshConfig blocks: call it from a background thread, not an async task".into() });
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let shared = self.shared.clone();
        runtime::handle()?.spawn(async move {
            // One deadline for waiting on a fetch in progress and for our own.
            let r = tokio::time::timeout(REFRESH_TIMEOUT, shared.fetcher.attempt(&shared, trigger)).await;
            let _ = tx.send(r.unwrap_or_else(|_| Some(FetchResult::Failed { reason: format!("no answer within {} s", REFRESH_TIMEOUT.as_secs()) })));
        });
        let result = rx
            .recv_timeout(REFRESH_TIMEOUT + Duration::from_secs(5))
            .map_err(|_| DualPubError::Internal { reason: "the config fetch did not finish".into() })?;
        if self.is_closed() {
            return Err(DualPubError::Closed);
        }
        Ok(result)
    }

    /// Tells the SDK whether the app is in the foreground. Scheduled config fetches happen only
    /// in the foreground (the default); coming back fetches at once if one is due.
    pub fn set_app_foreground(&self, foreground: bool) {
        self.shared.fetcher.set_foreground(foreground);
    }

    /// Registers the app's listener for decision changes (`None` removes it).
    pub fn set_config_listener(&self, listener: Option<Arc<dyn crate::remote::ConfigListener>>) {
        *self.shared.config_listener.lock().unwrap_or_else(|p| p.into_inner()) = listener;
    }

    /// Parses and applies a config document (GUIDE §4).
    pub fn apply_config_json(&self, json: &str) -> Result<RolloutDecision, DualPubError> {
        let config = self.shared.parse_document(json)?;
        self.apply_config(config)
    }

    /// The decision in force, with the transports' breaker states.
    pub fn decision(&self) -> RolloutDecision {
        let mut d = self.shared.active().decision.clone();
        d.mqtt_circuit_open = self.shared.metrics.circuit_open(Transport::Mqtt);
        d.pubsub_circuit_open = self.shared.metrics.circuit_open(Transport::PubSub);
        d
    }

    /// Waits until every location accepted before this call is on disk (it survives a process
    /// kill from then on), or `timeout` passes; returns whether it is. Blocks: background threads only.
    pub fn await_durable(&self, timeout: Duration) -> bool {
        let start = Instant::now();
        let mut st = self.shared.lock();
        let target = st.next_seq - 1;
        while st.durable_seq < target && !st.closed {
            let left = timeout.saturating_sub(start.elapsed());
            if left.is_zero() {
                break;
            }
            st = self.shared.progress.wait_timeout(st, left).unwrap_or_else(|p| p.into_inner()).0;
        }
        st.durable_seq >= target
    }

    /// Queues dead letters again (all of them when `ids` is empty), with their original eventId
    /// and bytes, for the transport that refused them. Returns how many were queued.
    pub fn retry_dead_letters(&self, ids: Vec<i64>) -> Result<u32, DualPubError> {
        let n = {
            let mut st = self.shared.lock();
            if st.closed {
                return Err(DualPubError::Closed);
            }
            let letters = st.outbox.take_dead_letters(&ids);
            for d in &letters {
                let seq = st.next_seq;
                st.next_seq += 1;
                let (mqtt, pubsub) = (d.transport == Transport::Mqtt, d.transport == Transport::PubSub);
                st.outbox.insert(Row::new(seq, Arc::from(d.event_id.as_str()), Arc::from(d.payload.as_bytes()), d.timestamp_ms, mqtt, pubsub));
            }
            letters.len() as u32
        };
        self.shared.event(log::Level::Info, "dead_letter", || format!("re-queued {n} dead letter(s)"));
        Ok(n)
    }

    /// Switches debug mode locally (`Some`), overriding the remote config, or hands it back to
    /// the config (`None`). Takes effect at once.
    pub fn set_debug_mode(&self, enabled: Option<bool>) {
        *self.shared.debug_local.lock().unwrap_or_else(|p| p.into_inner()) = enabled;
        let config_debug = self.shared.active().config.debug_mode;
        self.shared.refresh_debug_mode(config_debug);
    }

    /// Lets debug output show precise coordinates (rounded to about 1 km otherwise).
    pub fn set_precise_coordinates_in_debug(&self, opt_in: bool) {
        self.shared.precise_coordinates.store(opt_in, Ordering::SeqCst);
    }

    /// Registers the app's debug listener (`None` removes it).
    pub fn set_debug_listener(&self, listener: Option<Arc<dyn crate::debug::DebugListener>>) {
        self.shared.debug.set_listener(listener);
    }

    /// A JSON report for support and debug screens: config, decision, queues, breakers, recent
    /// errors. Never contains tokens, passwords or coordinates.
    pub fn debug_report(&self) -> String {
        let m = self.metrics();
        let d = self.decision();
        let st = self.shared.lock();
        let report = serde_json::json!({
            "sdk": wire::SDK_ID,
            "deviceId": self.shared.settings.device_id,
            "debugMode": self.shared.debug_mode.load(Ordering::SeqCst),
            "preciseCoordinates": self.shared.precise_coordinates.load(Ordering::SeqCst),
            "config": st.active.config.to_json(),
            "decision": {
                "mqttEnabled": d.mqtt_enabled, "pubsubEnabled": d.pubsub_enabled, "fallbackToMqtt": d.fallback_to_mqtt,
                "reason": d.reason.as_str(), "bucket": d.bucket, "configVersion": d.config_version,
            },
            "queue": {
                "mqtt": m.mqtt.queue_depth, "pubsub": m.pubsub.queue_depth, "rows": st.outbox.len(),
                "oldestAgeSeconds": m.queue_oldest_age_seconds, "durableSeq": st.durable_seq, "nextSeq": st.next_seq,
                "deadLetters": st.outbox.dead_letters().len(),
            },
            "breakers": {
                "mqtt": {"open": m.mqtt.circuit_open, "openings": m.mqtt.circuit_openings},
                "pubsub": {"open": m.pubsub.circuit_open, "openings": m.pubsub.circuit_openings},
            },
            "counts": {
                "accepted": m.accepted, "mqttPublished": m.mqtt.published, "pubsubPublished": m.pubsub.published,
                "fallback": m.fallback, "retries": m.mqtt.retries + m.pubsub.retries, "storageErrors": m.storage_errors,
                "debugEventsDropped": self.shared.debug.dropped(),
            },
            "configFetch": {
                "configured": self.shared.settings.remote_config_url.is_some(),
                "foreground": self.shared.fetcher.foreground(),
                // Without the URL: it may carry a key in its query.
                "state": crate::fetch::FetchState { url: None, ..self.shared.fetcher.snapshot() },
                "nextFetchAtMs": self.shared.fetcher.next_due_ms(),
            },
            "recentErrors": self.shared.debug.recent(),
        });
        report.to_string()
    }

    /// The migration config in force.
    pub fn config(&self) -> MigrationConfig {
        self.shared.active().config.clone()
    }

    /// Sends what is queued now and waits until every location accepted before this call is
    /// acknowledged by every transport owing it, or `timeout` passes. Blocks the calling
    /// thread: never call it on a UI thread.
    pub fn flush(&self, timeout: Duration) -> FlushReport {
        let start = Instant::now();
        let mut st = self.shared.lock();
        let target = st.next_seq - 1;
        self.shared.flush_target.fetch_max(target, Ordering::SeqCst);
        self.shared.wake(Transport::Mqtt);
        self.shared.wake(Transport::PubSub);
        while !st.outbox.drained_up_to(target) && !st.closed {
            let left = timeout.saturating_sub(start.elapsed());
            if left.is_zero() {
                break;
            }
            st = self.shared.progress.wait_timeout(st, left).unwrap_or_else(|p| p.into_inner()).0;
        }
        let (pending_mqtt, pending_pubsub) = st.outbox.owed_up_to(target);
        FlushReport {
            completed: pending_mqtt == 0 && pending_pubsub == 0,
            pending_mqtt,
            pending_pubsub,
            elapsed_ms: start.elapsed().as_millis() as u64,
        }
    }

    fn gauges(&self) -> Gauges {
        let st = self.shared.lock();
        Gauges {
            depth_mqtt: st.outbox.depth(Transport::Mqtt) as u64,
            depth_pubsub: st.outbox.depth(Transport::PubSub) as u64,
            oldest_age_seconds: st.outbox.oldest().map(|t| t.elapsed().as_secs_f64()).unwrap_or(0.0),
            config_version: st.active.decision.config_version,
            rollout_bucket: st.active.decision.bucket,
        }
    }

    /// A snapshot of the migration metrics.
    pub fn metrics(&self) -> MetricsSnapshot {
        self.shared.metrics.snapshot(&self.gauges())
    }

    /// The metrics as Prometheus text (GUIDE §6 names).
    pub fn metrics_prometheus(&self) -> String {
        self.shared.metrics.prometheus(&self.gauges())
    }

    /// Messages Pub/Sub refused as invalid; kept, never deleted.
    pub fn dead_letters(&self) -> Vec<DeadLetter> {
        self.shared.lock().outbox.dead_letters().to_vec()
    }

    /// Whether `close` was called.
    pub fn is_closed(&self) -> bool {
        self.shared.lock().closed
    }

    /// Stops accepting, stops the transport tasks (they finish the attempt in progress),
    /// disconnects, and waits (at most 5 s) until the outbox is on disk. What is still owed is
    /// delivered by the next publisher on the same data directory.
    pub fn close(&self) {
        let was_closed = std::mem::replace(&mut self.shared.lock().closed, true);
        if !was_closed {
            let _ = self.shutdown.send(true);
            self.shared.progress.notify_all();
            if self.shared.debug_mode.swap(false, Ordering::SeqCst) {
                crate::logging::debug_mode_changed(false);
            }
            // Let the store write what is queued, so the next publisher on this directory
            // finds it; bounded, so a dying disk cannot hang the app.
            let _ = self.store_tx.send(store::Msg::Stop);
            if let Some(done) = self.store_done.lock().unwrap_or_else(|p| p.into_inner()).take() {
                if done.recv_timeout(CLOSE_PERSIST_TIMEOUT).is_err() {
                    log::error!("dualpub store did not finish within {CLOSE_PERSIST_TIMEOUT:?}");
                }
            }
            log::info!("dualpub closed");
        }
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.close();
    }
}
