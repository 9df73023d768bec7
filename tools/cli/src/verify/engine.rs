//! The verifier's core: every message both pipelines received, joined by `eventId`, checked
//! against what each location's `route` says it was owed, its device's `seq` runs and the
//! device's own migration reports (docs/CONTRACT.md#version-2, docs/CONTRACT.md#migration-reports).
//! It knows nothing of brokers or files: feed it the window, the verifier's own connection gaps,
//! arrivals and then reports, then [`Verifier::finish`]. The parts: `payload` reads a message,
//! `runs` finds the seqs owed and never received, `reports` what each device says, `gaps` what
//! the verifier's own disconnections explain, `histogram` the delays.

pub use super::findings::*;
use super::gaps::OwnGaps;
use super::histogram::Histogram;
use super::payload;
use super::reports::Reports;
use super::runs::{self, Run, Segments};
use super::sli::Slis;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::hash::{Hash, Hasher};

/// One location, as seen so far: 64 bytes, so that a map slot with its 16-byte key is 80 (the
/// grace's worth of locations is what the verifier holds).
#[derive(Debug, Clone)]
struct Entry {
    device: u32,
    /// Copies per pipeline (saturating).
    count: [u16; 2],
    seq: u64,
    cfg: u64,
    timestamp_ms: i64,
    /// The first copy's digest.
    digest: u64,
    /// Where the first copy came from (see [`Verifier::with_source`]; 56 bits), the route, and
    /// the mismatch and settle-queue flags.
    meta: u64,
    first_at: [i64; 2],
}

const ORIGIN_BITS: u64 = (1 << 56) - 1;
const MISMATCH: u64 = 1 << 58;
const QUEUED: u64 = 1 << 59;

impl Entry {
    fn route(&self) -> Route {
        match (self.meta >> 56) & 3 {
            0 => Route::Both,
            1 => Route::Mqtt,
            _ => Route::Pubsub,
        }
    }

    fn origin(&self) -> u64 {
        match self.meta & ORIGIN_BITS {
            ORIGIN_BITS => NO_ORIGIN,
            o => o,
        }
    }

    fn has(&self, flag: u64) -> bool {
        self.meta & flag != 0
    }

    /// Received on every pipeline its route owes.
    fn complete(&self) -> bool {
        self.route().pipelines().all(|p| self.count[p.index()] > 0)
    }

    /// When its last first copy arrived.
    fn last_at(&self) -> i64 {
        Pipeline::ALL.iter().filter(|p| self.count[p.index()] > 0).map(|p| self.first_at[p.index()]).max().unwrap_or(i64::MIN)
    }
}

/// The copies of a location whose bytes differ: each digest with its copies per pipeline and
/// where its first copy came from.
#[derive(Debug, Default)]
struct Variants {
    copies: Vec<(u64, [u64; 2], u64)>,
}

/// An arrival whose bytes cannot be read again ([`Verifier::arrival`]).
pub const NO_ORIGIN: u64 = u64::MAX;

/// Reads a message again by the origin it was fed with (a capture's line offset, an index).
pub type Source = Box<dyn Fn(u64) -> Option<Vec<u8>>>;

/// A location (or a `seq`) not received somewhere, before its cause is known.
#[derive(Debug)]
struct Gone {
    device: u32,
    seq: u64,
    cfg: u64,
    /// Where it is missing (`None`: seen on neither pipeline).
    pipeline: Option<Pipeline>,
    /// The pipelines it was owed to (for one seen on neither, its run's neighbour's route).
    route: Route,
    /// Its eventId as a key (`None`: seen on neither pipeline).
    key: Option<u128>,
    event_id: String,
    /// Its run's epoch (an index into the device's epochs), once known.
    epoch: Option<usize>,
    /// Its `timestamp` (for one seen on neither pipeline, its run neighbour's): its minute in the
    /// per-minute indicators.
    timestamp_ms: i64,
}

/// The eventIds listed as duplicated, and as late, per pipeline (the counts are exact).
const MAX_LISTED_IDS: usize = 10_000;

/// The delay bounds of the charts' histogram, ms (the last bucket holds everything above).
const DELAY_BOUNDS_MS: [i64; 12] = [100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 60_000, 300_000, 3_600_000, i64::MAX];

/// What settled locations have added up to: everything `finish` reports, without the locations.
#[derive(Debug, Default)]
struct Folded {
    steps: BTreeMap<u64, Step>,
    step_devices: BTreeMap<u64, HashSet<u32>>,
    /// Per pipeline: the delays of first arrivals (log-linear buckets) and the charts' counts.
    delays: [Histogram; 2],
    chart_delays: [[u64; DELAY_BOUNDS_MS.len()]; 2],
    minutes: BTreeMap<i64, Minute>,
    duplicated: BTreeMap<Pipeline, Vec<String>>,
    late: BTreeMap<Pipeline, Vec<String>>,
    missing: Vec<Gone>,
    /// By key (eventId order for UUIDs), at most [`MAX_LISTED_MISMATCHES`].
    mismatched: BTreeMap<u128, Mismatch>,
    segments: Segments,
    slis: Slis,
}

/// Joins both pipelines by eventId.
///
/// Memory: every location stays until it is *settled* — received on every pipeline its `route`
/// owes and, with a grace ([`Verifier::with_grace`]), its last copy older than the watermark
/// (the older of the pipelines' newest arrivals; a pipeline that has [`Verifier::ended`] no
/// longer holds it back) minus the grace. A settled location is folded into counts and its
/// device's `seq` segments and forgotten; a copy arriving after that is counted as a settled
/// copy, not joined. A location still missing somewhere is never folded early, so the grace can
/// hide no loss: it only bounds how long a duplicate is recognised as one.
pub struct Verifier {
    thresholds: Thresholds,
    grace_ms: Option<i64>,
    /// Per pipeline, the newest arrival fed (or declared with [`Verifier::advance`]); `i64::MAX`
    /// once it has ended.
    watermark: [i64; 2],
    /// Settleable locations by the time of their last copy, oldest first.
    queue: VecDeque<(i64, u128)>,
    entries: HashMap<u128, Entry>,
    /// eventIds that are not UUIDs, by their key.
    ids: HashMap<u128, String>,
    /// Locations whose copies differ, by key.
    variants: HashMap<u128, Variants>,
    devices: Vec<String>,
    device_index: HashMap<String, u32>,
    totals: [PipelineTotals; 2],
    reports: Reports,
    gaps: OwnGaps,
    /// The window given ([`Verifier::with_window`]), else the first and last arrival.
    window: Option<(i64, i64)>,
    /// Where the copies of a mismatched location are read again, to name the fields that differ.
    source: Option<Source>,
    arrivals_span: Option<(i64, i64)>,
    folded: Folded,
}

/// An eventId as a number: the UUID's 128 bits (UUIDv7 sorts by acceptance time), or a hash
/// with the top bit set.
fn key(event_id: &str) -> u128 {
    let hex: String = event_id.chars().filter(|c| *c != '-').collect();
    match (hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()), u128::from_str_radix(&hex, 16)) {
        (true, Ok(k)) if k >> 127 == 0 => k,
        _ => {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            event_id.hash(&mut h);
            (1u128 << 127) | u128::from(h.finish())
        }
    }
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
            variants: HashMap::new(),
            devices: Vec::new(),
            device_index: HashMap::new(),
            totals: Default::default(),
            reports: Reports::default(),
            gaps: OwnGaps::default(),
            window: None,
            source: None,
            arrivals_span: None,
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

    /// The window the pipelines were read in (ms): when the subscribers started and stopped.
    /// Without it the window is the first to the last arrival. An epoch that began inside the
    /// window owes every seq from 1; reports are judged against its start.
    pub fn with_window(mut self, from_ms: i64, to_ms: i64) -> Self {
        self.window = Some((from_ms, to_ms));
        self
    }

    /// Where the copies of a location whose bytes differ can be read again by the origin they were
    /// fed with ([`Verifier::arrival_from`]): the fields that differ are then named exactly, and
    /// nothing but the first copy's origin (8 bytes) is kept per location meanwhile.
    pub fn with_source(mut self, source: Source) -> Self {
        self.source = Some(source);
        self
    }

    /// The window in force: the one given, else the span of the arrivals.
    pub fn window(&self) -> Option<(i64, i64)> {
        self.window.or(self.arrivals_span)
    }

    /// Declares that everything `pipeline` received up to `ms` has been fed (a live reader calls
    /// it when a pipeline is quiet, so the watermark moves without arrivals).
    pub fn advance(&mut self, pipeline: Pipeline, ms: i64) {
        let w = &mut self.watermark[pipeline.index()];
        *w = (*w).max(ms);
        self.settle();
    }

    /// Declares that `pipeline` will receive nothing more (a capture past that pipeline's last
    /// line): it no longer holds the watermark back, so a capture with one pipeline silent (a
    /// rollout at 0 %, MQTT switched off) settles as it is read.
    pub fn ended(&mut self, pipeline: Pipeline) {
        self.advance(pipeline, i64::MAX);
    }

    /// Locations held in memory (not yet settled).
    pub fn held(&self) -> usize {
        self.entries.len()
    }

    /// The index of a device, added if new.
    fn device(&mut self, name: &str) -> u32 {
        if let Some(&d) = self.device_index.get(name) {
            return d;
        }
        self.devices.push(name.to_string());
        let d = (self.devices.len() - 1) as u32;
        self.device_index.insert(name.to_string(), d);
        d
    }

    /// One message `pipeline` received at `received_at_ms` (duplicates included), which cannot
    /// be read again.
    pub fn arrival(&mut self, pipeline: Pipeline, received_at_ms: i64, bytes: &[u8]) {
        self.arrival_from(pipeline, received_at_ms, bytes, NO_ORIGIN);
    }

    /// One message `pipeline` received at `received_at_ms` (duplicates included), which the
    /// source ([`Verifier::with_source`]) can read again by `origin`.
    pub fn arrival_from(&mut self, pipeline: Pipeline, received_at_ms: i64, bytes: &[u8], origin: u64) {
        let p = pipeline.index();
        self.totals[p].messages += 1;
        self.arrivals_span = Some(self.arrivals_span.map_or((received_at_ms, received_at_ms), |(a, b)| (a.min(received_at_ms), b.max(received_at_ms))));
        let Some((w, route)) = payload::parse(bytes).and_then(|w| Route::parse(&w.route).map(|r| (w, r))) else {
            self.totals[p].malformed += 1;
            return;
        };
        let k = key(&w.event_id);
        let device = self.device(&w.device_id);
        self.gaps.arrival(device, pipeline, w.seq, received_at_ms);
        self.folded.slis.copy(pipeline, w.cfg, route, w.timestamp, received_at_ms);
        if !self.entries.contains_key(&k) && runs::contains(&self.folded.segments, device, k, w.seq) {
            self.totals[p].settled_copies += 1;
            self.advance(pipeline, received_at_ms);
            return;
        }
        let digest = payload::digest(bytes);
        let route_bits = match route {
            Route::Both => 0,
            Route::Mqtt => 1,
            Route::Pubsub => 2,
        };
        let e = self.entries.entry(k).or_insert_with(|| Entry {
            device,
            count: [0, 0],
            seq: w.seq,
            cfg: w.cfg,
            timestamp_ms: w.timestamp,
            digest,
            meta: origin.min(ORIGIN_BITS) | (route_bits << 56),
            first_at: [i64::MAX, i64::MAX],
        });
        if e.has(MISMATCH) || e.digest != digest {
            let v = self.variants.entry(k).or_insert_with(|| Variants { copies: vec![(e.digest, e.count.map(u64::from), e.origin())] });
            match v.copies.iter_mut().find(|(d, _, _)| *d == digest) {
                Some((_, n, _)) => n[p] += 1,
                None => {
                    let mut n = [0, 0];
                    n[p] = 1;
                    v.copies.push((digest, n, origin));
                }
            }
            e.meta |= MISMATCH;
        }
        e.count[p] = e.count[p].saturating_add(1);
        e.first_at[p] = e.first_at[p].min(received_at_ms);
        if self.grace_ms.is_some() && !e.has(QUEUED) && e.complete() {
            e.meta |= QUEUED;
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

    /// The verifier's subscriber on `pipeline` was disconnected from `from_ms` to `to_ms`. Feed
    /// a gap before the arrivals that follow it (docs/VERIFY.md, "Reconciliation").
    pub fn own_gap(&mut self, pipeline: Pipeline, from_ms: i64, to_ms: i64) {
        self.gaps.add(pipeline, from_ms, to_ms);
        self.totals[pipeline.index()].own_gaps.push((from_ms, to_ms));
    }

    /// A migration report (the document). Feed reports after the window is known (given, or
    /// the arrivals read): a report is placed before or inside it by when it was cut.
    pub fn report(&mut self, doc: &serde_json::Value) {
        let from = self.window().map_or(i64::MIN, |w| w.0);
        self.reports.add(doc, from);
    }

    fn event_id(&self, k: u128) -> String {
        if k >> 127 == 1 {
            return self.ids.get(&k).cloned().unwrap_or_default();
        }
        let h = format!("{k:032x}");
        format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
    }

    /// Adds one location to the counts, the charts' data and its device's segments.
    fn fold(&mut self, k: u128, e: Entry) {
        let late_ms = self.thresholds.late_ms;
        let id = if k >> 127 == 1 { self.ids.remove(&k).unwrap_or_default() } else { self.event_id(k) };
        let f = &mut self.folded;
        let route = e.route();
        runs::add(&mut f.segments, e.device, k, e.seq, e.cfg, route, e.timestamp_ms);
        f.slis.location(e.cfg, route, e.timestamp_ms, e.count.map(|n| n > 0));
        let step = f.steps.entry(e.cfg).or_insert_with(|| Step { cfg: e.cfg, ..Step::default() });
        f.step_devices.entry(e.cfg).or_default().insert(e.device);
        step.locations += 1;
        if e.has(MISMATCH) {
            step.mismatches += 1;
            let v = self.variants.remove(&k).unwrap_or_default();
            // The smallest eventIds are kept (as the SQL lists them), whatever the settling order.
            if f.mismatched.len() < MAX_LISTED_MISMATCHES || f.mismatched.last_key_value().is_some_and(|(last, _)| k < *last) {
                let mut copies: Vec<MismatchCopy> = v
                    .copies
                    .iter()
                    .flat_map(|(d, n, _)| {
                        Pipeline::ALL.into_iter().filter(|p| n[p.index()] > 0).map(|p| MismatchCopy {
                            digest: payload::digest_hex(*d),
                            pipeline: p,
                            copies: n[p.index()],
                        })
                    })
                    .collect();
                copies.sort();
                // Each variant's first copy read again: the fields that differ, if all can be read.
                let read = |o: u64| self.source.as_ref().filter(|_| o != NO_ORIGIN).and_then(|s| s(o)).and_then(|b| payload::field_values(&b));
                let values: Option<Vec<_>> = v.copies.iter().map(|(_, _, o)| read(*o)).collect();
                let device_id = self.devices[e.device as usize].clone();
                let m = Mismatch { event_id: id.clone(), device_id, seq: e.seq, cfg: e.cfg, copies, fields: values.map(|v| payload::differing(&v)) };
                f.mismatched.insert(k, m);
                if f.mismatched.len() > MAX_LISTED_MISMATCHES {
                    f.mismatched.pop_last();
                }
            }
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
                let delay = e.first_at[i].saturating_sub(e.timestamp_ms);
                f.delays[i].add(delay);
                f.chart_delays[i][DELAY_BOUNDS_MS.partition_point(|b| *b < delay).min(DELAY_BOUNDS_MS.len() - 1)] += 1;
                // Arrival times come from files: saturate rather than overflow on nonsense.
                let start_ms = e.first_at[i].div_euclid(60_000).saturating_mul(60_000);
                let m = f.minutes.entry(start_ms).or_insert_with(|| Minute { start_ms, ..Minute::default() });
                match p {
                    Pipeline::Mqtt if !route.owes(p) => m.fallbacks += 1,
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
            if route.owes(p) {
                ps.expected += 1;
                if got {
                    ps.received += 1;
                } else {
                    ps.missing += 1;
                    f.missing.push(Gone {
                        device: e.device,
                        seq: e.seq,
                        cfg: e.cfg,
                        pipeline: Some(p),
                        route,
                        key: Some(k),
                        event_id: id.clone(),
                        epoch: None,
                        timestamp_ms: e.timestamp_ms,
                    });
                }
            } else if got {
                match p {
                    Pipeline::Mqtt => ps.fallbacks += 1,
                    Pipeline::Pubsub => ps.unexpected += 1,
                }
            }
        }
    }

    /// Why `g` is missing (docs/VERIFY.md, "Reconciliation"): per pipeline it is missing on (for
    /// a seq seen on neither, every pipeline its route owes), a gap of the verifier's own
    /// subscriber there; else without a report of its epoch covering it, unexplained; else
    /// still queued if the report holds it there; else — on any pipeline — dropped while the
    /// epoch's drops last (`drops_left`, oldest missing first), else acknowledged but not
    /// received. A location is still queued only if every pipeline that does not explain it by
    /// a gap still holds it. `gaps` gets each pipeline on which the verifier's own gap explains it.
    fn cause(&self, g: &Gone, drops_left: &mut u64, gaps: &mut Vec<Pipeline>) -> Cause {
        let device = &self.devices[g.device as usize];
        let report = g.epoch.and_then(|e| self.reports.epochs(device).get(e)).map(|e| &e.newest).filter(|r| r.last_seq >= g.seq);
        let pipelines: Vec<Pipeline> = match g.pipeline {
            Some(p) => vec![p],
            None => g.route.pipelines().collect(),
        };
        let (mut unexplained, mut needs, mut queued) = (false, false, false);
        for p in pipelines {
            if self.gaps.shadowed(g.device, p, g.seq) {
                gaps.push(p);
                continue;
            }
            match report {
                None => unexplained = true,
                Some(r) if r.holds(p.index(), g.seq) => queued = true,
                Some(_) => needs = true,
            }
        }
        if unexplained {
            Cause::Unexplained
        } else if needs && *drops_left > 0 {
            *drops_left -= 1;
            Cause::DroppedOnDevice
        } else if needs {
            Cause::AckedNotReceived
        } else if queued {
            Cause::StillQueued
        } else {
            Cause::VerifierGap
        }
    }

    /// Ends the run: folds what is still held, finds the seqs owed and never received (inside
    /// runs, at their ends, in epochs none of whose locations arrived), reconciles every missing
    /// location with its epoch's report, and judges every rollout step.
    pub fn finish(mut self) -> Findings {
        let t = self.thresholds;
        let mut keys: Vec<u128> = self.entries.keys().copied().collect();
        keys.sort_unstable();
        for k in keys {
            if let Some(e) = self.entries.remove(&k) {
                self.fold(k, e);
            }
        }
        let Folded { mut steps, mut step_devices, delays, chart_delays, minutes, mut duplicated, mut late, missing: mut gone, mismatched, segments, mut slis } =
            std::mem::take(&mut self.folded);
        // Listed in eventId order, however they were settled.
        for ids in duplicated.values_mut().chain(late.values_mut()) {
            ids.sort_unstable();
        }
        let mut mismatched: Vec<Mismatch> = mismatched.into_values().collect();
        mismatched.sort_by(|a, b| a.event_id.cmp(&b.event_id));
        // Devices known only from their reports: every location of theirs vanished.
        let mut reporting: Vec<String> = self.reports.devices().filter(|d| !self.device_index.contains_key(*d)).map(String::from).collect();
        reporting.sort_unstable();
        for d in reporting {
            self.device(&d);
        }
        let window_from = self.window().map_or(i64::MIN, |w| w.0);
        let mut unlisted: BTreeMap<u64, u64> = BTreeMap::new();
        let mut unbounded = Vec::new();
        let mut unbounded_count = 0u64;
        let mut runs_of: Vec<Vec<Run>> = Vec::with_capacity(self.devices.len());
        for d in 0..self.devices.len() {
            let name = &self.devices[d];
            let epochs = self.reports.epochs(name);
            let owing = runs::owing(d as u32, &segments, epochs, window_from);
            for u in owing.unseen {
                slis.unseen(u.cfg, u.route, u.timestamp_ms);
                gone.push(Gone {
                    device: d as u32,
                    seq: u.seq,
                    cfg: u.cfg,
                    pipeline: None,
                    route: u.route,
                    key: None,
                    event_id: String::new(),
                    epoch: u.epoch,
                    timestamp_ms: u.timestamp_ms,
                });
            }
            for (cfg, n) in owing.unlisted {
                let c = unlisted.entry(cfg).or_default();
                *c = c.saturating_add(n);
            }
            for (epoch, reason) in owing.unbounded {
                unbounded_count += 1;
                if unbounded.len() < MAX_LISTED_UNBOUNDED {
                    unbounded.push(Unbounded { device_id: name.clone(), epoch: epoch.map(|e| epochs[e].newest.epoch.clone()), reason });
                }
            }
            runs_of.push(owing.runs);
        }
        for g in &mut gone {
            if let Some(k) = g.key {
                g.epoch = runs::run_of(&runs_of[g.device as usize], k).and_then(|r| r.epoch);
            }
        }
        // Causes, oldest first per device (drops take the oldest).
        gone.sort_by(|a, b| (a.device, a.seq, &a.event_id).cmp(&(b.device, b.seq, &b.event_id)));
        let mut drops_left: HashMap<(u32, Option<usize>), u64> = HashMap::new();
        let mut missing = Vec::with_capacity(gone.len());
        let mut by_device: HashMap<u32, u64> = HashMap::new();
        for g in &gone {
            let device = &self.devices[g.device as usize];
            let left = drops_left.entry((g.device, g.epoch)).or_insert_with(|| {
                g.epoch.and_then(|e| self.reports.epochs(device).get(e)).map_or(0, |e| e.newest.dropped.saturating_add(e.newest.dead_letters))
            });
            let mut gaps = Vec::new();
            let cause = self.cause(g, left, &mut gaps);
            for p in gaps {
                slis.verifier_gap(p, g.cfg, g.route, g.timestamp_ms);
            }
            let step = steps.entry(g.cfg).or_insert_with(|| Step { cfg: g.cfg, ..Step::default() });
            *step.causes.entry(cause).or_default() += 1;
            if g.pipeline.is_none() {
                step.unseen += 1;
                step_devices.entry(g.cfg).or_default().insert(g.device);
            }
            *by_device.entry(g.device).or_default() += 1;
            missing.push(Missing { event_id: g.event_id.clone(), device_id: device.clone(), seq: g.seq, cfg: g.cfg, pipeline: g.pipeline, cause });
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
        let delay_histogram = Pipeline::ALL.into_iter().map(|p| (p, DELAY_BOUNDS_MS.iter().copied().zip(chart_delays[p.index()]).collect())).collect();
        for (i, d) in delays.iter().enumerate() {
            self.totals[i].delay_ms = Delays { p50: d.quantile(0.50), p95: d.quantile(0.95), p99: d.quantile(0.99) };
        }
        let mut worst: Vec<(String, u64)> = by_device.into_iter().map(|(d, n)| (self.devices[d as usize].clone(), n)).collect();
        worst.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        worst.truncate(20);
        let window = self.window();
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
            unreadable_reports: self.reports.unreadable,
            mismatched,
            unbounded,
            unbounded_count,
            window,
            sli: slis.rows(),
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

    /// A location accepted at `ms` (its eventId's time), the `event`th of the test.
    fn location_at(ms: i64, event: u32, device: &str, seq: u64, route: &str, cfg: u64) -> Vec<u8> {
        let id = format!("{:08x}-{:04x}-7cc1-9f0a-{event:012x}", ms >> 16, ms & 0xffff);
        format!(r#"{{"eventId":"{id}","deviceId":"{device}","latitude":1.0,"longitude":2.0,"timestamp":{ms},"schemaVersion":2,"seq":{seq},"route":"{route}","cfg":{cfg}}}"#).into_bytes()
    }

    fn report(device: &str, seq: u64, last_seq: u64, depth: [u64; 2], dropped: u64) -> serde_json::Value {
        serde_json::json!({"deviceId": device, "epoch": "e1", "epochStartMs": 1, "reportSeq": seq, "cutAtMs": 1_000_000_000,
            "counters": {"lastSeq": last_seq, "dropped": {"outbox_full": dropped}, "deadLetters": 0},
            "gauges": {"mqttDepth": depth[0], "pubsubDepth": depth[1]}, "decision": {"cfg": 1, "route": "both"}})
    }

    /// A report of `epoch` begun at `start`, with the lowest seq owed per transport when given.
    fn report_of(device: &str, epoch: &str, start: i64, last_seq: u64, depth: [u64; 2], oldest: Option<[u64; 2]>) -> serde_json::Value {
        let mut r = serde_json::json!({"deviceId": device, "epoch": epoch, "epochStartMs": start, "reportSeq": 1, "cutAtMs": start + 1,
            "counters": {"lastSeq": last_seq, "dropped": {}, "deadLetters": 0},
            "gauges": {"mqttDepth": depth[0], "pubsubDepth": depth[1]}, "decision": {"cfg": 1, "route": "mqtt"}});
        if let Some([m, p]) = oldest {
            r["gauges"]["mqttOldestSeq"] = m.into();
            r["gauges"]["pubsubOldestSeq"] = p.into();
        }
        r
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
    fn a_held_location_costs_80_bytes_of_map_slot() {
        assert_eq!(std::mem::size_of::<(u128, Entry)>(), 80);
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
        // 7, 8, 10 in epoch e1 (begun before the window), then a wiped directory: 1, 2 in e2.
        for (ms, event, seq) in [(1_000, 1, 7), (1_001, 2, 8), (1_003, 3, 10), (9_000, 4, 1), (9_001, 5, 2)] {
            let b = location_at(ms, event, "d", seq, "both", 1);
            v.arrival(Pipeline::Mqtt, 20_000 + ms, &b);
            v.arrival(Pipeline::Pubsub, 20_000 + ms, &b);
        }
        let mut e1 = report_of("d", "e1", 500, 10, [0, 0], None);
        e1["counters"]["dropped"] = serde_json::json!({"outbox_full": 1});
        v.report(&e1);
        v.report(&report_of("d", "e2", 8_000, 2, [0, 0], None));
        let f = v.finish();
        let gaps: Vec<(u64, Option<Pipeline>)> = f.missing.iter().map(|m| (m.seq, m.pipeline)).collect();
        assert_eq!(gaps, [(9, None)], "7 before the window, 8→10 misses 9, then a new run from 1");
        assert_eq!(f.missing[0].cause, Cause::DroppedOnDevice, "the device reported one drop in e1");
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
        assert_eq!(f.missing.len() as u64, runs::MAX_LISTED_GAP);
        assert_eq!(f.steps[0].unseen, u64::MAX - 3);
    }

    #[test]
    fn the_verifiers_own_gap_and_changed_bytes_are_told_apart() {
        let a = location(1, "d", 1, "both", 1);
        let b = location(2, "d", 2, "both", 1);
        let mut changed = b.clone();
        changed.extend_from_slice(b" ");
        let flipped = String::from_utf8(b.clone()).unwrap().replace("\"latitude\":1.0", "\"latitude\":1.5").into_bytes();
        // The copies can be read again by their index (as a capture's by their offset).
        let copies = [a.clone(), b.clone(), changed.clone(), flipped.clone()];
        let mut v = Verifier::new(Thresholds::default()).with_source(Box::new(move |i| copies.get(i as usize).cloned()));
        v.own_gap(Pipeline::Mqtt, 9_000, 11_000);
        v.arrival_from(Pipeline::Pubsub, 10_000, &a, 0);
        v.arrival_from(Pipeline::Mqtt, 14_000, &b, 1);
        v.arrival_from(Pipeline::Pubsub, 14_000, &changed, 2);
        v.arrival_from(Pipeline::Pubsub, 14_500, &flipped, 3);
        v.report(&report("d", 1, 2, [0, 0], 0));
        let f = v.finish();
        assert_eq!(f.missing.iter().map(|m| m.cause).collect::<Vec<_>>(), [Cause::VerifierGap]);
        assert_eq!((f.steps[0].mismatches, f.steps[0].discrepancies), (1, 1));
        let [m] = &f.mismatched[..] else { panic!("{:?}", f.mismatched) };
        assert_eq!((m.event_id.as_str(), m.seq, m.fields.clone()), ("01936f1e-7c3a-7cc1-9f0a-000000000002", 2, Some(vec!["latitude"])));
        let copies: Vec<(Pipeline, u64)> = m.copies.iter().map(|c| (c.pipeline, c.copies)).collect();
        assert_eq!(copies.len(), 3, "the original on MQTT, the spaced and the flipped copy on Pub/Sub: {copies:?}");
        assert!(m.copies.iter().any(|c| c.digest == payload::digest_hex(payload::digest(&b)) && c.pipeline == Pipeline::Mqtt));
    }

    #[test]
    fn one_gap_rule_for_every_route() {
        // The MQTT subscriber was down from 10 s to 12 s; a route-both and a route-mqtt device each
        // lose seq 3 on MQTT then (their seq 2 arrived before, seq 4 after). Both are the
        // verifier's gap; seq 6, lost long after, is a loss on either route.
        let mut v = Verifier::new(Thresholds::default());
        v.own_gap(Pipeline::Mqtt, 10_000, 12_000);
        for (device, route, base) in [("both", "both", 0), ("mqtt", "mqtt", 100)] {
            for (seq, at) in [(1, 5_000), (2, 7_000), (3, 11_000), (4, 15_000), (5, 20_000), (6, 25_000), (7, 30_000)] {
                let b = location(base + seq as u32, device, seq, route, 1);
                if seq != 3 && seq != 6 {
                    v.arrival(Pipeline::Mqtt, at, &b);
                }
                if route == "both" {
                    v.arrival(Pipeline::Pubsub, at + 500, &b);
                }
            }
        }
        v.report(&report("both", 1, 7, [0, 0], 0));
        v.report(&report("mqtt", 1, 7, [0, 0], 0));
        let f = v.finish();
        let causes: Vec<(&str, u64, Cause)> = f.missing.iter().map(|m| (m.device_id.as_str(), m.seq, m.cause)).collect();
        assert_eq!(
            causes,
            [("both", 3, Cause::VerifierGap), ("both", 6, Cause::AckedNotReceived), ("mqtt", 3, Cause::VerifierGap), ("mqtt", 6, Cause::AckedNotReceived)]
        );
    }

    #[test]
    fn a_runs_end_is_owed_up_to_its_reports_last_seq() {
        let mut v = Verifier::new(Thresholds::default()).with_window(0, 100_000);
        // A route-mqtt device's last location (30) lost on MQTT; its report: 30 given out, nothing owed.
        for seq in 1..=29 {
            v.arrival(Pipeline::Mqtt, 2_000, &location(seq as u32, "tail", seq, "mqtt", 1));
        }
        v.report(&report_of("tail", "e1", 1, 30, [0, 0], Some([0, 0])));
        // A device whose last 5 are gone everywhere, still queued for both transports.
        for seq in 1..=25 {
            let b = location(100 + seq as u32, "queued", seq, "both", 1);
            v.arrival(Pipeline::Mqtt, 2_000, &b);
            v.arrival(Pipeline::Pubsub, 3_000, &b);
        }
        v.report(&report_of("queued", "e1", 1, 30, [5, 5], None));
        // Pub/Sub refused everything (all still queued there) and the last 5 were removed from MQTT.
        for seq in 1..=25 {
            v.arrival(Pipeline::Mqtt, 2_000, &location(200 + seq as u32, "refused", seq, "both", 1));
        }
        v.report(&report_of("refused", "e1", 1, 30, [0, 30], Some([0, 1])));
        let f = v.finish();
        let by = |d: &str| f.missing.iter().filter(|m| m.device_id == d).map(|m| (m.seq, m.cause)).collect::<Vec<_>>();
        assert_eq!(by("tail"), [(30, Cause::AckedNotReceived)]);
        assert_eq!(by("queued"), (26..=30).map(|s| (s, Cause::StillQueued)).collect::<Vec<_>>());
        let refused = by("refused");
        assert_eq!(refused.iter().filter(|(_, c)| *c == Cause::AckedNotReceived).map(|(s, _)| *s).collect::<Vec<_>>(), [26, 27, 28, 29, 30]);
        assert_eq!(f.verdict, "fail");
    }

    #[test]
    fn a_device_whose_every_location_vanished_is_listed() {
        let mut v = Verifier::new(Thresholds::default()).with_window(0, 100_000);
        for seq in 1..=10 {
            let b = location(seq as u32, "present", seq, "both", 1);
            v.arrival(Pipeline::Mqtt, 2_000, &b);
            v.arrival(Pipeline::Pubsub, 3_000, &b);
        }
        v.report(&report_of("present", "e1", 1, 10, [0, 0], Some([0, 0])));
        v.report(&report_of("gone", "e1", 1, 10, [0, 0], Some([0, 0])));
        let f = v.finish();
        let gone: Vec<(u64, Option<Pipeline>, Cause)> = f.missing.iter().filter(|m| m.device_id == "gone").map(|m| (m.seq, m.pipeline, m.cause)).collect();
        assert_eq!(gone, (1..=10).map(|s| (s, None, Cause::AckedNotReceived)).collect::<Vec<_>>());
        assert_eq!(f.worst_devices[0], ("gone".to_string(), 10));
        assert_eq!((f.steps[0].devices, f.verdict), (2, "fail"));
        // Without a window beginning before its epoch, the start of its run cannot be told: said so.
        let mut v = Verifier::new(Thresholds::default()).with_window(2, 100_000);
        v.report(&report_of("gone", "e1", 1, 10, [0, 0], Some([0, 0])));
        let f = v.finish();
        assert!(f.missing.is_empty());
        assert_eq!(f.unbounded, [Unbounded { device_id: "gone".into(), epoch: Some("e1".into()), reason: Unbound::StartUnknown }]);
    }

    #[test]
    fn the_oldest_row_stuck_on_one_transport_is_still_queued() {
        // Seq 3 is stuck on MQTT while the route changed to Pub/Sub only and 4..20 went there:
        // depth 1 on MQTT would call only 20 still queued; the oldest owed seq (3) says 3 is.
        let mut v = Verifier::new(Thresholds::default());
        for seq in 1..=20u64 {
            let route = if seq <= 3 { "both" } else { "pubsub" };
            let b = location(seq as u32, "stuck", seq, route, 1);
            if seq != 3 {
                if seq < 3 {
                    v.arrival(Pipeline::Mqtt, 2_000, &b);
                }
                v.arrival(Pipeline::Pubsub, 3_000, &b);
            } else {
                v.arrival(Pipeline::Pubsub, 3_000, &b);
            }
        }
        v.report(&report_of("stuck", "e1", 1, 20, [1, 0], Some([3, 0])));
        let f = v.finish();
        assert_eq!(f.missing.iter().map(|m| (m.seq, m.pipeline, m.cause)).collect::<Vec<_>>(), [(3, Some(Pipeline::Mqtt), Cause::StillQueued)]);
        assert_ne!(f.verdict, "fail");
    }

    #[test]
    fn a_silent_pipeline_that_has_ended_no_longer_holds_memory() {
        // Every device on route mqtt: Pub/Sub receives nothing (a 0 % rollout).
        let mut v = Verifier::new(Thresholds::default()).with_grace(1_000);
        v.ended(Pipeline::Pubsub);
        let mut most = 0;
        for seq in 1..=5_000u64 {
            v.arrival(Pipeline::Mqtt, seq as i64 * 10, &location(seq as u32, "d", seq, "mqtt", 1));
            most = most.max(v.held());
        }
        assert!(most <= 102, "held {most}: a second of traffic at 100 a second");
        let f = v.finish();
        assert!(f.missing.is_empty() && f.steps[0].mqtt.received == 5_000);
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
