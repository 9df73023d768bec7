//! Which wire `seq` (docs/CONTRACT.md#version-2) each outbox row carries, without a field per
//! row: the outbox numbers its rows by its own `seq` (acceptance order in this outbox), and the
//! two numbers advance together, one per accepted location, so within a run of rows their
//! difference is constant. It changes only where a re-queued dead letter (a new row carrying
//! its old bytes, and so its old wire `seq`) or a restart (outbox numbers continue after the
//! highest stored row, wire numbers after the last one given out) starts a new run. So the map
//! is a list of runs — first outbox `seq`, its wire `seq` — extended in O(1) by a row that
//! continues the last run, and costs 32 bytes per run, not per row.
//!
//! What it answers is the migration report's `mqttOldestSeq` / `pubsubOldestSeq`: the lowest
//! wire `seq` among the rows a transport still owes. Within a run wire numbers rise with outbox
//! numbers, so that is, over the runs, the wire `seq` of each run's first owed row. Each run
//! keeps per transport a watermark below which none of its rows is owed to that transport; a
//! look starts there and moves it to what it finds, so every row is stepped over about once,
//! however often reports are cut. A row that becomes owed again below a watermark (a fallback
//! makes MQTT owe old rows) moves the watermark back ([`WireSeqs::owed_again`]).

use std::cell::Cell;
use std::collections::VecDeque;

/// Rows from outbox `seq` `first` on (up to the next run's) carry wire `seq`s `wire`, `wire + 1`, …
/// at the same distance.
#[derive(Debug)]
struct Run {
    /// Outbox `seq` of the run's first row.
    first: u64,
    /// The wire `seq` of that row; 0 for a run of rows whose payload has none (written before
    /// wire format version 2).
    wire: u64,
    /// Per transport (indexed like `Transport::index`): no row of the run before this outbox
    /// `seq` is owed to it. Moved forward by looks ([`WireSeqs::lowest_owed`]), which only read.
    low: [Cell<u64>; 2],
}

/// The outbox's rows mapped to wire `seq`s as runs of constant distance (see the module
/// documentation). Rows are added in increasing outbox `seq`.
#[derive(Debug, Default)]
pub(crate) struct WireSeqs {
    runs: VecDeque<Run>,
}

impl WireSeqs {
    /// Row `seq` (past every row added so far) carries wire `seq` `wire` (`None`: its payload
    /// has none). O(1): it continues the last run, or starts one.
    pub fn push(&mut self, seq: u64, wire: Option<u64>) {
        let wire = wire.unwrap_or(0);
        if let Some(last) = self.runs.back() {
            debug_assert!(seq > last.first, "rows come in increasing order");
            let continues = if last.wire == 0 { wire == 0 } else { wire != 0 && wire.checked_sub(last.wire) == seq.checked_sub(last.first) };
            if continues {
                return;
            }
        }
        self.runs.push_back(Run { first: seq, wire, low: [Cell::new(seq), Cell::new(seq)] });
    }

    /// Drops the runs whose rows have all left: those before the run holding `oldest`, the
    /// outbox's oldest row (every run when the outbox is empty).
    pub fn prune(&mut self, oldest: Option<u64>) {
        let Some(oldest) = oldest else {
            self.runs.clear();
            return;
        };
        while self.runs.get(1).is_some_and(|next| next.first <= oldest) {
            self.runs.pop_front();
        }
    }

    /// Row `seq` became owed to transport `t` (an index) after it was added: the next look for
    /// `t` must not start past it.
    pub fn owed_again(&self, t: usize, seq: u64) {
        let i = self.runs.partition_point(|r| r.first <= seq);
        if let Some(run) = i.checked_sub(1).and_then(|i| self.runs.get(i)) {
            run.low[t].set(run.low[t].get().min(seq));
        }
    }

    /// The wire `seq` of row `seq`, if it carries one (`None` too for a row before every run).
    #[cfg(test)]
    pub fn wire_of(&self, seq: u64) -> Option<u64> {
        let i = self.runs.partition_point(|r| r.first <= seq).checked_sub(1)?;
        let run = &self.runs[i];
        (run.wire != 0).then(|| run.wire + (seq - run.first))
    }

    /// The lowest wire `seq` among the rows owed to transport `t` (an index); `None` when no
    /// owed row carries one. `end` is one past the newest row; `first_owed(from, to)` gives the
    /// first row owed to `t` among outbox `seq`s `from..to`. Moves each run's watermark to what
    /// it found (or to the run's end), so the rows a look steps over are not looked at again.
    pub fn lowest_owed(&self, t: usize, end: u64, first_owed: impl Fn(u64, u64) -> Option<u64>) -> Option<u64> {
        let mut lowest: Option<u64> = None;
        for (i, run) in self.runs.iter().enumerate() {
            let to = self.runs.get(i + 1).map_or(end, |next| next.first);
            let from = run.low[t].get().max(run.first);
            let found = if from < to { first_owed(from, to) } else { None };
            run.low[t].set(found.unwrap_or(from.max(to)));
            if let (Some(seq), true) = (found, run.wire != 0) {
                let wire = run.wire + (seq - run.first);
                lowest = Some(lowest.map_or(wire, |l| l.min(wire)));
            }
        }
        lowest
    }

    /// Runs kept.
    #[cfg(test)]
    pub fn runs(&self) -> usize {
        self.runs.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// The lowest wire seq among `owed` (outbox seqs), by [`WireSeqs::lowest_owed`], counting
    /// the rows it steps over.
    fn lowest(w: &WireSeqs, owed: &BTreeSet<u64>, end: u64, steps: &Cell<u64>) -> Option<u64> {
        w.lowest_owed(0, end, |from, to| {
            steps.set(steps.get() + 1);
            let found = owed.range(from..to).next().copied();
            steps.set(steps.get() + found.unwrap_or(to) - from);
            found
        })
    }

    #[test]
    fn runs_follow_a_dead_letter_requeue_and_a_restart() {
        let mut w = WireSeqs::default();
        // Rows 1-5 carry 101-105 (restored: the outbox numbers started over at 1).
        for s in 1..=5 {
            w.push(s, Some(100 + s));
        }
        // Row 6 is a re-queued dead letter with its old seq 3; rows 7-8 are new (106, 107).
        w.push(6, Some(3));
        w.push(7, Some(106));
        w.push(8, Some(107));
        // A payload without a seq (version 1), then new ones again.
        w.push(9, None);
        w.push(10, None);
        w.push(11, Some(108));
        assert_eq!(w.runs(), 5);
        let got: Vec<Option<u64>> = (0..=11).map(|s| w.wire_of(s)).collect();
        let want = [None, Some(101), Some(102), Some(103), Some(104), Some(105), Some(3), Some(106), Some(107), None, None, Some(108)];
        assert_eq!(got, want);
        // Rows 1-6 leave: their runs go; the run of 7-8 stays while row 7 or 8 does.
        w.prune(Some(7));
        assert_eq!((w.runs(), w.wire_of(8)), (3, Some(107)));
        w.prune(Some(8));
        assert_eq!(w.runs(), 3, "row 8 is still in the run of 7-8");
        w.prune(None);
        assert_eq!(w.runs(), 0, "an empty outbox keeps no run");
    }

    #[test]
    fn the_lowest_owed_wire_seq_is_found_across_runs_and_steps_over_each_row_about_once() {
        let mut w = WireSeqs::default();
        let n = 10_000;
        for s in 1..=n {
            w.push(s, Some(s + 50));
        }
        w.push(n + 1, Some(7)); // a re-queued dead letter
        let steps = Cell::new(0);
        let mut owed: BTreeSet<u64> = (1..=n + 1).collect();
        assert_eq!(lowest(&w, &owed, n + 2, &steps), Some(7), "the re-queued letter is the oldest location");
        owed.remove(&(n + 1));
        assert_eq!(lowest(&w, &owed, n + 2, &steps), Some(51));
        // The transport delivers the rows one by one, with a look after each.
        steps.set(0);
        for s in 1..n {
            owed.remove(&s);
            assert_eq!(lowest(&w, &owed, n + 2, &steps), Some(s + 51));
        }
        assert!(steps.get() < 6 * n, "{} steps for {n} rows", steps.get());
        owed.clear();
        assert_eq!(lowest(&w, &owed, n + 2, &steps), None);
        // A fallback makes it owe row 10 again: found, though every watermark was past it.
        w.owed_again(0, 10);
        owed.insert(10);
        assert_eq!(lowest(&w, &owed, n + 2, &steps), Some(60));
    }

    #[test]
    fn rows_without_a_wire_seq_are_skipped() {
        let mut w = WireSeqs::default();
        w.push(1, None);
        w.push(2, Some(40));
        let steps = Cell::new(0);
        assert_eq!(lowest(&w, &BTreeSet::from([1, 2]), 3, &steps), Some(40));
        assert_eq!(lowest(&w, &BTreeSet::from([1]), 3, &steps), None, "owed, but it has no seq to name");
    }
}
