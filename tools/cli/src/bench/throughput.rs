//! `dualpub bench throughput`: the window-0 throughput target of docs/PERFORMANCE.md, measured
//! against loopback mosquitto and the project's Pub/Sub emulator (tools/emulator), in the same
//! run as the floor it is compared with.
//!
//! - **SDK**: a [`Publisher`] with `uploadWindowSecs = 0` and the rollout at 100 % (both
//!   transports owe every location) is handed `--count` locations by `send_location`, one call
//!   per location as an app reporting fixes does, as fast as the calls return; then `flush`
//!   waits until both transports acknowledged all of them (a flush also sends the last, partial
//!   Pub/Sub batch without waiting `maxBatchLatencyMs`, as the bare loop does).
//! - **Bare loops**, concurrently: rumqttc QoS 1 with the SDK's in-flight window, and reqwest
//!   posting `:publish` one request at a time with the SDK's batching (count, bytes and the
//!   per-message cost of src/transport/pubsub.rs), the same payload bytes (`dualpub::wire`).
//! - **Backlog**: an SDK told the network is unavailable (`set_network_available(false)`)
//!   accepts `--backlog` locations, durable; the time is from the network's return until both
//!   transports acknowledged all of them.
//!
//! Every run is checked by independent subscribers (an MQTT subscription and a Pub/Sub pull
//! subscription, `dualpub_testbed::subscribers`): a run whose locations did not all arrive fails.

use super::procfs;
use dualpub::{Location, MigrationConfig, Publisher, SdkConfig};
use dualpub_testbed::mosquitto::Mosquitto;
use dualpub_testbed::subscribers::{self, Subscriber};
use dualpub_testbed::{EmulatorHandle, EmulatorOptions};
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Options of `dualpub bench throughput`.
#[derive(clap::Args, Debug, Clone)]
pub struct ThroughputArgs {
    /// Locations per throughput run.
    #[arg(long, default_value_t = 20_000)]
    pub count: u64,
    /// Rounds: each runs the SDK and the bare loops (alternating which goes first) and drains a backlog.
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
    /// Locations in the backlog the SDK drains when the network comes back.
    #[arg(long, default_value_t = 10_000)]
    pub backlog: u64,
    /// A few seconds with small counts, checking only that the figures are sane (for the test
    /// suite); exits 1 when a check fails.
    #[arg(long)]
    pub smoke: bool,
    /// Print the figures as JSON instead of the markdown table.
    #[arg(long)]
    pub json: bool,
    /// Where the table and the JSON figures go.
    #[arg(long, default_value = "target/throughput")]
    pub out: PathBuf,
}

/// The target (docs/PERFORMANCE.md): the SDK's rate at least this share of the bare loops'.
pub const MIN_RATIO: f64 = 0.8;

/// The target (docs/PERFORMANCE.md): a backlog of 10,000 gone within this many seconds.
pub const MAX_DRAIN_S: f64 = 5.0;

/// The SDK's MQTT in-flight window (`WINDOW` in src/transport/mqtt.rs, also its rumqttc
/// `inflight`; its request channel holds twice as many).
const MQTT_WINDOW: usize = 64;

/// Room per message the SDK adds to the base64 data when sizing a Pub/Sub batch against
/// `maxBatchBytes` (`MESSAGE_OVERHEAD` in src/transport/pubsub.rs).
const PUBSUB_MESSAGE_OVERHEAD: usize = 512;

/// Longest a run (sending and acknowledgements) may take before it counts as failed.
const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// How long the subscribers may take to see everything after the acknowledgements.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(60);

const PROJECT: &str = "tput-bench";

/// What one system did with one batch of locations.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    /// `dualpub`, `bare` or `dualpub-backlog`.
    system: &'static str,
    /// Locations.
    locations: u64,
    /// From the first send (the network's return for a backlog) until both transports had
    /// every acknowledgement, s.
    seconds: f64,
    /// Locations per second (`locations / seconds`).
    per_sec: f64,
    /// How long the sending calls took (the SDK's `send_location` loop), s.
    send_s: Option<f64>,
    /// When the last MQTT PUBACK came, s from the start (the SDK's: sampled every 5 ms).
    mqtt_s: Option<f64>,
    /// When the last Pub/Sub answer came, s from the start (the SDK's: sampled every 5 ms).
    pubsub_s: Option<f64>,
    /// Publish requests the emulator received.
    pubsub_requests: u64,
    /// Distinct eventIds the independent subscribers received.
    delivered_mqtt: usize,
    delivered_pubsub: usize,
    /// CPU time spent while it ran, by who spent it.
    cpu: Cpu,
}

impl Run {
    fn delivered_all(&self) -> bool {
        self.delivered_mqtt as u64 == self.locations && self.delivered_pubsub as u64 == self.locations
    }
}

/// One round: the SDK and the bare loops on the same counts, one after the other.
#[derive(Debug, Clone, Serialize)]
pub struct Round {
    /// Which ran first (they alternate from round to round).
    first: &'static str,
    sdk: Run,
    bare: Run,
    /// The SDK's rate over the bare loops'.
    ratio: f64,
    /// The SDK draining a backlog when the network comes back.
    backlog: Run,
}

/// Everything the benchmark measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The build the SDK ran in (`optimised`, or `dev`: not a figure to quote).
    build: &'static str,
    rounds: Vec<Round>,
    /// Median of the rounds' ratios.
    median_ratio: f64,
    /// Median of the rounds' backlog times, s.
    median_backlog_s: f64,
    /// Median of the rounds' rates, locations per second.
    median_sdk_per_sec: f64,
    median_bare_per_sec: f64,
    /// Backlog size.
    backlog: u64,
    ratio_met: bool,
    backlog_met: bool,
}

/// Runs the benchmark; returns the exit code.
pub fn run(args: ThroughputArgs) -> i32 {
    match run_all(&args) {
        Ok(true) => 0,
        Ok(false) => 1,
        Err(e) => {
            eprintln!("dualpub bench throughput: {e}");
            1
        }
    }
}

fn run_all(args: &ThroughputArgs) -> Result<bool, String> {
    let (count, rounds, backlog) = if args.smoke { (2_000, 1, 1_000) } else { (args.count, args.rounds, args.backlog) };
    if count == 0 || rounds == 0 || backlog == 0 {
        return Err("--count, --rounds and --backlog must be at least 1".into());
    }
    let backends = Backends::start()?;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).thread_name(BARE_THREAD).enable_all().build().map_err(|e| e.to_string())?;
    let mut done = Vec::new();
    for r in 0..rounds {
        eprintln!("dualpub bench throughput: round {} of {rounds} ({count} locations, backlog {backlog})", r + 1);
        done.push(round(&backends, &rt, r, count, backlog)?);
    }
    let report = Report::of(done, backlog);
    write_outputs(args, &report)?;
    let failures = checks(&report, args.smoke);
    for f in &failures {
        eprintln!("dualpub bench throughput: FAILED: {f}");
    }
    if args.smoke && failures.is_empty() {
        eprintln!("dualpub bench throughput --smoke: ok ({} runs checked)", report.rounds.len() * 3);
    }
    Ok(failures.is_empty())
}

/// One round: the SDK and the bare loops (the first alternates), then the backlog.
fn round(b: &Backends, rt: &tokio::runtime::Runtime, r: usize, count: u64, backlog: u64) -> Result<Round, String> {
    let sdk_first = r % 2 == 1;
    let (sdk, bare) = if sdk_first {
        let sdk = sdk_run(b, &format!("sdk-{r}"), count)?;
        (sdk, bare_run(b, rt, &format!("bare-{r}"), count)?)
    } else {
        let bare = bare_run(b, rt, &format!("bare-{r}"), count)?;
        (sdk_run(b, &format!("sdk-{r}"), count)?, bare)
    };
    let backlog = backlog_run(b, &format!("backlog-{r}"), backlog)?;
    let ratio = if bare.per_sec > 0.0 { sdk.per_sec / bare.per_sec } else { f64::NAN };
    Ok(Round { first: if sdk_first { "dualpub" } else { "bare" }, sdk, bare, ratio, backlog })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

impl Report {
    fn of(rounds: Vec<Round>, backlog: u64) -> Report {
        let m = |f: fn(&Round) -> f64| median(rounds.iter().map(f).collect());
        let (median_ratio, median_backlog_s) = (m(|r| r.ratio), m(|r| r.backlog.seconds));
        Report {
            build: if cfg!(debug_assertions) { "dev" } else { "optimised" },
            median_sdk_per_sec: m(|r| r.sdk.per_sec),
            median_bare_per_sec: m(|r| r.bare.per_sec),
            ratio_met: median_ratio >= MIN_RATIO,
            // The target is for 10,000 locations: a smaller backlog says nothing about it.
            backlog_met: backlog >= 10_000 && median_backlog_s <= MAX_DRAIN_S,
            median_ratio,
            median_backlog_s,
            backlog,
            rounds,
        }
    }
}

/// Every run delivered everything on both transports; in a smoke run, the figures are sane.
fn checks(report: &Report, smoke: bool) -> Vec<String> {
    let mut failures = Vec::new();
    for (i, r) in report.rounds.iter().enumerate() {
        for run in [&r.sdk, &r.bare, &r.backlog] {
            if !run.delivered_all() {
                failures.push(format!(
                    "round {}: {} sent {} but the subscribers got {} (MQTT) and {} (Pub/Sub)",
                    i + 1,
                    run.system,
                    run.locations,
                    run.delivered_mqtt,
                    run.delivered_pubsub
                ));
            }
            if smoke && !(run.per_sec.is_finite() && run.per_sec > 0.0) {
                failures.push(format!("round {}: {} rate {} is not a positive number", i + 1, run.system, run.per_sec));
            }
        }
        if smoke && !(r.ratio.is_finite() && r.ratio > 0.0) {
            failures.push(format!("round {}: ratio {} is not a positive number", i + 1, r.ratio));
        }
    }
    failures
}

fn write_outputs(args: &ThroughputArgs, report: &Report) -> Result<(), String> {
    std::fs::create_dir_all(&args.out).map_err(|e| format!("{}: {e}", args.out.display()))?;
    let stem = if args.smoke { "throughput-smoke" } else { "throughput" };
    let table = markdown(report);
    let json = serde_json::to_string_pretty(report).unwrap_or_default();
    for (ext, text) in [("md", &table), ("json", &json)] {
        let path = args.out.join(format!("{stem}.{ext}"));
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    if args.json {
        println!("{}", serde_json::to_string(report).unwrap_or_default());
    } else {
        print!("{table}");
    }
    eprintln!("dualpub bench throughput: wrote {0}/{stem}.md and {0}/{stem}.json", args.out.display());
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The backends and the subscribers that check delivery.

/// Loopback mosquitto and the Pub/Sub emulator, for the whole benchmark.
struct Backends {
    mosquitto: Mosquitto,
    /// mosquitto's process, for its CPU time.
    mosquitto_pid: Option<u32>,
    _mosquitto_dir: tempfile::TempDir,
    emulator: EmulatorHandle,
}

impl Backends {
    fn start() -> Result<Backends, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let mosquitto = Mosquitto::start(dir.path(), None).map_err(|e| format!("mosquitto: {e}"))?;
        let emulator = EmulatorHandle::spawn(EmulatorOptions::default()).map_err(|e| format!("emulator: {e}"))?;
        Ok(Backends { mosquitto, mosquitto_pid: procfs::child_pid("mosquitto"), _mosquitto_dir: dir, emulator })
    }

    /// CPU time spent so far, by who spent it.
    fn cpu(&self) -> Cpu {
        Cpu::now(self.mosquitto_pid)
    }

    fn publish_requests(&self) -> u64 {
        self.emulator.emulator().stats().publish_requests
    }

    /// A Pub/Sub topic of its own for a run, and both subscribers listening for `device`.
    fn listen(&self, device: &str, topic: &str) -> Result<Listeners, String> {
        let url = self.emulator.url();
        subscribers::create_topic(&url, PROJECT, topic).map_err(|e| e.to_string())?;
        let pubsub = subscribers::pubsub(&url, PROJECT, topic, &format!("{topic}-verify")).map_err(|e| e.to_string())?;
        let mqtt = subscribers::mqtt("127.0.0.1", self.mosquitto.port, &dualpub::wire::mqtt_topic(dualpub::wire::DEFAULT_TOPIC_TEMPLATE, device))
            .map_err(|e| e.to_string())?;
        Ok(Listeners { mqtt, pubsub })
    }
}

/// The independent subscribers of one run.
struct Listeners {
    mqtt: Subscriber,
    pubsub: Subscriber,
}

impl Listeners {
    /// Distinct eventIds each subscriber received, waiting until it has `n` (or time is up).
    fn delivered(&self, n: u64) -> (usize, usize) {
        let distinct = |s: &Subscriber| s.collected.all().into_iter().map(|m| m.event_id).collect::<HashSet<_>>().len();
        for s in [&self.mqtt, &self.pubsub] {
            s.collected.wait_until(DELIVERY_TIMEOUT, |c| c.len() as u64 >= n);
        }
        (distinct(&self.mqtt), distinct(&self.pubsub))
    }
}

// ---------------------------------------------------------------------------------------------
// CPU time: on 2 shared cores the SDK, the bare loops and the backends compete for the same CPU.

/// The name of the bare loops' runtime threads.
const BARE_THREAD: &str = "bare-loop";

/// The name of the thread that samples the SDK's acknowledgements (counted nowhere).
const WATCH_THREAD: &str = "tput-watch";

/// CPU time (user + system), ms, by who spent it: every thread of this process from
/// /proc/self/task and mosquitto's process, in clock ticks of 10 ms per thread.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Cpu {
    /// The thread that calls the SDK (`send_location`, `flush`).
    caller: f64,
    /// The SDK's runtime and callback threads (`dualpub-worker`, `dualpub-callback`): the transports.
    sdk: f64,
    /// The SDK's store writer (`dualpub-store`): SQLite.
    store: f64,
    /// The bare loops' runtime.
    bare: f64,
    /// mosquitto and the Pub/Sub emulator.
    backends: f64,
    /// The independent subscribers (and any other thread of the process).
    subscribers: f64,
}

impl Cpu {
    fn now(mosquitto_pid: Option<u32>) -> Cpu {
        let mut c = Cpu { backends: mosquitto_pid.and_then(procfs::cpu_ms).unwrap_or(0.0), ..Cpu::default() };
        let pid = std::process::id();
        for (tid, stat) in procfs::own_threads() {
            let (Some(ms), Some(comm)) = (procfs::parse_cpu_ms(&stat), procfs::comm_of(&stat)) else { continue };
            let main = tid == pid;
            match () {
                _ if main => c.caller += ms,
                _ if comm.starts_with("dualpub-store") => c.store += ms,
                _ if comm.starts_with("dualpub-") => c.sdk += ms,
                _ if comm.starts_with(BARE_THREAD) => c.bare += ms,
                _ if comm.starts_with("pubsub-emulato") => c.backends += ms,
                _ if comm.starts_with(WATCH_THREAD) => {}
                _ => c.subscribers += ms,
            }
        }
        c
    }

    fn since(&self, earlier: &Cpu) -> Cpu {
        Cpu {
            caller: self.caller - earlier.caller,
            sdk: self.sdk - earlier.sdk,
            store: self.store - earlier.store,
            bare: self.bare - earlier.bare,
            backends: self.backends - earlier.backends,
            subscribers: self.subscribers - earlier.subscribers,
        }
    }

    /// What the system under measurement spent: the caller and the SDK's threads, or the bare loops.
    fn client(&self) -> f64 {
        self.caller + self.sdk + self.store + self.bare
    }
}

// ---------------------------------------------------------------------------------------------
// The SDK.

/// A device's SDK config: the defaults an app gets (batching, keep-alive, idle hang-up), window
/// 0, both transports owe every location, no migration reports (they would add requests).
fn sdk_config(b: &Backends, device: &str, topic: &str, dir: &std::path::Path, rows: u64) -> Result<SdkConfig, String> {
    let migration = MigrationConfig { version: 1, mqtt_enabled: true, pubsub_enabled: true, pubsub_percentage: 100.0, ..MigrationConfig::default() };
    SdkConfig::builder(device, b.mosquitto.url(), PROJECT, dir.to_string_lossy())
        .pubsub_endpoint(b.emulator.url())
        .pubsub_topic(topic)
        .migration(migration)
        .reports(false)
        .allow_insecure(true)
        .upload_window_secs(0)
        .outbox_limits(rows.max(100_000) as u32, 168)
        .build()
        .map_err(|e| e.to_string())
}

/// A fresh publisher for run `name`, with its subscribers.
fn sdk_device(b: &Backends, name: &str, n: u64) -> Result<(Publisher, Listeners, tempfile::TempDir), String> {
    let (device, topic) = (format!("tput-{name}-{}", std::process::id()), format!("tput-{name}"));
    let listeners = b.listen(&device, &topic)?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let publisher = Publisher::new(sdk_config(b, &device, &topic, dir.path(), n)?, None).map_err(|e| e.to_string())?;
    Ok((publisher, listeners, dir))
}

/// The radio harness's locations (`bench::device::location`), stamped now.
fn location(i: u64) -> Location {
    crate::bench::device::location(i, dualpub::clock::now_ms())
}

/// When each transport's acknowledged count reached `n`, s after `t0`, sampling every 5 ms.
fn watch_acks(p: &Publisher, n: u64, t0: Instant) -> (Option<f64>, Option<f64>) {
    let (mut mqtt, mut pubsub) = (None, None);
    while t0.elapsed() < RUN_TIMEOUT && (mqtt.is_none() || pubsub.is_none()) {
        let m = p.metrics();
        let now = t0.elapsed().as_secs_f64();
        if mqtt.is_none() && m.mqtt.published >= n {
            mqtt = Some(now);
        }
        if pubsub.is_none() && m.pubsub.published >= n {
            pubsub = Some(now);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    (mqtt, pubsub)
}

/// The SDK at window 0: `n` `send_location` calls as fast as they return, then `flush`.
fn sdk_run(b: &Backends, name: &str, n: u64) -> Result<Run, String> {
    let (p, listeners, _dir) = sdk_device(b, name, n)?;
    let (requests, cpu0) = (b.publish_requests(), b.cpu());
    let t0 = Instant::now();
    for i in 0..n {
        p.send_location(location(i)).map_err(|e| format!("send_location: {e}"))?;
    }
    let send_s = t0.elapsed().as_secs_f64();
    let ((mqtt_s, pubsub_s), flushed, seconds) = std::thread::scope(|s| {
        let watcher = std::thread::Builder::new().name(WATCH_THREAD.into()).spawn_scoped(s, || watch_acks(&p, n, t0)).map_err(|e| e.to_string())?;
        let flushed = p.flush(RUN_TIMEOUT);
        let seconds = t0.elapsed().as_secs_f64();
        Ok::<_, String>((watcher.join().unwrap_or((None, None)), flushed, seconds))
    })?;
    let cpu = b.cpu().since(&cpu0);
    if !flushed.completed {
        return Err(format!("{name}: flush did not complete: {flushed:?}"));
    }
    let (delivered_mqtt, delivered_pubsub) = listeners.delivered(n);
    p.close();
    Ok(Run {
        system: "dualpub",
        locations: n,
        seconds,
        per_sec: n as f64 / seconds,
        send_s: Some(send_s),
        mqtt_s,
        pubsub_s,
        pubsub_requests: b.publish_requests() - requests,
        delivered_mqtt,
        delivered_pubsub,
        cpu,
    })
}

/// The SDK holds `n` durable locations with the network unavailable; the time is from
/// `set_network_available(true)` until both transports acknowledged all of them.
fn backlog_run(b: &Backends, name: &str, n: u64) -> Result<Run, String> {
    let (p, listeners, _dir) = sdk_device(b, name, n)?;
    p.set_network_available(false);
    let all: Vec<Location> = (0..n).map(location).collect();
    for chunk in all.chunks(10_000) {
        p.send_locations(chunk.to_vec()).map_err(|e| format!("send_locations: {e}"))?;
    }
    if !p.await_durable(RUN_TIMEOUT) {
        return Err(format!("{name}: the backlog did not become durable"));
    }
    let m = p.metrics();
    if m.mqtt.published + m.pubsub.published > 0 {
        return Err(format!("{name}: something was delivered while the network was unavailable"));
    }
    let (requests, cpu0) = (b.publish_requests(), b.cpu());
    let t0 = Instant::now();
    p.set_network_available(true);
    let (mqtt_s, pubsub_s) = watch_acks(&p, n, t0);
    let cpu = b.cpu().since(&cpu0);
    let seconds = mqtt_s.zip(pubsub_s).map(|(m, q)| m.max(q)).ok_or_else(|| format!("{name}: not drained within {RUN_TIMEOUT:?}"))?;
    let (delivered_mqtt, delivered_pubsub) = listeners.delivered(n);
    p.close();
    Ok(Run {
        system: "dualpub-backlog",
        locations: n,
        seconds,
        per_sec: n as f64 / seconds,
        send_s: None,
        mqtt_s,
        pubsub_s,
        pubsub_requests: b.publish_requests() - requests,
        delivered_mqtt,
        delivered_pubsub,
        cpu,
    })
}

// ---------------------------------------------------------------------------------------------
// The bare loops.

/// One location as the bare loops send it: the SDK's wire bytes and Pub/Sub attributes.
struct Payload {
    bytes: Vec<u8>,
    event_id: String,
    timestamp_ms: i64,
}

/// `n` payloads encoded as the SDK encodes them (`dualpub::wire`, schema 2, both routes).
fn payloads(device: &str, n: u64) -> Vec<Payload> {
    let route = dualpub::wire::Route::of(true, true);
    (0..n)
        .map(|i| {
            let (event_id, loc) = (dualpub::wire::new_event_id(), location(i));
            let bytes = dualpub::wire::encode(&event_id, device, None, &loc, dualpub::wire::Acceptance { seq: i + 1, route, cfg: 1 });
            Payload { bytes, event_id, timestamp_ms: loc.timestamp_ms }
        })
        .collect()
}

/// The SDK's Pub/Sub batches over `payloads`: at most `max_count` messages and `max_bytes`
/// of cost, a message costing its base64 size plus the overhead (src/transport/pubsub.rs).
fn batches(sizes: &[usize], max_count: usize, max_bytes: usize) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < sizes.len() {
        let (mut end, mut bytes) = (start, 0);
        while end < sizes.len() && end - start < max_count {
            let c = sizes[end].div_ceil(3) * 4 + PUBSUB_MESSAGE_OVERHEAD;
            if end > start && bytes + c > max_bytes {
                break;
            }
            bytes += c;
            end += 1;
        }
        out.push(start..end);
        start = end;
    }
    out
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Message<'a> {
    data: String,
    attributes: BTreeMap<&'static str, String>,
    ordering_key: &'a str,
}

#[derive(Serialize)]
struct PublishRequest<'a> {
    messages: Vec<Message<'a>>,
}

/// The request body the SDK sends for these payloads (docs/CONTRACT.md#pubsub).
fn request_body(device: &str, batch: &[Payload]) -> Vec<u8> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let messages = batch
        .iter()
        .map(|p| Message {
            data: b64.encode(&p.bytes),
            attributes: dualpub::wire::pubsub_attributes(&dualpub::DEFAULT_ATTRIBUTES, device, None, &p.event_id, p.timestamp_ms),
            ordering_key: device,
        })
        .collect();
    serde_json::to_vec(&PublishRequest { messages }).unwrap_or_default()
}

/// rumqttc, QoS 1, the SDK's window: publishes every payload, returns when the last PUBACK came
/// (s after `t0`).
async fn bare_mqtt(port: u16, device: String, payloads: Arc<Vec<Payload>>, t0: Instant) -> Result<f64, String> {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
    let mut o = MqttOptions::new(format!("bare-{device}"), "127.0.0.1", port);
    o.set_keep_alive(Duration::from_secs(60));
    o.set_clean_session(true);
    o.set_inflight(MQTT_WINDOW as u16);
    o.set_request_channel_capacity(MQTT_WINDOW * 2);
    o.set_max_packet_size(256 * 1024, 256 * 1024);
    let (client, mut eventloop) = AsyncClient::new(o, MQTT_WINDOW * 2);
    let topic = dualpub::wire::mqtt_topic(dualpub::wire::DEFAULT_TOPIC_TEMPLATE, &device);
    let n = payloads.len();
    // The client stays alive (returned) until every PUBACK is in: dropping it ends the event loop.
    let sender = tokio::spawn(async move {
        for p in payloads.iter() {
            client.publish(&topic, QoS::AtLeastOnce, false, p.bytes.clone()).await.map_err(|e| e.to_string())?;
        }
        Ok::<_, String>(client)
    });
    let mut acked = 0;
    while acked < n {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::PubAck(_))) => acked += 1,
            Ok(_) => {}
            Err(e) => return Err(format!("bare MQTT: {e}")),
        }
    }
    let done = t0.elapsed().as_secs_f64();
    let client = sender.await.map_err(|e| e.to_string())??;
    let _ = client.disconnect().await;
    let _ = tokio::time::timeout(Duration::from_secs(2), eventloop.poll()).await;
    Ok(done)
}

/// reqwest, one `:publish` at a time with the SDK's batches; returns when the last answer came
/// (s after `t0`).
async fn bare_pubsub(url: String, device: String, payloads: Arc<Vec<Payload>>, limits: (usize, usize), t0: Instant) -> Result<f64, String> {
    let http = dualpub_testbed::http_client();
    let sizes: Vec<usize> = payloads.iter().map(|p| p.bytes.len()).collect();
    for range in batches(&sizes, limits.0, limits.1) {
        let expected = range.len();
        let body = request_body(&device, &payloads[range]);
        let resp = http.post(&url).header("content-type", "application/json").body(body).send().await.map_err(|e| format!("bare Pub/Sub: {e}"))?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| format!("bare Pub/Sub: {e}"))?;
        let ids = serde_json::from_str::<serde_json::Value>(&text).ok().and_then(|v| v["messageIds"].as_array().map(Vec::len));
        if !status.is_success() || ids != Some(expected) {
            return Err(format!("bare Pub/Sub: HTTP {status}, {ids:?} messageIds for {expected}"));
        }
    }
    Ok(t0.elapsed().as_secs_f64())
}

/// Both bare loops at once on `n` payloads (encoded before the clock starts).
fn bare_run(b: &Backends, rt: &tokio::runtime::Runtime, name: &str, n: u64) -> Result<Run, String> {
    let (device, topic) = (format!("tput-{name}-{}", std::process::id()), format!("tput-{name}"));
    let listeners = b.listen(&device, &topic)?;
    // The SDK's batch limits, read from the config an app gets.
    let c = sdk_config(b, &device, &topic, std::path::Path::new("/unused"), n)?;
    let limits = (c.pubsub.max_batch_messages as usize, c.pubsub.max_batch_bytes as usize);
    let url = format!("{}/v1/projects/{PROJECT}/topics/{topic}:publish", b.emulator.url());
    let payloads = Arc::new(payloads(&device, n));
    let (requests, cpu0) = (b.publish_requests(), b.cpu());
    let port = b.mosquitto.port;
    let t0 = Instant::now();
    let (mqtt, pubsub) = rt.block_on(async {
        let m = tokio::spawn(bare_mqtt(port, device.clone(), payloads.clone(), t0));
        let p = tokio::spawn(bare_pubsub(url, device.clone(), payloads.clone(), limits, t0));
        let (m, p) = tokio::join!(m, p);
        (m.map_err(|e| e.to_string()).and_then(|r| r), p.map_err(|e| e.to_string()).and_then(|r| r))
    });
    let cpu = b.cpu().since(&cpu0);
    let (mqtt_s, pubsub_s) = (mqtt?, pubsub?);
    let seconds = mqtt_s.max(pubsub_s);
    let (delivered_mqtt, delivered_pubsub) = listeners.delivered(n);
    Ok(Run {
        system: "bare",
        locations: n,
        seconds,
        per_sec: n as f64 / seconds,
        send_s: None,
        mqtt_s: Some(mqtt_s),
        pubsub_s: Some(pubsub_s),
        pubsub_requests: b.publish_requests() - requests,
        delivered_mqtt,
        delivered_pubsub,
        cpu,
    })
}

// ---------------------------------------------------------------------------------------------
// The report.

fn secs(s: Option<f64>) -> String {
    s.map(|s| format!("{s:.2}")).unwrap_or_else(|| "-".into())
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "**not met**"
    }
}

/// The markdown report: one row per round, the medians, the verdicts and the method.
fn markdown(r: &Report) -> String {
    let mut s = String::new();
    s.push_str("Window-0 throughput against loopback mosquitto and the Pub/Sub emulator (`dualpub bench throughput`)\n\n");
    s.push_str("| round | first | locations | dualpub s (send loop s) | dualpub loc/s | bare s | bare loc/s | dualpub / bare | last PUBACK dualpub / bare s | last Pub/Sub answer dualpub / bare s | Pub/Sub requests dualpub / bare | CPU ms dualpub (caller + SDK threads) / bare loops | CPU ms backends + subscribers, dualpub / bare run | delivered dualpub MQTT / Pub/Sub | delivered bare MQTT / Pub/Sub |\n");
    s.push_str("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for (i, x) in r.rounds.iter().enumerate() {
        let (d, b) = (&x.sdk, &x.bare);
        s.push_str(&format!(
            "| {} | {} | {} | {:.2} ({}) | {:.0} | {:.2} | {:.0} | {:.2}× | {} / {} | {} / {} | {} / {} | {:.0} / {:.0} | {:.0} / {:.0} | {} / {} | {} / {} |\n",
            i + 1,
            x.first,
            d.locations,
            d.seconds,
            secs(d.send_s),
            d.per_sec,
            b.seconds,
            b.per_sec,
            x.ratio,
            secs(d.mqtt_s),
            secs(b.mqtt_s),
            secs(d.pubsub_s),
            secs(b.pubsub_s),
            d.pubsub_requests,
            b.pubsub_requests,
            d.cpu.client(),
            b.cpu.client(),
            d.cpu.backends + d.cpu.subscribers,
            b.cpu.backends + b.cpu.subscribers,
            d.delivered_mqtt,
            d.delivered_pubsub,
            b.delivered_mqtt,
            b.delivered_pubsub,
        ));
    }
    s.push_str(&format!("| median | | | | {:.0} | | {:.0} | **{:.2}×** | | | | | | | |\n\n", r.median_sdk_per_sec, r.median_bare_per_sec, r.median_ratio));
    s.push_str("Backlog: the SDK holds the locations, durable, with the network unavailable; time from `setNetworkAvailable(true)` until both transports acknowledged all of them\n\n");
    s.push_str("| round | locations | drained s | last PUBACK s | last Pub/Sub answer s | Pub/Sub requests | CPU ms dualpub (caller + SDK threads) / backends + subscribers | delivered MQTT / Pub/Sub |\n");
    s.push_str("|---|---:|---:|---:|---:|---:|---:|---:|\n");
    for (i, x) in r.rounds.iter().enumerate() {
        let k = &x.backlog;
        s.push_str(&format!(
            "| {} | {} | {:.2} | {} | {} | {} | {:.0} / {:.0} | {} / {} |\n",
            i + 1,
            k.locations,
            k.seconds,
            secs(k.mqtt_s),
            secs(k.pubsub_s),
            k.pubsub_requests,
            k.cpu.client(),
            k.cpu.backends + k.cpu.subscribers,
            k.delivered_mqtt,
            k.delivered_pubsub
        ));
    }
    s.push_str(&format!("| median | | **{:.2}** | | | | | |\n\n", r.median_backlog_s));
    s.push_str(&format!(
        "Targets: dualpub ≥ {MIN_RATIO} × the bare loops: median {:.2}×, {}; a backlog of 10,000 in ≤ {MAX_DRAIN_S} s: median {:.2} s for {}, {}.\n\n",
        r.median_ratio,
        verdict(r.ratio_met),
        r.median_backlog_s,
        r.backlog,
        if r.backlog >= 10_000 { verdict(r.backlog_met) } else { "not measured (a smaller backlog)" }
    ));
    s.push_str(&method(r.build));
    s
}

fn method(build: &str) -> String {
    format!(
        "Method: both systems run in one process ({}) against the same loopback mosquitto and the same Pub/Sub emulator (in-process, one thread), \
each run with a device, topic and subscribers of its own; time is from the first send until both transports acknowledged every location. \
dualpub: `uploadWindowSecs` 0, rollout 100 %, the default batching (1,000 messages, 1,000,000 bytes, 500 ms), one `send_location` call per location \
as fast as they return, then `flush` (which also sends the last partial Pub/Sub batch at once). Bare: a rumqttc QoS 1 loop with the SDK's in-flight \
window ({MQTT_WINDOW}) and, concurrently, a reqwest loop posting `:publish` one request at a time with the SDK's batches, on a 2-thread tokio runtime; \
the same payload bytes, encoded before the clock starts. The two alternate which goes first. Delivered = distinct eventIds an independent MQTT \
subscriber and a Pub/Sub pull subscription received; every run must deliver everything. CPU: user + system time while the run lasted \
(/proc, 10 ms ticks per thread): dualpub = the calling thread and the SDK's threads, bare = the loops' runtime; backends = mosquitto and the emulator, \
which share the machine's cores with the system measured.\n",
        if build == "dev" { "an unoptimised dev build of the SDK: not a figure to quote" } else { "the SDK optimised as for the phone, without LTO" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_follow_the_sdk_count_and_byte_limits() {
        // 300-byte payloads cost 400 + 512 = 912: 1,000 of them fit 1,000,000 bytes.
        let sizes = vec![300; 2_500];
        let b = batches(&sizes, 1000, 1_000_000);
        assert_eq!(b, vec![0..1000, 1000..2000, 2000..2500]);
        // A byte limit of 10 messages' cost.
        let b = batches(&sizes[..25], 1000, 9_120);
        assert_eq!(b, vec![0..10, 10..20, 20..25]);
        // A message larger than the limit goes alone.
        assert_eq!(batches(&[3_000, 3_000], 1000, 1_000), vec![0..1, 1..2]);
        assert!(batches(&[], 1000, 1_000_000).is_empty());
    }

    #[test]
    fn the_bare_payload_is_the_sdks_wire_format() {
        let p = payloads("d-1", 2);
        let v: serde_json::Value = serde_json::from_slice(&p[1].bytes).unwrap();
        assert_eq!(v["eventId"], p[1].event_id.as_str());
        assert_eq!(v["deviceId"], "d-1");
        assert_eq!(v["seq"], 2);
        let body: serde_json::Value = serde_json::from_slice(&request_body("d-1", &p)).unwrap();
        assert_eq!(body["messages"].as_array().unwrap().len(), 2);
        assert_eq!(body["messages"][0]["orderingKey"], "d-1");
        assert_eq!(body["messages"][0]["attributes"]["eventId"], p[0].event_id.as_str());
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0]), 2.5);
        assert!(median(vec![]).is_nan());
    }
}
