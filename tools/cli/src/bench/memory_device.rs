//! `dualpub bench memory-device`: one offline phone running the real SDK, started by the memory
//! harness (`dualpub bench memory`) as a child process, so that its resident memory is its own.
//!
//! It builds a publisher on `--data-dir` with both transports owed every location and both
//! unreachable (the network is reported down at once, and the broker and the Pub/Sub endpoint
//! are a closed loopback port), lets start-up settle, reads its own `/proc/self/status` (the
//! idle figure), queues `--count` locations (or, in `restore`, queues nothing: the SDK restores
//! what the directory holds when it starts), waits until they are durable, reads it again, and
//! prints one line `done {json}` with the figures and the SDK's own counts (accepted, owed per
//! transport, dropped, recovered) so the harness can tell that nothing was lost.

use super::procfs::Status;
use clap::{Args, ValueEnum};
use dualpub::{MigrationConfig, Publisher, SdkConfig};
use std::io::Write;
use std::time::{Duration, Instant};

/// How the device fills its outbox.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One `sendLocation` per location, as an app calls it at 1 Hz (only faster).
    Send,
    /// `sendLocations` with `--batch` locations per call (a backlog import).
    Batch,
    /// Sends nothing: opens a directory that already holds the locations (a restart).
    Restore,
}

/// Options of `dualpub bench memory-device`.
#[derive(Args, Debug, Clone)]
pub struct MemoryDeviceArgs {
    /// The outbox directory: empty for `send` and `batch`, the one a `send` left for `restore`.
    #[arg(long)]
    pub data_dir: String,
    /// How the outbox is filled.
    #[arg(long, value_enum)]
    pub mode: Mode,
    /// Locations to queue (`send`, `batch`) or expected in the directory (`restore`).
    #[arg(long)]
    pub count: u64,
    /// Locations per `sendLocations` call in `batch` (at most 10,000, the SDK's limit per call).
    #[arg(long, default_value_t = 1000)]
    pub batch: usize,
    /// Wait until what was queued is durable after every this many locations (0: only at the
    /// end). An app at 1 Hz never has more than one location on its way to the disk; a sender
    /// that outruns the disk would measure the store's queue, not the backlog.
    #[arg(long, default_value_t = 1000)]
    pub durable_every: u64,
    /// Milliseconds start-up (and the end of queueing) is given to settle before a reading.
    #[arg(long, default_value_t = 1000)]
    pub settle_ms: u64,
}

/// The device id of every run: the rollout is 100 %, so any id owes both transports.
const DEVICE_ID: &str = "memory-bench-device";

/// Runs the device; returns the exit code.
pub fn run(a: MemoryDeviceArgs) -> i32 {
    match drive(&a) {
        Ok(done) => match say(&format!("done {done}")) {
            Ok(()) => 0,
            Err(e) => fail(&e),
        },
        Err(e) => fail(&e),
    }
}

fn fail(e: &str) -> i32 {
    eprintln!("dualpub bench memory-device: {e}");
    1
}

/// A port on 127.0.0.1 that nothing listens on (bound, then let go).
fn closed_port() -> Result<u16, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    listener.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

/// The SDK's defaults (among them the outbox caps: 100,000 rows, 168 hours) with both transports
/// owed every location, both pointed at a closed port, and no migration reports.
fn sdk_config(data_dir: &str) -> Result<SdkConfig, String> {
    let port = closed_port()?;
    let migration = MigrationConfig { version: 1, mqtt_enabled: true, pubsub_enabled: true, pubsub_percentage: 100.0, ..MigrationConfig::default() };
    SdkConfig::builder(DEVICE_ID, format!("mqtt://127.0.0.1:{port}"), "memory-bench", data_dir)
        .pubsub_endpoint(format!("http://127.0.0.1:{port}"))
        .migration(migration)
        .reports(false)
        .allow_insecure(true)
        .build()
        .map_err(|e| e.to_string())
}

/// What queueing took.
#[derive(Debug, Default)]
struct Queued {
    accepted: u64,
    refused: u64,
    /// Milliseconds spent queueing, waits for durability included.
    ms: f64,
}

/// Queues `a.count` locations the way `a.mode` says, waiting for durability every
/// `a.durable_every` of them.
fn queue(publisher: &Publisher, a: &MemoryDeviceArgs) -> Result<Queued, String> {
    let started = Instant::now();
    let mut q = Queued::default();
    let per_call = match a.mode {
        Mode::Restore => return Ok(q),
        Mode::Send => 1,
        Mode::Batch => a.batch.max(1) as u64,
    };
    let mut since_wait = 0;
    let mut i = 0;
    while i < a.count {
        let n = per_call.min(a.count - i);
        let location = |k: u64| super::device::location(k, dualpub::clock::now_ms());
        let result = match a.mode {
            Mode::Send => publisher.send_location(location(i)).map(drop),
            _ => publisher.send_locations((i..i + n).map(location).collect()).map(drop),
        };
        match result {
            Ok(()) => q.accepted += n,
            Err(_) => q.refused += n,
        }
        (i, since_wait) = (i + n, since_wait + n);
        if a.durable_every > 0 && since_wait >= a.durable_every {
            since_wait = 0;
            if !publisher.await_durable(Duration::from_secs(60)) {
                return Err(format!("location {i}: not durable within 60 s"));
            }
        }
    }
    q.ms = started.elapsed().as_secs_f64() * 1000.0;
    Ok(q)
}

/// Bytes of the outbox database and its WAL in `dir`.
fn disk_bytes(dir: &str) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| entries.filter_map(Result::ok).filter_map(|e| e.metadata().ok()).filter(|m| m.is_file()).map(|m| m.len()).sum())
        .unwrap_or(0)
}

fn drive(a: &MemoryDeviceArgs) -> Result<serde_json::Value, String> {
    let before = Status::read()?;
    let config = sdk_config(&a.data_dir)?;
    let t0 = Instant::now();
    let publisher = Publisher::new(config, None).map_err(|e| e.to_string())?;
    let startup_ms = t0.elapsed().as_secs_f64() * 1000.0;
    // Offline: nothing is attempted on either transport; locations are kept, durable
    // (docs/CONTRACT.md#upload-windows, `setNetworkAvailable`).
    publisher.set_network_available(false);
    let settle = Duration::from_millis(a.settle_ms);
    std::thread::sleep(settle);
    let idle = Status::read()?;
    let queued = queue(&publisher, a)?;
    let t1 = Instant::now();
    let durable = publisher.await_durable(Duration::from_secs(120));
    let durable_ms = t1.elapsed().as_secs_f64() * 1000.0;
    if a.mode != Mode::Restore {
        std::thread::sleep(settle);
    }
    let after = Status::read()?;
    let m = publisher.metrics();
    let done = serde_json::json!({
        "mode": format!("{:?}", a.mode).to_lowercase(),
        "count": a.count,
        "beforeSdk": before,
        "idle": idle,
        "after": after,
        "startupMs": startup_ms,
        "queueMs": queued.ms,
        "durableWaitMs": durable_ms,
        "durable": durable,
        "accepted": queued.accepted,
        "refused": queued.refused,
        "sdkAccepted": m.accepted,
        "recovered": m.recovered,
        "owedMqtt": m.mqtt.queue_depth,
        "owedPubsub": m.pubsub.queue_depth,
        "dropped": m.dropped,
        "storageErrors": m.storage_errors,
        // Attempts made before the network was reported down (a restart has rows owed at once).
        "failedMqtt": m.mqtt.failed,
        "failedPubsub": m.pubsub.failed,
        "retriesMqtt": m.mqtt.retries,
        "retriesPubsub": m.pubsub.retries,
        "diskBytes": disk_bytes(&a.data_dir),
    });
    publisher.close();
    Ok(done)
}

fn say(line: &str) -> Result<(), String> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").and_then(|()| out.flush()).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_owes_both_transports_and_keeps_the_default_caps() {
        let c = sdk_config("/tmp/unused").unwrap();
        assert_eq!((c.max_outbox_rows, c.max_outbox_age_hours), (100_000, 168));
        let m = c.migration.unwrap();
        assert!(m.mqtt_enabled && m.pubsub_enabled && m.pubsub_percentage == 100.0);
    }
}
