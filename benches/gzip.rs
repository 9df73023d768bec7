//! `cargo bench --bench gzip`: what gzip costs and saves on Pub/Sub request bodies
//! (docs/CONTRACT.md#compression), at zlib level 6 (the default; the SDK's for bodies up to
//! 64 KiB) and level 1 (the SDK's for larger ones), each beside the baseline of building the same
//! body (event ids, wire JSON, base64, request JSON: the work every request does anyway),
//! measured in the same run. Bodies as the SDK builds them: the wire JSON
//! of a moving device's locations, base64 in `data`, the default attributes, `orderingKey`; 30
//! locations (1 Hz with the 30 s upload window) and 1,000 (a backlog's full request).

use base64::Engine;
use dualpub::wire::{self, Acceptance, Route};
use dualpub::Location;
use std::io::Write;
use std::time::{Duration, Instant};

const DEVICE: &str = "truck-0042";

/// A device driving: positions, speed and bearing change from one fix to the next.
fn location(n: usize) -> Location {
    let t = n as f64;
    Location {
        latitude: 52.52 + t * 3.1e-5 + (t * 0.37).sin() * 1e-5,
        longitude: 13.405 + t * 4.7e-5 + (t * 0.23).cos() * 1e-5,
        accuracy: Some(3.0 + (n % 7) as f64 * 1.5),
        speed: Some(((8.0 + (t * 0.11).sin() * 4.0) * 100.0).round() / 100.0),
        bearing: Some(((40.0 + t * 0.3) % 360.0 * 10.0).round() / 10.0),
        altitude: Some(((34.0 + (t * 0.05).sin() * 2.0) * 10.0).round() / 10.0),
        timestamp_ms: 1_763_790_000_000 + n as i64 * 1000,
        battery: Some(((0.9 - t * 1e-5) * 1000.0).round() / 1000.0),
    }
}

/// The request body for `n` locations, built as `src/transport/pubsub.rs` builds it.
fn body(n: usize) -> Vec<u8> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let messages: Vec<serde_json::Value> = (0..n)
        .map(|k| {
            let event_id = wire::new_event_id();
            let loc = location(k);
            let payload = wire::encode(&event_id, DEVICE, Some("fleet-7"), &loc, Acceptance { seq: k as u64 + 1, route: Route::Both, cfg: 12 });
            let attributes = wire::pubsub_attributes(&dualpub::DEFAULT_ATTRIBUTES, DEVICE, Some("fleet-7"), &event_id, loc.timestamp_ms);
            serde_json::json!({"data": b64.encode(&payload), "attributes": attributes, "orderingKey": DEVICE})
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({ "messages": messages })).unwrap()
}

fn gzip(body: &[u8], level: u32) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::with_capacity(body.len() / 3), flate2::Compression::new(level));
    e.write_all(body).unwrap();
    e.finish().unwrap()
}

/// Median time of `f` over `rounds` runs.
fn median(rounds: usize, mut f: impl FnMut()) -> Duration {
    let mut t: Vec<Duration> = (0..rounds)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    t.sort();
    t[rounds / 2]
}

fn main() {
    println!("| locations per request | body B | what | B per location | time per request (median) | × building the body |");
    println!("|---:|---:|---|---:|---:|---:|");
    for (n, rounds) in [(30usize, 401usize), (1000, 41)] {
        let b = body(n);
        let build = median(rounds, || {
            std::hint::black_box(body(n));
        });
        println!("| {n} | {} | as built (baseline: building it) | {:.0} | {:.2} ms | 1.00× |", b.len(), b.len() as f64 / n as f64, build.as_secs_f64() * 1e3);
        for level in [1u32, 6] {
            let packed = gzip(&b, level);
            let took = median(rounds, || {
                std::hint::black_box(gzip(&b, level));
            });
            println!(
                "| {n} | {} | gzip level {level} | {:.0} | {:.2} ms | {:.2}× |",
                b.len(),
                packed.len() as f64 / n as f64,
                took.as_secs_f64() * 1e3,
                took.as_secs_f64() / build.as_secs_f64()
            );
        }
    }
}
