//! What the demo's independent subscribers received: the verifying subscribers themselves (a
//! subscriber on the broker and a pull subscription on the topic, for locations and for
//! migration reports), the deliveries they collected, and the `--capture` file they are written to.

use super::bed::TestBed;
use super::DemoArgs;
use dualpub_testbed::report_subscribers::ReportSubscribers;
use dualpub_testbed::subscribers::{self, Received, Subscriber};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::Instant;

/// The independent verification: a subscriber on the broker and a pull subscription on the
/// topic, for locations and for migration reports.
pub(super) struct Subscribers {
    pub(super) mqtt: Subscriber,
    pub(super) pubsub: Subscriber,
    pub(super) reports: ReportSubscribers,
    /// When they began to read (ms since the Unix epoch): the start of the verifier's window.
    pub(super) since_ms: i64,
}

impl Subscribers {
    /// Subscribes to every device's MQTT topic and to the Pub/Sub topic (none with --no-verify).
    pub(super) fn start(args: &DemoArgs, bed: &TestBed, started: Instant) -> Result<Option<Subscribers>, String> {
        if args.no_verify {
            return Ok(None);
        }
        let since_ms = subscribers::now_ms();
        let filter = dualpub::wire::DEFAULT_TOPIC_TEMPLATE.replace("{deviceId}", "+");
        let sub_name = format!("dualpub-demo-verify-{}-{}", std::process::id(), started.elapsed().as_nanos() % 1_000_000);
        // A persistent session: the broker keeps what arrives while the subscriber reconnects
        // (a clean session would miss it and blame the pipeline).
        let mqtt =
            subscribers::mqtt_with_session(&bed.mqtt_host, bed.mqtt_port, &filter, Some(&sub_name)).map_err(|e| format!("verifying MQTT subscriber: {e}"))?;
        let pubsub = subscribers::pubsub(&bed.verify_endpoint, &args.backend.pubsub_project, &args.backend.pubsub_topic, &sub_name)
            .map_err(|e| format!("verifying Pub/Sub subscription: {e}"))?;
        let reports = ReportSubscribers::start(
            &bed.mqtt_host,
            bed.mqtt_port,
            &bed.verify_endpoint,
            &args.backend.pubsub_project,
            dualpub::config::DEFAULT_REPORTS_TOPIC,
            &format!("{sub_name}-reports"),
        )?;
        Ok(Some(Subscribers { mqtt, pubsub, reports, since_ms }))
    }
}

/// Every message the subscribers received, in arrival order, duplicates included.
pub struct Deliveries {
    pub mqtt: Vec<Received>,
    pub pubsub: Vec<Received>,
    /// Times the MQTT subscriber was itself disconnected (from, to) ms.
    pub mqtt_gaps: Vec<(i64, i64)>,
    /// When the subscribers began and stopped reading (from, to) ms.
    pub window: (i64, i64),
}

/// One line of the `--capture` file.
#[derive(serde::Serialize)]
#[serde(tag = "pipeline", rename_all = "lowercase")]
enum CaptureLine<'a> {
    /// `{"pipeline":"mqtt","topic":…,"receivedAtMs":…,"payload":…}`
    #[serde(rename_all = "camelCase")]
    Mqtt { topic: &'a str, received_at_ms: i64, payload: &'a str },
    /// `{"pipeline":"pubsub","attributes":{…},"orderingKey":…,"receivedAtMs":…,"payload":…}` (payload: the decoded data)
    #[serde(rename_all = "camelCase")]
    Pubsub { attributes: &'a BTreeMap<String, String>, ordering_key: &'a str, received_at_ms: i64, payload: &'a str },
}

impl<'a> CaptureLine<'a> {
    /// An MQTT message as the broker delivered it.
    fn mqtt(r: &'a Received) -> Result<Self, String> {
        Ok(CaptureLine::Mqtt { topic: &r.topic_or_key, received_at_ms: r.received_at_ms, payload: utf8(r)? })
    }

    /// A Pub/Sub message as pulled, its data decoded.
    fn pubsub(r: &'a Received) -> Result<Self, String> {
        Ok(CaptureLine::Pubsub { attributes: &r.attributes, ordering_key: &r.topic_or_key, received_at_ms: r.received_at_ms, payload: utf8(r)? })
    }
}

/// A `--capture` line for a time the verifying MQTT subscriber itself was disconnected:
/// `{"pipeline":"mqtt","gap":{"fromMs":…,"toMs":…}}`.
fn gap_line(from_ms: i64, to_ms: i64) -> String {
    serde_json::json!({"pipeline": "mqtt", "gap": {"fromMs": from_ms, "toMs": to_ms}}).to_string()
}

/// The `--capture` line for when the subscribers read: `{"window":{"fromMs":…,"toMs":…}}`.
fn window_line((from_ms, to_ms): (i64, i64)) -> String {
    serde_json::json!({"window": {"fromMs": from_ms, "toMs": to_ms}}).to_string()
}

/// A message's bytes as text: the capture holds them exactly, so they must be UTF-8.
fn utf8(r: &Received) -> Result<&str, String> {
    std::str::from_utf8(&r.payload).map_err(|e| format!("--capture: a message on {} is not UTF-8: {e}", r.topic_or_key))
}

/// Creates (or truncates) the `--capture` file before the run, so a bad path fails at once.
pub(super) fn open_capture(path: &Path) -> Result<(&Path, File), String> {
    File::create(path).map(|f| (path, f)).map_err(|e| format!("--capture {}: {e}", path.display()))
}

/// Writes the window the subscribers read in, then every received message to the `--capture`
/// file in arrival order across both pipelines (so `dualpub verify` can settle locations as it
/// reads: docs/VERIFY.md), then the gaps.
pub(super) fn write_capture(path: &Path, file: File, d: &Deliveries) -> Result<(), String> {
    let io = |e: std::io::Error| format!("--capture {}: {e}", path.display());
    let mut out = BufWriter::new(file);
    writeln!(out, "{}", window_line(d.window)).map_err(io)?;
    let mut lines: Vec<(i64, Result<CaptureLine, String>)> = d.mqtt.iter().map(|r| (r.received_at_ms, CaptureLine::mqtt(r))).collect();
    lines.extend(d.pubsub.iter().map(|r| (r.received_at_ms, CaptureLine::pubsub(r))));
    lines.sort_by_key(|(at, _)| *at); // stable: each pipeline keeps its own order on a tie
    for (_, line) in lines {
        let json = serde_json::to_string(&line?).map_err(|e| e.to_string())?;
        writeln!(out, "{json}").map_err(io)?;
    }
    for (from, to) in &d.mqtt_gaps {
        writeln!(out, "{}", gap_line(*from, *to)).map_err(io)?;
    }
    out.flush().map_err(io)?;
    eprintln!("dualpub demo: captured {} MQTT and {} Pub/Sub messages in {}", d.mqtt.len(), d.pubsub.len(), path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn received(topic_or_key: &str, at: i64, payload: &[u8], attributes: &[(&str, &str)]) -> Received {
        Received {
            event_id: String::new(),
            device_id: String::new(),
            payload: payload.to_vec(),
            topic_or_key: topic_or_key.into(),
            attributes: attributes.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            received_at_ms: at,
        }
    }

    /// Writes `d` as the `--capture` file and reads it back, a JSON value per line.
    fn capture(d: &Deliveries) -> Result<Vec<serde_json::Value>, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("capture.jsonl");
        let (path, file) = open_capture(&path)?;
        write_capture(path, file, d)?;
        let text = std::fs::read_to_string(path).unwrap();
        Ok(text.lines().map(|l| serde_json::from_str(l).unwrap()).collect())
    }

    #[test]
    fn the_capture_is_the_window_then_every_message_by_arrival_then_the_gaps() {
        let d = Deliveries {
            mqtt: vec![received("device/telemetry/d-1", 20, br#"{"n":2}"#, &[]), received("device/telemetry/d-1", 10, br#"{"n":1}"#, &[])],
            pubsub: vec![received("d-1", 10, br#"{"n":1}"#, &[("deviceId", "d-1")])],
            mqtt_gaps: vec![(30, 40)],
            window: (5, 50),
        };
        let lines = capture(&d).unwrap();
        assert_eq!(
            lines,
            vec![
                json!({"window": {"fromMs": 5, "toMs": 50}}),
                // A tie keeps each pipeline's order, MQTT's first.
                json!({"pipeline": "mqtt", "topic": "device/telemetry/d-1", "receivedAtMs": 10, "payload": r#"{"n":1}"#}),
                json!({"pipeline": "pubsub", "attributes": {"deviceId": "d-1"}, "orderingKey": "d-1", "receivedAtMs": 10, "payload": r#"{"n":1}"#}),
                json!({"pipeline": "mqtt", "topic": "device/telemetry/d-1", "receivedAtMs": 20, "payload": r#"{"n":2}"#}),
                json!({"pipeline": "mqtt", "gap": {"fromMs": 30, "toMs": 40}}),
            ]
        );
    }

    #[test]
    fn a_message_that_is_not_utf8_fails_the_capture() {
        let d = Deliveries { mqtt: vec![received("device/telemetry/d-1", 1, &[0xff, 0xfe], &[])], pubsub: vec![], mqtt_gaps: vec![], window: (0, 1) };
        let err = capture(&d).unwrap_err();
        assert!(err.contains("device/telemetry/d-1 is not UTF-8"), "{err}");
    }

    #[test]
    fn a_capture_path_that_cannot_be_created_fails_before_the_run() {
        let err = open_capture(Path::new("/nonexistent-dir/capture.jsonl")).unwrap_err();
        assert!(err.starts_with("--capture /nonexistent-dir/capture.jsonl: "), "{err}");
    }
}
