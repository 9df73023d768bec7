//! Acceptance: a fleet of 1,000 devices follows the config served by the local config
//! server through a whole rollout: 0 → 1 → 10 → 25.5 → 50 → 100 % → emergency → 100 → 10 %.
//! At every step each device fetches (as after a silent push), its decision is checked against
//! an independent computation of the bucketing rule (docs/CONTRACT.md#bucketing, algorithm v1),
//! and it sends one location; at the end the Pub/Sub
//! and MQTT subscribers must have received exactly what the decisions promised.

mod common;

use common::*;
use dualpub::clock::{Clock, ManualClock};
use dualpub::{FetchResult, Publisher};
use dualpub_testbed::config_server::ConfigServer;
use sha2::{Digest, Sha256};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

const FLEET: usize = 1000;
const SALT: &str = "pubsub-migration";
/// (percentage, emergency) of each step.
const STEPS: [(f64, bool); 9] =
    [(0.0, false), (1.0, false), (10.0, false), (25.5, false), (50.0, false), (100.0, false), (100.0, true), (100.0, false), (10.0, false)];

/// The bucketing rule, algorithm v1 (docs/CONTRACT.md#bucketing), written here independently of
/// the SDK.
fn predicted(device_id: &str, percentage: f64, emergency: bool) -> bool {
    if emergency {
        return false;
    }
    let normalized = device_id.trim_matches(|c: char| c.is_ascii_whitespace()).to_ascii_lowercase();
    let digest = Sha256::digest(format!("{SALT}:{normalized}").as_bytes());
    let bucket = u64::from_be_bytes(digest[..8].try_into().unwrap()) % 10_000;
    bucket < (percentage * 100.0).round() as u64
}

fn document(version: usize, percentage: f64, emergency: bool) -> String {
    serde_json::json!({
        "version": version, "mqttEnabled": true, "pubsubEnabled": true, "pubsubPercentage": percentage,
        "fallbackToMqtt": true, "emergencyMode": emergency, "rollout": {"salt": SALT, "algorithm": "v1"}
    })
    .to_string()
}

/// Runs `f` for every device on a few threads; returns the results in fleet order.
fn each<T: Send>(fleet: &[(String, Publisher)], f: impl Fn(&str, &Publisher) -> T + Sync) -> Vec<T> {
    let chunk = fleet.len().div_ceil(8);
    std::thread::scope(|s| {
        let handles: Vec<_> = fleet.chunks(chunk).map(|part| s.spawn(|| part.iter().map(|(id, p)| f(id, p)).collect::<Vec<T>>())).collect();
        handles.into_iter().flat_map(|h| h.join().expect("worker")).collect()
    })
}

#[test]
fn a_thousand_devices_follow_the_rollout_and_the_rollback_exactly() {
    let (tmp, emu) = (tempfile::tempdir().unwrap(), emulator());
    let file = tmp.path().join("config.json");
    std::fs::write(&file, document(1, STEPS[0].0, STEPS[0].1)).unwrap();
    let server = ConfigServer::start(&file, 0).unwrap();
    let prefix = format!("ramp-{}", std::process::id());
    let mqtt = mqtt_subscriber("+");
    let pubsub = pubsub_subscriber(&emu, "ramp-verify");

    // The fleet's clock: a device whose start-up fetch failed under the load of 1,000 at once
    // sits in backoff; the test then moves time past it instead of sleeping.
    let clock = Arc::new(ManualClock::new(dualpub::clock::now_ms()));
    let fleet: Vec<(String, Publisher)> = (0..FLEET)
        .map(|i| {
            let id = format!("{prefix}-{i}");
            // Real time: each step's locations leave under that step's decision. With a window,
            // a step that turns Pub/Sub off releases the Pub/Sub copies still waiting for the
            // burst (docs/CONTRACT.md#per-transport-state), which this test would count missing.
            let mut c = TestDevice::new(&id, &emu).real_time().config();
            c.company_id = None;
            c.migration = None;
            c.remote_config_url = Some(server.url());
            c.data_dir = tmp.path().join(&id).to_string_lossy().into_owned();
            (id.clone(), Publisher::with_clock(c, None, clock.clone()).unwrap_or_else(|e| panic!("{id}: {e}")))
        })
        .collect();

    let mut sent: HashMap<String, (usize, bool)> = HashMap::new(); // eventId -> (step, on Pub/Sub)
    let mut previous: Option<(f64, bool, BTreeSet<String>)> = None;
    for (step, &(percentage, emergency)) in STEPS.iter().enumerate() {
        let version = step + 1;
        server.serve(document(version, percentage, emergency)).unwrap();
        let mut results = each(&fleet, |_, p| p.refresh_config().unwrap());
        let in_backoff: Vec<i64> = results.iter().filter_map(|r| if let FetchResult::InBackoff { until_ms } = r { Some(*until_ms) } else { None }).collect();
        if let Some(&until) = in_backoff.iter().max() {
            eprintln!("step {step}: {} device(s) in backoff after a failed start-up fetch; moving the clock past it", in_backoff.len());
            clock.set_ms(until.max(clock.now_ms()));
            results = each(&fleet, |_, p| match p.config_status().last_fetch_result {
                Some(FetchResult::Applied { .. }) if p.decision().config_version == version as u64 => FetchResult::Applied { version: version as u64 },
                _ => p.refresh_config().unwrap(),
            });
        }
        for r in &results {
            // At step 0 the scheduler's start-up fetch may have got the document first.
            let ok = *r == FetchResult::Applied { version: version as u64 } || (step == 0 && *r == FetchResult::NotModified);
            assert!(ok, "step {step}: {r:?}");
        }
        let decisions = each(&fleet, |_, p| p.decision());
        let mut cohort = BTreeSet::new();
        for ((id, _), d) in fleet.iter().zip(&decisions) {
            assert_eq!(d.config_version, version as u64, "{id}");
            assert_eq!(d.pubsub_enabled, predicted(id, percentage, emergency), "step {step} ({percentage} %, emergency {emergency}): {id}");
            assert!(d.mqtt_enabled, "{id}");
            if d.pubsub_enabled {
                cohort.insert(id.clone());
            }
        }
        if let Some((prev_pct, prev_emergency, prev_cohort)) = &previous {
            if !emergency && !prev_emergency && percentage >= *prev_pct {
                assert!(prev_cohort.is_subset(&cohort), "step {step}: raising the percentage removed a device");
            }
            if !emergency && !prev_emergency && percentage < *prev_pct {
                assert!(cohort.is_subset(prev_cohort) && cohort.len() < prev_cohort.len(), "step {step}: lowering rolls devices back");
            }
        }
        if emergency {
            assert!(cohort.is_empty());
        }
        eprintln!("step {step}: {percentage:>5} % emergency={emergency:<5} -> {} devices on Pub/Sub", cohort.len());

        let ids = each(&fleet, |id, p| (id.to_string(), p.send_location(location(step)).unwrap()));
        for (id, event_id) in ids {
            sent.insert(event_id, (step, cohort.contains(&id)));
        }
        previous = Some((percentage, emergency, cohort));
    }
    let expected_sizes: Vec<usize> = STEPS.iter().map(|&(p, e)| fleet.iter().filter(|(id, _)| predicted(id, p, e)).count()).collect();
    eprintln!("cohort sizes per step: {expected_sizes:?}");

    let reports = each(&fleet, |_, p| p.flush(Duration::from_secs(60)));
    assert!(reports.iter().all(|r| r.completed), "every device drained");
    let want_pubsub: HashSet<&String> = sent.iter().filter(|(_, (_, on))| *on).map(|(e, _)| e).collect();
    let all_ids: Vec<String> = sent.keys().cloned().collect();
    let pubsub_ids: Vec<String> = want_pubsub.iter().map(|e| e.to_string()).collect();
    assert!(wait_for_all(&mqtt.collected, &all_ids, Duration::from_secs(60)), "MQTT got every location");
    assert!(wait_for_all(&pubsub.collected, &pubsub_ids, Duration::from_secs(60)), "Pub/Sub got every cohort location");
    std::thread::sleep(Duration::from_millis(500)); // late arrivals would show here
    let on_pubsub: HashSet<String> = event_ids(&pubsub.collected).into_iter().filter(|e| sent.contains_key(e)).collect();
    let unexpected: Vec<&(usize, bool)> = on_pubsub.iter().filter(|e| !want_pubsub.contains(e)).map(|e| &sent[e]).collect();
    assert!(unexpected.is_empty(), "locations on Pub/Sub that the decision kept off it: {unexpected:?}");
    assert_eq!(on_pubsub.len(), expected_sizes.iter().sum::<usize>());
    assert!(sent.values().filter(|(step, _)| *step == 6).all(|(_, on)| !on), "emergency: nothing to Pub/Sub");
    for (_, p) in &fleet {
        p.close();
    }
}
