//! Logging and debug mode: every log line at every level, and every debug event, is captured;
//! none may carry an unrounded coordinate, a token or a password unless the app opted in to
//! precise coordinates. (A binary of its own: the capturing logger is process-wide.)

mod common;

use common::*;
use dualpub::{AccessToken, DebugEvent, DebugListener, DualPublisher, TokenError, TokenProvider};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

struct Capture(Mutex<Vec<String>>);

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }
    fn log(&self, record: &log::Record) {
        self.0.lock().unwrap().push(format!("{} {} {}", record.level(), record.target(), record.args()));
    }
    fn flush(&self) {}
}

fn capture() -> &'static Capture {
    static C: OnceLock<&'static Capture> = OnceLock::new();
    C.get_or_init(|| {
        let c: &'static Capture = Box::leak(Box::new(Capture(Mutex::new(Vec::new()))));
        log::set_logger(c).unwrap();
        log::set_max_level(log::LevelFilter::Trace);
        c
    })
}

/// The log level is process-wide: these tests take turns.
static SERIAL: Mutex<()> = Mutex::new(());

struct Events(Mutex<Vec<DebugEvent>>);
impl DebugListener for Events {
    fn on_debug_event(&self, event: DebugEvent) {
        self.0.lock().unwrap().push(event);
    }
}

struct SecretToken;
impl TokenProvider for SecretToken {
    fn fetch_token(&self) -> Result<AccessToken, TokenError> {
        Ok(AccessToken { token: dualpub::Secret::new("tok-SECRET-4711".into()), expires_at_ms: i64::MAX / 2 })
    }
}

const PASSWORD: &str = "hunter2-SECRET";
const LATITUDE: f64 = 52.123_456_789;
/// A key in the config URL's query (as a signed CDN URL would carry).
const CONFIG_KEY: &str = "cfgkey-SECRET-99";

fn secrets_in(lines: &[String]) -> Vec<String> {
    lines.iter().filter(|l| l.contains("52.1234") || l.contains("tok-SECRET") || l.contains(PASSWORD) || l.contains(CONFIG_KEY)).cloned().collect()
}

#[test]
fn nothing_sensitive_reaches_logs_or_debug_events_unless_opted_in() {
    let _turn = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let logs = capture();
    let emu = emulator_with(EmulatorOptions { bearer_token: Some("tok-SECRET-4711".into()), ..Default::default() });
    // The emulator wants a different token at first: 401s and retries get logged too.
    emu.emulator().set_bearer_token(Some("another".into()));
    let id = device("secrets");
    let mut c = TestDevice::new(&id, &emu).rollout(100.0).config();
    c.mqtt.username = Some("device".into());
    c.mqtt.password = Some(dualpub::Secret::new(PASSWORD.into()));
    c.migration.as_mut().unwrap().debug_mode = true;
    // Nothing listens there: the start-up fetch fails and is logged, without the URL.
    c.remote_config_url = Some(format!("http://127.0.0.1:{}/config.json?key={CONFIG_KEY}", dualpub_testbed::free_port().unwrap()));
    let p = DualPublisher::new(c, Some(Arc::new(SecretToken))).unwrap();
    let events = Arc::new(Events(Mutex::new(Vec::new())));
    p.set_debug_listener(Some(events.clone())).unwrap();
    for n in 0..5 {
        let mut loc = location(n);
        loc.latitude = LATITUDE;
        p.send_location(loc).unwrap();
    }
    p.flush(1_500).unwrap();
    emu.emulator().set_bearer_token(Some("tok-SECRET-4711".into()));
    assert!(p.flush(20_000).unwrap().completed);
    let report = p.debug_report().unwrap();
    std::thread::sleep(Duration::from_millis(200));

    let lines = logs.0.lock().unwrap().clone();
    assert!(lines.iter().any(|l| l.starts_with("DEBUG") && l.contains("accepted")), "debug mode logs at debug level");
    assert!(lines.iter().any(|l| l.contains("52.12")), "rounded coordinates are shown");
    assert_eq!(secrets_in(&lines), Vec::<String>::new());
    let texts: Vec<String> = events.0.lock().unwrap().iter().map(|e| format!("{} {} {}", e.level, e.kind, e.message)).collect();
    assert!(texts.iter().any(|t| t.contains("accepted")), "{texts:?}");
    assert!(texts.iter().any(|t| t.contains("pubsub")), "the 401s were streamed: {texts:?}");
    assert_eq!(secrets_in(&texts), Vec::<String>::new());
    assert_eq!(secrets_in(std::slice::from_ref(&report)), Vec::<String>::new());
    let r: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert_eq!(r["debugMode"], true);
    assert!(!r["recentErrors"].as_array().unwrap().is_empty(), "{report}");
    assert_eq!(r["decision"]["reason"], "rollout_in");
    assert!(lines.iter().any(|l| l.contains("config_fetch") && l.contains("network error")), "the failed fetch was logged");
    assert_eq!(r["configFetch"]["configured"], true);
    assert_eq!(r["configFetch"]["state"]["failures"], 1, "{report}");

    // With the explicit opt-in, debug output shows precise coordinates.
    p.set_precise_coordinates_in_debug(true).unwrap();
    let mut loc = location(9);
    loc.latitude = LATITUDE;
    p.send_location(loc).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert!(events.0.lock().unwrap().iter().any(|e| e.message.contains("52.123456789")));
    p.shutdown();
}

#[test]
fn debug_mode_from_a_config_apply_changes_the_level_within_the_apply() {
    let _turn = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    capture();
    let emu = emulator();
    let p = TestDevice::new(&device("level"), &emu).start();
    let base = dualpub::logging::level();
    assert_eq!(base, dualpub::logging::QUIET, "quiet by default");
    p.apply_config_json(r#"{"version": 2, "debugMode": true}"#.into()).unwrap();
    assert_eq!(dualpub::logging::level(), dualpub::logging::VERBOSE, "raised before apply returned");
    p.apply_config_json(r#"{"version": 3, "debugMode": false}"#.into()).unwrap();
    assert_eq!(dualpub::logging::level(), base);
    // The app's local switch wins over the config, until cleared.
    p.set_debug_mode(true).unwrap();
    p.apply_config_json(r#"{"version": 4, "debugMode": false}"#.into()).unwrap();
    assert_eq!(dualpub::logging::level(), dualpub::logging::VERBOSE);
    p.clear_debug_mode().unwrap();
    assert_eq!(dualpub::logging::level(), base);
    p.shutdown();
}
