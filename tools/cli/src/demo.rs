//! `dualpub demo`: a simulated fleet publishing through the real SDK, each device with its own
//! `DualPublisher`, verified by independent subscribers on the broker and the Pub/Sub topic.

use clap::Args;
use dualpub::{DualPublisher, Location, MigrationConfig, MqttSettings, PubSubSettings, SdkConfig};
use dualpub_testbed::broker::EmbeddedBroker;
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
    let allow_insecure = args.allow_insecure || (mqtt_local_or_tls && pubsub_local_or_tls);
    eprintln!("dualpub demo: MQTT {mqtt_url}, Pub/Sub {endpoint} (project {}, topic {})", args.pubsub_project, args.pubsub_topic);

    // Independent verification.
    let template = dualpub::wire::DEFAULT_TOPIC_TEMPLATE;
    let mqtt_sub = match subscribers::mqtt(&mqtt_host, mqtt_port, &template.replace("{deviceId}", "+")) {
        Ok(s) => s,
        Err(e) => return fail(format!("verifying MQTT subscriber: {e}")),
    };
    let sub_name = format!("dualpub-demo-verify-{}-{}", std::process::id(), started.elapsed().as_nanos() % 1_000_000);
    let pubsub_sub = match subscribers::pubsub(&endpoint, &args.pubsub_project, &args.pubsub_topic, &sub_name) {
        Ok(s) => s,
        Err(e) => return fail(format!("verifying Pub/Sub subscription: {e}")),
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
        ..MigrationConfig::default()
    };
    let mut fleet: Vec<(String, Arc<DualPublisher>)> = Vec::with_capacity(args.devices);
    for i in 0..args.devices {
        let id = format!("demo-device-{i}");
        let config = SdkConfig {
            device_id: id.clone(),
            company_id: None,
            mqtt: MqttSettings {
                broker_url: mqtt_url.clone(),
                client_id: None,
                username: None,
                password: None,
                keep_alive_secs: 30,
                idle_disconnect_secs: 30,
            topic_template: template.into(),
                ca_certificates_pem: None,
            },
            pubsub: PubSubSettings {
                endpoint: endpoint.clone(),
                project: args.pubsub_project.clone(),
                topic: args.pubsub_topic.clone(),
                ordering_enabled: true,
                max_batch_messages: 1000,
                max_batch_bytes: 1_000_000,
                max_batch_latency_ms: 200,
                ca_certificates_pem: None,
            },
            data_dir: data_root.join(&id).to_string_lossy().into_owned(),
            migration: Some(migration.clone()),
            allow_insecure,
            max_outbox_rows: 100_000,
            max_outbox_age_hours: 168,
            max_storage_bytes: None,
        };
        match DualPublisher::new(config, None) {
            Ok(p) => fleet.push((id, p)),
            Err(e) => return fail(format!("{id}: {e}")),
        }
    }
    let pubsub_devices: Vec<String> = fleet
        .iter()
        .filter(|(_, p)| p.decision().map(|d| d.pubsub_enabled).unwrap_or(false))
        .map(|(id, _)| id.clone())
        .collect();
    let cohort_owned: Vec<String> = pubsub_devices.clone();
    let cohort: HashSet<&str> = cohort_owned.iter().map(String::as_str).collect();
    eprintln!(
        "dualpub demo: {} devices, {} in the Pub/Sub cohort at {} % (salt {:?}), {} locations each",
        args.devices,
        pubsub_devices.len(),
        args.rollout,
        args.salt,
        args.locations_per_device
    );

    // Progress while it runs.
    let accepted = Arc::new(AtomicU64::new(0));
    let total = (args.devices * args.locations_per_device) as u64;
    let done = Arc::new(AtomicBool::new(false));
    let progress = {
        let (accepted, done) = (accepted.clone(), done.clone());
        let (m, p) = (mqtt_sub.collected.clone(), pubsub_sub.collected.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                eprint!(
                    "\r  accepted {:>7}/{total}   mqtt received {:>7}   pubsub received {:>7}",
                    accepted.load(Ordering::SeqCst),
                    m.len(),
                    p.len()
                );
                let _ = std::io::stderr().flush();
                std::thread::sleep(Duration::from_millis(250));
            }
        })
    };

    // Drive the fleet: round by round, every device moves a little.
    let mut expected_mqtt: HashSet<String> = HashSet::new();
    let mut expected_pubsub: HashSet<String> = HashSet::new();
    let mut rejected = 0u64;
    let now_ms = dualpub_now_ms();
    for round in 0..args.locations_per_device {
        for (i, (id, p)) in fleet.iter().enumerate() {
            let loc = simulated_location(i, round, now_ms - ((args.locations_per_device - round) as i64) * 1000);
            match p.send_location(loc) {
                Ok(event_id) => {
                    accepted.fetch_add(1, Ordering::SeqCst);
                    expected_mqtt.insert(event_id.clone());
                    if cohort.contains(id.as_str()) {
                        expected_pubsub.insert(event_id);
                    }
                }
                Err(e) => {
                    rejected += 1;
                    eprintln!("\n{id}: {e}");
                }
            }
        }
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
    let seen_all = |c: &Collected, expected: &HashSet<String>| {
        let got: HashSet<String> = c.all().into_iter().map(|r| r.event_id).collect();
        expected.iter().all(|e| got.contains(e))
    };
    mqtt_sub.collected.wait_until(Duration::from_secs(30), |c| seen_all(c, &expected_mqtt));
    pubsub_sub.collected.wait_until(Duration::from_secs(30), |c| seen_all(c, &expected_pubsub));
    // A short quiet period to catch late duplicates.
    std::thread::sleep(Duration::from_millis(300));
    done.store(true, Ordering::SeqCst);
    let _ = progress.join();
    eprintln!();

    let metrics: Vec<dualpub::MetricsSnapshot> = fleet.iter().filter_map(|(_, p)| p.metrics().ok()).collect();
    for (_, p) in &fleet {
        p.close();
    }
    let summary = Summary::compute(
        &args,
        &mqtt_sub,
        &pubsub_sub,
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
    );
    summary.print_table();
    if args.json {
        println!("{}", summary.json());
    }
    if summary.lost == 0 && summary.unexpected == 0 {
        0
    } else {
        3
    }
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

struct Summary {
    devices: usize,
    accepted: u64,
    rejected: u64,
    mqtt_delivered: usize,
    pubsub_delivered: usize,
    expected_mqtt: usize,
    expected_pubsub: usize,
    pubsub_devices: Vec<String>,
    lost: usize,
    duplicates: usize,
    unexpected: usize,
    same_bytes: bool,
    pending_mqtt: u64,
    pending_pubsub: u64,
    mqtt_p50: f64,
    mqtt_p99: f64,
    pubsub_p50: f64,
    pubsub_p99: f64,
    fallbacks: u64,
    retries: u64,
    elapsed: Duration,
    rollout: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

impl Summary {
    #[allow(clippy::too_many_arguments)]
    fn compute(
        args: &DemoArgs,
        mqtt: &Subscriber,
        pubsub: &Subscriber,
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
    ) -> Summary {
        let m = mqtt.collected.all();
        let p = pubsub.collected.all();
        let m_ids: HashSet<&str> = m.iter().map(|r| r.event_id.as_str()).collect();
        let p_ids: HashSet<&str> = p.iter().map(|r| r.event_id.as_str()).collect();
        let mqtt_delivered = expected_mqtt.iter().filter(|e| m_ids.contains(e.as_str())).count();
        let pubsub_delivered = expected_pubsub.iter().filter(|e| p_ids.contains(e.as_str())).count();
        let lost = (expected_mqtt.len() - mqtt_delivered) + (expected_pubsub.len() - pubsub_delivered);
        let duplicates = (m.len() - m_ids.len()) + (p.len() - p_ids.len());
        // Messages nobody should have received: unknown ids, or Pub/Sub for devices outside the cohort.
        let unexpected = m.iter().filter(|r| !expected_mqtt.contains(&r.event_id)).count()
            + p.iter().filter(|r| !expected_pubsub.contains(&r.event_id) || !cohort.contains(r.device_id.as_str())).count();
        // Both backends must see the same bytes for the same eventId.
        let by_id: HashMap<&str, &[u8]> = m.iter().map(|r| (r.event_id.as_str(), r.payload.as_slice())).collect();
        let same_bytes = p.iter().all(|r| by_id.get(r.event_id.as_str()).is_none_or(|b| *b == r.payload.as_slice()));
        let mqtt_p50 = median(metrics.iter().filter(|s| s.mqtt.published > 0).map(|s| s.mqtt.latency_p50_ms).collect());
        let pubsub_p50 = median(metrics.iter().filter(|s| s.pubsub.published > 0).map(|s| s.pubsub.latency_p50_ms).collect());
        let mqtt_p99 = metrics.iter().map(|s| s.mqtt.latency_p99_ms).fold(0.0, f64::max);
        let pubsub_p99 = metrics.iter().map(|s| s.pubsub.latency_p99_ms).fold(0.0, f64::max);
        Summary {
            devices: args.devices,
            accepted,
            rejected,
            mqtt_delivered,
            pubsub_delivered,
            expected_mqtt: expected_mqtt.len(),
            expected_pubsub: expected_pubsub.len(),
            pubsub_devices: pubsub_devices.into_iter().collect::<BTreeSet<_>>().into_iter().collect(),
            lost,
            duplicates,
            unexpected,
            same_bytes,
            pending_mqtt,
            pending_pubsub,
            mqtt_p50,
            mqtt_p99,
            pubsub_p50,
            pubsub_p99,
            fallbacks: metrics.iter().map(|s| s.fallback).sum(),
            retries: metrics.iter().map(|s| s.mqtt.retries + s.pubsub.retries).sum(),
            elapsed,
            rollout: args.rollout,
        }
    }

    fn print_table(&self) {
        let row = |k: &str, v: String| println!("  {k:<34} {v}");
        println!("dualpub demo summary");
        row("devices", self.devices.to_string());
        row("Pub/Sub cohort", format!("{} devices ({} % rollout)", self.pubsub_devices.len(), self.rollout));
        row("locations accepted", format!("{} ({} rejected)", self.accepted, self.rejected));
        row("MQTT delivered (subscriber)", format!("{} of {}", self.mqtt_delivered, self.expected_mqtt));
        row("Pub/Sub delivered (pull)", format!("{} of {}", self.pubsub_delivered, self.expected_pubsub));
        row("lost", self.lost.to_string());
        row("duplicates", self.duplicates.to_string());
        row("unexpected", self.unexpected.to_string());
        row("same bytes on both transports", self.same_bytes.to_string());
        row("still pending after flush", format!("mqtt {} / pubsub {}", self.pending_mqtt, self.pending_pubsub));
        row("SDK latency MQTT p50 / max p99", format!("{:.1} ms / {:.1} ms", self.mqtt_p50, self.mqtt_p99));
        row("SDK latency Pub/Sub p50 / max p99", format!("{:.1} ms / {:.1} ms", self.pubsub_p50, self.pubsub_p99));
        row("fallbacks / retries", format!("{} / {}", self.fallbacks, self.retries));
        row("elapsed", format!("{} ms", self.elapsed.as_millis()));
    }

    fn json(&self) -> String {
        serde_json::json!({
            "devices": self.devices,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "mqtt_delivered": self.mqtt_delivered,
            "pubsub_delivered": self.pubsub_delivered,
            "pubsub_devices": self.pubsub_devices,
            "lost": self.lost,
            "duplicates": self.duplicates,
            "unexpected": self.unexpected,
            "same_bytes": self.same_bytes,
            "pending_mqtt": self.pending_mqtt,
            "pending_pubsub": self.pending_pubsub,
            "mqtt_latency_p50_ms": self.mqtt_p50,
            "pubsub_latency_p50_ms": self.pubsub_p50,
            "fallbacks": self.fallbacks,
            "retries": self.retries,
            "elapsed_ms": self.elapsed.as_millis() as u64,
        })
        .to_string()
    }
}
