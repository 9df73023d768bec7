//! `dualpub verify --synthetic N`: the verifier's throughput and memory on generated streams,
//! against a baseline in the same run (generating and parsing the same messages without the
//! join), so the figures are ratios on a shared, noisy machine.

use super::engine::{Pipeline, Verifier};
use super::VerifyArgs;
use std::time::Instant;

/// The `n`th generated location: device `n / 100`, route `both` for a quarter of the devices.
fn location(n: u64) -> (Vec<u8>, bool) {
    let device = n / 100;
    let both = device.is_multiple_of(4);
    let payload = format!(
        r#"{{"eventId":"01936f1e-7c3a-7cc1-{:04x}-{:012x}","deviceId":"synthetic-{device}","latitude":52.52,"longitude":13.405,"timestamp":{},"schemaVersion":2,"seq":{},"route":"{}","cfg":1}}"#,
        (n >> 48) & 0xffff,
        n & 0xffff_ffff_ffff,
        1_763_790_000_000 + n as i64,
        n % 100 + 1,
        if both { "both" } else { "mqtt" }
    );
    (payload.into_bytes(), both)
}

/// Peak resident memory of this process (VmHWM), bytes.
fn peak_rss() -> Option<u64> {
    crate::bench::procfs::Status::read().ok().map(|s| s.hwm_kib * 1024)
}

/// Feeds `n` locations (each on MQTT, a quarter on Pub/Sub too; one a millisecond, each
/// arriving 1 s later on MQTT and 2 s later on Pub/Sub) to a verifier with the options' grace
/// and prints events per second, the baseline's, memory per event and the most locations held
/// at once. Returns the exit code.
pub fn measure(n: u64, args: &VerifyArgs) -> i32 {
    // Baseline: the same messages generated and parsed, nothing kept.
    let start = Instant::now();
    let mut events = 0u64;
    for i in 0..n {
        let (payload, both) = location(i);
        for _ in 0..if both { 2 } else { 1 } {
            let v: serde_json::Value = serde_json::from_slice(&payload).unwrap_or_default();
            std::hint::black_box(v);
            events += 1;
        }
    }
    let baseline = start.elapsed();
    let rss_before = peak_rss().unwrap_or(0);
    let start = Instant::now();
    let mut v: Verifier = args.verifier();
    let mut held = 0usize;
    for i in 0..n {
        let (payload, both) = location(i);
        v.arrival(Pipeline::Mqtt, 1_763_790_001_000 + i as i64, &payload);
        if both {
            v.arrival(Pipeline::Pubsub, 1_763_790_002_000 + i as i64, &payload);
        }
        if i % 4_096 == 0 {
            held = held.max(v.held());
        }
    }
    let ingested = start.elapsed();
    held = held.max(v.held());
    let findings = v.finish();
    let total = start.elapsed();
    let rss = peak_rss().unwrap_or(0).saturating_sub(rss_before);
    let rate = |d: std::time::Duration| events as f64 / d.as_secs_f64();
    println!("dualpub verify --synthetic {n}: {events} events ({} locations)", n);
    println!("  verifier: ingest {:.1} s, finish {:.1} s: {:.0} events/s", ingested.as_secs_f64(), (total - ingested).as_secs_f64(), rate(total));
    println!("  baseline (generate + parse only): {:.1} s: {:.0} events/s", baseline.as_secs_f64(), rate(baseline));
    println!("  ratio verifier / baseline: {:.2}", rate(total) / rate(baseline));
    println!("  peak memory above the baseline's: {:.0} MiB, {:.0} bytes per event", rss as f64 / 1_048_576.0, rss as f64 / events.max(1) as f64);
    println!("  grace {} s: at most {held} locations held at once ({} devices)", args.grace_secs, n.div_ceil(100));
    println!("  verdict {}, {} missing", findings.verdict, findings.missing.len());
    if findings.missing.is_empty() {
        0
    } else {
        1
    }
}
