//! Per-minute service level indicators of each pipeline (docs/VERIFY.md, "Watching the
//! migration"): for each minute of the locations' own `timestamp`, pipeline, config version and
//! route — how many locations it owed and received (completeness), how many were seen on no
//! pipeline, how many the verifier's own gaps explain, its copies (duplicates) and how fresh they
//! were. `tools/rollup/sql/sli.sql` computes the same rows in ClickHouse, from materialized views
//! over the landing tables and the reconciliation of verify.sql; the suite holds both equal.

use super::findings::{Pipeline, Route};
use super::histogram::Histogram;
use serde::Serialize;
use std::collections::HashMap;

/// One minute of one pipeline, config version and route.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SliMinute {
    /// The minute of the locations' `timestamp` (ms since the Unix epoch).
    pub minute_ms: i64,
    /// The pipeline.
    pub pipeline: Pipeline,
    /// The config version (`cfg`).
    pub cfg: u64,
    /// The route the locations carry.
    pub route: Route,
    /// Locations this pipeline owed: seen on some pipeline with a route that owes it, or seqs
    /// seen on none whose run's route owes it.
    pub owed: u64,
    /// Of those, received on this pipeline.
    pub received: u64,
    /// Of those, seen on no pipeline.
    pub unseen: u64,
    /// Of those not received, the verifier's own gap on this pipeline.
    pub verifier_gap: u64,
    /// Distinct locations received on this pipeline (whatever their route: on MQTT with route
    /// `pubsub`, the fallback copies).
    pub distinct: u64,
    /// Every copy received on this pipeline (copies − distinct: the duplicates).
    pub copies: u64,
    /// Arrival minus `timestamp` of every copy: median and 99th percentile, ms (log-linear
    /// buckets: within 1 %).
    pub freshness_p50_ms: Option<i64>,
    /// See `freshness_p50_ms`.
    pub freshness_p99_ms: Option<i64>,
}

/// Counts of one key while the verifier reads.
#[derive(Debug, Default)]
struct Counts {
    owed: u64,
    received: u64,
    unseen: u64,
    verifier_gap: u64,
    distinct: u64,
    copies: u64,
    freshness: Histogram,
}

/// The minute, pipeline, config version and route of a count.
type Key = (i64, Pipeline, u64, Route);

/// The minute a location's `timestamp` falls in (saturating: timestamps come from files).
pub fn minute_of(timestamp_ms: i64) -> i64 {
    timestamp_ms.div_euclid(60_000).saturating_mul(60_000)
}

/// Per-minute counts as the verifier reads and folds.
#[derive(Debug, Default)]
pub struct Slis {
    counts: HashMap<Key, Counts>,
}

impl Slis {
    fn at(&mut self, timestamp_ms: i64, p: Pipeline, cfg: u64, route: Route) -> &mut Counts {
        self.counts.entry((minute_of(timestamp_ms), p, cfg, route)).or_default()
    }

    /// A copy arrived on `p` at `at` (every copy, duplicates and settled ones included).
    pub fn copy(&mut self, p: Pipeline, cfg: u64, route: Route, timestamp_ms: i64, at: i64) {
        let c = self.at(timestamp_ms, p, cfg, route);
        c.copies += 1;
        c.freshness.add(at.saturating_sub(timestamp_ms));
    }

    /// A location was folded: `got` per pipeline.
    pub fn location(&mut self, cfg: u64, route: Route, timestamp_ms: i64, got: [bool; 2]) {
        for p in Pipeline::ALL {
            let received = got[p.index()];
            if !route.owes(p) && !received {
                continue;
            }
            let c = self.at(timestamp_ms, p, cfg, route);
            if received {
                c.distinct += 1;
            }
            if route.owes(p) {
                c.owed += 1;
                c.received += u64::from(received);
            }
        }
    }

    /// A seq seen on no pipeline, owed to every pipeline its route owes.
    pub fn unseen(&mut self, cfg: u64, route: Route, timestamp_ms: i64) {
        for p in route.pipelines() {
            let c = self.at(timestamp_ms, p, cfg, route);
            c.owed += 1;
            c.unseen += 1;
        }
    }

    /// A location owed to `p` and not received there is the verifier's own gap on `p`.
    pub fn verifier_gap(&mut self, p: Pipeline, cfg: u64, route: Route, timestamp_ms: i64) {
        self.at(timestamp_ms, p, cfg, route).verifier_gap += 1;
    }

    /// The rows, by minute, pipeline, cfg and route.
    pub fn rows(self) -> Vec<SliMinute> {
        let mut rows: Vec<SliMinute> = self
            .counts
            .into_iter()
            .map(|((minute_ms, p, cfg, route), c)| SliMinute {
                minute_ms,
                pipeline: p,
                cfg,
                route,
                owed: c.owed,
                received: c.received,
                unseen: c.unseen,
                verifier_gap: c.verifier_gap,
                distinct: c.distinct,
                copies: c.copies,
                freshness_p50_ms: c.freshness.quantile(0.50),
                freshness_p99_ms: c.freshness.quantile(0.99),
            })
            .collect();
        rows.sort_by_key(|r| (r.minute_ms, r.pipeline, r.cfg, r.route));
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minute_counts_owed_received_copies_and_freshness_per_pipeline() {
        let mut s = Slis::default();
        let t = 120_500; // minute 120,000
        s.copy(Pipeline::Mqtt, 1, Route::Both, t, t + 1_000);
        s.copy(Pipeline::Mqtt, 1, Route::Both, t, t + 3_000);
        s.location(1, Route::Both, t, [true, false]);
        s.unseen(1, Route::Both, t + 10);
        s.verifier_gap(Pipeline::Pubsub, 1, Route::Both, t);
        s.copy(Pipeline::Mqtt, 1, Route::Pubsub, t, t + 500);
        s.location(1, Route::Pubsub, t, [true, false]);
        let rows = s.rows();
        let find = |p, r| rows.iter().find(|x| x.pipeline == p && x.route == r).cloned().unwrap();
        let m = find(Pipeline::Mqtt, Route::Both);
        assert_eq!((m.minute_ms, m.owed, m.received, m.unseen, m.distinct, m.copies), (120_000, 2, 1, 1, 1, 2));
        assert_eq!((m.freshness_p50_ms, m.freshness_p99_ms), (Some(1_000), Some(2_992)), "3,000 in its log-linear bucket");
        let p = find(Pipeline::Pubsub, Route::Both);
        assert_eq!((p.owed, p.received, p.unseen, p.verifier_gap, p.copies), (2, 0, 1, 1, 0));
        let fallback = find(Pipeline::Mqtt, Route::Pubsub);
        assert_eq!((fallback.owed, fallback.distinct, fallback.copies), (0, 1, 1), "a fallback copy: received, not owed");
        assert_eq!(rows.len(), 4, "and Pub/Sub's row of the route-pubsub location: {rows:?}");
    }
}
