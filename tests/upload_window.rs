//! Upload windows and the network switch (docs/CONTRACT.md#upload-windows), end to end through
//! the real SDK: embedded rumqttd and the Pub/Sub emulator, seen by independent subscribers.
//! Exact burst timing, packet by packet, is measured by the radio harness, not asserted here.

mod common;

use common::*;
use dualpub::MigrationConfig;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(20);

/// The earliest arrival of each subscriber's messages, ms.
fn first_arrival(c: &dualpub_testbed::subscribers::Collected) -> i64 {
    c.all().iter().map(|r| r.received_at_ms).min().expect("something arrived")
}

#[test]
fn locations_wait_for_the_window_then_both_transports_send_them_in_one_burst() {
    let emu = emulator();
    let id = device("window-burst");
    let (mqtt, pubsub) = (mqtt_subscriber(&id), pubsub_subscriber(&emu, "window-burst"));
    // A 4 s window: the burst opens at the device's phase at least W/2 = 2 s after the first
    // location, so between 2 and 6 s (docs/CONTRACT.md#upload-windows).
    let start = Instant::now();
    let p = TestDevice::new(&id, &emu).rollout(100.0).with(|c| c.upload_window_secs = 4).start();
    let ids: Vec<String> = (0..5).map(|n| p.send_location(location(n)).unwrap()).collect();
    p.await_durable(5_000).unwrap();
    std::thread::sleep(Duration::from_millis(1_500).saturating_sub(start.elapsed()));
    assert!(mqtt.collected.is_empty() && pubsub.collected.is_empty(), "nothing leaves before the window: durable, waiting");
    assert!(wait_for_all(&mqtt.collected, &ids, WAIT) && wait_for_all(&pubsub.collected, &ids, WAIT));
    assert!(start.elapsed() >= Duration::from_millis(1_900), "the burst opened after {:?}", start.elapsed());
    let apart = (first_arrival(&mqtt.collected) - first_arrival(&pubsub.collected)).abs();
    assert!(apart < 1_000, "both transports in the same burst: first arrivals {apart} ms apart");
    assert_eq!((mqtt.collected.len(), pubsub.collected.len()), (5, 5), "the whole backlog, once each");
    p.shutdown();
}

#[test]
fn flush_now_sends_everything_queued_at_once_whatever_the_window() {
    let emu = emulator();
    let id = device("window-flush-now");
    let (mqtt, pubsub) = (mqtt_subscriber(&id), pubsub_subscriber(&emu, "window-flush-now"));
    let p = TestDevice::new(&id, &emu).rollout(100.0).with(|c| c.upload_window_secs = 3_600).start();
    let ids: Vec<String> = (0..20).map(|n| p.send_location(location(n)).unwrap()).collect();
    p.await_durable(5_000).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(mqtt.collected.is_empty() && pubsub.collected.is_empty(), "an hour's window holds them");
    let start = Instant::now();
    p.flush_now().unwrap();
    assert!(wait_for_all(&mqtt.collected, &ids, WAIT) && wait_for_all(&pubsub.collected, &ids, WAIT));
    assert!(start.elapsed() < Duration::from_secs(10), "{:?}", start.elapsed());
    // A blocking flush is urgent too.
    let more: Vec<String> = (20..25).map(|n| p.send_location(location(n)).unwrap()).collect();
    assert!(p.flush(20_000).unwrap().completed);
    assert!(wait_for_all(&mqtt.collected, &more, WAIT) && wait_for_all(&pubsub.collected, &more, WAIT));
    p.shutdown();
}

#[test]
fn back_to_back_flushes_each_complete_in_their_own_burst() {
    // A flush right after the previous burst delivered its last location widens or opens a
    // burst while that burst is being closed: the close must see the new work (ARCHITECTURE.md,
    // lock order) or the flush waits a whole window.
    let emu = emulator();
    let id = device("window-back-to-back");
    let p = TestDevice::new(&id, &emu).rollout(100.0).start();
    for round in 0..15 {
        (0..5).for_each(|n| drop(p.send_location(location(round * 5 + n)).unwrap()));
        let r = p.flush(10_000).unwrap();
        assert!(r.completed, "round {round}: {r:?}");
    }
    p.shutdown();
}

#[test]
fn nothing_is_attempted_without_a_network_and_one_burst_follows_its_return() {
    let emu = emulator();
    let id = device("window-network");
    let (mqtt, pubsub) = (mqtt_subscriber(&id), pubsub_subscriber(&emu, "window-network"));
    // A 4 s window: the burst for the network's return opens within the device's share of
    // min(W, 30 s) (docs/CONTRACT.md#upload-windows), so at most 4 s after it.
    let p = TestDevice::new(&id, &emu).rollout(100.0).with(|c| c.upload_window_secs = 4).start();
    p.set_network_available(false).unwrap();
    let ids: Vec<String> = (0..10).map(|n| p.send_location(location(n)).unwrap()).collect();
    p.await_durable(5_000).unwrap();
    std::thread::sleep(Duration::from_millis(1_500));
    assert!(mqtt.collected.is_empty() && pubsub.collected.is_empty());
    let m = p.metrics().unwrap();
    assert_eq!((m.mqtt.published, m.pubsub.published, m.http_requests), (0, 0, 0), "no attempt at all: {m:?}");
    assert_eq!((m.mqtt.queue_depth, m.pubsub.queue_depth), (10, 10), "kept");
    p.set_network_available(true).unwrap();
    assert!(wait_for_all(&mqtt.collected, &ids, WAIT) && wait_for_all(&pubsub.collected, &ids, WAIT));
    p.shutdown();
}

#[test]
fn the_migration_config_sets_the_window_remotely() {
    let emu = emulator();
    let id = device("window-remote");
    let mqtt = mqtt_subscriber(&id);
    let p = TestDevice::new(&id, &emu).start();
    // The app's default is 0 (at once); a config with upload.windowSecs = 2 wins.
    let parsed = MigrationConfig::from_json(r#"{"version": 3, "upload": {"windowSecs": 2}}"#).unwrap();
    assert_eq!(parsed.upload_window_secs, Some(2));
    assert!(MigrationConfig::from_json(r#"{"upload": {"windowSecs": 3601}}"#).is_err(), "at most an hour");
    assert_eq!(MigrationConfig::from_json("{}").unwrap().upload_window_secs, None, "unset: the app's");
    assert_eq!(MigrationConfig::from_json(&parsed.to_json().to_string()).unwrap(), parsed, "round trip");
    p.apply_config(parsed).unwrap();
    let start = Instant::now();
    let ids: Vec<String> = (0..3).map(|n| p.send_location(location(n)).unwrap()).collect();
    p.await_durable(5_000).unwrap();
    // The burst opens at least W/2 = 1 s after the first location.
    std::thread::sleep(Duration::from_millis(700).saturating_sub(start.elapsed()));
    assert!(mqtt.collected.is_empty(), "held by the config's window");
    assert!(wait_for_all(&mqtt.collected, &ids, WAIT));
    // A rollback to real time is one config change away.
    p.apply_config(MigrationConfig { version: 4, upload_window_secs: Some(0), ..MigrationConfig::default() }).unwrap();
    let now: Vec<String> = (3..6).map(|n| p.send_location(location(n)).unwrap()).collect();
    assert!(wait_for_all(&mqtt.collected, &now, Duration::from_millis(1_500)), "window 0 sends at once");
    p.shutdown();
}

#[test]
fn a_backlog_restored_at_start_gets_a_burst_at_once() {
    // 50 locations queued with the network off, the publisher closed; the next one on the same
    // data directory sends them soon after start (within the device's share of the fleet
    // spread, min(W, 30 s)), not when a new location happens to schedule a burst. An 8 s window
    // keeps the spread, and the test, short.
    let emu = emulator();
    let id = device("window-restored");
    let (mqtt, pubsub) = (mqtt_subscriber(&id), pubsub_subscriber(&emu, "window-restored"));
    let p = TestDevice::new(&id, &emu).rollout(100.0).with(|c| c.upload_window_secs = 8).start();
    p.set_network_available(false).unwrap();
    let ids: Vec<String> = (0..50).map(|n| p.send_location(location(n)).unwrap()).collect();
    p.await_durable(5_000).unwrap();
    p.shutdown();
    assert!(mqtt.collected.is_empty() && pubsub.collected.is_empty(), "offline: nothing left");
    let start = Instant::now();
    let again = TestDevice::new(&id, &emu).rollout(100.0).with(|c| c.upload_window_secs = 8).start();
    assert!(wait_for_all(&mqtt.collected, &ids, WAIT) && wait_for_all(&pubsub.collected, &ids, WAIT), "restored: sent at start");
    assert!(start.elapsed() < WAIT, "{:?}", start.elapsed());
    again.shutdown();
}

#[test]
fn short_lived_publishers_deliver_what_they_queued_in_a_last_burst() {
    // Create, 5 locations, shutdown — with a 30 s window, 20 times on one data directory: every
    // location reaches both pipelines, and no shutdown waits out its 2 s for a report that could
    // not leave behind locations that had no burst.
    let emu = emulator();
    let id = device("window-short-lived");
    let (mqtt, pubsub) = (mqtt_subscriber(&id), pubsub_subscriber(&emu, "window-short-lived"));
    let mut ids = Vec::new();
    let mut slowest = Duration::ZERO;
    for round in 0..20 {
        let p = TestDevice::new(&id, &emu).rollout(100.0).with(|c| c.upload_window_secs = 30).start();
        ids.extend((0..5).map(|n| p.send_location(location(round * 5 + n)).unwrap()));
        let start = Instant::now();
        p.shutdown();
        slowest = slowest.max(start.elapsed());
    }
    assert!(wait_for_all(&mqtt.collected, &ids, WAIT) && wait_for_all(&pubsub.collected, &ids, WAIT), "all 100 on both");
    assert!(slowest < Duration::from_millis(1_900), "a shutdown took {slowest:?}: it waited for a report that could not go");
}

#[test]
fn offline_a_shutdown_does_not_wait_for_a_report_that_cannot_go() {
    let emu = emulator();
    let id = device("window-offline-close");
    let p = TestDevice::new(&id, &emu).rollout(100.0).with(|c| c.upload_window_secs = 30).start();
    p.set_network_available(false).unwrap();
    (0..5).for_each(|n| drop(p.send_location(location(n)).unwrap()));
    let start = Instant::now();
    p.shutdown();
    assert!(start.elapsed() < Duration::from_millis(1_500), "{:?}", start.elapsed());
}
