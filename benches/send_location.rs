//! `cargo bench --bench send_location`: what `sendLocation` costs the caller and how many
//! locations per second reach the disk, each next to a baseline measured in the same run
//! (this machine is shared and noisy: read the ratios, not only the absolute numbers).
//!
//! - Caller cost: every `send_location` call timed on its own (p50, p99, max) against the
//!   baseline of validating and encoding the same location (the CPU work the call cannot avoid).
//! - Durable rate: locations accepted back to back until `await_durable` confirms them, against
//!   the baseline of inserting the same rows straight into SQLite in one transaction.
//! - Start-up with a backlog: `Publisher::new` on a data directory holding those 100,000
//!   undelivered locations, against the same on an empty directory.
//!
//! `BENCH_ONLY_CALLER=1` runs only the caller cost; `BENCH_SPACING_US=N` spins N µs before each
//! timed call, like a caller doing other work between calls (docs/FFI-BENCH.md).

use dualpub::{Location, MigrationConfig, Publisher, SdkConfig};
use std::time::{Duration, Instant};

const CALLS: usize = 50_000;
const DURABLE_BATCH: usize = 100_000;

fn location(n: usize) -> Location {
    Location {
        latitude: 52.52 + (n % 1000) as f64 * 1e-5,
        longitude: 13.405,
        accuracy: Some(5.0),
        speed: Some(1.2),
        bearing: Some(90.0),
        altitude: Some(34.0),
        timestamp_ms: 1_763_790_000_000 + n as i64,
        battery: Some(0.82),
    }
}

fn publisher(dir: &std::path::Path) -> Publisher {
    // Nothing is delivered during the benchmark: MQTT points at a closed port (it retries in the
    // background with backoff) and the config keeps Pub/Sub off, so only the caller's path and the
    // store are measured.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = SdkConfig::builder("bench-device", format!("mqtt://127.0.0.1:{port}"), "bench", dir.to_string_lossy())
        .pubsub_endpoint("http://127.0.0.1:9")
        .pubsub_topic("bench")
        .migration(MigrationConfig::default())
        .allow_insecure(true)
        .outbox_limits(10_000_000, 168)
        .build()
        .unwrap();
    Publisher::new(config, None).unwrap()
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn caller_cost() {
    let dir = tempfile::tempdir().unwrap();
    let p = publisher(dir.path());
    // Warm up (allocator, runtime, store thread).
    for n in 0..2_000 {
        p.send_location(location(n)).unwrap();
    }
    // BENCH_SPACING_US=N: N µs of spinning before each timed call, as a caller that does other
    // work between calls (a JVM caller spends ~30 µs in JNA per call: docs/FFI-BENCH.md).
    let spacing = std::env::var("BENCH_SPACING_US").ok().and_then(|v| v.parse().ok()).map(Duration::from_micros);
    let mut calls = Vec::with_capacity(CALLS);
    let mut baseline = Vec::with_capacity(CALLS);
    for n in 0..CALLS {
        let loc = location(n);
        let t = Instant::now();
        loc.validate(dualpub::clock::now_ms()).unwrap();
        let id = dualpub::wire::new_event_id();
        let acceptance = dualpub::wire::Acceptance { seq: n as u64 + 1, route: dualpub::wire::Route::Both, cfg: 1 };
        std::hint::black_box(dualpub::wire::encode(&id, "bench-device", None, &loc, acceptance));
        baseline.push(t.elapsed());
        if let Some(gap) = spacing {
            let until = Instant::now() + gap;
            while Instant::now() < until {
                std::hint::spin_loop();
            }
        }
        let t = Instant::now();
        std::hint::black_box(p.send_location(loc).unwrap());
        calls.push(t.elapsed());
    }
    calls.sort();
    baseline.sort();
    let (c50, c99, b50, b99) = (percentile(&calls, 0.5), percentile(&calls, 0.99), percentile(&baseline, 0.5), percentile(&baseline, 0.99));
    println!("sendLocation caller cost over {CALLS} calls:");
    println!("  sendLocation          p50 {:>7.2} µs   p99 {:>7.2} µs   max {:>8.1} µs", us(c50), us(c99), us(*calls.last().unwrap()));
    println!("  baseline (validate + eventId + encode) p50 {:>7.2} µs   p99 {:>7.2} µs", us(b50), us(b99));
    println!("  ratio sendLocation / baseline: p50 {:.2}x, p99 {:.2}x", us(c50) / us(b50), us(c99) / us(b99));
    println!("  target p99 < 50 µs: {}", if us(c99) < 50.0 { "met" } else { "NOT met" });
    p.close();
}

fn durable_rate() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let p = publisher(dir.path());
    let locs: Vec<Location> = (0..DURABLE_BATCH).map(location).collect();
    let start = Instant::now();
    for loc in locs {
        p.send_location(loc).unwrap();
    }
    let accepted_in = start.elapsed();
    assert!(p.await_durable(Duration::from_secs(120)), "not durable within 2 minutes");
    let durable_in = start.elapsed();
    let rate = DURABLE_BATCH as f64 / durable_in.as_secs_f64();
    p.close();

    // Baseline: the same rows straight into SQLite (same pragmas), one transaction.
    let raw_dir = tempfile::tempdir().unwrap();
    let conn = rusqlite::Connection::open(raw_dir.path().join("raw.db")).unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    conn.pragma_update(None, "synchronous", "NORMAL").unwrap();
    conn.execute_batch("CREATE TABLE outbox (seq INTEGER PRIMARY KEY, event_id TEXT, payload BLOB, timestamp_ms INTEGER, accepted_at_ms INTEGER, mqtt INTEGER, pubsub INTEGER)").unwrap();
    let rows: Vec<(String, Vec<u8>)> = (0..DURABLE_BATCH)
        .map(|n| {
            let id = dualpub::wire::new_event_id();
            let acceptance = dualpub::wire::Acceptance { seq: n as u64 + 1, route: dualpub::wire::Route::Both, cfg: 1 };
            let json = dualpub::wire::encode(&id, "bench-device", None, &location(n), acceptance);
            (id, json)
        })
        .collect();
    let start = Instant::now();
    let mut conn = conn;
    let tx = conn.transaction().unwrap();
    {
        let mut stmt = tx.prepare("INSERT INTO outbox VALUES (?1, ?2, ?3, ?4, ?5, 1, 0)").unwrap();
        for (n, (id, json)) in rows.iter().enumerate() {
            stmt.execute(rusqlite::params![n as i64, id, json, n as i64, n as i64]).unwrap();
        }
    }
    tx.commit().unwrap();
    let raw = start.elapsed();
    let raw_rate = DURABLE_BATCH as f64 / raw.as_secs_f64();
    println!("sustained accepted-and-durable rate, {DURABLE_BATCH} locations:");
    println!("  accepted in {:.0} ms, durable in {:.0} ms: {rate:.0} locations/s", accepted_in.as_secs_f64() * 1e3, durable_in.as_secs_f64() * 1e3);
    println!("  baseline (one raw SQLite transaction, no SDK): {raw_rate:.0} rows/s");
    println!("  ratio SDK / raw SQLite: {:.2}", rate / raw_rate);
    println!("  target >= 20,000 locations/s: {}", if rate >= 20_000.0 { "met" } else { "NOT met" });
    dir
}

/// `Publisher::new` (the caller's wait) on `dir`, median of 5.
fn open_time(dir: &std::path::Path) -> Duration {
    let mut times: Vec<Duration> = (0..5)
        .map(|_| {
            let start = Instant::now();
            let p = publisher(dir);
            let t = start.elapsed();
            p.close();
            t
        })
        .collect();
    times.sort();
    times[2]
}

fn open_with_backlog(backlog: &std::path::Path) {
    let empty = tempfile::tempdir().unwrap();
    let base = open_time(empty.path());
    let full = open_time(backlog);
    println!("start-up (Publisher::new on the caller's thread), median of 5:");
    println!("  with {DURABLE_BATCH} undelivered locations: {:.1} ms", full.as_secs_f64() * 1e3);
    println!("  baseline (empty data directory): {:.1} ms", base.as_secs_f64() * 1e3);
    println!("  ratio: {:.0}x", full.as_secs_f64() / base.as_secs_f64().max(1e-9));
}

fn main() {
    // BENCH_ONLY_CALLER=1: only the caller cost (seconds).
    if std::env::var_os("BENCH_ONLY_CALLER").is_some() {
        caller_cost();
        return;
    }
    // `cargo bench` passes --bench; `cargo test --benches` would pass nothing useful: run either way.
    println!("dualpub benchmarks ({} cores)", std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0));
    caller_cost();
    let backlog = durable_rate();
    open_with_backlog(backlog.path());
}
