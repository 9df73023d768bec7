//! Independent subscribers on the migration-report topics of both pipelines (every device's
//! MQTT report topic and the Pub/Sub reports topic), for the demo and the live verifier: the
//! wait for every device's last (`shutdown`) report, and every report received.

use crate::subscribers::{self, Collected, Received, Subscriber};
use std::collections::HashSet;
use std::time::Duration;

/// The MQTT filter of every device's reports.
pub const MQTT_FILTER: &str = "device/migration-report/+";

/// Subscribers on the reports' MQTT topics and Pub/Sub topic.
pub struct ReportSubscribers {
    mqtt: Subscriber,
    /// None when the endpoint has no reports topic (an external endpoint set up for locations only).
    pubsub: Option<Subscriber>,
}

impl ReportSubscribers {
    /// Subscribes on the broker and creates a pull subscription on `endpoint`'s reports topic.
    pub fn start(mqtt_host: &str, mqtt_port: u16, endpoint: &str, project: &str, topic: &str, name: &str) -> Result<Self, String> {
        let mqtt = subscribers::mqtt(mqtt_host, mqtt_port, MQTT_FILTER).map_err(|e| format!("report subscriber on MQTT: {e}"))?;
        let pubsub = subscribers::pubsub(endpoint, project, topic, name)
            .inspect_err(|e| eprintln!("dualpub demo: no migration reports from Pub/Sub (topic {topic}: {e}); MQTT's are collected"))
            .ok();
        Ok(ReportSubscribers { mqtt, pubsub })
    }

    /// Waits (at most `timeout`) until each of `devices` had its `shutdown` report arrive on at
    /// least one transport; returns how many did.
    pub fn await_last(&self, devices: usize, timeout: Duration) -> usize {
        let count = |m: &Collected, p: &Collected| {
            let mut ids = HashSet::new();
            for r in m.all().into_iter().chain(p.all()) {
                if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&r.payload) {
                    if v["trigger"] == "shutdown" {
                        ids.insert(v["deviceId"].as_str().unwrap_or_default().to_string());
                    }
                }
            }
            ids.len()
        };
        let (m, p) = (&self.mqtt.collected, self.pubsub.as_ref().map(|s| s.collected.clone()).unwrap_or_default());
        m.wait_until(timeout, |m| count(m, &p) >= devices);
        count(m, &p)
    }

    /// Every report received: (transport, message), MQTT first, each in arrival order.
    pub fn received(&self) -> Vec<(&'static str, Received)> {
        let mqtt = self.mqtt.collected.all().into_iter().map(|r| ("mqtt", r));
        let pubsub = self.pubsub.iter().flat_map(|s| s.collected.all()).map(|r| ("pubsub", r));
        mqtt.chain(pubsub).collect()
    }
}
