//! `dualpub bench radio`: what each system costs a phone's cellular radio (docs/RADIO.md).
//!
//! Every system runs as a child process (the SDK through `dualpub bench radio-device`, the seed
//! design's peer on the JVM) against real mosquitto and the project's Pub/Sub emulator over TLS,
//! as production has them: mosquitto's own TLS listener, and a TLS front (a load balancer's part)
//! before the emulator, both with a certificate from a local CA the devices are given; a logging
//! proxy before each sees what a phone's radio would carry. Time is scaled by `--scale`; the
//! packet log is cut into bursts (`dualpub_testbed::radio`) and reported as markdown tables.

use super::procfs::{self, cpu_ms};
use dualpub_testbed::mosquitto::Mosquitto;
use dualpub_testbed::packet_log::{Kind, PacketLog};
use dualpub_testbed::proxy::FaultProxy;
use dualpub_testbed::radio::{self, Analysis, TlsFlights};
use dualpub_testbed::subscribers::{self, Subscriber};
use dualpub_testbed::tls::{LocalCa, TlsFront};
use dualpub_testbed::{EmulatorHandle, EmulatorOptions};
use serde::Serialize;
use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Options of `dualpub bench radio`.
#[derive(clap::Args, Debug, Clone)]
pub struct RadioArgs {
    /// Simulated seconds per real second (30: one simulated hour takes two real minutes; the
    /// SDK's shortest legal idle hang-up, 1 s, is its default 30 s divided by 30).
    #[arg(long, default_value_t = 30.0)]
    pub scale: f64,
    /// A few simulated minutes of one workload with checks that the harness works (for the
    /// test suite); exits 1 when a check fails.
    #[arg(long)]
    pub smoke: bool,
    /// Workloads to run (default: all): 1hz, 0.2hz, 1/30hz, outage.
    #[arg(long, value_delimiter = ',')]
    pub workloads: Vec<String>,
    /// Systems to run (default: all): dualpub-w0, peer.
    #[arg(long, value_delimiter = ',')]
    pub systems: Vec<String>,
    /// Class path of the peer (tools/peer, built by scripts/radio); without it the peer is
    /// not run, which --smoke and a full run refuse unless --systems leaves it out.
    #[arg(long)]
    pub peer_classpath: Option<String>,
    /// The java launcher for the peer.
    #[arg(long, default_value = "java")]
    pub java: String,
    /// Where the table, the JSON figures and the packet logs go.
    #[arg(long, default_value = "target/radio")]
    pub out: PathBuf,
    /// Do not count fsyncs (they are counted with `strace -f -c` when strace is installed).
    #[arg(long)]
    pub no_fsync: bool,
    /// Run the systems of a workload one after the other instead of side by side.
    #[arg(long)]
    pub sequential: bool,
}

/// A system under measurement. Adding a variant (an SDK upload window) is one entry in
/// [`SYSTEMS`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum System {
    /// The SDK, with an upload window of this many simulated seconds (0: as it is today).
    Dualpub { window_secs: u32 },
    /// The seed design's reference implementation (tools/peer).
    Peer,
}

/// Every system a full run measures.
pub const SYSTEMS: &[System] = &[System::Dualpub { window_secs: 30 }, System::Dualpub { window_secs: 0 }, System::Peer];

impl System {
    fn name(&self) -> String {
        match self {
            System::Dualpub { window_secs } => format!("dualpub-w{window_secs}"),
            System::Peer => "peer".into(),
        }
    }
}

/// A workload, in simulated time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Workload {
    /// Its name in the table.
    pub name: &'static str,
    /// Simulated seconds between two locations.
    pub interval_s: f64,
    /// Simulated seconds of sending.
    pub duration_s: f64,
    /// Both backends are down (connections cut, new ones refused) from the start for this many
    /// simulated seconds, then back.
    pub outage_s: Option<f64>,
}

/// Real seconds the outage workload waits, after its drain, for a backlog to leave: the SDK's
/// reconnect and retry backoffs are not scaled (up to 120 s for MQTT, 60 s for Pub/Sub).
const SETTLE_MAX_S: f64 = 150.0;

/// Every workload a full run measures. A new one is one entry here.
pub const WORKLOADS: &[Workload] = &[
    Workload { name: "1hz", interval_s: 1.0, duration_s: 3600.0, outage_s: None },
    Workload { name: "0.2hz", interval_s: 5.0, duration_s: 3600.0, outage_s: None },
    Workload { name: "1/30hz", interval_s: 30.0, duration_s: 3600.0, outage_s: None },
    // An hour down at 1/5 Hz, then 15 minutes up at the same rate.
    Workload { name: "outage", interval_s: 1.0, duration_s: 4500.0, outage_s: Some(3600.0) },
];

/// The --smoke workload: three simulated minutes at 1 Hz.
pub const SMOKE: Workload = Workload { name: "smoke-1hz", interval_s: 1.0, duration_s: 180.0, outage_s: None };

/// Simulated seconds of quiet after the last location that still belong to the run (the SDK's
/// idle hang-up, 30 s, and the peer's keep-alive, 60 s, fall inside it).
const DRAIN_S: f64 = 90.0;

const PROJECT: &str = "radio-bench";
const TOPIC: &str = "location-updates";

impl Workload {
    fn count(&self) -> u64 {
        (self.duration_s / self.interval_s).round() as u64
    }
}

/// What one system did in one workload.
#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    workload: String,
    system: String,
    scale: f64,
    sent: u64,
    /// The packet log from the process's launch to `done`, analysed.
    analysis: Analysis,
    /// Multiply totals by this for "per simulated hour".
    per_hour: f64,
    /// Publish requests the emulator received.
    pubsub_requests: u64,
    /// Distinct eventIds the independent subscribers received.
    delivered_mqtt: usize,
    delivered_pubsub: usize,
    /// CPU time (user + system) of the publishing process between `start` and `done`, ms.
    cpu_ms: f64,
    /// fsync + fdatasync calls over the process's life (None: not counted).
    fsyncs: Option<u64>,
    /// What the process said when done.
    device: serde_json::Value,
    outage: Option<OutageFigures>,
    /// The TLS handshakes in the packet log, per backend (told apart by their size).
    tls_mqtt: TlsFlights,
    tls_pubsub: TlsFlights,
    /// Full and resumed handshakes the Pub/Sub TLS front counted itself (a check of the sizes).
    pubsub_front_full: u64,
    pubsub_front_resumed: u64,
    /// The packet log file.
    log: String,
    /// `start` and `done` on the packet log's clock, real ms.
    start_ms: f64,
    done_ms: f64,
}

/// What became of the locations sent during the outage (`seq` 1 to `sent`) on one backend.
#[derive(Debug, Clone, Serialize)]
pub struct Backlog {
    /// Locations sent while the backends were down.
    sent: u64,
    /// How many of them the backend's subscriber received (distinct `seq`).
    delivered: u64,
    /// Real seconds from the restore to the arrival of the last of them, when all arrived (the
    /// SDK's backoffs are not scaled, so this is not multiplied by the scale).
    done_after_real_s: Option<f64>,
}

impl Backlog {
    fn of(s: &Subscriber, sent: u64, restore_wall_ms: i64) -> Backlog {
        let mut seen: std::collections::HashMap<u64, i64> = std::collections::HashMap::new();
        for m in s.collected.all() {
            let seq = serde_json::from_slice::<serde_json::Value>(&m.payload).ok().and_then(|v| v["seq"].as_u64());
            if let Some(seq) = seq.filter(|q| (1..=sent).contains(q)) {
                let t = seen.entry(seq).or_insert(m.received_at_ms);
                *t = (*t).min(m.received_at_ms);
            }
        }
        let delivered = seen.len() as u64;
        let done_after_real_s = (delivered == sent).then(|| seen.values().max().map(|&t| (t - restore_wall_ms) as f64 / 1000.0)).flatten();
        Backlog { sent, delivered, done_after_real_s }
    }

    fn cell(&self) -> String {
        match self.done_after_real_s {
            Some(t) => format!("{}/{} in {t:.1} s", self.delivered, self.sent),
            None => format!("{}/{}", self.delivered, self.sent),
        }
    }
}

/// The outage workload's own figures.
#[derive(Debug, Clone, Serialize)]
pub struct OutageFigures {
    /// Connection attempts (forwarded or refused) during the outage, per backend.
    attempts_mqtt: u64,
    attempts_pubsub: u64,
    /// The locations sent during the outage, per backend.
    backlog_mqtt: Backlog,
    backlog_pubsub: Backlog,
    /// Pub/Sub requests that reached the emulator from the restore until every location sent
    /// during the outage had arrived there (None: they never all did).
    backlog_pubsub_requests: Option<u64>,
    /// The packet log from `start` to the restore, analysed.
    during: Analysis,
    /// The packet log from the restore to `done`, analysed.
    after: Analysis,
}

/// Runs the harness; returns the exit code.
pub fn run(args: RadioArgs) -> i32 {
    match run_all(&args) {
        Ok(true) => 0,
        Ok(false) => 1,
        Err(e) => {
            eprintln!("dualpub bench radio: {e}");
            1
        }
    }
}

fn select<T: Copy>(all: &[T], wanted: &[String], name: impl Fn(&T) -> String) -> Result<Vec<T>, String> {
    if wanted.is_empty() {
        return Ok(all.to_vec());
    }
    wanted.iter().map(|w| all.iter().find(|x| name(x) == *w).copied().ok_or_else(|| format!("unknown {w:?}"))).collect()
}

fn run_all(args: &RadioArgs) -> Result<bool, String> {
    if !(args.scale.is_finite() && args.scale >= 1.0) {
        return Err(format!("--scale must be at least 1, got {}", args.scale));
    }
    let workloads = if args.smoke { vec![SMOKE] } else { select(WORKLOADS, &args.workloads, |w| w.name.to_string())? };
    let systems = select(SYSTEMS, &args.systems, System::name)?;
    if systems.contains(&System::Peer) && args.peer_classpath.is_none() {
        return Err("the peer needs --peer-classpath (scripts/radio builds it), or leave it out with --systems".into());
    }
    std::fs::create_dir_all(&args.out).map_err(|e| format!("{}: {e}", args.out.display()))?;
    let strace = !args.no_fsync && Command::new("strace").arg("-V").output().is_ok_and(|o| o.status.success());
    let mosq_dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let ca = LocalCa::new();
    let files = ca.write(mosq_dir.path()).map_err(|e| format!("CA files: {e}"))?;
    let mosquitto = Mosquitto::start(mosq_dir.path(), Some(&files)).map_err(|e| format!("mosquitto: {e}"))?;
    let beds = Beds { mosquitto: &mosquitto, ca: &ca, ca_file: &files.ca };
    let mut results = Vec::new();
    for w in &workloads {
        eprintln!(
            "dualpub bench radio: {} ({} locations, {:.0} simulated s, {:.1} real s at scale {}) for {}",
            w.name,
            w.count(),
            w.duration_s + DRAIN_S,
            (w.duration_s + DRAIN_S) / args.scale,
            args.scale,
            systems.iter().map(System::name).collect::<Vec<_>>().join(", ")
        );
        let runs: Vec<Result<RunResult, String>> = if args.sequential {
            systems.iter().map(|s| run_one(args, *s, w, &beds, strace)).collect()
        } else {
            std::thread::scope(|scope| {
                let handles: Vec<_> = systems.iter().map(|s| scope.spawn(|| run_one(args, *s, w, &beds, strace))).collect();
                handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err("a run panicked".into()))).collect()
            })
        };
        for r in runs {
            results.push(r?);
        }
    }
    let table = markdown(&results, args, strace);
    print!("{table}");
    let md = args.out.join(if args.smoke { "radio-smoke.md" } else { "radio.md" });
    std::fs::write(&md, &table).map_err(|e| format!("{}: {e}", md.display()))?;
    let json = args.out.join(if args.smoke { "radio-smoke.json" } else { "radio.json" });
    std::fs::write(&json, serde_json::to_string_pretty(&results).unwrap_or_default()).map_err(|e| format!("{}: {e}", json.display()))?;
    eprintln!("dualpub bench radio: wrote {} and {}", md.display(), json.display());
    if args.smoke {
        let failures = smoke_checks(&results);
        for f in &failures {
            eprintln!("dualpub bench radio --smoke: FAILED: {f}");
        }
        if failures.is_empty() {
            eprintln!("dualpub bench radio --smoke: ok ({} runs checked)", results.len());
        }
        return Ok(failures.is_empty());
    }
    Ok(true)
}

/// What every run shares: the broker (its TLS listener for the devices, its plain one for the
/// verifying subscriber) and the CA the devices trust.
struct Beds<'a> {
    mosquitto: &'a Mosquitto,
    ca: &'a LocalCa,
    ca_file: &'a Path,
}

/// A child process speaking the device protocol.
struct Device {
    child: Child,
    /// The process whose CPU time is read (strace's child when strace wraps it).
    pid: u32,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    strace_out: Option<PathBuf>,
}

impl Device {
    fn spawn(mut command: Command, strace_out: Option<PathBuf>) -> Result<Device, String> {
        let program = format!("{command:?}");
        if let Some(out) = &strace_out {
            let mut wrapped = Command::new("strace");
            wrapped.args(["-f", "-c", "--seccomp-bpf", "-e", "trace=fsync,fdatasync", "-o"]).arg(out).arg("--").arg(command.get_program());
            wrapped.args(command.get_args());
            command = wrapped;
        }
        let mut child = command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().map_err(|e| format!("{program}: {e}"))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stdin = child.stdin.take();
        let pid = child.id();
        Ok(Device { child, pid, stdin, lines, strace_out })
    }

    /// Waits for a line starting with `prefix`; returns the rest.
    fn expect(&self, prefix: &str, timeout: Duration) -> Result<String, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if l.starts_with(prefix) => return Ok(l[prefix.len()..].trim().to_string()),
                Ok(_) => continue,
                Err(_) => return Err(format!("no `{prefix}` within {timeout:?}")),
            }
        }
    }

    fn say(&mut self, line: &str) -> Result<(), String> {
        let stdin = self.stdin.as_mut().ok_or("stdin closed")?;
        writeln!(stdin, "{line}").and_then(|()| stdin.flush()).map_err(|e| e.to_string())
    }

    /// Resolves the measured pid once the process under strace exists.
    fn resolve_pid(&mut self) {
        if self.strace_out.is_none() {
            return;
        }
        if let Some(pid) = procfs::first_child(self.child.id()) {
            self.pid = pid;
        }
    }

    /// Closes stdin and waits for the exit (≤ 20 s, then kills); returns the fsync count.
    fn finish(mut self) -> Option<u64> {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if !matches!(self.child.try_wait(), Ok(Some(_))) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        self.strace_out.as_deref().and_then(fsyncs_from_strace)
    }
}

/// The calls column of `strace -c` for fsync and fdatasync.
fn fsyncs_from_strace(path: &Path) -> Option<u64> {
    parse_strace_fsyncs(&std::fs::read_to_string(path).ok()?)
}

fn parse_strace_fsyncs(text: &str) -> Option<u64> {
    let mut total = 0;
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if let Some(name) = f.last() {
            if *name == "fsync" || *name == "fdatasync" {
                // % time, seconds, usecs/call, calls, [errors], syscall
                total += f.get(3).and_then(|c| c.parse::<u64>().ok())?;
            }
        }
    }
    Some(total)
}

/// The command that starts `system` as a device.
fn device_command(args: &RadioArgs, system: System, w: &Workload, id: &str, urls: (&str, &str), ca_file: &Path, data_dir: &Path) -> Result<Command, String> {
    let (mqtt_url, endpoint) = urls;
    let interval_us = (w.interval_s / args.scale * 1e6).round() as u64;
    let drain_ms = (DRAIN_S / args.scale * 1000.0).round() as u64;
    let common = [
        ("--mqtt-url", mqtt_url.to_string()),
        ("--pubsub-endpoint", endpoint.to_string()),
        ("--project", PROJECT.to_string()),
        ("--topic", TOPIC.to_string()),
        ("--device-id", id.to_string()),
        ("--count", w.count().to_string()),
        ("--interval-us", interval_us.to_string()),
        ("--scale", args.scale.to_string()),
        ("--drain-ms", drain_ms.to_string()),
        ("--settle-max-ms", if w.outage_s.is_some() { (SETTLE_MAX_S * 1000.0) as u64 } else { 0 }.to_string()),
        ("--ca-file", ca_file.display().to_string()),
    ];
    let mut c = match system {
        System::Dualpub { window_secs } => {
            let exe = std::env::current_exe().map_err(|e| e.to_string())?;
            let mut c = Command::new(exe);
            c.args(["bench", "radio-device", "--data-dir"]).arg(data_dir).arg("--window-secs").arg(window_secs.to_string());
            c
        }
        System::Peer => {
            let cp = args.peer_classpath.as_deref().ok_or("no --peer-classpath")?;
            let mut c = Command::new(&args.java);
            // The JDK HTTP client keeps an idle connection 1,200 s: scaled like the rest.
            let keepalive = ((1200.0 / args.scale).round() as u64).max(1);
            c.arg(format!("-Djdk.httpclient.keepalive.timeout={keepalive}")).args(["-cp", cp, "io.dualpub.peer.PeerKt"]);
            c
        }
    };
    for (k, v) in common {
        c.arg(k).arg(v);
    }
    Ok(c)
}

/// Watches, from the restore on, for every location sent during the outage (`seq` 1 to `sent`)
/// to arrive on Pub/Sub, and returns how many publish requests had reached the emulator by
/// then (a request for a location sent after the restore may be among them: an upper bound).
fn count_backlog_requests(emulator: &EmulatorHandle, sub: &Subscriber, sent: u64) -> std::thread::JoinHandle<Option<u64>> {
    let (emulator, collected) = (emulator.emulator().clone(), sub.collected.clone());
    let before = emulator.stats().publish_requests;
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs_f64(SETTLE_MAX_S + 120.0);
        while Instant::now() < deadline {
            let seqs: HashSet<u64> = collected
                .all()
                .iter()
                .filter_map(|m| serde_json::from_slice::<serde_json::Value>(&m.payload).ok().and_then(|v| v["seq"].as_u64()))
                .filter(|q| (1..=sent).contains(q))
                .collect();
            if seqs.len() as u64 == sent {
                return Some(emulator.stats().publish_requests - before);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    })
}

fn run_one(args: &RadioArgs, system: System, w: &Workload, beds: &Beds, strace: bool) -> Result<RunResult, String> {
    let name = format!("{}-{}", system.name(), w.name.replace('/', "_"));
    let id = format!("radio-{name}-{}", std::process::id());
    let log = PacketLog::new();
    let emulator = EmulatorHandle::spawn(EmulatorOptions::default()).map_err(|e| format!("emulator: {e}"))?;
    subscribers::create_topic(&emulator.url(), PROJECT, TOPIC).map_err(|e| e.to_string())?;
    let pubsub_sub = subscribers::pubsub(&emulator.url(), PROJECT, TOPIC, "radio-verify").map_err(|e| e.to_string())?;
    let mqtt_sub = subscribers::mqtt("127.0.0.1", beds.mosquitto.port, &format!("device/telemetry/{id}")).map_err(|e| e.to_string())?;
    let mqtts_port = beds.mosquitto.tls_port.ok_or("mosquitto has no TLS listener")?;
    let mqtt_proxy = FaultProxy::start_logged(([127, 0, 0, 1], mqtts_port).into(), log.clone(), "mqtt").map_err(|e| e.to_string())?;
    let pubsub_front = TlsFront::start(emulator.addr(), beds.ca).map_err(|e| format!("TLS front: {e}"))?;
    let pubsub_proxy = FaultProxy::start_logged(([127, 0, 0, 1], pubsub_front.port).into(), log.clone(), "pubsub").map_err(|e| e.to_string())?;
    let urls = (format!("mqtts://127.0.0.1:{}", mqtt_proxy.port), format!("https://127.0.0.1:{}", pubsub_proxy.port));
    let data_dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let log_path = args.out.join(format!("{name}.tsv"));
    let strace_out = strace.then(|| args.out.join(format!("{name}.strace")));
    let command = device_command(args, system, w, &id, (&urls.0, &urls.1), beds.ca_file, data_dir.path())?;
    let mut device = Device::spawn(command, strace_out)?;
    device.expect("ready", Duration::from_secs(120)).map_err(|e| format!("{name}: {e}"))?;
    device.resolve_pid();
    if w.outage_s.is_some() {
        mqtt_proxy.outage();
        pubsub_proxy.outage();
    }
    let cpu0 = cpu_ms(device.pid);
    let start = Instant::now();
    device.say("start")?;
    let mut restore = None;
    let mut backlog_requests = None;
    if let Some(outage_s) = w.outage_s {
        std::thread::sleep(Duration::from_secs_f64(outage_s / args.scale));
        let sent_down = (outage_s / w.interval_s).ceil() as u64;
        backlog_requests = Some(count_backlog_requests(&emulator, &pubsub_sub, sent_down));
        mqtt_proxy.restore();
        pubsub_proxy.restore();
        restore = Some((Instant::now(), subscribers::now_ms()));
    }
    let real_s = (w.duration_s + DRAIN_S) / args.scale + if w.outage_s.is_some() { SETTLE_MAX_S } else { 0.0 };
    let done = device.expect("done", Duration::from_secs_f64(real_s + 120.0)).map_err(|e| format!("{name}: {e}"))?;
    let end = Instant::now();
    let cpu1 = cpu_ms(device.pid);
    let device_figures: serde_json::Value = serde_json::from_str(&done).unwrap_or(serde_json::Value::Null);
    let fsyncs = device.finish();
    // The subscribers read the backends directly (not through the proxies): give them a moment.
    let published = emulator.emulator().stats().published_messages as usize;
    pubsub_sub.collected.wait_until(Duration::from_secs(10), |c| c.len() >= published);
    // Every PUBACK the process counted is a message the broker took, on its way to the subscriber.
    let mqtt_acked = device_figures["mqttAcked"].as_u64().unwrap_or(0) as usize;
    mqtt_sub.collected.wait_until(Duration::from_secs(10), |c| c.len() >= mqtt_acked);
    std::thread::sleep(Duration::from_millis(300));
    let entries = log.entries();
    log.write_tsv(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
    let (from, to) = (log.micros_at(start), log.micros_at(end));
    // Everything the process sent counts, from its launch: the peer connects before `start`.
    let analysis = radio::analyse(&entries, args.scale, 0, to);
    let outage = restore.map(|(at, wall_ms)| {
        let r = log.micros_at(at);
        let attempts =
            |b: &str| entries.iter().filter(|e| e.backend == b && e.t_us >= from && e.t_us < r && matches!(e.kind, Kind::Open | Kind::Refused)).count() as u64;
        // Location i goes out at i × interval: those before the restore have seq 1 ..= this.
        let sent_down = (w.outage_s.unwrap_or(0.0) / w.interval_s).ceil() as u64;
        OutageFigures {
            attempts_mqtt: attempts("mqtt"),
            attempts_pubsub: attempts("pubsub"),
            backlog_mqtt: Backlog::of(&mqtt_sub, sent_down, wall_ms),
            backlog_pubsub: Backlog::of(&pubsub_sub, sent_down, wall_ms),
            backlog_pubsub_requests: backlog_requests.take().and_then(|h| h.join().ok()).flatten(),
            during: radio::analyse(&entries, args.scale, from, r),
            after: radio::analyse(&entries, args.scale, r, to),
        }
    });
    let distinct = |s: &Subscriber| s.collected.all().into_iter().map(|m| m.event_id).collect::<HashSet<_>>().len();
    let front = pubsub_front.handshakes();
    Ok(RunResult {
        workload: w.name.to_string(),
        system: system.name(),
        scale: args.scale,
        sent: w.count(),
        analysis,
        per_hour: 3600.0 / w.duration_s,
        pubsub_requests: emulator.emulator().stats().publish_requests,
        delivered_mqtt: distinct(&mqtt_sub),
        delivered_pubsub: distinct(&pubsub_sub),
        cpu_ms: match (cpu0, cpu1) {
            (Some(a), Some(b)) => b - a,
            _ => f64::NAN,
        },
        fsyncs,
        device: device_figures,
        outage,
        tls_mqtt: TlsFlights::of(&entries, "mqtt"),
        tls_pubsub: TlsFlights::of(&entries, "pubsub"),
        pubsub_front_full: front.full,
        pubsub_front_resumed: front.resumed,
        log: log_path.display().to_string(),
        start_ms: from as f64 / 1000.0,
        done_ms: to as f64 / 1000.0,
    })
}

fn per_1k(x: f64, n: u64) -> f64 {
    if n == 0 {
        f64::NAN
    } else {
        x * 1000.0 / n as f64
    }
}

/// The markdown report: the main table, the outage table, and how it was made.
fn markdown(results: &[RunResult], args: &RadioArgs, strace: bool) -> String {
    let mut s = String::new();
    s.push_str(&format!("Radio cost per simulated hour (time scaled ×{}; tail T = 10 s unless stated; docs/RADIO.md)\n\n", args.scale));
    s.push_str("| workload | system | locations | promotions/h | radio-on s/h | single-transport bursts/h | promotions/h T=4 s | radio-on s/h T=4 s | promotions/h T=11.6 s | radio-on s/h T=11.6 s | packets/location | MQTT B up/down per location | Pub/Sub B up/down per location | app-layer B per location MQTT / Pub/Sub | MQTT connections | Pub/Sub requests/1k locations | CPU ms/1k locations | fsyncs | delivered MQTT/Pub/Sub |\n");
    s.push_str("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for r in results.iter().filter(|r| r.outage.is_none()) {
        let a = &r.analysis;
        let h = r.per_hour;
        let c = |i: usize| (a.costs[i].promotions as f64 * h, a.costs[i].radio_on_s * h);
        let (p10, on10) = c(0);
        let (p4, on4) = c(1);
        let (p116, on116) = c(2);
        let b = |k: &str| a.backends.get(k).cloned().unwrap_or_default();
        let (m, p) = (b("mqtt"), b("pubsub"));
        let n = r.sent.max(1) as f64;
        s.push_str(&format!(
            "| {} | {} | {} | {:.1} | {:.0} | {:.1} | {:.1} | {:.0} | {:.1} | {:.0} | {:.2} | {:.0} / {:.0} | {:.0} / {:.0} | {} | {} | {:.0} | {:.0} | {} | {} / {} |\n",
            r.workload,
            r.system,
            r.sent,
            p10,
            on10,
            a.costs[0].single_backend_bursts as f64 * h,
            p4,
            on4,
            p116,
            on116,
            a.packets as f64 / n,
            m.bytes_up as f64 / n,
            m.bytes_down as f64 / n,
            p.bytes_up as f64 / n,
            p.bytes_down as f64 / n,
            app_bytes(&r.device, n),
            m.connections,
            per_1k(r.pubsub_requests as f64, r.sent),
            per_1k(r.cpu_ms, r.sent),
            r.fsyncs.map(|f| f.to_string()).unwrap_or_else(|| "-".into()),
            r.delivered_mqtt,
            r.delivered_pubsub,
        ));
    }
    let outages: Vec<&RunResult> = results.iter().filter(|r| r.outage.is_some()).collect();
    if !outages.is_empty() {
        let interval = WORKLOADS.iter().find(|w| w.outage_s.is_some()).map_or(f64::NAN, |w| w.interval_s);
        s.push_str(&format!("\nOutage: both backends down for the first simulated hour (connections cut, new ones refused; {:.0} real s), then up for 15 simulated minutes; a location every {interval} simulated s throughout; the run ends once nothing is owed or {SETTLE_MAX_S:.0} real s after the drain. Totals over the run, not per hour\n\n", 3600.0 / args.scale));
        s.push_str("| system | locations | connection attempts during the outage MQTT / Pub/Sub | promotions in the outage (T=10 s) | locations sent in the outage: delivered, and real s from the restore until the last of them arrived, MQTT / Pub/Sub | Pub/Sub requests from the restore until the last of them arrived | after the restore: promotions (T=10 s) | after the restore: radio-on s | after the restore: MQTT connections | Pub/Sub requests that reached the emulator | delivered MQTT / Pub/Sub |\n");
        s.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        for r in outages {
            let Some(o) = &r.outage else { continue };
            s.push_str(&format!(
                "| {} | {} | {} / {} | {} | {} / {} | {} | {} | {:.0} | {} | {} | {} / {} |\n",
                r.system,
                r.sent,
                o.attempts_mqtt,
                o.attempts_pubsub,
                o.during.costs[0].promotions,
                o.backlog_mqtt.cell(),
                o.backlog_pubsub.cell(),
                o.backlog_pubsub_requests.map_or("-".to_string(), |n| n.to_string()),
                o.after.costs[0].promotions,
                o.after.costs[0].radio_on_s,
                o.after.backends.get("mqtt").map(|b| b.connections).unwrap_or(0),
                r.pubsub_requests,
                r.delivered_mqtt,
                r.delivered_pubsub,
            ));
        }
    }
    s.push_str(&tls_table(results));
    s.push_str(&format!(
        "\nPer hour = over the workload plus {DRAIN_S:.0} simulated s of quiet after it, divided by the workload's hours. Packets = chunks read by the logging proxies plus connection opens, closes and refusals. CPU: user + system time of the publishing process between start and done ({}). fsyncs: {}.\n",
        if cfg!(debug_assertions) { "the SDK from an unoptimised dev build: not a CPU figure to quote" } else { "the SDK optimised as for the phone, without LTO" },
        if strace { "fsync + fdatasync over the process's life (strace -f -c)" } else { "not counted (no strace, or --no-fsync)" }
    ));
    s
}

/// The TLS table: each run's handshakes per backend, full and resumed, and what they cost.
fn tls_table(results: &[RunResult]) -> String {
    let mut s = String::from("\nTLS 1.3 handshakes, told apart by the size of the server's first flight (a resumed one carries no certificate chain; docs/RADIO.md, \"TLS\"); bytes are the client's first flight up and the server's first flight down, per handshake. Per burst: every handshake byte of both backends over the promotions at T = 10 s\n\n");
    s.push_str("| workload | system | MQTT full / resumed | MQTT reconnects resumed | Pub/Sub full / resumed (the TLS front's count) | MQTT B up/down per full / resumed | Pub/Sub B up/down per full / resumed | handshake B per burst | handshake B per location |\n");
    s.push_str("|---|---|---:|---:|---:|---:|---:|---:|---:|\n");
    let mean = |bytes: u64, n: u64| if n == 0 { "-".to_string() } else { format!("{:.0}", bytes as f64 / n as f64) };
    let sizes = |t: &TlsFlights| {
        format!(
            "{}/{} / {}/{}",
            mean(t.full_bytes_up, t.full),
            mean(t.full_bytes_down, t.full),
            mean(t.resumed_bytes_up, t.resumed),
            mean(t.resumed_bytes_down, t.resumed)
        )
    };
    for r in results {
        let (m, p) = (&r.tls_mqtt, &r.tls_pubsub);
        let bytes = m.bytes() + p.bytes();
        s.push_str(&format!(
            "| {} | {} | {} / {} | {} | {} / {} ({} / {}) | {} | {} | {} | {:.1} |\n",
            r.workload,
            r.system,
            m.full,
            m.resumed,
            m.resumed_share_of_reconnects().map_or("-".to_string(), |x| format!("{:.0} %", x * 100.0)),
            p.full,
            p.resumed,
            r.pubsub_front_full,
            r.pubsub_front_resumed,
            sizes(m),
            sizes(p),
            mean(bytes, r.analysis.costs[0].promotions as u64),
            bytes as f64 / r.sent.max(1) as f64,
        ));
    }
    s
}

/// The application-layer bytes a system reported sending (MQTT payloads, Pub/Sub request
/// bodies, every attempt) per location, `MQTT / Pub/Sub`.
fn app_bytes(device: &serde_json::Value, locations: f64) -> String {
    match (device["mqttBytesSent"].as_u64(), device["pubsubBytesSent"].as_u64()) {
        (Some(m), Some(p)) => format!("{:.0} / {:.0}", m as f64 / locations, p as f64 / locations),
        _ => "-".into(),
    }
}

/// What --smoke checks: each run saw both transports, delivered every location on both, and its
/// analysis is consistent.
fn smoke_checks(results: &[RunResult]) -> Vec<String> {
    let mut failures = Vec::new();
    for r in results {
        let who = format!("{} {}", r.system, r.workload);
        for backend in ["mqtt", "pubsub"] {
            let b = r.analysis.backends.get(backend).cloned().unwrap_or_default();
            if b.bytes_up == 0 || b.bytes_down == 0 {
                failures.push(format!("{who}: the proxy saw no {backend} traffic both ways ({b:?})"));
            }
        }
        for c in &r.analysis.costs {
            if c.promotions < 1 {
                failures.push(format!("{who}: no promotion at T = {} s", c.tail_s));
            }
            if c.radio_on_s + 1e-9 < c.tail_s * c.promotions as f64 {
                failures.push(format!("{who}: radio-on {} s < T × promotions at T = {} s", c.radio_on_s, c.tail_s));
            }
        }
        let p = |t: f64| r.analysis.costs.iter().find(|c| c.tail_s == t).map(|c| c.promotions).unwrap_or(0);
        if !(p(4.0) >= p(10.0) && p(10.0) >= p(11.6)) {
            failures.push(format!("{who}: promotions must not grow with the tail: {} / {} / {}", p(4.0), p(10.0), p(11.6)));
        }
        if r.delivered_mqtt as u64 != r.sent || r.delivered_pubsub as u64 != r.sent {
            failures.push(format!("{who}: sent {} but the subscribers got {} (MQTT) and {} (Pub/Sub)", r.sent, r.delivered_mqtt, r.delivered_pubsub));
        }
        if r.analysis.backends.get("mqtt").is_none_or(|b| b.connections == 0) {
            failures.push(format!("{who}: no MQTT connection seen"));
        }
        if (r.tls_pubsub.full, r.tls_pubsub.resumed) != (r.pubsub_front_full, r.pubsub_front_resumed) {
            failures.push(format!(
                "{who}: Pub/Sub handshakes told apart by size ({} full, {} resumed) disagree with the TLS front's count ({} full, {} resumed)",
                r.tls_pubsub.full, r.tls_pubsub.resumed, r.pubsub_front_full, r.pubsub_front_resumed
            ));
        }
        if r.tls_mqtt.full == 0 {
            failures.push(format!("{who}: no full TLS handshake with mosquitto"));
        }
        // A device with an upload window connects once a burst: its sessions must resume.
        if r.system.starts_with("dualpub-w") && r.system != "dualpub-w0" && r.tls_mqtt.resumed_share_of_reconnects().is_some_and(|x| x < 0.9) {
            failures.push(format!("{who}: under 90 % of the MQTT reconnects resumed their TLS session: {:?}", r.tls_mqtt));
        }
    }
    failures
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fsyncs_are_summed_from_strace_c() {
        let text = "% time     seconds  usecs/call     calls    errors syscall\n------ ----------- ----------- --------- --------- ----------------\n 80.00    0.000400          40        10           fdatasync\n 20.00    0.000100          25         4         1 fsync\n------ ----------- ----------- --------- --------- ----------------\n100.00    0.000500          35        14         1 total\n";
        assert_eq!(parse_strace_fsyncs(text), Some(14));
        assert_eq!(parse_strace_fsyncs("% time seconds usecs/call calls errors syscall\n"), Some(0));
    }

    #[test]
    fn the_sdk_config_of_every_scale_up_to_30_is_legal_and_scaled() {
        for scale in [1.0, 6.0, 30.0, 60.0] {
            let a = crate::bench::device::DeviceArgs {
                mqtt_url: "mqtt://127.0.0.1:1883".into(),
                pubsub_endpoint: "http://127.0.0.1:8085".into(),
                project: "p-1".into(),
                topic: "t-1".into(),
                device_id: "d-1".into(),
                count: 1,
                interval_us: 1,
                scale,
                drain_ms: 0,
                settle_max_ms: 0,
                data_dir: "/tmp/unused".into(),
                window_secs: 0,
                ca_file: None,
            };
            let c = crate::bench::device::sdk_config(&a).unwrap();
            assert_eq!(c.mqtt.idle_disconnect_secs, ((30.0 / scale) as u32).max(1), "scale {scale}");
            assert_eq!(c.mqtt.keep_alive_secs, ((60.0 / scale) as u32).max(5), "scale {scale}");
            assert_eq!(c.pubsub.max_batch_latency_ms, (500.0 / scale).round() as u64);
        }
    }

    #[test]
    fn workloads_have_whole_location_counts() {
        for w in WORKLOADS.iter().chain([&SMOKE]) {
            assert!((w.duration_s / w.interval_s).fract() == 0.0, "{}", w.name);
        }
        assert_eq!(WORKLOADS.iter().map(|w| w.count()).collect::<Vec<_>>(), vec![3600, 720, 120, 4500]);
    }
}
