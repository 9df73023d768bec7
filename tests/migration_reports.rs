//! Wire format version 2 (`seq`, `route`, `cfg`) and the migration reports, end to end: the
//! embedded broker and the Pub/Sub emulator, their subscribers counting what really arrived, and
//! a manual clock driving the report schedule (docs/CONTRACT.md#version-2,
//! docs/CONTRACT.md#migration-reports).

mod common;

use common::*;
use dualpub::clock::ManualClock;
use dualpub::{MigrationConfig, Publisher};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);
const INTERVAL_MS: i64 = 900_000;

fn payloads(c: &Collected) -> Vec<Value> {
    c.all().into_iter().map(|r| serde_json::from_slice(&r.payload).unwrap()).collect()
}

/// A publisher on a manual clock (the report schedule runs on it).
fn on_clock(device: TestDevice) -> (Arc<ManualClock>, Publisher) {
    let clock = Arc::new(ManualClock::new(dualpub::clock::now_ms()));
    let p = Publisher::with_clock(device.config(), None, clock.clone()).unwrap();
    (clock, p)
}

fn send(p: &Publisher, from: usize, n: usize) {
    for i in from..from + n {
        p.send_location(location(i)).unwrap();
    }
    assert!(p.flush(Duration::from_secs(20)).completed);
}

/// Waits until `c` holds `n` reports; returns them.
fn wait_reports(c: &Collected, n: usize) -> Vec<Value> {
    assert!(c.wait_until(WAIT, |c| c.len() >= n), "expected {n} reports, got {}: {:?}", c.len(), reports(c));
    reports(c)
}

#[test]
fn every_location_carries_seq_route_and_cfg_across_a_config_change() {
    let emu = emulator();
    let id = device("wire-v2");
    let (mqtt, pubsub) = (mqtt_subscriber(&id), pubsub_subscriber(&emu, &format!("v2-{id}")));
    let p = TestDevice::new(&id, &emu).rollout(100.0).start();
    let first: Vec<String> = (0..5).map(|n| p.send_location(location(n)).unwrap()).collect();
    assert!(p.flush(20_000).unwrap().completed);
    p.apply_config(MigrationConfig { version: 2, ..MigrationConfig::default() }).unwrap();
    let second: Vec<String> = (5..8).map(|n| p.send_location(location(n)).unwrap()).collect();
    assert!(p.flush(20_000).unwrap().completed);
    assert!(wait_for_all(&mqtt.collected, &[first.clone(), second.clone()].concat(), WAIT));
    assert!(wait_for_all(&pubsub.collected, &first, WAIT));
    let by_id: HashMap<String, Value> = payloads(&mqtt.collected).into_iter().map(|v| (v["eventId"].as_str().unwrap().to_string(), v)).collect();
    let seqs: Vec<u64> = first.iter().chain(&second).map(|e| by_id[e]["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=8).collect::<Vec<_>>(), "1..N without gaps, in acceptance order");
    for e in &first {
        assert_eq!((by_id[e]["route"].as_str(), by_id[e]["cfg"].as_u64(), by_id[e]["schemaVersion"].as_u64()), (Some("both"), Some(1), Some(2)));
    }
    for e in &second {
        assert_eq!((by_id[e]["route"].as_str(), by_id[e]["cfg"].as_u64()), (Some("mqtt"), Some(2)), "the decision in force at acceptance");
    }
    for v in payloads(&pubsub.collected) {
        let e = v["eventId"].as_str().unwrap();
        assert_eq!(v, by_id[e], "the same bytes on both pipelines");
    }
    assert_eq!(pubsub.collected.len(), 5, "after the change nothing went to Pub/Sub");
}

#[test]
fn a_forced_fallback_shows_route_pubsub_on_mqtt() {
    let emu = emulator();
    let id = device("wire-fallback");
    let (mqtt, reports_seen) = (mqtt_subscriber(&id), mqtt_report_subscriber(&id));
    emu.emulator().faults().set(FaultPlan { fail_rate: 1.0, fail_statuses: vec![503], ..FaultPlan::default() });
    let pubsub_only = MigrationConfig { version: 7, mqtt_enabled: false, pubsub_enabled: true, pubsub_percentage: 100.0, ..MigrationConfig::default() };
    let p = TestDevice::new(&id, &emu).migration(pubsub_only).real_time().start();
    let ids: Vec<String> = (0..3).map(|n| p.send_location(location(n)).unwrap()).collect();
    assert!(wait_for_all(&mqtt.collected, &ids, Duration::from_secs(60)), "Pub/Sub failing: MQTT gets the fallback copies");
    for v in payloads(&mqtt.collected).iter().filter(|v| v["deviceId"] == id.as_str()) {
        assert_eq!((v["route"].as_str(), v["cfg"].as_u64()), (Some("pubsub"), Some(7)), "a fallback copy keeps its bytes: {v}");
    }
    assert!(p.metrics().unwrap().fallback >= 3);
    // The breaker's opening is reported at once, over MQTT (the device is on Pub/Sub only, and
    // its reports fall back too).
    let got = wait_reports(&reports_seen.collected, 1);
    assert_eq!((got[0]["trigger"].as_str(), got[0]["gauges"]["pubsubBreakerOpen"].as_bool()), (Some("breaker"), Some(true)), "{}", got[0]);
    assert_eq!(got[0]["decision"]["route"], "pubsub");
    p.shutdown();
}

#[test]
fn reports_arrive_every_interval_on_each_transport_the_device_has_on() {
    let emu = emulator();
    let both = device("reports-both");
    let one = device("reports-one");
    let (m_both, p_both) = (mqtt_report_subscriber(&both), pubsub_report_subscriber(&emu, &format!("r-{both}")));
    let m_one = mqtt_report_subscriber(&one);
    let (clock, a) = on_clock(TestDevice::new(&both, &emu).rollout(100.0));
    let b = Publisher::with_clock(TestDevice::new(&one, &emu).rollout(0.0).config(), None, clock.clone()).unwrap();
    for round in 1..=3 {
        send(&a, round * 10, 3);
        send(&b, round * 10, 3);
        for c in [&m_both.collected, &p_both.collected, &m_one.collected] {
            let got = wait_reports(c, round);
            let last = &got[round - 1];
            assert_eq!(last["reportSeq"].as_u64(), Some(round as u64), "{got:?}");
            assert_eq!(last["trigger"], "interval");
        }
        // Cut at the round's first acknowledgement: everything of the earlier rounds and more.
        let accepted = wait_reports(&m_both.collected, round)[round - 1]["counters"]["accepted"].as_u64().unwrap();
        assert!(accepted > (round as u64 - 1) * 4, "round {round}: {accepted}");
        // Within the interval, more traffic cuts no report.
        clock.advance_ms(INTERVAL_MS - 1);
        send(&a, 500 + round, 1);
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(m_both.collected.len(), round, "no report before the interval is over");
        clock.advance_ms(1);
    }
    let last = &reports(&m_both.collected)[2];
    assert_eq!(last["decision"]["route"], "both");
    assert_eq!(reports(&p_both.collected), reports(&m_both.collected), "the same reports on both transports");
    assert_eq!(reports(&m_one.collected)[2]["decision"]["route"], "mqtt");
    std::thread::sleep(Duration::from_millis(500));
    let sent_to_pubsub: Vec<String> = reports(&p_both.collected).iter().map(|r| r["deviceId"].as_str().unwrap().to_string()).collect();
    assert!(sent_to_pubsub.iter().all(|d| *d == both), "a device on MQTT only sends no report to Pub/Sub: {sent_to_pubsub:?}");
    a.close();
    b.close();
}

#[test]
fn a_silent_device_reports_only_after_two_intervals() {
    let emu = emulator();
    let id = device("reports-silent");
    let m = mqtt_report_subscriber(&id);
    let (clock, p) = on_clock(TestDevice::new(&id, &emu).with(|c| c.mqtt.idle_disconnect_secs = 1));
    send(&p, 0, 2);
    wait_reports(&m.collected, 1);
    std::thread::sleep(Duration::from_millis(1_500)); // idle: MQTT hangs up
    clock.advance_ms(INTERVAL_MS * 3 / 2);
    assert!(!p.poll_reports(), "one and a half intervals without traffic: nothing");
    clock.advance_ms(INTERVAL_MS / 2 - 1);
    assert!(!p.poll_reports());
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(m.collected.len(), 1, "no report wakes the radio before two intervals");
    clock.advance_ms(1);
    assert!(p.poll_reports(), "two intervals: a report of its own");
    let got = wait_reports(&m.collected, 2);
    assert_eq!((got[1]["trigger"].as_str(), got[1]["reportSeq"].as_u64()), (Some("silent"), Some(2)));
    assert_eq!(got[1]["counters"]["mqtt"]["acked"].as_u64(), Some(2));
    p.close();
}

#[test]
fn a_report_lost_in_transit_loses_no_count() {
    let emu = emulator();
    let id = device("reports-lost");
    let (clock, p) = on_clock(TestDevice::new(&id, &emu));
    // Nobody subscribed: the broker acknowledges report 1 and drops it.
    send(&p, 0, 10);
    let status = || -> Value { serde_json::from_str::<Value>(&p.debug_report()).unwrap()["reports"].clone() };
    let deadline = std::time::Instant::now() + WAIT;
    while !(status()["reportSeq"] == 1 && status()["owed"]["mqtt"] == false) {
        assert!(std::time::Instant::now() < deadline, "report 1 never left: {}", status());
        std::thread::sleep(Duration::from_millis(50));
    }
    let m = mqtt_report_subscriber(&id);
    clock.advance_ms(INTERVAL_MS);
    send(&p, 10, 5);
    let metrics = p.metrics();
    p.close();
    // Report 2 (cut at the first acknowledgement after the interval) may still be waiting when
    // close cuts report 3, which then replaces it: only the newest report waits.
    assert!(m.collected.wait_until(WAIT, |c| reports(c).iter().any(|r| r["trigger"] == "shutdown")));
    let got = reports(&m.collected);
    let seqs: Vec<u64> = got.iter().map(|r| r["reportSeq"].as_u64().unwrap()).collect();
    assert!(seqs == [2, 3] || seqs == [3], "report 1 is the gap: {seqs:?}");
    if let [second, _] = &got[..] {
        // It holds everything report 1 held, and more.
        let c = &second["counters"];
        assert!(c["accepted"].as_u64().unwrap() > 10 && c["mqtt"]["acked"].as_u64().unwrap() > 10, "{c}");
    }
    let last = &got.last().unwrap()["counters"];
    assert_eq!(last["accepted"].as_u64(), Some(metrics.accepted));
    assert_eq!(last["mqtt"]["acked"].as_u64(), Some(metrics.mqtt.published), "cumulative: nothing lost with report 1");
    assert_eq!(metrics.accepted, 15);
}

#[test]
fn counters_and_seq_continue_after_a_restart() {
    let emu = emulator();
    let id = device("reports-restart");
    let _ = std::fs::remove_dir_all(data_dir(&id));
    let (m, locations) = (mqtt_report_subscriber(&id), mqtt_subscriber(&id));
    let shutdowns = |c: &Collected| reports(c).into_iter().filter(|r| r["trigger"] == "shutdown").collect::<Vec<_>>();
    let (_, p) = on_clock(TestDevice::new(&id, &emu));
    send(&p, 0, 4);
    p.close();
    assert!(m.collected.wait_until(WAIT, |c| shutdowns(c).len() == 1));
    let first = shutdowns(&m.collected).remove(0);
    assert_eq!(first["counters"]["accepted"].as_u64(), Some(4));
    let (_, p) = on_clock(TestDevice::new(&id, &emu));
    send(&p, 4, 3);
    p.close();
    assert!(m.collected.wait_until(WAIT, |c| shutdowns(c).len() == 2));
    let last = shutdowns(&m.collected).remove(1);
    assert_eq!(last["epoch"], first["epoch"], "the same data directory: the same epoch");
    let seqs: Vec<u64> = reports(&m.collected).iter().map(|r| r["reportSeq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "no reportSeq reused after a restart: {seqs:?}");
    assert_eq!((last["counters"]["accepted"].as_u64(), last["counters"]["lastSeq"].as_u64()), (Some(7), Some(7)), "{last}");
    assert_eq!(last["counters"]["mqtt"]["acked"].as_u64(), Some(7));
    assert!(locations.collected.wait_until(WAIT, |c| c.len() >= 7));
    let mut seqs: Vec<u64> = payloads(&locations.collected).iter().map(|v| v["seq"].as_u64().unwrap()).collect();
    seqs.sort();
    seqs.dedup();
    assert_eq!(seqs, (1..=7).collect::<Vec<_>>(), "seq continues after the restart");
}

#[test]
fn a_report_never_goes_ahead_of_a_backlog() {
    let emu = emulator();
    let id = device("reports-backlog");
    let proxy = dualpub_testbed::proxy::FaultProxy::start(([127, 0, 0, 1], broker().port).into()).unwrap();
    proxy.outage();
    let all = subscribers::mqtt("127.0.0.1", broker().port, &format!("device/+/{id}")).unwrap();
    let (clock, p) = on_clock(TestDevice::new(&id, &emu).mqtt(&proxy.mqtt_url()).with(|c| c.max_outbox_rows = 200_000));
    for chunk in 0..10 {
        p.send_locations((0..10_000).map(|n| location(chunk * 10_000 + n)).collect()).unwrap();
    }
    assert!(p.await_durable(Duration::from_secs(60)));
    // Reports due: the config changes (a report is cut before it) and two silent intervals pass.
    p.apply_config(MigrationConfig { version: 3, ..MigrationConfig::default() }).unwrap();
    clock.advance_ms(INTERVAL_MS * 3);
    assert!(p.poll_reports());
    proxy.restore();
    assert!(p.flush(Duration::from_secs(120)).completed);
    assert!(all.collected.wait_until(Duration::from_secs(60), |c| c.all().iter().any(|r| r.topic_or_key.starts_with("device/migration-report/"))));
    let got = all.collected.all();
    let first_report = got.iter().position(|r| r.topic_or_key.starts_with("device/migration-report/")).unwrap();
    let locations_after = got[first_report..].iter().filter(|r| r.topic_or_key.starts_with("device/telemetry/")).count();
    assert_eq!(locations_after, 0, "a location arrived after a report ({} of {} messages)", first_report, got.len());
    assert!(first_report >= 100_000, "every location came first: {first_report}");
    p.close();
}

#[test]
fn a_config_change_reports_the_decision_its_counters_accrued_under() {
    let emu = emulator();
    let id = device("reports-config");
    let m = mqtt_report_subscriber(&id);
    let (_, p) = on_clock(TestDevice::new(&id, &emu).rollout(100.0));
    send(&p, 0, 3);
    wait_reports(&m.collected, 1);
    p.apply_config(MigrationConfig { version: 2, ..MigrationConfig::default() }).unwrap();
    let got = wait_reports(&m.collected, 2);
    let r = &got[1];
    assert_eq!(r["trigger"], "config");
    assert_eq!((r["decision"]["cfg"].as_u64(), r["decision"]["route"].as_str()), (Some(1), Some("both")), "cut before v2 took effect: {r}");
    assert_eq!(r["counters"]["accepted"].as_u64(), Some(3));
    p.close();
    let last = wait_reports(&m.collected, 3).pop().unwrap();
    assert_eq!((last["trigger"].as_str(), last["decision"]["cfg"].as_u64(), last["decision"]["route"].as_str()), (Some("shutdown"), Some(2), Some("mqtt")));
}

#[test]
fn reports_stop_when_the_config_or_the_app_says_so() {
    let emu = emulator();
    let (by_config, by_app) = (device("reports-off-config"), device("reports-off-app"));
    let (m_config, m_app) = (mqtt_report_subscriber(&by_config), mqtt_report_subscriber(&by_app));
    let off = MigrationConfig { version: 1, reports_enabled: false, ..MigrationConfig::default() };
    let (clock, a) = on_clock(TestDevice::new(&by_config, &emu).migration(off));
    let b = Publisher::with_clock(TestDevice::new(&by_app, &emu).with(|c| c.reports_enabled = false).config(), None, clock.clone()).unwrap();
    for p in [&a, &b] {
        send(p, 0, 3);
        clock.advance_ms(INTERVAL_MS * 3);
        assert!(!p.poll_reports(), "nothing is cut");
        send(p, 3, 1);
    }
    a.close();
    b.close();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!((m_config.collected.len(), m_app.collected.len()), (0, 0), "no report at all, not even at shutdown");
}

#[test]
fn close_waits_only_for_a_report_that_can_leave() {
    let emu = emulator();
    let id = device("reports-close");
    let (m, p_sub) = (mqtt_report_subscriber(&id), pubsub_report_subscriber(&emu, &format!("c-{id}")));
    let (_, p) = on_clock(TestDevice::new(&id, &emu).rollout(100.0).with(|c| c.mqtt.idle_disconnect_secs = 1));
    send(&p, 0, 2);
    wait_reports(&m.collected, 1);
    std::thread::sleep(Duration::from_millis(1_500)); // MQTT hangs up: idle
                                                      // Pub/Sub only from now on: the config report waits for MQTT, which has no reason to connect.
    let pubsub_only = MigrationConfig { version: 2, mqtt_enabled: false, pubsub_enabled: true, pubsub_percentage: 100.0, ..MigrationConfig::default() };
    p.apply_config(pubsub_only).unwrap();
    let started = std::time::Instant::now();
    p.close();
    let took = started.elapsed();
    assert!(took < Duration::from_millis(1_500), "close waited {took:?} for a report that could not leave");
    // The shutdown report still left over Pub/Sub (it may have replaced the config report
    // before that one went: only the newest waits).
    assert!(p_sub.collected.wait_until(WAIT, |c| reports(c).iter().any(|r| r["trigger"] == "shutdown")));
    let last = reports(&p_sub.collected).pop().unwrap();
    assert_eq!((last["trigger"].as_str(), last["decision"]["route"].as_str()), (Some("shutdown"), Some("pubsub")));
}

#[test]
fn concurrent_senders_get_event_ids_in_seq_order() {
    // eventIds are UUIDv7 (time-ordered) and made under the same lock as seq, so a device's
    // eventId order is its seq order even with several threads sending at once.
    let emu = emulator();
    let id = device("wire-concurrent");
    let mqtt = mqtt_subscriber(&id);
    let p = TestDevice::new(&id, &emu).start();
    std::thread::scope(|s| {
        for t in 0..4 {
            let p = &p;
            s.spawn(move || {
                for n in 0..100 {
                    p.send_location(location(t * 1000 + n)).unwrap();
                }
            });
        }
    });
    assert!(p.flush(20_000).unwrap().completed);
    assert!(mqtt.collected.wait_until(WAIT, |c| c.len() >= 400));
    let mut got: Vec<(String, u64)> =
        payloads(&mqtt.collected).iter().map(|v| (v["eventId"].as_str().unwrap().to_string(), v["seq"].as_u64().unwrap())).collect();
    got.sort();
    got.dedup();
    let seqs: Vec<u64> = got.iter().map(|(_, s)| *s).collect();
    assert_eq!(seqs, (1..=400).collect::<Vec<_>>(), "sorted by eventId, the seqs are 1..400 in order");
    p.shutdown();
}

/// Polls `done` every 20 ms until it holds or `WAIT` has passed; returns whether it held.
fn eventually(done: impl Fn() -> bool) -> bool {
    let start = std::time::Instant::now();
    while !done() {
        if start.elapsed() > WAIT {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

#[test]
fn a_report_names_the_oldest_location_each_transport_still_owes_when_it_is_not_among_the_newest() {
    // A Pub/Sub-only device with MQTT unreachable: Pub/Sub refuses seqs 1-3 as invalid, so they
    // are dead-lettered and owed to MQTT alone, while Pub/Sub delivers 4-10. MQTT still owes 3
    // locations, but they are the oldest (1-3), not the newest 3 (8-10): the depth alone cannot
    // say which.
    let emu = emulator();
    let marker = 12345.678;
    emu.emulator().faults().set(FaultPlan { reject_data_containing: Some(marker.to_string()), ..FaultPlan::default() });
    let id = device("reports-oldest");
    let _ = std::fs::remove_dir_all(data_dir(&id));
    let seen = pubsub_report_subscriber(&emu, &format!("oldest-{id}"));
    let pubsub_only = MigrationConfig { version: 2, mqtt_enabled: false, pubsub_enabled: true, pubsub_percentage: 100.0, ..MigrationConfig::default() };
    let start = || on_clock(TestDevice::new(&id, &emu).migration(pubsub_only.clone()).mqtt(&dead_mqtt()).real_time()).1;
    let p = start();
    let delivered = |p: &Publisher, n: u64| {
        let m = p.metrics();
        m.pubsub.published >= n && m.pubsub.queue_depth == 0
    };
    for n in 0..3 {
        p.send_location(dualpub::Location { altitude: Some(marker), ..location(n) }).unwrap();
    }
    assert!(eventually(|| p.metrics().dead_letter == 3), "Pub/Sub refuses 1-3: {:?}", p.metrics());
    for n in 3..10 {
        p.send_location(location(n)).unwrap();
    }
    assert!(eventually(|| delivered(&p, 7)), "Pub/Sub delivers 4-10: {:?}", p.metrics().pubsub);
    p.close();
    assert!(seen.collected.wait_until(WAIT, |c| reports(c).iter().any(|r| r["trigger"] == "shutdown")), "{:?}", reports(&seen.collected));
    let got = reports(&seen.collected);
    let gauges = |r: &Value| {
        let g = &r["gauges"];
        [g["mqttDepth"].as_u64(), g["mqttOldestSeq"].as_u64(), g["pubsubDepth"].as_u64(), g["pubsubOldestSeq"].as_u64()]
    };
    let last = got.iter().find(|r| r["trigger"] == "shutdown").unwrap();
    assert_eq!((last["decision"]["route"].as_str(), last["counters"]["lastSeq"].as_u64()), (Some("pubsub"), Some(10)), "{last}");
    assert_eq!(gauges(last), [Some(3), Some(1), Some(0), Some(0)], "MQTT still owes 1-3: {}", last["gauges"]);
    // What the depth alone would have said: only the newest 3 (8-10) may still be queued.
    let (last_seq, depth) = (10, last["gauges"]["mqttDepth"].as_u64().unwrap());
    assert!(1 <= last_seq - depth, "seq 1 is not among the newest mqttDepth seqs, yet MQTT still owes it");
    // After a restart (the outbox numbers its rows afresh after the 3 it kept) the same.
    let p = start();
    p.send_location(location(10)).unwrap();
    assert!(eventually(|| delivered(&p, 1)), "Pub/Sub delivers 11: {:?}", p.metrics().pubsub);
    p.close();
    let shutdowns = |c: &Collected| reports(c).into_iter().filter(|r| r["trigger"] == "shutdown").collect::<Vec<_>>();
    assert!(seen.collected.wait_until(WAIT, |c| shutdowns(c).len() == 2), "{:?}", reports(&seen.collected));
    let last = shutdowns(&seen.collected).pop().unwrap();
    assert_eq!(last["counters"]["lastSeq"].as_u64(), Some(11), "{last}");
    assert_eq!(gauges(&last), [Some(3), Some(1), Some(0), Some(0)], "restored: MQTT still owes 1-3: {}", last["gauges"]);
}

#[test]
fn a_flapping_config_reports_once_a_minute_and_the_shutdown_report_still_goes() {
    // 400 config changes in a burst: at most one config report a minute, so the daily cap is
    // not spent and the shutdown report (and the interval ones) still go.
    let emu = emulator();
    let id = device("reports-flapping");
    let seen = mqtt_report_subscriber(&id);
    let p = TestDevice::new(&id, &emu).rollout(0.0).real_time().start();
    for version in 1..=400u64 {
        let pct = if version % 2 == 0 { 100.0 } else { 0.0 };
        p.apply_config(MigrationConfig { version, pubsub_percentage: pct, ..MigrationConfig::default() }).unwrap();
    }
    p.shutdown();
    assert!(seen.collected.wait_until(WAIT, |c| reports(c).iter().any(|r| r["trigger"] == "shutdown")), "{:?}", reports(&seen.collected));
    let shutdown = reports(&seen.collected).into_iter().find(|r| r["trigger"] == "shutdown").unwrap();
    assert!(shutdown["reportSeq"].as_u64().unwrap() <= 3, "config reports cut: {}", shutdown["reportSeq"]);
}
