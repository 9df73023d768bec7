//! `dualpub demo`: a simulated fleet publishing through the real SDK, each device with its own
//! `DualPublisher`, verified by independent subscribers on the broker and the Pub/Sub topic.

use clap::Args;
use dualpub::{DualPublisher, Location, MigrationConfig, MqttSettings, PubSubSettings, SdkConfig};
use dualpub_testbed::broker::EmbeddedBroker;
use dualpub_testbed::proxy::FaultProxy;
use dualpub_testbed::subscribers::{self, Collected, Subscriber};
use dualpub_testbed::{EmulatorHandle, EmulatorOptions};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

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
}

fn fail(msg: impl std::fmt::Display) -> i32 {
    eprintln!("dualpub demo: {msg}");
    1
}

/// Runs the demo; returns the process exit code (0 only if nothing was lost).
pub fn run(args: DemoArgs) -> i32 {
    if !(args.rollout.is_finite() && (0.0..=100.0).contains(&args.rollout)) {
        return fail(format!("--rollout must be in [0, 100], got {}", args.rollout));
    }
    let started = Instant::now();

    // Backends: embedded unless URLs are given.
    let mut _broker = None;
    let (mqtt_url, mqtt_host, mqtt_port) = match &args.mqtt_url {
        Some(u) => match url_host_port(u, 1883) {
            Ok((h, p)) => (u.clone(), h, p),
            Err(e) => return fail(e),
        },
        None => match EmbeddedBroker::start() {
            Ok(b) => {
                let r = (b.url(), "127.0.0.1".to_string(), b.port);
                _broker = Some(b);
                r
            }
            Err(e) => return fail(format!("cannot start the embedded MQTT broker: {e}")),
        },
    };
    let mut _emulator = None;
    let endpoint = match &args.pubsub_endpoint {
        Some(e) => e.trim_end_matches('/').to_string(),
        None => match EmulatorHandle::spawn(EmulatorOptions::default()) {
            Ok(h) => {
                let url = h.url();
                if let Err(e) = subscribers::create_topic(&url, &args.pubsub_project, &args.pubsub_topic) {
                    return fail(e);
                }
                _emulator = Some(h);
                url
            }
            Err(e) => return fail(format!("cannot start the Pub/Sub emulator: {e}")),
        },
    };
    // Plaintext is allowed without --allow-insecure only towards the servers started here.
    let mqtt_local_or_tls = args.mqtt_url.is_none() || mqtt_url.starts_with("mqtts://");
    let pubsub_local_or_tls = args.pubsub_endpoint.is_none() || endpoint.starts_with("https://");
    let config_local_or_tls = args.config_url.as_deref().is_none_or(|u| {
        u.starts_with("https://") || u.starts_with("http://127.0.0.1") || u.starts_with("http://localhost") || u.starts_with("http://[::1]")
    });
    let allow_insecure = args.allow_insecure || (mqtt_local_or_tls && pubsub_local_or_tls && config_local_or_tls);
    eprintln!("dualpub demo: MQTT {mqtt_url}, Pub/Sub {endpoint} (project {}, topic {})", args.pubsub_project, args.pubsub_topic);

    // Independent verification.
    let template = dualpub::wire::DEFAULT_TOPIC_TEMPLATE;
    let verify = if args.no_verify {
        None
    } else {
        let mqtt_sub = match subscribers::mqtt(&mqtt_host, mqtt_port, &template.replace("{deviceId}", "+")) {
            Ok(s) => s,
            Err(e) => return fail(format!("verifying MQTT subscriber: {e}")),
        };
        let sub_name = format!("dualpub-demo-verify-{}-{}", std::process::id(), started.elapsed().as_nanos() % 1_000_000);
        let pubsub_sub = match subscribers::pubsub(&endpoint, &args.pubsub_project, &args.pubsub_topic, &sub_name) {
            Ok(s) => s,
            Err(e) => return fail(format!("verifying Pub/Sub subscription: {e}")),
        };
        Some((mqtt_sub, pubsub_sub))
    };

    // Chaos: the SDK talks to both backends through fault proxies.
    let mut chaos = if args.chaos {
        match Chaos::start(&mqtt_host, mqtt_port, &endpoint, _emulator.as_ref()) {
            Ok(c) => Some(c),
            Err(e) => return fail(format!("chaos setup: {e}")),
        }
    } else {
        None
    };
    let (sdk_mqtt_url, sdk_endpoint) = match &chaos {
        Some(c) => (c.mqtt.mqtt_url(), c.pubsub.http_url()),
        None => (mqtt_url.clone(), endpoint.clone()),
    };

    let tmp;
    let data_root = match &args.data_dir {
        Some(d) => d.clone(),
        None => {
            tmp = match tempfile::tempdir() {
                Ok(t) => t,
                Err(e) => return fail(e),
            };
            tmp.path().to_path_buf()
        }
    };

    // The fleet.
    let migration = MigrationConfig {
        version: 1,
        pubsub_enabled: true,
        pubsub_percentage: args.rollout,
        rollout_salt: args.salt.clone(),
        mqtt_enabled: !args.no_mqtt,
        ..MigrationConfig::default()
    };
    let mut fleet: Vec<(String, Arc<DualPublisher>)> = Vec::with_capacity(args.devices);
    for i in 0..args.devices {
        let id = format!("demo-device-{i}");
        let config = SdkConfig {
            device_id: id.clone(),
            company_id: None,
            mqtt: MqttSettings {
                broker_url: sdk_mqtt_url.clone(),
                client_id: None,
                username: None,
                password: None,
                keep_alive_secs: 30,
                idle_disconnect_secs: 30,
            topic_template: template.into(),
                ca_certificates_pem: None,
            },
            pubsub: PubSubSettings {
                endpoint: sdk_endpoint.clone(),
                project: args.pubsub_project.clone(),
                topic: args.pubsub_topic.clone(),
                ordering_enabled: true,
                max_batch_messages: 1000,
                max_batch_bytes: 1_000_000,
                max_batch_latency_ms: 200,
                ca_certificates_pem: None,
            },
            data_dir: data_root.join(&id).to_string_lossy().into_owned(),
            // With a config URL the fetched document decides (MQTT only until it arrives).
            migration: if args.config_url.is_some() { None } else { Some(migration.clone()) },
            allow_insecure,
            max_outbox_rows: 100_000,
            max_outbox_age_hours: 168,
            max_storage_bytes: None,
            remote_config_url: args.config_url.clone(),
            config_fetch_interval_secs: dualpub::config::DEFAULT_CONFIG_FETCH_INTERVAL_SECS,
        };
        match DualPublisher::new(config, None) {
            Ok(p) if args.config_url.is_some() => fleet.push((id, p)),
            // A data directory from an earlier run keeps its last config; the flags of this
            // run are what the operator asked for, so apply them on top.
            Ok(p) => match p.apply_config(migration.clone()) {
                Ok(_) => fleet.push((id, p)),
                Err(e) => return fail(format!("{id}: {e}")),
            },
            Err(e) => return fail(format!("{id}: {e}")),
        }
    }
    // As an app that wants the fresh config at launch: fetch before sending.
    let config_report = args.config_url.as_ref().map(|url| fetch_configs(&fleet, url));
    let decisions: HashMap<String, dualpub::RolloutDecision> =
        fleet.iter().filter_map(|(id, p)| p.decision().ok().map(|d| (id.clone(), d))).collect();
    let pubsub_devices: Vec<String> = fleet.iter().filter(|(id, _)| decisions.get(id).is_some_and(|d| d.pubsub_enabled)).map(|(id, _)| id.clone()).collect();
    let cohort_owned: Vec<String> = pubsub_devices.clone();
    let cohort: HashSet<&str> = cohort_owned.iter().map(String::as_str).collect();
    let mqtt_devices: HashSet<&str> = decisions.iter().filter(|(_, d)| d.mqtt_enabled).map(|(id, _)| id.as_str()).collect();
    let rule = match &config_report {
        Some(r) => format!("by the config in force ({})", r.describe()),
        None => format!("at {} % (salt {:?})", args.rollout, args.salt),
    };
    eprintln!(
        "dualpub demo: {} devices, {} in the Pub/Sub cohort {rule}, {} locations each",
        args.devices,
        pubsub_devices.len(),
        args.locations_per_device
    );

    // Progress while it runs.
    let accepted = Arc::new(AtomicU64::new(0));
    let total = (args.devices * args.locations_per_device) as u64;
    let done = Arc::new(AtomicBool::new(false));
    let progress = {
        let (accepted, done) = (accepted.clone(), done.clone());
        let collected = verify.as_ref().map(|(m, p)| (m.collected.clone(), p.collected.clone()));
        std::thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                let received = match &collected {
                    Some((m, p)) => format!("   mqtt received {:>7}   pubsub received {:>7}", m.len(), p.len()),
                    None => String::new(),
                };
                eprint!("\r  accepted {:>7}/{total}{received}", accepted.load(Ordering::SeqCst));
                let _ = std::io::stderr().flush();
                std::thread::sleep(Duration::from_millis(250));
            }
        })
    };

    // Drive the fleet: round by round, every device moves a little.
    let mut accepted_ids: HashSet<String> = HashSet::new();
    let mut expected_mqtt: HashSet<String> = HashSet::new();
    let mut expected_pubsub: HashSet<String> = HashSet::new();
    let mut rejected = 0u64;
    let mut durable_log = match &args.durable_log {
        Some(path) => match std::fs::OpenOptions::new().create(true).append(true).open(path) {
            Ok(f) => Some(f),
            Err(e) => return fail(format!("{}: {e}", path.display())),
        },
        None => None,
    };
    let now_ms = dualpub_now_ms();
    for round in 0..args.locations_per_device {
        let mut this_round = Vec::with_capacity(fleet.len());
        for (i, (id, p)) in fleet.iter().enumerate() {
            let loc = simulated_location(i, round, now_ms - ((args.locations_per_device - round) as i64) * 1000);
            match p.send_location(loc) {
                Ok(event_id) => {
                    accepted.fetch_add(1, Ordering::SeqCst);
                    accepted_ids.insert(event_id.clone());
                    if cohort.contains(id.as_str()) {
                        expected_pubsub.insert(event_id.clone());
                    }
                    if mqtt_devices.contains(id.as_str()) {
                        expected_mqtt.insert(event_id.clone());
                    }
                    this_round.push((id.as_str(), event_id));
                }
                Err(e) => {
                    rejected += 1;
                    eprintln!("\n{id}: {e}");
                }
            }
        }
        if let Some(log) = durable_log.as_mut() {
            // Only what the SDK reports durable goes into the log.
            for (id, p) in &fleet {
                if !p.await_durable(10_000).unwrap_or(false) {
                    return fail(format!("{id}: locations not durable within 10 s"));
                }
            }
            let lines: String = this_round.iter().map(|(id, e)| format!("{id} {e}\n")).collect();
            if let Err(e) = log.write_all(lines.as_bytes()) {
                return fail(format!("durable log: {e}"));
            }
        }
        if args.round_interval_ms > 0 {
            std::thread::sleep(Duration::from_millis(args.round_interval_ms));
        }
    }
    if let Some(c) = chaos.as_mut() {
        c.calm();
    }

    // Drain every device in parallel.
    let timeout = args.flush_timeout_ms;
    let reports: Vec<dualpub::FlushReport> = std::thread::scope(|s| {
        let handles: Vec<_> = fleet.iter().map(|(_, p)| s.spawn(move || p.flush(timeout))).collect();
        handles.into_iter().filter_map(|h| h.join().ok()).filter_map(Result::ok).collect()
    });
    let pending_mqtt: u64 = reports.iter().map(|r| r.pending_mqtt).sum();
    let pending_pubsub: u64 = reports.iter().map(|r| r.pending_pubsub).sum();

    // Wait for the subscribers to see what the SDK says was acknowledged.
    if let Some((mqtt_sub, pubsub_sub)) = &verify {
        let seen_all = |c: &Collected, expected: &HashSet<String>, pending: u64| {
            let got: HashSet<String> = c.all().into_iter().map(|r| r.event_id).collect();
            expected.iter().filter(|e| !got.contains(*e)).count() as u64 <= pending
        };
        mqtt_sub.collected.wait_until(Duration::from_secs(30), |c| seen_all(c, &expected_mqtt, pending_mqtt));
        pubsub_sub.collected.wait_until(Duration::from_secs(30), |c| seen_all(c, &expected_pubsub, pending_pubsub));
        // A short quiet period to catch late duplicates.
        std::thread::sleep(Duration::from_millis(300));
    }
    done.store(true, Ordering::SeqCst);
    let _ = progress.join();
    eprintln!();

    let metrics: Vec<dualpub::MetricsSnapshot> = fleet.iter().filter_map(|(_, p)| p.metrics().ok()).collect();
    for (_, p) in &fleet {
        p.shutdown();
    }
    let chaos_events = chaos.map(|c| c.stop()).unwrap_or_default();
    let summary = Summary::compute(
        &args,
        verify.as_ref(),
        &accepted_ids,
        &expected_mqtt,
        &expected_pubsub,
        &cohort,
        accepted.load(Ordering::SeqCst),
        rejected,
        pending_mqtt,
        pending_pubsub,
        &metrics,
        pubsub_devices,
        started.elapsed(),
        chaos_events,
        config_report,
    );
    summary.print_table();
    if args.json {
        println!("{}", summary.json());
    }
    if summary.lost.unwrap_or(0) == 0 && summary.unexpected.unwrap_or(0) == 0 {
        0
    } else {
        3
    }
}

/// How the fleet's config fetch at launch went.
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

fn url_host_port(url: &str, default_port: u16) -> Result<(String, u16), String> {
    let rest = url.split_once("://").map(|(_, r)| r).ok_or_else(|| format!("{url:?} is not a URL"))?;
    let hostport = rest.split('/').next().unwrap_or(rest);
    match hostport.rsplit_once(':') {
        Some((h, p)) => Ok((h.trim_matches(['[', ']']).to_string(), p.parse().map_err(|_| format!("bad port in {url:?}"))?)),
        None => Ok((hostport.to_string(), default_port)),
    }
}

fn dualpub_now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
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
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn verify(
    (mqtt, pubsub): &(Subscriber, Subscriber),
    accepted: &HashSet<String>,
    expected_mqtt: &HashSet<String>,
    expected_pubsub: &HashSet<String>,
    cohort: &HashSet<&str>,
    pending_mqtt: u64,
    pending_pubsub: u64,
) -> Verified {
    let m = mqtt.collected.all();
    let p = pubsub.collected.all();
    let m_ids: HashSet<&str> = m.iter().map(|r| r.event_id.as_str()).collect();
    let p_ids: HashSet<&str> = p.iter().map(|r| r.event_id.as_str()).collect();
    let mqtt_delivered = expected_mqtt.iter().filter(|e| m_ids.contains(e.as_str())).count();
    let pubsub_delivered = expected_pubsub.iter().filter(|e| p_ids.contains(e.as_str())).count();
    // Not delivered and not still held (durably) by the SDK: lost.
    let lost = (expected_mqtt.len() - mqtt_delivered).saturating_sub(pending_mqtt as usize)
        + (expected_pubsub.len() - pubsub_delivered).saturating_sub(pending_pubsub as usize);
    let duplicates = (m.len() - m_ids.len()) + (p.len() - p_ids.len());
    // Accepted in this run, yet on Pub/Sub for a device outside the cohort.
    let unexpected = p.iter().filter(|r| accepted.contains(&r.event_id) && !cohort.contains(r.device_id.as_str())).count();
    // Delivered now but accepted by an earlier run on the same data directory.
    let resumed: HashSet<&str> = m.iter().chain(p.iter()).map(|r| r.event_id.as_str()).filter(|e| !accepted.contains(*e)).collect();
    // Both backends must see the same bytes for the same eventId.
    let by_id: HashMap<&str, &[u8]> = m.iter().map(|r| (r.event_id.as_str(), r.payload.as_slice())).collect();
    let same_bytes = p.iter().all(|r| by_id.get(r.event_id.as_str()).is_none_or(|b| *b == r.payload.as_slice()));
    Verified { mqtt_delivered, pubsub_delivered, lost, duplicates, unexpected, resumed: resumed.len(), same_bytes }
}

impl Summary {
    #[allow(clippy::too_many_arguments)]
    fn compute(
        args: &DemoArgs,
        subscribers: Option<&(Subscriber, Subscriber)>,
        accepted_ids: &HashSet<String>,
        expected_mqtt: &HashSet<String>,
        expected_pubsub: &HashSet<String>,
        cohort: &HashSet<&str>,
        accepted: u64,
        rejected: u64,
        pending_mqtt: u64,
        pending_pubsub: u64,
        metrics: &[dualpub::MetricsSnapshot],
        pubsub_devices: Vec<String>,
        elapsed: Duration,
        chaos_events: u64,
        config: Option<ConfigReport>,
    ) -> Summary {
        let verified = subscribers.map(|s| verify(s, accepted_ids, expected_mqtt, expected_pubsub, cohort, pending_mqtt, pending_pubsub));
        let mqtt_p50 = median(metrics.iter().filter(|s| s.mqtt.published > 0).map(|s| s.mqtt.latency_p50_ms).collect());
        let pubsub_p50 = median(metrics.iter().filter(|s| s.pubsub.published > 0).map(|s| s.pubsub.latency_p50_ms).collect());
        let mqtt_p99 = metrics.iter().map(|s| s.mqtt.latency_p99_ms).fold(0.0, f64::max);
        let pubsub_p99 = metrics.iter().map(|s| s.pubsub.latency_p99_ms).fold(0.0, f64::max);
        Summary {
            devices: args.devices,
            accepted,
            rejected,
            expected_mqtt: expected_mqtt.len(),
            expected_pubsub: expected_pubsub.len(),
            pubsub_devices: pubsub_devices.into_iter().collect::<BTreeSet<_>>().into_iter().collect(),
            lost: verified.as_ref().map(|v| v.lost),
            unexpected: verified.as_ref().map(|v| v.unexpected),
            verified,
            pending_mqtt,
            pending_pubsub,
            mqtt_p50,
            mqtt_p99,
            pubsub_p50,
            pubsub_p99,
            fallbacks: metrics.iter().map(|s| s.fallback).sum(),
            retries: metrics.iter().map(|s| s.mqtt.retries + s.pubsub.retries).sum(),
            circuit_openings: metrics.iter().map(|s| s.mqtt.circuit_openings + s.pubsub.circuit_openings).sum(),
            recovered: metrics.iter().map(|s| s.recovered).sum(),
            dropped: metrics.iter().flat_map(|s| s.dropped.values()).sum(),
            chaos_events,
            elapsed,
            rollout: args.rollout,
            config,
        }
    }

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
        if self.chaos_events > 0 {
            row("chaos events", self.chaos_events.to_string());
        }
        row("elapsed", format!("{} ms", self.elapsed.as_millis()));
    }

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
    fn start(mqtt_host: &str, mqtt_port: u16, endpoint: &str, emulator: Option<&EmulatorHandle>) -> std::io::Result<Chaos> {
        use std::net::ToSocketAddrs;
        let resolve = |host: &str, port: u16| {
            (host, port).to_socket_addrs()?.next().ok_or_else(|| std::io::Error::other(format!("cannot resolve {host}")))
        };
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
