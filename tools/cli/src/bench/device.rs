//! `dualpub bench radio-device`: one phone running the real SDK, driven by the radio harness
//! (`dualpub bench radio`, docs/RADIO.md) as a child process, so that its CPU time and fsyncs
//! are its own. The peer (tools/peer) speaks the same protocol with the same flags.
//!
//! Protocol on stdin/stdout: prints `ready` once the publisher is built; waits for a line
//! `start`; sends `--count` locations, one every `--interval-us` real microseconds on an
//! absolute schedule; waits `--drain-ms` (and up to `--settle-max-ms` more while locations are
//! owed); prints `done {json}`; shuts down when stdin closes.

use clap::Args;
use dualpub::{Location, MigrationConfig, Publisher, SdkConfig};
use std::io::{BufRead, Write};
use std::time::{Duration, Instant};

/// Options of `dualpub bench radio-device` (the peer takes the same ones).
#[derive(Args, Debug, Clone)]
pub struct DeviceArgs {
    /// MQTT broker (through the harness's logging proxy).
    #[arg(long)]
    pub mqtt_url: String,
    /// Pub/Sub endpoint (through the harness's logging proxy).
    #[arg(long)]
    pub pubsub_endpoint: String,
    /// Pub/Sub project.
    #[arg(long)]
    pub project: String,
    /// Pub/Sub topic.
    #[arg(long)]
    pub topic: String,
    /// Device id.
    #[arg(long)]
    pub device_id: String,
    /// Locations to send.
    #[arg(long)]
    pub count: u64,
    /// Real microseconds between two locations (the simulated interval divided by the scale).
    #[arg(long)]
    pub interval_us: u64,
    /// Simulated seconds per real second: the SDK's own timers are divided by it.
    #[arg(long)]
    pub scale: f64,
    /// Real milliseconds to wait after the last location before reporting `done`.
    #[arg(long)]
    pub drain_ms: u64,
    /// After the drain, keep waiting (up to this many real ms) while the SDK still owes
    /// locations: the outage workload lets the backlog leave on the SDK's own, unscaled, backoff.
    #[arg(long, default_value_t = 0)]
    pub settle_max_ms: u64,
    /// The outbox directory.
    #[arg(long)]
    pub data_dir: String,
    /// Upload window in simulated seconds (0: publish as soon as a location is durable, the SDK as it is).
    #[arg(long, default_value_t = 0)]
    pub window_secs: u32,
    /// A CA certificate (PEM file) to trust for both backends (the harness's local CA, for
    /// `mqtts://` and `https://`).
    #[arg(long)]
    pub ca_file: Option<String>,
}

/// The location number `i` of a run; the peer (tools/peer) computes the same fields.
pub fn location(i: u64, timestamp_ms: i64) -> Location {
    let a = i as f64 * 0.01;
    Location {
        latitude: 52.52 + 0.01 * a.sin(),
        longitude: 13.405 + 0.01 * a.cos(),
        accuracy: Some(5.0),
        speed: Some(8.0),
        bearing: Some(90.0),
        altitude: Some(34.0),
        timestamp_ms,
        battery: Some(0.8),
    }
}

/// A timer of the SDK, in whole seconds, scaled and clamped to what the SDK accepts.
pub fn scaled_secs(secs: f64, scale: f64, min: u32) -> u32 {
    ((secs / scale).round() as u32).max(min)
}

/// The SDK's config for the run: its defaults with every timer it lets an app set divided by
/// the scale (docs/RADIO.md, "Scaling"), both transports owed every location, no reports.
pub fn sdk_config(a: &DeviceArgs) -> Result<SdkConfig, String> {
    let migration = MigrationConfig { version: 1, mqtt_enabled: true, pubsub_enabled: true, pubsub_percentage: 100.0, ..MigrationConfig::default() };
    let builder = SdkConfig::builder(a.device_id.as_str(), a.mqtt_url.as_str(), a.project.as_str(), a.data_dir.as_str())
        .pubsub_endpoint(a.pubsub_endpoint.as_str())
        .pubsub_topic(a.topic.as_str())
        // Defaults: keep-alive 60 s (at least 5), idle hang-up 30 s (at least 1), batch latency 500 ms.
        .mqtt_keep_alive_secs(scaled_secs(60.0, a.scale, 5))
        .mqtt_idle_disconnect_secs(scaled_secs(30.0, a.scale, 1))
        .pubsub_batch(1000, 1_000_000, (500.0 / a.scale).round() as u64)
        .migration(migration)
        .reports(false)
        .allow_insecure(a.ca_file.is_none());
    // The upload window, scaled like the other timers (docs/CONTRACT.md#upload-windows).
    let window = if a.window_secs == 0 { 0 } else { scaled_secs(a.window_secs.into(), a.scale, 1) };
    let builder = match &a.ca_file {
        Some(path) => {
            let pem = std::fs::read_to_string(path).map_err(|e| format!("--ca-file {path}: {e}"))?;
            builder.mqtt_ca_pem(pem.as_str()).pubsub_ca_pem(pem)
        }
        None => builder,
    };
    builder.upload_window_secs(window).build().map_err(|e| e.to_string())
}

/// Runs the device; returns the exit code.
pub fn run(a: DeviceArgs) -> i32 {
    match drive(&a) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("dualpub bench radio-device: {e}");
            1
        }
    }
}

fn drive(a: &DeviceArgs) -> Result<(), String> {
    let publisher = Publisher::new(sdk_config(a)?, None).map_err(|e| e.to_string())?;
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    say("ready")?;
    match lines.next() {
        Some(Ok(l)) if l.trim() == "start" => {}
        other => return Err(format!("expected `start`, got {other:?}")),
    }
    let t0 = Instant::now();
    let (mut accepted, mut refused) = (0u64, 0u64);
    for i in 0..a.count {
        let due = t0 + Duration::from_micros(i * a.interval_us);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        match publisher.send_location(location(i, dualpub::clock::now_ms())) {
            Ok(_) => accepted += 1,
            Err(_) => refused += 1,
        }
    }
    std::thread::sleep(Duration::from_millis(a.drain_ms));
    let settle_until = Instant::now() + Duration::from_millis(a.settle_max_ms);
    while Instant::now() < settle_until {
        let m = publisher.metrics();
        if m.mqtt.queue_depth == 0 && m.pubsub.queue_depth == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let m = publisher.metrics();
    let done = serde_json::json!({
        "accepted": accepted,
        "refused": refused,
        "mqttAcked": m.mqtt.published,
        "pubsubAcked": m.pubsub.published,
        "mqttRetries": m.mqtt.retries,
        "pubsubRetries": m.pubsub.retries,
        "pubsubFailed": m.pubsub.failed,
        "httpRequests": m.http_requests,
        "queueMqtt": m.mqtt.queue_depth,
        "queuePubsub": m.pubsub.queue_depth,
        // Application-layer bytes (MQTT payloads, Pub/Sub request bodies), beside the proxies' wire bytes.
        "mqttBytesSent": m.mqtt.bytes_sent,
        "pubsubBytesSent": m.pubsub.bytes_sent,
        // The same Pub/Sub bodies before gzip (docs/CONTRACT.md#compression), and how many went compressed.
        "pubsubUncompressedBytes": m.pubsub_uncompressed_bytes,
        "pubsubGzipRequests": m.pubsub_gzip_requests,
    });
    say(&format!("done {done}"))?;
    // Stay up (idle) until the harness has read our CPU time and closes stdin.
    for _ in lines.by_ref() {}
    publisher.close();
    Ok(())
}

fn say(line: &str) -> Result<(), String> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").and_then(|()| out.flush()).map_err(|e| e.to_string())
}
