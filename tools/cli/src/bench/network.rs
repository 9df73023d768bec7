//! `dualpub bench network`: the SDK on links as phones have them (docs/NETWORK.md). Each
//! scenario runs one device over TLS through Toxiproxy (the test bed's `Field`) to its own
//! embedded broker and emulator, with the upload window on (30 s) and at 0, and independent
//! subscribers reading the backends directly. It reports what was lost, the duplicates per
//! delivered location, how long after the link came back everything was delivered, the bytes
//! the SDK wrote and the stalls it counted. Prints a markdown document; `scripts/network`
//! writes it to docs/NETWORK.md.

use dualpub::{DualPublisher, Location, MigrationConfig, SdkConfig};
use dualpub_testbed::broker::EmbeddedBroker;
use dualpub_testbed::field::Field;
use dualpub_testbed::subscribers::{self, Collected};
use dualpub_testbed::toxiproxy::Stream;
use dualpub_testbed::{EmulatorHandle, EmulatorOptions};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

const PROJECT: &str = "network-bench";
const TOPIC: &str = "location-updates";

/// Arguments of `dualpub bench network`.
#[derive(clap::Args)]
pub struct NetworkArgs {
    /// Only the scenarios whose name contains this.
    #[arg(long)]
    pub only: Option<String>,
    /// Runs at once (each has its own broker, emulator and Toxiproxy; they mostly wait).
    #[arg(long, default_value_t = 6)]
    pub jobs: usize,
}

/// What a scenario does to the links.
#[derive(Clone, Copy)]
enum Fault {
    /// 300 ± 100 ms and `kbps` KB/s each way on both links, the whole run.
    Cellular { kbps: u64 },
    /// Every byte either way vanishes on both links (a NAT that forgot the flow).
    BlackHole,
    /// Connections reset `after_ms` after they open (both links).
    Resets { after_ms: u64 },
    /// TCP sliced into 1–19-byte segments (both links), the whole run.
    Slicer,
    /// Connections cut after 2 KB from the client (both links).
    Cut2k,
    /// Both links down and up every 10 s.
    Flapping,
    /// The Pub/Sub link refuses connections (a Pub/Sub outage; MQTT is fine).
    PubsubDown,
}

/// One scenario: its fault, when it starts and how long it lasts, and the traffic.
#[derive(Clone, Copy)]
struct Scenario {
    name: &'static str,
    fault: Fault,
    /// Seconds into the stream the fault starts (0 for the whole run).
    at_secs: u64,
    /// How long it lasts (0: the whole run).
    secs: u64,
    /// Locations queued with the network off before the run (sent when it turns on).
    backlog: usize,
    /// Seconds of one location a second; a timed fault's stream ends when the fault does, so
    /// its recovery is the time its locations took after the link came back.
    stream_secs: u64,
    /// Pub/Sub only (MQTT off, fallback allowed) instead of both transports.
    pubsub_only: bool,
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "cellular 32 KB/s, 300 ± 100 ms",
        fault: Fault::Cellular { kbps: 32 },
        at_secs: 0,
        secs: 0,
        backlog: 0,
        stream_secs: 60,
        pubsub_only: false,
    },
    Scenario {
        name: "3,000 backlog over 16 KB/s",
        fault: Fault::Cellular { kbps: 16 },
        at_secs: 0,
        secs: 0,
        backlog: 3_000,
        stream_secs: 0,
        pubsub_only: false,
    },
    Scenario {
        name: "1,200 Pub/Sub-only backlog over 16 KB/s",
        fault: Fault::Cellular { kbps: 16 },
        at_secs: 0,
        secs: 0,
        backlog: 1_200,
        stream_secs: 0,
        pubsub_only: true,
    },
    Scenario { name: "half-open 90 s", fault: Fault::BlackHole, at_secs: 10, secs: 90, backlog: 0, stream_secs: 120, pubsub_only: false },
    Scenario {
        name: "resets every 3 s for 40 s",
        fault: Fault::Resets { after_ms: 3_000 },
        at_secs: 10,
        secs: 40,
        backlog: 0,
        stream_secs: 60,
        pubsub_only: false,
    },
    Scenario { name: "TCP sliced into 1–19 bytes", fault: Fault::Slicer, at_secs: 0, secs: 0, backlog: 0, stream_secs: 60, pubsub_only: false },
    Scenario { name: "connections cut after 2 KB for 40 s", fault: Fault::Cut2k, at_secs: 10, secs: 40, backlog: 0, stream_secs: 60, pubsub_only: false },
    Scenario { name: "flapping every 10 s for 60 s", fault: Fault::Flapping, at_secs: 10, secs: 60, backlog: 0, stream_secs: 80, pubsub_only: false },
    Scenario {
        name: "Pub/Sub down 3 min, both transports",
        fault: Fault::PubsubDown,
        at_secs: 10,
        secs: 180,
        backlog: 0,
        stream_secs: 200,
        pubsub_only: false,
    },
    Scenario {
        name: "Pub/Sub down 3 min, Pub/Sub only (fallback)",
        fault: Fault::PubsubDown,
        at_secs: 10,
        secs: 180,
        backlog: 0,
        stream_secs: 200,
        pubsub_only: true,
    },
];

/// What one run measured.
#[derive(Default, Clone)]
struct Row {
    scenario: &'static str,
    window: u32,
    accepted: usize,
    /// Per transport (MQTT, Pub/Sub): owed and not delivered by the end.
    lost: [usize; 2],
    /// Per transport: extra copies over locations delivered.
    duplicates: [f64; 2],
    /// From the fault's end (or the backlog's release) to everything delivered.
    recovery: Option<Duration>,
    bytes: [u64; 2],
    stalls: [u64; 2],
    fallback: u64,
    error: Option<String>,
}

/// Runs the scenarios (with the window at 30 and at 0); prints the document.
pub fn run(args: NetworkArgs) -> i32 {
    let runs: Vec<(Scenario, u32)> =
        SCENARIOS.iter().filter(|s| args.only.as_deref().is_none_or(|o| s.name.contains(o))).flat_map(|s| [(*s, 30), (*s, 0)]).collect();
    let rows = std::sync::Mutex::new(Vec::new());
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..args.jobs.max(1) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let Some((s, w)) = runs.get(i) else { return };
                eprintln!("bench network: {} at W = {w} …", s.name);
                let row = run_one(s, *w, i).unwrap_or_else(|e| Row { scenario: s.name, window: *w, error: Some(e), ..Row::default() });
                eprintln!("bench network: {} at W = {w}: {}", s.name, describe(&row));
                rows.lock().unwrap_or_else(|p| p.into_inner()).push((i, row));
            });
        }
    });
    let mut rows = rows.into_inner().unwrap_or_else(|p| p.into_inner());
    rows.sort_by_key(|(i, _)| *i);
    print!("{}", document(&rows.into_iter().map(|(_, r)| r).collect::<Vec<_>>()));
    0
}

fn describe(r: &Row) -> String {
    match &r.error {
        Some(e) => format!("error: {e}"),
        None => format!("lost {:?}, duplicates {:.2}/{:.2}, recovery {:?}", r.lost, r.duplicates[0], r.duplicates[1], r.recovery),
    }
}

/// The radio harness's locations (`bench::device::location`), a second apart.
fn location(n: usize) -> Location {
    crate::bench::device::location(n as u64, 1_763_790_000_000 + n as i64 * 1000)
}

/// Applies (`on`) or removes the scenario's fault.
fn fault(field: &Field, f: Fault, on: bool) -> std::io::Result<()> {
    let both = field.links();
    match f {
        Fault::Cellular { kbps } if on => both.iter().try_for_each(|l| l.cellular(300, 100, kbps)),
        Fault::Cellular { .. } => Ok(()),
        Fault::BlackHole if on => both.iter().try_for_each(|l| l.black_hole()),
        Fault::BlackHole => both.iter().try_for_each(|l| l.heal()),
        Fault::Resets { after_ms } if on => both.iter().try_for_each(|l| l.add("resets", "reset_peer", Stream::Up, serde_json::json!({ "timeout": after_ms }))),
        Fault::Slicer if on => both.iter().try_for_each(|l| {
            [Stream::Up, Stream::Down]
                .iter()
                .try_for_each(|s| l.add(&format!("slicer-{s:?}"), "slicer", *s, serde_json::json!({"average_size": 10, "size_variation": 9, "delay": 50})))
        }),
        Fault::Cut2k if on => both.iter().try_for_each(|l| l.cut_after(2_048)),
        Fault::Resets { .. } => both.iter().try_for_each(|l| l.remove("resets")),
        Fault::Slicer => Ok(()),
        Fault::Cut2k => both.iter().try_for_each(|l| l.remove("limit_data")),
        Fault::Flapping => both.iter().try_for_each(|l| l.set_enabled(!on)),
        Fault::PubsubDown => field.pubsub.set_enabled(!on),
    }
}

/// One scenario at window `window`.
fn run_one(s: &Scenario, window: u32, n: usize) -> Result<Row, String> {
    let err = |e: std::io::Error| e.to_string();
    let broker = EmbeddedBroker::start().map_err(err)?;
    let emu = EmulatorHandle::spawn(EmulatorOptions::default()).map_err(err)?;
    subscribers::create_topic(&emu.url(), PROJECT, TOPIC).map_err(err)?;
    subscribers::create_topic(&emu.url(), PROJECT, dualpub::config::DEFAULT_REPORTS_TOPIC).map_err(err)?;
    let (host, port) = dualpub_testbed::url_host_port(&emu.url(), 80)?;
    let endpoint = format!("{host}:{port}").parse().map_err(|e| format!("{e}"))?;
    let field = Field::start(&format!("run{n}"), std::net::SocketAddr::from(([127, 0, 0, 1], broker.port)), endpoint).map_err(err)?;
    let id = format!("net-{n}-{}", std::process::id());
    let mqtt_sub = subscribers::mqtt("127.0.0.1", broker.port, &format!("device/telemetry/{id}")).map_err(err)?;
    let pubsub_sub = subscribers::pubsub(&emu.url(), PROJECT, TOPIC, &format!("verify-{n}")).map_err(err)?;
    let data = std::env::temp_dir().join(format!("dualpub-network-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let migration = if s.pubsub_only {
        MigrationConfig { version: 1, mqtt_enabled: false, pubsub_enabled: true, pubsub_percentage: 100.0, ..MigrationConfig::default() }
    } else {
        MigrationConfig { version: 1, pubsub_enabled: true, pubsub_percentage: 100.0, ..MigrationConfig::default() }
    };
    let config: SdkConfig = SdkConfig::builder(&id, field.mqtt_url(), PROJECT, data.to_string_lossy())
        .pubsub_endpoint(field.endpoint())
        .pubsub_topic(TOPIC)
        .mqtt_ca_pem(field.ca.ca_pem.clone())
        .pubsub_ca_pem(field.ca.ca_pem.clone())
        .upload_window_secs(window)
        .migration(migration)
        .build()
        .map_err(|e| e.to_string())?;
    let p = Arc::new(DualPublisher::new(config, None).map_err(|e| e.to_string())?);
    let mut ids = Vec::new();
    let whole_run = s.secs == 0;
    if whole_run {
        fault(&field, s.fault, true).map_err(err)?;
    }
    if s.backlog > 0 {
        p.set_network_available(false).map_err(|e| e.to_string())?;
        ids.extend(p.send_locations((0..s.backlog).map(location).collect()).map_err(|e| e.to_string())?);
        p.await_durable(60_000).map_err(|e| e.to_string())?;
        p.set_network_available(true).map_err(|e| e.to_string())?;
    }
    let start = Instant::now();
    let mut healed_at = if s.secs == 0 { Some(start) } else { None };
    let mut faulted = false;
    let stream_end = if whole_run { s.stream_secs } else { (s.at_secs + s.secs).min(s.stream_secs) };
    for second in 0..stream_end {
        if !whole_run && second == s.at_secs {
            fault(&field, s.fault, true).map_err(err)?;
            faulted = true;
        }
        if faulted && second == s.at_secs + s.secs {
            fault(&field, s.fault, false).map_err(err)?;
            faulted = false;
            healed_at = Some(Instant::now());
        }
        if matches!(s.fault, Fault::Flapping) && faulted && second > s.at_secs && (second - s.at_secs).is_multiple_of(10) {
            // Up for 10 s, down for 10 s.
            let down = ((second - s.at_secs) / 10).is_multiple_of(2);
            fault(&field, s.fault, down).map_err(err)?;
        }
        ids.push(p.send_location(location(s.backlog + second as usize)).map_err(|e| e.to_string())?);
        std::thread::sleep(Duration::from_secs(1).saturating_sub(start.elapsed().saturating_sub(Duration::from_secs(second))));
    }
    if faulted {
        fault(&field, s.fault, false).map_err(err)?;
        healed_at = Some(Instant::now());
    }
    if whole_run && s.stream_secs > 0 {
        healed_at = Some(Instant::now()); // recovery counts from the stream's end
    }
    let healed_at = healed_at.unwrap_or_else(Instant::now);
    // Everything delivered where it is owed (at most 5 minutes more).
    let owed_mqtt = !s.pubsub_only;
    let all = |c: &Collected| {
        let got: HashSet<String> = c.all().into_iter().map(|r| r.event_id).collect();
        ids.iter().all(|i| got.contains(i))
    };
    let deadline = Instant::now() + Duration::from_secs(300);
    while Instant::now() < deadline && !((!owed_mqtt || all(&mqtt_sub.collected)) && all(&pubsub_sub.collected)) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let drained = (!owed_mqtt || all(&mqtt_sub.collected)) && all(&pubsub_sub.collected);
    let recovery = drained.then(|| healed_at.elapsed());
    std::thread::sleep(Duration::from_millis(500)); // late duplicates
    let m = p.metrics().map_err(|e| e.to_string())?;
    p.shutdown();
    let _ = std::fs::remove_dir_all(&data);
    let count = |c: &Collected| {
        let by = c.by_event();
        let lost = ids.iter().filter(|i| !by.contains_key(*i)).count();
        let extra: usize = ids.iter().filter_map(|i| by.get(i)).map(|n| n - 1).sum();
        (lost, extra as f64 / (ids.len() - lost).max(1) as f64)
    };
    let (lost_m, dup_m) = if owed_mqtt { count(&mqtt_sub.collected) } else { (0, 0.0) };
    let (lost_p, dup_p) = count(&pubsub_sub.collected);
    Ok(Row {
        scenario: s.name,
        window,
        accepted: ids.len(),
        lost: [lost_m, lost_p],
        duplicates: [dup_m, dup_p],
        recovery,
        bytes: [m.mqtt.bytes_sent, m.pubsub.bytes_sent],
        stalls: [m.mqtt.stalls, m.pubsub.stalls],
        fallback: m.fallback,
        error: None,
    })
}

/// The markdown document.
fn document(rows: &[Row]) -> String {
    let mut out = String::from(
        "# Links as phones have them\n\n\
         Generated by `scripts/network` (`dualpub bench network`); do not edit by hand.\n\n\
         One device per run, its SDK over TLS (`mqtts://`, `https://`, a CA made for the run) through\n\
         Toxiproxy to its own embedded broker and Pub/Sub emulator; a location a second while the\n\
         fault comes and goes (or a backlog queued offline, released at the start); independent\n\
         subscribers read the backends directly. Each scenario runs with the upload window at 30 s and\n\
         at 0. **Lost**: owed to a transport and not delivered within 5 minutes of the fault's end.\n\
         **Duplicates**: extra copies per delivered location. **Recovery**: from the fault's end (for a\n\
         fault that lasts the whole run, the stream's end; for a backlog, its release) to every location\n\
         delivered on every transport owing it; the stream stops when a timed fault ends. **Bytes**: what the SDK wrote (MQTT payloads, Pub/Sub request bodies; TLS\n\
         and TCP overhead not included). **Stalls**: connections or requests given up for no progress\n\
         (docs/CONTRACT.md, stalls and slow links). **Fallbacks**: locations newly owed to MQTT because\n\
         Pub/Sub's breaker opened (with both transports MQTT owes them anyway). For a Pub/Sub-only device\n\
         MQTT is not checked (its columns show 0). The test suite runs a subset of these\n\
         (tests/field_links.rs).\n\n\
         | scenario | W | locations | lost MQTT / Pub/Sub | duplicates MQTT / Pub/Sub | recovery | bytes MQTT / Pub/Sub | stalls MQTT / Pub/Sub | fallbacks |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        if let Some(e) = &r.error {
            out.push_str(&format!("| {} | {} | error: {e} | | | | | | |\n", r.scenario, r.window));
            continue;
        }
        let recovery = r.recovery.map_or("not drained".to_string(), |d| format!("{:.1} s", d.as_secs_f64()));
        out.push_str(&format!(
            "| {} | {} | {} | {} / {} | {:.2} / {:.2} | {} | {} / {} | {} / {} | {} |\n",
            r.scenario,
            r.window,
            r.accepted,
            r.lost[0],
            r.lost[1],
            r.duplicates[0],
            r.duplicates[1],
            recovery,
            r.bytes[0],
            r.bytes[1],
            r.stalls[0],
            r.stalls[1],
            r.fallback
        ));
    }
    out
}
