//! What the devices' migration reports tell the verifier (docs/CONTRACT.md#migration-reports):
//! per device and data-directory epoch, the newest report (how far the run went, what is still
//! owed, what was dropped), the first report cut inside the window and the last one cut before
//! it (where the window's locations begin, when none of them arrived).

use super::findings::Route;
use std::collections::HashMap;

/// The fields of one report reconciliation needs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeviceReport {
    /// The report's epoch.
    pub epoch: String,
    /// When that epoch began (device clock; a newer epoch's reports win).
    pub epoch_start_ms: i64,
    /// Its `reportSeq`.
    pub report_seq: u64,
    /// When it was cut (device clock).
    pub cut_at_ms: i64,
    /// `counters.lastSeq`: the last location `seq` the device gave out.
    pub last_seq: u64,
    /// `gauges.mqttDepth`, `gauges.pubsubDepth`.
    pub depth: [u64; 2],
    /// `gauges.mqttOldestSeq`, `gauges.pubsubOldestSeq`: the lowest seq still owed to that
    /// transport (0: none owed, or — with a depth above 0 — not known, as from an SDK without
    /// these gauges, which reads as 0).
    pub oldest_seq: [u64; 2],
    /// Sum of `counters.dropped`.
    pub dropped: u64,
    /// `counters.deadLetters`.
    pub dead_letters: u64,
    /// `decision.cfg` and `decision.route`: the decision in force when it was cut.
    pub cfg: u64,
    /// See `cfg` (`both` when absent or unknown).
    pub route: Route,
}

impl DeviceReport {
    /// Reads a report document; `None` when a field reconciliation needs is missing.
    pub fn from_json(v: &serde_json::Value) -> Option<(String, DeviceReport)> {
        let device = v["deviceId"].as_str()?.to_string();
        let (c, g) = (&v["counters"], &v["gauges"]);
        let report = DeviceReport {
            epoch: v["epoch"].as_str()?.to_string(),
            epoch_start_ms: v["epochStartMs"].as_i64()?,
            report_seq: v["reportSeq"].as_u64()?,
            cut_at_ms: v["cutAtMs"].as_i64().unwrap_or(i64::MIN),
            last_seq: c["lastSeq"].as_u64()?,
            depth: [g["mqttDepth"].as_u64()?, g["pubsubDepth"].as_u64()?],
            oldest_seq: [g["mqttOldestSeq"].as_u64().unwrap_or(0), g["pubsubOldestSeq"].as_u64().unwrap_or(0)],
            dropped: c["dropped"].as_object().map(|m| m.values().filter_map(|n| n.as_u64()).sum()).unwrap_or(0),
            dead_letters: c["deadLetters"].as_u64().unwrap_or(0),
            cfg: v["decision"]["cfg"].as_u64().unwrap_or(0),
            route: v["decision"]["route"].as_str().and_then(Route::parse).unwrap_or_default(),
        };
        Some((device, report))
    }

    /// Whether this report says `seq` may still be owed to the transport of pipeline index `p`
    /// (docs/CONTRACT.md#reading-reports): at or after the lowest seq it owes there, up to
    /// `lastSeq`; when that is not known (0 with a depth above 0), among the newest `depth`.
    pub fn holds(&self, p: usize, seq: u64) -> bool {
        let (oldest, depth) = (self.oldest_seq[p], self.depth[p]);
        seq <= self.last_seq
            && match (oldest, depth) {
                (0, 0) => false,
                (0, _) => seq > self.last_seq.saturating_sub(depth),
                _ => seq >= oldest,
            }
    }
}

/// What the reports of one device's epoch say.
#[derive(Debug, Clone)]
pub struct Epoch {
    /// The newest report (highest `reportSeq`).
    pub newest: DeviceReport,
    /// (reportSeq, lastSeq) of the first report cut at or after the window's start.
    pub first_in_window: Option<(u64, u64)>,
    /// (reportSeq, lastSeq) of the last report cut before the window's start.
    pub last_before_window: Option<(u64, u64)>,
}

impl Epoch {
    /// The seqs of this epoch owed inside the window when none of its locations arrived
    /// (docs/VERIFY.md, "Runs end where the reports say").
    pub fn owed_without_arrivals(&self, window_from: i64) -> Owed {
        let n = &self.newest;
        let first = if n.epoch_start_ms >= window_from {
            1
        } else if let Some((_, last_seq)) = self.first_in_window.filter(|(rs, _)| *rs < n.report_seq) {
            last_seq + 1
        } else if n.cut_at_ms < window_from || self.last_before_window.is_some_and(|(_, l)| l == n.last_seq) {
            return Owed::Nothing; // no report in the window, or nothing accepted since the last one before it
        } else {
            return Owed::Unknown;
        };
        if first <= n.last_seq {
            Owed::Seqs(first, n.last_seq)
        } else {
            Owed::Nothing
        }
    }
}

/// What an epoch without arrivals owed inside the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owed {
    /// These seqs, first and last included.
    Seqs(u64, u64),
    /// Nothing was accepted in the window.
    Nothing,
    /// The reports cannot tell where the window's locations begin.
    Unknown,
}

/// The reports of every device, by epoch.
#[derive(Debug, Default)]
pub struct Reports {
    by_device: HashMap<String, Vec<Epoch>>,
    /// Reports that could not be read.
    pub unreadable: u64,
}

impl Reports {
    /// Adds a report document; `window_from` is the start of the window the locations were
    /// read in (reports are fed after it is known).
    pub fn add(&mut self, doc: &serde_json::Value, window_from: i64) {
        let Some((device, r)) = DeviceReport::from_json(doc) else {
            self.unreadable += 1;
            return;
        };
        let epochs = self.by_device.entry(device).or_default();
        let at = (r.report_seq, r.last_seq);
        let in_window = r.cut_at_ms >= window_from;
        match epochs.iter_mut().find(|e| e.newest.epoch == r.epoch) {
            Some(e) => {
                if in_window {
                    e.first_in_window = Some(e.first_in_window.map_or(at, |f| f.min(at)));
                } else {
                    e.last_before_window = Some(e.last_before_window.map_or(at, |l| l.max(at)));
                }
                if r.report_seq > e.newest.report_seq {
                    e.newest = r;
                }
            }
            None => {
                epochs.push(Epoch { first_in_window: in_window.then_some(at), last_before_window: (!in_window).then_some(at), newest: r });
                epochs.sort_by_key(|e| e.newest.epoch_start_ms);
            }
        }
    }

    /// A device's epochs, oldest first (by `epochStartMs`).
    pub fn epochs(&self, device: &str) -> &[Epoch] {
        self.by_device.get(device).map_or(&[], |v| v.as_slice())
    }

    /// Every device with a report.
    pub fn devices(&self) -> impl Iterator<Item = &str> {
        self.by_device.keys().map(String::as_str)
    }

    /// How many devices sent a readable report.
    pub fn len(&self) -> usize {
        self.by_device.len()
    }
}

/// The index in `epochs` (oldest first) of the epoch a run beginning at `accepted_ms` (its first
/// eventId's time; `None` when the eventId is no UUIDv7) belongs to: the latest that began at or
/// before it, or for an eventId without a time the newest.
pub fn epoch_of(epochs: &[Epoch], accepted_ms: Option<i64>) -> Option<usize> {
    match accepted_ms {
        Some(t) => epochs.iter().rposition(|e| e.newest.epoch_start_ms <= t),
        None => epochs.len().checked_sub(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(epoch: &str, start: i64, report_seq: u64, cut: i64, last_seq: u64) -> serde_json::Value {
        serde_json::json!({"deviceId": "d", "epoch": epoch, "epochStartMs": start, "reportSeq": report_seq, "cutAtMs": cut,
            "counters": {"lastSeq": last_seq}, "gauges": {"mqttDepth": 0, "pubsubDepth": 0}, "decision": {"cfg": 3, "route": "mqtt"}})
    }

    #[test]
    fn the_window_s_first_seq_comes_from_the_epoch_start_or_the_first_report_in_it() {
        let mut r = Reports::default();
        for (rs, cut, last) in [(1, 100, 10), (2, 1_100, 30), (3, 1_200, 40), (4, 1_300, 55)] {
            r.add(&doc("e1", 50, rs, cut, last), 1_000);
        }
        let e = &r.epochs("d")[0];
        assert_eq!((e.newest.report_seq, e.newest.cfg, e.newest.route), (4, 3, Route::Mqtt));
        assert_eq!((e.first_in_window, e.last_before_window), (Some((2, 30)), Some((1, 10))));
        assert_eq!(e.owed_without_arrivals(1_000), Owed::Seqs(31, 55), "after the first report cut in the window");
        assert_eq!(e.owed_without_arrivals(0), Owed::Seqs(1, 55), "the epoch began in the window");
        // One report in the window: nothing tells where the window's seqs begin …
        let mut one = Reports::default();
        one.add(&doc("e1", 50, 1, 100, 10), 1_000);
        one.add(&doc("e1", 50, 2, 1_100, 30), 1_000);
        assert_eq!(one.epochs("d")[0].owed_without_arrivals(1_000), Owed::Unknown);
        // … unless the last report before it says nothing was accepted since.
        let mut quiet = Reports::default();
        quiet.add(&doc("e1", 50, 1, 100, 30), 1_000);
        quiet.add(&doc("e1", 50, 2, 1_100, 30), 1_000);
        assert_eq!(quiet.epochs("d")[0].owed_without_arrivals(1_000), Owed::Nothing);
        // A report only before the window: nothing owed in it.
        let mut old = Reports::default();
        old.add(&doc("e1", 50, 1, 100, 30), 1_000);
        assert_eq!(old.epochs("d")[0].owed_without_arrivals(1_000), Owed::Nothing);
    }

    #[test]
    fn a_run_belongs_to_the_epoch_it_began_in() {
        let mut r = Reports::default();
        r.add(&doc("new", 500, 1, 600, 3), 0);
        r.add(&doc("old", 100, 9, 400, 90), 0);
        let e = r.epochs("d");
        assert_eq!((e[0].newest.epoch.as_str(), e[1].newest.epoch.as_str()), ("old", "new"));
        assert_eq!((epoch_of(e, Some(50)), epoch_of(e, Some(100)), epoch_of(e, Some(499)), epoch_of(e, Some(900))), (None, Some(0), Some(0), Some(1)));
        assert_eq!(epoch_of(e, None), Some(1));
    }

    #[test]
    fn oldest_owed_seqs_decide_what_is_held_and_depth_does_without_them() {
        let r = DeviceReport { last_seq: 100, depth: [1, 40], oldest_seq: [3, 61], ..Default::default() };
        assert!(r.holds(0, 3) && r.holds(0, 70) && !r.holds(0, 2), "MQTT holds 3 and everything after it");
        assert!(r.holds(1, 61) && !r.holds(1, 60) && !r.holds(1, 101));
        let legacy = DeviceReport { oldest_seq: [0, 0], ..r.clone() };
        assert!(!legacy.holds(0, 3) && legacy.holds(0, 100) && legacy.holds(1, 61) && !legacy.holds(1, 60), "not known: the newest depth");
        let none_owed = DeviceReport { oldest_seq: [0, 0], depth: [0, 0], ..r };
        assert!(!none_owed.holds(0, 100) && !none_owed.holds(1, 100));
    }
}
