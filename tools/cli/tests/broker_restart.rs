//! A broker restart in the middle of a 3,000-location demo, against two real brokers: Debian's
//! mosquitto and RabbitMQ's MQTT plugin (an Erlang broker, like EMQX). Whenever the broker
//! acknowledged every location, the demo must report zero lost and the verifier a pass: its
//! persistent-session subscriber gets what arrived while it was reconnecting, and any gap of its
//! own is reported as such, never as the pipeline's loss (docs/VERIFY.md).

use dualpub_testbed::mosquitto::Mosquitto;
use dualpub_testbed::rabbitmq::{self, RabbitMq};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs the demo against `mqtt_url`, restarting the broker (`restart`) once a third of the
/// locations are durable; returns the demo's JSON summary.
fn demo_across_a_restart(mqtt_url: &str, dir: &Path, restart: impl FnOnce()) -> serde_json::Value {
    let log = dir.join("durable.log");
    // 100 rounds 100 ms apart: about 10 s of sending, so the restart lands in the middle.
    let mut child = Command::new(env!("CARGO_BIN_EXE_dualpub"))
        .args(["demo", "--devices", "30", "--locations-per-device", "100", "--round-interval-ms", "100", "--rollout", "25"])
        .args(["--mqtt-url", mqtt_url, "--allow-insecure", "--verify", "--json", "--flush-timeout-ms", "180000"])
        .arg("--durable-log")
        .arg(&log)
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while std::fs::read_to_string(&log).unwrap_or_default().lines().count() < 1_000 {
        assert!(start.elapsed() < Duration::from_secs(120), "the demo never reached 1,000 durable locations");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(child.try_wait().unwrap().is_none(), "the demo ended before the restart");
    let durable_before = std::fs::read_to_string(&log).unwrap_or_default().lines().count();
    restart();
    assert!(durable_before < 3_000, "the restart came after the last location");
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr).lines().rev().take(30).collect::<Vec<_>>().join("\n")
    );
    serde_json::from_str(stdout.trim().lines().last().unwrap()).unwrap()
}

fn assert_clean(broker: &str, s: &serde_json::Value) {
    assert_eq!((s["accepted"].as_u64(), s["mqtt_delivered"].as_u64(), s["lost"].as_u64()), (Some(3_000), Some(3_000), Some(0)), "{broker}: {s}");
    let v = &s["verify"];
    assert_eq!(v["verdict"], "pass", "{broker}: {v}");
    assert_eq!(v["steps"][0]["mqtt"]["received"].as_u64(), Some(3_000), "{broker}");
    assert!(v["missing"].as_array().unwrap().is_empty(), "{broker}: {}", v["missing"]);
    // The subscriber lost its connection with the broker: its own gap is reported, not a loss.
    assert!(!v["mqtt"]["ownGaps"].as_array().unwrap().is_empty(), "{broker}: the restart left no gap of the verifier's own");
    eprintln!("{broker}: 3,000/3,000 through a restart; verifier gaps of its own: {}", v["mqtt"]["ownGaps"]);
}

#[test]
fn a_mosquitto_restart_loses_nothing_and_the_verifier_passes() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Mosquitto::start(dir.path(), None).unwrap();
    let url = broker.url();
    let s = demo_across_a_restart(&url, dir.path(), || {
        broker.stop_gracefully();
        std::thread::sleep(Duration::from_secs(2));
        broker.restart().unwrap();
    });
    assert_clean("mosquitto", &s);
}

#[test]
fn a_rabbitmq_restart_loses_nothing_and_the_verifier_passes() {
    assert!(rabbitmq::installed(), "rabbitmq-server is not installed (scripts/test installs it)");
    let dir = tempfile::tempdir().unwrap();
    let mut broker = RabbitMq::start(dir.path()).unwrap();
    let url = broker.url();
    let s = demo_across_a_restart(&url, dir.path(), || {
        broker.stop();
        broker.restart().unwrap();
    });
    assert_clean("rabbitmq", &s);
}
