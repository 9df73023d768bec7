//! The `dualpub` binary as ops and CI use it.

use std::process::Command;

fn dualpub(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_dualpub")).args(args).output().expect("run dualpub");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn last_json(stdout: &str) -> serde_json::Value {
    serde_json::from_str(stdout.trim().lines().last().expect("output")).expect("last line is JSON")
}

/// The bucketing rule `v1` (docs/CONTRACT.md#bucketing), written out again here so the demo is
/// checked against the rule, not the SDK.
fn v1_in_cohort(id: &str, salt: &str, percentage: f64) -> bool {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("{salt}:{}", id.trim_matches(|c: char| c.is_ascii_whitespace()).to_ascii_lowercase()).as_bytes());
    let bucket = u64::from_be_bytes(digest[..8].try_into().unwrap()) % 10_000;
    (bucket as f64) < (percentage * 100.0).round()
}

#[test]
fn bucket_agrees_with_every_shared_vector() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/vectors/bucketing.json");
    let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let percentages: Vec<f64> = doc["percentages"].as_array().unwrap().iter().map(|p| p.as_f64().unwrap()).collect();
    let vectors = doc["vectors"].as_array().unwrap();
    assert!(vectors.len() >= 200);
    for (i, v) in vectors.iter().enumerate() {
        let pct = percentages[i % percentages.len()];
        let key = doc["percentages"][i % percentages.len()].to_string();
        let (id, salt, alg) = (v["deviceId"].as_str().unwrap(), v["salt"].as_str().unwrap(), v["algorithm"].as_str().unwrap());
        let (code, out, err) = dualpub(&["bucket", "--device-id", id, "--salt", salt, "--algorithm", alg, "--percentage", &pct.to_string()]);
        assert_eq!(code, 0, "{err}");
        let got = last_json(&out);
        assert_eq!(got["bucket"], v["bucket"], "bucket of {id:?} ({alg}, {salt})");
        assert_eq!(got["pubsub"], v["pubsub"][key.as_str()], "cohort of {id:?} at {pct} ({alg}, {salt})");
    }
}

#[test]
fn bucket_without_a_percentage_and_with_a_bad_one() {
    let (code, out, _) = dualpub(&["bucket", "--device-id", "d-1"]);
    assert_eq!(code, 0);
    assert_eq!(last_json(&out), serde_json::json!({"bucket": 648, "pubsub": null}));
    let (code, _, err) = dualpub(&["bucket", "--device-id", "d-1", "--percentage", "101"]);
    assert_eq!(code, 2);
    assert!(err.contains("[0, 100]"), "{err}");
}

#[test]
fn the_acceptance_demo_loses_nothing_and_picks_the_guide_cohort() {
    let (code, out, err) = dualpub(&["demo", "--devices", "200", "--locations-per-device", "20", "--rollout", "25", "--verify", "--json"]);
    assert_eq!(code, 0, "{err}\n{out}");
    assert!(out.contains("dualpub demo summary"), "a summary table comes before the JSON");
    let s = last_json(&out);
    let expected: Vec<String> = (0..200).map(|i| format!("demo-device-{i}")).filter(|id| v1_in_cohort(id, "pubsub-migration", 25.0)).collect();
    let mut got: Vec<String> = s["pubsub_devices"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
    got.sort();
    let mut want = expected.clone();
    want.sort();
    assert_eq!(got, want);
    assert_eq!(s["devices"], 200);
    assert_eq!(s["accepted"], 4000);
    assert_eq!(s["mqtt_delivered"], 4000);
    assert_eq!(s["pubsub_delivered"], 20 * expected.len());
    assert_eq!(s["lost"], 0);
    assert_eq!(s["duplicates"], 0);
    assert_eq!(s["unexpected"], 0);
    assert_eq!(s["same_bytes"], true);
    assert!(s["elapsed_ms"].as_u64().unwrap() > 0);
    // The verifier beside it: zero discrepancies, every count equal to the demo's own
    // independent-subscriber counts, verdict pass (docs/VERIFY.md).
    let v = &s["verify"];
    assert!(out.contains("dualpub verify: PASS"), "the verdict is printed:\n{out}");
    assert_eq!(v["verdict"], "pass", "{v}");
    let [step] = v["steps"].as_array().unwrap().as_slice() else { panic!("one rollout step: {v}") };
    assert_eq!((step["cfg"].as_u64(), step["devices"].as_u64(), step["locations"].as_u64()), (Some(1), Some(200), s["accepted"].as_u64()));
    assert_eq!(step["mqtt"]["received"], s["mqtt_delivered"]);
    assert_eq!(step["pubsub"]["received"], s["pubsub_delivered"]);
    assert_eq!(step["mqtt"]["expected"], s["accepted"]);
    assert_eq!(step["pubsub"]["expected"].as_u64(), Some(20 * expected.len() as u64));
    assert_eq!(step["mqtt"]["duplicates"].as_u64().unwrap() + step["pubsub"]["duplicates"].as_u64().unwrap(), s["duplicates"].as_u64().unwrap());
    assert_eq!((step["discrepancies"].as_u64(), step["unseen"].as_u64(), step["mismatches"].as_u64()), (Some(0), Some(0), Some(0)));
    assert!(v["missing"].as_array().unwrap().is_empty());
    assert_eq!(v["devicesReporting"], 200);
}

#[test]
fn a_new_salt_reshuffles_the_demo_cohort() {
    let (code, out, err) = dualpub(&["demo", "--devices", "40", "--locations-per-device", "2", "--rollout", "50", "--salt", "other-salt", "--json"]);
    assert_eq!(code, 0, "{err}");
    let s = last_json(&out);
    let got: Vec<&str> = s["pubsub_devices"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    let want: Vec<String> = (0..40).map(|i| format!("demo-device-{i}")).filter(|id| v1_in_cohort(id, "other-salt", 50.0)).collect();
    assert_eq!(got.len(), want.len());
    assert!(want.iter().all(|w| got.contains(&w.as_str())));
    assert_eq!(s["lost"], 0);
}

/// `demo --capture`: every message the independent subscribers received, one JSON object per
/// line, in the documented shape for each pipeline.
#[test]
fn the_demo_captures_every_received_message_as_json_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("capture.jsonl");
    let args = ["demo", "--devices", "3", "--locations-per-device", "4", "--rollout", "100", "--capture", file.to_str().unwrap(), "--json"];
    let (code, out, err) = dualpub(&args);
    assert_eq!(code, 0, "{err}\n{out}");
    let s = last_json(&out);
    let text = std::fs::read_to_string(&file).unwrap();
    // The first line is the window the subscribers read in; gap lines (the verifying
    // subscriber's own disconnections) carry no message.
    let window: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    let (from, to) = (window["window"]["fromMs"].as_i64().unwrap(), window["window"]["toMs"].as_i64().unwrap());
    let lines: Vec<&str> = text.lines().skip(1).filter(|l| !l.contains(r#""gap":"#)).collect();
    // One line per received message: everything delivered, plus any duplicates as received.
    let received = ["mqtt_delivered", "pubsub_delivered", "duplicates"].iter().map(|k| s[*k].as_u64().unwrap()).sum::<u64>();
    assert_eq!(lines.len() as u64, received, "{text}");
    let (mut mqtt_ids, mut pubsub_ids) = (std::collections::HashSet::new(), std::collections::HashSet::new());
    for line in &lines {
        let v: serde_json::Value = serde_json::from_str(line).expect("each line is one JSON object");
        let payload: serde_json::Value = serde_json::from_str(v["payload"].as_str().unwrap()).expect("the payload is the location JSON");
        let (event_id, device_id) = (payload["eventId"].as_str().unwrap(), payload["deviceId"].as_str().unwrap());
        assert!(v["receivedAtMs"].as_i64().unwrap() >= payload["timestamp"].as_i64().unwrap(), "arrival after the fix: {line}");
        assert!((from..=to).contains(&v["receivedAtMs"].as_i64().unwrap()), "inside the window {from}..{to}: {line}");
        let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        match v["pipeline"].as_str().unwrap() {
            "mqtt" => {
                assert!(line.starts_with(r#"{"pipeline":"mqtt","topic":""#), "{line}");
                assert_eq!(keys, ["payload", "pipeline", "receivedAtMs", "topic"], "{line}");
                assert_eq!(v["topic"], format!("device/telemetry/{device_id}"));
                mqtt_ids.insert(event_id.to_string());
            }
            "pubsub" => {
                assert!(line.starts_with(r#"{"pipeline":"pubsub","attributes":{"#), "{line}");
                assert_eq!(keys, ["attributes", "orderingKey", "payload", "pipeline", "receivedAtMs"], "{line}");
                assert_eq!(v["attributes"]["eventId"], event_id, "{line}");
                assert_eq!(v["attributes"]["deviceId"], device_id, "{line}");
                assert_eq!(v["orderingKey"], device_id, "{line}");
                pubsub_ids.insert(event_id.to_string());
            }
            other => panic!("pipeline {other:?} in {line}"),
        }
    }
    // At 100 % both pipelines carry all 12 locations, the same eventIds on each.
    assert_eq!((mqtt_ids.len(), pubsub_ids.len()), (12, 12));
    assert_eq!(mqtt_ids, pubsub_ids);
}

#[test]
fn demo_refuses_capture_without_verification() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("capture.jsonl");
    let (code, _, err) = dualpub(&["demo", "--no-verify", "--capture", file.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(err.contains("--capture") && err.contains("--no-verify"), "{err}");
    assert!(!file.exists(), "nothing runs, nothing is written");
}

#[test]
fn demo_refuses_a_bad_rollout() {
    let (code, _, err) = dualpub(&["demo", "--rollout", "150"]);
    assert_ne!(code, 0);
    assert!(err.contains("--rollout"), "{err}");
}

/// `demo --config-url`: the fleet fetches the served document before sending; a second run on
/// the same data directory starts from what the first persisted, even with the server gone.
#[test]
fn the_demo_follows_the_served_config_and_a_second_run_keeps_it_offline() {
    use dualpub_testbed::config_server::ConfigServer;
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("config.json");
    std::fs::write(&file, r#"{"version": 12, "pubsubEnabled": true, "pubsubPercentage": 25.5, "rollout": {"salt": "ramp"}}"#).unwrap();
    let server = ConfigServer::start(&file, 0).unwrap();
    let data = tmp.path().join("fleet");
    let run = |url: &str| {
        let args = ["demo", "--devices", "60", "--locations-per-device", "3", "--config-url", url, "--data-dir", data.to_str().unwrap(), "--json"];
        let (code, out, err) = dualpub(&args);
        assert_eq!(code, 0, "{err}\n{out}");
        last_json(&out)
    };
    let want: Vec<String> = (0..60).map(|i| format!("demo-device-{i}")).filter(|id| v1_in_cohort(id, "ramp", 25.5)).collect();
    let cohort = |s: &serde_json::Value| {
        let mut got: Vec<String> = s["pubsub_devices"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
        got.sort();
        got
    };
    let mut want_sorted = want.clone();
    want_sorted.sort();

    let first = run(&server.url());
    assert_eq!(cohort(&first), want_sorted, "the cohort of the served 25.5 %, not the --rollout default");
    assert_eq!(first["config"]["versions"], serde_json::json!({"12": 60}));
    assert_eq!(first["config"]["sources"], serde_json::json!({"fetched": 60}));
    // Nothing was ever fetched: each device applied the document once (its SDK's start-up
    // fetch or the demo's refresh, whichever came first; the other one, if any, got a 304).
    assert_eq!(first["config"]["fetch_results"]["applied"], 60);
    assert_eq!(first["config"]["fetch_results"].as_object().unwrap().len(), first["config"]["fetch_results"]["not_modified"].as_u64().map_or(1, |_| 2));
    assert_eq!(first["lost"], 0);
    assert_eq!(first["pubsub_delivered"], 3 * want.len());

    // Second run: within the fetch interval the SDK does not fetch at start-up; the demo's
    // refresh sends the persisted ETag and gets a 304.
    let second = run(&server.url());
    assert_eq!(cohort(&second), want_sorted);
    assert_eq!(second["config"]["fetch_results"], serde_json::json!({"not_modified": 60}));
    assert!(server.stats().not_modified >= 60, "{:?}", server.stats());

    // Third run: the server is gone; every device keeps the persisted v12.
    let url = server.url();
    drop(server);
    let third = run(&url);
    assert_eq!(cohort(&third), want_sorted);
    assert_eq!(third["config"]["fetch_results"], serde_json::json!({"failed": 60}));
    assert_eq!(third["config"]["sources"], serde_json::json!({"persisted": 60}));
    assert_eq!(third["lost"], 0);
}

#[test]
fn config_server_serves_the_file_with_an_etag() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("c.json");
    std::fs::write(&file, r#"{"version": 1}"#).unwrap();
    let port = dualpub_testbed::free_port().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_dualpub"))
        .args(["config-server", "--file", file.to_str().unwrap(), "--port", &port.to_string()])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    assert!(dualpub_testbed::wait_for_port(port, std::time::Duration::from_secs(10)));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (status, etag, body) = rt.block_on(async {
        let r = dualpub_testbed::http_client().get(format!("http://127.0.0.1:{port}/dualpub/config.json")).send().await.unwrap();
        let etag = r.headers()["etag"].to_str().unwrap().to_string();
        (r.status().as_u16(), etag, r.text().await.unwrap())
    });
    assert_eq!((status, body.as_str()), (200, r#"{"version": 1}"#));
    let status = rt.block_on(async {
        let c = dualpub_testbed::http_client();
        let r = c.get(format!("http://127.0.0.1:{port}/x")).header("if-none-match", &etag).send().await.unwrap();
        r.status().as_u16()
    });
    assert_eq!(status, 304);
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn the_verifier_selftest_names_exactly_the_injected_faults() {
    let (code, out, err) = dualpub(&["verify", "--selftest"]);
    assert_eq!(code, 0, "{out}\n{err}");
    for line in ["exactly the 37 discarded named acked-but-not-received on Pub/Sub", "exactly the 50 duplicated", "exactly the 20 delayed", "control: MQTT"] {
        assert!(out.contains(&format!("ok   {line}")), "{line}:\n{out}");
    }
}

#[test]
fn fallback_copies_and_devices_outside_the_cohort_are_never_missing() {
    // MQTT off for the Pub/Sub cohort, and Pub/Sub failing for 2 s: its devices fall back to
    // MQTT. In real time: with an upload window the breaker counts one attempt per burst and
    // opens only minutes into an outage (docs/CONTRACT.md#upload-windows).
    let (code, out, err) = dualpub(&[
        "demo",
        "--window-secs",
        "0",
        "--devices",
        "60",
        "--locations-per-device",
        "50",
        "--rollout",
        "25",
        "--no-mqtt",
        "--pubsub-outage-ms",
        "2000",
        "--verify",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}\n{out}");
    let v = &last_json(&out)["verify"];
    let step = &v["steps"][0];
    assert!(step["mqtt"]["fallbacks"].as_u64().unwrap() > 0, "the outage made fallback copies: {step}");
    assert_eq!((step["discrepancies"].as_u64(), step["mqtt"]["missing"].as_u64(), step["pubsub"]["missing"].as_u64()), (Some(0), Some(0), Some(0)), "{step}");
    assert!(v["missing"].as_array().unwrap().is_empty());
}

#[test]
fn a_wiped_data_directory_is_not_a_gap() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let run = |n: &str| {
        let (capture, reports) = (dir.path().join(format!("capture-{n}.jsonl")), dir.path().join(format!("reports-{n}.jsonl")));
        let args = ["demo", "--devices", "5", "--locations-per-device", "20", "--rollout", "100", "--data-dir", data.to_str().unwrap()];
        let (code, out, err) = dualpub(&[&args[..], &["--capture", capture.to_str().unwrap(), "--reports-out", reports.to_str().unwrap()]].concat());
        assert_eq!(code, 0, "{err}\n{out}");
        (std::fs::read_to_string(capture).unwrap(), std::fs::read_to_string(reports).unwrap())
    };
    let first = run("1");
    // The app's data is cleared on one phone: its seq starts again at 1, in a new epoch.
    std::fs::remove_dir_all(data.join("demo-device-0")).unwrap();
    let second = run("2");
    let (capture, reports) = (dir.path().join("capture.jsonl"), dir.path().join("reports.jsonl"));
    std::fs::write(&capture, first.0 + &second.0).unwrap();
    std::fs::write(&reports, first.1 + &second.1).unwrap();
    let (code, out, err) =
        dualpub(&["verify", "--capture", capture.to_str().unwrap(), "--reports", reports.to_str().unwrap(), "--json", "--max-rate-bound", "0.01"]);
    let v = last_json(&out);
    assert_eq!(code, 0, "{err}\n{v}");
    assert_eq!((v["steps"][0]["unseen"].as_u64(), v["steps"][0]["locations"].as_u64()), (Some(0), Some(200)), "{}", v["steps"][0]);
    assert!(v["missing"].as_array().unwrap().is_empty(), "{}", v["missing"]);
}

#[test]
fn verify_reads_both_pipelines_live() {
    use dualpub_testbed::{mosquitto::Mosquitto, subscribers, EmulatorHandle, EmulatorOptions};
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(dir.path(), None).unwrap();
    let emulator = EmulatorHandle::spawn(EmulatorOptions::default()).unwrap();
    for topic in ["location-updates", "migration-reports"] {
        subscribers::create_topic(&emulator.url(), "live", topic).unwrap();
    }
    let (mqtt_url, endpoint) = (broker.url(), emulator.url());
    let verify = std::process::Command::new(env!("CARGO_BIN_EXE_dualpub"))
        .args(["verify", "--mqtt-url", &mqtt_url, "--pubsub-endpoint", &endpoint, "--pubsub-project", "live", "--window-secs", "20", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_secs(3)); // its subscriptions exist before anything is sent
    let (code, out, err) = dualpub(&[
        "demo",
        "--devices",
        "20",
        "--locations-per-device",
        "10",
        "--rollout",
        "100",
        "--mqtt-url",
        &mqtt_url,
        "--pubsub-endpoint",
        &endpoint,
        "--pubsub-project",
        "live",
        "--allow-insecure",
        "--no-verify",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}\n{out}");
    let done = verify.wait_with_output().unwrap();
    let v = last_json(&String::from_utf8_lossy(&done.stdout));
    assert_eq!(done.status.code(), Some(4), "200 clean deliveries on each pipeline are too few for a pass: {v}");
    let step = &v["steps"][0];
    assert_eq!(
        (step["mqtt"]["received"].as_u64(), step["pubsub"]["received"].as_u64(), step["discrepancies"].as_u64()),
        (Some(200), Some(200), Some(0)),
        "{step}"
    );
    assert_eq!(v["verdict"], "insufficient");
    assert_eq!(v["devicesReporting"], 20, "the devices' reports were read live too");
}
