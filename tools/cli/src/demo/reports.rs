//! The demo's migration reports (collected by `dualpub_testbed::report_subscribers`): the
//! `--reports-out` and `--metrics-out` files, and the fleet rollup (`--rollup CMD`, run on the
//! reports file; docs/CONTRACT.md#migration-reports).

use dualpub::{DualPublisher, MetricsSnapshot};
use dualpub_testbed::subscribers::Received;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// Writes the reports as JSON lines of `{"transport", "receivedAtMs", "report"}` (the envelope
/// `tools/rollup` reads), duplicates included.
pub fn write_reports(path: &Path, received: &[(&'static str, Received)]) -> Result<(), String> {
    let io = |e: std::io::Error| format!("--reports-out {}: {e}", path.display());
    let mut out = BufWriter::new(std::fs::File::create(path).map_err(io)?);
    let now = dualpub::clock::now_ms();
    for (transport, r) in received {
        let report: serde_json::Value = serde_json::from_slice(&r.payload).map_err(|e| format!("a report on {} is not JSON: {e}", r.topic_or_key))?;
        let line = serde_json::json!({"transport": transport, "receivedAtMs": now, "report": report});
        writeln!(out, "{line}").map_err(io)?;
    }
    out.flush().map_err(io)
}

/// Writes each device's own figures, one JSON line per device: the `metrics()` counters the
/// rollup is checked against, and the raw latencies its histograms are checked against.
pub fn write_metrics(path: &Path, fleet: &[(String, std::sync::Arc<DualPublisher>)], metrics: &[MetricsSnapshot]) -> Result<(), String> {
    let io = |e: std::io::Error| format!("--metrics-out {}: {e}", path.display());
    let mut out = BufWriter::new(std::fs::File::create(path).map_err(io)?);
    for ((id, p), m) in fleet.iter().zip(metrics) {
        let [mqtt_ms, pubsub_ms] = p.latency_samples();
        let line = serde_json::json!({
            "deviceId": id,
            "accepted": m.accepted,
            "mqtt": {"acked": m.mqtt.published, "failed": m.mqtt.failed, "retries": m.mqtt.retries, "breakerOpenings": m.mqtt.circuit_openings},
            "pubsub": {"acked": m.pubsub.published, "failed": m.pubsub.failed, "retries": m.pubsub.retries, "breakerOpenings": m.pubsub.circuit_openings},
            "fallbacks": m.fallback,
            "latencyMs": {"mqtt": mqtt_ms, "pubsub": pubsub_ms},
        });
        writeln!(out, "{line}").map_err(io)?;
    }
    out.flush().map_err(io)
}

/// Runs `command` with the reports file as its last argument (through `sh -c`), its output
/// going to this process's stdout: the fleet rollup table.
pub fn run_rollup(command: &str, reports: &Path) -> Result<(), String> {
    let status =
        std::process::Command::new("sh").arg("-c").arg(format!("{command} \"$0\"")).arg(reports).status().map_err(|e| format!("--rollup {command:?}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("--rollup {command:?} failed ({status})"))
    }
}

/// Where the reports go: `--reports-out`, or a file in `dir` when only `--rollup` asked for them.
pub fn reports_path(reports_out: Option<&PathBuf>, dir: &Path) -> PathBuf {
    reports_out.cloned().unwrap_or_else(|| dir.join("migration-reports.jsonl"))
}
