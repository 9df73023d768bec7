//! A device's locations as runs of `seq`s (docs/CONTRACT.md#version-2), and the seqs it owed
//! that neither pipeline received: gaps inside a run, the end of a run up to the `lastSeq` of its
//! epoch's newest report, and the seqs of an epoch none of whose locations arrived
//! (docs/VERIFY.md, "Runs end where the reports say").
//!
//! Settled locations are kept only as segments: consecutive eventIds of one device with
//! consecutive `seq`s, one config version and one route — one segment per run for a device that
//! behaves, however many locations it sends.

use super::findings::{Route, Unbound};
use super::reports::{epoch_of, Epoch, Owed};
use std::collections::BTreeMap;

/// The most unseen `seq`s listed one by one per device run (the rest are counted).
pub const MAX_LISTED_GAP: u64 = 100_000;

/// Consecutive settled locations of one device: eventIds `first_key..=last_key` (keyed by the
/// first; in a device's eventId order, none of its other locations between them), `seq`s
/// `first_seq..=last_seq`, one config version, one route.
#[derive(Debug, Clone, Copy)]
pub struct Segment {
    pub last_key: u128,
    pub first_seq: u64,
    pub last_seq: u64,
    pub cfg: u64,
    pub route: Route,
    /// The `timestamp` of its first and its last location.
    pub first_ts: i64,
    pub last_ts: i64,
}

/// Every device's segments, by device then first eventId (one map: a map per device would cost
/// a node each).
pub type Segments = BTreeMap<(u32, u128), Segment>;

/// Adds a settled location (its `timestamp` `ts`) to its device's segments, joining the segment
/// before or after it when both key and seq follow on (with the same cfg and route).
pub fn add(segs: &mut Segments, device: u32, key: u128, seq: u64, cfg: u64, route: Route, ts: i64) {
    if segs.contains_key(&(device, key)) {
        return; // the same eventId settled twice (a copy with other bytes): its seq is known
    }
    let same = |s: &Segment| s.cfg == cfg && s.route == route;
    let before = segs
        .range((device, 0)..(device, key))
        .next_back()
        .map(|(f, s)| (*f, *s))
        .filter(|(_, s)| s.last_key < key && same(s) && s.last_seq.checked_add(1) == Some(seq));
    let after =
        segs.range((device, key)..=(device, u128::MAX)).next().map(|(f, s)| (*f, *s)).filter(|(_, s)| same(s) && seq.checked_add(1) == Some(s.first_seq));
    match (before, after) {
        (Some((bf, b)), Some((af, a))) => {
            segs.remove(&af);
            segs.insert(bf, Segment { last_key: a.last_key, last_seq: a.last_seq, last_ts: a.last_ts, ..b });
        }
        (Some((bf, b)), None) => {
            segs.insert(bf, Segment { last_key: key, last_seq: seq, last_ts: ts, ..b });
        }
        (None, Some((af, a))) => {
            segs.remove(&af);
            segs.insert((device, key), Segment { first_seq: seq, first_ts: ts, ..a });
        }
        (None, None) => {
            segs.insert((device, key), Segment { last_key: key, first_seq: seq, last_seq: seq, cfg, route, first_ts: ts, last_ts: ts });
        }
    }
}

/// Whether `key` with `seq` is a location already settled into `segs`.
pub fn contains(segs: &Segments, device: u32, key: u128, seq: u64) -> bool {
    segs.range((device, 0)..=(device, key)).next_back().is_some_and(|(_, s)| key <= s.last_key && (s.first_seq..=s.last_seq).contains(&seq))
}

/// When a location with this eventId was accepted (the UUIDv7's milliseconds), if it is one.
pub fn accepted_ms(key: u128) -> Option<i64> {
    (key >> 127 == 0 && (key >> 76) & 0xf == 7).then_some((key >> 80) as i64)
}

/// One run of a device in the window: a new run starts where the `seq` goes down in eventId
/// order (a new data directory).
#[derive(Debug, Clone)]
pub struct Run {
    /// Its first eventId.
    pub first_key: u128,
    /// Its epoch (an index into the device's epochs), if a report of it was read.
    pub epoch: Option<usize>,
}

/// A `seq` the device owed that no pipeline received.
#[derive(Debug, Clone, PartialEq)]
pub struct Unseen {
    pub seq: u64,
    /// The config version and route of the nearest location received after it in its run (of
    /// the last one received, after the last; of the report, in an epoch none of whose
    /// locations arrived).
    pub cfg: u64,
    pub route: Route,
    /// The `timestamp` of that location (of the report's cut, in an epoch without locations):
    /// the minute its per-minute indicators count it in.
    pub timestamp_ms: i64,
    /// The epoch its run belongs to.
    pub epoch: Option<usize>,
}

/// What a device's runs owe beyond what arrived.
#[derive(Debug, Default)]
pub struct Owing {
    /// The device's runs, in eventId order.
    pub runs: Vec<Run>,
    /// Seqs owed and never received, listed.
    pub unseen: Vec<Unseen>,
    /// Seqs owed and never received beyond the listing cap, per cfg.
    pub unlisted: BTreeMap<u64, u64>,
    /// Runs no report bounds: (epoch index, reason).
    pub unbounded: Vec<(Option<usize>, Unbound)>,
}

/// The run (of one device's, in eventId order) a location with this eventId belongs to.
pub fn run_of(runs: &[Run], key: u128) -> Option<&Run> {
    runs.partition_point(|r| r.first_key <= key).checked_sub(1).map(|i| &runs[i])
}

impl Owing {
    /// Lists the seqs `from..=to`, each like `like` (up to the run's cap; `listed` counts what the
    /// run listed).
    fn owe(&mut self, from: u64, to: u64, like: Unseen, listed: &mut u64) {
        let gap = to.saturating_sub(from).saturating_add(1);
        let list = gap.min(MAX_LISTED_GAP.saturating_sub(*listed));
        let cfg = like.cfg;
        self.unseen.extend((from..from + list).map(|seq| Unseen { seq, ..like.clone() }));
        *listed += list;
        if gap > list {
            *self.unlisted.entry(cfg).or_default() += gap - list;
        }
    }
}

/// Finds a device's runs in `segs` (eventId order), gives each its epoch from `epochs` (oldest
/// first), and lists the seqs owed that no pipeline received: inside each run from its lowest
/// seq (from 1 after a restart, or when its epoch began inside the window, which starts at
/// `window_from`) to its highest, then on to the `lastSeq` of its epoch's newest report for the
/// epoch's last run; and the seqs of epochs with no run (`Epoch::owed_without_arrivals`).
pub fn owing(device: u32, segs: &Segments, epochs: &[Epoch], window_from: i64) -> Owing {
    // Split into runs: a seq lower than the one before starts a new run.
    let mut runs: Vec<(u128, Vec<Segment>)> = Vec::new();
    let mut previous: Option<u64> = None;
    for ((_, first_key), s) in segs.range((device, 0)..=(device, u128::MAX)) {
        if previous.is_none_or(|p| s.first_seq < p) {
            runs.push((*first_key, Vec::new()));
        }
        if let Some((_, run)) = runs.last_mut() {
            run.push(*s);
        }
        previous = Some(s.last_seq);
    }
    let mut out = Owing::default();
    let run_epochs: Vec<Option<usize>> = runs.iter().map(|(k, _)| epoch_of(epochs, accepted_ms(*k))).collect();
    for (i, (first_key, mut run)) in runs.into_iter().enumerate() {
        let epoch = run_epochs[i];
        let last_of_epoch = epoch.is_some() && !run_epochs[i + 1..].contains(&epoch);
        let report = epoch.map(|e| &epochs[e].newest);
        run.sort_unstable_by_key(|s| (s.first_seq, s.cfg, s.last_seq));
        let from_one = i > 0 || report.is_some_and(|r| r.epoch_start_ms >= window_from);
        let mut expect = if from_one { 1 } else { run.first().map_or(1, |s| s.first_seq) };
        let mut listed = 0u64;
        for s in &run {
            if s.first_seq > expect {
                out.owe(expect, s.first_seq - 1, Unseen { seq: 0, cfg: s.cfg, route: s.route, timestamp_ms: s.first_ts, epoch }, &mut listed);
            }
            expect = expect.max(s.last_seq.saturating_add(1));
        }
        if let (true, Some(r), Some(last)) = (last_of_epoch, report, run.iter().max_by_key(|s| s.last_seq)) {
            if r.last_seq >= expect {
                out.owe(expect, r.last_seq, Unseen { seq: 0, cfg: last.cfg, route: last.route, timestamp_ms: last.last_ts, epoch }, &mut listed);
            }
        }
        if epoch.is_none() {
            out.unbounded.push((None, if epochs.is_empty() { Unbound::NoReport } else { Unbound::OtherEpoch }));
        }
        out.runs.push(Run { first_key, epoch });
    }
    for (e, ep) in epochs.iter().enumerate() {
        if run_epochs.contains(&Some(e)) {
            continue;
        }
        let mut listed = 0u64;
        match ep.owed_without_arrivals(window_from) {
            Owed::Seqs(first, last) => {
                let n = &ep.newest;
                out.owe(first, last, Unseen { seq: 0, cfg: n.cfg, route: n.route, timestamp_ms: n.cut_at_ms, epoch: Some(e) }, &mut listed)
            }
            Owed::Unknown => out.unbounded.push((Some(e), Unbound::StartUnknown)),
            Owed::Nothing => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::reports::Reports;

    /// A UUIDv7 key accepted at `ms`, the `n`th of that millisecond.
    fn key(ms: i64, n: u128) -> u128 {
        ((ms as u128) << 80) | (7 << 76) | n
    }

    fn settled(seqs: &[(u64, i64)]) -> Segments {
        let mut segs = Segments::new();
        for (i, (seq, ms)) in seqs.iter().enumerate() {
            add(&mut segs, 0, key(*ms, i as u128), *seq, 1, Route::Both, *ms);
        }
        segs
    }

    fn reports(list: &[(&str, i64, u64, i64, u64)], window_from: i64) -> Reports {
        let mut r = Reports::default();
        for (epoch, start, rs, cut, last) in list {
            r.add(
                &serde_json::json!({"deviceId": "d", "epoch": epoch, "epochStartMs": start, "reportSeq": rs, "cutAtMs": cut,
                "counters": {"lastSeq": last}, "gauges": {"mqttDepth": 0, "pubsubDepth": 0}, "decision": {"cfg": 9, "route": "mqtt"}}),
                window_from,
            );
        }
        r
    }

    fn seqs(o: &Owing) -> Vec<u64> {
        o.unseen.iter().map(|u| u.seq).collect()
    }

    #[test]
    fn a_run_ends_where_its_epochs_newest_report_says() {
        let segs = settled(&[(1, 1_000), (2, 1_001), (4, 1_003), (5, 1_004)]);
        let r = reports(&[("e1", 900, 3, 2_000, 8)], 0);
        let o = owing(0, &segs, r.epochs("d"), 500);
        assert_eq!(seqs(&o), [3, 6, 7, 8], "3 inside, 6..8 after the last location received");
        assert!(o.unbounded.is_empty());
        // Without a report the end cannot be told, and the device says so.
        let o = owing(0, &segs, &[], 500);
        assert_eq!((seqs(&o), o.unbounded.clone()), (vec![3], vec![(None, Unbound::NoReport)]));
    }

    #[test]
    fn an_epoch_begun_in_the_window_owes_from_1_and_one_without_arrivals_owes_what_its_reports_bound() {
        let segs = settled(&[(3, 1_000), (4, 1_001)]);
        let r = reports(&[("e1", 900, 1, 2_000, 4)], 0);
        assert_eq!(seqs(&owing(0, &segs, r.epochs("d"), 500)), [1, 2], "the epoch began at 900, inside the window");
        assert_eq!(seqs(&owing(0, &segs, r.epochs("d"), 950)), Vec::<u64>::new(), "before the window: from the first received");
        // A device none of whose locations arrived: its epoch began in the window.
        let o = owing(0, &Segments::new(), r.epochs("d"), 500);
        assert_eq!(seqs(&o), [1, 2, 3, 4]);
        assert_eq!((o.unseen[0].cfg, o.unseen[0].route), (9, Route::Mqtt), "the report's decision");
    }

    #[test]
    fn runs_belong_to_their_epochs_and_a_run_of_an_unknown_epoch_is_unbounded() {
        // A run in an old epoch (no report of it), then a wipe and a run of the reported epoch.
        let segs = settled(&[(7, 1_000), (8, 1_001), (1, 5_000), (2, 5_001)]);
        let r = reports(&[("new", 4_000, 1, 6_000, 4)], 0);
        let o = owing(0, &segs, r.epochs("d"), 0);
        assert_eq!(o.runs.iter().map(|r| r.epoch).collect::<Vec<_>>(), [None, Some(0)]);
        assert_eq!(seqs(&o), [3, 4]);
        assert_eq!(o.unbounded, [(None, Unbound::OtherEpoch)]);
        assert_eq!(run_of(&o.runs, key(1_001, 1)).unwrap().epoch, None);
        assert_eq!(run_of(&o.runs, key(5_001, 3)).unwrap().epoch, Some(0));
    }

    #[test]
    fn a_hostile_report_is_counted_not_listed() {
        let segs = settled(&[(1, 1_000)]);
        let r = reports(&[("e1", 900, 1, 2_000, u64::MAX)], 0);
        let o = owing(0, &segs, r.epochs("d"), 0);
        assert_eq!(o.unseen.len() as u64, MAX_LISTED_GAP);
        assert_eq!(o.unlisted[&1], u64::MAX - 1 - MAX_LISTED_GAP);
    }
}
