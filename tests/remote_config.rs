//! The migration config across restarts, from the host app's remote values, and the app's
//! listener for decision changes.

mod common;

use common::*;
use dualpub::{ConfigListener, ConfigSource, DecisionReason, DualPubError, DualPublisher, FetchResult, RolloutDecision};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[test]
fn a_persisted_emergency_wins_at_a_cold_start_offline() {
    let (tmp, emu) = (tempfile::tempdir().unwrap(), emulator());
    let file = tmp.path().join("config.json");
    std::fs::write(&file, r#"{"version": 7, "pubsubEnabled": true, "pubsubPercentage": 100, "emergencyMode": true}"#).unwrap();
    let server = dualpub_testbed::config_server::ConfigServer::start(&file, 0).unwrap();
    let id = device("cold-emergency");
    let mut c = TestDevice::new(&id, &emu).rollout(100.0).config();
    c.remote_config_url = Some(server.url());
    let p = DualPublisher::new(c.clone(), None).unwrap();
    // Applied by this refresh, or already by the SDK's start-up fetch (then this one is a 304).
    let r = p.refresh_config().unwrap();
    assert!(r == FetchResult::Applied { version: 7 } || r == FetchResult::NotModified, "{r:?}");
    let status = p.config_status().unwrap();
    assert_eq!((status.source, status.version), (ConfigSource::Fetched, 7));
    assert_eq!(p.decision().unwrap().reason, DecisionReason::Emergency);
    p.shutdown();
    drop(p);

    // The app still ships a 100 % config and the config server is unreachable: the persisted
    // emergency wins before any network call.
    drop(server);
    let mqtt = mqtt_subscriber(&id);
    let q = DualPublisher::new(c, None).unwrap();
    let status = q.config_status().unwrap();
    assert_eq!((status.source, status.version), (ConfigSource::Persisted, 7));
    let d = q.decision().unwrap();
    assert_eq!((d.reason, d.pubsub_enabled, d.mqtt_enabled), (DecisionReason::Emergency, false, true));
    let first = q.send_location(location(0)).unwrap();
    assert!(q.flush(10_000).unwrap().completed);
    assert!(wait_for_all(&mqtt.collected, &[first], Duration::from_secs(10)));
    assert_eq!(emu.emulator().stats().publish_requests, 0, "the first location went over MQTT only");
    assert!(matches!(q.refresh_config().unwrap(), FetchResult::Failed { .. } | FetchResult::InBackoff { .. }), "the server is gone");
    assert_eq!(q.config_status().unwrap().version, 7, "and the last known good stays");
}

#[test]
fn host_remote_values_apply_and_bad_ones_are_refused_and_counted() {
    let emu = emulator();
    let id = device("remote-values");
    let p = TestDevice::new(&id, &emu).start();
    let values: HashMap<String, String> = [("pubsub_rollout_percentage", "100"), ("pubsub_enabled", "true"), ("debug_mode", "false"), ("config_version", "31")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let d = p.apply_remote_values(values).unwrap();
    assert_eq!((d.reason, d.pubsub_enabled, d.config_version), (DecisionReason::RolloutIn, true, 31));
    assert_eq!(p.config_status().unwrap().source, ConfigSource::Host);

    let override_only: HashMap<String, String> = [(format!("migration_override_{id}"), r#"{"pubsubEnabled": false}"#.to_string())].into();
    let d = p.apply_remote_values(override_only).unwrap();
    assert_eq!((d.reason, d.pubsub_enabled), (DecisionReason::DeviceOverride, false));

    let bad: HashMap<String, String> = [("pubsub_rollout_percentage".to_string(), "lots".to_string())].into();
    assert!(matches!(p.apply_remote_values(bad), Err(DualPubError::InvalidConfig { .. })));
    assert!(p.apply_config_json("{".into()).is_err());
    let status = p.config_status().unwrap();
    assert_eq!((status.rejected, status.version), (2, 31), "refused twice, last good one kept");
}

struct Changes(Mutex<Vec<(RolloutDecision, RolloutDecision)>>);
impl ConfigListener for Changes {
    fn on_decision_changed(&self, old: RolloutDecision, new: RolloutDecision) {
        self.0.lock().unwrap().push((old, new));
    }
}

struct Panics;
impl ConfigListener for Panics {
    fn on_decision_changed(&self, _: RolloutDecision, _: RolloutDecision) {
        panic!("bug in the app's listener")
    }
}

#[test]
fn the_config_listener_hears_every_change_of_decision_and_nothing_else() {
    let emu = emulator();
    let p = TestDevice::new(&device("listener"), &emu).start();
    let changes = Arc::new(Changes(Mutex::new(Vec::new())));
    p.set_config_listener(Some(changes.clone())).unwrap();
    p.apply_config_json(r#"{"version": 2, "pubsubEnabled": true, "pubsubPercentage": 100}"#.into()).unwrap();
    p.apply_config_json(r#"{"version": 2, "pubsubEnabled": true, "pubsubPercentage": 100}"#.into()).unwrap();
    p.apply_config_json(r#"{"version": 3, "emergencyMode": true}"#.into()).unwrap();
    let seen = changes.0.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "the repeated apply changed nothing");
    assert_eq!((seen[0].0.reason, seen[0].1.reason), (DecisionReason::RolloutOut, DecisionReason::RolloutIn));
    assert_eq!(seen[1].1.reason, DecisionReason::Emergency);
    assert_eq!(p.metrics().unwrap().decision_changes, 2);

    p.set_config_listener(Some(Arc::new(Panics))).unwrap();
    let d = p.apply_config_json(r#"{"version": 4}"#.into()).unwrap();
    assert_eq!(d.reason, DecisionReason::Disabled, "a panicking listener does not stop the apply");
    assert_eq!(p.decision().unwrap().config_version, 4);
}
