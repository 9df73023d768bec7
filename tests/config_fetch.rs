//! Fetching the migration config from `remoteConfigUrl` against the local config server:
//! ETag and 304, the least interval, failures and their backoff (persisted across restarts),
//! Retry-After, hostile answers, the app in the background, and a 5-minute outage on an
//! injected clock.

mod common;

use common::*;
use dualpub::clock::{Clock, ManualClock};
use dualpub::FetchResult;

/// The documented fetch backoff (README, "Fetching it"): at least 10 s, a ceiling of 30 s
/// doubling with each failure up to an hour.
const BACKOFF_FLOOR_MS: i64 = 10_000;
fn backoff_ceiling_ms(failures: u32) -> i64 {
    (30_000i64 << failures.saturating_sub(1).min(20)).min(3_600_000)
}
use dualpub::{ConfigSource, DecisionReason, DualPublisher, Publisher, SdkConfig};
use dualpub_testbed::config_server::{ConfigServer, Mode};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A config server serving `doc` from a file in `dir`.
fn server(dir: &Path, doc: &str) -> ConfigServer {
    let file = dir.join("config.json");
    std::fs::write(&file, doc).unwrap();
    ConfigServer::start(file, 0).unwrap()
}

/// Serves `doc` from now on (the file is replaced atomically).
fn serve(dir: &Path, doc: impl AsRef<[u8]>) {
    dualpub_testbed::config_server::write_atomically(&dir.join("config.json"), doc.as_ref()).unwrap();
}

/// An SDK config fetching from `url`, with nothing compiled in (defaults: MQTT only).
fn fetching(name: &str, emu: &EmulatorHandle, url: &str, dir: &Path) -> SdkConfig {
    let mut c = TestDevice::new(&device(name), emu).config();
    c.migration = None;
    c.remote_config_url = Some(url.into());
    c.data_dir = dir.join("device").to_string_lossy().into_owned();
    c
}

/// A publisher on a clock the test moves, once its start-up fetch (nothing was ever fetched, so
/// the scheduler fetches at once) has ended.
fn started_on_a_manual_clock(c: SdkConfig) -> (Arc<ManualClock>, Publisher) {
    let clock = Arc::new(ManualClock::new(dualpub_now()));
    let p = Publisher::with_clock(c, None, clock.clone()).unwrap();
    assert!(wait(|| p.config_status().last_fetch_result.is_some()), "the start-up fetch ended");
    (clock, p)
}

const V1: &str = r#"{"version": 1, "pubsubEnabled": true, "pubsubPercentage": 100}"#;

#[test]
fn a_fetched_config_applies_at_once_and_an_unchanged_one_costs_a_304() {
    let (tmp, emu) = (tempfile::tempdir().unwrap(), emulator());
    let srv = server(tmp.path(), V1);
    let c = fetching("fetch-etag", &emu, &srv.url(), tmp.path());
    let p = DualPublisher::new(c.clone(), None).unwrap();
    // Nothing was ever fetched: the scheduler fetches at once, in the background.
    assert!(wait(|| p.config_status().unwrap().last_fetch_result.is_some()));
    let status = p.config_status().unwrap();
    assert_eq!((status.source, status.version), (ConfigSource::Fetched, 1));
    assert_eq!(status.etag.as_deref(), Some(dualpub_testbed::config_server::etag_of(V1.as_bytes()).as_str()));
    assert_eq!(status.last_fetch_result, Some(FetchResult::Applied { version: 1 }));
    assert!(p.decision().unwrap().pubsub_enabled);

    assert_eq!(p.refresh_config().unwrap(), FetchResult::NotModified);
    let s = srv.stats();
    assert!(s.conditional >= 1 && s.not_modified >= 1, "{s:?}");
    assert_eq!(p.metrics().unwrap().config_fetches.get("not_modified"), Some(&1));
    let served = srv.stats().served;

    // A restart within the interval neither refetches nor forgets the ETag.
    p.shutdown();
    drop(p);
    let requests = srv.stats().requests;
    let q = DualPublisher::new(c, None).unwrap();
    std::thread::sleep(Duration::from_millis(300)); // the scheduler's first look
    let status = q.config_status().unwrap();
    assert_eq!((status.source, status.version), (ConfigSource::Persisted, 1));
    assert!(status.next_fetch_at_ms.unwrap() > dualpub_now() + 800_000, "next fetch in ~15 min: {status:?}");
    assert_eq!(srv.stats().requests, requests, "no fetch before the interval is over");
    assert_eq!(q.refresh_config().unwrap(), FetchResult::NotModified, "the persisted ETag is sent");
    assert_eq!(srv.stats().served, served);

    // A new document (new ETag) is applied at once.
    serve(tmp.path(), r#"{"version": 2, "pubsubEnabled": true, "pubsubPercentage": 100, "emergencyMode": true}"#);
    assert_eq!(q.refresh_config().unwrap(), FetchResult::Applied { version: 2 });
    assert_eq!(q.decision().unwrap().reason, DecisionReason::Emergency);
}

#[test]
fn failures_back_off_and_the_backoff_survives_a_restart() {
    let (tmp, emu) = (tempfile::tempdir().unwrap(), emulator());
    let srv = server(tmp.path(), V1);
    let c = fetching("fetch-backoff", &emu, &srv.url(), tmp.path());
    let (clock, p) = started_on_a_manual_clock(c.clone());
    assert_eq!(p.config_status().last_fetch_result, Some(FetchResult::Applied { version: 1 }));

    srv.set_mode(Mode::ServerError);
    let t0 = clock.now_ms();
    assert_eq!(p.refresh_config().unwrap(), FetchResult::Failed { reason: "HTTP 500".into() });
    let until = p.config_status().backoff_until_ms.expect("a backoff");
    assert!((t0 + BACKOFF_FLOOR_MS..=t0 + backoff_ceiling_ms(1)).contains(&until), "{}", until - t0);
    let requests = srv.stats().requests;
    assert_eq!(p.refresh_config().unwrap(), FetchResult::InBackoff { until_ms: until });
    assert_eq!(p.poll_config().unwrap(), None);
    assert_eq!(srv.stats().requests, requests, "no attempt while in backoff");

    // The backoff is on disk: a restart does not hammer the server.
    p.close();
    drop(p);
    let p = Publisher::with_clock(c, None, clock.clone()).unwrap();
    assert_eq!(p.config_status().backoff_until_ms, Some(until));
    assert_eq!(p.config_status().consecutive_fetch_failures, 1);
    assert_eq!(p.refresh_config().unwrap(), FetchResult::InBackoff { until_ms: until });
    assert_eq!(srv.stats().requests, requests);

    // 429 with Retry-After: at least that long.
    clock.set_ms(until);
    srv.set_mode(Mode::TooManyRequests { retry_after_secs: 900 });
    assert_eq!(p.refresh_config().unwrap(), FetchResult::Failed { reason: "HTTP 429".into() });
    let until = p.config_status().backoff_until_ms.unwrap() - until;
    assert!((900_000..=1_080_000).contains(&until), "Retry-After 900 s plus up to a fifth: {until}");
    assert_eq!(p.config_status().consecutive_fetch_failures, 2);

    // Back to normal after the backoff: the config in force was never touched.
    clock.set_ms(p.config_status().backoff_until_ms.unwrap());
    srv.set_mode(Mode::Ok);
    serve(tmp.path(), r#"{"version": 2, "pubsubEnabled": true, "pubsubPercentage": 100, "debugMode": true}"#);
    assert_eq!(p.poll_config().unwrap(), Some(FetchResult::Applied { version: 2 }));
    let status = p.config_status();
    assert_eq!((status.version, status.backoff_until_ms, status.consecutive_fetch_failures), (2, None, 0));
    assert_eq!(p.metrics().config_fetches["failed"], 1, "counted since this start: the 429");
}

#[test]
fn hostile_answers_are_refused_and_the_last_known_good_stays() {
    let (tmp, emu) = (tempfile::tempdir().unwrap(), emulator());
    let srv = server(tmp.path(), r#"{"version": 5, "pubsubEnabled": true, "pubsubPercentage": 100}"#);
    let (clock, p) = started_on_a_manual_clock(fetching("fetch-hostile", &emu, &srv.url(), tmp.path()));
    assert_eq!(p.config_status().last_fetch_result, Some(FetchResult::Applied { version: 5 }));

    let huge = format!(r#"{{"version": 6, "rollout": {{"salt": "{}"}}}}"#, "x".repeat(300_000));
    type Setup<'a> = Box<dyn Fn() + 'a>;
    let hostile: Vec<(&str, Setup)> = vec![
        ("a captive portal's HTML", Box::new(|| srv.set_mode(Mode::Garbage))),
        ("a 300 KB document", Box::new(|| serve(tmp.path(), &huge))),
        ("NaN percentage", Box::new(|| serve(tmp.path(), r#"{"version": 6, "pubsubPercentage": NaN}"#))),
        ("a percentage of 101", Box::new(|| serve(tmp.path(), r#"{"version": 6, "pubsubPercentage": 101}"#))),
        ("an older version (a stale cache)", Box::new(|| serve(tmp.path(), r#"{"version": 4, "pubsubEnabled": false}"#))),
        ("a document that is not UTF-8", Box::new(|| serve(tmp.path(), b"{\"version\": 6, \"x\": \"\xff\xfe\"}"))),
    ];
    for (what, make) in &hostile {
        srv.set_mode(Mode::Ok);
        make();
        let r = p.refresh_config().unwrap();
        assert!(matches!(r, FetchResult::Rejected { .. }), "{what}: {r:?}");
        let status = p.config_status();
        assert_eq!((status.version, status.source), (5, ConfigSource::Fetched), "{what}: last known good stays");
        assert!(p.decision().pubsub_enabled, "{what}");
        // Step past the backoff it caused.
        clock.set_ms(status.backoff_until_ms.expect("a refused document backs off"));
    }
    let rejected = &p.metrics().config_rejected;
    for reason in ["malformed", "too_large", "invalid_value", "stale_version"] {
        assert!(rejected.get(reason).copied().unwrap_or(0) >= 1, "{reason}: {rejected:?}");
    }

    // A slow server is waited for (within the fetch timeout); endpoint fields are ignored.
    srv.set_mode(Mode::Slow { delay_ms: 1_500 });
    serve(tmp.path(), r#"{"version": 7, "pubsubEnabled": true, "pubsubPercentage": 0, "pubsubEndpoint": "https://evil.example"}"#);
    let started = Instant::now();
    assert_eq!(p.refresh_config().unwrap(), FetchResult::Applied { version: 7 });
    assert!(started.elapsed() >= Duration::from_millis(1_500));
    assert!(!p.decision().pubsub_enabled);
    assert_eq!(p.metrics().config_rejected.get("ignored_field"), Some(&1));
}

#[test]
fn nothing_is_fetched_on_schedule_while_the_app_is_in_the_background() {
    let (tmp, emu) = (tempfile::tempdir().unwrap(), emulator());
    let srv = server(tmp.path(), V1);
    let mut c = fetching("fetch-background", &emu, &srv.url(), tmp.path());
    c.config_fetch_interval_secs = 60;
    let (clock, p) = started_on_a_manual_clock(c);
    assert_eq!(p.config_status().last_fetch_result, Some(FetchResult::Applied { version: 1 }));
    p.set_app_foreground(false);
    assert_eq!(p.config_status().next_fetch_at_ms, None);
    let requests = srv.stats().requests;
    for _ in 0..10 {
        clock.advance_ms(60_000);
        assert_eq!(p.poll_config().unwrap(), None, "in the background");
    }
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(srv.stats().requests, requests);

    // Back in the foreground, the overdue fetch happens at once, without a poll from us.
    serve(tmp.path(), r#"{"version": 2, "pubsubEnabled": false}"#);
    p.set_app_foreground(true);
    assert!(wait(|| p.config_status().version == 2), "{:?}", p.config_status());
    assert_eq!(srv.stats().requests, requests + 1);
    // And a silent push still works in the background.
    p.set_app_foreground(false);
    serve(tmp.path(), r#"{"version": 3, "pubsubEnabled": false}"#);
    assert_eq!(p.refresh_config().unwrap(), FetchResult::Applied { version: 3 });
}

/// Acceptance: over a 5-minute config-server outage (injected clock, 1 s steps) the fetch
/// attempts follow the backoff schedule: none while in backoff, each wait between the floor and
/// the doubling ceiling, and few in all.
#[test]
fn a_five_minute_outage_costs_a_few_attempts_on_the_backoff_schedule() {
    let (tmp, emu) = (tempfile::tempdir().unwrap(), emulator());
    let srv = server(tmp.path(), V1);
    let mut c = fetching("fetch-outage", &emu, &srv.url(), tmp.path());
    c.config_fetch_interval_secs = 60; // the shortest schedule: the backoff alone limits it
    let (clock, p) = started_on_a_manual_clock(c);
    assert_eq!(p.config_status().last_fetch_result, Some(FetchResult::Applied { version: 1 }));

    srv.set_mode(Mode::ServerError);
    let start = clock.now_ms();
    clock.advance_ms(60_000); // the next scheduled fetch is due: the outage begins
    let outage_end = clock.now_ms() + 300_000;
    let before = srv.stats().requests;
    let mut attempts: Vec<i64> = Vec::new();
    let mut backoff_until: Option<i64> = None;
    while clock.now_ms() < outage_end {
        if let Some(r) = p.poll_config().unwrap() {
            assert!(matches!(r, FetchResult::Failed { .. }), "{r:?}");
        }
        let status = p.config_status();
        if let Some(at) = status.last_fetch_at_ms.filter(|&at| at > start && attempts.last() != Some(&at)) {
            if let Some(until) = backoff_until {
                assert!(at >= until, "an attempt at {at} while in backoff until {until}");
            }
            if let Some(&prev) = attempts.last() {
                let (gap, n) = (at - prev, attempts.len() as u32);
                assert!(gap >= BACKOFF_FLOOR_MS && gap <= backoff_ceiling_ms(n) + 1_000, "gap {gap} ms after {n} failure(s)");
            }
            attempts.push(at);
            backoff_until = status.backoff_until_ms;
        }
        clock.advance_ms(1_000);
    }
    let made = srv.stats().requests - before;
    assert_eq!(made, attempts.len() as u64, "every attempt the server saw was on schedule");
    // Ceilings 30 s, 60 s, 120 s, 240 s: at least 3 attempts, and never more than the floor allows.
    assert!(attempts.len() >= 3 && attempts.len() as i64 <= 1 + 300_000 / BACKOFF_FLOOR_MS, "{} attempts", attempts.len());
    eprintln!("5-minute outage: {} attempts at +{:?} s", attempts.len(), attempts.iter().map(|a| (a - start - 60_000) / 1000).collect::<Vec<_>>());

    // The server is back: the next attempt (after the backoff) succeeds and clears it.
    srv.set_mode(Mode::Ok);
    clock.set_ms(p.config_status().backoff_until_ms.unwrap_or(clock.now_ms()));
    assert_eq!(p.poll_config().unwrap(), Some(FetchResult::NotModified));
    assert_eq!(p.config_status().consecutive_fetch_failures, 0);
}

#[test]
fn without_a_url_refresh_says_so_and_an_insecure_url_is_refused() {
    let emu = emulator();
    let p = TestDevice::new(&device("fetch-none"), &emu).start();
    assert_eq!(p.refresh_config().unwrap(), FetchResult::NotConfigured);
    let mut c = TestDevice::new(&device("fetch-insecure"), &emu).config();
    c.remote_config_url = Some("http://127.0.0.1:1/config.json".into());
    c.allow_insecure = false;
    c.mqtt.broker_url = "mqtts://127.0.0.1:1".into();
    c.pubsub.endpoint = "https://127.0.0.1:1".into();
    let e = DualPublisher::new(c.clone(), None).err().expect("refused");
    assert!(e.to_string().contains("remoteConfigUrl"), "{e}");
    c.remote_config_url = Some("https://127.0.0.1:1/config.json".into());
    c.config_fetch_interval_secs = 5;
    assert!(DualPublisher::new(c, None).err().expect("refused").to_string().contains("configFetchIntervalSecs"));
}

fn wait(mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

fn dualpub_now() -> i64 {
    dualpub::clock::now_ms()
}

#[test]
fn a_new_url_starts_afresh_and_a_304_without_a_validator_proves_nothing() {
    let (tmp, emu) = (tempfile::tempdir().unwrap(), emulator());
    let staging_dir = tmp.path().join("staging");
    std::fs::create_dir_all(&staging_dir).unwrap();
    let staging = server(&staging_dir, r#"{"version": 1000, "pubsubEnabled": true, "pubsubPercentage": 100}"#);
    let mut c = fetching("fetch-new-url", &emu, &staging.url(), tmp.path());
    let p = Publisher::new(c.clone(), None).unwrap();
    assert!(wait(|| p.config_status().version == 1000));
    p.close();
    drop(p);

    // Production numbers its versions from 12: at a new URL that is not "stale".
    let production = server(tmp.path(), r#"{"version": 12, "pubsubEnabled": false}"#);
    c.remote_config_url = Some(production.url());
    let p = Publisher::new(c, None).unwrap();
    assert!(wait(|| p.config_status().version == 12), "{:?}", p.config_status());
    assert_eq!(p.config_status().source, ConfigSource::Fetched);

    // A device without an ETag that gets a 304 (a proxy, a portal) learnt nothing: a failure.
    let (tmp2, emu2) = (tempfile::tempdir().unwrap(), emulator());
    let odd = server(tmp2.path(), V1);
    odd.set_mode(Mode::NotModified);
    let q = Publisher::new(fetching("fetch-odd-304", &emu2, &odd.url(), tmp2.path()), None).unwrap();
    assert!(wait(|| q.config_status().last_fetch_result.is_some()));
    assert!(matches!(q.config_status().last_fetch_result, Some(FetchResult::Failed { .. })), "{:?}", q.config_status());
    assert_eq!(q.config_status().source, ConfigSource::Defaults);
}

/// A ConfigListener that calls back into the SDK from a fetched change must not hang it.
#[test]
fn a_listener_that_refreshes_from_a_fetched_change_does_not_hang_the_sdk() {
    struct Refresher(std::sync::Mutex<Option<Arc<Publisher>>>, std::sync::Mutex<Vec<String>>);
    impl dualpub::ConfigListener for Refresher {
        fn on_decision_changed(&self, _old: dualpub::RolloutDecision, new: dualpub::RolloutDecision) {
            let p = self.0.lock().unwrap().clone();
            if let Some(p) = p {
                let started = Instant::now();
                let r = p.refresh_config();
                self.1.lock().unwrap().push(format!("v{} {r:?} in {} ms", new.config_version, started.elapsed().as_millis()));
            }
        }
    }
    let (tmp, emu) = (tempfile::tempdir().unwrap(), emulator());
    let srv = server(tmp.path(), V1);
    let p = Arc::new(Publisher::new(fetching("fetch-listener", &emu, &srv.url(), tmp.path()), None).unwrap());
    assert!(wait(|| p.config_status().version == 1));
    let listener = Arc::new(Refresher(std::sync::Mutex::new(Some(p.clone())), Default::default()));
    p.set_config_listener(Some(listener.clone()));
    serve(tmp.path(), r#"{"version": 2, "pubsubEnabled": false}"#);
    assert_eq!(p.refresh_config().unwrap(), FetchResult::Applied { version: 2 }, "told the listener and returned");
    let heard = listener.1.lock().unwrap().clone();
    assert_eq!(heard.len(), 1, "{heard:?}");
    // The listener of a refreshConfig's change runs on the caller's thread once the fetch is over
    // (never on an SDK worker), so its own refresh simply fetches again: not modified.
    assert!(heard[0].starts_with("v2 Ok(NotModified)"), "{heard:?}");
    *listener.0.lock().unwrap() = None; // break the cycle
    p.close();
}
