//! Hostile config documents: every one is refused (with a reason) or has its bad parts skipped
//! or ignored (with a reason); none panics; the last known good config stays in force. Plus a
//! brief random-mutation fuzz over the parser (cargo-fuzz needs a nightly toolchain, which this
//! machine cannot install; this loop runs in the ordinary suite).

mod common;

use common::*;
use dualpub::{DualPubError, MigrationConfig};
use rand::{Rng, SeedableRng};

/// Documents refused whole.
fn refused() -> Vec<String> {
    let mut v: Vec<String> = [
        "",
        " ",
        "null",
        "true",
        "42",
        "\"config\"",
        "[]",
        "[{}]",
        "{",
        "}",
        "{\"version\": }",
        "{'version': 1}",
        "{\"version\": 1,}",
        "{\"version\": -1}",
        "{\"version\": 1.5}",
        "{\"version\": \"7\"}",
        "{\"version\": 1e30}",
        "{\"version\": 18446744073709551616}",
        "{\"mqttEnabled\": \"true\"}",
        "{\"mqttEnabled\": 1}",
        "{\"pubsubPercentage\": 100.01}",
        "{\"pubsubPercentage\": -1}",
        "{\"pubsubPercentage\": \"50\"}",
        "{\"pubsubPercentage\": NaN}",
        "{\"pubsubPercentage\": Infinity}",
        "{\"pubsubPercentage\": 1e999}",
        "{\"pubsubPercentage\": [50]}",
        "{\"pubsubPercentage\": {}}",
        "{\"pubsubEnabled\": \"null\"}",
        "{\"fallbackToMqtt\": \"no\"}",
        "{\"emergencyMode\": 0}",
        "{\"debugMode\": []}",
        "{\"rollout\": []}",
        "{\"rollout\": \"v1\"}",
        "{\"rollout\": {\"algorithm\": \"md5\"}}",
        "{\"rollout\": {\"algorithm\": \"V1\"}}",
        "{\"rollout\": {\"algorithm\": 1}}",
        "{\"rollout\": {\"salt\": \"\"}}",
        "{\"rollout\": {\"salt\": 5}}",
        "{\"deviceOverrides\": []}",
        "{\"deviceOverrides\": \"d-1\"}",
        "{\"companyOverrides\": 7}",
        "{\"version\": 1, \"version\": 2}",
        "{\"rollout\": {\"salt\": \"a\", \"salt\": \"b\"}}",
        "{\"deviceOverrides\": {\"d\": {\"pubsubEnabled\": true, \"pubsubEnabled\": false}}}",
        "{\"pubsubPercentage\": 50} trailing",
        "\u{feff}{\"version\": 1}",
        "{\"version\": 1}\u{0}",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.push(format!("{{\"rollout\": {{\"salt\": \"{}\"}}}}", "s".repeat(1 << 20)));
    v.push(format!("{{\"x\": \"{}\"}}", "y".repeat(300 * 1024)));
    v.push(format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)));
    v.push(format!("{{\"deviceOverrides\": {}1{}}}", "{\"a\":".repeat(5_000), "}".repeat(5_000)));
    v.push(format!("{{\"rollout\": {{\"salt\": \"{}\"}}}}", "x".repeat(257)));
    v
}

/// Documents applied with parts skipped or ignored: (document, skipped, ignored).
fn partly_applied() -> Vec<(&'static str, usize, usize)> {
    vec![
        (r#"{"version": 5, "deviceOverrides": {"a/b": {"pubsubEnabled": true}, "ok": {"pubsubEnabled": true}}}"#, 1, 0),
        (r#"{"version": 5, "deviceOverrides": {"x": {"pubsubEnabled": "yes"}}}"#, 1, 0),
        (r#"{"version": 5, "deviceOverrides": {"x": {"pubsubPercentage": 500}}}"#, 1, 0),
        (r#"{"version": 5, "deviceOverrides": {"x": []}}"#, 1, 0),
        (r#"{"version": 5, "deviceOverrides": {"D-1": {"mqttEnabled": true}, "d-1": {"mqttEnabled": false}}}"#, 1, 0),
        (r#"{"version": 5, "companyOverrides": {"": {"pubsubEnabled": true}}}"#, 1, 0),
        (r#"{"version": 5, "companyOverrides": {"c#1": {"pubsubEnabled": true}}}"#, 1, 0),
        (r#"{"version": 5, "brokerUrl": "mqtt://attacker.example:1883"}"#, 0, 1),
        (r#"{"version": 5, "pubsubEndpoint": "https://attacker.example"}"#, 0, 1),
        (r#"{"version": 5, "password": "x", "username": "y", "token": "z"}"#, 0, 3),
        (r#"{"version": 5, "dataDir": "/sdcard/steal"}"#, 0, 1),
        (r#"{"version": 5, "mqtt": {"brokerUrl": "mqtt://evil"}, "pubsub": {"endpoint": "http://evil"}}"#, 0, 2),
        (r#"{"version": 5, "allowInsecure": true}"#, 0, 1),
    ]
}

#[test]
fn hostile_documents_are_refused_or_defused_and_the_last_good_config_stays() {
    let emu = emulator();
    let p = TestDevice::new(&device("hostile"), &emu).rollout(25.0).start();
    let good = p.decision().unwrap();
    let refused = refused();
    let partly = partly_applied();
    assert!(refused.len() + partly.len() >= 50, "corpus of {}", refused.len() + partly.len());
    for doc in &refused {
        let shown: String = doc.chars().take(60).collect();
        match p.apply_config_json(doc.clone()) {
            Err(DualPubError::InvalidConfig { reason }) => assert!(!reason.is_empty(), "{shown}"),
            other => panic!("accepted or wrong error for {shown:?}: {other:?}"),
        }
        assert_eq!(p.decision().unwrap(), good, "{shown}");
    }
    let m = p.metrics().unwrap();
    assert_eq!(m.config_rejected.values().sum::<u64>(), refused.len() as u64, "{:?}", m.config_rejected);
    assert!(m.config_rejected.contains_key("malformed") && m.config_rejected.contains_key("too_large"));
    assert!(m.config_rejected.contains_key("duplicate_key") && m.config_rejected.contains_key("invalid_value"));

    for (doc, skipped, ignored) in partly {
        let parsed = MigrationConfig::parse(doc).unwrap_or_else(|e| panic!("{doc}: {e}"));
        assert_eq!((parsed.skipped.len(), parsed.ignored.len()), (skipped, ignored), "{doc}: {parsed:?}");
        assert_eq!(p.apply_config_json(doc.into()).unwrap().config_version, 5);
    }
    let m = p.metrics().unwrap();
    assert_eq!(m.config_rejected["invalid_override"], 7);
    assert_eq!(m.config_rejected["ignored_field"], 9);
    // Endpoints and credentials are where the app put them.
    assert!(p.debug_report().unwrap().contains("\"configVersion\":5"));
}

#[test]
fn random_mutations_of_real_documents_never_panic() {
    let seeds = [
        r#"{"version": 42, "mqttEnabled": true, "pubsubEnabled": true, "pubsubPercentage": 25.5, "fallbackToMqtt": true, "debugMode": false, "emergencyMode": false, "rollout": {"salt": "pubsub-migration", "algorithm": "v1"}, "deviceOverrides": {"d-1": {"pubsubEnabled": true}}, "companyOverrides": {"c-9": {"pubsubPercentage": 100}}}"#,
        r#"{"version": 1, "rollout": {"algorithm": "crc32"}, "deviceOverrides": {"D-2": {"mqttEnabled": false, "pubsubPercentage": 0.01}}}"#,
    ];
    let alphabet: Vec<char> = "{}[]\":,0123456789.-+eEtruefalsnu \\\u{0}\u{ff}é🚀abcdxyz".chars().collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
    let (mut ok, mut refused) = (0, 0);
    for i in 0..20_000 {
        let mut doc: Vec<char> = seeds[i % seeds.len()].chars().collect();
        for _ in 0..rng.random_range(1..8) {
            let at = rng.random_range(0..=doc.len());
            match rng.random_range(0..4) {
                0 if at < doc.len() => {
                    doc.remove(at);
                }
                1 if at < doc.len() => doc[at] = alphabet[rng.random_range(0..alphabet.len())],
                2 => doc.insert(at, alphabet[rng.random_range(0..alphabet.len())]),
                _ => {
                    let from = rng.random_range(0..doc.len());
                    let to = (from + rng.random_range(0..20)).min(doc.len());
                    let chunk: Vec<char> = doc[from..to].to_vec();
                    let at = at.min(doc.len());
                    doc.splice(at..at, chunk);
                }
            }
        }
        let text: String = doc.into_iter().collect();
        match std::panic::catch_unwind(|| MigrationConfig::parse(&text)) {
            Ok(Ok(p)) => {
                // Whatever parses must be valid and survive a round trip.
                p.config.validate().unwrap();
                assert_eq!(MigrationConfig::from_json(&p.config.to_json().to_string()).unwrap(), p.config, "{text}");
                ok += 1;
            }
            Ok(Err(_)) => refused += 1,
            Err(_) => panic!("the parser panicked on {text:?}"),
        }
    }
    eprintln!("fuzz: 20000 mutated documents, {ok} parsed, {refused} refused, 0 panics");
    assert!(ok > 0 && refused > 0);
}
