//! gzip Pub/Sub bodies and the attribute diet (docs/CONTRACT.md#compression,
//! docs/CONTRACT.md#pubsub-attributes), end to end through the real SDK: the embedded broker and
//! the emulator (which decodes gzip as Google's front end does, or refuses it when told to),
//! checked by independent subscribers on both transports.

mod common;

use common::*;
use dualpub::{DualPublisher, GzipSupport, MigrationConfig, PubsubAttribute, PubsubCompression};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

/// Sends `n` locations (from `from`), flushes, and waits until both subscribers hold them.
fn send_and_deliver(p: &Arc<DualPublisher>, from: usize, n: usize, mqtt: &Subscriber, pubsub: &Subscriber) -> Vec<String> {
    let ids: Vec<String> = (from..from + n).map(|k| p.send_location(location(k)).unwrap()).collect();
    let report = p.flush(20_000).unwrap();
    assert!(report.completed, "{report:?}");
    assert!(wait_for_all(&mqtt.collected, &ids, WAIT), "MQTT got every location");
    assert!(wait_for_all(&pubsub.collected, &ids, WAIT), "Pub/Sub got every location");
    ids
}

/// Every location exactly once on each transport, the same bytes on both.
fn once_each(mqtt: &Subscriber, pubsub: &Subscriber, ids: &[String]) {
    for (name, c) in [("MQTT", &mqtt.collected), ("Pub/Sub", &pubsub.collected)] {
        let got = event_ids(c);
        assert_eq!(got.len(), ids.len(), "{name}: no duplicates, nothing missing");
        assert_eq!(got.iter().collect::<BTreeSet<_>>(), ids.iter().collect::<BTreeSet<_>>(), "{name}");
    }
    let m = mqtt.collected.all();
    for r in pubsub.collected.all() {
        assert_eq!(m.iter().find(|x| x.event_id == r.event_id).map(|x| &x.payload), Some(&r.payload), "identical JSON bytes");
    }
}

#[test]
fn gzip_bodies_are_delivered_and_the_endpoint_is_remembered_as_taking_them() {
    let emu = emulator();
    let id = device("gzip-accepted");
    let (mqtt, pubsub) = (mqtt_subscriber(&id), pubsub_subscriber(&emu, "gzip-accepted"));
    let p = TestDevice::new(&id, &emu).rollout(100.0).start();
    let ids = send_and_deliver(&p, 0, 60, &mqtt, &pubsub);
    once_each(&mqtt, &pubsub, &ids);
    let stats = emu.emulator().stats();
    assert!(stats.gzip_requests >= 1 && stats.gzip_refused == 0, "{stats:?}");
    let m = p.metrics().unwrap();
    assert_eq!(m.pubsub_gzip_support, GzipSupport::Accepted);
    assert_eq!((m.pubsub_gzip_requests, m.pubsub_gzip_refusals), (stats.gzip_requests, 0));
    assert!(m.pubsub.bytes_sent * 3 < m.pubsub_uncompressed_bytes, "compressed to under a third: {} of {}", m.pubsub.bytes_sent, m.pubsub_uncompressed_bytes);
    assert!(m.pubsub_uncompressed_bytes > 0 && m.pubsub.failed == 0, "{m:?}");
    let prom = p.metrics_prometheus().unwrap();
    assert!(prom.contains("dualpub_pubsub_gzip_support{state=\"accepted\"} 1"), "{prom}");
    p.shutdown();
}

/// The endpoint refuses gzip with `status`: one refused request, the same messages again
/// uncompressed at once, identity for good, also after a restart.
fn refusal_costs_one_request(status: u16) {
    let emu = emulator();
    emu.emulator().faults().set(FaultPlan { refuse_gzip: Some(status), ..FaultPlan::default() });
    let id = device(&format!("gzip-refused-{status}"));
    let (mqtt, pubsub) = (mqtt_subscriber(&id), pubsub_subscriber(&emu, &format!("gzip-refused-{status}")));
    let reports_seen = mqtt_report_subscriber(&id);
    let p = TestDevice::new(&id, &emu).rollout(100.0).start();
    let mut ids = send_and_deliver(&p, 0, 60, &mqtt, &pubsub);
    let m = p.metrics().unwrap();
    assert_eq!((m.pubsub_gzip_requests, m.pubsub_gzip_refusals, m.pubsub_gzip_support), (1, 1, GzipSupport::Refused), "{m:?}");
    assert_eq!((m.pubsub.failed, m.pubsub.retries, m.fallback, m.dead_letter), (0, 0, 0, 0), "the refusal is no failure: nothing waited, nothing fell back");
    ids.extend(send_and_deliver(&p, 60, 60, &mqtt, &pubsub));
    assert_eq!(emu.emulator().stats().gzip_requests, 1, "identity for good");
    p.shutdown();
    // The migration report of the shutdown counts the refusal (docs/CONTRACT.md#report-fields).
    let refusal = serde_json::json!({"refusals": 1, "requests": 1});
    assert!(wait_for_report(&reports_seen, |r| r["trigger"] == "shutdown" && r["counters"]["gzip"] == refusal), "{:?}", reports(&reports_seen.collected));

    // The choice is in the data directory: the next run never probes again.
    let p = TestDevice::new(&id, &emu).rollout(100.0).start();
    assert_eq!(p.metrics().unwrap().pubsub_gzip_support, GzipSupport::Refused, "read back at start");
    ids.extend(send_and_deliver(&p, 120, 60, &mqtt, &pubsub));
    let stats = emu.emulator().stats();
    assert_eq!((stats.gzip_requests, stats.gzip_refused), (1, 1), "{stats:?}");
    let m = p.metrics().unwrap();
    assert_eq!((m.pubsub_gzip_requests, m.pubsub_gzip_refusals), (0, 0), "this run sent nothing compressed");
    once_each(&mqtt, &pubsub, &ids);
    p.shutdown();
    // Report counters are cumulative across runs: still the one refusal.
    assert!(wait_for_report(&reports_seen, |r| r["trigger"] == "shutdown" && r["counters"]["accepted"] == 180 && r["counters"]["gzip"] == refusal));
}

/// Waits up to 20 s for a migration report that `matches`.
fn wait_for_report(s: &Subscriber, matches: impl Fn(&serde_json::Value) -> bool) -> bool {
    s.collected.wait_until(WAIT, |c| reports(c).iter().any(&matches))
}

#[test]
fn a_415_costs_one_request_then_identity_for_good_across_a_restart() {
    refusal_costs_one_request(415);
}

#[test]
fn a_400_to_the_probe_costs_one_request_then_identity_for_good_across_a_restart() {
    refusal_costs_one_request(400);
}

#[test]
fn a_bad_message_in_a_compressed_batch_is_no_gzip_refusal() {
    let emu = emulator();
    emu.emulator().faults().set(FaultPlan { reject_data_containing: Some("\"seq\":7,".into()), ..FaultPlan::default() });
    let id = device("gzip-poison");
    let (mqtt, pubsub) = (mqtt_subscriber(&id), pubsub_subscriber(&emu, "gzip-poison"));
    let p = TestDevice::new(&id, &emu).rollout(100.0).start();
    let ids: Vec<String> = (0..60).map(|k| p.send_location(location(k)).unwrap()).collect();
    assert!(p.flush(20_000).unwrap().completed);
    let good: Vec<String> = ids.iter().enumerate().filter(|(k, _)| *k != 6).map(|(_, e)| e.clone()).collect();
    assert!(wait_for_all(&pubsub.collected, &good, WAIT), "every other location reached Pub/Sub");
    assert!(wait_for_all(&mqtt.collected, &ids, WAIT), "MQTT got all, the dead letter too");
    let m = p.metrics().unwrap();
    assert_eq!(m.dead_letter, 1, "{m:?}");
    assert_eq!(m.pubsub_gzip_refusals, 0, "the uncompressed copy was refused too: the message, not gzip");
    assert_ne!(m.pubsub_gzip_support, GzipSupport::Refused);
    assert_eq!(p.dead_letters().unwrap()[0].event_id, ids[6]);
    p.shutdown();
}

#[test]
fn none_from_the_config_or_the_app_sends_identity() {
    let emu = emulator();
    // The remote config says none.
    let id = device("gzip-none");
    let (mqtt, pubsub) = (mqtt_subscriber(&id), pubsub_subscriber(&emu, "gzip-none"));
    let config = MigrationConfig { pubsub_compression: Some(PubsubCompression::None), ..rollout(100.0) };
    let p = TestDevice::new(&id, &emu).migration(config).start();
    let ids = send_and_deliver(&p, 0, 60, &mqtt, &pubsub);
    once_each(&mqtt, &pubsub, &ids);
    let m = p.metrics().unwrap();
    assert_eq!((m.pubsub_gzip_requests, m.pubsub_gzip_support), (0, GzipSupport::Unknown));
    assert_eq!(m.pubsub.bytes_sent, m.pubsub_uncompressed_bytes, "sent as encoded");
    p.shutdown();

    // The config says gzip, the app overrides it with none.
    let id = device("gzip-app-none");
    let (mqtt, pubsub) = (mqtt_subscriber(&id), pubsub_subscriber(&emu, "gzip-app-none"));
    let config = MigrationConfig { pubsub_compression: Some(PubsubCompression::Gzip), ..rollout(100.0) };
    let p = TestDevice::new(&id, &emu).migration(config).with(|c| c.pubsub.compression = Some(PubsubCompression::None)).start();
    let ids = send_and_deliver(&p, 0, 60, &mqtt, &pubsub);
    once_each(&mqtt, &pubsub, &ids);
    assert_eq!(p.metrics().unwrap().pubsub_gzip_requests, 0);
    assert_eq!(emu.emulator().stats().gzip_requests, 0, "nothing compressed reached the emulator");
    p.shutdown();
}

#[test]
fn the_config_sets_the_attributes_and_the_wire_json_stays_the_same() {
    let emu = emulator();
    // Default: what deduplication and routing need.
    let id = device("attrs-default");
    let (mqtt, pubsub) = (mqtt_subscriber(&id), pubsub_subscriber(&emu, "attrs-default"));
    let p = TestDevice::new(&id, &emu).rollout(100.0).start();
    let ids = send_and_deliver(&p, 0, 5, &mqtt, &pubsub);
    once_each(&mqtt, &pubsub, &ids);
    for r in pubsub.collected.all() {
        assert_eq!(r.attributes.keys().map(String::as_str).collect::<Vec<_>>(), ["companyId", "deviceId", "eventId"]);
        assert_eq!(
            (r.attributes["deviceId"].as_str(), r.attributes["eventId"].as_str(), r.attributes["companyId"].as_str()),
            (id.as_str(), r.event_id.as_str(), "c-9")
        );
    }
    p.shutdown();

    // Every attribute the contract names, asked for by the config.
    let id = device("attrs-all");
    let (mqtt, pubsub) = (mqtt_subscriber(&id), pubsub_subscriber(&emu, "attrs-all"));
    let config = MigrationConfig { pubsub_attributes: Some(dualpub::ALL_ATTRIBUTES.to_vec()), ..rollout(100.0) };
    let p = TestDevice::new(&id, &emu).migration(config).start();
    let ids = send_and_deliver(&p, 0, 5, &mqtt, &pubsub);
    once_each(&mqtt, &pubsub, &ids);
    for r in pubsub.collected.all() {
        let json: serde_json::Value = serde_json::from_slice(&r.payload).unwrap();
        assert_eq!(r.attributes.len(), 7, "{:?}", r.attributes);
        assert_eq!(r.attributes["timestamp"], json["timestamp"].to_string());
        assert_eq!((r.attributes["priority"].as_str(), r.attributes["schemaVersion"].as_str()), ("normal", "2"));
        assert_eq!(r.attributes["sdk"], dualpub::ffi::sdk_version());
    }

    // A config applied at run time changes the next request: eventId and deviceId only.
    let only = MigrationConfig { version: 2, pubsub_attributes: Some(vec![PubsubAttribute::EventId, PubsubAttribute::DeviceId]), ..rollout(100.0) };
    p.apply_config(only).unwrap();
    let later = send_and_deliver(&p, 5, 5, &mqtt, &pubsub);
    for r in pubsub.collected.all().iter().filter(|r| later.contains(&r.event_id)) {
        assert_eq!(r.attributes.keys().map(String::as_str).collect::<Vec<_>>(), ["deviceId", "eventId"]);
    }
    p.shutdown();
}

#[test]
fn a_list_without_the_dedupe_or_routing_key_is_refused() {
    // The same documents as tests/python/test_schemas.py's SDK_REFUSES: the schema refuses them too.
    for json in [
        r#"{"pubsub": {"attributes": ["deviceId"]}}"#,
        r#"{"pubsub": {"attributes": ["eventId", "deviceId", "colour"]}}"#,
        r#"{"pubsub": {"compression": "br"}}"#,
    ] {
        let e = MigrationConfig::from_json(json).expect_err(json);
        assert!(e.to_string().contains("pubsub."), "{json}: {e}");
    }
    let parsed = MigrationConfig::parse(
        r#"{"version": 3, "pubsub": {"compression": "none", "attributes": ["eventId", "deviceId", "sdk"], "endpoint": "https://evil"}}"#,
    )
    .unwrap();
    assert_eq!(parsed.config.pubsub_compression, Some(PubsubCompression::None));
    assert_eq!(parsed.config.pubsub_attributes, Some(vec![PubsubAttribute::EventId, PubsubAttribute::DeviceId, PubsubAttribute::Sdk]));
    assert_eq!(parsed.ignored, ["pubsub.endpoint: a remote config cannot change it"]);
    assert_eq!(MigrationConfig::from_json(&parsed.config.to_json().to_string()).unwrap(), parsed.config, "persisted and read back");
}
