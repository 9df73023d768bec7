//! Zero loss under process kills, broker restarts, Pub/Sub failures and a long offline spell.
//! The SDK runs in `dualpub demo` child processes (so it can be SIGKILLed); mosquitto, the
//! emulator and the verifying subscribers live in this test process and outlive every kill.

use dualpub_testbed::mosquitto::Mosquitto;
use dualpub_testbed::proxy::FaultProxy;
use dualpub_testbed::subscribers::{self, Collected, Subscriber};
use dualpub_testbed::{EmulatorHandle, EmulatorOptions, FaultPlan};
use rand::Rng;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PROJECT: &str = "chaos";
const TOPIC: &str = "location-updates";

struct Bed {
    _dir: tempfile::TempDir,
    data: std::path::PathBuf,
    log: std::path::PathBuf,
    broker: Mosquitto,
    emulator: EmulatorHandle,
    mqtt: Subscriber,
    pubsub: Subscriber,
    /// Every device's migration reports (MQTT, persistent session).
    reports: Subscriber,
}

fn bed(name: &str) -> Bed {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(dir.path(), None).unwrap();
    let emulator = EmulatorHandle::spawn(EmulatorOptions::default()).unwrap();
    subscribers::create_topic(&emulator.url(), PROJECT, TOPIC).unwrap();
    // A persistent session: mosquitto keeps queueing for the verifier across its own restarts.
    let mqtt = subscribers::mqtt_with_session("127.0.0.1", broker.port, "device/telemetry/+", Some(&format!("verifier-{name}"))).unwrap();
    let pubsub = subscribers::pubsub(&emulator.url(), PROJECT, TOPIC, &format!("verifier-{name}")).unwrap();
    let reports = subscribers::mqtt_with_session("127.0.0.1", broker.port, "device/migration-report/+", Some(&format!("reports-{name}"))).unwrap();
    Bed { data: dir.path().join("data"), log: dir.path().join("durable.log"), _dir: dir, broker, emulator, mqtt, pubsub, reports }
}

fn demo(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_dualpub"));
    c.arg("demo").args(["--pubsub-project", PROJECT, "--pubsub-topic", TOPIC, "--allow-insecure", "--no-verify", "--json"]).args(args);
    c.env("RUST_LOG", "error");
    c
}

/// "deviceId eventId" lines the SDK reported durable.
fn durable(log: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(log).unwrap_or_default().lines().filter_map(|l| l.split_once(' ').map(|(d, e)| (d.to_string(), e.to_string()))).collect()
}

fn cohort(devices: usize, pct: f64) -> HashSet<String> {
    (0..devices)
        .map(|i| format!("demo-device-{i}"))
        .filter(|id| {
            dualpub::rollout::in_rollout(dualpub::RolloutAlgorithm::V1, dualpub::rollout::bucket(dualpub::RolloutAlgorithm::V1, "pubsub-migration", id), pct)
        })
        .collect()
}

fn missing(c: &Collected, want: &[&String]) -> usize {
    let got: HashSet<String> = c.all().into_iter().map(|r| r.event_id).collect();
    want.iter().filter(|e| !got.contains(**e)).count()
}

fn wait_missing(c: &Collected, want: &[&String], timeout: Duration) -> usize {
    c.wait_until(timeout, |c| missing(c, want) == 0);
    missing(c, want)
}

fn duplicate_rate(c: &Collected) -> (usize, usize) {
    let by: HashMap<String, usize> = c.by_event();
    (by.values().map(|n| n - 1).sum(), by.len())
}

fn run_to_end(mut cmd: Command) -> serde_json::Value {
    let out = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}\n{stdout}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(stdout.trim().lines().last().unwrap()).unwrap()
}

fn kill(mut child: Child) {
    // Child::kill is SIGKILL on Unix: no destructor, no flush, no close.
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn sigkill_at_twenty_random_points_loses_nothing_durable() {
    let b = bed("kill");
    let (devices, pct) = (5usize, 40.0);
    let data = b.data.to_str().unwrap().to_string();
    let log = b.log.to_str().unwrap().to_string();
    let mqtt_url = b.broker.url();
    let endpoint = b.emulator.url();
    let mut rng = rand::rng();
    let mut kills = 0;
    // Restart the same data directory until 5,000 locations were reported durable, killing each
    // run at a random point (at least 20 kills).
    while kills < 20 || durable(&b.log).len() < 5_000 {
        let child = demo(&[
            "--devices",
            &devices.to_string(),
            "--locations-per-device",
            "100",
            "--rollout",
            &pct.to_string(),
            "--round-interval-ms",
            "3",
            "--mqtt-url",
            &mqtt_url,
            "--pubsub-endpoint",
            &endpoint,
            "--data-dir",
            &data,
            "--durable-log",
            &log,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
        std::thread::sleep(Duration::from_millis(rng.random_range(150..900)));
        kill(child);
        kills += 1;
        assert!(kills < 200, "the fleet never reached 5,000 durable locations");
    }
    // One last run only drains what the data directory still holds.
    let summary = run_to_end(demo(&[
        "--devices",
        &devices.to_string(),
        "--locations-per-device",
        "0",
        "--rollout",
        &pct.to_string(),
        "--mqtt-url",
        &mqtt_url,
        "--pubsub-endpoint",
        &endpoint,
        "--data-dir",
        &data,
        "--flush-timeout-ms",
        "60000",
    ]));
    assert_eq!((summary["pending_mqtt"].as_u64(), summary["pending_pubsub"].as_u64()), (Some(0), Some(0)), "{summary}");

    let promised = durable(&b.log);
    let cohort = cohort(devices, pct);
    let all: Vec<&String> = promised.iter().map(|(_, e)| e).collect();
    let in_cohort: Vec<&String> = promised.iter().filter(|(d, _)| cohort.contains(d)).map(|(_, e)| e).collect();
    let lost_mqtt = wait_missing(&b.mqtt.collected, &all, Duration::from_secs(30));
    let lost_pubsub = wait_missing(&b.pubsub.collected, &in_cohort, Duration::from_secs(30));
    let (dup_m, uniq_m) = duplicate_rate(&b.mqtt.collected);
    let (dup_p, uniq_p) = duplicate_rate(&b.pubsub.collected);
    eprintln!(
        "kill test: {kills} SIGKILLs, {} durable locations ({} for Pub/Sub), lost mqtt {lost_mqtt} pubsub {lost_pubsub}, \
         duplicates mqtt {dup_m}/{uniq_m} ({:.2} %), pubsub {dup_p}/{uniq_p} ({:.2} %)",
        all.len(),
        in_cohort.len(),
        100.0 * dup_m as f64 / uniq_m.max(1) as f64,
        100.0 * dup_p as f64 / uniq_p.max(1) as f64
    );
    assert_eq!((lost_mqtt, lost_pubsub), (0, 0));
    assert!(all.len() >= 5_000 && kills >= 20);
    // Duplicates carry the original eventId: every message parses to one we promised (or one
    // accepted but killed before it was reported durable).
    assert!(b.mqtt.collected.all().iter().all(|r| !r.event_id.is_empty()));
    seq_and_reports_survive_the_kills(&b, devices, &promised);
}

/// After many SIGKILLs on one data directory: no location `seq` was given to two locations, and
/// each device's migration reports kept one epoch, never reused a `reportSeq` for other bytes,
/// never counted backwards, and the last one counts at least every location promised durable.
fn seq_and_reports_survive_the_kills(b: &Bed, devices: usize, promised: &[(String, String)]) {
    let mut seq_of: HashMap<(String, u64), String> = HashMap::new();
    for r in b.mqtt.collected.all() {
        let v: serde_json::Value = serde_json::from_slice(&r.payload).unwrap();
        let key = (r.device_id.clone(), v["seq"].as_u64().expect("every location carries seq"));
        let first = seq_of.entry(key.clone()).or_insert_with(|| r.event_id.clone());
        assert_eq!(*first, r.event_id, "seq {key:?} given to two locations");
    }
    // The last run's shutdown reports (it connects for them even with nothing to send).
    let durable_of = |device: &str| promised.iter().filter(|(d, _)| d == device).count() as u64;
    let covered = |c: &Collected| {
        let mut most: HashMap<String, u64> = HashMap::new();
        for v in c.all().iter().filter_map(|r| serde_json::from_slice::<serde_json::Value>(&r.payload).ok()) {
            let n = most.entry(v["deviceId"].as_str().unwrap_or_default().to_string()).or_default();
            *n = (*n).max(v["counters"]["accepted"].as_u64().unwrap_or(0));
        }
        most.len() == devices && most.iter().all(|(d, n)| *n >= durable_of(d))
    };
    b.reports.collected.wait_until(Duration::from_secs(30), covered);
    let mut by_device: HashMap<String, std::collections::BTreeMap<u64, Vec<u8>>> = HashMap::new();
    for r in b.reports.collected.all() {
        let v: serde_json::Value = serde_json::from_slice(&r.payload).unwrap();
        let seq = v["reportSeq"].as_u64().unwrap();
        let copies = by_device.entry(v["deviceId"].as_str().unwrap().to_string()).or_default();
        let first = copies.entry(seq).or_insert_with(|| r.payload.clone());
        assert_eq!(*first, r.payload, "reportSeq {seq} of {} reused for other bytes", v["deviceId"]);
    }
    assert_eq!(by_device.len(), devices);
    for (device, reports) in &by_device {
        let docs: Vec<serde_json::Value> = reports.values().map(|b| serde_json::from_slice(b).unwrap()).collect();
        assert!(docs.iter().all(|d| d["epoch"] == docs[0]["epoch"]), "{device}: one data directory, one epoch");
        let counter = |d: &serde_json::Value, path: &[&str]| path.iter().fold(d, |v, k| &v[*k]).as_u64().unwrap();
        for pair in docs.windows(2) {
            for path in [&["accepted"][..], &["lastSeq"], &["mqtt", "acked"], &["pubsub", "acked"]] {
                let (a, z) = (counter(&pair[0]["counters"], path), counter(&pair[1]["counters"], path));
                assert!(a <= z, "{device}: counters.{} went back from {a} to {z} across a kill", path.join("."));
            }
        }
        let last = docs.last().unwrap();
        let durable = durable_of(device);
        let seqs: Vec<u64> = seq_of.keys().filter(|(d, _)| d == device).map(|(_, s)| *s).collect();
        let epochs: HashSet<String> = docs.iter().map(|d| d["epoch"].to_string()).collect();
        assert!(
            counter(&last["counters"], &["accepted"]) >= durable,
            "{device}: counts fewer than the {durable} durable; {} distinct seqs up to {:?}; epochs {epochs:?}; reports {:?}",
            seqs.len(),
            seqs.iter().max(),
            docs.iter()
                .map(|d| (d["reportSeq"].as_u64(), d["trigger"].as_str(), d["counters"]["accepted"].as_u64(), d["epochStartMs"].as_i64()))
                .collect::<Vec<_>>()
        );
        assert_eq!(counter(&last["counters"], &["accepted"]), counter(&last["counters"], &["lastSeq"]), "{device}: one seq per accepted location");
    }
    eprintln!(
        "kill test: {} migration reports from {} devices, one epoch each, counters never went back",
        by_device.values().map(|r| r.len()).sum::<usize>(),
        by_device.len()
    );
}

#[test]
fn broker_restarts_and_failing_pubsub_lose_nothing_with_the_upload_window() {
    broker_restarts_and_failing_pubsub(dualpub::config::DEFAULT_UPLOAD_WINDOW_SECS);
}

#[test]
fn broker_restarts_and_failing_pubsub_lose_nothing_in_real_time_and_fall_back() {
    broker_restarts_and_failing_pubsub(0);
}

/// Five broker restarts and failing Pub/Sub while 10 devices send 1,000 locations each with an
/// upload window of `window_secs`: nothing durable is lost. In real time (0) the 4 s total
/// Pub/Sub outage also opens breakers and makes fallback copies; with a window the breaker
/// counts one attempt per burst (docs/CONTRACT.md#upload-windows), so 4 s open none, and the
/// run makes too few requests for a failure to be certain.
fn broker_restarts_and_failing_pubsub(window_secs: u32) {
    let mut b = bed(&format!("outage-w{window_secs}"));
    // 30 % of Pub/Sub requests fail with 429 or 503, all run long.
    let flaky = FaultPlan { fail_rate: 0.3, fail_statuses: vec![429, 503], ..FaultPlan::default() };
    b.emulator.emulator().faults().set(flaky.clone());
    let data = b.data.to_str().unwrap().to_string();
    let log = b.log.to_str().unwrap().to_string();
    // MQTT off in the config: the Pub/Sub cohort reaches MQTT only by fallback.
    let child = demo(&[
        "--devices",
        "10",
        "--locations-per-device",
        "1000",
        "--rollout",
        "50",
        "--no-mqtt",
        "--round-interval-ms",
        "6",
        "--mqtt-url",
        &b.broker.url(),
        "--pubsub-endpoint",
        &b.emulator.url(),
        "--data-dir",
        &data,
        "--durable-log",
        &log,
        "--flush-timeout-ms",
        "120000",
        "--window-secs",
        &window_secs.to_string(),
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    // Five broker restarts while the fleet sends, and one 4 s spell where Pub/Sub fails every
    // request (long enough for breakers to open).
    for round in 0..5 {
        std::thread::sleep(Duration::from_millis(900));
        b.broker.stop_gracefully();
        std::thread::sleep(Duration::from_millis(400));
        b.broker.restart().unwrap();
        if round == 1 {
            b.emulator.emulator().faults().set(FaultPlan { fail_rate: 1.0, fail_statuses: vec![503], ..FaultPlan::default() });
            std::thread::sleep(Duration::from_secs(4));
            b.emulator.emulator().faults().set(flaky.clone());
        }
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let s: serde_json::Value = serde_json::from_str(stdout.trim().lines().last().unwrap()).unwrap();
    let promised = durable(&b.log);
    let cohort = cohort(10, 50.0);
    type Promised<'a> = Vec<&'a (String, String)>;
    let (on_pubsub, on_mqtt): (Promised, Promised) = promised.iter().partition(|(d, _)| cohort.contains(d));
    let on_pubsub: Vec<&String> = on_pubsub.iter().map(|(_, e)| e).collect();
    let on_mqtt: Vec<&String> = on_mqtt.iter().map(|(_, e)| e).collect();
    let lost_mqtt = wait_missing(&b.mqtt.collected, &on_mqtt, Duration::from_secs(60));
    let lost_pubsub = wait_missing(&b.pubsub.collected, &on_pubsub, Duration::from_secs(60));
    eprintln!(
        "outage test: {} locations ({} MQTT, {} Pub/Sub), lost mqtt {lost_mqtt} pubsub {lost_pubsub}, retries {}, fallbacks {}, breaker openings {}, emulator {:?}",
        promised.len(), on_mqtt.len(), on_pubsub.len(), s["retries"], s["fallbacks"], s["circuit_openings"], b.emulator.emulator().stats()
    );
    assert_eq!(promised.len(), 10_000);
    assert_eq!((s["pending_mqtt"].as_u64(), s["pending_pubsub"].as_u64()), (Some(0), Some(0)), "{s}");
    assert_eq!((lost_mqtt, lost_pubsub), (0, 0));
    // With a window the whole run is a dozen Pub/Sub requests, so whether one of them failed is
    // chance: only the loss checks above apply.
    let mechanics: &[&str] = if window_secs == 0 { &["retries", "fallbacks", "circuit_openings"] } else { &[] };
    for key in mechanics {
        assert!(s[key].as_u64().unwrap() > 0, "{key}: {s}");
    }
}

#[test]
fn offline_then_killed_then_online_delivers_everything_in_order() {
    let b = bed("offline");
    // Both transports unreachable: the SDK talks to proxies that refuse every connection.
    let mqtt_proxy = FaultProxy::start(([127, 0, 0, 1], b.broker.port).into()).unwrap();
    let pubsub_proxy = FaultProxy::start(b.emulator.addr()).unwrap();
    mqtt_proxy.outage();
    pubsub_proxy.outage();
    let data = b.data.to_str().unwrap().to_string();
    let log = b.log.to_str().unwrap().to_string();
    let child = demo(&[
        "--devices",
        "4",
        "--locations-per-device",
        "2500",
        "--rollout",
        "100",
        "--mqtt-url",
        &mqtt_proxy.mqtt_url(),
        "--pubsub-endpoint",
        &pubsub_proxy.http_url(),
        "--data-dir",
        &data,
        "--durable-log",
        &log,
        "--flush-timeout-ms",
        "600000",
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let start = Instant::now();
    while durable(&b.log).len() < 10_000 {
        assert!(start.elapsed() < Duration::from_secs(120), "only {} durable", durable(&b.log).len());
        std::thread::sleep(Duration::from_millis(50));
    }
    kill(child);
    assert!(b.mqtt.collected.is_empty() && b.pubsub.collected.is_empty(), "nothing could have been delivered");

    // Transports back, process restarted on the same data directory.
    mqtt_proxy.restore();
    pubsub_proxy.restore();
    let s = run_to_end(demo(&[
        "--devices",
        "4",
        "--locations-per-device",
        "0",
        "--rollout",
        "100",
        "--mqtt-url",
        &mqtt_proxy.mqtt_url(),
        "--pubsub-endpoint",
        &pubsub_proxy.http_url(),
        "--data-dir",
        &data,
        "--flush-timeout-ms",
        "120000",
    ]));
    assert_eq!(s["recovered"].as_u64(), Some(10_000), "{s}");
    let promised = durable(&b.log);
    let all: Vec<&String> = promised.iter().map(|(_, e)| e).collect();
    assert_eq!(wait_missing(&b.mqtt.collected, &all, Duration::from_secs(60)), 0);
    assert_eq!(wait_missing(&b.pubsub.collected, &all, Duration::from_secs(60)), 0);
    // Per device, Pub/Sub received the locations in acceptance order (first deliveries).
    let mut seen = HashSet::new();
    let mut order: HashMap<String, Vec<String>> = HashMap::new();
    for r in b.pubsub.collected.all() {
        if seen.insert(r.event_id.clone()) {
            order.entry(r.device_id.clone()).or_default().push(r.event_id);
        }
    }
    for device in 0..4 {
        let id = format!("demo-device-{device}");
        let accepted: Vec<String> = promised.iter().filter(|(d, _)| *d == id).map(|(_, e)| e.clone()).collect();
        assert_eq!(order.get(&id), Some(&accepted), "{id}: Pub/Sub order differs from acceptance order");
    }
    eprintln!("offline test: {} locations delivered after restart, {:?}", all.len(), b.emulator.emulator().stats());
}
