//! Against Debian's mosquitto: plain and TLS listeners, broker restarts and cut connections.
//! The test command installs mosquitto; without it these tests fail (never skip).

mod common;

use common::*;
use dualpub::DualPublisher;
use dualpub_testbed::mosquitto::Mosquitto;
use dualpub_testbed::proxy::FaultProxy;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

fn mqtt_only() -> dualpub::MigrationConfig {
    rollout(0.0)
}

#[test]
fn delivers_through_mosquitto_and_survives_a_broker_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Mosquitto::start(dir.path(), None).unwrap();
    let emu = emulator();
    let id = device("mosq-restart");
    // A persistent session, so the broker queues for the verifier across its own restart.
    let sub = subscribers::mqtt_with_session("127.0.0.1", broker.port, &format!("device/telemetry/{id}"), Some("verifier-restart")).unwrap();
    let p = TestDevice::new(&id, &emu).mqtt(&broker.url()).migration(mqtt_only()).start();

    let mut ids: Vec<String> = (0..200).map(|n| p.send_location(location(n)).unwrap()).collect();
    assert!(p.flush(20_000).unwrap().completed);
    broker.stop_gracefully();
    // Accepted while the broker is down: queued in the outbox.
    ids.extend((200..400).map(|n| p.send_location(location(n)).unwrap()));
    let down = p.flush(500).unwrap();
    assert_eq!(down.pending_mqtt, 200, "{down:?}");
    broker.restart().unwrap();
    let r = p.flush(60_000).unwrap();
    assert!(r.completed, "{r:?}");
    let ok = wait_for_all(&sub.collected, &ids, WAIT);
    let got: std::collections::HashSet<String> = event_ids(&sub.collected).into_iter().collect();
    let missing: Vec<usize> = ids.iter().enumerate().filter(|(_, e)| !got.contains(*e)).map(|(i, _)| i).collect();
    if !ok {
        eprintln!("{}", std::fs::read_to_string(dir.path().join("mosquitto.log")).unwrap_or_default());
    }
    assert!(ok, "the verifier missed {} of 400, indices {:?}…", missing.len(), &missing[..missing.len().min(10)]);
    let m = p.metrics().unwrap();
    assert!(m.mqtt.retries >= 1, "{m:?}");
    assert_eq!(m.mqtt.published, 400);
}

#[test]
fn cut_connections_lose_nothing_and_duplicates_keep_their_event_id() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(dir.path(), None).unwrap();
    let proxy = FaultProxy::start(([127, 0, 0, 1], broker.port).into()).unwrap();
    let emu = emulator();
    let id = device("mosq-cut");
    let sub = subscribers::mqtt("127.0.0.1", broker.port, &format!("device/telemetry/{id}")).unwrap();
    // Real time: the cuts must fall while the SDK is connected and sending.
    let p = TestDevice::new(&id, &emu).mqtt(&proxy.mqtt_url()).migration(mqtt_only()).real_time().start();
    // Connected before the first cut, so each of the five cuts ends a live connection.
    let mut ids = vec![p.send_location(location(999)).unwrap()];
    assert!(p.flush(30_000).unwrap().completed);
    for round in 0..5 {
        let connections = proxy.accepted();
        ids.extend((0..300).map(|n| p.send_location(location(round * 1000 + n)).unwrap()));
        std::thread::sleep(Duration::from_millis(20));
        proxy.cut_connections();
        // Let the SDK reconnect (after its jittered backoff) before the next cut.
        let start = std::time::Instant::now();
        while proxy.accepted() == connections && start.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    proxy.outage();
    ids.extend((0..100).map(|n| p.send_location(location(9000 + n)).unwrap()));
    std::thread::sleep(Duration::from_millis(500));
    proxy.restore();
    let r = p.flush(60_000).unwrap();
    assert!(r.completed, "{r:?}");
    assert!(wait_for_all(&sub.collected, &ids, WAIT), "lost locations after cut connections");
    let by_event = sub.collected.by_event();
    assert_eq!(by_event.len(), ids.len(), "only our eventIds arrived");
    let duplicates: usize = by_event.values().map(|n| n - 1).sum();
    eprintln!("cut connections: {} locations, {duplicates} duplicates, {} connections", ids.len(), proxy.accepted());
    assert!(proxy.accepted() >= 6, "the SDK reconnected after every cut: {} connections", proxy.accepted());
}

#[test]
fn mqtts_with_the_app_supplied_ca_and_refusal_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dualpub_testbed::tls::LocalCa::new();
    let (files, ca_pem) = (ca.write(dir.path()).unwrap(), ca.ca_pem.clone());
    let broker = Mosquitto::start(dir.path(), Some(&files)).unwrap();
    let tls_port = broker.tls_port.unwrap();
    let emu = emulator();
    let id = device("mosq-tls");
    let sub = subscribers::mqtt("127.0.0.1", broker.port, &format!("device/telemetry/{id}")).unwrap();

    let mut c = TestDevice::new(&id, &emu).mqtt(&format!("mqtts://localhost:{tls_port}")).migration(mqtt_only()).config();
    c.allow_insecure = false;
    c.pubsub.endpoint = "https://pubsub.googleapis.com".into();
    c.mqtt.ca_certificates_pem = Some(ca_pem);
    let p = DualPublisher::new(c.clone(), None).unwrap();
    let ids: Vec<String> = (0..20).map(|n| p.send_location(location(n)).unwrap()).collect();
    assert!(p.flush(20_000).unwrap().completed);
    assert!(wait_for_all(&sub.collected, &ids, WAIT), "delivered over TLS");

    // Without the private CA the broker's certificate is not trusted: nothing is sent, nothing lost.
    let mut untrusted = c;
    untrusted.device_id = device("mosq-tls-untrusted");
    untrusted.data_dir = format!("{}-untrusted", untrusted.data_dir);
    untrusted.mqtt.ca_certificates_pem = None;
    let q = DualPublisher::new(untrusted, None).unwrap();
    q.send_location(location(0)).unwrap();
    let r = q.flush(1_500).unwrap();
    assert_eq!((r.completed, r.pending_mqtt), (false, 1));
    assert!(q.metrics().unwrap().mqtt.retries >= 1);
}

#[test]
fn plaintext_needs_allow_insecure() {
    let emu = emulator();
    let mut c = TestDevice::new(&device("insecure"), &emu).mqtt("mqtt://127.0.0.1:1883").migration(mqtt_only()).config();
    c.allow_insecure = false;
    c.pubsub.endpoint = "https://pubsub.googleapis.com".into();
    let err = DualPublisher::new(c.clone(), None).err().unwrap();
    assert!(matches!(err, dualpub::DualPubError::InvalidConfig { ref reason } if reason.contains("allowInsecure")), "{err:?}");
    c.mqtt.broker_url = "mqtts://127.0.0.1:8883".into();
    c.pubsub.endpoint = emu.url();
    let err = DualPublisher::new(c, None).err().unwrap();
    assert!(matches!(err, dualpub::DualPubError::InvalidConfig { ref reason } if reason.contains("http://")), "{err:?}");
}

#[test]
fn an_idle_mqtt_connection_hangs_up_and_the_next_location_reconnects() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(dir.path(), None).unwrap();
    let proxy = FaultProxy::start(([127, 0, 0, 1], broker.port).into()).unwrap();
    let emu = emulator();
    let id = device("mosq-idle");
    let sub = subscribers::mqtt("127.0.0.1", broker.port, &format!("device/telemetry/{id}")).unwrap();
    let mut c = TestDevice::new(&id, &emu).mqtt(&proxy.mqtt_url()).migration(mqtt_only()).config();
    c.mqtt.idle_disconnect_secs = 1;
    let p = DualPublisher::new(c, None).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(proxy.open_connections(), 0, "no connection before anything is owed");
    let first = p.send_location(location(0)).unwrap();
    assert!(p.flush(10_000).unwrap().completed);
    // One connection carried it (it may already be hanging up: the idle timer is 1 s and a
    // loaded machine can take that long to get back here).
    assert_eq!(proxy.accepted(), 1);
    // Owing nothing for longer than idleDisconnectSecs: the SDK hangs up.
    let start = std::time::Instant::now();
    while proxy.open_connections() > 0 && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(proxy.open_connections(), 0, "still connected after {:?}", start.elapsed());
    let second = p.send_location(location(1)).unwrap();
    assert!(p.flush(10_000).unwrap().completed);
    assert_eq!(proxy.accepted(), 2, "reconnected for the next location");
    assert!(wait_for_all(&sub.collected, &[first, second], WAIT));
    assert_eq!(p.metrics().unwrap().mqtt.failed, 0, "hanging up is not a failure");
}

#[test]
fn bursts_resume_their_tls_sessions_against_mosquitto() {
    // mosquitto's TLS listener (OpenSSL, TLS 1.3 session tickets on by default) behind a
    // logging proxy; an upload window of 1 s makes MQTT connect again for every burst. A
    // resumed handshake's server flight has no certificate: it is a fraction of the first,
    // full one's size.
    let dir = tempfile::tempdir().unwrap();
    let ca = dualpub_testbed::tls::LocalCa::new();
    let files = ca.write(dir.path()).unwrap();
    let broker = Mosquitto::start(dir.path(), Some(&files)).unwrap();
    let log = dualpub_testbed::packet_log::PacketLog::new();
    let proxy = FaultProxy::start_logged(([127, 0, 0, 1], broker.tls_port.unwrap()).into(), log.clone(), "mqtt").unwrap();
    let emu = emulator();
    let id = device("mosq-resume");
    let sub = subscribers::mqtt("127.0.0.1", broker.port, &format!("device/telemetry/{id}")).unwrap();
    let mut c =
        TestDevice::new(&id, &emu).mqtt(&format!("mqtts://localhost:{}", proxy.port)).migration(mqtt_only()).with(|c| c.upload_window_secs = 1).config();
    c.mqtt.ca_certificates_pem = Some(ca.ca_pem.clone());
    let p = DualPublisher::new(c, None).unwrap();
    let mut ids = Vec::new();
    for n in 0..10 {
        ids.push(p.send_location(location(n)).unwrap());
        assert!(p.flush(20_000).unwrap().completed, "burst {n}");
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(wait_for_all(&sub.collected, &ids, WAIT));
    p.shutdown();
    let tls = dualpub_testbed::radio::TlsFlights::of(&log.entries(), "mqtt");
    eprintln!("mosquitto TLS: {tls:?}");
    assert!(tls.total() >= 10, "a connection per burst: {tls:?}");
    assert!(tls.resumed_share_of_reconnects().is_some_and(|r| r >= 0.9), "at least 90 % of the reconnects resumed: {tls:?}");
}
