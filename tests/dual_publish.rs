//! End to end through the real SDK: embedded rumqttd and the Pub/Sub emulator, verified by
//! independent subscribers.

mod common;

use common::*;
use dualpub::{DecisionReason, DualPubError, DualPublisher};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

#[test]
fn both_backends_receive_the_same_bytes_event_id_and_attributes() {
    let emu = emulator();
    let id = device("same-bytes");
    let mqtt = mqtt_subscriber(&id);
    let pubsub = pubsub_subscriber(&emu, "same-bytes");
    let p = TestDevice::new(&id, &emu).rollout(100.0).start();
    let ids: Vec<String> = (0..50).map(|n| p.send_location(location(n)).unwrap()).collect();
    let report = p.flush(20_000).unwrap();
    assert!(report.completed, "{report:?}");
    assert!(wait_for_all(&mqtt.collected, &ids, WAIT));
    assert!(wait_for_all(&pubsub.collected, &ids, WAIT));

    let m = mqtt.collected.all();
    let ps = pubsub.collected.all();
    assert_eq!(m.len(), 50, "no duplicates on MQTT");
    assert_eq!(ps.len(), 50, "no duplicates on Pub/Sub");
    for r in &ps {
        let twin = m.iter().find(|x| x.event_id == r.event_id).expect("same eventId on MQTT");
        assert_eq!(twin.payload, r.payload, "identical JSON bytes");
        assert_eq!(twin.topic_or_key, format!("device/telemetry/{id}"));
        assert_eq!(r.topic_or_key, id, "orderingKey = deviceId");
        assert_eq!(r.attributes["deviceId"], id);
        assert_eq!(r.attributes["eventId"], r.event_id);
        assert_eq!(r.attributes["companyId"], "c-9");
        // The default attributes (tests/compression.rs asks the config for all of them).
        assert_eq!(r.attributes.len(), 3, "{:?}", r.attributes);
    }
    assert_eq!(event_ids(&pubsub.collected), ids, "Pub/Sub receives the device's locations in acceptance order");

    let metrics = p.metrics().unwrap();
    assert_eq!(metrics.accepted, 50);
    assert_eq!((metrics.mqtt.published, metrics.pubsub.published), (50, 50));
    assert_eq!(metrics.dual_both, 50);
    assert_eq!((metrics.mqtt.queue_depth, metrics.pubsub.queue_depth), (0, 0));
    assert!(metrics.pubsub.latency_p50_ms > 0.0 && metrics.pubsub.latency_p99_ms >= metrics.pubsub.latency_p50_ms);
    assert!(metrics.pubsub.bytes_sent > 0 && metrics.http_requests >= 1);
    p.shutdown();
}

#[test]
fn a_device_outside_the_cohort_never_touches_pubsub() {
    let emu = emulator();
    let id = device("mqtt-only");
    let mqtt = mqtt_subscriber(&id);
    let p = TestDevice::new(&id, &emu).start();
    let d = p.decision().unwrap();
    assert_eq!((d.mqtt_enabled, d.pubsub_enabled, d.reason), (true, false, DecisionReason::RolloutOut));
    let ids: Vec<String> = (0..20).map(|n| p.send_location(location(n)).unwrap()).collect();
    assert!(p.flush(20_000).unwrap().completed);
    assert!(wait_for_all(&mqtt.collected, &ids, WAIT));
    assert_eq!(emu.emulator().stats().publish_requests, 0);
    assert_eq!(p.metrics().unwrap().dual_mqtt_only, 20);
}

#[test]
fn emergency_mode_stops_pubsub_for_every_location_accepted_after_the_apply() {
    let emu = emulator();
    let id = device("emergency");
    let mqtt = mqtt_subscriber(&id);
    let pubsub = pubsub_subscriber(&emu, "emergency");
    let p = TestDevice::new(&id, &emu).rollout(100.0).real_time().start();
    let stop = Arc::new(AtomicBool::new(false));
    let after_apply = Arc::new(AtomicBool::new(false));
    let sender = {
        let (p, stop, after) = (p.clone(), stop.clone(), after_apply.clone());
        std::thread::spawn(move || {
            let mut before = Vec::new();
            let mut after_ids = Vec::new();
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                // Read the flag before the call: a location counts as "after" only if the
                // apply had returned before sendLocation was even called.
                let is_after = after.load(Ordering::SeqCst);
                let id = p.send_location(location(n)).unwrap();
                if is_after {
                    after_ids.push(id)
                } else {
                    before.push(id)
                }
                n += 1;
                std::thread::sleep(Duration::from_micros(200));
            }
            (before, after_ids)
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let mut emergency = rollout(100.0);
    emergency.version = 2;
    emergency.emergency_mode = true;
    let d = p.apply_config(emergency).unwrap();
    after_apply.store(true, Ordering::SeqCst);
    assert_eq!((d.pubsub_enabled, d.mqtt_enabled, d.reason), (false, true, DecisionReason::Emergency));
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::SeqCst);
    let (before, after) = sender.join().unwrap();
    assert!(!before.is_empty() && !after.is_empty(), "{} before, {} after", before.len(), after.len());
    assert!(p.flush(20_000).unwrap().completed);
    let all: Vec<String> = before.iter().chain(after.iter()).cloned().collect();
    assert!(wait_for_all(&mqtt.collected, &all, WAIT), "every location reaches MQTT");
    std::thread::sleep(Duration::from_millis(300));
    let on_pubsub: HashSet<String> = event_ids(&pubsub.collected).into_iter().collect();
    let leaked: Vec<&String> = after.iter().filter(|e| on_pubsub.contains(*e)).collect();
    assert!(leaked.is_empty(), "{} locations accepted after the emergency reached Pub/Sub", leaked.len());
    assert!(!on_pubsub.is_empty(), "locations before the emergency did reach Pub/Sub");
}

#[test]
fn an_open_pubsub_breaker_falls_back_to_mqtt_and_pubsub_still_gets_everything() {
    let emu = emulator();
    // Five failures in a row open the breaker; the probe after its open period succeeds.
    emu.emulator().faults().fail_next(5, 503);
    let id = device("fallback");
    let mqtt = mqtt_subscriber(&id);
    let pubsub = pubsub_subscriber(&emu, "fallback");
    // MQTT is off for this device: only the fallback can send there.
    let mut migration = rollout(100.0);
    migration.mqtt_enabled = false;
    let p = TestDevice::new(&id, &emu).migration(migration).real_time().start();
    assert!(!p.decision().unwrap().mqtt_enabled);
    let ids: Vec<String> = (0..10).map(|n| p.send_location(location(n)).unwrap()).collect();
    assert!(wait_for_all(&mqtt.collected, &ids, WAIT), "fallback delivered over MQTT while Pub/Sub was failing");
    let during = p.decision().unwrap();
    let m = p.metrics().unwrap();
    assert!(m.pubsub.circuit_open || m.pubsub.published == 10, "{m:?}");
    // Accepted while the breaker is open: straight to MQTT as well.
    let late = if during.pubsub_circuit_open { Some(p.send_location(location(10)).unwrap()) } else { None };
    let report = p.flush(30_000).unwrap();
    assert!(report.completed, "{report:?}");
    let all: Vec<String> = ids.iter().cloned().chain(late.clone()).collect();
    assert!(wait_for_all(&pubsub.collected, &all, WAIT), "Pub/Sub still delivered after it recovered");
    assert!(wait_for_all(&mqtt.collected, &all, WAIT));
    let m = p.metrics().unwrap();
    assert_eq!(m.fallback, all.len() as u64);
    assert_eq!(m.pubsub.circuit_openings, 1);
    assert!(!m.pubsub.circuit_open && !p.decision().unwrap().pubsub_circuit_open, "closed after the probe");
    assert!(m.pubsub.retries >= 5, "{m:?}");
    assert_eq!(m.dual_both, all.len() as u64);
    assert_eq!(emu.emulator().stats().injected_failures, 5);
}

#[test]
fn a_short_pubsub_blip_retries_without_falling_back() {
    let emu = emulator();
    emu.emulator().faults().fail_next(2, 503);
    let id = device("blip");
    let pubsub = pubsub_subscriber(&emu, "blip");
    let mut migration = rollout(100.0);
    migration.mqtt_enabled = false;
    let p = TestDevice::new(&id, &emu).migration(migration).start();
    let ids: Vec<String> = (0..10).map(|n| p.send_location(location(n)).unwrap()).collect();
    assert!(p.flush(20_000).unwrap().completed);
    assert!(wait_for_all(&pubsub.collected, &ids, WAIT));
    let m = p.metrics().unwrap();
    assert_eq!((m.fallback, m.pubsub.circuit_openings, m.mqtt.published), (0, 0, 0), "{m:?}");
    assert_eq!(m.pubsub.retries, 2);
}

#[test]
fn a_bad_message_is_isolated_by_splitting_and_dead_lettered() {
    let emu = emulator();
    let marker = "12345.678";
    emu.emulator().faults().set(FaultPlan { reject_data_containing: Some(marker.into()), ..FaultPlan::default() });
    let id = device("dead-letter");
    let mqtt = mqtt_subscriber(&id);
    let pubsub = pubsub_subscriber(&emu, "dead-letter");
    let p = TestDevice::new(&id, &emu).rollout(100.0).start();
    let mut locs: Vec<_> = (0..10).map(location).collect();
    locs[6].altitude = Some(12345.678);
    let ids = p.send_locations(locs).unwrap();
    assert!(p.flush(20_000).unwrap().completed);
    let good: Vec<String> = ids.iter().enumerate().filter(|(i, _)| *i != 6).map(|(_, e)| e.clone()).collect();
    assert!(wait_for_all(&pubsub.collected, &good, WAIT));
    assert!(wait_for_all(&mqtt.collected, &ids, WAIT), "the refused one still reaches MQTT");
    assert!(!event_ids(&pubsub.collected).contains(&ids[6]));
    let dl = p.dead_letters().unwrap();
    assert_eq!(dl.len(), 1);
    assert_eq!(dl[0].event_id, ids[6]);
    assert!(dl[0].payload.contains(marker) && dl[0].error.contains("400"), "{dl:?}");
    let m = p.metrics().unwrap();
    assert_eq!(m.dead_letter, 1);
    assert_eq!(m.pubsub.published, 9);
}

#[test]
fn batches_respect_the_count_limit() {
    let emu = emulator();
    let id = device("batching");
    let mut c = TestDevice::new(&id, &emu).rollout(100.0).config();
    c.pubsub.max_batch_messages = 10;
    c.pubsub.max_batch_latency_ms = 60_000;
    c.reports_enabled = false; // this test counts location requests; a report is a request of its own
    let p = DualPublisher::new(c, None).unwrap();
    p.send_locations((0..35).map(location).collect()).unwrap();
    assert!(p.flush(20_000).unwrap().completed);
    // 10 + 10 + 10 on the count limit, 5 on flush.
    assert_eq!(emu.emulator().stats().publish_requests, 4);
    assert_eq!(emu.emulator().stats().published_messages, 35);
}

#[test]
fn batches_respect_the_byte_limit() {
    let emu = emulator();
    let id = device("batch-bytes");
    let mut c = TestDevice::new(&id, &emu).rollout(100.0).config();
    // One message costs its base64 payload plus room for attributes: ~900 bytes.
    c.pubsub.max_batch_bytes = 1_000;
    c.reports_enabled = false; // this test counts location requests; a report is a request of its own
    let p = DualPublisher::new(c, None).unwrap();
    p.send_locations((0..5).map(location).collect()).unwrap();
    assert!(p.flush(20_000).unwrap().completed);
    assert_eq!(emu.emulator().stats().publish_requests, 5);
}

#[test]
fn a_batch_waits_for_the_latency_limit_unless_flushed() {
    let emu = emulator();
    let id = device("batch-latency");
    let mut c = TestDevice::new(&id, &emu).rollout(100.0).real_time().config();
    c.pubsub.max_batch_latency_ms = 1_500;
    c.reports_enabled = false; // this test counts location requests; a report is a request of its own
    let p = DualPublisher::new(c, None).unwrap();
    p.send_location(location(0)).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(emu.emulator().stats().publish_requests, 0, "held back to batch");
    std::thread::sleep(Duration::from_millis(2_500));
    assert_eq!(emu.emulator().stats().publish_requests, 1, "sent once the latency limit passed");
    p.send_location(location(1)).unwrap();
    assert!(p.flush(10_000).unwrap().completed, "flush sends at once");
    assert_eq!(emu.emulator().stats().publish_requests, 2);
}

#[test]
fn retry_after_is_honoured() {
    let emu = emulator();
    emu.emulator().faults().set(FaultPlan { fail_next: vec![429], retry_after_secs: Some(2), ..FaultPlan::default() });
    let id = device("retry-after");
    let p = TestDevice::new(&id, &emu).rollout(100.0).start();
    p.send_location(location(0)).unwrap();
    let report = p.flush(20_000).unwrap();
    assert!(report.completed);
    assert!(report.elapsed_ms >= 2_000, "retried after {} ms, before Retry-After", report.elapsed_ms);
    assert_eq!(p.metrics().unwrap().pubsub.retries, 1);
}

#[test]
fn many_threads_can_send_at_once() {
    let emu = emulator();
    let id = device("threads");
    let mqtt = mqtt_subscriber(&id);
    let pubsub = pubsub_subscriber(&emu, "threads");
    let p = TestDevice::new(&id, &emu).rollout(100.0).start();
    let ids: Vec<String> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..8)
            .map(|t| {
                let p = p.clone();
                s.spawn(move || (0..250).map(|n| p.send_location(location(t * 1000 + n)).unwrap()).collect::<Vec<_>>())
            })
            .collect();
        hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 2000, "unique eventIds");
    assert!(p.flush(30_000).unwrap().completed);
    assert!(wait_for_all(&mqtt.collected, &ids, WAIT));
    assert!(wait_for_all(&pubsub.collected, &ids, WAIT));
    assert_eq!(p.metrics().unwrap().dual_both, 2000);
}

#[test]
fn config_documents_apply_at_once_and_bad_ones_change_nothing() {
    let emu = emulator();
    let id = device("config-json");
    let p = TestDevice::new(&id, &emu).start();
    assert!(!p.decision().unwrap().pubsub_enabled);
    let d = p.apply_config_json(format!(r#"{{"version": 7, "pubsubEnabled": true, "deviceOverrides": {{"{id}": {{"pubsubEnabled": true}}}}}}"#)).unwrap();
    assert_eq!((d.pubsub_enabled, d.reason, d.config_version), (true, DecisionReason::DeviceOverride, 7));
    let err = p.apply_config_json(r#"{"version": 8, "pubsubPercentage": 250}"#.into()).unwrap_err();
    assert!(matches!(err, DualPubError::InvalidConfig { .. }), "{err:?}");
    assert_eq!(p.decision().unwrap().config_version, 7, "last known good stays");
    assert_eq!(p.metrics().unwrap().config_version, 7);
    assert_eq!(p.current_config().unwrap().version, 7);
    let company = p.apply_config_json(r#"{"version": 9, "pubsubEnabled": true, "companyOverrides": {"c-9": {"pubsubPercentage": 100}}}"#.into()).unwrap();
    assert_eq!((company.pubsub_enabled, company.reason), (true, DecisionReason::CompanyOverride));
}

#[test]
fn flush_reports_what_is_still_pending_when_a_backend_is_down() {
    let emu = emulator();
    let dead_port = dualpub_testbed::free_port().unwrap();
    let id = device("pending");
    let p = TestDevice::new(&id, &emu).mqtt(&format!("mqtt://127.0.0.1:{dead_port}")).rollout(100.0).start();
    p.send_locations((0..5).map(location).collect()).unwrap();
    let r = p.flush(1_500).unwrap();
    assert!(!r.completed);
    assert_eq!((r.pending_mqtt, r.pending_pubsub), (5, 0), "{r:?}");
    let m = p.metrics().unwrap();
    assert_eq!(m.mqtt.queue_depth, 5);
    assert!(m.queue_oldest_age_seconds > 1.0);
    assert!(m.mqtt.retries >= 1, "reconnect attempts are counted");
}

#[test]
fn turning_mqtt_off_hands_what_waits_for_it_to_pubsub() {
    // The end of the migration: MQTT is turned off (here it is already unreachable, as a
    // decommissioned broker) while locations routed to MQTT alone before the change wait for it.
    let emu = emulator();
    let id = device("mqtt-off");
    let pubsub = pubsub_subscriber(&emu, "mqtt-off");
    let p = TestDevice::new(&id, &emu).mqtt(&dead_mqtt()).real_time().start();
    let before: Vec<String> = (0..5).map(|n| p.send_location(location(n)).unwrap()).collect();
    assert!(p.await_durable(10_000).unwrap());
    assert_eq!(p.metrics().unwrap().mqtt.queue_depth, 5);
    let mut off = rollout(100.0);
    off.version = 2;
    off.mqtt_enabled = false;
    let d = p.apply_config(off).unwrap();
    assert_eq!((d.mqtt_enabled, d.pubsub_enabled), (false, true));
    let after: Vec<String> = (5..10).map(|n| p.send_location(location(n)).unwrap()).collect();
    let report = p.flush(20_000).unwrap();
    assert!(report.completed, "nothing waits for the MQTT the config turned off: {report:?}");
    let all = [before, after].concat();
    assert!(wait_for_all(&pubsub.collected, &all, WAIT), "Pub/Sub received {} of 10", pubsub.collected.all().len());
    let m = p.metrics().unwrap();
    assert_eq!((m.mqtt.queue_depth, m.pubsub.queue_depth, m.mqtt.published), (0, 0, 0));
    p.shutdown();
}
