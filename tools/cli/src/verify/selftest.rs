//! `dualpub verify --selftest`: the verifier must name exactly what was done to a pipeline. It
//! runs `dualpub demo --verify` (this very binary) with the emulator told to acknowledge and
//! then discard 37 locations, deliver 50 twice and hold 20 back for 6 s on Pub/Sub, and checks
//! the verifier's findings against the emulator's own log of the messages it hit. A control
//! comparison (MQTT's stream checked against itself) must find nothing. A second run sends a
//! cohort to Pub/Sub only and has the emulator discard the last location of a few devices after
//! acknowledging it: no pipeline has them, and only the devices' reports say they were owed.

use super::engine::{Pipeline, Thresholds, Verifier};
use std::collections::BTreeSet;

/// What the selftest injects on Pub/Sub.
const DISCARDED: usize = 37;
const DUPLICATED: usize = 50;
const DELAYED: usize = 20;
const DELAY_MS: u64 = 6_000;

/// Devices whose last location the second run discards (of 20, 30 locations each).
const TAIL_DEVICES: [u32; 4] = [2, 7, 11, 19];
const TAIL_LOCATIONS: u64 = 30;

/// The eventIds a fault-log list names.
fn ids(hits: &serde_json::Value) -> BTreeSet<String> {
    hits.as_array().into_iter().flatten().filter_map(|h| h["eventId"].as_str().map(String::from)).collect()
}

/// One check: prints it and says whether it held.
fn check(what: &str, ok: bool, detail: String) -> bool {
    println!("  {} {what}{}", if ok { "ok  " } else { "FAIL" }, if ok { String::new() } else { format!(": {detail}") });
    ok
}

/// Runs the selftest; returns the exit code (0: every check held).
pub fn run() -> i32 {
    match run_checks() {
        Ok(true) => {
            println!("dualpub verify --selftest: PASS");
            0
        }
        Ok(false) => {
            println!("dualpub verify --selftest: FAIL");
            1
        }
        Err(e) => {
            eprintln!("dualpub verify --selftest: {e}");
            2
        }
    }
}

/// Runs `dualpub demo --verify --json` with these arguments and Pub/Sub faults; its summary.
fn demo(args: &[&str], faults: &serde_json::Value, capture: &std::path::Path) -> Result<serde_json::Value, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let out = std::process::Command::new(exe)
        .arg("demo")
        .args(args)
        .args(["--verify", "--json", "--capture"])
        .arg(capture)
        .args(["--pubsub-faults", &faults.to_string()])
        .env("RUST_LOG", "error")
        .output()
        .map_err(|e| format!("running the demo: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.trim().lines().last().unwrap_or_default())
        .map_err(|e| format!("the demo's summary: {e}\n{}", String::from_utf8_lossy(&out.stderr)))
}

fn run_checks() -> Result<bool, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let capture = dir.path().join("capture.jsonl");
    let faults = serde_json::json!({
        "faultTopic": "location-updates",
        "discardAfterAckNext": DISCARDED, "duplicateNext": DUPLICATED, "delayNext": DELAYED, "delayMs": DELAY_MS,
    });
    println!("dualpub verify --selftest: a 40-device demo, all on both pipelines; Pub/Sub discards {DISCARDED} after acknowledging them, delivers {DUPLICATED} twice, holds {DELAYED} back {DELAY_MS} ms");
    let summary = demo(&["--devices", "40", "--locations-per-device", "50", "--rollout", "100"], &faults, &capture)?;
    let (v, injected) = (&summary["verify"], &summary["injected"]);
    let (discarded, duplicated, delayed) = (ids(&injected["discarded"]), ids(&injected["duplicated"]), ids(&injected["delayed"]));
    let missing = v["missing"].as_array().cloned().unwrap_or_default();
    let alarm = |m: &serde_json::Value| m["cause"] == "acked_not_received" && m["pipeline"] == "pubsub";
    let named: BTreeSet<String> = missing.iter().filter(|m| alarm(m)).filter_map(|m| m["eventId"].as_str().map(String::from)).collect();
    let list = |key: &str| -> BTreeSet<String> { v[key]["pubsub"].as_array().into_iter().flatten().filter_map(|e| e.as_str().map(String::from)).collect() };
    let (dups, late) = (list("duplicated"), list("late"));
    let others = missing.iter().filter(|m| !alarm(m)).count();
    let mismatches: u64 = v["steps"].as_array().into_iter().flatten().filter_map(|s| s["mismatches"].as_u64()).sum();
    let mut ok = check(
        &format!("the emulator hit {DISCARDED}/{DUPLICATED}/{DELAYED} messages"),
        (discarded.len(), duplicated.len(), delayed.len()) == (DISCARDED, DUPLICATED, DELAYED),
        format!("{}/{}/{}", discarded.len(), duplicated.len(), delayed.len()),
    );
    ok &= check(&format!("exactly the {DISCARDED} discarded named acked-but-not-received on Pub/Sub"), named == discarded, format!("named {named:?}"));
    ok &= check("nothing else missing", others == 0, format!("{others} other missing"));
    ok &= check(
        &format!("exactly the {DUPLICATED} duplicated listed as duplicates, none a discrepancy"),
        dups == duplicated && mismatches == 0,
        format!("{dups:?}"),
    );
    ok &= check(&format!("exactly the {DELAYED} delayed listed as late"), late == delayed, format!("{late:?}"));
    ok &= check("verdict fail", v["verdict"] == "fail", v["verdict"].to_string());
    ok &= check("control: MQTT checked against itself finds nothing", control(&capture)?, String::new());
    ok &= tails(&dir.path().join("tails.jsonl"))?;
    Ok(ok)
}

/// The second run: a cohort on Pub/Sub only; the emulator discards the last location of
/// [`TAIL_DEVICES`] after acknowledging it. Those, and nothing else, must be named.
fn tails(capture: &std::path::Path) -> Result<bool, String> {
    let targets: Vec<serde_json::Value> =
        TAIL_DEVICES.iter().map(|d| serde_json::json!({"deviceId": format!("demo-device-{d}"), "seq": TAIL_LOCATIONS})).collect();
    let faults = serde_json::json!({"faultTopic": "location-updates", "discardAfterAckWhere": targets});
    println!(
        "dualpub verify --selftest: a 20-device demo on Pub/Sub only; Pub/Sub discards the last location of {} devices after acknowledging it",
        TAIL_DEVICES.len()
    );
    let n = TAIL_LOCATIONS.to_string();
    let summary = demo(&["--devices", "20", "--locations-per-device", &n, "--rollout", "100", "--no-mqtt"], &faults, capture)?;
    let (v, injected) = (&summary["verify"], &summary["injected"]);
    let hit: BTreeSet<(String, u64)> = injected["discarded"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|h| Some((h["location"]["deviceId"].as_str()?.to_string(), h["location"]["seq"].as_u64()?)))
        .collect();
    let missing = v["missing"].as_array().cloned().unwrap_or_default();
    let named: BTreeSet<(String, u64)> = missing
        .iter()
        .filter(|m| m["cause"] == "acked_not_received" && m["pipeline"].is_null())
        .filter_map(|m| Some((m["deviceId"].as_str()?.to_string(), m["seq"].as_u64()?)))
        .collect();
    let mut ok =
        check(&format!("the emulator discarded the last location of {} devices", TAIL_DEVICES.len()), hit.len() == TAIL_DEVICES.len(), format!("{hit:?}"));
    ok &= check(
        "exactly those named acked-but-not-received, seen on no pipeline",
        named == hit && missing.len() == hit.len(),
        format!("named {named:?}, {} missing", missing.len()),
    );
    ok &= check("verdict fail", v["verdict"] == "fail", v["verdict"].to_string());
    Ok(ok)
}

/// Feeds MQTT's messages as both pipelines' and checks the verifier finds no discrepancy.
fn control(capture: &std::path::Path) -> Result<bool, String> {
    let text = std::fs::read_to_string(capture).map_err(|e| format!("{}: {e}", capture.display()))?;
    let mut v = Verifier::new(Thresholds::default());
    for line in text.lines() {
        let l: serde_json::Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
        if let (Some("mqtt"), Some(payload)) = (l["pipeline"].as_str(), l["payload"].as_str()) {
            let at = l["receivedAtMs"].as_i64().unwrap_or(0);
            v.arrival(Pipeline::Mqtt, at, payload.as_bytes());
            v.arrival(Pipeline::Pubsub, at, payload.as_bytes());
        }
    }
    let f = v.finish();
    Ok(f.missing.is_empty() && f.steps.iter().all(|s| s.discrepancies == 0) && f.verdict == "pass")
}
