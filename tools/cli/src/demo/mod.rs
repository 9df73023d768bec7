//! `dualpub demo`: a simulated fleet publishing through the real SDK, each device with its own
//! `DualPublisher`, verified by independent subscribers on the broker and the Pub/Sub topic.

use clap::Args;
use dualpub::{DualPublisher, Location, MetricsSnapshot, MigrationConfig, SdkConfig, TransportMetrics};
use dualpub_testbed::broker::EmbeddedBroker;
use dualpub_testbed::proxy::FaultProxy;
use dualpub_testbed::subscribers::{self, Collected, Received, Subscriber};
use dualpub_testbed::{EmulatorHandle, EmulatorOptions};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub(crate) mod reports;

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
    /// Use this MQTT broker instead of the embedded one.
    #[arg(long)]
    pub mqtt_url: Option<String>,
    /// Use this Pub/Sub endpoint instead of the embedded emulator (the topic must exist).
    #[arg(long)]
    pub pubsub_endpoint: Option<String>,
    /// Pub/Sub project.
    #[arg(long, default_value = "dualpub-demo")]
    pub pubsub_project: String,
    /// Pub/Sub topic.
    #[arg(long, default_value = "location-updates")]
    pub pubsub_topic: String,
    /// Permit mqtt:// and http:// URLs for external servers (the embedded ones are local).
    #[arg(long)]
    pub allow_insecure: bool,
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

/// Runs the demo; returns the process exit code (0 only if nothing was lost).
pub fn run(args: DemoArgs) -> i32 {
    if !(args.rollout.is_finite() && (0.0..=100.0).contains(&args.rollout)) {
        return fail(format!("--rollout must be in [0, 100], got {}", args.rollout));
    }
    run_steps(&args).unwrap_or_else(fail)
}

/// The demo's steps in order; an `Err` is a setup or I/O failure (exit code 1).
fn run_steps(args: &DemoArgs) -> Result<i32, String> {
    let capture = args.capture.as_deref().map(open_capture).transpose()?;
    let mut run = Run::start(args)?;
    let progress = Progress::start((args.devices * args.locations_per_device) as u64, run.subscribers.as_ref());
    let sent = run.send_rounds(&progress.accepted)?;
    run.calm_chaos();
    let pending = run.drain();
    run.await_subscribers(&sent, pending);
    progress.finish();
    let outcome = run.collect(pending)?;
    let summary = Summary::compute(&run, &sent, &outcome);
    if let (Some((path, file)), Some(deliveries)) = (capture, &outcome.deliveries) {
        write_capture(path, file, deliveries)?;
    }
    summary.print_table();
    if let (Some(command), Some(path)) = (&args.rollup, &outcome.reports_file) {
        println!("fleet rollup of the migration reports ({command})");
        reports::run_rollup(command, path)?;
    }
    let findings = match (args.verify, &outcome.deliveries) {
        (true, Some(d)) => Some(verify(d, &outcome)),
        _ => None,
    };
    if let Some(f) = &findings {
        print!("{}", crate::verify::output::table(f));
    }
    if args.json {
        let mut json: serde_json::Value = serde_json::from_str(&summary.json()).map_err(|e| e.to_string())?;
        if let Some(f) = &findings {
            json["verify"] = serde_json::to_value(f).map_err(|e| e.to_string())?;
        }
        if args.pubsub_faults.is_some() {
            json["injected"] = serde_json::to_value(&outcome.injected).map_err(|e| e.to_string())?;
        }
        println!("{json}");
    }
    let verdict_failed = findings.as_ref().is_some_and(|f| f.verdict == "fail");
    Ok(if verdict_failed { summary.exit_code().max(3) } else { summary.exit_code() })
}

/// `dualpub verify` over what the subscribers received, their own gaps and the reports.
fn verify(d: &Deliveries, outcome: &Outcome) -> crate::verify::engine::Findings {
    crate::verify::live::verify_received(d.window, &d.mqtt, &d.pubsub, &d.mqtt_gaps, &outcome.report_docs, crate::verify::engine::Thresholds::default())
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
        let chaos = if args.chaos {
            Some(Chaos::start(&bed.mqtt_host, bed.mqtt_port, &bed.endpoint, bed.emulator.as_ref()).map_err(|e| format!("chaos setup: {e}"))?)
        } else {
            None
        };
        let (data_root, data_dir) = data_root(args)?;
        let settings = FleetSettings::new(args, &bed, chaos.as_ref(), data_root);
        let fleet = build_fleet(args, &settings)?;
        // As an app that wants the fresh config at launch: fetch before sending.
        let config = args.config_url.as_ref().map(|url| fetch_configs(&fleet, url));
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
            match p.send_location(simulated_location(i, round, timestamp_ms)) {
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
        Ok(Outcome { metrics, chaos_events, elapsed, pending, deliveries, reports, reports_file, report_docs, injected })
    }
}

/// Whether every expected eventId reached the subscriber, but for as many as the SDK still holds.
fn seen_all(c: &Collected, expected: &HashSet<String>, pending: u64) -> bool {
    let got: HashSet<String> = c.all().into_iter().map(|r| r.event_id).collect();
    expected.iter().filter(|e| !got.contains(*e)).count() as u64 <= pending
}

/// The MQTT broker and the Pub/Sub endpoint: embedded ones unless URLs are given.
struct TestBed {
    mqtt_url: String,
    mqtt_host: String,
    mqtt_port: u16,
    endpoint: String,
    allow_insecure: bool,
    emulator: Option<EmulatorHandle>,
    _broker: Option<EmbeddedBroker>,
}

impl TestBed {
    /// Starts the embedded broker and emulator where no URL was given, and says what is used.
    fn start(args: &DemoArgs) -> Result<TestBed, String> {
        let (mqtt_url, mqtt_host, mqtt_port, broker) = match &args.mqtt_url {
            Some(u) => {
                let (host, port) = url_host_port(u, 1883)?;
                (u.clone(), host, port, None)
            }
            None => {
                let b = EmbeddedBroker::start().map_err(|e| format!("cannot start the embedded MQTT broker: {e}"))?;
                (b.url(), "127.0.0.1".to_string(), b.port, Some(b))
            }
        };
        let (endpoint, emulator) = match &args.pubsub_endpoint {
            Some(e) => (e.trim_end_matches('/').to_string(), None),
            None => {
                let h = EmulatorHandle::spawn(EmulatorOptions::default()).map_err(|e| format!("cannot start the Pub/Sub emulator: {e}"))?;
                subscribers::create_topic(&h.url(), &args.pubsub_project, &args.pubsub_topic).map_err(|e| e.to_string())?;
                subscribers::create_topic(&h.url(), &args.pubsub_project, dualpub::config::DEFAULT_REPORTS_TOPIC).map_err(|e| e.to_string())?;
                (h.url(), Some(h))
            }
        };
        let allow_insecure = allow_insecure(args, &mqtt_url, &endpoint);
        eprintln!("dualpub demo: MQTT {mqtt_url}, Pub/Sub {endpoint} (project {}, topic {})", args.pubsub_project, args.pubsub_topic);
        Ok(TestBed { mqtt_url, mqtt_host, mqtt_port, endpoint, allow_insecure, emulator, _broker: broker })
    }
}

/// Plaintext is allowed without --allow-insecure only towards the servers started here.
fn allow_insecure(args: &DemoArgs, mqtt_url: &str, endpoint: &str) -> bool {
    let mqtt_local_or_tls = args.mqtt_url.is_none() || mqtt_url.starts_with("mqtts://");
    let pubsub_local_or_tls = args.pubsub_endpoint.is_none() || endpoint.starts_with("https://");
    let config_local_or_tls = args
        .config_url
        .as_deref()
        .is_none_or(|u| u.starts_with("https://") || u.starts_with("http://127.0.0.1") || u.starts_with("http://localhost") || u.starts_with("http://[::1]"));
    args.allow_insecure || (mqtt_local_or_tls && pubsub_local_or_tls && config_local_or_tls)
}

/// The independent verification: a subscriber on the broker and a pull subscription on the
/// topic, for locations and for migration reports.
struct Subscribers {
    mqtt: Subscriber,
    pubsub: Subscriber,
    reports: reports::ReportSubscribers,
    /// When they began to read (ms since the Unix epoch): the start of the verifier's window.
    since_ms: i64,
}

impl Subscribers {
    /// Subscribes to every device's MQTT topic and to the Pub/Sub topic (none with --no-verify).
    fn start(args: &DemoArgs, bed: &TestBed, started: Instant) -> Result<Option<Subscribers>, String> {
        if args.no_verify {
            return Ok(None);
        }
        let since_ms = subscribers::now_ms();
        let filter = dualpub::wire::DEFAULT_TOPIC_TEMPLATE.replace("{deviceId}", "+");
        let sub_name = format!("dualpub-demo-verify-{}-{}", std::process::id(), started.elapsed().as_nanos() % 1_000_000);
        // A persistent session: the broker keeps what arrives while the subscriber reconnects
        // (a clean session would miss it and blame the pipeline).
        let mqtt =
            subscribers::mqtt_with_session(&bed.mqtt_host, bed.mqtt_port, &filter, Some(&sub_name)).map_err(|e| format!("verifying MQTT subscriber: {e}"))?;
        let pubsub = subscribers::pubsub(&bed.endpoint, &args.pubsub_project, &args.pubsub_topic, &sub_name)
            .map_err(|e| format!("verifying Pub/Sub subscription: {e}"))?;
        let reports = reports::ReportSubscribers::start(
            &bed.mqtt_host,
            bed.mqtt_port,
            &bed.endpoint,
            &args.pubsub_project,
            dualpub::config::DEFAULT_REPORTS_TOPIC,
            &format!("{sub_name}-reports"),
        )?;
        Ok(Some(Subscribers { mqtt, pubsub, reports, since_ms }))
    }
}

/// The devices' data root: --data-dir, or a temporary directory (returned too: removed on drop).
fn data_root(args: &DemoArgs) -> Result<(PathBuf, Option<tempfile::TempDir>), String> {
    match &args.data_dir {
        Some(d) => Ok((d.clone(), None)),
        None => {
            let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
            Ok((tmp.path().to_path_buf(), Some(tmp)))
        }
    }
}

/// What every device's SDK config has in common.
struct FleetSettings {
    /// The broker and endpoint the SDK talks to: the test bed's, or the chaos proxies'.
    mqtt_url: String,
    endpoint: String,
    data_root: PathBuf,
    allow_insecure: bool,
    /// The migration config --rollout, --salt and --no-mqtt ask for.
    migration: MigrationConfig,
}

impl FleetSettings {
    /// The SDK's URLs (through the chaos proxies with --chaos) and the flags' migration config.
    fn new(args: &DemoArgs, bed: &TestBed, chaos: Option<&Chaos>, data_root: PathBuf) -> FleetSettings {
        let (mqtt_url, endpoint) = match chaos {
            Some(c) => (c.mqtt.mqtt_url(), c.pubsub.http_url()),
            None => (bed.mqtt_url.clone(), bed.endpoint.clone()),
        };
        let migration = MigrationConfig {
            version: 1,
            pubsub_enabled: true,
            pubsub_percentage: args.rollout,
            rollout_salt: args.salt.clone(),
            mqtt_enabled: !args.no_mqtt,
            ..MigrationConfig::default()
        };
        FleetSettings { mqtt_url, endpoint, data_root, allow_insecure: bed.allow_insecure, migration }
    }

    /// Device `id`'s SDK config (validated): 30 s keep-alive, Pub/Sub batches of up to 200 ms,
    /// the upload window of `--window-secs`.
    fn sdk_config(&self, args: &DemoArgs, id: &str) -> Result<SdkConfig, dualpub::DualPubError> {
        let data_dir = self.data_root.join(id).to_string_lossy().into_owned();
        let mut builder = SdkConfig::builder(id, self.mqtt_url.as_str(), args.pubsub_project.as_str(), data_dir)
            .pubsub_endpoint(self.endpoint.as_str())
            .pubsub_topic(args.pubsub_topic.as_str())
            .pubsub_batch(1000, 1_000_000, 200)
            .mqtt_keep_alive_secs(30)
            .mqtt_idle_disconnect_secs(30)
            .allow_insecure(self.allow_insecure)
            .outbox_limits(100_000, 168)
            .upload_window_secs(args.window_secs);
        // With a config URL the fetched document decides (MQTT only until it arrives).
        builder = match &args.config_url {
            Some(url) => builder.remote_config(url.as_str(), dualpub::config::DEFAULT_CONFIG_FETCH_INTERVAL_SECS),
            None => builder.migration(self.migration.clone()),
        };
        builder.build()
    }
}

/// One `DualPublisher` per device, ids demo-device-0 … demo-device-{N-1}.
fn build_fleet(args: &DemoArgs, settings: &FleetSettings) -> Result<Vec<Device>, String> {
    (0..args.devices).map(|i| start_device(args, settings, format!("demo-device-{i}"))).collect()
}

/// Starts one device's publisher; without --config-url the flags' config is applied on top.
fn start_device(args: &DemoArgs, settings: &FleetSettings, id: String) -> Result<Device, String> {
    let publisher = settings.sdk_config(args, &id).and_then(|c| DualPublisher::new(c, None)).map_err(|e| format!("{id}: {e}"))?;
    if args.config_url.is_none() {
        // A data directory from an earlier run keeps its last config; the flags of this
        // run are what the operator asked for, so apply them on top.
        publisher.apply_config(settings.migration.clone()).map_err(|e| format!("{id}: {e}"))?;
    }
    Ok((id, publisher))
}

/// Which devices the config in force sends to Pub/Sub and which to MQTT (a device whose
/// decision cannot be read is in neither).
struct Cohort {
    /// The Pub/Sub cohort in fleet order.
    pubsub_devices: Vec<String>,
    pubsub: HashSet<String>,
    mqtt: HashSet<String>,
}

impl Cohort {
    /// Reads every device's rollout decision.
    fn of(fleet: &[Device]) -> Cohort {
        let decisions: Vec<(&String, dualpub::RolloutDecision)> = fleet.iter().filter_map(|(id, p)| p.decision().ok().map(|d| (id, d))).collect();
        let pubsub_devices: Vec<String> = decisions.iter().filter(|(_, d)| d.pubsub_enabled).map(|(id, _)| (*id).clone()).collect();
        let mqtt = decisions.iter().filter(|(_, d)| d.mqtt_enabled).map(|(id, _)| (*id).clone()).collect();
        Cohort { pubsub: pubsub_devices.iter().cloned().collect(), pubsub_devices, mqtt }
    }

    /// Prints the fleet's size, the cohort and the rule that chose it.
    fn announce(&self, args: &DemoArgs, config: Option<&ConfigReport>) {
        let rule = match config {
            Some(r) => format!("by the config in force ({})", r.describe()),
            None => format!("at {} % (salt {:?})", args.rollout, args.salt),
        };
        eprintln!(
            "dualpub demo: {} devices, {} in the Pub/Sub cohort {rule}, {} locations each",
            args.devices,
            self.pubsub_devices.len(),
            args.locations_per_device
        );
    }
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
}

/// How many migration reports arrived, and from how many devices the last one did.
#[derive(Clone, Copy)]
struct ReportsSeen {
    mqtt: usize,
    pubsub: usize,
    devices_with_last: usize,
}

/// Every message the subscribers received, in arrival order, duplicates included.
struct Deliveries {
    mqtt: Vec<Received>,
    pubsub: Vec<Received>,
    /// Times the MQTT subscriber was itself disconnected (from, to) ms.
    mqtt_gaps: Vec<(i64, i64)>,
    /// When the subscribers began and stopped reading (from, to) ms.
    window: (i64, i64),
}

/// One line of the `--capture` file.
#[derive(serde::Serialize)]
#[serde(tag = "pipeline", rename_all = "lowercase")]
enum CaptureLine<'a> {
    /// `{"pipeline":"mqtt","topic":…,"receivedAtMs":…,"payload":…}`
    #[serde(rename_all = "camelCase")]
    Mqtt { topic: &'a str, received_at_ms: i64, payload: &'a str },
    /// `{"pipeline":"pubsub","attributes":{…},"orderingKey":…,"receivedAtMs":…,"payload":…}` (payload: the decoded data)
    #[serde(rename_all = "camelCase")]
    Pubsub { attributes: &'a BTreeMap<String, String>, ordering_key: &'a str, received_at_ms: i64, payload: &'a str },
}

impl<'a> CaptureLine<'a> {
    /// An MQTT message as the broker delivered it.
    fn mqtt(r: &'a Received) -> Result<Self, String> {
        Ok(CaptureLine::Mqtt { topic: &r.topic_or_key, received_at_ms: r.received_at_ms, payload: utf8(r)? })
    }

    /// A Pub/Sub message as pulled, its data decoded.
    fn pubsub(r: &'a Received) -> Result<Self, String> {
        Ok(CaptureLine::Pubsub { attributes: &r.attributes, ordering_key: &r.topic_or_key, received_at_ms: r.received_at_ms, payload: utf8(r)? })
    }
}

/// A `--capture` line for a time the verifying MQTT subscriber itself was disconnected:
/// `{"pipeline":"mqtt","gap":{"fromMs":…,"toMs":…}}`.
fn gap_line(from_ms: i64, to_ms: i64) -> String {
    serde_json::json!({"pipeline": "mqtt", "gap": {"fromMs": from_ms, "toMs": to_ms}}).to_string()
}

/// The `--capture` line for when the subscribers read: `{"window":{"fromMs":…,"toMs":…}}`.
fn window_line((from_ms, to_ms): (i64, i64)) -> String {
    serde_json::json!({"window": {"fromMs": from_ms, "toMs": to_ms}}).to_string()
}

/// A message's bytes as text: the capture holds them exactly, so they must be UTF-8.
fn utf8(r: &Received) -> Result<&str, String> {
    std::str::from_utf8(&r.payload).map_err(|e| format!("--capture: a message on {} is not UTF-8: {e}", r.topic_or_key))
}

/// Creates (or truncates) the `--capture` file before the run, so a bad path fails at once.
fn open_capture(path: &Path) -> Result<(&Path, File), String> {
    File::create(path).map(|f| (path, f)).map_err(|e| format!("--capture {}: {e}", path.display()))
}

/// Writes the window the subscribers read in, then every received message to the `--capture`
/// file in arrival order across both pipelines (so `dualpub verify` can settle locations as it
/// reads: docs/VERIFY.md), then the gaps.
fn write_capture(path: &Path, file: File, d: &Deliveries) -> Result<(), String> {
    let io = |e: std::io::Error| format!("--capture {}: {e}", path.display());
    let mut out = BufWriter::new(file);
    writeln!(out, "{}", window_line(d.window)).map_err(io)?;
    let mut lines: Vec<(i64, Result<CaptureLine, String>)> = d.mqtt.iter().map(|r| (r.received_at_ms, CaptureLine::mqtt(r))).collect();
    lines.extend(d.pubsub.iter().map(|r| (r.received_at_ms, CaptureLine::pubsub(r))));
    lines.sort_by_key(|(at, _)| *at); // stable: each pipeline keeps its own order on a tie
    for (_, line) in lines {
        let json = serde_json::to_string(&line?).map_err(|e| e.to_string())?;
        writeln!(out, "{json}").map_err(io)?;
    }
    for (from, to) in &d.mqtt_gaps {
        writeln!(out, "{}", gap_line(*from, *to)).map_err(io)?;
    }
    out.flush().map_err(io)?;
    eprintln!("dualpub demo: captured {} MQTT and {} Pub/Sub messages in {}", d.mqtt.len(), d.pubsub.len(), path.display());
    Ok(())
}

/// How the fleet's config fetch at launch went.
#[derive(Clone)]
struct ConfigReport {
    /// Fetches per result (`applied`, `not_modified`, `failed`, …) since the devices started:
    /// the SDK's own fetch at start-up (when one is due) and the demo's refresh.
    results: std::collections::BTreeMap<String, usize>,
    /// Devices per config version in force after the fetch.
    versions: std::collections::BTreeMap<u64, usize>,
    /// Devices per config source in force (`fetched`, `persisted`, `defaults`).
    sources: std::collections::BTreeMap<String, usize>,
}

impl ConfigReport {
    /// One line: devices per version and per source, fetches per result.
    fn describe(&self) -> String {
        let list = |m: Vec<(String, usize)>| m.into_iter().map(|(k, n)| format!("{n} {k}")).collect::<Vec<_>>().join(", ");
        format!(
            "versions: {}; sources: {}; fetch: {}",
            list(self.versions.iter().map(|(v, n)| (format!("at v{v}"), *n)).collect()),
            list(self.sources.iter().map(|(k, n)| (k.clone(), *n)).collect()),
            list(self.results.iter().map(|(k, n)| (k.clone(), *n)).collect()),
        )
    }
}

/// Every device fetches the config now (in parallel), as an app that wants the fresh config at
/// launch would; what failed leaves the device on its persisted config or the defaults.
fn fetch_configs(fleet: &[(String, Arc<DualPublisher>)], url: &str) -> ConfigReport {
    eprintln!("dualpub demo: fetching the migration config from {url}");
    // In parallel, a thread per device, as the drain at the end.
    let errors: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = fleet
            .iter()
            .map(|(id, p)| {
                s.spawn(move || match p.refresh_config() {
                    Ok(dualpub::FetchResult::Rejected { reason } | dualpub::FetchResult::Failed { reason }) => {
                        log::warn!("{id}: config fetch: {reason}");
                        None
                    }
                    Ok(_) => None,
                    Err(e) => Some(format!("error: {e}")),
                })
            })
            .collect();
        handles.into_iter().filter_map(|h| h.join().ok().flatten()).collect()
    });
    // The fetch results themselves come from the SDK's own count (its start-up fetch included).
    let mut report = ConfigReport { results: Default::default(), versions: Default::default(), sources: Default::default() };
    for error in errors {
        *report.results.entry(error).or_default() += 1;
    }
    for (_, p) in fleet {
        for (result, n) in p.metrics().map(|m| m.config_fetches).unwrap_or_default() {
            *report.results.entry(result).or_default() += n as usize;
        }
        if let Ok(status) = p.config_status() {
            *report.versions.entry(status.version).or_default() += 1;
            *report.sources.entry(status.source.as_str().to_string()).or_default() += 1;
        }
    }
    eprintln!("dualpub demo: config {}", report.describe());
    report
}

/// Host and port of a URL (`default_port` when it names none).
pub(crate) fn url_host_port(url: &str, default_port: u16) -> Result<(String, u16), String> {
    let rest = url.split_once("://").map(|(_, r)| r).ok_or_else(|| format!("{url:?} is not a URL"))?;
    let hostport = rest.split('/').next().unwrap_or(rest);
    match hostport.rsplit_once(':') {
        Some((h, p)) => Ok((h.trim_matches(['[', ']']).to_string(), p.parse().map_err(|_| format!("bad port in {url:?}"))?)),
        None => Ok((hostport.to_string(), default_port)),
    }
}

/// Device `i` drives around Berlin on its own circle.
fn simulated_location(i: usize, round: usize, timestamp_ms: i64) -> Location {
    let angle = (round as f64) * 0.05 + (i as f64) * 0.7;
    let radius = 0.01 + (i % 17) as f64 * 0.002;
    Location {
        latitude: 52.52 + radius * angle.sin(),
        longitude: 13.405 + radius * angle.cos(),
        accuracy: Some(3.0 + (i % 5) as f64),
        speed: Some(8.0 + (round % 7) as f64),
        bearing: Some(((angle.to_degrees() + 90.0) % 360.0 + 360.0) % 360.0),
        altitude: Some(34.0),
        timestamp_ms,
        battery: Some((1.0 - round as f64 * 0.001).clamp(0.05, 1.0)),
    }
}

/// What the independent subscribers saw, when they ran.
struct Verified {
    mqtt_delivered: usize,
    pubsub_delivered: usize,
    lost: usize,
    duplicates: usize,
    unexpected: usize,
    resumed: usize,
    same_bytes: bool,
}

/// The summary table and the `--json` report.
struct Summary {
    devices: usize,
    accepted: u64,
    rejected: u64,
    expected_mqtt: usize,
    expected_pubsub: usize,
    pubsub_devices: Vec<String>,
    verified: Option<Verified>,
    lost: Option<usize>,
    unexpected: Option<usize>,
    pending_mqtt: u64,
    pending_pubsub: u64,
    mqtt_p50: f64,
    mqtt_p99: f64,
    pubsub_p50: f64,
    pubsub_p99: f64,
    fallbacks: u64,
    retries: u64,
    circuit_openings: u64,
    recovered: u64,
    dropped: u64,
    chaos_events: u64,
    elapsed: Duration,
    rollout: f64,
    config: Option<ConfigReport>,
    reports: Option<ReportsSeen>,
}

/// The middle value (the upper one of an even count); 0 for none.
fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

impl Verified {
    /// Compares what the subscribers received with what the fleet accepted and still holds.
    fn compute(d: &Deliveries, sent: &Sent, cohort: &HashSet<String>, pending: Pending) -> Verified {
        let (m, p) = (&d.mqtt, &d.pubsub);
        let m_ids: HashSet<&str> = m.iter().map(|r| r.event_id.as_str()).collect();
        let p_ids: HashSet<&str> = p.iter().map(|r| r.event_id.as_str()).collect();
        let mqtt_delivered = sent.expected_mqtt.iter().filter(|e| m_ids.contains(e.as_str())).count();
        let pubsub_delivered = sent.expected_pubsub.iter().filter(|e| p_ids.contains(e.as_str())).count();
        // Not delivered and not still held (durably) by the SDK: lost.
        let lost = (sent.expected_mqtt.len() - mqtt_delivered).saturating_sub(pending.mqtt as usize)
            + (sent.expected_pubsub.len() - pubsub_delivered).saturating_sub(pending.pubsub as usize);
        let duplicates = (m.len() - m_ids.len()) + (p.len() - p_ids.len());
        // Accepted in this run, yet on Pub/Sub for a device outside the cohort.
        let unexpected = p.iter().filter(|r| sent.accepted_ids.contains(&r.event_id) && !cohort.contains(&r.device_id)).count();
        // Delivered now but accepted by an earlier run on the same data directory.
        let resumed: HashSet<&str> = m.iter().chain(p.iter()).map(|r| r.event_id.as_str()).filter(|e| !sent.accepted_ids.contains(*e)).collect();
        // Both backends must see the same bytes for the same eventId.
        let by_id: HashMap<&str, &[u8]> = m.iter().map(|r| (r.event_id.as_str(), r.payload.as_slice())).collect();
        let same_bytes = p.iter().all(|r| by_id.get(r.event_id.as_str()).is_none_or(|b| *b == r.payload.as_slice()));
        Verified { mqtt_delivered, pubsub_delivered, lost, duplicates, unexpected, resumed: resumed.len(), same_bytes }
    }
}

/// The median of the devices' p50 latencies on one transport (devices that published on it).
fn median_p50(metrics: &[MetricsSnapshot], transport: impl Fn(&MetricsSnapshot) -> &TransportMetrics) -> f64 {
    let p50s = metrics.iter().map(transport).filter(|t| t.published > 0);
    median(p50s.map(|t| t.latency_p50_ms).collect())
}

/// The highest p99 latency of any device on one transport.
fn max_p99(metrics: &[MetricsSnapshot], transport: impl Fn(&MetricsSnapshot) -> &TransportMetrics) -> f64 {
    metrics.iter().map(transport).map(|t| t.latency_p99_ms).fold(0.0, f64::max)
}

/// A counter summed over the fleet.
fn total(metrics: &[MetricsSnapshot], counter: impl Fn(&MetricsSnapshot) -> u64) -> u64 {
    metrics.iter().map(counter).sum()
}

impl Summary {
    /// Verifies delivery (when the subscribers ran) and totals the fleet's SDK metrics.
    fn compute(run: &Run, sent: &Sent, outcome: &Outcome) -> Summary {
        let (cohort, m) = (&run.cohort, &outcome.metrics);
        let verified = outcome.deliveries.as_ref().map(|d| Verified::compute(d, sent, &cohort.pubsub, outcome.pending));
        let mut pubsub_devices = cohort.pubsub_devices.clone();
        pubsub_devices.sort();
        Summary {
            devices: run.args.devices,
            accepted: sent.accepted,
            rejected: sent.rejected,
            expected_mqtt: sent.expected_mqtt.len(),
            expected_pubsub: sent.expected_pubsub.len(),
            pubsub_devices,
            lost: verified.as_ref().map(|v| v.lost),
            unexpected: verified.as_ref().map(|v| v.unexpected),
            verified,
            pending_mqtt: outcome.pending.mqtt,
            pending_pubsub: outcome.pending.pubsub,
            mqtt_p50: median_p50(m, |s| &s.mqtt),
            mqtt_p99: max_p99(m, |s| &s.mqtt),
            pubsub_p50: median_p50(m, |s| &s.pubsub),
            pubsub_p99: max_p99(m, |s| &s.pubsub),
            fallbacks: total(m, |s| s.fallback),
            retries: total(m, |s| s.mqtt.retries + s.pubsub.retries),
            circuit_openings: total(m, |s| s.mqtt.circuit_openings + s.pubsub.circuit_openings),
            recovered: total(m, |s| s.recovered),
            dropped: total(m, |s| s.dropped.values().sum()),
            chaos_events: outcome.chaos_events,
            elapsed: outcome.elapsed,
            rollout: run.args.rollout,
            config: run.config.clone(),
            reports: outcome.reports,
        }
    }

    /// 0 when nothing was lost and nothing reached Pub/Sub from outside the cohort, else 3.
    fn exit_code(&self) -> i32 {
        if self.lost.unwrap_or(0) == 0 && self.unexpected.unwrap_or(0) == 0 {
            0
        } else {
            3
        }
    }

    /// Prints the summary table on stdout.
    fn print_table(&self) {
        let row = |k: &str, v: String| println!("  {k:<40} {v}");
        println!("dualpub demo summary");
        row("devices", self.devices.to_string());
        match &self.config {
            Some(c) => {
                row("Pub/Sub cohort", format!("{} devices (by the config in force)", self.pubsub_devices.len()));
                row("migration config", c.describe());
            }
            None => row("Pub/Sub cohort", format!("{} devices ({} % rollout)", self.pubsub_devices.len(), self.rollout)),
        }
        row("locations accepted", format!("{} ({} rejected, {} resumed from the data dir)", self.accepted, self.rejected, self.recovered));
        match &self.verified {
            Some(v) => {
                row("MQTT delivered (subscriber)", format!("{} of {}", v.mqtt_delivered, self.expected_mqtt));
                row("Pub/Sub delivered (pull)", format!("{} of {}", v.pubsub_delivered, self.expected_pubsub));
                row("lost", v.lost.to_string());
                row("duplicates", v.duplicates.to_string());
                row("outside the cohort on Pub/Sub", v.unexpected.to_string());
                row("delivered from earlier runs", v.resumed.to_string());
                row("same bytes on both transports", v.same_bytes.to_string());
            }
            None => row("verification", "skipped (--no-verify)".into()),
        }
        row("still pending after flush", format!("mqtt {} / pubsub {}", self.pending_mqtt, self.pending_pubsub));
        row("SDK latency MQTT p50 / max p99", format!("{:.1} ms / {:.1} ms", self.mqtt_p50, self.mqtt_p99));
        row("SDK latency Pub/Sub p50 / max p99", format!("{:.1} ms / {:.1} ms", self.pubsub_p50, self.pubsub_p99));
        row("fallbacks / retries / breaker openings", format!("{} / {} / {}", self.fallbacks, self.retries, self.circuit_openings));
        row("dropped (caps)", self.dropped.to_string());
        if let Some(r) = &self.reports {
            row(
                "migration reports received",
                format!("MQTT {} / Pub/Sub {} ({} of {} devices sent their last)", r.mqtt, r.pubsub, r.devices_with_last, self.devices),
            );
        }
        if self.chaos_events > 0 {
            row("chaos events", self.chaos_events.to_string());
        }
        row("elapsed", format!("{} ms", self.elapsed.as_millis()));
    }

    /// The one-line `--json` report.
    fn json(&self) -> String {
        let v = self.verified.as_ref();
        serde_json::json!({
            "devices": self.devices,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "mqtt_delivered": v.map(|v| v.mqtt_delivered),
            "pubsub_delivered": v.map(|v| v.pubsub_delivered),
            "pubsub_devices": self.pubsub_devices,
            "lost": v.map(|v| v.lost),
            "duplicates": v.map(|v| v.duplicates),
            "unexpected": v.map(|v| v.unexpected),
            "resumed_delivered": v.map(|v| v.resumed),
            "same_bytes": v.map(|v| v.same_bytes),
            "pending_mqtt": self.pending_mqtt,
            "pending_pubsub": self.pending_pubsub,
            "recovered": self.recovered,
            "dropped": self.dropped,
            "mqtt_latency_p50_ms": self.mqtt_p50,
            "pubsub_latency_p50_ms": self.pubsub_p50,
            "fallbacks": self.fallbacks,
            "retries": self.retries,
            "circuit_openings": self.circuit_openings,
            "chaos_events": self.chaos_events,
            "reports": self.reports.map(|r| serde_json::json!({"mqtt": r.mqtt, "pubsub": r.pubsub, "devices_with_last": r.devices_with_last})),
            "config": self.config.as_ref().map(|c| serde_json::json!({
                "fetch_results": c.results, "versions": c.versions, "sources": c.sources,
            })),
            "elapsed_ms": self.elapsed.as_millis() as u64,
        })
        .to_string()
    }
}

/// `--chaos`: fault proxies in front of the broker and the Pub/Sub endpoint, and a thread that
/// keeps breaking things until [`Chaos::calm`].
struct Chaos {
    mqtt: Arc<FaultProxy>,
    pubsub: Arc<FaultProxy>,
    stop: Arc<AtomicBool>,
    events: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
    emulator: Option<Arc<dualpub_emulator::Emulator>>,
}

impl Chaos {
    /// Puts fault proxies in front of both backends and starts the fault thread.
    fn start(mqtt_host: &str, mqtt_port: u16, endpoint: &str, emulator: Option<&EmulatorHandle>) -> std::io::Result<Chaos> {
        use std::net::ToSocketAddrs;
        let resolve = |host: &str, port: u16| (host, port).to_socket_addrs()?.next().ok_or_else(|| std::io::Error::other(format!("cannot resolve {host}")));
        let mqtt = Arc::new(FaultProxy::start(resolve(mqtt_host, mqtt_port)?)?);
        let (host, port) = url_host_port(endpoint, 80).map_err(std::io::Error::other)?;
        let pubsub = Arc::new(FaultProxy::start(resolve(&host, port)?)?);
        let emulator = emulator.map(|e| e.emulator().clone());
        let stop = Arc::new(AtomicBool::new(false));
        let events = Arc::new(AtomicU64::new(0));
        let thread = {
            let (mqtt, pubsub, stop, events, emulator) = (mqtt.clone(), pubsub.clone(), stop.clone(), events.clone(), emulator.clone());
            std::thread::spawn(move || {
                use rand::Rng;
                let mut rng = rand::rng();
                while !stop.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(rng.random_range(200..800)));
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    events.fetch_add(1, Ordering::SeqCst);
                    match rng.random_range(0..5) {
                        0 => mqtt.cut_connections(),
                        1 => {
                            // A broker restart, as the SDK sees it: connections reset, refused for a while.
                            mqtt.outage();
                            std::thread::sleep(Duration::from_millis(rng.random_range(300..1500)));
                            mqtt.restore();
                        }
                        2 => pubsub.cut_connections(),
                        3 => {
                            pubsub.outage();
                            std::thread::sleep(Duration::from_millis(rng.random_range(200..1000)));
                            pubsub.restore();
                        }
                        _ => {
                            if let Some(e) = &emulator {
                                e.faults().set(dualpub_testbed::FaultPlan {
                                    fail_rate: 0.3,
                                    fail_statuses: vec![429, 500, 503],
                                    latency_ms: rng.random_range(0..100),
                                    drop_after_accept_next: rng.random_range(0..3),
                                    retry_after_secs: None,
                                    ..Default::default()
                                });
                            }
                        }
                    }
                }
            })
        };
        Ok(Chaos { mqtt, pubsub, stop, events, thread: Some(thread), emulator })
    }

    /// Stops breaking things (waiting for the fault thread) and repairs everything, so the
    /// fleet can drain.
    fn calm(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.mqtt.restore();
        self.pubsub.restore();
        if let Some(e) = &self.emulator {
            e.faults().clear();
        }
    }

    /// How many faults were injected.
    fn stop(mut self) -> u64 {
        self.calm();
        self.events.load(Ordering::SeqCst)
    }
}
