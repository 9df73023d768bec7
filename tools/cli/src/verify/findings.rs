//! What `dualpub verify` finds (docs/VERIFY.md lists every field of the JSON): the records
//! the engine fills and the table, the JSON and the HTML page show.

use serde::Serialize;
use std::collections::BTreeMap;

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

    /// 0 for MQTT, 1 for Pub/Sub.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The other pipeline.
    pub fn other(self) -> Pipeline {
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
    /// Locations whose copies differ, named (at most [`MAX_LISTED_MISMATCHES`], in eventId
    /// order; each step's `mismatches` counts them all).
    pub mismatched: Vec<Mismatch>,
    /// Device runs whose end (or start) no report of theirs bounds, so that locations lost at
    /// their end cannot be told (at most [`MAX_LISTED_UNBOUNDED`], by device).
    pub unbounded: Vec<Unbounded>,
    /// How many runs `unbounded` would list without its cap.
    pub unbounded_count: u64,
    /// The window the locations were read in: when the subscribers started and stopped reading
    /// (from the capture's `window` line or the live reading), else the first and last arrival.
    pub window: Option<(i64, i64)>,
    /// Per minute of the locations' `timestamp`, pipeline, config version and route: the service
    /// level indicators (completeness, freshness, duplicates, fallbacks).
    pub sli: Vec<super::sli::SliMinute>,
}

/// The most mismatches listed (the counts per step are exact).
pub const MAX_LISTED_MISMATCHES: usize = 1_000;

/// The most unbounded runs listed (`unbounded_count` is exact).
pub const MAX_LISTED_UNBOUNDED: usize = 1_000;

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

/// One location whose copies do not all carry the same bytes.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Mismatch {
    /// Its eventId.
    pub event_id: String,
    /// Its device, seq and config version (of the first copy read).
    pub device_id: String,
    /// See `device_id`.
    pub seq: u64,
    /// See `device_id`.
    pub cfg: u64,
    /// Each distinct message seen, per pipeline: its digest (xxHash64 of the bytes, 16 hex
    /// digits) and how many copies of it; by digest, then pipeline.
    pub copies: Vec<MismatchCopy>,
    /// The fields whose values differ between the copies (compared as JSON values), in the
    /// contract's order (`(other)` for fields outside it); empty when only the bytes around the
    /// values differ (spaces, field order, another spelling of the same number); `None` when
    /// the copies could not be read again (a live run).
    pub fields: Option<Vec<&'static str>>,
}

/// One variant of a mismatched location on one pipeline.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MismatchCopy {
    /// Its digest (16 hex digits).
    pub digest: String,
    /// Where it arrived.
    pub pipeline: Pipeline,
    /// How many copies of it arrived there.
    pub copies: u64,
}

/// Why a device run is not bounded by a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Unbound {
    /// The device sent no readable report: its last locations cannot be checked.
    NoReport,
    /// Its reports are of other data-directory epochs than this run's.
    OtherEpoch,
    /// A report in the window shows locations accepted, none arrived, and no earlier report
    /// says where the window's locations begin.
    StartUnknown,
}

/// A device run no report bounds.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Unbounded {
    /// The device.
    pub device_id: String,
    /// The run's epoch, when known.
    pub epoch: Option<String>,
    /// Why.
    pub reason: Unbound,
}

/// The routing decision a location carries (`route`): which pipelines owe it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Route {
    /// `both`.
    #[default]
    Both,
    /// `mqtt`.
    Mqtt,
    /// `pubsub`.
    Pubsub,
}

impl Route {
    /// Reads `both`, `mqtt` or `pubsub`.
    pub fn parse(s: &str) -> Option<Route> {
        match s {
            "both" => Some(Route::Both),
            "mqtt" => Some(Route::Mqtt),
            "pubsub" => Some(Route::Pubsub),
            _ => None,
        }
    }

    /// Whether a location of this route is owed to `p`.
    pub fn owes(self, p: Pipeline) -> bool {
        matches!((self, p), (Route::Both, _) | (Route::Mqtt, Pipeline::Mqtt) | (Route::Pubsub, Pipeline::Pubsub))
    }

    /// The pipelines that owe it.
    pub fn pipelines(self) -> impl Iterator<Item = Pipeline> {
        Pipeline::ALL.into_iter().filter(move |p| self.owes(*p))
    }
}
