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
//! - A stuck row: `send_location` while one location stays owed to an MQTT that never answers and
//!   a week of locations at 1 Hz (604,800) went to Pub/Sub after it, each timed call followed by
//!   the delivery of what it sent (so the rows after the stuck one have all left, every time),
//!   against the same publisher without the stuck row.
//!
//! `BENCH_ONLY_CALLER=1` runs only the caller cost; `BENCH_ONLY_STUCK=1` only the stuck row
//! (`BENCH_GAP=N` locations after it instead of a week's); `BENCH_SPACING_US=N` spins N µs before
//! each timed call, like a caller doing other work between calls (docs/FFI-BENCH.md).

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
        loc.validate().unwrap();
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

/// Timed `send_location` calls of one stuck-row run, sorted, and how long the gap took to send.
struct StuckRun {
    calls: Vec<Duration>,
    gap_in: Duration,
}

/// One publisher on the Pub/Sub emulator (MQTT off for the device, fallback on) with MQTT
/// unreachable. `stuck`: Pub/Sub refuses the first location as invalid, so it is dead-lettered
/// and owed to MQTT alone — which never answers. Then `gap` locations go to Pub/Sub, then
/// `CYCLES` timed calls, each waiting for its location to leave.
fn stuck_run(stuck: bool, gap: usize) -> StuckRun {
    const CYCLES: usize = 2_000;
    let emu = dualpub_testbed::EmulatorHandle::spawn(dualpub_testbed::EmulatorOptions::default()).unwrap();
    for topic in ["bench", "migration-reports"] {
        dualpub_testbed::subscribers::create_topic(&emu.url(), "bench", topic).unwrap();
    }
    const MARKER: f64 = 12345.678;
    if stuck {
        emu.emulator().faults().set(dualpub_testbed::FaultPlan { reject_data_containing: Some(MARKER.to_string()), ..Default::default() });
    }
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let migration = MigrationConfig { version: 1, mqtt_enabled: false, pubsub_enabled: true, pubsub_percentage: 100.0, ..MigrationConfig::default() };
    let config = SdkConfig::builder("bench-stuck", format!("mqtt://127.0.0.1:{port}"), "bench", dir.path().to_string_lossy())
        .pubsub_endpoint(emu.url())
        .pubsub_topic("bench")
        .pubsub_batch(1_000, 1_000_000, 1)
        .upload_window_secs(0)
        .migration(migration)
        .allow_insecure(true)
        .outbox_limits(10_000_000, 168)
        .build()
        .unwrap();
    let p = Publisher::new(config, None).unwrap();
    let drained = |p: &Publisher, timeout: Duration| {
        let until = Instant::now() + timeout;
        while p.metrics().pubsub.queue_depth > 0 {
            assert!(Instant::now() < until, "Pub/Sub did not drain: {:?}", p.metrics().pubsub);
            std::thread::sleep(Duration::from_micros(200));
        }
    };
    p.send_location(Location { altitude: Some(MARKER), ..location(0) }).unwrap();
    drained(&p, Duration::from_secs(60));
    let m = p.metrics();
    assert_eq!((m.dead_letter, m.mqtt.queue_depth), (u64::from(stuck), u64::from(stuck)), "the stuck row: {m:?}");
    let start = Instant::now();
    for n in 1..=gap {
        p.send_location(location(n)).unwrap();
        if n % 10_000 == 0 {
            drained(&p, Duration::from_secs(120));
        }
    }
    drained(&p, Duration::from_secs(120));
    let gap_in = start.elapsed();
    let mut calls = Vec::with_capacity(CYCLES);
    for n in 0..CYCLES {
        let loc = location(gap + 1 + n);
        let t = Instant::now();
        std::hint::black_box(p.send_location(loc).unwrap());
        calls.push(t.elapsed());
        drained(&p, Duration::from_secs(10));
    }
    assert_eq!(p.metrics().mqtt.queue_depth, u64::from(stuck), "the stuck row is still owed");
    p.close();
    calls.sort();
    StuckRun { calls, gap_in }
}

fn stuck_row() {
    let gap = std::env::var("BENCH_GAP").ok().and_then(|v| v.parse().ok()).unwrap_or(604_800);
    let control = stuck_run(false, gap);
    let stuck = stuck_run(true, gap);
    println!("sendLocation with one row stuck on MQTT and {gap} locations delivered to Pub/Sub after it:");
    for (name, r) in [("stuck row", &stuck), ("baseline (no stuck row)", &control)] {
        let c = &r.calls;
        println!(
            "  {name:<24} p50 {:>8.2} µs   p99 {:>8.2} µs   max {:>9.1} µs   ({} calls; the gap sent in {:.1} s)",
            us(percentile(c, 0.5)),
            us(percentile(c, 0.99)),
            us(*c.last().unwrap()),
            c.len(),
            r.gap_in.as_secs_f64()
        );
    }
    let ratio = |q| us(percentile(&stuck.calls, q)) / us(percentile(&control.calls, q));
    println!("  ratio stuck / baseline: p50 {:.2}x, p99 {:.2}x", ratio(0.5), ratio(0.99));
    println!("  target p99 within 2x of the baseline: {}", if ratio(0.99) <= 2.0 { "met" } else { "NOT met" });
}

fn main() {
    // BENCH_ONLY_CALLER=1: only the caller cost (seconds).
    if std::env::var_os("BENCH_ONLY_CALLER").is_some() {
        caller_cost();
        return;
    }
    if std::env::var_os("BENCH_ONLY_STUCK").is_some() {
        stuck_row();
        return;
    }
    // `cargo bench` passes --bench; `cargo test --benches` would pass nothing useful: run either way.
    println!("dualpub benchmarks ({} cores)", std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0));
    caller_cost();
    let backlog = durable_rate();
    open_with_backlog(backlog.path());
    stuck_row();
}
