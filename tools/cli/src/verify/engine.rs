//! The verifier's core: every message both pipelines received, joined by `eventId`, checked
//! against what each location's `route` says it was owed, its device's `seq` run and the
//! device's own migration reports (docs/CONTRACT.md#version-2, docs/CONTRACT.md#migration-reports).
//! It knows nothing of brokers or files: feed it arrivals, the verifier's own connection gaps
//! and reports, then [`Verifier::finish`].

use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::hash::{Hash, Hasher};

/// One of the two pipelines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pipeline {
    /// MQTT (`device/telemetry/+`).
    Mqtt,
    /// Pub/Sub (the locations topic).
    Pubsub,
}

impl Pipeline {
    /// Both, MQTT first.
    pub const ALL: [Pipeline; 2] = [Pipeline::Mqtt, Pipeline::Pubsub];

    fn index(self) -> usize {
        self as usize
    }

    fn other(self) -> Pipeline {
        match self {
            Pipeline::Mqtt => Pipeline::Pubsub,
            Pipeline::Pubsub => Pipeline::Mqtt,
        }
    }

    /// `mqtt` or `pubsub`.
    pub fn as_str(self) -> &'static str {
        match self {
            Pipeline::Mqtt => "mqtt",
            Pipeline::Pubsub => "pubsub",
        }
    }
}

/// Why a location one pipeline owed was not received there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    /// The device acknowledged it over that transport (its report shows nothing pending or
    /// dropped that could hold it), yet the pipeline never delivered it: the real alarm.
    AckedNotReceived,
    /// The device still holds it for that transport (its newest report counts it pending).
    StillQueued,
    /// The device dropped it (its report counts drops that cover it: caps, age).
    DroppedOnDevice,
    /// It would have arrived while the verifier's own subscriber was disconnected.
    VerifierGap,
    /// No report of the device covers it.
    Unexplained,
}

impl Cause {
    /// Every cause, in the order reports list them.
    pub const ALL: [Cause; 5] = [Cause::AckedNotReceived, Cause::StillQueued, Cause::DroppedOnDevice, Cause::VerifierGap, Cause::Unexplained];

    /// Whether it counts against the pipelines in a verdict.
    pub fn is_discrepancy(self) -> bool {
        matches!(self, Cause::AckedNotReceived | Cause::Unexplained)
    }
}

/// What the verdict is held to.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Thresholds {
    /// Most locations acknowledged by a device but never received a step may have (default 0).
    pub max_acked_not_received: u64,
    /// Highest upper bound of the discrepancy rate a step may have (default 0.001, i.e. 0.1 %).
    pub max_rate_bound: f64,
    /// Confidence of that bound (default 0.95).
    pub confidence: f64,
    /// A location arriving this much later on one pipeline than on the other is listed as late.
    pub late_ms: i64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds { max_acked_not_received: 0, max_rate_bound: 0.001, confidence: 0.95, late_ms: 5_000 }
    }
}

/// What a device's newest migration report says (the fields reconciliation needs).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeviceReport {
    /// The report's epoch.
    pub epoch: String,
    /// When that epoch began (a newer epoch's reports win).
    pub epoch_start_ms: i64,
    /// Its `reportSeq`.
    pub report_seq: u64,
    /// `counters.lastSeq`: the last location `seq` the device gave out.
    pub last_seq: u64,
    /// `gauges.mqttDepth`, `gauges.pubsubDepth`.
    pub depth: [u64; 2],
    /// Sum of `counters.dropped`.
    pub dropped: u64,
    /// `counters.deadLetters`.
    pub dead_letters: u64,
}

impl DeviceReport {
    /// Reads a report document; `None` when a field reconciliation needs is missing.
    pub fn from_json(v: &serde_json::Value) -> Option<(String, DeviceReport)> {
        let device = v["deviceId"].as_str()?.to_string();
        let c = &v["counters"];
        let report = DeviceReport {
            epoch: v["epoch"].as_str()?.to_string(),
            epoch_start_ms: v["epochStartMs"].as_i64()?,
            report_seq: v["reportSeq"].as_u64()?,
            last_seq: c["lastSeq"].as_u64()?,
            depth: [v["gauges"]["mqttDepth"].as_u64()?, v["gauges"]["pubsubDepth"].as_u64()?],
            dropped: c["dropped"].as_object().map(|m| m.values().filter_map(|n| n.as_u64()).sum()).unwrap_or(0),
            dead_letters: c["deadLetters"].as_u64().unwrap_or(0),
        };
        Some((device, report))
    }
}

/// The routing decision a location carries (`route`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Both,
    Mqtt,
    Pubsub,
}

impl Route {
    fn parse(s: &str) -> Option<Route> {
        match s {
            "both" => Some(Route::Both),
            "mqtt" => Some(Route::Mqtt),
            "pubsub" => Some(Route::Pubsub),
            _ => None,
        }
    }

    fn owes(self, p: Pipeline) -> bool {
        matches!((self, p), (Route::Both, _) | (Route::Mqtt, Pipeline::Mqtt) | (Route::Pubsub, Pipeline::Pubsub))
    }
}

/// One location, as seen so far (about 80 bytes).
#[derive(Debug, Clone)]
struct Entry {
    device: u32,
    seq: u64,
    cfg: u64,
    route: Route,
    timestamp_ms: i64,
    hash: u64,
    mismatch: bool,
    /// In the settle queue (complete, with a grace).
    queued: bool,
    count: [u32; 2],
    first_at: [i64; 2],
}

/// Counts of one pipeline in one rollout step.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PipelineStep {
    /// Locations whose `route` owed them to this pipeline.
    pub expected: u64,
    /// Of those, received at least once.
    pub received: u64,
    /// Of those, never received.
    pub missing: u64,
    /// Extra copies received (at-least-once delivery).
    pub duplicates: u64,
    /// MQTT: `route: "pubsub"` locations received here (fallback copies, never errors).
    pub fallbacks: u64,
    /// Pub/Sub: `route: "mqtt"` locations received here (outside the cohort: a routing error).
    pub unexpected: u64,
    /// Received later than on the other pipeline by more than the late threshold.
    pub late: u64,
}

/// One rollout step (config version): counts, causes and verdict.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Step {
    /// The config version (`cfg`).
    pub cfg: u64,
    /// Devices with a location in this step.
    pub devices: u64,
    /// Distinct locations received (on either pipeline).
    pub locations: u64,
    /// MQTT's counts.
    pub mqtt: PipelineStep,
    /// Pub/Sub's counts.
    pub pubsub: PipelineStep,
    /// `seq` values of a device's run seen on neither pipeline.
    pub unseen: u64,
    /// Same `eventId`, different bytes.
    pub mismatches: u64,
    /// Missing (and unseen) locations by cause.
    pub causes: BTreeMap<Cause, u64>,
    /// What counts against the pipelines: acked-but-not-received, unexplained, mismatches, outside the cohort.
    pub discrepancies: u64,
    /// Deliveries owed (both pipelines) plus unseen locations: the trials of the rate.
    pub trials: u64,
    /// discrepancies / trials.
    pub rate: f64,
    /// The upper confidence bound of that rate.
    pub rate_bound: f64,
    /// Trials needed for zero discrepancies to bound the rate below the threshold.
    pub min_trials: u64,
    /// `pass`, `fail`, or `insufficient` (clean, but too little traffic for the bound).
    pub verdict: &'static str,
}

/// One location a pipeline did not receive.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Missing {
    /// Its eventId (empty for a `seq` seen on neither pipeline).
    pub event_id: String,
    /// Its device.
    pub device_id: String,
    /// Its `seq`.
    pub seq: u64,
    /// Its config version.
    pub cfg: u64,
    /// Where it is missing (`None`: on both, never seen).
    pub pipeline: Option<Pipeline>,
    /// Why.
    pub cause: Cause,
}

/// Delays of one pipeline (arrival − location timestamp), ms.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Delays {
    /// Median.
    pub p50: Option<i64>,
    /// 95th percentile.
    pub p95: Option<i64>,
    /// 99th percentile.
    pub p99: Option<i64>,
}

/// One pipeline's totals.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PipelineTotals {
    /// Messages received (duplicates included).
    pub messages: u64,
    /// Distinct locations.
    pub distinct: u64,
    /// Extra copies.
    pub duplicates: u64,
    /// Messages that were not a version 2 location.
    pub malformed: u64,
    /// Delivery delays.
    pub delay_ms: Delays,
    /// The verifier's own disconnections: (from, to) ms.
    pub own_gaps: Vec<(i64, i64)>,
    /// Copies of a location already settled (arriving more than the grace after its last
    /// copy, see `Verifier::with_grace`): counted here, not joined.
    pub settled_copies: u64,
}

/// Everything the verifier found.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Findings {
    /// `pass`, `fail` or `insufficient` over every step.
    pub verdict: &'static str,
    /// What the verdict was held to.
    pub thresholds: Option<Thresholds>,
    /// Totals per pipeline.
    pub mqtt: PipelineTotals,
    /// See `mqtt`.
    pub pubsub: PipelineTotals,
    /// Per rollout step, by config version.
    pub steps: Vec<Step>,
    /// Every location missing somewhere, with its cause, by device then seq.
    pub missing: Vec<Missing>,
    /// eventIds received more than once, per pipeline.
    pub duplicated: BTreeMap<Pipeline, Vec<String>>,
    /// eventIds received late on a pipeline (see `Thresholds::late_ms`).
    pub late: BTreeMap<Pipeline, Vec<String>>,
    /// Devices with the most missing locations (at most 20): (device, missing).
    pub worst_devices: Vec<(String, u64)>,
    /// Per minute of arrival: distinct locations first received on each pipeline, and fallback
    /// copies first received on MQTT (for charts).
    pub timeline: Vec<Minute>,
    /// Per pipeline: how many locations arrived within each delay bound (ms), for charts.
    pub delay_histogram: BTreeMap<Pipeline, Vec<(i64, u64)>>,
    /// Devices with a migration report.
    pub devices_reporting: u64,
    /// Reports that could not be read (a field reconciliation needs is missing).
    pub unreadable_reports: u64,
}

/// A location (or a `seq`) not received somewhere, before its cause is known.
#[derive(Debug)]
struct Gone {
    device: u32,
    seq: u64,
    cfg: u64,
    /// Where it is missing (`None`: seen on neither pipeline).
    pipeline: Option<Pipeline>,
    /// When the other pipeline received it.
    seen_at: Option<i64>,
    event_id: String,
}

/// One minute of arrivals.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Minute {
    /// Its start, ms since the Unix epoch.
    pub start_ms: i64,
    /// Distinct locations first received on MQTT in it.
    pub mqtt: u64,
    /// Distinct locations first received on Pub/Sub in it.
    pub pubsub: u64,
    /// Fallback copies (`route: "pubsub"`) first received on MQTT in it.
    pub fallbacks: u64,
}

/// The most unseen `seq`s listed one by one per device run (the rest are counted).
const MAX_LISTED_GAP: u64 = 100_000;

/// The most eventIds listed as duplicated, and as late, per pipeline (the counts are exact).
const MAX_LISTED_IDS: usize = 10_000;

/// The delay bounds of the charts' histogram, ms (the last bucket holds everything above).
const DELAY_BOUNDS_MS: [i64; 12] = [100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 60_000, 300_000, 3_600_000, i64::MAX];

/// Consecutive settled locations of one device: eventIds `first_key..=last_key` (keyed by the
/// first; in a device's eventId order, none of its other locations between them), `seq`s
/// `first_seq..=last_seq`, one config version. A device that numbers its locations in eventId
/// order (docs/CONTRACT.md#version-2) needs one per run, however many locations it sends.
#[derive(Debug, Clone, Copy)]
struct Segment {
    last_key: u128,
    first_seq: u64,
    last_seq: u64,
    cfg: u64,
}

/// What settled locations have added up to: everything `finish` reports, without the locations.
#[derive(Debug, Default)]
struct Folded {
    steps: BTreeMap<u64, Step>,
    step_devices: BTreeMap<u64, HashSet<u32>>,
    /// Per pipeline: delay (ms) → locations (exact quantiles, memory by distinct delays).
    delays: [BTreeMap<i64, u64>; 2],
    minutes: BTreeMap<i64, Minute>,
    duplicated: BTreeMap<Pipeline, Vec<String>>,
    late: BTreeMap<Pipeline, Vec<String>>,
    missing: Vec<Gone>,
    /// By device, then first eventId (one map: a map per device would cost a node each).
    segments: BTreeMap<(u32, u128), Segment>,
}

/// Joins both pipelines by eventId.
///
/// Memory: every location stays until it is *settled* — received on every pipeline its `route`
/// owes and, with a grace ([`Verifier::with_grace`]), its last copy older than the watermark
/// (the later pipeline's newest arrival) minus the grace. A settled location is folded into
/// counts and its device's `seq` segments and forgotten; a copy arriving after that is counted
/// as a settled copy, not joined. A location still missing somewhere is never folded early, so
/// the grace can hide no loss: it only bounds how long a duplicate is recognised as one.
#[derive(Debug)]
pub struct Verifier {
    thresholds: Thresholds,
    grace_ms: Option<i64>,
    /// Per pipeline, the newest arrival fed (or declared with [`Verifier::advance`]).
    watermark: [i64; 2],
    /// Settleable locations by the time of their last copy, oldest first.
    queue: VecDeque<(i64, u128)>,
    entries: HashMap<u128, Entry>,
    ids: HashMap<u128, String>,
    devices: Vec<String>,
    device_index: HashMap<String, u32>,
    totals: [PipelineTotals; 2],
    reports: HashMap<String, DeviceReport>,
    unreadable_reports: u64,
    folded: Folded,
}

/// The parts of a location the verifier reads.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Wire<'a> {
    // Borrowed unless escaped in the JSON (an id may hold `"` or `\`).
    #[serde(borrow)]
    event_id: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    device_id: std::borrow::Cow<'a, str>,
    timestamp: i64,
    seq: u64,
    #[serde(borrow)]
    route: std::borrow::Cow<'a, str>,
    cfg: u64,
}

/// An eventId as a number: the UUID's 128 bits (UUIDv7 sorts by acceptance time), or a hash.
fn key(event_id: &str) -> u128 {
    let hex: String = event_id.chars().filter(|c| *c != '-').collect();
    match (hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()), u128::from_str_radix(&hex, 16)) {
        (true, Ok(k)) => k,
        _ => {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            event_id.hash(&mut h);
            (1u128 << 127) | u128::from(h.finish())
        }
    }
}

fn hash(bytes: &[u8]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

impl Entry {
    /// Received on every pipeline its route owes.
    fn complete(&self) -> bool {
        Pipeline::ALL.iter().all(|p| !self.route.owes(*p) || self.count[p.index()] > 0)
    }

    /// When its last first copy arrived.
    fn last_at(&self) -> i64 {
        Pipeline::ALL.iter().filter(|p| self.count[p.index()] > 0).map(|p| self.first_at[p.index()]).max().unwrap_or(i64::MIN)
    }
}

/// Adds a settled location (`key`, `seq`, `cfg`) to its device's segments, joining the segment
/// before or after it when both key and seq follow on.
fn add_to_segments(segs: &mut BTreeMap<(u32, u128), Segment>, device: u32, key: u128, seq: u64, cfg: u64) {
    if segs.contains_key(&(device, key)) {
        return; // the same eventId settled twice (a copy with other bytes): its seq is known
    }
    let before = segs
        .range((device, 0)..(device, key))
        .next_back()
        .map(|(f, s)| (*f, *s))
        .filter(|(_, s)| s.last_key < key && s.cfg == cfg && s.last_seq.checked_add(1) == Some(seq));
    let after =
        segs.range((device, key)..=(device, u128::MAX)).next().map(|(f, s)| (*f, *s)).filter(|(_, s)| s.cfg == cfg && seq.checked_add(1) == Some(s.first_seq));
    match (before, after) {
        (Some((bf, b)), Some((af, a))) => {
            segs.remove(&af);
            segs.insert(bf, Segment { last_key: a.last_key, last_seq: a.last_seq, ..b });
        }
        (Some((bf, b)), None) => {
            segs.insert(bf, Segment { last_key: key, last_seq: seq, ..b });
        }
        (None, Some((af, a))) => {
            segs.remove(&af);
            segs.insert((device, key), Segment { first_seq: seq, ..a });
        }
        (None, None) => {
            segs.insert((device, key), Segment { last_key: key, first_seq: seq, last_seq: seq, cfg });
        }
    }
}

/// Whether `key` with `seq` is a location already settled into `segs`.
fn in_segments(segs: &BTreeMap<(u32, u128), Segment>, device: u32, key: u128, seq: u64) -> bool {
    segs.range((device, 0)..=(device, key)).next_back().is_some_and(|(_, s)| key <= s.last_key && (s.first_seq..=s.last_seq).contains(&seq))
}

/// The `seq`s of one device seen on neither pipeline, from its segments in eventId order: a
/// `seq` lower than the one before it starts a new run (a new data directory, not a gap); inside
/// a run every missing value from its lowest (1 after a restart) to its highest is unseen, with
/// the config version of the next seen `seq`. Lists up to MAX_LISTED_GAP a run, counts the rest.
fn unseen(device: u32, segs: &BTreeMap<(u32, u128), Segment>, out: &mut Vec<Gone>, unlisted: &mut BTreeMap<u64, u64>) {
    let flush = |run: &mut Vec<(u64, u64, u64)>, restart: bool, out: &mut Vec<Gone>, unlisted: &mut BTreeMap<u64, u64>| {
        run.sort_unstable_by_key(|&(lo, hi, cfg)| (lo, cfg, hi));
        let mut expect = if restart { 1 } else { run.first().map_or(1, |r| r.0) };
        let mut listed = 0u64;
        for &(lo, hi, cfg) in run.iter() {
            let gap = lo.saturating_sub(expect);
            let list = gap.min(MAX_LISTED_GAP.saturating_sub(listed));
            for s in expect..expect + list {
                out.push(Gone { device, seq: s, cfg, pipeline: None, seen_at: None, event_id: String::new() });
            }
            listed += list;
            if gap > list {
                *unlisted.entry(cfg).or_default() += gap - list;
            }
            expect = expect.max(hi.saturating_add(1));
        }
        run.clear();
    };
    let mut run: Vec<(u64, u64, u64)> = Vec::new();
    let mut restart = false;
    let mut previous: Option<u64> = None;
    for s in segs.range((device, 0)..=(device, u128::MAX)).map(|(_, s)| s) {
        if previous.is_some_and(|p| s.first_seq < p) {
            flush(&mut run, restart, out, unlisted);
            restart = true;
        }
        run.push((s.first_seq, s.last_seq, s.cfg));
        previous = Some(s.last_seq);
    }
    flush(&mut run, restart, out, unlisted);
}

impl Verifier {
    /// An empty verifier that keeps every location until [`Verifier::finish`], judging by `t`.
    pub fn new(t: Thresholds) -> Self {
        Verifier {
            thresholds: t,
            grace_ms: None,
            watermark: [i64::MIN; 2],
            queue: VecDeque::new(),
            entries: HashMap::new(),
            ids: HashMap::new(),
            devices: Vec::new(),
            device_index: HashMap::new(),
            totals: Default::default(),
            reports: HashMap::new(),
            unreadable_reports: 0,
            folded: Folded::default(),
        }
    }

    /// Settles (folds and forgets) a location once received everywhere it is owed and its last
    /// copy is `grace_ms` older than the watermark, so memory no longer grows with the window.
    /// Feed arrivals roughly in arrival order across both pipelines (a capture merged by time,
    /// or live), or memory waits for the later pipeline.
    pub fn with_grace(mut self, grace_ms: i64) -> Self {
        self.grace_ms = Some(grace_ms.max(0));
        self
    }

    /// Declares that everything `pipeline` received up to `ms` has been fed (a live reader calls
    /// it when a pipeline is quiet, so the watermark moves without arrivals).
    pub fn advance(&mut self, pipeline: Pipeline, ms: i64) {
        let w = &mut self.watermark[pipeline.index()];
        *w = (*w).max(ms);
        self.settle();
    }

    /// Locations held in memory (not yet settled).
    pub fn held(&self) -> usize {
        self.entries.len()
    }

    /// One message `pipeline` received at `received_at_ms` (duplicates included).
    pub fn arrival(&mut self, pipeline: Pipeline, received_at_ms: i64, payload: &[u8]) {
        let p = pipeline.index();
        self.totals[p].messages += 1;
        let Some((w, route)) = serde_json::from_slice::<Wire>(payload).ok().and_then(|w| Route::parse(&w.route).map(|r| (w, r))) else {
            self.totals[p].malformed += 1;
            return;
        };
        let k = key(&w.event_id);
        let device = match self.device_index.get(w.device_id.as_ref()) {
            Some(&d) => d,
            None => {
                self.devices.push(w.device_id.to_string());
                let d = (self.devices.len() - 1) as u32;
                self.device_index.insert(w.device_id.to_string(), d);
                d
            }
        };
        if !self.entries.contains_key(&k) && in_segments(&self.folded.segments, device, k, w.seq) {
            self.totals[p].settled_copies += 1;
            self.advance(pipeline, received_at_ms);
            return;
        }
        let h = hash(payload);
        let e = self.entries.entry(k).or_insert_with(|| Entry {
            device,
            seq: w.seq,
            cfg: w.cfg,
            route,
            timestamp_ms: w.timestamp,
            hash: h,
            mismatch: false,
            queued: false,
            count: [0, 0],
            first_at: [i64::MAX, i64::MAX],
        });
        if e.hash != h {
            e.mismatch = true;
        }
        e.count[p] += 1;
        e.first_at[p] = e.first_at[p].min(received_at_ms);
        if self.grace_ms.is_some() && !e.queued && e.complete() {
            e.queued = true;
            self.queue.push_back((e.last_at(), k));
        }
        if k >> 127 == 1 {
            self.ids.entry(k).or_insert_with(|| w.event_id.to_string());
        }
        self.advance(pipeline, received_at_ms);
    }

    /// Folds every queued location whose last copy is older than the watermark minus the grace.
    fn settle(&mut self) {
        let Some(grace) = self.grace_ms else { return };
        let watermark = self.watermark[0].min(self.watermark[1]);
        if watermark == i64::MIN {
            return; // a pipeline has received nothing yet
        }
        let horizon = watermark.saturating_sub(grace);
        while let Some(&(at, k)) = self.queue.front() {
            if at >= horizon {
                break;
            }
            self.queue.pop_front();
            if let Some(e) = self.entries.remove(&k) {
                self.fold(k, e);
            }
        }
    }

    /// The verifier's subscriber on `pipeline` was disconnected from `from_ms` to `to_ms`.
    pub fn own_gap(&mut self, pipeline: Pipeline, from_ms: i64, to_ms: i64) {
        self.totals[pipeline.index()].own_gaps.push((from_ms, to_ms));
    }

    /// A migration report (the document); the newest per device (by epoch start, reportSeq) counts.
    pub fn report(&mut self, doc: &serde_json::Value) {
        let Some((device, r)) = DeviceReport::from_json(doc) else {
            self.unreadable_reports += 1;
            return;
        };
        let newer = self.reports.get(&device).is_none_or(|old| (r.epoch_start_ms, r.report_seq) > (old.epoch_start_ms, old.report_seq));
        if newer {
            self.reports.insert(device, r);
        }
    }

    fn event_id(&self, k: u128) -> String {
        if k >> 127 == 1 {
            return self.ids.get(&k).cloned().unwrap_or_default();
        }
        let h = format!("{k:032x}");
        format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
    }

    /// Why `seq` of `device` (last seen on `received_on` at `seen_at`) is missing on `pipeline`
    /// (`None`: on both); `dropped_left` is how many of the device's reported drops are still
    /// unassigned (the oldest missing take them first).
    fn cause(&self, device: &str, seq: u64, pipeline: Option<Pipeline>, seen_at: Option<i64>, dropped_left: &mut u64) -> Cause {
        if let (Some(p), Some(at)) = (pipeline, seen_at) {
            const MARGIN_MS: i64 = 2_000;
            if self.totals[p.index()].own_gaps.iter().any(|(from, to)| at >= from.saturating_sub(MARGIN_MS) && at <= to.saturating_add(MARGIN_MS)) {
                return Cause::VerifierGap;
            }
        }
        let Some(r) = self.reports.get(device).filter(|r| r.last_seq >= seq) else { return Cause::Unexplained };
        let depth = match pipeline {
            Some(p) => r.depth[p.index()],
            None => r.depth[0].max(r.depth[1]),
        };
        if depth > 0 && seq > r.last_seq.saturating_sub(depth) {
            return Cause::StillQueued;
        }
        if *dropped_left > 0 {
            *dropped_left -= 1;
            return Cause::DroppedOnDevice;
        }
        Cause::AckedNotReceived
    }

    /// Adds one location to the counts, the charts' data and its device's segments.
    fn fold(&mut self, k: u128, e: Entry) {
        let late_ms = self.thresholds.late_ms;
        let id = if k >> 127 == 1 { self.ids.remove(&k).unwrap_or_default() } else { self.event_id(k) };
        let f = &mut self.folded;
        add_to_segments(&mut f.segments, e.device, k, e.seq, e.cfg);
        let step = f.steps.entry(e.cfg).or_insert_with(|| Step { cfg: e.cfg, ..Step::default() });
        f.step_devices.entry(e.cfg).or_default().insert(e.device);
        step.locations += 1;
        if e.mismatch {
            step.mismatches += 1;
        }
        let listed = |list: &mut BTreeMap<Pipeline, Vec<String>>, p: Pipeline| {
            let ids = list.entry(p).or_default();
            if ids.len() < MAX_LISTED_IDS {
                ids.push(id.clone());
            }
        };
        for p in Pipeline::ALL {
            let i = p.index();
            let ps = if p == Pipeline::Mqtt { &mut step.mqtt } else { &mut step.pubsub };
            let got = e.count[i] > 0;
            if got {
                self.totals[i].distinct += 1;
                *f.delays[i].entry(e.first_at[i].saturating_sub(e.timestamp_ms)).or_default() += 1;
                // Arrival times come from files: saturate rather than overflow on nonsense.
                let start_ms = e.first_at[i].div_euclid(60_000).saturating_mul(60_000);
                let m = f.minutes.entry(start_ms).or_insert_with(|| Minute { start_ms, ..Minute::default() });
                match p {
                    Pipeline::Mqtt if !e.route.owes(p) => m.fallbacks += 1,
                    Pipeline::Mqtt => m.mqtt += 1,
                    Pipeline::Pubsub => m.pubsub += 1,
                }
                if e.count[i] > 1 {
                    ps.duplicates += u64::from(e.count[i] - 1);
                    self.totals[i].duplicates += u64::from(e.count[i] - 1);
                    listed(&mut f.duplicated, p);
                }
                let o = p.other().index();
                if e.count[o] > 0 && e.first_at[i].saturating_sub(e.first_at[o]) > late_ms {
                    ps.late += 1;
                    listed(&mut f.late, p);
                }
            }
            if e.route.owes(p) {
                ps.expected += 1;
                if got {
                    ps.received += 1;
                } else {
                    ps.missing += 1;
                    let seen_at = e.first_at[p.other().index()];
                    f.missing.push(Gone { device: e.device, seq: e.seq, cfg: e.cfg, pipeline: Some(p), seen_at: Some(seen_at), event_id: id.clone() });
                }
            } else if got {
                match p {
                    Pipeline::Mqtt => ps.fallbacks += 1,
                    Pipeline::Pubsub => ps.unexpected += 1,
                }
            }
        }
    }

    /// Ends the run: folds what is still held, finds unseen `seq`s, reconciles every missing
    /// location with its device's report, and judges every rollout step.
    pub fn finish(mut self) -> Findings {
        let t = self.thresholds;
        let mut keys: Vec<u128> = self.entries.keys().copied().collect();
        keys.sort_unstable();
        for k in keys {
            if let Some(e) = self.entries.remove(&k) {
                self.fold(k, e);
            }
        }
        let Folded { mut steps, step_devices, delays, minutes, mut duplicated, mut late, missing: mut missing_raw, segments } =
            std::mem::take(&mut self.folded);
        // Listed in eventId order, however they were settled.
        for ids in duplicated.values_mut().chain(late.values_mut()) {
            ids.sort_unstable();
        }
        let mut unlisted: BTreeMap<u64, u64> = BTreeMap::new();
        for d in 0..self.devices.len() {
            unseen(d as u32, &segments, &mut missing_raw, &mut unlisted);
        }
        // Causes, oldest first per device (drops take the oldest).
        missing_raw.sort_by_key(|g| (g.device, g.seq));
        let mut dropped_left: HashMap<u32, u64> = HashMap::new();
        let mut missing = Vec::with_capacity(missing_raw.len());
        let mut by_device: HashMap<u32, u64> = HashMap::new();
        for Gone { device: d, seq, cfg, pipeline, seen_at, event_id } in missing_raw {
            let device = &self.devices[d as usize];
            let left = dropped_left.entry(d).or_insert_with(|| self.reports.get(device).map_or(0, |r| r.dropped + r.dead_letters));
            let cause = self.cause(device, seq, pipeline, seen_at, left);
            let step = steps.entry(cfg).or_insert_with(|| Step { cfg, ..Step::default() });
            *step.causes.entry(cause).or_default() += 1;
            if pipeline.is_none() {
                step.unseen += 1;
            }
            *by_device.entry(d).or_default() += 1;
            missing.push(Missing { event_id, device_id: device.clone(), seq, cfg, pipeline, cause });
        }
        for (cfg, n) in unlisted {
            let step = steps.entry(cfg).or_insert_with(|| Step { cfg, ..Step::default() });
            step.unseen = step.unseen.saturating_add(n);
            let c = step.causes.entry(Cause::Unexplained).or_default();
            *c = c.saturating_add(n);
        }
        let mut verdict = "pass";
        for step in steps.values_mut() {
            step.devices = step_devices.get(&step.cfg).map_or(0, |s| s.len() as u64);
            // Saturating: a hostile capture can claim absurd seqs.
            let explained_against = step.causes.iter().filter(|(c, _)| c.is_discrepancy()).fold(0u64, |a, (_, n)| a.saturating_add(*n));
            step.discrepancies = explained_against.saturating_add(step.mismatches).saturating_add(step.pubsub.unexpected);
            step.trials = step.mqtt.expected.saturating_add(step.pubsub.expected).saturating_add(step.unseen);
            step.rate = if step.trials == 0 { 0.0 } else { step.discrepancies as f64 / step.trials as f64 };
            step.rate_bound = super::stats::upper_bound(step.discrepancies, step.trials, t.confidence);
            step.min_trials = super::stats::min_trials(t.max_rate_bound, t.confidence);
            let acked_not_received = step.causes.get(&Cause::AckedNotReceived).copied().unwrap_or(0);
            step.verdict = if acked_not_received > t.max_acked_not_received || (step.discrepancies > 0 && step.rate_bound > t.max_rate_bound) {
                "fail"
            } else if step.rate_bound > t.max_rate_bound {
                "insufficient"
            } else {
                "pass"
            };
            verdict = match (verdict, step.verdict) {
                ("fail", _) | (_, "fail") => "fail",
                ("insufficient", _) | (_, "insufficient") => "insufficient",
                _ => "pass",
            };
        }
        if steps.is_empty() {
            verdict = "insufficient";
        }
        let mut delay_histogram = BTreeMap::new();
        for p in Pipeline::ALL {
            let mut counts = vec![0u64; DELAY_BOUNDS_MS.len()];
            for (d, n) in &delays[p.index()] {
                counts[DELAY_BOUNDS_MS.partition_point(|b| b < d).min(DELAY_BOUNDS_MS.len() - 1)] += n;
            }
            delay_histogram.insert(p, DELAY_BOUNDS_MS.iter().copied().zip(counts).collect());
        }
        for (i, d) in delays.iter().enumerate() {
            let q = |q| super::stats::quantile_of_counts(d, q);
            self.totals[i].delay_ms = Delays { p50: q(0.50), p95: q(0.95), p99: q(0.99) };
        }
        let mut worst: Vec<(String, u64)> = by_device.into_iter().map(|(d, n)| (self.devices[d as usize].clone(), n)).collect();
        worst.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        worst.truncate(20);
        let [mqtt, pubsub] = self.totals;
        Findings {
            verdict,
            thresholds: Some(t),
            mqtt,
            pubsub,
            steps: steps.into_values().collect(),
            missing,
            duplicated,
            late,
            worst_devices: worst,
            timeline: minutes.into_values().collect(),
            delay_histogram,
            devices_reporting: self.reports.len() as u64,
            unreadable_reports: self.unreadable_reports,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn location(event: u32, device: &str, seq: u64, route: &str, cfg: u64) -> Vec<u8> {
        let id = format!("01936f1e-7c3a-7cc1-9f0a-{event:012x}");
        format!(r#"{{"eventId":"{id}","deviceId":"{device}","latitude":1.0,"longitude":2.0,"timestamp":1000,"schemaVersion":2,"seq":{seq},"route":"{route}","cfg":{cfg}}}"#).into_bytes()
    }

    fn report(device: &str, seq: u64, last_seq: u64, depth: [u64; 2], dropped: u64) -> serde_json::Value {
        serde_json::json!({"deviceId": device, "epoch": "e1", "epochStartMs": 1, "reportSeq": seq,
            "counters": {"lastSeq": last_seq, "dropped": {"outbox_full": dropped}, "deadLetters": 0},
            "gauges": {"mqttDepth": depth[0], "pubsubDepth": depth[1]}})
    }

    /// Device `d` sends `n` locations on route `both`; each reaches both pipelines unless listed.
    fn fleet(v: &mut Verifier, d: &str, base: u32, n: u64, skip_pubsub: &[u64]) {
        for seq in 1..=n {
            let bytes = location(base + seq as u32, d, seq, "both", 1);
            v.arrival(Pipeline::Mqtt, 2_000, &bytes);
            if !skip_pubsub.contains(&seq) {
                v.arrival(Pipeline::Pubsub, 3_000, &bytes);
            }
        }
    }

    #[test]
    fn a_clean_run_passes_with_enough_traffic_and_is_insufficient_without() {
        let mut v = Verifier::new(Thresholds::default());
        fleet(&mut v, "d-1", 0, 1_600, &[]);
        let f = v.finish();
        let s = &f.steps[0];
        assert_eq!((s.mqtt.expected, s.pubsub.received, s.discrepancies, s.trials), (1_600, 1_600, 0, 3_200));
        assert_eq!((s.verdict, f.verdict), ("pass", "pass"));
        assert_eq!((f.mqtt.delay_ms.p50, f.pubsub.delay_ms.p99), (Some(1_000), Some(2_000)));
        assert_eq!(f.timeline, [Minute { start_ms: 0, mqtt: 1_600, pubsub: 1_600, fallbacks: 0 }]);
        assert_eq!(f.delay_histogram[&Pipeline::Mqtt][3], (1_000, 1_600), "1 s delays in the ≤ 1 s bucket");
        let mut small = Verifier::new(Thresholds::default());
        fleet(&mut small, "d-1", 0, 100, &[]);
        assert_eq!(small.finish().verdict, "insufficient", "200 clean deliveries cannot bound 0.1 %");
    }

    #[test]
    fn a_missing_location_is_labelled_by_the_devices_report() {
        let mut v = Verifier::new(Thresholds::default());
        fleet(&mut v, "acked", 0, 10, &[3]);
        v.report(&report("acked", 5, 10, [0, 0], 0));
        fleet(&mut v, "queued", 100, 10, &[10]);
        v.report(&report("queued", 5, 10, [0, 1], 0));
        fleet(&mut v, "silent", 200, 10, &[4]);
        let f = v.finish();
        let causes: Vec<(&str, u64, Cause)> = f.missing.iter().map(|m| (m.device_id.as_str(), m.seq, m.cause)).collect();
        assert_eq!(causes, [("acked", 3, Cause::AckedNotReceived), ("queued", 10, Cause::StillQueued), ("silent", 4, Cause::Unexplained)]);
        assert_eq!(f.missing[0].pipeline, Some(Pipeline::Pubsub));
        assert_eq!(f.missing[0].event_id, "01936f1e-7c3a-7cc1-9f0a-000000000003");
        assert_eq!((f.steps[0].discrepancies, f.verdict), (2, "fail"));
    }

    #[test]
    fn duplicates_fallbacks_and_other_routes_are_never_missing() {
        let mut v = Verifier::new(Thresholds::default());
        let both = location(1, "d", 1, "both", 1);
        let fallback = location(2, "d", 2, "pubsub", 1);
        let mqtt_only = location(3, "d", 3, "mqtt", 1);
        for (p, b) in [
            (Pipeline::Mqtt, &both),
            (Pipeline::Mqtt, &both),
            (Pipeline::Pubsub, &both),
            (Pipeline::Mqtt, &fallback),
            (Pipeline::Pubsub, &fallback),
            (Pipeline::Mqtt, &mqtt_only),
        ] {
            v.arrival(p, 5_000, b);
        }
        let f = v.finish();
        let s = &f.steps[0];
        assert!(f.missing.is_empty(), "{:?}", f.missing);
        assert_eq!((s.mqtt.duplicates, s.mqtt.fallbacks, s.pubsub.expected, s.mqtt.expected), (1, 1, 2, 2));
        assert_eq!(f.duplicated[&Pipeline::Mqtt], ["01936f1e-7c3a-7cc1-9f0a-000000000001"]);
        assert_eq!(s.discrepancies, 0);
    }

    #[test]
    fn seq_gaps_count_only_inside_a_run_and_a_new_data_directory_is_not_a_gap() {
        let mut v = Verifier::new(Thresholds::default());
        for (event, seq) in [(1, 7), (2, 8), (3, 10), (4, 1), (5, 2)] {
            let b = location(event, "d", seq, "both", 1);
            v.arrival(Pipeline::Mqtt, 2_000, &b);
            v.arrival(Pipeline::Pubsub, 2_000, &b);
        }
        v.report(&report("d", 9, 10, [0, 0], 1));
        let f = v.finish();
        let gaps: Vec<(u64, Option<Pipeline>)> = f.missing.iter().map(|m| (m.seq, m.pipeline)).collect();
        assert_eq!(gaps, [(9, None)], "7 before the window, 8→10 misses 9, then a new run from 1");
        assert_eq!(f.missing[0].cause, Cause::DroppedOnDevice, "the device reported one drop");
        assert_eq!(f.steps[0].unseen, 1);
    }

    #[test]
    fn hostile_input_neither_overflows_nor_hides_a_location() {
        let mut v = Verifier::new(Thresholds::default());
        // An id with a quote and a backslash (escaped in the JSON), and absurd arrival times.
        let quoted =
            br#"{"eventId":"01936f1e-7c3a-7cc1-9f0a-000000000001","deviceId":"d\"\\1","timestamp":1000,"schemaVersion":2,"seq":1,"route":"both","cfg":1}"#;
        v.arrival(Pipeline::Mqtt, i64::MIN, quoted);
        v.arrival(Pipeline::Pubsub, i64::MAX, quoted);
        v.own_gap(Pipeline::Mqtt, i64::MIN, i64::MAX);
        let f = v.finish();
        assert_eq!((f.mqtt.malformed, f.steps[0].locations), (0, 1), "read, not dropped as malformed");
        assert_eq!(f.worst_devices, Vec::<(String, u64)>::new());
        assert_eq!(f.steps[0].pubsub.late, 1);
        // A seq of 10^15 after 1: counted, not listed one by one (and no overflow at u64::MAX).
        let mut v = Verifier::new(Thresholds::default());
        for (event, seq) in [(1, 1), (2, 1_000_000_000_000_000), (3, u64::MAX)] {
            let b = location(event, "d", seq, "both", 1);
            v.arrival(Pipeline::Mqtt, 1, &b);
            v.arrival(Pipeline::Pubsub, 1, &b);
        }
        let f = v.finish();
        assert_eq!(f.missing.len() as u64, MAX_LISTED_GAP);
        assert_eq!(f.steps[0].unseen, u64::MAX - 3);
    }

    #[test]
    fn the_verifiers_own_gap_and_changed_bytes_are_told_apart() {
        let mut v = Verifier::new(Thresholds::default());
        let a = location(1, "d", 1, "both", 1);
        v.arrival(Pipeline::Pubsub, 10_000, &a);
        v.own_gap(Pipeline::Mqtt, 9_000, 11_000);
        let b = location(2, "d", 2, "both", 1);
        v.arrival(Pipeline::Mqtt, 12_000, &b);
        let mut changed = b.clone();
        changed.extend_from_slice(b" ");
        v.arrival(Pipeline::Pubsub, 12_000, &changed);
        v.report(&report("d", 1, 2, [0, 0], 0));
        let f = v.finish();
        assert_eq!(f.missing.iter().map(|m| m.cause).collect::<Vec<_>>(), [Cause::VerifierGap]);
        assert_eq!((f.steps[0].mismatches, f.steps[0].discrepancies), (1, 1));
    }
    /// A fleet with every kind of trouble, as (pipeline, arrival ms, bytes), in arrival order:
    /// 40 devices × 300 locations, one a second each; Pub/Sub 1–3 s behind; some lost on
    /// Pub/Sub, some duplicated within seconds, fallbacks, out-of-cohort devices, a config change,
    /// seqs never seen, a wiped data directory.
    fn troubled_fleet() -> Vec<(Pipeline, i64, Vec<u8>)> {
        let mut out = Vec::new();
        let mut rng = 7u64;
        let mut next = move || {
            rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            rng >> 33
        };
        for d in 0..40u32 {
            let device = format!("d-{d}");
            let mut seq = 0u64;
            for i in 0..300u32 {
                seq = if d == 5 && i == 150 { 1 } else { seq + 1 }; // wiped at i = 150
                if d == 6 && (i == 40 || i == 41) {
                    continue; // never sent: unseen seqs
                }
                let route = match (d % 4, i % 50) {
                    (3, _) => "mqtt",
                    (_, 7) => "pubsub",
                    _ => "both",
                };
                let cfg = if i < 200 { 1 } else { 2 };
                let event = d * 1_000 + i;
                let bytes = location(event, &device, seq, route, cfg);
                let sent = 1_000_000 + i64::from(i) * 1_000 + i64::from(d);
                let mqtt_at = sent + (next() % 300) as i64;
                out.push((Pipeline::Mqtt, mqtt_at, bytes.clone()));
                if next() % 25 == 0 {
                    out.push((Pipeline::Mqtt, mqtt_at + 2_000, bytes.clone()));
                }
                if route != "mqtt" && !(d == 9 && i % 60 == 13) {
                    let at = sent + 1_000 + (next() % 2_000) as i64;
                    out.push((Pipeline::Pubsub, at, bytes.clone()));
                    if next() % 30 == 0 {
                        out.push((Pipeline::Pubsub, at + 4_000, bytes));
                    }
                }
            }
        }
        out.sort_by_key(|(_, at, _)| *at);
        out
    }

    #[test]
    fn settling_with_a_grace_bounds_memory_and_changes_no_finding() {
        let fleet = troubled_fleet();
        let mut all = Verifier::new(Thresholds::default());
        let mut settled = Verifier::new(Thresholds::default()).with_grace(10_000);
        let mut most_held = 0;
        for (p, at, bytes) in &fleet {
            all.arrival(*p, *at, bytes);
            settled.arrival(*p, *at, bytes);
            most_held = most_held.max(settled.held());
        }
        for v in [&mut all, &mut settled] {
            v.report(&report("d-9", 3, 300, [0, 0], 0));
        }
        assert_eq!(all.held(), 12_000 - 2);
        assert!(most_held < 1_000, "held {most_held} of 12,000 at once: 40 devices × ~14 s of traffic plus the missing");
        let (a, b) = (all.finish(), settled.finish());
        assert_eq!(b.mqtt.settled_copies + b.pubsub.settled_copies, 0, "every duplicate came within the grace");
        assert_eq!(a, b, "the same findings, settled or not");
        let missing: Vec<(&str, u64, Option<Pipeline>)> = b.missing.iter().map(|m| (m.device_id.as_str(), m.seq, m.pipeline)).collect();
        assert!(missing.contains(&("d-6", 41, None)) && missing.contains(&("d-9", 14, Some(Pipeline::Pubsub))), "{missing:?}");
        assert_eq!(missing.len(), 2 + 5, "two unseen seqs, five lost on Pub/Sub; the wiped directory is no gap");
        assert!(b.steps.iter().all(|s| s.mqtt.duplicates > 0 && s.mqtt.fallbacks > 0), "{:?}", b.steps);
    }

    #[test]
    fn a_copy_after_the_grace_is_a_settled_copy_and_a_missing_location_is_never_settled() {
        let mut v = Verifier::new(Thresholds::default()).with_grace(1_000);
        let (a, b) = (location(1, "d", 1, "both", 1), location(2, "d", 2, "both", 1));
        v.arrival(Pipeline::Mqtt, 1_000, &a);
        v.arrival(Pipeline::Pubsub, 1_100, &a);
        v.arrival(Pipeline::Mqtt, 1_200, &b); // Pub/Sub's copy comes a minute later
        for at in (2_000..60_000).step_by(1_000) {
            v.advance(Pipeline::Mqtt, at);
            v.advance(Pipeline::Pubsub, at);
        }
        assert_eq!(v.held(), 1, "a settled, b still owed to Pub/Sub");
        v.arrival(Pipeline::Mqtt, 60_000, &a); // a redelivery long after a settled
        v.arrival(Pipeline::Pubsub, 61_200, &b);
        let f = v.finish();
        assert!(f.missing.is_empty(), "{:?}", f.missing);
        assert_eq!((f.mqtt.settled_copies, f.mqtt.duplicates), (1, 0));
        assert_eq!((f.steps[0].pubsub.received, f.steps[0].pubsub.late), (2, 1), "b arrived, 60 s late");
        assert_eq!(f.late[&Pipeline::Pubsub], ["01936f1e-7c3a-7cc1-9f0a-000000000002"]);
    }

    #[test]
    fn locations_settled_out_of_order_leave_the_same_gaps() {
        // seq 1..=6 with 4 never sent; settled in the order 5, 2, 6, 1, 3.
        let mut v = Verifier::new(Thresholds::default()).with_grace(0);
        for (t, event, seq) in [(10, 5, 5), (20, 2, 2), (30, 6, 6), (40, 1, 1), (50, 3, 3)] {
            let b = location(event, "d", seq, "mqtt", 1);
            v.arrival(Pipeline::Mqtt, t, &b);
            v.advance(Pipeline::Pubsub, t);
        }
        v.advance(Pipeline::Mqtt, 100);
        v.advance(Pipeline::Pubsub, 100);
        assert_eq!(v.held(), 0);
        let f = v.finish();
        assert_eq!(f.missing.iter().map(|m| (m.seq, m.pipeline)).collect::<Vec<_>>(), [(4, None)]);
    }
}
