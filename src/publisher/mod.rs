//! The pure-Rust core behind the exported `DualPublisher`: accepts locations, keeps the
//! decision in force, applies configs (the app's or fetched ones), and owns the tasks that
//! deliver. See ARCHITECTURE.md for the flow of one location and the threads.

mod apply;
mod listener;
mod privacy;
mod start;
mod store_thread;
mod streams;
pub(crate) mod tasks;
mod waits;

pub use privacy::PurgeReport;
pub use streams::DeliveryState;
pub(crate) use streams::StreamSource;
pub(crate) use waits::on_thread;
pub use waits::DrainReport;

use crate::config::fetch::Fetcher;
use crate::config::rollout::RolloutDecision;
use crate::config::{MigrationConfig, SdkConfig};
use crate::error::{DualPubError, Error};
use crate::hub::Lane;
use crate::hub::{Active, Burst, Hub, State};
use crate::location::Location;
use crate::outbox::store;
use crate::outbox::{DeadLetter, Row, Transport};
use crate::telemetry::metrics::{Gauges, MetricsSnapshot};
use crate::transport::token::{TokenCache, TokenProvider};
use crate::transport::{mqtt, pubsub};
use crate::{clock, runtime, wire};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::watch;

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

/// What the API, the store thread and the config fetch share: the hub (outbox, signals,
/// metrics, log funnel), the app's settings, and the config side (listener, fetcher, debug
/// switches). The transport tasks never see it: they get a [`Lane`].
pub(crate) struct Shared {
    settings: SdkConfig,
    hub: Arc<Hub>,
    /// `setDebugMode` from the app, which wins over the config.
    debug_local: Mutex<Option<bool>>,
    /// The app opted in to precise coordinates in debug output.
    precise_coordinates: AtomicBool,
    /// The app's listener for decision changes and the changes not yet told to it.
    listener: listener::Listener,
    /// Config documents or values refused since start-up.
    config_rejected: AtomicU64,
    /// Fetches the migration config from `remoteConfigUrl`.
    fetcher: Fetcher,
    /// The disk had no room for the outbox database: it lives in memory for this run.
    memory_only: bool,
    /// The decision in force, for the decision streams (`DualPublisher.decisions`).
    decisions: watch::Sender<RolloutDecision>,
}

/// Ids of the device overrides the host app's remote values set.
type HostOverrides = std::collections::BTreeSet<String>;

impl Shared {
    /// Locks the state; a poisoned lock is recovered, never propagated.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.hub.lock()
    }

    /// Logs an event through the funnel.
    fn event(&self, level: log::Level, kind: &str, message: impl FnOnce() -> String) {
        self.hub.event(level, kind, message);
    }

    /// The decision in force.
    fn active(&self) -> Arc<Active> {
        self.lock().active.clone()
    }

    /// A decision as the app sees it: with the transports' breaker states now.
    fn with_breakers(&self, mut d: RolloutDecision) -> RolloutDecision {
        d.mqtt_circuit_open = self.hub.metrics.circuit_open(Transport::Mqtt);
        d.pubsub_circuit_open = self.hub.metrics.circuit_open(Transport::PubSub);
        d
    }
}

/// The most locations one `sendLocations` call accepts: the lock that inserts them is held for
/// a few milliseconds at most, and the memory of one call stays bounded.
pub const MAX_LOCATIONS_PER_CALL: usize = 10_000;

/// The SDK core. Cheap to call from any thread: `send_location(s)`, `apply_config*`,
/// `decision` and `metrics` never touch the network or the disk. `new` opens the outbox
/// database and reads what it still owes (README, Performance: 87 ms for 100,000 locations, their index only), `flush` and `await_durable` wait by design, and `close` waits for the
/// tasks and the last commit: call those off the UI thread.
pub struct Publisher {
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    tasks: tasks::Tasks,
    /// The store writer's channel (to stop it) and the signal it sends when done.
    store_tx: std::sync::mpsc::Sender<store::Msg>,
    store_done: Mutex<Option<std::sync::mpsc::Receiver<()>>>,
}

/// How long `close` waits for the last group commit.
const CLOSE_PERSIST_TIMEOUT: Duration = Duration::from_secs(5);

/// How long `close` waits for the shutdown report over links that are up.
const CLOSE_REPORT_WAIT: Duration = Duration::from_secs(2);

/// The app's providers a publisher may be given.
#[derive(Default, Clone)]
pub struct Providers {
    /// Pub/Sub access tokens (none: no `Authorization` header, the emulator).
    pub tokens: Option<Arc<dyn TokenProvider>>,
    /// MQTT credentials that change; they take the place of `mqtt.username`/`password`.
    pub mqtt_credentials: Option<Arc<dyn crate::MqttCredentialProvider>>,
}

impl Publisher {
    /// Validates `config`, starts the transport tasks on the SDK runtime and returns at once;
    /// connections are made in the background.
    pub fn new(config: SdkConfig, token_provider: Option<Arc<dyn TokenProvider>>) -> Result<Self, DualPubError> {
        Self::with_clock(config, token_provider, Arc::new(crate::clock::SystemClock))
    }

    /// As [`Publisher::new`], with every app provider: Pub/Sub tokens and MQTT credentials that
    /// change (docs/CONTRACT.md#mqtt-credentials).
    pub fn with_providers(config: SdkConfig, providers: Providers) -> Result<Self, DualPubError> {
        Self::launch(config, providers, Arc::new(crate::clock::SystemClock))
    }

    /// As [`Publisher::new`], with the clock the config fetcher schedules by (a
    /// [`crate::clock::ManualClock`] lets a test or simulation move time at will).
    pub fn with_clock(config: SdkConfig, token_provider: Option<Arc<dyn TokenProvider>>, clock: Arc<dyn crate::clock::Clock>) -> Result<Self, DualPubError> {
        Self::launch(config, Providers { tokens: token_provider, mqtt_credentials: None }, clock)
    }

    /// What every constructor does: the platform logger, then [`Publisher::start`].
    fn launch(config: SdkConfig, providers: Providers, clock: Arc<dyn crate::clock::Clock>) -> Result<Self, DualPubError> {
        crate::telemetry::logging::init();
        // No publisher, so no debug report yet: a failure here is logged and returned.
        Self::start(config, providers, clock).map_err(|e| crate::telemetry::events::Events::default().failed(e))
    }

    fn start(config: SdkConfig, providers: Providers, clock: Arc<dyn crate::clock::Clock>) -> Result<Self, Error> {
        config.check()?;
        let mqtt_settings = mqtt::settings(&config)?;
        let http = crate::http::client(config.pubsub.ca_certificates_pem.as_deref(), crate::http::Redirects::Never)?;
        let rt = runtime::handle()?;
        let mut r = start::restore(&config, crate::http::client(config.pubsub.ca_certificates_pem.as_deref(), crate::http::Redirects::Safe)?, clock.clone())?;
        let setup = crate::hub::Setup {
            active: r.active,
            max_seq: r.max_seq,
            tally: r.tally,
            identity: crate::telemetry::reports::Identity {
                device_id: config.device_id.clone(),
                company_id: config.company_id.clone(),
                os_version: config.os_version.clone(),
                app_version: config.app_version.clone(),
            },
            reports_allowed: config.reports_enabled,
            clock,
            upload_window_secs: config.upload_window_secs,
        };
        let hub = Arc::new(Hub::new(r.outbox, setup, crate::telemetry::events::Events::default()));
        // Every commit persists the reports' tally (counters, schedule, last seq) with the outbox.
        let tallying = Arc::downgrade(&hub);
        r.db.record_tally(Box::new(move || serde_json::to_string(&tallying.upgrade()?.reporter().tally()).ok()));
        for (level, kind, message) in r.notes {
            hub.event(level, kind, || message);
        }
        if r.reset {
            hub.metrics.storage_reset();
        }
        if r.memory_only {
            hub.metrics.storage_error();
        }
        // Caps apply to what was restored too (dead letters past their age, for one).
        hub.enforce_limits(&mut hub.lock());
        if r.dead_letters_dropped > 0 {
            hub.metrics.dropped(crate::outbox::Eviction::DeadLettersFull.as_str(), r.dead_letters_dropped);
        }
        if r.unreadable > 0 {
            hub.metrics.dropped(crate::telemetry::metrics::DROPPED_UNREADABLE, r.unreadable);
        }
        hub.metrics.recovered(r.recovered);
        let pubsub_settings = pubsub::Settings::from_config(&config);
        let shared = Arc::new(Shared {
            settings: config,
            hub: hub.clone(),
            debug_local: Mutex::new(None),
            precise_coordinates: AtomicBool::new(false),
            listener: listener::Listener::default(),
            config_rejected: AtomicU64::new(0),
            fetcher: r.fetcher,
            memory_only: r.memory_only,
            decisions: watch::Sender::new(hub.lock().active.decision.clone()),
        });
        shared.refresh_debug_mode(shared.active().config.debug_mode);
        if !shared.settings.collection_enabled {
            shared.hub.gate.set_paused(true);
        }
        let store_done = store_thread::start_store_writer(r.db, r.store_rx, Arc::downgrade(&shared))?;
        let (shutdown, rx) = watch::channel(false);
        let rest = pubsub::Rest::new(pubsub_settings, http, TokenCache::new(providers.tokens), r.gzip);
        hub.metrics.set_gzip_support(r.gzip);
        let credentials = providers.mqtt_credentials.map(crate::transport::credentials::CredentialCache::new);
        let fetching = shared.clone();
        let fetch_rx = rx.clone();
        let (reporting, report_rx) = (hub.clone(), rx.clone());
        let (windowing, window_rx) = (hub.clone(), rx.clone());
        let tasks = vec![
            rt.spawn(tasks::window(windowing, window_rx)),
            rt.spawn(mqtt::run(Lane::new(hub.clone(), Transport::Mqtt), mqtt_settings, credentials, rx.clone())),
            rt.spawn(pubsub::run(Lane::new(hub, Transport::PubSub), rest, rx)),
            rt.spawn(async move { crate::config::fetch::run(&fetching.fetcher, || fetching.scheduled_fetch(), fetch_rx).await }),
            rt.spawn(tasks::reports(reporting, report_rx)),
        ];
        // A backlog restored from disk gets a burst now: a start is a good moment to send, and
        // with a window nothing else would schedule one until a new location arrives.
        let backlog = Hub::owed(&shared.lock()).contains(&true);
        if backlog {
            shared.hub.open_burst(Burst::Spread);
        }
        Ok(Publisher { shared, shutdown, tasks: tasks::Tasks::new(tasks), store_tx: r.store_tx, store_done: Mutex::new(Some(store_done)) })
    }

    /// Validates `location`, gives it an eventId and queues it for every transport the decision
    /// names. Returns the eventId. Does no I/O.
    pub fn send_location(&self, location: Location) -> Result<String, DualPubError> {
        Ok(self.send_locations(vec![location])?.remove(0))
    }

    /// Queues several locations at once (backlog import), in order, all or none: at most
    /// 10,000 (`MAX_LOCATIONS_PER_CALL`) and at most `maxOutboxRows` (a larger batch is refused whole
    /// with `BatchTooLarge`, so the caps can never evict part of the batch being inserted). All
    /// are validated first: if one is invalid, none is queued and the error names its index.
    pub fn send_locations(&self, locations: Vec<Location>) -> Result<Vec<String>, DualPubError> {
        let (hub, s) = (&self.shared.hub, &self.shared.settings);
        let limit = MAX_LOCATIONS_PER_CALL.min(s.max_outbox_rows as usize);
        if locations.len() > limit {
            return Err(DualPubError::BatchTooLarge { size: locations.len() as u64, limit: limit as u64 });
        }
        let now = clock::now_ms();
        for (i, loc) in locations.iter().enumerate() {
            if let Err(e) = loc.validate() {
                hub.metrics.rejected(e.metric_reason());
                let reason = if locations.len() > 1 { format!("location {i}: {e}") } else { e.to_string() };
                return Err(DualPubError::InvalidLocation { reason });
            }
        }
        // The expensive part of the encoding before the lock; the eventId, seq, route and cfg
        // under it, so a device's eventIds (UUIDv7, by time) and seqs are in the same order.
        let started: Vec<(Vec<u8>, i64)> =
            locations.iter().map(|loc| (wire::encode_start(&s.device_id, s.company_id.as_deref(), loc), loc.timestamp_ms)).collect();
        let count = started.len() as u64;
        let mut ids = Vec::with_capacity(started.len());
        let (mqtt, pubsub) = {
            let mut st = self.shared.lock();
            if st.closed {
                return Err(DualPubError::Closed);
            }
            if hub.gate.paused() {
                return Err(DualPubError::CollectionPaused);
            }
            let d = &st.active.decision;
            // While Pub/Sub's breaker is open, new locations go to MQTT too (fallback).
            let fallback = d.pubsub_enabled && !d.mqtt_enabled && d.fallback_to_mqtt && hub.metrics.circuit_open(Transport::PubSub);
            let (mqtt, pubsub) = (d.mqtt_enabled || fallback, d.pubsub_enabled);
            let (route, cfg) = (wire::Route::of(d.mqtt_enabled, d.pubsub_enabled), d.config_version);
            if fallback {
                hub.metrics.fallback(count);
            }
            let mut reports = hub.reporter().slots();
            let (mut next_seq, mut loc_seq) = (st.next_seq, st.last_loc_seq);
            st.outbox.batched(|outbox| {
                for (fields, ts) in started {
                    loc_seq += 1;
                    let id: Arc<str> = Arc::from(wire::new_event_id());
                    let payload = wire::finish(&id, &fields, wire::Acceptance { seq: loc_seq, route, cfg });
                    reports.accepted(loc_seq, ts);
                    outbox.insert(Row::new(next_seq, id.clone(), Arc::from(payload), ts, mqtt, pubsub), Some(loc_seq));
                    next_seq += 1;
                    ids.push(id);
                }
            });
            (st.next_seq, st.last_loc_seq) = (next_seq, loc_seq);
            drop(reports);
            // Counted under the lock, so a tally never holds a seq beyond the count accepted.
            hub.metrics.accepted(count);
            hub.enforce_limits(&mut st);
            (mqtt, pubsub)
        };
        // A timestamp a day or more after the phone's clock: a wrong clock, or a GNSS time the
        // phone's clock disagrees with. Accepted (the fix is the app's data), counted and told.
        let skewed = locations.iter().filter(|l| l.skewed(now)).count() as u64;
        if skewed > 0 {
            hub.metrics.clock_skew(skewed);
            hub.event(log::Level::Warn, "clock_skew", || format!("{skewed} location(s) stamped more than 24 h after the phone's clock"));
        }
        if hub.events.debug_mode() {
            let precise = self.shared.precise_coordinates.load(Ordering::Relaxed);
            for (id, loc) in ids.iter().zip(&locations) {
                hub.event(log::Level::Debug, "accepted", || {
                    let (lat, lon) =
                        (crate::telemetry::logging::coordinate(loc.latitude, precise), crate::telemetry::logging::coordinate(loc.longitude, precise));
                    format!(
                        "{id} at {lat},{lon} for {}",
                        match (mqtt, pubsub) {
                            (true, true) => "mqtt+pubsub",
                            (true, false) => "mqtt",
                            _ => "pubsub",
                        }
                    )
                });
            }
        }
        if mqtt {
            hub.wake(Transport::Mqtt);
        }
        if pubsub {
            hub.wake(Transport::PubSub);
        }
        hub.progress.notify(); // the delivery state changed (more pending)
        Ok(ids.into_iter().map(|id| id.to_string()).collect())
    }

    /// Applies a migration config at once; returns the new decision. An invalid config is
    /// refused and the one in force stays.
    pub fn apply_config(&self, config: MigrationConfig) -> Result<RolloutDecision, DualPubError> {
        self.shared.apply(config, crate::config::source::ConfigSource::App, HostOverrides::new())
    }

    /// Applies the host app's remote values (Firebase Remote Config keys, docs/CONTRACT.md#host-remote-values) on
    /// top of the config in force.
    pub fn apply_remote_values(&self, values: std::collections::HashMap<String, String>) -> Result<RolloutDecision, DualPubError> {
        let current = self.shared.active();
        let (config, host_overrides) =
            crate::config::source::from_remote_values(&current.config, &current.host_overrides, &values).inspect_err(|e| self.shared.config_refused(e))?;
        self.shared.apply(config, crate::config::source::ConfigSource::Host, host_overrides)
    }

    /// What the SDK knows about the config in force and about fetching it.
    pub fn config_status(&self) -> crate::config::source::ConfigStatus {
        let a = self.shared.active();
        let f = self.shared.fetcher.snapshot();
        crate::config::source::ConfigStatus {
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
    /// 25 s: background threads only (an async task gets `Internal`).
    pub fn refresh_config(&self) -> Result<crate::config::fetch::FetchResult, DualPubError> {
        self.run_fetch(crate::config::fetch::Trigger::Refresh).map(|r| r.unwrap_or(crate::config::fetch::FetchResult::NotConfigured))
    }

    /// Runs the fetch schedule once, now, as the background task does when its timer fires:
    /// fetches only if due, in the foreground and not in backoff. `None` when it made no attempt.
    /// Blocks like [`Publisher::refresh_config`]. For tests and simulations with a `ManualClock`.
    pub fn poll_config(&self) -> Result<Option<crate::config::fetch::FetchResult>, DualPubError> {
        self.run_fetch(crate::config::fetch::Trigger::Schedule)
    }

    fn run_fetch(&self, trigger: crate::config::fetch::Trigger) -> Result<Option<crate::config::fetch::FetchResult>, DualPubError> {
        use crate::config::fetch::{FetchResult, REFRESH_TIMEOUT};
        let events = &self.shared.hub.events;
        if self.is_closed() {
            return Err(events.failed(Error::Closed));
        }
        if tokio::runtime::Handle::try_current().is_ok() {
            // Blocking here would hold an async worker (perhaps one the fetch itself needs).
            return Err(events.failed(Error::WouldBlock("refreshConfig")));
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let shared = self.shared.clone();
        runtime::handle().map_err(|e| events.failed(e))?.spawn(async move {
            // One deadline for waiting on a fetch in progress and for our own.
            let r = tokio::time::timeout(REFRESH_TIMEOUT, shared.fetch_config(trigger)).await;
            let timed_out = || (Some(FetchResult::Failed { reason: format!("no answer within {} s", REFRESH_TIMEOUT.as_secs()) }), None);
            let _ = tx.send(r.unwrap_or_else(|_| timed_out()));
        });
        let (result, change) = rx.recv_timeout(REFRESH_TIMEOUT + Duration::from_secs(5)).map_err(|_| events.failed(Error::Lost("the config fetch")))?;
        if self.is_closed() {
            return Err(events.failed(Error::Closed));
        }
        // The listener hears of the change on this (the app's) thread, before the call returns.
        if let Some((old, new)) = change {
            self.shared.listener.tell(old, new);
        }
        Ok(result)
    }

    /// Tells the SDK whether the app is in the foreground. Scheduled config fetches happen only
    /// in the foreground (the default); coming back fetches at once if one is due.
    pub fn set_app_foreground(&self, foreground: bool) {
        self.shared.fetcher.set_foreground(foreground);
    }

    /// Registers the app's listener for decision changes (`None` removes it).
    pub fn set_config_listener(&self, listener: Option<Arc<dyn crate::config::source::ConfigListener>>) {
        let st = self.shared.lock();
        // After close nothing is kept: a listener holding its publisher would never be freed.
        let old = self.shared.listener.replace(if st.closed { None } else { listener });
        drop(st);
        // The old listener is released (a call into the app's runtime) with no lock held.
        drop(old);
    }

    /// Parses and applies a config document (docs/CONTRACT.md#migration-config).
    pub fn apply_config_json(&self, json: &str) -> Result<RolloutDecision, DualPubError> {
        let config = self.shared.parse_document(json)?;
        self.apply_config(config)
    }

    /// The decision in force, with the transports' breaker states.
    pub fn decision(&self) -> RolloutDecision {
        self.shared.with_breakers(self.shared.active().decision.clone())
    }

    /// Waits until every location accepted before this call is on disk (it survives a process
    /// kill from then on), or `timeout` passes; returns whether it is. Blocks: background threads only.
    pub fn await_durable(&self, timeout: Duration) -> bool {
        let timeout = self.blocking_allowed("awaitDurable", timeout);
        let start = Instant::now();
        let st = self.shared.lock();
        let target = st.next_seq - 1;
        let st = self.shared.hub.wait_until(st, start, timeout, |st| st.durable_seq >= target);
        st.durable_seq >= target
    }

    /// Queues dead letters again (all of them when `ids` is empty), with their original eventId
    /// and bytes, for the transport that refused them. Returns how many were queued.
    pub fn retry_dead_letters(&self, ids: Vec<i64>) -> Result<u32, DualPubError> {
        let n = {
            let mut st = self.shared.lock();
            if st.closed {
                return Err(Error::Closed.into());
            }
            let letters = st.outbox.take_dead_letters(&ids);
            for d in &letters {
                let seq = st.next_seq;
                st.next_seq += 1;
                let (mqtt, pubsub) = (d.transport == Transport::Mqtt, d.transport == Transport::PubSub);
                // Its bytes, and so its wire seq, are those it was accepted with (a few hundred
                // bytes read back; re-queuing is rare and at most MAX_DEAD_LETTERS at once).
                let wire_seq = crate::wire::seq_of(d.payload.as_bytes());
                st.outbox.insert(Row::new(seq, Arc::from(d.event_id.as_str()), Arc::from(d.payload.as_bytes()), d.timestamp_ms, mqtt, pubsub), wire_seq);
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
    pub fn set_debug_listener(&self, listener: Option<Arc<dyn crate::telemetry::events::DebugListener>>) {
        let st = self.shared.lock();
        self.shared.hub.events.set_listener(if st.closed { None } else { listener });
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
            "debugMode": self.shared.hub.events.debug_mode(),
            "preciseCoordinates": self.shared.precise_coordinates.load(Ordering::SeqCst),
            "config": st.active.config.to_json(),
            "decision": {
                "mqttEnabled": d.mqtt_enabled, "pubsubEnabled": d.pubsub_enabled, "fallbackToMqtt": d.fallback_to_mqtt,
                "reason": d.reason.as_str(), "bucket": d.bucket, "configVersion": d.config_version,
            },
            "storage": {"memoryOnly": self.shared.memory_only},
            "queue": {
                "mqtt": m.mqtt.queue_depth, "pubsub": m.pubsub.queue_depth, "rows": st.outbox.len(), "inMemory": st.outbox.resident(),
                "oldestAgeSeconds": m.queue_oldest_age_seconds, "durableSeq": st.durable_seq, "nextSeq": st.next_seq,
                "deadLetters": st.outbox.dead_letter_count(),
            },
            "breakers": {
                "mqtt": {"open": m.mqtt.circuit_open, "openings": m.mqtt.circuit_openings},
                "pubsub": {"open": m.pubsub.circuit_open, "openings": m.pubsub.circuit_openings},
            },
            "counts": {
                "accepted": m.accepted, "mqttPublished": m.mqtt.published, "pubsubPublished": m.pubsub.published,
                "fallback": m.fallback, "retries": m.mqtt.retries + m.pubsub.retries, "storageErrors": m.storage_errors,
                "debugEventsDropped": self.shared.hub.events.dropped(),
                "appCallbacksRunning": crate::callback::running(),
                "sdkTasks": runtime::alive_tasks(),
            },
            "configFetch": {
                "configured": self.shared.settings.remote_config_url.is_some(),
                "foreground": self.shared.fetcher.foreground(),
                // Without the URL: it may carry a key in its query.
                "state": crate::config::fetch::FetchState { url: None, ..self.shared.fetcher.snapshot() },
                "nextFetchAtMs": self.shared.fetcher.next_due_ms(),
            },
            "reports": self.shared.hub.reporter().slots().status(),
            "recentErrors": self.shared.hub.events.recent(),
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
        let timeout = self.blocking_allowed("flush", timeout);
        // A flush is urgent: it opens an upload burst now, whatever the window, and failures do
        // not end it before the flush gives up.
        let (target, start) = self.shared.begin_flush(timeout);
        drop(self.shared.hub.wait_until(self.shared.lock(), start, timeout, |st| st.outbox.drained_up_to(target)));
        self.shared.flush_report(target, start)
    }

    /// Sends everything queued now, in one burst of both transports, whatever the upload
    /// window (docs/CONTRACT.md#upload-windows); returns at once. For what must go now.
    pub fn flush_now(&self) {
        self.shared.hub.open_burst(Burst::Now);
    }

    /// What the app's connectivity callback says: while `false` nothing is attempted on either
    /// transport (locations are kept, durable); when it turns `true`, one burst sends the backlog.
    pub fn set_network_available(&self, available: bool) {
        let back = self.shared.hub.gate.set_network(available);
        self.shared.event(log::Level::Info, "network", || format!("network {}", if available { "available" } else { "unavailable" }));
        self.shared.switched(back);
    }

    fn gauges(&self) -> Gauges {
        self.shared.lock().gauges()
    }

    /// A snapshot of the migration metrics.
    pub fn metrics(&self) -> MetricsSnapshot {
        self.shared.hub.metrics.snapshot(&self.gauges())
    }

    /// The metrics as Prometheus text (names in docs/CONTRACT.md#metrics).
    pub fn metrics_prometheus(&self) -> String {
        self.shared.hub.metrics.prometheus(&self.gauges())
    }

    /// Messages Pub/Sub refused as invalid, oldest first (at most
    /// 10,000; beyond that, and past `maxOutboxAgeHours`, the oldest
    /// are dropped and counted).
    pub fn dead_letters(&self) -> Vec<DeadLetter> {
        self.dead_letters_page(0, u32::MAX)
    }

    /// A page of [`Publisher::dead_letters`]: at most `limit` with an id above `after_id`.
    pub fn dead_letters_page(&self, after_id: i64, limit: u32) -> Vec<DeadLetter> {
        self.shared.lock().outbox.dead_letters(after_id, limit as usize)
    }

    /// How long a blocking call may wait here: on one of the SDK runtime's threads (an SDK
    /// task, or an app callback that somehow runs there) not at all, since the work it would
    /// wait for needs that thread; it answers at once and the misuse is logged. The app's own
    /// runtime threads may wait (their owner decides).
    fn blocking_allowed(&self, call: &'static str, timeout: Duration) -> Duration {
        if runtime::on_sdk_thread() {
            self.shared.event(log::Level::Warn, "internal", || Error::WouldBlock(call).to_string());
            Duration::ZERO
        } else {
            timeout
        }
    }

    /// Waits (at most [`CLOSE_REPORT_WAIT`]) until the shutdown report has left over every
    /// transport whose link is not known to be down (one not tried in this run connects for it);
    /// a transport that is down keeps nothing waiting here (the counters are persisted: the next
    /// report covers them).
    fn last_report_out(&self) {
        let hub = &self.shared.hub;
        if runtime::on_sdk_thread() || !hub.gate.network() {
            return; // the transports need this very thread; or nothing can leave
        }
        // The report goes after the locations owed to its transport: with an upload window they
        // get a last burst now (bounded by the same wait).
        hub.open_burst(Burst::Now);
        let start = Instant::now();
        let mut st = self.shared.lock();
        while Transport::ALL.into_iter().any(|t| !hub.links.down(t) && hub.reporter().slots().leaving(t, hub.links.up(t))) {
            let left = CLOSE_REPORT_WAIT.saturating_sub(start.elapsed());
            if left.is_zero() {
                break;
            }
            st = hub.progress.wait_timeout(st, left.min(Duration::from_millis(50)));
        }
    }

    /// Keeps every acknowledgement latency from now on, for [`Publisher::latency_samples`]
    /// (tests and the demo check the migration reports' histograms against them; memory grows
    /// with every location, so never in an app).
    pub fn keep_latency_samples(&self) {
        self.shared.hub.metrics.keep_samples();
    }

    /// The latencies (acceptance → acknowledgement, ms) kept since
    /// [`Publisher::keep_latency_samples`], MQTT then Pub/Sub.
    pub fn latency_samples(&self) -> [Vec<f64>; 2] {
        self.shared.hub.metrics.samples()
    }

    /// Runs the report schedule once, now, as its task does when its timer fires: cuts a silent
    /// report if two intervals passed without location traffic. Returns whether it cut one.
    /// For tests and simulations with a [`crate::clock::ManualClock`].
    pub fn poll_reports(&self) -> bool {
        self.shared.hub.reporter().tick()
    }

    /// Whether `close` was called.
    pub fn is_closed(&self) -> bool {
        self.shared.lock().closed
    }

    /// Stops accepting, sends what is owed and the last migration report in a last burst (waits
    /// at most 2 s, only over transports not known to be down, not at all while the network is
    /// unavailable), stops the transport tasks (they finish the attempt in progress, at most
    /// 3 s), disconnects, and waits (at most 5 s) until the outbox is on disk: 10 s at worst.
    /// What is still owed is delivered by the next publisher on the same data directory.
    pub fn close(&self) {
        let was_closed = {
            let mut st = self.shared.lock();
            let was_closed = std::mem::replace(&mut st.closed, true);
            if !was_closed {
                self.shared.hub.reporter().cut(&st, crate::telemetry::reports::Trigger::Shutdown);
            }
            was_closed
        };
        if was_closed {
            return;
        }
        self.last_report_out();
        let _ = self.shutdown.send(true);
        self.shared.hub.progress.notify();
        if self.shared.hub.events.set_debug_mode(false) {
            crate::telemetry::logging::debug_mode_changed(false);
        }
        // Drop the app's listeners (a listener that holds its publisher forms a cycle across
        // the FFI) and end the `dualpub-debug` thread now, not when the object is freed.
        self.set_config_listener(None);
        self.shared.hub.events.set_listener(None);
        self.tasks.stop();
        // Let the store write what is queued, so the next publisher on this directory finds it;
        // bounded, so a dying disk cannot hang the app.
        let _ = self.store_tx.send(store::Msg::Stop);
        if let Some(done) = self.store_done.lock().unwrap_or_else(|p| p.into_inner()).take() {
            if done.recv_timeout(CLOSE_PERSIST_TIMEOUT).is_err() {
                self.shared.event(log::Level::Error, "storage", || format!("the store did not finish within {CLOSE_PERSIST_TIMEOUT:?}"));
            }
        }
        self.shared.event(log::Level::Info, "lifecycle", || "closed".into());
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.close();
    }
}
