//! The exported API's contract: typed errors for bad input, use after close, token providers
//! that work, throw, panic or hang.

mod common;

use common::*;
use dualpub::{AccessToken, DualPubError, DualPublisher, Location, TokenError, TokenProvider};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

fn far_future_ms() -> i64 {
    dualpub::clock::now_ms() + 3_600_000
}

/// Hands out the tokens of a script, one per call; an empty script throws.
struct ScriptedTokens {
    script: Mutex<Vec<Result<String, String>>>,
    calls: AtomicUsize,
}

impl ScriptedTokens {
    fn new(script: Vec<Result<&str, &str>>) -> Arc<Self> {
        let script = script.into_iter().rev().map(|r| r.map(String::from).map_err(String::from)).collect();
        Arc::new(ScriptedTokens { script: Mutex::new(script), calls: AtomicUsize::new(0) })
    }
}

impl TokenProvider for ScriptedTokens {
    fn fetch_token(&self) -> Result<AccessToken, TokenError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        match self.script.lock().unwrap().pop() {
            Some(Ok(token)) => Ok(AccessToken { token: dualpub::Secret::new(token), expires_at_ms: far_future_ms() }),
            Some(Err(reason)) => Err(TokenError::Unavailable { reason }),
            None => Err(TokenError::Unavailable { reason: "script exhausted".into() }),
        }
    }
}

#[test]
fn the_token_is_cached_sent_and_refreshed_after_a_401() {
    let emu = emulator_with(EmulatorOptions { bearer_token: Some("token-1".into()), ..Default::default() });
    let tokens = ScriptedTokens::new(vec![Ok("token-1"), Ok("token-2")]);
    let id = device("token-refresh");
    let pubsub = pubsub_subscriber_with_token(&emu, "token-refresh", "token-1");
    let p = TestDevice::new(&id, &emu).rollout(100.0).tokens(tokens.clone()).start();
    let first: Vec<String> = (0..5).map(|n| p.send_location(location(n)).unwrap()).collect();
    let r = p.flush(WAIT.as_millis() as u64).unwrap();
    assert!(r.completed, "{r:?} {}", p.debug_report().unwrap());
    let second: Vec<String> = (5..10).map(|n| p.send_location(location(n)).unwrap()).collect();
    let r = p.flush(WAIT.as_millis() as u64).unwrap();
    assert!(r.completed, "{r:?} {}", p.debug_report().unwrap());
    assert_eq!(tokens.calls.load(Ordering::SeqCst), 1, "a valid token is cached, not fetched per request");

    // The server now wants another token: the SDK gets a 401, asks the provider again, retries.
    emu.emulator().set_bearer_token(Some("token-2".into()));
    let third: Vec<String> = (10..15).map(|n| p.send_location(location(n)).unwrap()).collect();
    let r = p.flush(WAIT.as_millis() as u64).unwrap();
    assert!(r.completed, "{r:?} {}", p.debug_report().unwrap());
    assert_eq!(tokens.calls.load(Ordering::SeqCst), 2);
    emu.emulator().set_bearer_token(None);
    let all: Vec<String> = first.into_iter().chain(second).chain(third).collect();
    assert!(wait_for_all(&pubsub.collected, &all, WAIT));
    assert!(p.metrics().unwrap().pubsub.retries >= 1);
}

fn pubsub_subscriber_with_token(emu: &EmulatorHandle, name: &str, token: &str) -> Subscriber {
    // The verifier pulls without a token: lift the check while it subscribes.
    emu.emulator().set_bearer_token(None);
    let s = pubsub_subscriber(emu, name);
    emu.emulator().set_bearer_token(Some(token.into()));
    s
}

#[test]
fn a_provider_that_throws_delays_pubsub_but_crashes_nothing() {
    let emu = emulator();
    let tokens = ScriptedTokens::new(vec![Err("offline"), Err("still offline"), Ok("t")]);
    let id = device("token-throws");
    let mqtt = mqtt_subscriber(&id);
    let p = TestDevice::new(&id, &emu).rollout(100.0).tokens(tokens.clone()).start();
    let ids: Vec<String> = (0..3).map(|n| p.send_location(location(n)).unwrap()).collect();
    let r = p.flush(WAIT.as_millis() as u64).unwrap();
    assert!(r.completed, "{r:?}");
    assert_eq!(tokens.calls.load(Ordering::SeqCst), 3);
    assert!(wait_for_all(&mqtt.collected, &ids, WAIT));
    assert_eq!(p.metrics().unwrap().pubsub.retries, 2);
}

struct PanickingTokens;
impl TokenProvider for PanickingTokens {
    fn fetch_token(&self) -> Result<AccessToken, TokenError> {
        panic!("bug in the app's token code")
    }
}

#[test]
fn a_provider_that_panics_is_contained() {
    let emu = emulator();
    let id = device("token-panics");
    let p = TestDevice::new(&id, &emu).rollout(100.0).tokens(Arc::new(PanickingTokens)).start();
    p.send_location(location(0)).unwrap();
    let r = p.flush(3_000).unwrap();
    assert_eq!((r.completed, r.pending_mqtt, r.pending_pubsub), (false, 0, 1), "MQTT delivered, Pub/Sub still owed");
    assert!(p.metrics().unwrap().pubsub.retries >= 1);
    // The publisher still works.
    p.send_location(location(1)).unwrap();
    assert!(p.flush(5_000).unwrap().pending_mqtt == 0);
}

struct SlowTokens(Duration);
impl TokenProvider for SlowTokens {
    fn fetch_token(&self) -> Result<AccessToken, TokenError> {
        std::thread::sleep(self.0);
        Ok(AccessToken { token: dualpub::Secret::new("slow".into()), expires_at_ms: far_future_ms() })
    }
}

#[test]
fn a_slow_provider_never_blocks_the_caller_or_mqtt() {
    let emu = emulator();
    let id = device("token-slow");
    let p = TestDevice::new(&id, &emu).rollout(100.0).tokens(Arc::new(SlowTokens(Duration::from_secs(4)))).start();
    let start = std::time::Instant::now();
    for n in 0..100 {
        p.send_location(location(n)).unwrap();
    }
    assert!(start.elapsed() < Duration::from_secs(1), "sendLocation waited for the provider");
    let early = p.flush(2_500).unwrap();
    assert_eq!(early.pending_mqtt, 0, "MQTT is not held up by Pub/Sub's token");
    assert!(p.flush(WAIT.as_millis() as u64).unwrap().completed);
}

#[test]
fn bad_locations_are_typed_errors_counted_by_reason_and_queue_nothing() {
    let emu = emulator();
    let id = device("bad-input");
    let p = TestDevice::new(&id, &emu).rollout(100.0).start();
    let cases: Vec<(Location, &str)> = vec![
        (Location { latitude: f64::NAN, ..location(0) }, "invalid_latitude"),
        (Location { latitude: 91.0, ..location(0) }, "invalid_latitude"),
        (Location { longitude: 181.0, ..location(0) }, "invalid_longitude"),
        (Location { accuracy: Some(-1.0), ..location(0) }, "invalid_accuracy"),
        (Location { speed: Some(f64::INFINITY), ..location(0) }, "invalid_speed"),
        (Location { bearing: Some(360.0), ..location(0) }, "invalid_bearing"),
        (Location { battery: Some(2.0), ..location(0) }, "invalid_battery"),
        (Location { timestamp_ms: -5, ..location(0) }, "invalid_timestamp"),
        (Location { timestamp_ms: dualpub::location::MAX_TIMESTAMP_MS + 1, ..location(0) }, "timestamp_in_future"),
    ];
    for (loc, reason) in &cases {
        let e = p.send_location(loc.clone()).unwrap_err();
        assert!(matches!(e, DualPubError::InvalidLocation { .. }), "{reason}: {e:?}");
    }
    // A batch with one bad location is refused whole, naming the index.
    let mut batch: Vec<Location> = (0..5).map(location).collect();
    batch[3].latitude = -100.0;
    let e = p.send_locations(batch).unwrap_err();
    assert!(matches!(&e, DualPubError::InvalidLocation { reason } if reason.starts_with("location 3:")), "{e:?}");
    let m = p.metrics().unwrap();
    assert_eq!(m.accepted, 0);
    assert_eq!(m.rejected["invalid_latitude"], 3);
    assert_eq!(m.rejected["timestamp_in_future"], 1);
    assert_eq!(m.rejected.values().sum::<u64>(), cases.len() as u64 + 1);
    assert_eq!((m.mqtt.queue_depth, m.pubsub.queue_depth), (0, 0));
}

#[test]
fn a_gnss_fix_on_a_phone_whose_clock_is_a_day_behind_is_delivered_and_counted() {
    // The phone's clock 25 h behind the time the fix carries: accepted, delivered, counted as
    // clock skew (a unit mistake, past 2100, is still refused).
    let emu = emulator();
    let id = device("api-clock-skew");
    let mqtt = mqtt_subscriber(&id);
    let p = TestDevice::new(&id, &emu).real_time().start();
    let ahead = Location { timestamp_ms: dualpub::clock::now_ms() + 25 * 3_600_000, ..location(0) };
    let event_id = p.send_location(ahead).expect("accepted");
    assert!(wait_for_all(&mqtt.collected, std::slice::from_ref(&event_id), Duration::from_secs(20)));
    let m = p.metrics().unwrap();
    assert_eq!((m.accepted, m.rejected.len()), (1, 0));
    assert!(p.metrics_prometheus().unwrap().contains("dualpub_clock_skew_total 1"), "counted as clock skew");
    p.shutdown();
}

#[test]
fn bad_ids_and_configs_are_refused_at_construction() {
    let emu = emulator();
    for bad in ["", "a/b", "fleet/+", "x#", "tab\tid", &"x".repeat(129)] {
        let e = TestDevice::new(bad, &emu).try_start().err().unwrap();
        assert!(matches!(e, DualPubError::InvalidId { .. }), "{bad:?}: {e:?}");
    }
    let mut c = TestDevice::new(&device("bad-config"), &emu).config();
    c.company_id = Some("c/1".into());
    assert!(matches!(DualPublisher::new(c.clone(), None).err().unwrap(), DualPubError::InvalidId { .. }));
    c.company_id = None;
    for mutate in [
        |c: &mut dualpub::SdkConfig| c.mqtt.broker_url = "not a url".into(),
        |c: &mut dualpub::SdkConfig| c.mqtt.broker_url = "ws://127.0.0.1:1".into(),
        |c: &mut dualpub::SdkConfig| c.mqtt.keep_alive_secs = 0,
        |c: &mut dualpub::SdkConfig| c.mqtt.topic_template = "devices/#".into(),
        |c: &mut dualpub::SdkConfig| c.mqtt.ca_certificates_pem = Some("-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n".into()),
        |c: &mut dualpub::SdkConfig| c.pubsub.ca_certificates_pem = Some("no certificate here".into()),
        |c: &mut dualpub::SdkConfig| c.pubsub.project = "".into(),
        |c: &mut dualpub::SdkConfig| c.pubsub.topic = "a/b".into(),
        |c: &mut dualpub::SdkConfig| c.pubsub.max_batch_messages = 1001,
        |c: &mut dualpub::SdkConfig| c.pubsub.max_batch_bytes = 20_000_000,
        |c: &mut dualpub::SdkConfig| c.data_dir = "".into(),
        |c: &mut dualpub::SdkConfig| c.migration.as_mut().unwrap().pubsub_percentage = f64::NAN,
    ] {
        let mut bad = c.clone();
        mutate(&mut bad);
        match DualPublisher::new(bad.clone(), None) {
            Err(DualPubError::InvalidConfig { .. }) => {}
            Err(e) => panic!("{bad:?}: {e:?}"),
            Ok(_) => panic!("accepted {bad:?}"),
        }
    }
}

#[test]
fn every_call_after_close_is_a_closed_error() {
    let emu = emulator();
    let p = TestDevice::new(&device("closed"), &emu).start();
    p.shutdown();
    p.shutdown();
    assert!(matches!(p.send_location(location(0)), Err(DualPubError::Closed)));
    assert!(matches!(p.send_locations(vec![location(0)]), Err(DualPubError::Closed)));
    assert!(matches!(p.apply_config(rollout(5.0)), Err(DualPubError::Closed)));
    assert!(matches!(p.apply_config_json("{}".into()), Err(DualPubError::Closed)));
    assert!(matches!(p.decision(), Err(DualPubError::Closed)));
    assert!(matches!(p.flush(10), Err(DualPubError::Closed)));
    assert!(matches!(p.metrics(), Err(DualPubError::Closed)));
    assert!(matches!(p.dead_letters(), Err(DualPubError::Closed)));
}

#[test]
fn bucketing_helpers_agree_with_the_decision() {
    use dualpub::ffi::{rollout_bucket, rollout_in_cohort};
    use dualpub::RolloutAlgorithm;
    let emu = emulator();
    for n in 0..20 {
        let id = format!("cohort-{n}");
        let p = TestDevice::new(&id, &emu).rollout(50.0).start();
        let d = p.decision().unwrap();
        assert_eq!(d.bucket, rollout_bucket(id.clone(), "pubsub-migration".into(), RolloutAlgorithm::V1));
        assert_eq!(d.pubsub_enabled, rollout_in_cohort(id, "pubsub-migration".into(), RolloutAlgorithm::V1, 50.0));
        p.shutdown();
    }
}

#[test]
fn paused_collection_refuses_typed_and_a_purge_leaves_nothing_to_send() {
    let emu = emulator();
    emu.emulator().faults().set(dualpub_emulator::FaultPlan { reject_data_containing: Some("4242.5".into()), ..Default::default() });
    let id = device("pause-purge");
    let (mqtt, pubsub, reports_sub) = (mqtt_subscriber(&id), pubsub_subscriber(&emu, "pause-purge"), mqtt_report_subscriber(&id));
    let p = TestDevice::new(&id, &emu).rollout(100.0).start();
    // One dead letter: Pub/Sub refuses this location as invalid.
    let mut poison = location(0);
    poison.altitude = Some(4242.5);
    p.send_location(poison).unwrap();
    assert!(p.flush(20_000).unwrap().completed);
    assert_eq!(p.dead_letters().unwrap().len(), 1);
    // 25 locations queued offline, then the user opts out: paused, then purged.
    p.set_network_available(false).unwrap();
    let purged: Vec<String> = (1..=25).map(|n| p.send_location(location(n)).unwrap()).collect();
    p.set_collection_enabled(false).unwrap();
    assert!(!p.collection_enabled().unwrap());
    assert!(matches!(p.send_location(location(99)), Err(DualPubError::CollectionPaused)));
    assert!(matches!(p.send_locations(vec![location(98)]), Err(DualPubError::CollectionPaused)));
    assert_eq!(p.purge().unwrap(), dualpub::PurgeReport { locations: 25, dead_letters: 1 });
    assert!(p.dead_letters().unwrap().is_empty());
    let m = p.metrics().unwrap();
    assert_eq!((m.mqtt.queue_depth, m.pubsub.queue_depth, m.accepted), (0, 0, 26), "refused while paused: not accepted");
    // Back on: only what is sent from now on travels.
    p.set_network_available(true).unwrap();
    p.set_collection_enabled(true).unwrap();
    let after: Vec<String> = (100..103).map(|n| p.send_location(location(n)).unwrap()).collect();
    assert!(p.flush(20_000).unwrap().completed);
    assert!(wait_for_all(&mqtt.collected, &after, WAIT) && wait_for_all(&pubsub.collected, &after, WAIT));
    std::thread::sleep(Duration::from_millis(500));
    for sub in [&mqtt, &pubsub] {
        let got = event_ids(&sub.collected);
        assert!(purged.iter().all(|e| !got.contains(e)), "a purged location was sent: {got:?}");
    }
    // The shutdown report counts the purge.
    p.shutdown();
    assert!(reports_sub.collected.wait_until(WAIT, |c| !c.is_empty()), "no shutdown report");
    let last = reports(&reports_sub.collected).pop().unwrap();
    assert_eq!(last["counters"]["dropped"]["purged"].as_u64(), Some(25), "{}", last["counters"]);
    assert_eq!(last["counters"]["dropped"]["dead_letters_purged"].as_u64(), Some(1), "{}", last["counters"]);
    // Started paused (the user's stored choice): refused from the first location.
    let q = TestDevice::new(&device("start-paused"), &emu).with(|c| c.collection_enabled = false).start();
    assert!(matches!(q.send_location(location(0)), Err(DualPubError::CollectionPaused)));
    q.set_collection_enabled(true).unwrap();
    q.send_location(location(0)).unwrap();
}
