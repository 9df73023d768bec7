//! Links as phones have them (docs/NETWORK.md): the SDK over TLS through Toxiproxy to the
//! embedded broker and the Pub/Sub emulator (each behind a TLS-terminating front with a local
//! CA, passed to the SDK as `caCertificatesPem`), read back by independent subscribers that go
//! straight to the backends. Each scenario asserts nothing lost, duplicates below a bound and
//! the time from the link's return to drained. A representative subset, kept short; the full
//! table, with the window on and at 0, comes from `scripts/network`.
//!
//! The test command builds Toxiproxy (scripts/setup.sh); without it these tests fail, never skip.

mod common;

use common::*;
use dualpub::{DualPublisher, MigrationConfig};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A test's bad links (the test bed's [`dualpub_testbed::field::Field`]) and its emulator.
struct Field {
    field: dualpub_testbed::field::Field,
    emu: EmulatorHandle,
}

impl std::ops::Deref for Field {
    type Target = dualpub_testbed::field::Field;
    fn deref(&self) -> &Self::Target {
        &self.field
    }
}

impl Field {
    fn new(name: &str) -> Field {
        let emu = emulator();
        let (host, port) = dualpub_testbed::url_host_port(&emu.url(), 80).unwrap();
        let broker = format!("127.0.0.1:{}", broker().port).parse().unwrap();
        let field = dualpub_testbed::field::Field::start(name, broker, format!("{host}:{port}").parse().unwrap())
            .expect("the field (Toxiproxy: scripts/setup.sh builds it)");
        Field { field, emu }
    }

    /// Device `id` over TLS through the proxies, trusting the local CA, with the SDK's default
    /// Pub/Sub batch limits (1,000 messages, 1 MB) and upload window `window_secs`.
    fn device(&self, id: &str, migration: MigrationConfig, window_secs: u32) -> Arc<DualPublisher> {
        self.device_via(id, migration, window_secs, &self.mqtt_url(), &self.endpoint())
    }

    /// The same, reaching the links through other proxies (`mqtt_url`, `endpoint`) in front.
    fn device_via(&self, id: &str, migration: MigrationConfig, window_secs: u32, mqtt_url: &str, endpoint: &str) -> Arc<DualPublisher> {
        let ca = self.ca.ca_pem.clone();
        TestDevice::with_endpoint(id, endpoint)
            .mqtt(mqtt_url)
            .migration(migration)
            .with(|c| {
                c.mqtt.ca_certificates_pem = Some(ca.clone());
                c.pubsub.ca_certificates_pem = Some(ca);
                c.pubsub.max_batch_messages = 1_000;
                c.pubsub.max_batch_bytes = 1_000_000;
                c.upload_window_secs = window_secs;
            })
            .start()
    }
}

fn both() -> MigrationConfig {
    rollout(100.0)
}

fn pubsub_only() -> MigrationConfig {
    MigrationConfig { mqtt_enabled: false, ..rollout(100.0) }
}

fn mqtt_only() -> MigrationConfig {
    MigrationConfig { version: 1, mqtt_enabled: true, pubsub_enabled: false, ..MigrationConfig::default() }
}

/// Copies of each location beyond the first, over the locations delivered.
fn duplicate_ratio(c: &Collected, ids: &[String]) -> f64 {
    let by_event = c.by_event();
    let extra: usize = ids.iter().map(|i| by_event.get(i).copied().unwrap_or(0).saturating_sub(1)).sum();
    extra as f64 / ids.len() as f64
}

/// Queues `n` locations with the network off (durable), from location `from`.
fn backlog(p: &DualPublisher, from: usize, n: usize) -> Vec<String> {
    p.set_network_available(false).unwrap();
    let ids = p.send_locations((from..from + n).map(location).collect()).unwrap();
    assert!(p.await_durable(30_000).unwrap());
    ids
}

#[test]
fn a_slow_link_drains_a_pubsub_backlog_in_requests_it_can_carry() {
    // 8 KB/s with 300 ± 100 ms: 400 locations are ~280 KB, ~35 s of upload. One request of all
    // of them (the SDK before pacing) needs longer than its 30 s timeout and went again whole,
    // for ever; paced requests upload in seconds each.
    let f = Field::new("slow");
    f.pubsub.cellular(300, 100, 8).unwrap();
    let id = device("field-slow");
    let sub = pubsub_subscriber(&f.emu, "field-slow");
    let p = f.device(&id, pubsub_only(), 0);
    let ids = backlog(&p, 0, 400);
    let t0 = Instant::now();
    p.set_network_available(true).unwrap();
    let r = p.flush(240_000).unwrap();
    let took = t0.elapsed();
    assert!(r.completed, "{r:?} after {took:?}");
    assert!(wait_for_all(&sub.collected, &ids, Duration::from_secs(20)), "lost on Pub/Sub");
    let m = p.metrics().unwrap();
    let dup = duplicate_ratio(&sub.collected, &ids);
    eprintln!("slow link: 400 locations in {took:?}, {} requests, {} stalls, duplicates {:.1} %", m.http_requests, m.pubsub.stalls, dup * 100.0);
    assert!(dup <= 0.10, "{:.1} % duplicates", dup * 100.0);
    assert_eq!(m.fallback, 0, "delivered over the slow link, not by falling back to MQTT");
    p.shutdown();
}

#[test]
fn a_black_hole_is_given_up_in_seconds_and_both_drain_soon_after_the_return() {
    let f = Field::new("hole");
    let id = device("field-hole");
    let (mqtt, pubsub) = (mqtt_subscriber(&id), pubsub_subscriber(&f.emu, "field-hole"));
    let p = f.device(&id, both(), 0);
    let first: Vec<String> = (0..5).map(|n| p.send_location(location(n)).unwrap()).collect();
    assert!(wait_for_all(&mqtt.collected, &first, Duration::from_secs(20)) && wait_for_all(&pubsub.collected, &first, Duration::from_secs(20)));
    // 30 s of black hole on both links (the same NAT), a location every 2 s meanwhile.
    f.mqtt.black_hole().unwrap();
    f.pubsub.black_hole().unwrap();
    let mut ids = first;
    for n in 5..20 {
        ids.push(p.send_location(location(n)).unwrap());
        std::thread::sleep(Duration::from_secs(2));
    }
    let m = p.metrics().unwrap();
    assert!(m.mqtt.stalls >= 1 && m.pubsub.stalls >= 1, "the black hole was noticed as stalls: {} and {}", m.mqtt.stalls, m.pubsub.stalls);
    f.mqtt.heal().unwrap();
    f.pubsub.heal().unwrap();
    let back = Instant::now();
    assert!(wait_for_all(&mqtt.collected, &ids, Duration::from_secs(60)) && wait_for_all(&pubsub.collected, &ids, Duration::from_secs(60)), "lost");
    let drained = back.elapsed();
    let m = p.metrics().unwrap();
    eprintln!(
        "black hole 30 s at W = 0: drained {drained:?} after the return; stalls mqtt {} pubsub {}; duplicates mqtt {:.1} % pubsub {:.1} %",
        m.mqtt.stalls,
        m.pubsub.stalls,
        duplicate_ratio(&mqtt.collected, &ids) * 100.0,
        duplicate_ratio(&pubsub.collected, &ids) * 100.0
    );
    assert!(drained <= Duration::from_secs(15), "both transports drained {drained:?} after the link came back");
    p.shutdown();
}

#[test]
fn connections_cut_after_two_kilobytes_still_deliver_in_every_burst() {
    // Each connection carries the TLS handshake and a few publishes before it is cut: a window
    // of 64 sent the same first publishes again on every connection; a narrowing window gets a
    // few more through each time.
    let f = Field::new("cut");
    f.mqtt.cut_after(2_048).unwrap();
    let id = device("field-cut");
    let mqtt = mqtt_subscriber(&id);
    let p = f.device(&id, mqtt_only(), 3);
    let ids = backlog(&p, 0, 20);
    let t0 = Instant::now();
    p.set_network_available(true).unwrap();
    assert!(wait_for_all(&mqtt.collected, &ids, Duration::from_secs(120)), "lost behind 2 KB connection cuts");
    let dup = duplicate_ratio(&mqtt.collected, &ids);
    let m = p.metrics().unwrap();
    eprintln!("2 KB cuts, W = 3: 20 locations in {:?}, {} retries, duplicates {:.1} %", t0.elapsed(), m.mqtt.retries, dup * 100.0);
    // Each connection loses the PUBACK of the publish that crossed the cut: that one goes
    // twice. With a fixed window of 64 the same first publishes went again on every connection
    // and the 20 did not all arrive within the 120 s.
    assert!(dup <= 0.75, "{:.1} % duplicates", dup * 100.0);
    p.shutdown();
}

#[test]
fn a_blocking_flush_keeps_retrying_a_hanging_pubsub_until_its_deadline() {
    // Pub/Sub accepts connections and never answers. The flush's burst stays urgent through
    // the window's 30 s stall rule, and each attempt gives up after its stall limit.
    let f = Field::new("hang");
    let id = device("field-hang");
    let p = f.device(&id, MigrationConfig { fallback_to_mqtt: false, ..pubsub_only() }, 30);
    p.send_location(location(0)).unwrap();
    assert!(p.await_durable(5_000).unwrap());
    f.pubsub.black_hole().unwrap();
    let t0 = Instant::now();
    let r = p.flush(40_000).unwrap();
    assert!(!r.completed && t0.elapsed() >= Duration::from_secs(39), "{r:?}");
    let m = p.metrics().unwrap();
    eprintln!("flush(40 s) against a hanging Pub/Sub: {} requests, {} stalls", m.http_requests, m.pubsub.stalls);
    assert!(m.http_requests >= 3, "only {} attempts in 40 s", m.http_requests);
    assert!(m.pubsub.stalls >= 2);
    f.pubsub.heal().unwrap();
    assert!(p.flush(30_000).unwrap().completed, "delivered once the link is back");
    p.shutdown();
}

#[test]
fn bursts_resume_their_tls_sessions() {
    // An upload window of 1 s: MQTT hangs up after every burst and connects again for the
    // next, so without resumption each burst pays a full handshake (certificate and all).
    let f = Field::new("resume");
    let id = device("field-resume");
    let (mqtt, pubsub) = (mqtt_subscriber(&id), pubsub_subscriber(&f.emu, "field-resume"));
    let p = f.device(&id, both(), 1);
    let mut ids = Vec::new();
    for n in 0..10 {
        ids.push(p.send_location(location(n)).unwrap());
        assert!(p.flush(20_000).unwrap().completed, "burst {n}");
        std::thread::sleep(Duration::from_millis(300)); // MQTT hangs up once the burst is over
    }
    assert!(wait_for_all(&mqtt.collected, &ids, Duration::from_secs(20)) && wait_for_all(&pubsub.collected, &ids, Duration::from_secs(20)));
    p.shutdown();
    let (m, h) = (f.mqtts.handshakes(), f.https.handshakes());
    eprintln!("10 bursts: MQTT handshakes {} full / {} resumed; Pub/Sub {} full / {} resumed", m.full, m.resumed, h.full, h.resumed);
    let reconnects = m.full + m.resumed - 1;
    assert!(reconnects >= 9, "MQTT reconnected for every burst: {m:?}");
    assert!(m.resumed * 10 >= reconnects * 9, "at least 90 % of MQTT's reconnects resumed: {m:?}");
    assert_eq!(h.full, 1, "one full handshake for Pub/Sub: {h:?}");
}

#[test]
fn a_black_holed_attempt_holds_its_connection_at_most_fifteen_seconds() {
    // The SDK's connections go through a logging proxy in front of the black-holed links: a
    // real black hole keeps the radio on from an attempt's first packet until the SDK gives up
    // (TCP retransmits meanwhile), so each connection's life is the radio time it costs.
    use dualpub_testbed::packet_log::{Kind, PacketLog};
    use dualpub_testbed::proxy::FaultProxy;
    let f = Field::new("radio-hole");
    let log = PacketLog::new();
    let mqtt_log = FaultProxy::start_logged(([127, 0, 0, 1], f.mqtt.port).into(), log.clone(), "mqtt").unwrap();
    let pubsub_log = FaultProxy::start_logged(([127, 0, 0, 1], f.pubsub.port).into(), log.clone(), "pubsub").unwrap();
    let id = device("field-radio-hole");
    let (mqtt, pubsub) = (mqtt_subscriber(&id), pubsub_subscriber(&f.emu, "field-radio-hole"));
    let p = f.device_via(&id, both(), 0, &format!("mqtts://127.0.0.1:{}", mqtt_log.port), &format!("https://127.0.0.1:{}", pubsub_log.port));
    let mut ids: Vec<String> = (0..3).map(|n| p.send_location(location(n)).unwrap()).collect();
    assert!(wait_for_all(&mqtt.collected, &ids, Duration::from_secs(20)) && wait_for_all(&pubsub.collected, &ids, Duration::from_secs(20)));
    let hole_from = log.micros_at(Instant::now());
    f.mqtt.black_hole().unwrap();
    f.pubsub.black_hole().unwrap();
    for n in 3..18 {
        ids.push(p.send_location(location(n)).unwrap());
        std::thread::sleep(Duration::from_secs(2));
    }
    let hole_to = log.micros_at(Instant::now());
    f.mqtt.heal().unwrap();
    f.pubsub.heal().unwrap();
    assert!(wait_for_all(&mqtt.collected, &ids, Duration::from_secs(60)) && wait_for_all(&pubsub.collected, &ids, Duration::from_secs(60)), "lost");
    p.shutdown();
    // Each connection that was open during the black hole: how long it lived within it.
    let entries = log.entries();
    let mut lives = Vec::new();
    for e in entries.iter().filter(|e| e.kind == Kind::Open) {
        let close = entries.iter().find(|c| c.kind == Kind::Close && c.conn == e.conn && c.backend == e.backend).map_or(u64::MAX, |c| c.t_us);
        let (from, to) = (e.t_us.max(hole_from), close.min(hole_to));
        if close > hole_from && e.t_us < hole_to && close <= hole_to {
            lives.push((e.backend, (to - from) as f64 / 1e6));
        }
    }
    let longest = lives.iter().map(|(_, s)| *s).fold(0.0, f64::max);
    eprintln!("black-holed attempts (30 s at W = 0): {} connections ended within it, longest {longest:.1} s: {lives:?}", lives.len());
    assert!(lives.len() >= 2, "attempts during the black hole: {lives:?}");
    assert!(longest <= 15.0, "an attempt held its connection {longest:.1} s");
}
