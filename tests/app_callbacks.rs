//! App callbacks that hang or block: a token provider that never returns, a config listener
//! that flushes. Alone in its binary: the hung provider calls keep their threads until the
//! process ends.

mod common;

use common::*;
use dualpub::clock::ManualClock;
use dualpub::{AccessToken, ConfigListener, Publisher, RolloutDecision, TokenError, TokenProvider};
use dualpub_testbed::config_server::ConfigServer;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Never answers (nothing is ever sent on the channel it waits on); counts its calls.
struct HungTokens(Mutex<std::sync::mpsc::Receiver<()>>, std::sync::atomic::AtomicUsize);

impl TokenProvider for HungTokens {
    fn fetch_token(&self) -> Result<AccessToken, TokenError> {
        self.1.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let _ = self.0.lock().unwrap().recv();
        Err(TokenError::Unavailable { reason: "released".into() })
    }
}

#[test]
fn hung_token_providers_do_not_stop_networking_in_the_process() {
    let emu = emulator();
    let (_never_sent, rx) = std::sync::mpsc::channel();
    let hung = Arc::new(HungTokens(Mutex::new(rx), Default::default()));
    // Six publishers whose Pub/Sub task is stuck in the provider (one call each), then closed
    // — at once, each on its own thread: a close waits a few seconds for the stuck task, and six
    // in a row cost half a minute of every suite run.
    let mut stuck = Vec::new();
    for i in 0..6 {
        let p = TestDevice::new(&device(&format!("hung-{i}")), &emu).rollout(100.0).real_time().tokens(hung.clone()).start();
        p.send_location(location(i)).unwrap();
        let start = Instant::now();
        while hung.1.load(std::sync::atomic::Ordering::SeqCst) <= i && start.elapsed() < Duration::from_secs(2) {
            std::thread::sleep(Duration::from_millis(20));
        }
        stuck.push(p);
    }
    std::thread::scope(|s| {
        for p in &stuck {
            s.spawn(|| p.shutdown());
        }
    });
    drop(stuck);
    assert!(hung.1.load(std::sync::atomic::Ordering::SeqCst) >= 4, "at least four calls hang (as many as the runtime's blocking pool holds)");
    // A new publisher that needs a host-name lookup (localhost) still delivers.
    let localhost = format!("mqtt://localhost:{}", broker().port);
    let p = TestDevice::new(&device("after-hung"), &emu).mqtt(&localhost).start();
    p.send_location(location(9)).unwrap();
    let r = p.flush(15_000).unwrap();
    assert!(r.completed, "MQTT to localhost could not deliver with hung providers around: {r:?}");
}

/// Flushes when told of a change (as an app might, to push the last locations under the old
/// decision out), and records how that went.
struct FlushingListener {
    publisher: Mutex<Option<Arc<Publisher>>>,
    report: Mutex<Option<dualpub::FlushReport>>,
}

impl ConfigListener for FlushingListener {
    fn on_decision_changed(&self, _old: RolloutDecision, _new: RolloutDecision) {
        let p = self.publisher.lock().unwrap().clone();
        if let Some(p) = p {
            p.send_location(location(1)).unwrap();
            let r = p.flush(Duration::from_secs(8));
            *self.report.lock().unwrap() = Some(r);
        }
    }
}

#[test]
fn a_listener_that_flushes_on_a_fetched_change_does_not_stall_the_transports() {
    let emu = emulator();
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("config.json");
    std::fs::write(&file, r#"{"version": 1}"#).unwrap();
    let srv = ConfigServer::start(file.clone(), 0).unwrap();
    let clock = Arc::new(ManualClock::new(dualpub::clock::now_ms()));
    // Two publishers, so that two listeners on the runtime's two workers would block both.
    let devices: Vec<(Arc<Publisher>, Arc<FlushingListener>)> = (0..2)
        .map(|i| {
            let c = TestDevice::new(&device(&format!("listener-flush-{i}")), &emu)
                .with(|c| {
                    c.migration = None;
                    c.remote_config_url = Some(srv.url());
                    c.data_dir = tmp.path().join(format!("d{i}")).to_string_lossy().into_owned();
                })
                .config();
            let p = Arc::new(Publisher::with_clock(c, None, clock.clone()).unwrap());
            let start = Instant::now();
            while p.config_status().last_fetch_result.is_none() && start.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(20));
            }
            let l = Arc::new(FlushingListener { publisher: Mutex::new(Some(p.clone())), report: Mutex::new(None) });
            p.set_config_listener(Some(l.clone()));
            (p, l)
        })
        .collect();
    // The server turns Pub/Sub on; the schedule fetches it (the interval has passed).
    dualpub_testbed::config_server::write_atomically(&file, br#"{"version": 2, "pubsubEnabled": true, "pubsubPercentage": 100}"#).unwrap();
    clock.advance_ms(901_000);
    for (p, _) in &devices {
        p.set_app_foreground(true);
    }
    let start = Instant::now();
    while devices.iter().any(|(_, l)| l.report.lock().unwrap().is_none()) && start.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(50));
    }
    for (p, l) in &devices {
        let r = l.report.lock().unwrap().clone().expect("the listener was told and its flush returned");
        assert!(r.completed, "the listener's flush stalled: {r:?}");
        *l.publisher.lock().unwrap() = None;
        assert!(p.decision().pubsub_enabled);
    }
}
