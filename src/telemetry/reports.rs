//! Migration reports (docs/CONTRACT.md#migration-reports): what every device tells the fleet
//! about its migration. This module holds the persisted [`Tally`] (cumulative counters since
//! the data directory's epoch began, the schedule, the last location `seq`), the event-time
//! buckets since the last report, the report document and its size cap, the schedule (when a
//! report is due, may wake the radio, or is rate-limited) and the per-transport slots a cut
//! report waits in. It knows nothing of the network: the transports ask the hub for a report
//! when they have room, and tell it when one was acknowledged.

use crate::config::rollout::RolloutDecision;
use crate::config::MIN_REPORT_INTERVAL_SECS;
use crate::outbox::Transport;
use crate::telemetry::metrics::Histogram;
use crate::wire::Route;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The largest report, in bytes; event-time buckets are left out (oldest first) to stay within it.
pub const MAX_REPORT_BYTES: usize = 4096;
/// Most reports cut in one day of the run clock (the time the SDK observed, which a wall clock
/// set back or forward does not move), `close` included.
pub const MAX_REPORTS_PER_DAY: u32 = 300;
/// Of those, most cut for a config change or a breaker: the rest stay for the interval, silent
/// and shutdown reports, so a flapping config cannot silence a device for the day.
pub const MAX_TRIGGERED_PER_DAY: u32 = 200;
/// Config-change reports are cut at most this often (run clock, ms); the changes in between
/// are reported together, once the minute is over, with the decision then in force.
pub const CONFIG_REPORT_GAP_MS: i64 = 60_000;
/// The MQTT topic of reports; `{deviceId}` is replaced by the device id.
pub const MQTT_TOPIC_TEMPLATE: &str = "device/migration-report/{deviceId}";
/// Width of an event-time bucket.
const BUCKET_MS: i64 = 600_000;
/// Most event-time buckets kept between two reports (a backlog spread over days); beyond it
/// the oldest are dropped and counted in `bucketsCut`.
const MAX_BUCKETS: usize = 1_000;
const DAY_MS: i64 = 86_400_000;

/// Why a report was cut (the report's `trigger`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// Due, and a transport is sending locations.
    Interval,
    /// Two intervals without location traffic: sent on its own.
    Silent,
    /// The config in force is about to change.
    Config,
    /// A breaker opened.
    Breaker,
    /// `close`.
    Shutdown,
}

impl Trigger {
    /// The label in the report.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Interval => "interval",
            Trigger::Silent => "silent",
            Trigger::Config => "config",
            Trigger::Breaker => "breaker",
            Trigger::Shutdown => "shutdown",
        }
    }
}

/// One transport's cumulative counters.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TransportCounts {
    /// Messages acknowledged.
    pub acked: u64,
    /// Message attempts that failed.
    pub failed: u64,
    /// Reconnects or repeated requests.
    pub retries: u64,
    /// Times the breaker opened.
    pub breaker_openings: u64,
}

/// Which transports delivered the locations that left the outbox.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DualCounts {
    /// By both.
    pub both: u64,
    /// By MQTT only.
    pub mqtt_only: u64,
    /// By Pub/Sub only.
    pub pubsub_only: u64,
}

/// The report's `counters`: cumulative since the epoch began.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Counters {
    /// Locations accepted.
    pub accepted: u64,
    /// The last location `seq` given out.
    pub last_seq: u64,
    /// Locations refused, by reason.
    pub rejected: BTreeMap<String, u64>,
    /// MQTT.
    pub mqtt: TransportCounts,
    /// Pub/Sub.
    pub pubsub: TransportCounts,
    /// Locations also sent to MQTT because Pub/Sub could not deliver them.
    pub fallbacks: u64,
    /// Dual outcomes.
    pub dual: DualCounts,
    /// Locations (and dead letters) dropped, by reason.
    pub dropped: BTreeMap<String, u64>,
    /// Messages dead-lettered.
    pub dead_letters: u64,
    /// Config fetches by result.
    pub config_fetches: BTreeMap<String, u64>,
    /// Pub/Sub gzip: `requests` sent compressed, `refusals` of them by the endpoint
    /// (docs/CONTRACT.md#compression); only counts above zero.
    pub gzip: BTreeMap<String, u64>,
}

fn add_maps(a: &mut BTreeMap<String, u64>, b: &BTreeMap<String, u64>) {
    for (k, v) in b {
        *a.entry(k.clone()).or_default() += v;
    }
}

impl TransportCounts {
    fn add(&mut self, o: &TransportCounts) {
        self.acked += o.acked;
        self.failed += o.failed;
        self.retries += o.retries;
        self.breaker_openings += o.breaker_openings;
    }
}

impl Counters {
    /// These counters plus `run`'s (the counts of this run on top of the persisted base);
    /// `last_seq` is not a count and is taken from `run`.
    pub fn plus(&self, run: &Counters) -> Counters {
        let mut c = self.clone();
        c.accepted += run.accepted;
        c.last_seq = run.last_seq;
        add_maps(&mut c.rejected, &run.rejected);
        c.mqtt.add(&run.mqtt);
        c.pubsub.add(&run.pubsub);
        c.fallbacks += run.fallbacks;
        c.dual.both += run.dual.both;
        c.dual.mqtt_only += run.dual.mqtt_only;
        c.dual.pubsub_only += run.dual.pubsub_only;
        add_maps(&mut c.dropped, &run.dropped);
        c.dead_letters += run.dead_letters;
        add_maps(&mut c.config_fetches, &run.config_fetches);
        add_maps(&mut c.gzip, &run.gzip);
        c
    }
}

/// What a data directory keeps of its reports, persisted with every outbox commit: counters and
/// latency histograms up to that commit, the schedule, the last location `seq`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Tally {
    /// UUIDv7 of the epoch (created with the tally).
    pub epoch: String,
    /// When the epoch began (device clock, ms).
    pub epoch_start_ms: i64,
    /// The last report cut.
    pub report_seq: u64,
    /// When it was cut.
    pub last_cut_ms: Option<i64>,
    /// The day of the run clock (run ms / 86,400,000) `reports_in_day` counts.
    pub day: i64,
    /// Reports cut that day.
    pub reports_in_day: u32,
    /// Of those, cut for a config change or a breaker.
    pub triggered_in_day: u32,
    /// When the last config-change report was cut (run clock, ms).
    pub config_cut_run_ms: Option<i64>,
    /// A config change waits to be reported (it came within a minute of the last one).
    pub config_pending: bool,
    /// Counters (with `lastSeq`).
    pub counters: Counters,
    /// Latency histogram counts, MQTT then Pub/Sub.
    pub latency: [Vec<u64>; 2],
}

impl Tally {
    /// A new epoch starting at `now_ms`.
    pub fn new_epoch(now_ms: i64) -> Tally {
        Tally { epoch: uuid::Uuid::now_v7().to_string(), epoch_start_ms: now_ms, ..Tally::default() }
    }

    /// Reads a persisted tally; `None` if unreadable (a new epoch starts: counts restart).
    pub fn from_json(json: &str) -> Option<Tally> {
        serde_json::from_str::<Tally>(json).ok().filter(|t| !t.epoch.is_empty())
    }
}

/// Sums two histograms' counts (lengths may differ if the bounds ever grow; they never shrink).
fn add_counts(a: &[u64], b: &[u64]) -> Vec<u64> {
    (0..a.len().max(b.len())).map(|i| a.get(i).copied().unwrap_or(0) + b.get(i).copied().unwrap_or(0)).collect()
}

/// One 10-minute event-time bucket since the previous report.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Bucket {
    accepted: u64,
    acked: [u64; 2],
    first_seq: u64,
    last_seq: u64,
}

/// Who the device is, for the report (fixed for a publisher's life).
#[derive(Debug, Clone, Default)]
pub struct Identity {
    /// The device id.
    pub device_id: String,
    /// The company id.
    pub company_id: Option<String>,
    /// The app's OS version string.
    pub os_version: Option<String>,
    /// The app's version string.
    pub app_version: Option<String>,
}

/// A cut report waiting for (or on its way over) one transport.
#[derive(Debug, Clone)]
pub struct CutReport {
    /// Its `reportSeq`.
    pub seq: u64,
    /// Its epoch (Pub/Sub attribute).
    pub epoch: Arc<str>,
    /// The document's bytes.
    pub bytes: Arc<[u8]>,
}

#[derive(Debug, Clone)]
struct Slot {
    report: CutReport,
    /// It may wake the radio by itself (silent or shutdown).
    alone: bool,
    in_flight: bool,
    /// A send failed: not again before this (a report never hammers a failing endpoint).
    not_before: Option<std::time::Instant>,
}

impl Slot {
    /// Its pause after a failure is over (forgotten, so `leaving` and `next_retry` see it ready).
    fn clear_pause(&mut self) {
        if self.not_before.is_some_and(|t| std::time::Instant::now() >= t) {
            self.not_before = None;
        }
    }
}

/// How long a report waits after a failed send before it is tried again.
const REPORT_RETRY: std::time::Duration = std::time::Duration::from_secs(60);

impl Slot {
    /// Not in flight and not pausing after a failed send.
    fn idle(&self) -> bool {
        !self.in_flight && self.not_before.is_none_or(|t| std::time::Instant::now() >= t)
    }

    fn ready(&self, persisted_seq: u64) -> bool {
        self.idle() && self.report.seq <= persisted_seq
    }
}

/// The figures of this run a report needs besides the counters.
#[derive(Debug, Clone, Default)]
pub struct Now {
    /// This run's counters (with `last_seq`).
    pub run: Counters,
    /// This run's latency histograms.
    pub latency: [Histogram; 2],
    /// The decision in force.
    pub decision: Option<RolloutDecision>,
    /// Locations owed per transport.
    pub depth: [u64; 2],
    /// Per transport, the lowest wire `seq` among the locations it still owes (0: none).
    pub oldest_seq: [u64; 2],
    /// Age of the oldest location owed, seconds.
    pub oldest_age_seconds: f64,
    /// Breakers open.
    pub breaker_open: [bool; 2],
    /// The report interval in force, seconds.
    pub interval_secs: u32,
}

/// The report schedule and slots of one publisher. Locked after the hub's state (never before).
#[derive(Debug, Default)]
pub struct Reports {
    /// The persisted base: counters and latency up to the start of this run, and the schedule.
    base: Tally,
    buckets: BTreeMap<i64, Bucket>,
    buckets_dropped: u64,
    slots: [Option<Slot>; 2],
    /// The newest `reportSeq` on disk: a report is sent only once its number is persisted, so a
    /// process killed after sending can never reuse it for other content.
    persisted_seq: u64,
    /// When a transport last delivered a location (device clock, ms).
    last_traffic_ms: Option<i64>,
    /// The same on the monotonic clock (is the radio on?).
    last_traffic: Option<std::time::Instant>,
}

/// A report's `decision`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DecisionDoc<'a> {
    cfg: u64,
    bucket: u32,
    reason: &'a str,
    route: &'a str,
    fallback_to_mqtt: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Gauges {
    mqtt_depth: u64,
    pubsub_depth: u64,
    mqtt_oldest_seq: u64,
    pubsub_oldest_seq: u64,
    oldest_pending_age_s: f64,
    mqtt_breaker_open: bool,
    pubsub_breaker_open: bool,
}

#[derive(Serialize)]
struct Latency<'a> {
    mqtt: &'a [u64],
    pubsub: &'a [u64],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Document<'a> {
    report: u32,
    report_seq: u64,
    epoch: &'a str,
    epoch_start_ms: i64,
    cut_at_ms: i64,
    trigger: &'a str,
    interval_secs: u32,
    device_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    company_id: Option<&'a str>,
    sdk: &'a str,
    platform: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    os_version: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    app_version: Option<&'a str>,
    decision: DecisionDoc<'a>,
    counters: &'a Counters,
    gauges: Gauges,
    latency: Latency<'a>,
    buckets: Vec<[i64; 6]>,
    buckets_cut: u64,
}

impl Reports {
    /// The schedule and counters resuming `base` (read from the data directory).
    pub fn resume(base: Tally) -> Reports {
        Reports { persisted_seq: base.report_seq, base, ..Reports::default() }
    }

    /// A location with `seq` and event time `timestamp_ms` was accepted.
    pub fn accepted(&mut self, seq: u64, timestamp_ms: i64) {
        let b = self.bucket(timestamp_ms);
        b.accepted += 1;
        if b.first_seq == 0 {
            b.first_seq = seq;
        }
        b.last_seq = b.last_seq.max(seq);
    }

    /// `t` acknowledged locations with these event times at `now_ms`.
    pub fn acked(&mut self, t: Transport, timestamps: impl IntoIterator<Item = i64>, now_ms: i64) {
        let mut any = false;
        for ts in timestamps {
            self.bucket(ts).acked[t.index()] += 1;
            any = true;
        }
        if any {
            self.last_traffic_ms = Some(now_ms);
            self.last_traffic = Some(std::time::Instant::now());
        }
    }

    /// Whether a transport delivered locations within `window` (the radio is still on).
    pub fn warm(&self, window: std::time::Duration) -> bool {
        self.last_traffic.is_some_and(|t| t.elapsed() < window)
    }

    fn bucket(&mut self, timestamp_ms: i64) -> &mut Bucket {
        let start = timestamp_ms.div_euclid(BUCKET_MS) * BUCKET_MS;
        if !self.buckets.contains_key(&start) && self.buckets.len() >= MAX_BUCKETS {
            self.buckets.pop_first();
            self.buckets_dropped += 1;
        }
        self.buckets.entry(start).or_default()
    }

    /// The tally to persist now: the base plus this run's figures.
    pub fn tally(&self, now: &Now) -> Tally {
        Tally {
            counters: self.base.counters.plus(&now.run),
            latency: [0, 1].map(|i| add_counts(&self.base.latency[i], now.latency[i].counts())),
            ..self.base.clone()
        }
    }

    /// Reports up to `seq` are on disk: they may go. Returns whether that made one sendable.
    pub fn persisted(&mut self, seq: u64) -> bool {
        let newly = seq > self.persisted_seq;
        self.persisted_seq = self.persisted_seq.max(seq);
        newly
    }

    /// Whether a report may be cut at `now_ms` (device clock; `run_ms` on the run clock) for
    /// `trigger`: never more than [`MAX_REPORTS_PER_DAY`] a day of the run clock, of which at
    /// most [`MAX_TRIGGERED_PER_DAY`] for config changes and breakers; a config-change report
    /// never sooner than [`CONFIG_REPORT_GAP_MS`] after the last one, a breaker report never
    /// sooner than [`MIN_REPORT_INTERVAL_SECS`] after the last report, a periodic one never sooner than
    /// the interval (at least that).
    pub fn may_cut(&self, trigger: Trigger, interval_secs: u32, now_ms: i64, run_ms: i64) -> bool {
        let today = self.base.day == run_ms.div_euclid(DAY_MS);
        if today && self.base.reports_in_day >= MAX_REPORTS_PER_DAY {
            return false;
        }
        if today && matches!(trigger, Trigger::Config | Trigger::Breaker) && self.base.triggered_in_day >= MAX_TRIGGERED_PER_DAY {
            return false;
        }
        // A clock set back (now before the last cut) makes the report due rather than stopping
        // reports until the clock catches up; the daily cap still bounds them.
        let since = self.base.last_cut_ms.map(|t| now_ms.saturating_sub(t));
        let elapsed = |d: i64, at_least: i64| d < 0 || d >= at_least;
        let secs = |s: u32| i64::from(s) * 1000;
        match trigger {
            Trigger::Shutdown => true,
            // A config change cuts one (within the caps) so that its counters are attributed to
            // the decision they accrued under; a flapping config, once a minute.
            Trigger::Config => self.base.config_cut_run_ms.is_none_or(|t| run_ms < t || run_ms - t >= CONFIG_REPORT_GAP_MS),
            Trigger::Breaker => since.is_none_or(|d| elapsed(d, secs(MIN_REPORT_INTERVAL_SECS))),
            Trigger::Interval => since.is_none_or(|d| elapsed(d, secs(interval_secs.max(MIN_REPORT_INTERVAL_SECS)))),
            Trigger::Silent => elapsed(now_ms.saturating_sub(self.quiet_since_ms()), 2 * secs(interval_secs.max(MIN_REPORT_INTERVAL_SECS))),
        }
    }

    /// Since when neither a report nor location traffic happened (device clock, ms).
    fn quiet_since_ms(&self) -> i64 {
        self.base.last_cut_ms.unwrap_or(self.base.epoch_start_ms).max(self.last_traffic_ms.unwrap_or(i64::MIN))
    }

    /// When a silent report becomes due (device clock, ms).
    pub fn silent_due_ms(&self, interval_secs: u32) -> i64 {
        self.quiet_since_ms().saturating_add(2 * i64::from(interval_secs.max(MIN_REPORT_INTERVAL_SECS)) * 1000)
    }

    /// A config change came too soon after the last config report: it is reported once the
    /// minute is over ([`Reports::config_due`]).
    pub fn defer_config(&mut self) {
        self.base.config_pending = true;
    }

    /// When a deferred config-change report may be cut (run clock, ms), if one waits.
    pub fn config_due_run_ms(&self) -> Option<i64> {
        self.base.config_pending.then(|| self.base.config_cut_run_ms.map_or(0, |t| t.saturating_add(CONFIG_REPORT_GAP_MS)))
    }

    /// Whether a deferred config-change report may be cut at `run_ms`.
    pub fn config_due(&self, run_ms: i64) -> bool {
        self.config_due_run_ms().is_some_and(|due| run_ms >= due)
    }

    /// Cuts a report at `now_ms` (`run_ms` on the run clock) and puts it in the slot of each
    /// transport of `targets` (replacing an older one not yet sent: counters are cumulative,
    /// nothing is lost). Returns its `reportSeq`.
    pub fn cut(&mut self, id: &Identity, now: &Now, trigger: Trigger, targets: [bool; 2], now_ms: i64, run_ms: i64) -> u64 {
        let day = run_ms.div_euclid(DAY_MS);
        if self.base.day != day {
            self.base.day = day;
            self.base.reports_in_day = 0;
            self.base.triggered_in_day = 0;
        }
        self.base.reports_in_day += 1;
        if matches!(trigger, Trigger::Config | Trigger::Breaker) {
            self.base.triggered_in_day += 1;
        }
        if trigger == Trigger::Config {
            self.base.config_cut_run_ms = Some(run_ms);
            self.base.config_pending = false;
        }
        self.base.report_seq += 1;
        self.base.last_cut_ms = Some(now_ms);
        let tally = self.tally(now);
        let buckets = std::mem::take(&mut self.buckets);
        let dropped = std::mem::take(&mut self.buckets_dropped);
        let bytes = document(id, &tally, now, trigger, now_ms, &buckets, dropped);
        let report = CutReport { seq: self.base.report_seq, epoch: Arc::from(self.base.epoch.as_str()), bytes: Arc::from(bytes) };
        let alone = matches!(trigger, Trigger::Silent | Trigger::Shutdown);
        for t in Transport::ALL {
            if targets[t.index()] {
                self.slots[t.index()] = Some(Slot { report: report.clone(), alone, in_flight: false, not_before: None });
            }
        }
        self.base.report_seq
    }

    /// Whether a report waits for `t` that may wake the radio by itself.
    pub fn waiting_alone(&self, t: Transport) -> bool {
        self.slots[t.index()].as_ref().is_some_and(|s| s.alone && s.ready(self.persisted_seq))
    }

    /// Whether a report waits for `t` (persisted, not in flight, not backing off).
    pub fn waiting(&self, t: Transport) -> bool {
        self.slots[t.index()].as_ref().is_some_and(|s| s.ready(self.persisted_seq))
    }

    /// Whether a report for `t` is waiting or about to (cut, its commit not yet done), not in
    /// flight and not pausing after a failure: an upload burst keeps MQTT connected for it.
    pub fn coming(&self, t: Transport) -> bool {
        self.slots[t.index()].as_ref().is_some_and(Slot::idle)
    }

    /// Takes the report waiting for `t` (marks it in flight).
    pub fn take(&mut self, t: Transport) -> Option<CutReport> {
        if let Some(s) = self.slots[t.index()].as_mut() {
            s.clear_pause();
        }
        let persisted = self.persisted_seq;
        let slot = self.slots[t.index()].as_mut().filter(|s| s.ready(persisted))?;
        slot.in_flight = true;
        Some(slot.report.clone())
    }

    /// `t` delivered report `seq` (or gave up on it: `delivered` false puts it back unless a
    /// newer one replaced it).
    pub fn settled(&mut self, t: Transport, seq: u64, delivered: bool) {
        let slot = &mut self.slots[t.index()];
        if slot.as_ref().is_some_and(|s| s.report.seq == seq) {
            if delivered {
                *slot = None;
            } else if let Some(s) = slot.as_mut() {
                s.in_flight = false;
                s.not_before = Some(std::time::Instant::now() + REPORT_RETRY);
            }
        }
    }

    /// Where the reports stand, for `debugReport()`.
    pub fn status(&self) -> serde_json::Value {
        serde_json::json!({
            "epoch": self.base.epoch,
            "reportSeq": self.base.report_seq,
            "lastCutMs": self.base.last_cut_ms,
            "owed": {"mqtt": self.owed(Transport::Mqtt), "pubsub": self.owed(Transport::PubSub)},
        })
    }

    /// Reports waiting or in flight, per transport.
    pub fn owed(&self, t: Transport) -> bool {
        self.slots[t.index()].is_some()
    }

    /// Whether `close` should wait for a report over `t`: one is in flight, or waits and may go
    /// now (by itself, or over a link that is `up`), not backing off after a failure.
    pub fn leaving(&self, t: Transport, up: bool) -> bool {
        self.slots[t.index()].as_ref().is_some_and(|s| s.in_flight || ((s.alone || up) && s.not_before.is_none()))
    }

    /// When the earliest report backing off after a failure may be tried again.
    pub fn next_retry(&self) -> Option<std::time::Instant> {
        self.slots.iter().flatten().filter_map(|s| s.not_before).min()
    }
}

/// The report's JSON, with as many event-time buckets (newest kept) as fit in
/// [`MAX_REPORT_BYTES`].
fn document(id: &Identity, tally: &Tally, now: &Now, trigger: Trigger, now_ms: i64, buckets: &BTreeMap<i64, Bucket>, dropped: u64) -> Vec<u8> {
    let d = now.decision.clone().unwrap_or_else(|| crate::config::rollout::decide(&Default::default(), &id.device_id, None));
    let route = Route::of(d.mqtt_enabled, d.pubsub_enabled);
    let rows: Vec<[i64; 6]> =
        buckets.iter().map(|(start, b)| [*start, b.accepted as i64, b.acked[0] as i64, b.acked[1] as i64, b.first_seq as i64, b.last_seq as i64]).collect();
    let build = |keep: usize| {
        let doc = Document {
            report: 1,
            report_seq: tally.report_seq,
            epoch: &tally.epoch,
            epoch_start_ms: tally.epoch_start_ms,
            cut_at_ms: now_ms,
            trigger: trigger.as_str(),
            interval_secs: now.interval_secs,
            device_id: &id.device_id,
            company_id: id.company_id.as_deref(),
            sdk: crate::wire::SDK_ID,
            platform: std::env::consts::OS,
            os_version: id.os_version.as_deref(),
            app_version: id.app_version.as_deref(),
            decision: DecisionDoc {
                cfg: d.config_version,
                bucket: d.bucket,
                reason: d.reason.as_str(),
                route: route.as_str(),
                fallback_to_mqtt: d.fallback_to_mqtt,
            },
            counters: &tally.counters,
            gauges: Gauges {
                mqtt_depth: now.depth[0],
                pubsub_depth: now.depth[1],
                mqtt_oldest_seq: now.oldest_seq[0],
                pubsub_oldest_seq: now.oldest_seq[1],
                oldest_pending_age_s: (now.oldest_age_seconds * 10.0).round() / 10.0,
                mqtt_breaker_open: now.breaker_open[0],
                pubsub_breaker_open: now.breaker_open[1],
            },
            latency: Latency { mqtt: &tally.latency[0], pubsub: &tally.latency[1] },
            buckets: rows[rows.len() - keep..].to_vec(),
            buckets_cut: dropped + (rows.len() - keep) as u64,
        };
        // Numbers and validated strings: serialising cannot fail.
        serde_json::to_vec(&doc).unwrap_or_default()
    };
    // The most (newest) buckets that fit: a binary search over how many to keep.
    let all = build(rows.len());
    if all.len() <= MAX_REPORT_BYTES {
        return all;
    }
    let (mut fits, mut too_many) = (0, rows.len());
    while too_many - fits > 1 {
        let mid = (fits + too_many) / 2;
        if build(mid).len() <= MAX_REPORT_BYTES {
            fits = mid;
        } else {
            too_many = mid;
        }
    }
    build(fits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now(interval: u32) -> Now {
        Now { interval_secs: interval, decision: Some(crate::config::rollout::decide(&Default::default(), "d-1", None)), ..Now::default() }
    }

    fn id() -> Identity {
        Identity { device_id: "d-1".into(), ..Identity::default() }
    }

    #[test]
    fn counters_add_this_run_to_the_persisted_base() {
        let mut base = Counters { accepted: 10, last_seq: 10, ..Counters::default() };
        base.rejected.insert("invalid_latitude".into(), 2);
        base.mqtt.acked = 9;
        let mut run = Counters { accepted: 5, last_seq: 15, ..Counters::default() };
        run.rejected.insert("invalid_latitude".into(), 1);
        run.rejected.insert("invalid_speed".into(), 1);
        run.mqtt.acked = 6;
        let sum = base.plus(&run);
        assert_eq!((sum.accepted, sum.last_seq, sum.mqtt.acked), (15, 15, 15));
        assert_eq!(sum.rejected, BTreeMap::from([("invalid_latitude".into(), 3), ("invalid_speed".into(), 1)]));
    }

    #[test]
    fn the_schedule_keeps_its_intervals_and_its_daily_cap() {
        let mut r = Reports::resume(Tally::new_epoch(0));
        let t0 = 1_000_000;
        assert!(r.may_cut(Trigger::Interval, 900, t0, t0), "never reported: due");
        r.cut(&id(), &now(900), Trigger::Interval, [true, false], t0, t0);
        assert!(!r.may_cut(Trigger::Interval, 900, t0 + 899_999, t0 + 899_999));
        assert!(r.may_cut(Trigger::Interval, 900, t0 + 900_000, t0 + 900_000));
        assert!(!r.may_cut(Trigger::Interval, 60, t0 + 299_999, t0 + 299_999), "never sooner than 300 s, whatever the config");
        assert!(!r.may_cut(Trigger::Breaker, 900, t0 + 299_999, t0 + 299_999));
        assert!(r.may_cut(Trigger::Config, 900, t0 + 1, t0 + 1), "a config change reports (within the daily caps, once a minute)");
        assert!(r.may_cut(Trigger::Breaker, 900, t0 + 300_000, t0 + 300_000));
        assert!(r.may_cut(Trigger::Shutdown, 900, t0 + 1, t0 + 1));
        assert!(!r.may_cut(Trigger::Silent, 900, t0 + 1_799_999, t0 + 1_799_999));
        assert!(r.may_cut(Trigger::Silent, 900, t0 + 1_800_000, t0 + 1_800_000));
        r.acked(Transport::Mqtt, [t0], t0 + 1_000_000);
        assert!(!r.may_cut(Trigger::Silent, 900, t0 + 1_800_000, t0 + 1_800_000), "traffic since: not silent");
        assert_eq!(r.silent_due_ms(900), t0 + 2_800_000);
        let day = 10 * DAY_MS;
        for i in 0..MAX_REPORTS_PER_DAY {
            assert!(r.may_cut(Trigger::Shutdown, 900, day + i64::from(i), day + i64::from(i)));
            r.cut(&id(), &now(900), Trigger::Shutdown, [true, false], day + i64::from(i), day + i64::from(i));
        }
        assert!(!r.may_cut(Trigger::Shutdown, 900, day + 1_000, day + 1_000), "the daily cap holds even at shutdown");
        assert!(r.may_cut(Trigger::Shutdown, 900, day + DAY_MS, day + DAY_MS), "a new day");
        let later = day + DAY_MS + 1;
        r.cut(&id(), &now(900), Trigger::Interval, [true, false], later, later);
        assert!(r.may_cut(Trigger::Interval, 900, later - 3_600_000, later - 3_600_000), "a clock set back an hour: due at once, not in an hour");
        assert!(r.may_cut(Trigger::Breaker, 900, later - 1, later - 1));
    }

    #[test]
    fn a_flapping_config_reports_once_a_minute_and_leaves_room_for_the_others() {
        let mut r = Reports::resume(Tally::new_epoch(0));
        let t0 = 10 * DAY_MS;
        // 600 changes in 30 s: one report, then one waiting for the minute to end.
        let mut cut = 0;
        for i in 0..600 {
            let t = t0 + i * 50;
            if r.may_cut(Trigger::Config, 900, t, t) {
                r.cut(&id(), &now(900), Trigger::Config, [true, false], t, t);
                cut += 1;
            } else {
                r.defer_config();
            }
        }
        assert_eq!(cut, 1);
        assert!(!r.config_due(t0 + 59_999) && r.config_due(t0 + CONFIG_REPORT_GAP_MS), "the deferred one a minute after");
        // Config changes and breakers use at most 200 of the day's 300: shutdown still reports.
        for i in 0..250 {
            let t = t0 + (i + 2) * CONFIG_REPORT_GAP_MS;
            if r.may_cut(Trigger::Config, 900, t, t) {
                r.cut(&id(), &now(900), Trigger::Config, [true, false], t, t);
            }
        }
        assert_eq!(r.base.triggered_in_day, MAX_TRIGGERED_PER_DAY);
        let late = t0 + 300 * CONFIG_REPORT_GAP_MS;
        assert!(!r.may_cut(Trigger::Config, 900, late, late), "no more config reports today");
        assert!(r.may_cut(Trigger::Shutdown, 900, late, late), "shutdown still reports");
        // A wall clock jumping a day either way does not reset the count: the run clock's day does.
        assert!(!r.may_cut(Trigger::Config, 900, late + DAY_MS, late), "tomorrow by the wall clock, not by the run clock");
        assert!(!r.may_cut(Trigger::Config, 900, late - DAY_MS, late));
    }

    #[test]
    fn a_report_goes_only_once_its_number_is_persisted_and_the_newest_replaces_an_unsent_one() {
        let mut r = Reports::resume(Tally::new_epoch(0));
        let first = r.cut(&id(), &now(900), Trigger::Interval, [true, true], 1, 1);
        assert!(r.take(Transport::Mqtt).is_none(), "not yet on disk");
        r.persisted(first);
        let out = r.take(Transport::Mqtt).unwrap();
        assert_eq!(out.seq, 1);
        assert!(r.take(Transport::Mqtt).is_none(), "in flight");
        r.settled(Transport::Mqtt, 1, false);
        assert!(r.owed(Transport::Mqtt) && !r.waiting(Transport::Mqtt), "a failed send puts it back, to try again in a minute");
        let second = r.cut(&id(), &now(900), Trigger::Config, [true, true], 2, 2);
        r.persisted(second);
        assert_eq!(r.take(Transport::PubSub).unwrap().seq, 2, "only the newest waits");
        assert_eq!(r.take(Transport::Mqtt).unwrap().seq, 2);
        r.settled(Transport::Mqtt, 1, true);
        assert!(r.owed(Transport::Mqtt), "an old acknowledgement does not clear a newer report");
        r.settled(Transport::Mqtt, 2, true);
        assert!(!r.owed(Transport::Mqtt));
        assert!(r.owed(Transport::PubSub));
    }

    #[test]
    fn buckets_count_by_event_time_and_reset_with_each_report() {
        let mut r = Reports::resume(Tally::new_epoch(0));
        r.accepted(1, 1_200_000);
        r.accepted(2, 1_799_999);
        r.accepted(3, 1_800_000);
        r.acked(Transport::PubSub, [1_200_000, 1_800_000], 5);
        let seq = r.cut(&id(), &now(900), Trigger::Interval, [true, false], 10, 10);
        r.persisted(seq);
        let doc: serde_json::Value = serde_json::from_slice(&r.take(Transport::Mqtt).unwrap().bytes).unwrap();
        assert_eq!(doc["buckets"], serde_json::json!([[1_200_000, 2, 0, 1, 1, 2], [1_800_000, 1, 0, 1, 3, 3]]));
        let seq = r.cut(&id(), &now(900), Trigger::Shutdown, [true, false], 20, 20);
        r.persisted(seq);
        let doc: serde_json::Value = serde_json::from_slice(&r.take(Transport::Mqtt).unwrap().bytes).unwrap();
        assert_eq!(doc["buckets"], serde_json::json!([]));
        assert_eq!(doc["reportSeq"], 2);
    }

    #[test]
    fn a_report_stays_within_4_kib_with_every_reason_and_a_full_bucket_list() {
        let mut r = Reports::resume(Tally::new_epoch(1));
        let big = 999_999_999_999u64;
        let mut run = Counters { accepted: big, last_seq: big, fallbacks: big, dead_letters: big, ..Counters::default() };
        // Every reason `ValidationError::metric_reason` can give.
        for field in ["latitude", "longitude", "accuracy", "speed", "bearing", "altitude", "timestamp", "battery", "id"] {
            run.rejected.insert(format!("invalid_{field}"), big);
        }
        run.rejected.insert("timestamp_in_future".into(), big);
        for reason in ["outbox_full", "too_old", "dead_letters_full", "dead_letter_too_old", crate::telemetry::metrics::DROPPED_UNREADABLE] {
            run.dropped.insert(reason.into(), big);
        }
        for result in ["applied", "not_modified", "rejected", "failed"] {
            run.config_fetches.insert(result.into(), big);
        }
        run.mqtt = TransportCounts { acked: big, failed: big, retries: big, breaker_openings: big };
        run.pubsub = run.mqtt.clone();
        let mut latency = [Histogram::default(), Histogram::default()];
        for h in &mut latency {
            for i in 0..2_000 {
                h.observe(0.4 * 1.25f64.powi(i % 70));
            }
        }
        for seq in 0..(MAX_BUCKETS as u64 + 10) {
            r.accepted(big + seq, (seq as i64) * BUCKET_MS);
        }
        let id =
            // Ids that double when escaped in JSON: the most a valid id can cost.
            Identity { device_id: "\"".repeat(128), company_id: Some("\\".repeat(128)), os_version: Some("v".repeat(32)), app_version: Some("a".repeat(32)) };
        let n = Now {
            run,
            latency,
            depth: [big, big],
            oldest_seq: [big, big],
            oldest_age_seconds: 1e9,
            interval_secs: crate::config::MAX_REPORT_INTERVAL_SECS,
            ..now(900)
        };
        let seq = r.cut(&id, &n, Trigger::Breaker, [true, false], i64::MAX / 4, i64::MAX / 4);
        r.persisted(seq);
        let bytes = r.take(Transport::Mqtt).unwrap().bytes;
        assert!(bytes.len() <= MAX_REPORT_BYTES, "{} bytes", bytes.len());
        let doc: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        let kept = doc["buckets"].as_array().unwrap().len() as u64;
        assert!(kept > 0, "some buckets fit in {} bytes: {}", bytes.len(), String::from_utf8_lossy(&bytes));
        assert_eq!(kept + doc["bucketsCut"].as_u64().unwrap(), MAX_BUCKETS as u64 + 10, "every bucket kept or counted as cut");
        assert_eq!(doc["buckets"].as_array().unwrap().last().unwrap()[0], ((MAX_BUCKETS as i64) + 9) * BUCKET_MS, "the newest are kept");
        assert_eq!(doc["latency"]["mqtt"].as_array().unwrap().len(), 66);
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        assert!(!text.contains("\"latitude\"") && !text.contains("\"longitude\"") && !text.contains("salt"), "no coordinates, no salt: {text}");
    }

    /// The document waiting for `t` (its number marked persisted first).
    fn taken(r: &mut Reports, t: Transport, seq: u64) -> serde_json::Value {
        r.persisted(seq);
        serde_json::from_slice(&r.take(t).unwrap().bytes).unwrap()
    }

    #[test]
    fn gauges_carry_the_oldest_seq_each_transport_owes_and_0_when_it_owes_none() {
        let mut r = Reports::resume(Tally::new_epoch(0));
        let n = Now { depth: [3, 0], oldest_seq: [7, 0], ..now(900) };
        let seq = r.cut(&id(), &n, Trigger::Interval, [true, false], 1, 1);
        let g = taken(&mut r, Transport::Mqtt, seq)["gauges"].clone();
        assert_eq!([&g["mqttDepth"], &g["mqttOldestSeq"], &g["pubsubDepth"], &g["pubsubOldestSeq"]], [3, 7, 0, 0], "{g}");
    }

    #[test]
    fn a_cut_report_names_the_oldest_location_stuck_on_mqtt_while_pubsub_delivered_newer_ones() {
        use crate::hub::test_support::{hub, queue};
        let both = crate::config::MigrationConfig { version: 1, pubsub_enabled: true, pubsub_percentage: 100.0, ..Default::default() };
        let hub = hub(both);
        queue(&hub, 4, true, true);
        {
            let mut st = hub.lock();
            let all: Vec<u64> = st.outbox.take(Transport::PubSub, 10, usize::MAX, |l| l).iter().map(|r| r.seq).collect();
            st.outbox.ack(Transport::PubSub, &all);
            // MQTT sends 1 and 2; only 2 is acknowledged: 1 stays in flight, 3 and 4 pending.
            st.outbox.take(Transport::Mqtt, 2, usize::MAX, |l| l);
            st.outbox.ack(Transport::Mqtt, &[2]);
            assert!(hub.reporter().cut(&st, Trigger::Shutdown));
        }
        let doc = taken(&mut hub.reporter().slots(), Transport::Mqtt, 1);
        let g = &doc["gauges"];
        assert_eq!([&g["mqttDepth"], &g["mqttOldestSeq"], &g["pubsubDepth"], &g["pubsubOldestSeq"]], [3, 1, 0, 0], "{doc}");
    }

    #[test]
    fn a_tally_survives_json_and_an_unreadable_one_starts_a_new_epoch() {
        let mut t = Tally::new_epoch(5);
        t.counters.accepted = 3;
        t.latency[1] = vec![0, 2, 1];
        assert_eq!(Tally::from_json(&serde_json::to_string(&t).unwrap()), Some(t));
        assert_eq!(Tally::from_json("{not json"), None);
        assert_eq!(Tally::from_json("{}"), None, "no epoch");
    }
}
