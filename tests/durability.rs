//! The durable outbox: what survives a close (and a kill: see tools/cli/tests/chaos.rs), a
//! corrupt database, a full disk, a full outbox, and dead letters across restarts. Delivery
//! goes over TLS (`TestDevice::over_tls`), as in production.

mod common;

use common::*;
use dualpub::{DualPubError, DualPublisher};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

#[test]
fn queued_locations_survive_a_restart_and_resume_in_order() {
    let emu = emulator();
    emu.emulator().faults().set(FaultPlan { fail_rate: 1.0, fail_statuses: vec![503], ..FaultPlan::default() });
    let id = device("resume");
    let mut offline = TestDevice::new(&id, &emu).mqtt(&dead_mqtt()).rollout(100.0).over_tls().config();
    offline.migration.as_mut().unwrap().fallback_to_mqtt = false;
    let p = DualPublisher::new(offline.clone(), None).unwrap();
    let ids: Vec<String> = (0..200).map(|n| p.send_location(location(n)).unwrap()).collect();
    assert!(p.await_durable(10_000).unwrap(), "accepted locations reach the disk");
    let r = p.flush(300).unwrap();
    assert_eq!((r.pending_mqtt, r.pending_pubsub), (200, 200));
    p.shutdown();
    drop(p);

    emu.emulator().faults().clear();
    let mqtt = mqtt_subscriber(&id);
    let pubsub = pubsub_subscriber(&emu, "resume");
    let online = TestDevice::new(&id, &emu).rollout(100.0).over_tls().config();
    let q = DualPublisher::new(online, None).unwrap();
    assert_eq!(q.metrics().unwrap().recovered, 200);
    let r = q.flush(WAIT.as_millis() as u64).unwrap();
    assert!(r.completed, "{r:?}");
    assert!(wait_for_all(&mqtt.collected, &ids, WAIT));
    assert!(wait_for_all(&pubsub.collected, &ids, WAIT));
    let on_pubsub = event_ids(&pubsub.collected);
    let first_seen: Vec<&String> = {
        let mut seen = std::collections::HashSet::new();
        on_pubsub.iter().filter(|e| seen.insert((*e).clone())).collect()
    };
    assert_eq!(first_seen, ids.iter().collect::<Vec<_>>(), "resumed in acceptance order on Pub/Sub");
    // New locations continue after the resumed ones.
    let later = q.send_location(location(999)).unwrap();
    assert!(q.flush(10_000).unwrap().completed);
    assert!(wait_for_all(&pubsub.collected, std::slice::from_ref(&later), WAIT));
    assert_eq!(event_ids(&pubsub.collected).last(), Some(&later));
}

#[test]
fn a_corrupt_database_is_moved_aside_counted_and_replaced() {
    let emu = emulator();
    let id = device("corrupt");
    let c = TestDevice::new(&id, &emu).over_tls().config();
    // A directory left by an earlier run whose process had the same id holds its own copy.
    let _ = std::fs::remove_dir_all(&c.data_dir);
    std::fs::create_dir_all(&c.data_dir).unwrap();
    std::fs::write(std::path::Path::new(&c.data_dir).join("outbox.db"), b"garbage, not SQLite ".repeat(500)).unwrap();
    let mqtt = mqtt_subscriber(&id);
    let p = DualPublisher::new(c.clone(), None).unwrap();
    assert_eq!(p.metrics().unwrap().storage_resets, 1);
    let aside: Vec<_> =
        std::fs::read_dir(&c.data_dir).unwrap().filter_map(|e| e.ok()).filter(|e| e.file_name().to_string_lossy().starts_with("outbox.db.corrupt-")).collect();
    assert_eq!(aside.len(), 1, "the unreadable file is kept for inspection");
    let e = p.send_location(location(0)).unwrap();
    assert!(p.await_durable(10_000).unwrap());
    assert!(p.flush(10_000).unwrap().completed);
    assert!(wait_for_all(&mqtt.collected, &[e], WAIT));
}

#[test]
fn a_full_outbox_drops_the_oldest_and_counts_them() {
    let emu = emulator();
    let id = device("full-outbox");
    let mut c = TestDevice::new(&id, &emu).mqtt(&dead_mqtt()).over_tls().config();
    c.max_outbox_rows = 50;
    let p = DualPublisher::new(c.clone(), None).unwrap();
    let ids: Vec<String> = (0..80).map(|n| p.send_location(location(n)).unwrap()).collect();
    let m = p.metrics().unwrap();
    assert_eq!(m.dropped.get("outbox_full"), Some(&30));
    assert_eq!(m.mqtt.queue_depth, 50);
    assert!(p.await_durable(10_000).unwrap());
    p.shutdown();
    drop(p);

    let mqtt = mqtt_subscriber(&id);
    let mut online = c;
    online.mqtt.broker_url = tls_broker_url();
    let q = DualPublisher::new(online, None).unwrap();
    assert_eq!(q.metrics().unwrap().recovered, 50, "the evictions were persisted too");
    assert!(q.flush(WAIT.as_millis() as u64).unwrap().completed);
    assert!(wait_for_all(&mqtt.collected, &ids[30..], WAIT), "the newest 50 are delivered");
    let got = event_ids(&mqtt.collected);
    assert!(ids[..30].iter().all(|e| !got.contains(e)), "the dropped ones were really dropped");
}

#[test]
fn a_full_disk_keeps_delivering_from_memory_and_recovers() {
    let emu = emulator();
    let id = device("disk-full");
    let mut c = TestDevice::new(&id, &emu).over_tls().config();
    c.max_storage_bytes = Some(96 * 1024);
    let mqtt = mqtt_subscriber(&id);
    let p = DualPublisher::new(c, None).unwrap();
    // ~300 bytes each: far more than the database may hold at once.
    let ids = p.send_locations((0..2000).map(location).collect()).unwrap();
    let r = p.flush(WAIT.as_millis() as u64).unwrap();
    assert!(r.completed, "{r:?}");
    assert!(wait_for_all(&mqtt.collected, &ids, WAIT), "nothing lost while the disk was full");
    assert!(p.metrics().unwrap().storage_errors >= 1, "the failures were counted");
    // Space came back as rows left: new locations are durable again.
    p.send_location(location(5000)).unwrap();
    assert!(p.await_durable(10_000).unwrap());
}

#[test]
fn two_publishers_cannot_share_a_data_directory() {
    let emu = emulator();
    let id = device("shared-dir");
    let c = TestDevice::new(&id, &emu).config();
    let _p = DualPublisher::new(c.clone(), None).unwrap();
    let e = DualPublisher::new(c, None).err().unwrap();
    assert!(matches!(&e, DualPubError::Storage { reason } if reason.contains("in use")), "{e:?}");
}

#[test]
fn dead_letters_survive_a_restart_and_can_be_retried() {
    let emu = emulator();
    emu.emulator().faults().set(FaultPlan { reject_data_containing: Some("4242.5".into()), ..FaultPlan::default() });
    let id = device("dead-letter-restart");
    let c = TestDevice::new(&id, &emu).rollout(100.0).over_tls().config();
    let p = DualPublisher::new(c.clone(), None).unwrap();
    let mut poison = location(0);
    poison.altitude = Some(4242.5);
    let e = p.send_location(poison).unwrap();
    assert!(p.flush(10_000).unwrap().completed);
    assert_eq!(p.dead_letters().unwrap().len(), 1);
    p.shutdown();
    drop(p);

    let pubsub = pubsub_subscriber(&emu, "dead-letter-restart");
    let q = DualPublisher::new(c, None).unwrap();
    let dl = q.dead_letters().unwrap();
    assert_eq!(dl.len(), 1, "kept across the restart");
    assert_eq!(dl[0].event_id, e);
    emu.emulator().faults().clear();
    assert_eq!(q.retry_dead_letters(vec![]).unwrap(), 1);
    assert!(q.flush(10_000).unwrap().completed);
    assert!(wait_for_all(&pubsub.collected, std::slice::from_ref(&e), WAIT), "delivered with its original eventId");
    assert!(q.dead_letters().unwrap().is_empty());
}

#[test]
fn a_backlog_larger_than_memory_holds_waits_on_disk_and_leaves_in_order() {
    // 6,000 queued locations: only the next ones to go keep their payloads in memory
    // (docs/PERFORMANCE.md, "Memory"); the rest are read back from SQLite as the transports
    // reach them, in acceptance order, nothing lost.
    let emu = emulator();
    let id = device("backlog-on-disk");
    let (mqtt, pubsub) = (mqtt_subscriber(&id), pubsub_subscriber(&emu, "backlog-on-disk"));
    let p = TestDevice::new(&id, &emu).rollout(100.0).over_tls().start();
    p.set_network_available(false).unwrap();
    let mut ids = Vec::new();
    for chunk in 0..6 {
        ids.extend(p.send_locations((0..1_000).map(|n| location(chunk * 1_000 + n)).collect()).unwrap());
        assert!(p.await_durable(10_000).unwrap());
    }
    let report: serde_json::Value = serde_json::from_str(&p.debug_report().unwrap()).unwrap();
    let in_memory = report["queue"]["inMemory"].as_u64().unwrap();
    assert!(in_memory <= 2_048, "{in_memory} of 6,000 payloads in memory (at most twice MAX_RESIDENT in src/outbox.rs)");
    p.set_network_available(true).unwrap();
    let r = p.flush(60_000).unwrap();
    assert!(r.completed, "{r:?}");
    assert!(wait_for_all(&mqtt.collected, &ids, WAIT) && wait_for_all(&pubsub.collected, &ids, WAIT));
    for (name, c) in [("MQTT", &mqtt.collected), ("Pub/Sub", &pubsub.collected)] {
        let mut seen = std::collections::HashSet::new();
        let first: Vec<String> = event_ids(c).into_iter().filter(|e| seen.insert(e.clone())).collect();
        assert_eq!(first, ids, "{name}: in acceptance order");
    }
}
