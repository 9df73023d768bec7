//! `dualpub demo`: a simulated fleet publishing through the real SDK, each device with its own
//! `DualPublisher`, verified by independent subscribers on the broker and the Pub/Sub topic.
//!
//! This file holds the options and the steps of a run; the rest is split by concern:
//! - `bed`: the broker and Pub/Sub endpoint (embedded or given), and `--chaos`;
//! - `fleet`: the simulated devices, their cohort and their config fetch at launch;
//! - `capture`: the verifying subscribers, what they received and the `--capture` file;
//! - `summary`: what was delivered and lost, the summary table and the `--json` line;
//! - `reports`: the migration reports, the metrics file and the fleet rollup.

mod bed;
mod capture;
mod fleet;
mod reports;
mod summary;

use bed::{Chaos, TestBed};
use capture::Subscribers;
use clap::Args;
use dualpub::{DualPublisher, MetricsSnapshot};
use dualpub_testbed::subscribers::{self, Collected};
use fleet::{Cohort, ConfigReport, FleetSettings};
use std::collections::HashSet;
use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use summary::Summary;

pub use capture::Deliveries;

/// Options of `dualpub demo`.
#[derive(Args, Debug, Clone)]
pub struct DemoArgs {
    /// Number of simulated devices (ids demo-device-0 … demo-device-{N-1}).
    #[arg(long, default_value_t = 200)]
    pub devices: usize,
    /// Locations each device sends.
    #[arg(long, default_value_t = 20)]
    pub locations_per_device: usize,
    /// Pub/Sub rollout percentage (0–100).
    #[arg(long, default_value_t = 25.0)]
    pub rollout: f64,
    /// Rollout salt.
    #[arg(long, default_value = dualpub::config::DEFAULT_SALT)]
    pub salt: String,
    /// The MQTT broker and the Pub/Sub endpoint, project and topic.
    #[command(flatten)]
    pub backend: crate::backend::BackendArgs,
    /// Permit mqtt:// and http:// URLs for external servers (the embedded ones are local).
    #[arg(long)]
    pub allow_insecure: bool,
    /// PEM CA certificates the SDK trusts for both backends (a private CA for mqtts:// and
    /// https:// servers). The embedded backends are served over TLS with a CA made for the run.
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// Where the verifying subscribers read MQTT (plaintext `mqtt://`), instead of the broker
    /// the SDK uses: a path of their own, so their verdict under faults is about the SDK.
    #[arg(long, value_name = "URL")]
    pub verify_mqtt_url: Option<String>,
    /// Where the verifying subscribers pull Pub/Sub, instead of the endpoint the SDK uses.
    #[arg(long, value_name = "URL")]
    pub verify_pubsub_endpoint: Option<String>,
    /// Directory for the devices' data (a temporary one by default).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// How long to wait for every device to drain, in ms.
    #[arg(long, default_value_t = 120_000)]
    pub flush_timeout_ms: u64,
    /// End with one JSON line on stdout.
    #[arg(long)]
    pub json: bool,
    /// Append "deviceId eventId" to this file for every location once it is durable (the
    /// kill test uses it to know what the SDK promised to deliver).
    #[arg(long)]
    pub durable_log: Option<PathBuf>,
    /// Every device's upload window, in seconds (`SdkConfig.uploadWindowSecs`; default the
    /// SDK's 30: locations wait, durable, and leave in one burst per window or at the final
    /// flush). 0 sends each location as soon as it is durable, as for apps that need real time.
    #[arg(long, default_value_t = dualpub::config::DEFAULT_UPLOAD_WINDOW_SECS, value_name = "SECS")]
    pub window_secs: u32,
    /// Pause between rounds, in ms (spreads a run over time).
    #[arg(long, default_value_t = 0)]
    pub round_interval_ms: u64,
    /// Skip the independent subscribers (when another process verifies delivery).
    #[arg(long)]
    pub no_verify: bool,
    /// Turn MQTT off in the migration config: Pub/Sub-cohort devices then publish to Pub/Sub
    /// only (MQTT gets their locations only through fallback); the rest stay on MQTT.
    #[arg(long)]
    pub no_mqtt: bool,
    /// Inject faults while sending: connection cuts and outages in front of the broker and the
    /// Pub/Sub endpoint, emulator 429/500/503, latency and dropped responses.
    #[arg(long)]
    pub chaos: bool,
    /// Fetch the migration config from this URL (e.g. `dualpub config-server`) instead of
    /// using --rollout/--salt/--no-mqtt: every device fetches it before it starts sending, and
    /// with --data-dir keeps it (and its ETag) for the next run.
    #[arg(long)]
    pub config_url: Option<String>,
    /// After verification, write every message the independent subscribers received to FILE,
    /// one JSON object per line (JSON Lines), duplicates included; not with --no-verify.
    #[arg(long, value_name = "FILE", conflicts_with = "no_verify")]
    pub capture: Option<PathBuf>,
    /// Write every migration report the independent subscribers received to FILE, one JSON
    /// line each (`{"transport", "receivedAtMs", "report"}`, duplicates included).
    #[arg(long, value_name = "FILE", conflicts_with = "no_verify")]
    pub reports_out: Option<PathBuf>,
    /// Write each device's own `metrics()` figures and raw latencies to FILE, one JSON line per
    /// device (what the fleet rollup is checked against).
    #[arg(long, value_name = "FILE")]
    pub metrics_out: Option<PathBuf>,
    /// Run this command on the reports file and print its output: the fleet rollup table
    /// (`scripts/rollup`).
    #[arg(long, value_name = "CMD", conflicts_with = "no_verify")]
    pub rollup: Option<String>,
    /// Run `dualpub verify` on what the subscribers received and the devices' reports, and
    /// print its verdict per rollout step (docs/VERIFY.md); a failed verdict fails the demo.
    #[arg(long, conflicts_with = "no_verify")]
    pub verify: bool,
    /// Set this fault plan (JSON, as `POST /emulator/faults` takes it, docs/emulator.md) on the
    /// embedded emulator before sending, e.g. `{"faultTopic":"location-updates",
    /// "discardAfterAckNext":37}`; the JSON summary then lists the messages it hit (`injected`).
    #[arg(long, value_name = "JSON")]
    pub pubsub_faults: Option<String>,
    /// Pub/Sub (the embedded emulator) answers every publish with 503 for this long from the
    /// start: breakers open and locations fall back to MQTT; it is over before the drain.
    #[arg(long, default_value_t = 0, value_name = "MS")]
    pub pubsub_outage_ms: u64,
}

/// Prints `dualpub demo: {msg}` on stderr and gives the exit code of a failed run.
fn fail(msg: impl std::fmt::Display) -> i32 {
    eprintln!("dualpub demo: {msg}");
    1
}

/// What `--verify` concluded: its table, its findings as JSON (the `verify` of `--json`), and
/// whether the verdict failed (which fails the demo).
pub struct Verdict {
    pub table: String,
    pub findings: serde_json::Value,
    pub failed: bool,
}

/// The verifier `--verify` runs on what the subscribers received and the migration reports they
/// received (parsed). The caller hands it in: the demo does not depend on `dualpub verify`.
pub type Verify<'a> = &'a dyn Fn(&Deliveries, &[serde_json::Value]) -> Result<Verdict, String>;

/// Runs the demo; returns the process exit code (0 only if nothing was lost).
pub fn run(args: DemoArgs, verify: Verify) -> i32 {
    if !(args.rollout.is_finite() && (0.0..=100.0).contains(&args.rollout)) {
        return fail(format!("--rollout must be in [0, 100], got {}", args.rollout));
    }
    run_steps(&args, verify).unwrap_or_else(fail)
}

/// The demo's steps in order; an `Err` is a setup or I/O failure (exit code 1).
fn run_steps(args: &DemoArgs, verify: Verify) -> Result<i32, String> {
    let capture = args.capture.as_deref().map(capture::open_capture).transpose()?;
    let mut run = Run::start(args)?;
    let progress = Progress::start((args.devices * args.locations_per_device) as u64, run.subscribers.as_ref());
    let sent = run.send_rounds(&progress.accepted)?;
    // Connections while the fleet sent on its own, before the final flush opens every
    // device's burst at once.
    let connects_sending = run._bed.connects();
    run.calm_chaos();
    let pending = run.drain();
    run.await_subscribers(&sent, pending);
    progress.finish();
    let mut outcome = run.collect(pending)?;
    outcome.connects_sending = connects_sending;
    let summary = Summary::compute(&run, &sent, &outcome);
    if let (Some((path, file)), Some(deliveries)) = (capture, &outcome.deliveries) {
        capture::write_capture(path, file, deliveries)?;
    }
    print!("{}", summary.table());
    if let (Some(command), Some(path)) = (&args.rollup, &outcome.reports_file) {
        println!("fleet rollup of the migration reports ({command})");
        reports::run_rollup(command, path)?;
    }
    let verdict = match (args.verify, &outcome.deliveries) {
        (true, Some(d)) => Some(verify(d, &outcome.report_docs)?),
        _ => None,
    };
    if let Some(v) = &verdict {
        print!("{}", v.table);
    }
    if args.json {
        let mut json: serde_json::Value = serde_json::from_str(&summary.json()).map_err(|e| e.to_string())?;
        if let Some(v) = &verdict {
            json["verify"] = v.findings.clone();
        }
        if args.pubsub_faults.is_some() {
            json["injected"] = serde_json::to_value(&outcome.injected).map_err(|e| e.to_string())?;
        }
        println!("{json}");
    }
    let verdict_failed = verdict.as_ref().is_some_and(|v| v.failed);
    Ok(if verdict_failed { summary.exit_code().max(3) } else { summary.exit_code() })
}

/// What the steps share: the arguments, the backends, the verifying subscribers, the chaos
/// injector, and the fleet with its config report and cohort. Fields drop in this order.
struct Run<'a> {
    args: &'a DemoArgs,
    started: Instant,
    fleet: Vec<Device>,
    config: Option<ConfigReport>,
    cohort: Cohort,
    chaos: Option<Chaos>,
    subscribers: Option<Subscribers>,
    /// The emulator answers 503 until then (`--pubsub-outage-ms`).
    outage_until: Option<Instant>,
    _data_dir: Option<tempfile::TempDir>,
    _bed: TestBed,
}

/// A simulated device: its id and its own publisher.
type Device = (String, Arc<DualPublisher>);

impl<'a> Run<'a> {
    /// Starts the test bed, the subscribers and the chaos, builds the fleet and fetches configs.
    fn start(args: &'a DemoArgs) -> Result<Run<'a>, String> {
        let started = Instant::now();
        let bed = TestBed::start(args)?;
        let subscribers = Subscribers::start(args, &bed, started)?;
        let chaos =
            if args.chaos { Some(Chaos::start(&bed.mqtt_url, &bed.endpoint, bed.emulator.as_ref()).map_err(|e| format!("chaos setup: {e}"))?) } else { None };
        let (data_root, data_dir) = fleet::data_root(args)?;
        let settings = FleetSettings::new(args, &bed, chaos.as_ref(), data_root);
        let fleet = fleet::build_fleet(args, &settings)?;
        // As an app that wants the fresh config at launch: fetch before sending.
        let config = args.config_url.as_ref().map(|url| fleet::fetch_configs(&fleet, url));
        let cohort = Cohort::of(&fleet);
        cohort.announce(args, config.as_ref());
        if args.metrics_out.is_some() {
            fleet.iter().for_each(|(_, p)| p.keep_latency_samples());
        }
        if let Some(plan) = &args.pubsub_faults {
            let plan: dualpub_testbed::FaultPlan = serde_json::from_str(plan).map_err(|e| format!("--pubsub-faults: {e}"))?;
            let e = bed.emulator.as_ref().ok_or("--pubsub-faults needs the embedded emulator")?;
            e.emulator().faults().set(plan);
        }
        let outage_until = match (&bed.emulator, args.pubsub_outage_ms) {
            (_, 0) => None,
            (Some(e), ms) => {
                e.emulator().faults().set(dualpub_testbed::FaultPlan { fail_rate: 1.0, fail_statuses: vec![503], ..Default::default() });
                eprintln!("dualpub demo: Pub/Sub answers 503 for the first {ms} ms");
                Some(Instant::now() + Duration::from_millis(ms))
            }
            (None, _) => return Err("--pubsub-outage-ms needs the embedded emulator".into()),
        };
        Ok(Run { args, started, fleet, config, cohort, chaos, subscribers, outage_until, _data_dir: data_dir, _bed: bed })
    }

    /// Drives the fleet round by round; with --durable-log, logs each round once it is durable.
    fn send_rounds(&self, accepted: &AtomicU64) -> Result<Sent, String> {
        let mut durable_log = match &self.args.durable_log {
            Some(path) => Some(std::fs::OpenOptions::new().create(true).append(true).open(path).map_err(|e| format!("{}: {e}", path.display()))?),
            None => None,
        };
        let mut sent = Sent::default();
        let (rounds, now_ms) = (self.args.locations_per_device, dualpub::clock::now_ms());
        for round in 0..rounds {
            let this_round = self.send_round(round, now_ms - ((rounds - round) as i64) * 1000, accepted, &mut sent);
            if let Some(log) = durable_log.as_mut() {
                self.log_durable(log, &this_round)?;
            }
            if self.args.round_interval_ms > 0 {
                std::thread::sleep(Duration::from_millis(self.args.round_interval_ms));
            }
        }
        sent.accepted = accepted.load(Ordering::SeqCst);
        Ok(sent)
    }

    /// One location from every device; returns (deviceId, eventId) of each one accepted.
    fn send_round(&self, round: usize, timestamp_ms: i64, accepted: &AtomicU64, sent: &mut Sent) -> Vec<(&str, String)> {
        let mut this_round = Vec::with_capacity(self.fleet.len());
        for (i, (id, p)) in self.fleet.iter().enumerate() {
            match p.send_location(fleet::simulated_location(i, round, timestamp_ms)) {
                Ok(event_id) => {
                    accepted.fetch_add(1, Ordering::SeqCst);
                    sent.accepted_ids.insert(event_id.clone());
                    if self.cohort.pubsub.contains(id) {
                        sent.expected_pubsub.insert(event_id.clone());
                    }
                    if self.cohort.mqtt.contains(id) {
                        sent.expected_mqtt.insert(event_id.clone());
                    }
                    this_round.push((id.as_str(), event_id));
                }
                Err(e) => {
                    sent.rejected += 1;
                    eprintln!("\n{id}: {e}");
                }
            }
        }
        this_round
    }

    /// Waits until every device's locations are durable, then appends the round to the log.
    fn log_durable(&self, log: &mut File, this_round: &[(&str, String)]) -> Result<(), String> {
        // Only what the SDK reports durable goes into the log.
        for (id, p) in &self.fleet {
            if !p.await_durable(10_000).unwrap_or(false) {
                return Err(format!("{id}: locations not durable within 10 s"));
            }
        }
        let lines: String = this_round.iter().map(|(id, e)| format!("{id} {e}\n")).collect();
        log.write_all(lines.as_bytes()).map_err(|e| format!("durable log: {e}"))
    }

    /// Stops injecting faults and repairs everything (with --chaos), so the fleet can drain.
    fn calm_chaos(&mut self) {
        if let Some(c) = self.chaos.as_mut() {
            c.calm();
        }
        if let (Some(until), Some(e)) = (self.outage_until.take(), &self._bed.emulator) {
            std::thread::sleep(until.saturating_duration_since(Instant::now()));
            e.emulator().faults().clear();
        }
    }

    /// Flushes every device in parallel; returns what the SDK still holds afterwards.
    fn drain(&self) -> Pending {
        let timeout = self.args.flush_timeout_ms;
        let reports: Vec<dualpub::FlushReport> = std::thread::scope(|s| {
            let handles: Vec<_> = self.fleet.iter().map(|(_, p)| s.spawn(move || p.flush(timeout))).collect();
            handles.into_iter().filter_map(|h| h.join().ok()).filter_map(Result::ok).collect()
        });
        Pending { mqtt: reports.iter().map(|r| r.pending_mqtt).sum(), pubsub: reports.iter().map(|r| r.pending_pubsub).sum() }
    }

    /// Waits (≤ 30 s a transport) until the subscribers saw what the SDK acknowledged, plus 300 ms.
    fn await_subscribers(&self, sent: &Sent, pending: Pending) {
        if let Some(subs) = &self.subscribers {
            subs.mqtt.collected.wait_until(Duration::from_secs(30), |c| seen_all(c, &sent.expected_mqtt, pending.mqtt));
            subs.pubsub.collected.wait_until(Duration::from_secs(30), |c| seen_all(c, &sent.expected_pubsub, pending.pubsub));
            // A short quiet period to catch late duplicates.
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// Reads the metrics, shuts the fleet down (each device sends its last migration report),
    /// stops the chaos, takes what the subscribers received and writes the report files.
    fn collect(&mut self, pending: Pending) -> Result<Outcome, String> {
        let metrics: Vec<MetricsSnapshot> = self.fleet.iter().filter_map(|(_, p)| p.metrics().ok()).collect();
        if let Some(path) = &self.args.metrics_out {
            reports::write_metrics(path, &self.fleet, &metrics)?;
        }
        std::thread::scope(|s| {
            for (_, p) in &self.fleet {
                s.spawn(move || p.shutdown());
            }
        });
        let chaos_events = self.chaos.take().map(|c| c.stop()).unwrap_or_default();
        let elapsed = self.started.elapsed();
        let deliveries = self.subscribers.as_ref().map(|s| Deliveries {
            mqtt: s.mqtt.collected.all(),
            pubsub: s.pubsub.collected.all(),
            mqtt_gaps: s.mqtt.collected.gaps(),
            window: (s.since_ms, subscribers::now_ms()),
        });
        let mut reports = None;
        let mut reports_file = None;
        let mut report_docs = Vec::new();
        if let Some(subs) = &self.subscribers {
            let last = subs.reports.await_last(self.fleet.len(), Duration::from_secs(10));
            let received = subs.reports.received();
            report_docs = received.iter().filter_map(|(_, r)| serde_json::from_slice(&r.payload).ok()).collect();
            let mqtt = received.iter().filter(|(t, _)| *t == "mqtt").count();
            reports = Some(ReportsSeen { mqtt, pubsub: received.len() - mqtt, devices_with_last: last });
            if self.args.reports_out.is_some() || self.args.rollup.is_some() {
                let dir = self._data_dir.as_ref().map(|d| d.path().to_path_buf()).unwrap_or_else(std::env::temp_dir);
                let path = reports::reports_path(self.args.reports_out.as_ref(), &dir);
                reports::write_reports(&path, &received)?;
                reports_file = Some(path);
            }
        }
        let injected = self._bed.emulator.as_ref().map(|e| e.emulator().fault_log()).unwrap_or_default();
        let connects = self._bed.connects();
        Ok(Outcome { metrics, chaos_events, elapsed, pending, deliveries, reports, reports_file, report_docs, injected, connects, connects_sending: None })
    }
}

/// Whether every expected eventId reached the subscriber, but for as many as the SDK still holds.
fn seen_all(c: &Collected, expected: &HashSet<String>, pending: u64) -> bool {
    let got: HashSet<String> = c.all().into_iter().map(|r| r.event_id).collect();
    expected.iter().filter(|e| !got.contains(*e)).count() as u64 <= pending
}

/// The progress line on stderr, redrawn every 250 ms until [`Progress::finish`].
struct Progress {
    /// Locations accepted so far (counted by the sending step).
    accepted: Arc<AtomicU64>,
    done: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Progress {
    /// Starts redrawing: accepted of `total`, and what the subscribers received so far.
    fn start(total: u64, subscribers: Option<&Subscribers>) -> Progress {
        let accepted = Arc::new(AtomicU64::new(0));
        let done = Arc::new(AtomicBool::new(false));
        let (a, d) = (accepted.clone(), done.clone());
        let collected = subscribers.map(|s| (s.mqtt.collected.clone(), s.pubsub.collected.clone()));
        let thread = std::thread::spawn(move || {
            while !d.load(Ordering::SeqCst) {
                let received = match &collected {
                    Some((m, p)) => format!("   mqtt received {:>7}   pubsub received {:>7}", m.len(), p.len()),
                    None => String::new(),
                };
                eprint!("\r  accepted {:>7}/{total}{received}", a.load(Ordering::SeqCst));
                let _ = std::io::stderr().flush();
                std::thread::sleep(Duration::from_millis(250));
            }
        });
        Progress { accepted, done, thread }
    }

    /// Stops redrawing and ends the line.
    fn finish(self) {
        self.done.store(true, Ordering::SeqCst);
        let _ = self.thread.join();
        eprintln!();
    }
}

/// What the fleet accepted, and which eventIds each transport owes.
#[derive(Default)]
struct Sent {
    accepted: u64,
    rejected: u64,
    accepted_ids: HashSet<String>,
    expected_mqtt: HashSet<String>,
    expected_pubsub: HashSet<String>,
}

/// Locations the SDK still holds after the drain, per transport.
#[derive(Clone, Copy)]
struct Pending {
    mqtt: u64,
    pubsub: u64,
}

/// What is read once the fleet is done.
struct Outcome {
    metrics: Vec<MetricsSnapshot>,
    chaos_events: u64,
    elapsed: Duration,
    pending: Pending,
    /// What the subscribers received (none with --no-verify).
    deliveries: Option<Deliveries>,
    /// The migration reports received (none with --no-verify).
    reports: Option<ReportsSeen>,
    /// Where they were written (`--reports-out`, or for `--rollup`).
    reports_file: Option<PathBuf>,
    /// Every report received, parsed (for `--verify`).
    report_docs: Vec<serde_json::Value>,
    /// The messages the emulator's delivery faults hit (`--pubsub-faults`).
    injected: dualpub_emulator::FaultLog,
    /// The SDK's TLS connections to the embedded backends (none with external ones).
    connects: Option<bed::Connects>,
    /// The same, up to the end of sending (before the final flush).
    connects_sending: Option<bed::Connects>,
}

/// How many migration reports arrived, and from how many devices the last one did.
#[derive(Clone, Copy)]
struct ReportsSeen {
    mqtt: usize,
    pubsub: usize,
    devices_with_last: usize,
}
