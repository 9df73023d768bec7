//! Migration metrics (names in docs/CONTRACT.md#metrics): lock-free counters on the hot path, a snapshot record for the
//! app and Prometheus text for tools. Metrics live in memory and can never evict locations.

use crate::outbox::Transport;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

/// Upper bounds (ms) of the latency histogram: 0.5 ms × 1.25^i, up to about 13 minutes.
fn bucket_bounds() -> &'static [f64] {
    static BOUNDS: std::sync::OnceLock<Vec<f64>> = std::sync::OnceLock::new();
    BOUNDS.get_or_init(|| (0..65).map(|i| 0.5 * 1.25f64.powi(i)).collect())
}

/// A fixed-bucket latency histogram; quantiles are bucket upper bounds (≤ 25 % above the truth).
#[derive(Debug, Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    sum_ms: f64,
    total: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram { counts: vec![0; bucket_bounds().len() + 1], sum_ms: 0.0, total: 0 }
    }
}

impl Histogram {
    /// Records one observation in milliseconds.
    pub fn observe(&mut self, ms: f64) {
        let i = bucket_bounds().partition_point(|&b| b < ms);
        self.counts[i] += 1;
        self.sum_ms += ms;
        self.total += 1;
    }

    /// The count of each bucket (docs/CONTRACT.md#latency-buckets): one per bound, then the overflow.
    pub fn counts(&self) -> &[u64] {
        &self.counts
    }

    /// The `q` quantile (0 < q ≤ 1) in ms, or 0 with no observations.
    pub fn quantile(&self, q: f64) -> f64 {
        if self.total == 0 {
            return 0.0;
        }
        let rank = (q * self.total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return *bucket_bounds().get(i).unwrap_or(bucket_bounds().last().unwrap_or(&0.0));
            }
        }
        0.0
    }
}

/// The `reason` of `dualpub_dropped_total` for locations on an unreadable (corrupt) page of the
/// outbox database: read back, salvaged, or carried over by a rebuild, they could not be.
pub const DROPPED_UNREADABLE: &str = "unreadable";

/// Per-transport counters.
#[derive(Debug, Default)]
struct TransportCounters {
    circuit_openings: AtomicU64,
    success: AtomicU64,
    failure: AtomicU64,
    retries: AtomicU64,
    stalls: AtomicU64,
    bytes_sent: AtomicU64,
    circuit_open: AtomicBool,
    /// Wall clock of the last acknowledgement, ms (0: none in this run).
    last_ack_ms: std::sync::atomic::AtomicI64,
    latency: Mutex<Histogram>,
}

/// All counters of one publisher.
#[derive(Debug, Default)]
pub struct Metrics {
    accepted: AtomicU64,
    rejected: Mutex<BTreeMap<String, u64>>,
    /// Per transport, indexed by [`Transport::index`].
    transports: [TransportCounters; 2],
    dual_both: AtomicU64,
    dual_mqtt_only: AtomicU64,
    dual_pubsub_only: AtomicU64,
    fallback: AtomicU64,
    mqtt_auth_refusals: AtomicU64,
    dropped: Mutex<BTreeMap<String, u64>>,
    dead_letter: AtomicU64,
    http_requests: AtomicU64,
    storage_errors: AtomicU64,
    storage_resets: AtomicU64,
    decision_changes: AtomicU64,
    clock_skew: AtomicU64,
    config_rejected: Mutex<BTreeMap<String, u64>>,
    config_fetches: Mutex<BTreeMap<String, u64>>,
    recovered: AtomicU64,
    /// Pub/Sub requests sent gzip-compressed, and how many of them the endpoint refused.
    gzip_requests: AtomicU64,
    gzip_refusals: AtomicU64,
    /// Pub/Sub request bytes before compression (`bytes_sent` counts them as sent).
    uncompressed_bytes: AtomicU64,
    /// What the endpoint showed of gzip ([`GzipSupport::code`]).
    gzip_support: std::sync::atomic::AtomicI64,
    /// Every latency observed, per transport, when a test or the demo asked to keep them.
    samples: Mutex<Option<[Vec<f64>; 2]>>,
}

pub use crate::outbox::DualOutcome;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic elsewhere must not take the metrics down with it.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Metrics {
    fn t(&self, t: Transport) -> &TransportCounters {
        &self.transports[t.index()]
    }
    /// Messages `t` acknowledged in this run.
    pub fn acknowledged(&self, t: Transport) -> u64 {
        self.t(t).success.load(Relaxed)
    }
    /// When `t` last acknowledged something in this run (wall clock, ms).
    pub fn last_ack_ms(&self, t: Transport) -> Option<i64> {
        Some(self.t(t).last_ack_ms.load(Relaxed)).filter(|&ms| ms > 0)
    }
    /// A location was accepted.
    pub fn accepted(&self, n: u64) {
        self.accepted.fetch_add(n, Relaxed);
    }
    /// A location was rejected for `reason`.
    pub fn rejected(&self, reason: String) {
        *lock(&self.rejected).entry(reason).or_default() += 1;
    }
    /// `n` messages were acknowledged by `t`; `latencies_ms` from acceptance to acknowledgement.
    pub fn published(&self, t: Transport, latencies_ms: impl IntoIterator<Item = f64>) {
        let c = self.t(t);
        let mut h = lock(&c.latency);
        let mut samples = lock(&self.samples);
        let mut n = 0;
        for ms in latencies_ms {
            h.observe(ms);
            if let Some(s) = samples.as_mut() {
                s[t.index()].push(ms);
            }
            n += 1;
        }
        c.success.fetch_add(n, Relaxed);
        if n > 0 {
            c.last_ack_ms.store(crate::clock::now_ms(), Relaxed);
        }
    }

    /// Keeps every latency observed from now on (memory grows with every acknowledgement: for
    /// tests and the demo, which compare the histograms with the raw values).
    pub fn keep_samples(&self) {
        lock(&self.samples).get_or_insert_with(Default::default);
    }

    /// The latencies kept since [`Metrics::keep_samples`], MQTT then Pub/Sub, in ms.
    pub fn samples(&self) -> [Vec<f64>; 2] {
        lock(&self.samples).clone().unwrap_or_default()
    }
    /// `n` messages failed an attempt on `t`.
    pub fn failed(&self, t: Transport, n: u64) {
        self.t(t).failure.fetch_add(n, Relaxed);
    }
    /// A connection or request on `t` was given up after no progress for the stall limit.
    pub fn stall(&self, t: Transport) {
        self.t(t).stalls.fetch_add(1, Relaxed);
    }

    /// One retry (a reconnect or a repeated request) on `t`.
    pub fn retry(&self, t: Transport) {
        self.t(t).retries.fetch_add(1, Relaxed);
    }
    /// Bytes written for `t` (payloads and request bodies).
    pub fn bytes_sent(&self, t: Transport, n: u64) {
        self.t(t).bytes_sent.fetch_add(n, Relaxed);
    }
    /// Whether `t`'s circuit is open (not sending until a probe succeeds).
    pub fn set_circuit_open(&self, t: Transport, open: bool) {
        self.t(t).circuit_open.store(open, Relaxed);
    }
    /// Whether `t`'s circuit is open now.
    pub fn circuit_open(&self, t: Transport) -> bool {
        self.t(t).circuit_open.load(Relaxed)
    }
    /// `t`'s circuit opened (once more).
    pub fn circuit_opened(&self, t: Transport) {
        self.t(t).circuit_openings.fetch_add(1, Relaxed);
    }
    /// A location left the outbox.
    pub fn outcome(&self, o: DualOutcome) {
        match o {
            DualOutcome::Both => &self.dual_both,
            DualOutcome::MqttOnly => &self.dual_mqtt_only,
            DualOutcome::PubSubOnly => &self.dual_pubsub_only,
        }
        .fetch_add(1, Relaxed);
    }

    /// The broker refused an MQTT connection's credentials.
    pub fn mqtt_auth_refused(&self) {
        self.mqtt_auth_refusals.fetch_add(1, Relaxed);
    }

    /// `n` locations were sent to MQTT because Pub/Sub could not deliver them.
    pub fn fallback(&self, n: u64) {
        self.fallback.fetch_add(n, Relaxed);
    }
    /// A location was dropped for `reason` (always logged too): an [`crate::outbox::Eviction`]'s,
    /// or [`DROPPED_UNREADABLE`].
    pub fn dropped(&self, reason: &str, n: u64) {
        *lock(&self.dropped).entry(reason.to_string()).or_default() += n;
    }
    /// A message was dead-lettered.
    pub fn dead_letter(&self) {
        self.dead_letter.fetch_add(1, Relaxed);
    }
    /// A group commit failed (disk full, I/O error).
    pub fn storage_error(&self) {
        self.storage_errors.fetch_add(1, Relaxed);
    }
    /// A config document (or part of one) was refused or ignored for `reason`.
    pub fn config_rejected(&self, reason: &str, n: u64) {
        *lock(&self.config_rejected).entry(reason.to_string()).or_default() += n;
    }
    /// A config fetch ended (`dualpub_config_fetches_total{result}`).
    pub fn config_fetched(&self, result: &str) {
        *lock(&self.config_fetches).entry(result.to_string()).or_default() += 1;
    }
    /// The decision in force changed (`dualpub_decision_changes_total`).
    pub fn decision_changed(&self) {
        self.decision_changes.fetch_add(1, Relaxed);
    }
    /// Locations accepted with a timestamp more than a day after the phone's clock
    /// (`dualpub_clock_skew_total`).
    pub fn clock_skew(&self, n: u64) {
        self.clock_skew.fetch_add(n, Relaxed);
    }
    /// A corrupt outbox database was moved aside and a fresh one created.
    pub fn storage_reset(&self) {
        self.storage_resets.fetch_add(1, Relaxed);
    }
    /// Locations found in the outbox at start-up.
    pub fn recovered(&self, n: u64) {
        self.recovered.fetch_add(n, Relaxed);
    }
    /// One HTTP request was sent.
    pub fn http_request(&self) {
        self.http_requests.fetch_add(1, Relaxed);
    }
    /// A Pub/Sub request body of `uncompressed` bytes was sent, gzip-compressed if `gzip`.
    pub fn pubsub_body(&self, uncompressed: u64, gzip: bool) {
        self.uncompressed_bytes.fetch_add(uncompressed, Relaxed);
        self.gzip_requests.fetch_add(gzip as u64, Relaxed);
    }
    /// The Pub/Sub endpoint refused a gzip body.
    pub fn gzip_refused(&self) {
        self.gzip_refusals.fetch_add(1, Relaxed);
    }
    /// What the Pub/Sub endpoint has shown of gzip.
    pub fn set_gzip_support(&self, s: GzipSupport) {
        self.gzip_support.store(s.code(), Relaxed);
    }

    /// This run's counters in a report's shape (`last_seq` left 0) and latency histograms.
    pub(crate) fn report_parts(&self) -> (crate::telemetry::reports::Counters, [Histogram; 2]) {
        use crate::telemetry::reports::{Counters, DualCounts, TransportCounts};
        let t = |t: Transport| {
            let c = self.t(t);
            TransportCounts {
                acked: c.success.load(Relaxed),
                failed: c.failure.load(Relaxed),
                retries: c.retries.load(Relaxed),
                breaker_openings: c.circuit_openings.load(Relaxed),
            }
        };
        let counters = Counters {
            accepted: self.accepted.load(Relaxed),
            last_seq: 0,
            rejected: lock(&self.rejected).clone(),
            mqtt: t(Transport::Mqtt),
            pubsub: t(Transport::PubSub),
            fallbacks: self.fallback.load(Relaxed),
            dual: DualCounts {
                both: self.dual_both.load(Relaxed),
                mqtt_only: self.dual_mqtt_only.load(Relaxed),
                pubsub_only: self.dual_pubsub_only.load(Relaxed),
            },
            dropped: lock(&self.dropped).clone(),
            dead_letters: self.dead_letter.load(Relaxed),
            config_fetches: lock(&self.config_fetches).clone(),
            gzip: [("refusals", &self.gzip_refusals), ("requests", &self.gzip_requests)]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.load(Relaxed)))
                .filter(|(_, v)| *v > 0)
                .collect(),
        };
        (counters, Transport::ALL.map(|t| lock(&self.t(t).latency).clone()))
    }

    /// A consistent-enough copy of every counter for the app.
    pub fn snapshot(&self, g: &Gauges) -> MetricsSnapshot {
        let t = |t: Transport, depth: u64| {
            let c = self.t(t);
            let h = lock(&c.latency).clone();
            TransportMetrics {
                transport: t,
                published: c.success.load(Relaxed),
                failed: c.failure.load(Relaxed),
                retries: c.retries.load(Relaxed),
                stalls: c.stalls.load(Relaxed),
                bytes_sent: c.bytes_sent.load(Relaxed),
                queue_depth: depth,
                circuit_open: c.circuit_open.load(Relaxed),
                circuit_openings: c.circuit_openings.load(Relaxed),
                latency_p50_ms: h.quantile(0.50),
                latency_p95_ms: h.quantile(0.95),
                latency_p99_ms: h.quantile(0.99),
            }
        };
        MetricsSnapshot {
            accepted: self.accepted.load(Relaxed),
            rejected: lock(&self.rejected).iter().map(|(k, v)| (k.clone(), *v)).collect(),
            mqtt: t(Transport::Mqtt, g.depth[Transport::Mqtt.index()]),
            pubsub: t(Transport::PubSub, g.depth[Transport::PubSub.index()]),
            dual_both: self.dual_both.load(Relaxed),
            dual_mqtt_only: self.dual_mqtt_only.load(Relaxed),
            dual_pubsub_only: self.dual_pubsub_only.load(Relaxed),
            fallback: self.fallback.load(Relaxed),
            mqtt_auth_refusals: self.mqtt_auth_refusals.load(Relaxed),
            dropped: lock(&self.dropped).iter().map(|(k, v)| (k.clone(), *v)).collect(),
            dead_letter: self.dead_letter.load(Relaxed),
            http_requests: self.http_requests.load(Relaxed),
            storage_errors: self.storage_errors.load(Relaxed),
            storage_resets: self.storage_resets.load(Relaxed),
            decision_changes: self.decision_changes.load(Relaxed),
            clock_skew: self.clock_skew.load(Relaxed),
            config_rejected: lock(&self.config_rejected).iter().map(|(k, v)| (k.clone(), *v)).collect(),
            config_fetches: lock(&self.config_fetches).iter().map(|(k, v)| (k.clone(), *v)).collect(),
            recovered: self.recovered.load(Relaxed),
            pubsub_gzip_support: GzipSupport::from_code(Some(self.gzip_support.load(Relaxed))),
            pubsub_gzip_requests: self.gzip_requests.load(Relaxed),
            pubsub_gzip_refusals: self.gzip_refusals.load(Relaxed),
            pubsub_uncompressed_bytes: self.uncompressed_bytes.load(Relaxed),
            queue_oldest_age_seconds: g.oldest_age_seconds,
            config_version: g.config_version,
            rollout_bucket: g.rollout_bucket,
        }
    }

    /// The Prometheus text exposition of every metric (docs/CONTRACT.md#metrics).
    pub fn prometheus(&self, g: &Gauges) -> String {
        use std::fmt::Write;
        let s = self.snapshot(g);
        let mut o = String::new();
        let _ = writeln!(o, "# TYPE dualpub_locations_accepted_total counter\ndualpub_locations_accepted_total {}", s.accepted);
        let _ = writeln!(o, "# TYPE dualpub_locations_rejected_total counter");
        for (r, v) in &lock(&self.rejected).clone() {
            let _ = writeln!(o, "dualpub_locations_rejected_total{{reason=\"{r}\"}} {v}");
        }
        let _ = writeln!(o, "# TYPE dualpub_publish_total counter");
        for tm in [&s.mqtt, &s.pubsub] {
            let n = tm.transport.as_str();
            let _ = writeln!(o, "dualpub_publish_total{{transport=\"{n}\",result=\"success\"}} {}", tm.published);
            let _ = writeln!(o, "dualpub_publish_total{{transport=\"{n}\",result=\"failure\"}} {}", tm.failed);
        }
        let _ = writeln!(o, "# TYPE dualpub_publish_latency_seconds histogram");
        for t in Transport::ALL {
            let h = lock(&self.t(t).latency).clone();
            let mut cum = 0;
            for (i, b) in bucket_bounds().iter().enumerate() {
                cum += h.counts[i];
                let _ = writeln!(o, "dualpub_publish_latency_seconds_bucket{{transport=\"{}\",le=\"{}\"}} {cum}", t.as_str(), b / 1000.0);
            }
            let _ = writeln!(o, "dualpub_publish_latency_seconds_bucket{{transport=\"{}\",le=\"+Inf\"}} {}", t.as_str(), h.total);
            let _ = writeln!(o, "dualpub_publish_latency_seconds_sum{{transport=\"{}\"}} {}", t.as_str(), h.sum_ms / 1000.0);
            let _ = writeln!(o, "dualpub_publish_latency_seconds_count{{transport=\"{}\"}} {}", t.as_str(), h.total);
        }
        let _ = writeln!(o, "# TYPE dualpub_dual_outcome_total counter");
        for (k, v) in [("both", s.dual_both), ("mqtt_only", s.dual_mqtt_only), ("pubsub_only", s.dual_pubsub_only)] {
            let _ = writeln!(o, "dualpub_dual_outcome_total{{outcome=\"{k}\"}} {v}");
        }
        let _ = writeln!(o, "# TYPE dualpub_fallback_total counter\ndualpub_fallback_total {}", s.fallback);
        let _ = writeln!(o, "# TYPE dualpub_mqtt_auth_refusals_total counter\ndualpub_mqtt_auth_refusals_total {}", s.mqtt_auth_refusals);
        let _ = writeln!(o, "# TYPE dualpub_retries_total counter");
        for tm in [&s.mqtt, &s.pubsub] {
            let _ = writeln!(o, "dualpub_retries_total{{transport=\"{}\"}} {}", tm.transport.as_str(), tm.retries);
        }
        let _ = writeln!(o, "# TYPE dualpub_stalls_total counter");
        for tm in [&s.mqtt, &s.pubsub] {
            let _ = writeln!(o, "dualpub_stalls_total{{transport=\"{}\"}} {}", tm.transport.as_str(), tm.stalls);
        }
        let _ = writeln!(o, "# TYPE dualpub_queue_depth gauge");
        for tm in [&s.mqtt, &s.pubsub] {
            let _ = writeln!(o, "dualpub_queue_depth{{transport=\"{}\"}} {}", tm.transport.as_str(), tm.queue_depth);
        }
        let _ = writeln!(o, "# TYPE dualpub_queue_oldest_age_seconds gauge\ndualpub_queue_oldest_age_seconds {}", s.queue_oldest_age_seconds);
        let _ = writeln!(o, "# TYPE dualpub_dropped_total counter");
        for (r, v) in &s.dropped {
            let _ = writeln!(o, "dualpub_dropped_total{{reason=\"{r}\"}} {v}");
        }
        let _ = writeln!(o, "# TYPE dualpub_dead_letter_total counter\ndualpub_dead_letter_total {}", s.dead_letter);
        let _ = writeln!(o, "# TYPE dualpub_circuit_open gauge");
        for tm in [&s.mqtt, &s.pubsub] {
            let _ = writeln!(o, "dualpub_circuit_open{{transport=\"{}\"}} {}", tm.transport.as_str(), tm.circuit_open as u8);
        }
        let _ = writeln!(o, "# TYPE dualpub_circuit_openings_total counter");
        for tm in [&s.mqtt, &s.pubsub] {
            let _ = writeln!(o, "dualpub_circuit_openings_total{{transport=\"{}\"}} {}", tm.transport.as_str(), tm.circuit_openings);
        }
        let _ = writeln!(o, "# TYPE dualpub_http_requests_total counter\ndualpub_http_requests_total {}", s.http_requests);
        let _ = writeln!(o, "# TYPE dualpub_storage_errors_total counter\ndualpub_storage_errors_total {}", s.storage_errors);
        let _ = writeln!(o, "# TYPE dualpub_storage_resets_total counter\ndualpub_storage_resets_total {}", s.storage_resets);
        let _ = writeln!(o, "# TYPE dualpub_config_rejected_total counter");
        for (r, v) in &s.config_rejected {
            let _ = writeln!(o, "dualpub_config_rejected_total{{reason=\"{r}\"}} {v}");
        }
        let _ = writeln!(o, "# TYPE dualpub_config_fetches_total counter");
        for (r, v) in &s.config_fetches {
            let _ = writeln!(o, "dualpub_config_fetches_total{{result=\"{r}\"}} {v}");
        }
        let _ = writeln!(o, "# TYPE dualpub_decision_changes_total counter\ndualpub_decision_changes_total {}", s.decision_changes);
        let _ = writeln!(o, "# TYPE dualpub_clock_skew_total counter\ndualpub_clock_skew_total {}", s.clock_skew);
        let _ = writeln!(o, "# TYPE dualpub_recovered_total counter\ndualpub_recovered_total {}", s.recovered);
        let _ = writeln!(o, "# TYPE dualpub_bytes_sent_total counter");
        for tm in [&s.mqtt, &s.pubsub] {
            let _ = writeln!(o, "dualpub_bytes_sent_total{{transport=\"{}\"}} {}", tm.transport.as_str(), tm.bytes_sent);
        }
        let _ = writeln!(o, "# TYPE dualpub_pubsub_uncompressed_bytes_total counter\ndualpub_pubsub_uncompressed_bytes_total {}", s.pubsub_uncompressed_bytes);
        let _ = writeln!(o, "# TYPE dualpub_pubsub_gzip_requests_total counter\ndualpub_pubsub_gzip_requests_total {}", s.pubsub_gzip_requests);
        let _ = writeln!(o, "# TYPE dualpub_pubsub_gzip_refusals_total counter\ndualpub_pubsub_gzip_refusals_total {}", s.pubsub_gzip_refusals);
        let _ = writeln!(o, "# TYPE dualpub_pubsub_gzip_support gauge");
        for state in [GzipSupport::Unknown, GzipSupport::Accepted, GzipSupport::Refused] {
            let _ = writeln!(o, "dualpub_pubsub_gzip_support{{state=\"{}\"}} {}", state.as_str(), (state == s.pubsub_gzip_support) as u8);
        }
        let _ = writeln!(o, "# TYPE dualpub_config_version gauge\ndualpub_config_version {}", s.config_version);
        let _ = writeln!(o, "# TYPE dualpub_rollout_bucket gauge\ndualpub_rollout_bucket {}", s.rollout_bucket);
        o
    }
}

/// What a Pub/Sub endpoint has shown of gzip request bodies (docs/CONTRACT.md#compression;
/// learnt by `crate::transport::gzip`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum GzipSupport {
    /// No compressed request answered yet: the next one is the probe.
    Unknown,
    /// It delivered a compressed request.
    Accepted,
    /// It refused one (HTTP 415, or a 400 where the same messages uncompressed were then
    /// delivered): bodies go uncompressed for good, unless the app or the config says `gzip`.
    Refused,
}

impl GzipSupport {
    /// `unknown`, `accepted` or `refused` (metrics labels, logs).
    pub fn as_str(&self) -> &'static str {
        match self {
            GzipSupport::Unknown => "unknown",
            GzipSupport::Accepted => "accepted",
            GzipSupport::Refused => "refused",
        }
    }

    /// Its value in the `meta` table.
    pub(crate) fn code(self) -> i64 {
        match self {
            GzipSupport::Unknown => 0,
            GzipSupport::Accepted => 1,
            GzipSupport::Refused => 2,
        }
    }

    /// Reads a `meta` value back; anything unknown is [`GzipSupport::Unknown`] (probe again).
    pub(crate) fn from_code(code: Option<i64>) -> Self {
        match code {
            Some(1) => GzipSupport::Accepted,
            Some(2) => GzipSupport::Refused,
            _ => GzipSupport::Unknown,
        }
    }
}

/// Values read from the outbox and the decision at snapshot time.
#[derive(Debug, Clone, Default)]
pub struct Gauges {
    /// Locations still owed to each transport, indexed by [`Transport::index`].
    pub depth: [u64; 2],
    /// Age of the oldest location in the outbox.
    pub oldest_age_seconds: f64,
    /// Version of the config in force.
    pub config_version: u64,
    /// This device's rollout bucket.
    pub rollout_bucket: u32,
}

/// One transport's figures.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct TransportMetrics {
    /// Which transport.
    pub transport: Transport,
    /// Messages acknowledged (`dualpub_publish_total{result="success"}`).
    pub published: u64,
    /// Failed message attempts (`result="failure"`).
    pub failed: u64,
    /// Reconnects or repeated requests.
    pub retries: u64,
    /// Connections or requests given up after no progress for the stall limit
    /// (`dualpub_stalls_total`).
    pub stalls: u64,
    /// Payload and request bytes written.
    pub bytes_sent: u64,
    /// Locations still owed.
    pub queue_depth: u64,
    /// The circuit breaker is open.
    pub circuit_open: bool,
    /// How often the breaker opened (`dualpub_circuit_openings_total`).
    pub circuit_openings: u64,
    /// Median latency from acceptance to acknowledgement, ms.
    pub latency_p50_ms: f64,
    /// 95th percentile latency, ms.
    pub latency_p95_ms: f64,
    /// 99th percentile latency, ms.
    pub latency_p99_ms: f64,
}

/// Every migration metric (docs/CONTRACT.md#metrics) at one moment.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct MetricsSnapshot {
    /// Locations accepted by `sendLocation(s)`.
    pub accepted: u64,
    /// Rejected locations by reason.
    pub rejected: HashMap<String, u64>,
    /// MQTT figures.
    pub mqtt: TransportMetrics,
    /// Pub/Sub figures.
    pub pubsub: TransportMetrics,
    /// Locations delivered by both transports.
    pub dual_both: u64,
    /// Locations delivered by MQTT only.
    pub dual_mqtt_only: u64,
    /// Locations delivered by Pub/Sub only.
    pub dual_pubsub_only: u64,
    /// Locations sent to MQTT because Pub/Sub could not deliver them.
    pub fallback: u64,
    /// MQTT connections the broker refused for their credentials
    /// (`dualpub_mqtt_auth_refusals_total`).
    pub mqtt_auth_refusals: u64,
    /// Dropped locations by reason.
    pub dropped: HashMap<String, u64>,
    /// Messages dead-lettered after Pub/Sub refused them as invalid.
    pub dead_letter: u64,
    /// HTTP requests sent.
    pub http_requests: u64,
    /// Failed group commits (`dualpub_storage_errors_total`).
    pub storage_errors: u64,
    /// Corrupt outbox databases moved aside (`dualpub_storage_resets_total`).
    pub storage_resets: u64,
    /// Config documents refused, overrides skipped and fields ignored, by reason
    /// (`dualpub_config_rejected_total{reason}`).
    pub config_rejected: HashMap<String, u64>,
    /// Config fetches by result: applied, not_modified, rejected, failed
    /// (`dualpub_config_fetches_total{result}`).
    pub config_fetches: HashMap<String, u64>,
    /// Changes of decision since start-up (`dualpub_decision_changes_total`).
    pub decision_changes: u64,
    /// Locations accepted with a timestamp more than a day after the phone's clock (a wrong
    /// clock, or a fix stamped by GNSS): `dualpub_clock_skew_total`.
    pub clock_skew: u64,
    /// Locations resumed from the outbox at start-up (`dualpub_recovered_total`).
    pub recovered: u64,
    /// What the Pub/Sub endpoint has shown of gzip bodies (`dualpub_pubsub_gzip_support`;
    /// docs/CONTRACT.md#compression).
    pub pubsub_gzip_support: GzipSupport,
    /// Pub/Sub requests sent gzip-compressed (`dualpub_pubsub_gzip_requests_total`).
    pub pubsub_gzip_requests: u64,
    /// Compressed requests the endpoint refused (`dualpub_pubsub_gzip_refusals_total`).
    pub pubsub_gzip_refusals: u64,
    /// Pub/Sub request bytes before compression (`pubsub.bytesSent` counts what was sent;
    /// `dualpub_pubsub_uncompressed_bytes_total`).
    pub pubsub_uncompressed_bytes: u64,
    /// Age of the oldest location still owed, seconds.
    pub queue_oldest_age_seconds: f64,
    /// Version of the config in force.
    pub config_version: u64,
    /// This device's rollout bucket.
    pub rollout_bucket: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_come_from_the_right_buckets() {
        let mut h = Histogram::default();
        for ms in 1..=100 {
            h.observe(ms as f64);
        }
        let p50 = h.quantile(0.5);
        let p99 = h.quantile(0.99);
        assert!((50.0..=62.5).contains(&p50), "p50 {p50}");
        assert!((99.0..=124.0).contains(&p99), "p99 {p99}");
        assert_eq!(Histogram::default().quantile(0.5), 0.0);
    }

    #[test]
    fn prometheus_text_names_every_metric() {
        let m = Metrics::default();
        m.accepted(3);
        m.rejected("invalid_latitude".into());
        m.published(Transport::Mqtt, [5.0, 7.0]);
        m.outcome(DualOutcome::Both);
        let text = m.prometheus(&Gauges { config_version: 42, ..Default::default() });
        for name in [
            "dualpub_locations_accepted_total 3",
            "dualpub_locations_rejected_total{reason=\"invalid_latitude\"} 1",
            "dualpub_publish_total{transport=\"mqtt\",result=\"success\"} 2",
            "dualpub_publish_latency_seconds_count{transport=\"mqtt\"} 2",
            "dualpub_dual_outcome_total{outcome=\"both\"} 1",
            "dualpub_fallback_total 0",
            "dualpub_retries_total{transport=\"pubsub\"} 0",
            "dualpub_queue_depth{transport=\"mqtt\"} 0",
            "dualpub_queue_oldest_age_seconds 0",
            "dualpub_dead_letter_total 0",
            "dualpub_circuit_open{transport=\"pubsub\"} 0",
            "dualpub_http_requests_total 0",
            "dualpub_bytes_sent_total{transport=\"mqtt\"} 0",
            "dualpub_config_version 42",
            "dualpub_rollout_bucket 0",
        ] {
            assert!(text.contains(name), "missing {name}\n{text}");
        }
    }
}
