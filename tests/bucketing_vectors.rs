//! The SDK's bucketing against `tests/vectors/bucketing.json`, which an independent Python
//! implementation writes (`tests/vectors/generate_bucketing.py`; regenerate with it, never
//! from this crate).

use dualpub::rollout::{bucket, decide, in_rollout, RolloutAlgorithm};
use dualpub::MigrationConfig;
use serde_json::Value;
use std::collections::BTreeSet;

struct Vector {
    device_id: String,
    salt: String,
    algorithm: RolloutAlgorithm,
    bucket: u32,
    /// `(percentage key as written in the JSON, percentage, expected Pub/Sub on)`.
    pubsub: Vec<(String, f64, bool)>,
}

impl Vector {
    fn name(&self) -> String {
        format!("{}/{}/{:?}", self.algorithm.as_str(), self.salt, self.device_id)
    }
}

fn load() -> (Vec<(String, f64)>, Vec<Vector>) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/bucketing.json");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    let doc: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {path}: {e}"));

    let percentages: Vec<(String, f64)> = doc["percentages"]
        .as_array()
        .expect("`percentages` is an array")
        .iter()
        .map(|p| (p.to_string(), p.as_f64().expect("percentage is a number")))
        .collect();

    let vectors = doc["vectors"]
        .as_array()
        .expect("`vectors` is an array")
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let s = |field: &str| -> String { v[field].as_str().unwrap_or_else(|| panic!("vector {i}: `{field}` is not a string")).to_string() };
            let alg_name = s("algorithm");
            let algorithm = RolloutAlgorithm::parse(&alg_name).unwrap_or_else(|| panic!("vector {i}: unknown algorithm {alg_name:?}"));
            let expected_bucket = v["bucket"].as_u64().unwrap_or_else(|| panic!("vector {i}: `bucket` is not a u64"));
            let map = v["pubsub"].as_object().unwrap_or_else(|| panic!("vector {i}: `pubsub` is not an object"));
            let pubsub = percentages
                .iter()
                .map(|(key, p)| {
                    let on = map.get(key).and_then(Value::as_bool).unwrap_or_else(|| panic!("vector {i}: `pubsub` has no boolean for percentage {key}"));
                    (key.clone(), *p, on)
                })
                .collect();
            assert_eq!(map.len(), percentages.len(), "vector {i}: `pubsub` has extra keys: {map:?}");
            Vector { device_id: s("deviceId"), salt: s("salt"), algorithm, bucket: u32::try_from(expected_bucket).expect("bucket fits u32"), pubsub }
        })
        .collect();
    (percentages, vectors)
}

#[test]
fn the_vectors_cover_what_they_should() {
    let (percentages, vectors) = load();
    assert!(vectors.len() >= 200, "only {} vectors", vectors.len());

    let algorithms: BTreeSet<&str> = vectors.iter().map(|v| v.algorithm.as_str()).collect();
    assert_eq!(algorithms, BTreeSet::from(["crc32", "v1"]), "both algorithms present");

    let keys: Vec<&str> = percentages.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["0", "0.01", "1", "25", "50", "99.99", "100"], "every percentage present");
    for v in &vectors {
        let vk: Vec<&str> = v.pubsub.iter().map(|(k, _, _)| k.as_str()).collect();
        assert_eq!(vk, keys, "{}: percentages", v.name());
    }
}

#[test]
fn buckets_match_the_independent_implementation() {
    let (_, vectors) = load();
    let mut failures = Vec::new();
    for v in &vectors {
        let got = bucket(v.algorithm, &v.salt, &v.device_id);
        if got != v.bucket {
            failures.push(format!("{}: bucket {got}, expected {}", v.name(), v.bucket));
        }
    }
    assert!(failures.is_empty(), "{} of {} vectors differ:\n{}", failures.len(), vectors.len(), failures.join("\n"));
}

#[test]
fn in_rollout_matches_the_independent_implementation() {
    let (_, vectors) = load();
    let mut failures = Vec::new();
    for v in &vectors {
        for (key, p, expected) in &v.pubsub {
            let got = in_rollout(v.algorithm, v.bucket, *p);
            if got != *expected {
                failures.push(format!("{} (bucket {}) at {key}%: in_rollout {got}, expected {expected}", v.name(), v.bucket));
            }
        }
    }
    assert!(failures.is_empty(), "{} mismatches:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn decide_agrees_with_the_vectors() {
    let (_, vectors) = load();
    let mut failures = Vec::new();
    let mut checked = 0;
    for v in vectors.iter().filter(|v| v.algorithm == RolloutAlgorithm::V1) {
        for (key, p, expected) in &v.pubsub {
            let cfg = MigrationConfig {
                pubsub_enabled: true,
                pubsub_percentage: *p,
                rollout_salt: v.salt.clone(),
                rollout_algorithm: v.algorithm,
                ..Default::default()
            };
            let d = decide(&cfg, &v.device_id, None);
            checked += 1;
            if d.pubsub_enabled != *expected || d.bucket != v.bucket {
                failures.push(format!(
                    "{} at {key}%: decide gave pubsub {} bucket {}, expected pubsub {expected} bucket {}",
                    v.name(),
                    d.pubsub_enabled,
                    d.bucket,
                    v.bucket
                ));
            }
        }
    }
    assert!(checked > 0, "no v1 vectors");
    assert!(failures.is_empty(), "{} mismatches:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn known_values_are_in_the_vectors() {
    let (_, vectors) = load();
    let find = |alg: RolloutAlgorithm, salt: &str, id: &str| {
        vectors
            .iter()
            .find(|v| v.algorithm == alg && v.salt == salt && v.device_id == id)
            .unwrap_or_else(|| panic!("no vector for {}/{salt}/{id}", alg.as_str()))
            .bucket
    };
    assert_eq!(find(RolloutAlgorithm::V1, "pubsub-migration", "d-1"), 648);
    assert_eq!(find(RolloutAlgorithm::V1, "pubsub-migration", "demo-device-0"), 8856);
    assert_eq!(find(RolloutAlgorithm::Crc32, "pubsub-migration", "d-1"), 43);
}

#[test]
fn the_device_id_rules_agree_with_the_independent_implementation() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/bucketing.json");
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut seen = BTreeSet::new();
    let mut failures = Vec::new();
    for v in doc["vectors"].as_array().unwrap() {
        let id = v["deviceId"].as_str().unwrap();
        let valid = v["validDeviceId"].as_bool().unwrap_or_else(|| panic!("{id:?}: no validDeviceId"));
        if seen.insert(id.to_string()) && dualpub::location::validate_id("device id", id).is_ok() != valid {
            failures.push(format!("{id:?}: vectors say valid={valid}, the SDK {:?}", dualpub::location::validate_id("device id", id)));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    // NFC and NFD spellings of one name would be two devices in two buckets: only NFC passes.
    assert!(dualpub::location::validate_id("device id", "caf\u{e9}").is_ok());
    assert!(dualpub::location::validate_id("device id", "cafe\u{301}").is_err());
}
