//! The demo's summary: what the independent subscribers saw against what the fleet accepted and
//! still holds (delivered, lost, duplicated, outside the cohort), the fleet's SDK metrics totalled,
//! the table printed on stdout, the `--json` line and the exit code.

use super::capture::Deliveries;
use super::fleet::ConfigReport;
use super::{Outcome, Pending, ReportsSeen, Run, Sent};
use dualpub::{MetricsSnapshot, TransportMetrics};
use std::collections::{HashMap, HashSet};
use std::time::Duration;

/// What the independent subscribers saw, when they ran.
struct Verified {
    mqtt_delivered: usize,
    pubsub_delivered: usize,
    lost: usize,
    duplicates: usize,
    unexpected: usize,
    resumed: usize,
    same_bytes: bool,
}

/// The summary table and the `--json` report.
pub(super) struct Summary {
    devices: usize,
    accepted: u64,
    rejected: u64,
    expected_mqtt: usize,
    expected_pubsub: usize,
    pubsub_devices: Vec<String>,
    verified: Option<Verified>,
    lost: Option<usize>,
    unexpected: Option<usize>,
    pending_mqtt: u64,
    pending_pubsub: u64,
    mqtt_p50: f64,
    mqtt_p99: f64,
    pubsub_p50: f64,
    pubsub_p99: f64,
    fallbacks: u64,
    retries: u64,
    circuit_openings: u64,
    recovered: u64,
    dropped: u64,
    chaos_events: u64,
    elapsed: Duration,
    rollout: f64,
    config: Option<ConfigReport>,
    reports: Option<ReportsSeen>,
    connects: Option<super::bed::Connects>,
    connects_sending: Option<super::bed::Connects>,
}

/// The middle value (the upper one of an even count); 0 for none.
fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

impl Verified {
    /// Compares what the subscribers received with what the fleet accepted and still holds.
    fn compute(d: &Deliveries, sent: &Sent, cohort: &HashSet<String>, pending: Pending) -> Verified {
        let (m, p) = (&d.mqtt, &d.pubsub);
        let m_ids: HashSet<&str> = m.iter().map(|r| r.event_id.as_str()).collect();
        let p_ids: HashSet<&str> = p.iter().map(|r| r.event_id.as_str()).collect();
        let mqtt_delivered = sent.expected_mqtt.iter().filter(|e| m_ids.contains(e.as_str())).count();
        let pubsub_delivered = sent.expected_pubsub.iter().filter(|e| p_ids.contains(e.as_str())).count();
        // Not delivered and not still held (durably) by the SDK: lost.
        let lost = (sent.expected_mqtt.len() - mqtt_delivered).saturating_sub(pending.mqtt as usize)
            + (sent.expected_pubsub.len() - pubsub_delivered).saturating_sub(pending.pubsub as usize);
        let duplicates = (m.len() - m_ids.len()) + (p.len() - p_ids.len());
        // Accepted in this run, yet on Pub/Sub for a device outside the cohort.
        let unexpected = p.iter().filter(|r| sent.accepted_ids.contains(&r.event_id) && !cohort.contains(&r.device_id)).count();
        // Delivered now but accepted by an earlier run on the same data directory.
        let resumed: HashSet<&str> = m.iter().chain(p.iter()).map(|r| r.event_id.as_str()).filter(|e| !sent.accepted_ids.contains(*e)).collect();
        // Both backends must see the same bytes for the same eventId.
        let by_id: HashMap<&str, &[u8]> = m.iter().map(|r| (r.event_id.as_str(), r.payload.as_slice())).collect();
        let same_bytes = p.iter().all(|r| by_id.get(r.event_id.as_str()).is_none_or(|b| *b == r.payload.as_slice()));
        Verified { mqtt_delivered, pubsub_delivered, lost, duplicates, unexpected, resumed: resumed.len(), same_bytes }
    }
}

/// The median of the devices' p50 latencies on one transport (devices that published on it).
fn median_p50(metrics: &[MetricsSnapshot], transport: impl Fn(&MetricsSnapshot) -> &TransportMetrics) -> f64 {
    let p50s = metrics.iter().map(transport).filter(|t| t.published > 0);
    median(p50s.map(|t| t.latency_p50_ms).collect())
}

/// The highest p99 latency of any device on one transport.
fn max_p99(metrics: &[MetricsSnapshot], transport: impl Fn(&MetricsSnapshot) -> &TransportMetrics) -> f64 {
    metrics.iter().map(transport).map(|t| t.latency_p99_ms).fold(0.0, f64::max)
}

/// A counter summed over the fleet.
fn total(metrics: &[MetricsSnapshot], counter: impl Fn(&MetricsSnapshot) -> u64) -> u64 {
    metrics.iter().map(counter).sum()
}

impl Summary {
    /// Verifies delivery (when the subscribers ran) and totals the fleet's SDK metrics.
    pub(super) fn compute(run: &Run, sent: &Sent, outcome: &Outcome) -> Summary {
        let (cohort, m) = (&run.cohort, &outcome.metrics);
        let verified = outcome.deliveries.as_ref().map(|d| Verified::compute(d, sent, &cohort.pubsub, outcome.pending));
        let mut pubsub_devices = cohort.pubsub_devices.clone();
        pubsub_devices.sort();
        Summary {
            devices: run.args.devices,
            accepted: sent.accepted,
            rejected: sent.rejected,
            expected_mqtt: sent.expected_mqtt.len(),
            expected_pubsub: sent.expected_pubsub.len(),
            pubsub_devices,
            lost: verified.as_ref().map(|v| v.lost),
            unexpected: verified.as_ref().map(|v| v.unexpected),
            verified,
            pending_mqtt: outcome.pending.mqtt,
            pending_pubsub: outcome.pending.pubsub,
            mqtt_p50: median_p50(m, |s| &s.mqtt),
            mqtt_p99: max_p99(m, |s| &s.mqtt),
            pubsub_p50: median_p50(m, |s| &s.pubsub),
            pubsub_p99: max_p99(m, |s| &s.pubsub),
            fallbacks: total(m, |s| s.fallback),
            retries: total(m, |s| s.mqtt.retries + s.pubsub.retries),
            circuit_openings: total(m, |s| s.mqtt.circuit_openings + s.pubsub.circuit_openings),
            recovered: total(m, |s| s.recovered),
            dropped: total(m, |s| s.dropped.values().sum()),
            chaos_events: outcome.chaos_events,
            elapsed: outcome.elapsed,
            rollout: run.args.rollout,
            config: run.config.clone(),
            reports: outcome.reports,
            connects: outcome.connects,
            connects_sending: outcome.connects_sending,
        }
    }

    /// 0 when nothing was lost and nothing reached Pub/Sub from outside the cohort, else 3.
    pub(super) fn exit_code(&self) -> i32 {
        if self.lost.unwrap_or(0) == 0 && self.unexpected.unwrap_or(0) == 0 {
            0
        } else {
            3
        }
    }

    /// The summary table, as printed on stdout.
    pub(super) fn table(&self) -> String {
        let mut out = String::from("dualpub demo summary\n");
        let mut row = |k: &str, v: String| out.push_str(&format!("  {k:<40} {v}\n"));
        row("devices", self.devices.to_string());
        match &self.config {
            Some(c) => {
                row("Pub/Sub cohort", format!("{} devices (by the config in force)", self.pubsub_devices.len()));
                row("migration config", c.describe());
            }
            None => row("Pub/Sub cohort", format!("{} devices ({} % rollout)", self.pubsub_devices.len(), self.rollout)),
        }
        row("locations accepted", format!("{} ({} rejected, {} resumed from the data dir)", self.accepted, self.rejected, self.recovered));
        match &self.verified {
            Some(v) => {
                row("MQTT delivered (subscriber)", format!("{} of {}", v.mqtt_delivered, self.expected_mqtt));
                row("Pub/Sub delivered (pull)", format!("{} of {}", v.pubsub_delivered, self.expected_pubsub));
                row("lost", v.lost.to_string());
                row("duplicates", v.duplicates.to_string());
                row("outside the cohort on Pub/Sub", v.unexpected.to_string());
                row("delivered from earlier runs", v.resumed.to_string());
                row("same bytes on both transports", v.same_bytes.to_string());
            }
            None => row("verification", "skipped (--no-verify)".into()),
        }
        row("still pending after flush", format!("mqtt {} / pubsub {}", self.pending_mqtt, self.pending_pubsub));
        row("SDK latency MQTT p50 / max p99", format!("{:.1} ms / {:.1} ms", self.mqtt_p50, self.mqtt_p99));
        row("SDK latency Pub/Sub p50 / max p99", format!("{:.1} ms / {:.1} ms", self.pubsub_p50, self.pubsub_p99));
        row("fallbacks / retries / breaker openings", format!("{} / {} / {}", self.fallbacks, self.retries, self.circuit_openings));
        row("dropped (caps)", self.dropped.to_string());
        if let Some(r) = &self.reports {
            row(
                "migration reports received",
                format!("MQTT {} / Pub/Sub {} ({} of {} devices sent their last)", r.mqtt, r.pubsub, r.devices_with_last, self.devices),
            );
        }
        if let Some(c) = &self.connects {
            let h = c.handshakes;
            row("TLS connects: full / resumed / failed", format!("{} / {} / {}", h.full, h.resumed, h.failed));
        }
        // The fleet's own bursts, before the final flush opened every device's at once.
        if let Some(c) = self.connects_sending.filter(|c| c.rate.total > 0) {
            row("connects/s while sending: peak / mean", format!("{} / {:.1} (max/mean {:.2})", c.rate.peak, c.rate.mean, c.rate.peak as f64 / c.rate.mean));
        }
        if self.chaos_events > 0 {
            row("chaos events", self.chaos_events.to_string());
        }
        row("elapsed", format!("{} ms", self.elapsed.as_millis()));
        out
    }

    /// The one-line `--json` report.
    pub(super) fn json(&self) -> String {
        let v = self.verified.as_ref();
        serde_json::json!({
            "devices": self.devices,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "mqtt_delivered": v.map(|v| v.mqtt_delivered),
            "pubsub_delivered": v.map(|v| v.pubsub_delivered),
            "pubsub_devices": self.pubsub_devices,
            "lost": v.map(|v| v.lost),
            "duplicates": v.map(|v| v.duplicates),
            "unexpected": v.map(|v| v.unexpected),
            "resumed_delivered": v.map(|v| v.resumed),
            "same_bytes": v.map(|v| v.same_bytes),
            "pending_mqtt": self.pending_mqtt,
            "pending_pubsub": self.pending_pubsub,
            "recovered": self.recovered,
            "dropped": self.dropped,
            "mqtt_latency_p50_ms": self.mqtt_p50,
            "pubsub_latency_p50_ms": self.pubsub_p50,
            "fallbacks": self.fallbacks,
            "retries": self.retries,
            "circuit_openings": self.circuit_openings,
            "chaos_events": self.chaos_events,
            "reports": self.reports.map(|r| serde_json::json!({"mqtt": r.mqtt, "pubsub": r.pubsub, "devices_with_last": r.devices_with_last})),
            "connects": self.connects.map(|c| serde_json::json!({
                "full": c.handshakes.full, "resumed": c.handshakes.resumed, "failed": c.handshakes.failed,
            })),
            "connects_while_sending": self.connects_sending.map(|c| serde_json::json!({
                "total": c.rate.total, "peak_per_second": c.rate.peak, "mean_per_second": c.rate.mean,
            })),
            "config": self.config.as_ref().map(|c| serde_json::json!({
                "fetch_results": c.results, "versions": c.versions, "sources": c.sources,
            })),
            "elapsed_ms": self.elapsed.as_millis() as u64,
        })
        .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dualpub_testbed::subscribers::Received;

    fn received(device: &str, event: &str, payload: &str) -> Received {
        Received {
            event_id: event.into(),
            device_id: device.into(),
            payload: payload.as_bytes().to_vec(),
            topic_or_key: format!("device/telemetry/{device}"),
            attributes: Default::default(),
            received_at_ms: 0,
        }
    }

    fn ids(ids: &[&str]) -> HashSet<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    fn summary(verified: Option<Verified>) -> Summary {
        Summary {
            devices: 3,
            accepted: 6,
            rejected: 1,
            expected_mqtt: 6,
            expected_pubsub: 2,
            pubsub_devices: vec!["d-1".into()],
            lost: verified.as_ref().map(|v| v.lost),
            unexpected: verified.as_ref().map(|v| v.unexpected),
            verified,
            pending_mqtt: 0,
            pending_pubsub: 2,
            mqtt_p50: 12.34,
            mqtt_p99: 56.0,
            pubsub_p50: 0.0,
            pubsub_p99: 0.0,
            fallbacks: 4,
            retries: 5,
            circuit_openings: 1,
            recovered: 0,
            dropped: 0,
            chaos_events: 0,
            elapsed: Duration::from_millis(1500),
            rollout: 25.0,
            config: None,
            reports: None,
            connects: None,
            connects_sending: None,
        }
    }

    #[test]
    fn delivery_is_counted_against_what_was_accepted_and_what_is_still_pending() {
        let sent = Sent {
            accepted: 4,
            rejected: 0,
            accepted_ids: ids(&["e1", "e2", "e3", "e4"]),
            expected_mqtt: ids(&["e1", "e2", "e3", "e4"]),
            expected_pubsub: ids(&["e1", "e2"]),
        };
        let d = Deliveries {
            // e1 twice (a duplicate), e3 missing, e4 missing, "old" from an earlier run.
            mqtt: vec![received("d-1", "e1", "a"), received("d-1", "e1", "a"), received("d-2", "e2", "b"), received("d-9", "old", "o")],
            // e2 missing; e4 from d-2, outside the Pub/Sub cohort.
            pubsub: vec![received("d-1", "e1", "a"), received("d-2", "e4", "d")],
            mqtt_gaps: vec![],
            window: (0, 1),
        };
        let cohort = ids(&["d-1"]);
        let v = Verified::compute(&d, &sent, &cohort, Pending { mqtt: 1, pubsub: 0 });
        assert_eq!((v.mqtt_delivered, v.pubsub_delivered), (2, 1));
        // MQTT misses 2 but the SDK still holds 1; Pub/Sub misses 1.
        assert_eq!(v.lost, 2);
        assert_eq!(v.duplicates, 1);
        assert_eq!(v.unexpected, 1);
        assert_eq!(v.resumed, 1);
        assert!(v.same_bytes);
        let mut d = d;
        d.pubsub[0].payload = b"changed".to_vec();
        assert!(!Verified::compute(&d, &sent, &cohort, Pending { mqtt: 1, pubsub: 0 }).same_bytes);
    }

    #[test]
    fn the_median_is_the_upper_middle_value() {
        assert_eq!(median(vec![]), 0.0);
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), 3.0);
    }

    #[test]
    fn a_loss_or_a_message_outside_the_cohort_fails_the_run() {
        assert_eq!(summary(None).exit_code(), 0);
        let clean = Verified { mqtt_delivered: 6, pubsub_delivered: 2, lost: 0, duplicates: 3, unexpected: 0, resumed: 0, same_bytes: true };
        assert_eq!(summary(Some(clean)).exit_code(), 0);
        let lost = Verified { mqtt_delivered: 5, pubsub_delivered: 2, lost: 1, duplicates: 0, unexpected: 0, resumed: 0, same_bytes: true };
        assert_eq!(summary(Some(lost)).exit_code(), 3);
        let outside = Verified { mqtt_delivered: 6, pubsub_delivered: 2, lost: 0, duplicates: 0, unexpected: 1, resumed: 0, same_bytes: true };
        assert_eq!(summary(Some(outside)).exit_code(), 3);
    }

    #[test]
    fn the_table_has_a_padded_row_per_figure() {
        let v = Verified { mqtt_delivered: 5, pubsub_delivered: 2, lost: 1, duplicates: 0, unexpected: 0, resumed: 0, same_bytes: true };
        let table = summary(Some(v)).table();
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0], "dualpub demo summary");
        assert_eq!(lines[1], format!("  {:<40} 3", "devices"));
        assert!(lines.contains(&"  Pub/Sub cohort                           1 devices (25 % rollout)"), "{table}");
        assert!(lines.contains(&"  MQTT delivered (subscriber)              5 of 6"), "{table}");
        assert!(lines.contains(&"  SDK latency MQTT p50 / max p99           12.3 ms / 56.0 ms"), "{table}");
        assert!(lines.contains(&"  fallbacks / retries / breaker openings   4 / 5 / 1"), "{table}");
        assert_eq!(*lines.last().unwrap(), "  elapsed                                  1500 ms");
        // No chaos events, no reports: no row for them.
        assert!(!table.contains("chaos events") && !table.contains("migration reports"));
        let skipped = summary(None).table();
        assert!(skipped.contains("  verification                             skipped (--no-verify)\n"), "{skipped}");
        assert!(!skipped.contains("lost"));
    }

    #[test]
    fn the_json_line_has_the_verified_figures_or_nulls() {
        let v = Verified { mqtt_delivered: 5, pubsub_delivered: 2, lost: 1, duplicates: 0, unexpected: 0, resumed: 0, same_bytes: true };
        let json: serde_json::Value = serde_json::from_str(&summary(Some(v)).json()).unwrap();
        assert_eq!(json["mqtt_delivered"], 5);
        assert_eq!(json["lost"], 1);
        assert_eq!(json["pubsub_devices"], serde_json::json!(["d-1"]));
        assert_eq!(json["elapsed_ms"], 1500);
        assert!(json["config"].is_null() && json["reports"].is_null());
        let json: serde_json::Value = serde_json::from_str(&summary(None).json()).unwrap();
        assert!(json["lost"].is_null() && json["same_bytes"].is_null());
        assert_eq!(json["accepted"], 6);
    }
}
