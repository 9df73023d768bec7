//! The verifier's own disconnections (a subscriber that was down) and which missing locations
//! they explain. One rule for every route (docs/VERIFY.md, "Reconciliation"): a location missing
//! on a pipeline is a `verifier_gap` there if and only if it would have arrived on that pipeline
//! while the subscriber was disconnected, i.e. its device's messages on that pipeline put it
//! between the last one received before the gap and the first one received after it.
//!
//! Gaps must be known before the arrivals that follow them (a capture's gap lines are read
//! first; live, gaps are fed as they happen): an arrival fed before its gap is known does not
//! count for it, which can only turn a gap into a loss, never hide one.

use super::findings::Pipeline;
use std::collections::HashMap;

/// A gap is widened by this much on each side (the subscriber's clock and the moment a
/// message is stamped differ by a little).
pub const MARGIN_MS: i64 = 2_000;

/// For one gap and one device on one pipeline: the highest seq received before the (widened)
/// gap and the lowest received after it (0 and `u64::MAX`: none).
#[derive(Debug, Clone, Copy)]
struct Around {
    before: u64,
    after: u64,
}

const NOTHING_AROUND: Around = Around { before: 0, after: u64::MAX };

/// The verifier's own gaps and, per device, what it received around them.
#[derive(Debug, Default)]
pub struct OwnGaps {
    /// Per pipeline: (from, to) ms, as given.
    listed: [Vec<(i64, i64)>; 2],
    /// Per (device, pipeline): what arrived around each of that pipeline's gaps (by index).
    around: HashMap<(u32, Pipeline), Vec<Around>>,
    /// Per device: its first and last arrival on either pipeline.
    active: HashMap<u32, (i64, i64)>,
}

impl OwnGaps {
    /// The subscriber on `p` was disconnected from `from_ms` to `to_ms`.
    pub fn add(&mut self, p: Pipeline, from_ms: i64, to_ms: i64) {
        self.listed[p.index()].push((from_ms, to_ms));
    }

    /// A message of `device` with `seq` arrived on `p` at `at` (every copy counts).
    pub fn arrival(&mut self, device: u32, p: Pipeline, seq: u64, at: i64) {
        if self.listed.iter().all(Vec::is_empty) {
            return;
        }
        let a = self.active.entry(device).or_insert((at, at));
        *a = (a.0.min(at), a.1.max(at));
        let gaps = &self.listed[p.index()];
        if gaps.is_empty() {
            return;
        }
        let around = self.around.entry((device, p)).or_default();
        around.resize(gaps.len(), NOTHING_AROUND);
        for (g, (from, to)) in around.iter_mut().zip(gaps) {
            if at < from.saturating_sub(MARGIN_MS) {
                g.before = g.before.max(seq);
            } else if at > to.saturating_add(MARGIN_MS) {
                g.after = g.after.min(seq);
            }
        }
    }

    /// Whether `seq` of `device`, missing on `p`, would have arrived there during one of the
    /// subscriber's gaps: received before the gap are only lower seqs and after it only higher
    /// ones, with at least one of them there. At the ends of the device's run on `p` the device
    /// must have been seen (on either pipeline) on the far side of the gap: before its end for
    /// its first seqs, after its start for its last ones.
    pub fn shadowed(&self, device: u32, p: Pipeline, seq: u64) -> bool {
        let Some(around) = self.around.get(&(device, p)) else { return false };
        let Some(&(first_at, last_at)) = self.active.get(&device) else { return false };
        around.iter().zip(&self.listed[p.index()]).any(|(g, (from, to))| {
            let (head, tail) = (g.before == 0, g.after == u64::MAX);
            !(head && tail)
                && g.before < seq
                && seq < g.after
                && (!tail || last_at >= from.saturating_sub(MARGIN_MS))
                && (!head || first_at <= to.saturating_add(MARGIN_MS))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seq_between_the_arrivals_around_a_gap_is_in_its_shadow() {
        let mut g = OwnGaps::default();
        g.add(Pipeline::Mqtt, 10_000, 12_000);
        for (seq, at) in [(1, 5_000), (2, 7_000), (6, 15_000), (7, 16_000)] {
            g.arrival(0, Pipeline::Mqtt, seq, at);
        }
        assert_eq!((3..=5).filter(|s| g.shadowed(0, Pipeline::Mqtt, *s)).count(), 3);
        assert!(!g.shadowed(0, Pipeline::Mqtt, 2) && !g.shadowed(0, Pipeline::Mqtt, 8), "received, or after the first arrival past the gap");
        assert!(!g.shadowed(0, Pipeline::Pubsub, 4), "Pub/Sub's subscriber had no gap");
        assert!(!g.shadowed(1, Pipeline::Mqtt, 4), "another device received nothing around it");
    }

    #[test]
    fn the_ends_of_a_run_need_the_device_seen_across_the_gap() {
        let mut g = OwnGaps::default();
        g.add(Pipeline::Mqtt, 10_000, 12_000);
        // Device 0 stops on MQTT before the gap but goes on on Pub/Sub: its last MQTT seqs may
        // have been sent into the gap.
        g.arrival(0, Pipeline::Mqtt, 4, 6_000);
        g.arrival(0, Pipeline::Pubsub, 9, 20_000);
        assert!(g.shadowed(0, Pipeline::Mqtt, 5) && g.shadowed(0, Pipeline::Mqtt, 9));
        // Device 1 was last seen anywhere long before the gap: its lost last location is a loss.
        g.arrival(1, Pipeline::Mqtt, 30, 1_000);
        assert!(!g.shadowed(1, Pipeline::Mqtt, 31));
        // Device 2 appears only after the gap: its first seqs were not sent into it.
        g.arrival(2, Pipeline::Mqtt, 5, 60_000);
        assert!(!g.shadowed(2, Pipeline::Mqtt, 1));
        // Device 3 was seen before the gap on Pub/Sub and on MQTT only after it.
        g.arrival(3, Pipeline::Pubsub, 1, 9_000);
        g.arrival(3, Pipeline::Mqtt, 3, 15_000);
        assert!(g.shadowed(3, Pipeline::Mqtt, 2) && g.shadowed(3, Pipeline::Mqtt, 1));
    }
}
