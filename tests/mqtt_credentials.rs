//! MQTT credentials that change (docs/CONTRACT.md#mqtt-credentials), against Debian's
//! mosquitto with a password file changed under it: a password rotated by the broker, a
//! JWT-like password that expires, and a broker that refuses every password.
//! The test command installs mosquitto; without it these tests fail (never skip).

mod common;

use common::*;
use dualpub::{DualPublisher, MqttCredentialProvider, MqttCredentials, Secret, TokenError};
use dualpub_testbed::mosquitto::Mosquitto;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(30);

/// The app's provider in these tests: hands out the current password (with `lifetime`, an
/// expiry that far ahead), counting calls; `on_call` runs first (a JWT issuer rotating the
/// broker's password).
struct Passwords {
    current: Mutex<String>,
    lifetime: Option<Duration>,
    calls: AtomicU64,
    on_call: Box<dyn Fn(u64) -> Option<String> + Send + Sync>,
}

impl Passwords {
    fn fixed(password: &str) -> Arc<Passwords> {
        Arc::new(Passwords { current: Mutex::new(password.into()), lifetime: None, calls: AtomicU64::new(0), on_call: Box::new(|_| None) })
    }

    fn set(&self, password: &str) {
        *self.current.lock().unwrap() = password.into();
    }

    fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }
}

impl MqttCredentialProvider for Passwords {
    fn fetch_credentials(&self) -> Result<MqttCredentials, TokenError> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if let Some(p) = (self.on_call)(n) {
            self.set(&p);
        }
        let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
        let expires_at_ms = self.lifetime.map(|l| now_ms + l.as_millis() as i64);
        Ok(MqttCredentials { username: "device".into(), password: Secret::new(self.current.lock().unwrap().clone()), expires_at_ms })
    }
}

/// An MQTT-only device on mosquitto's password listener, real time, hanging up after 1 s idle.
fn device_on(broker: &Mosquitto, name: &str, provider: Arc<Passwords>) -> (Arc<DualPublisher>, Subscriber) {
    let emu = emulator();
    let id = device(name);
    let sub = subscribers::mqtt("127.0.0.1", broker.port, &format!("device/telemetry/{id}")).unwrap();
    let url = format!("mqtt://127.0.0.1:{}", broker.auth_port.unwrap());
    let c = TestDevice::new(&id, &emu).mqtt(&url).migration(rollout(0.0)).real_time().with(|c| c.mqtt.idle_disconnect_secs = 1).config();
    (DualPublisher::with_providers(c, None, Some(provider)).unwrap(), sub)
}

/// Waits until the publisher has hung up (its idle second passed).
fn idle(p: &DualPublisher) {
    std::thread::sleep(Duration::from_millis(1_500));
    assert_eq!(p.metrics().unwrap().mqtt.queue_depth, 0);
}

#[test]
fn a_password_the_broker_changed_is_asked_for_again_and_nothing_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start_with_passwords(dir.path(), &[("device", "pw-1")]).unwrap();
    let passwords = Passwords::fixed("pw-1");
    let (p, sub) = device_on(&broker, "cred-rotated", passwords.clone());
    let mut ids: Vec<String> = (0..5).map(|n| p.send_location(location(n)).unwrap()).collect();
    assert!(p.flush(20_000).unwrap().completed);
    idle(&p);
    broker.set_password("device", "pw-2").unwrap();
    passwords.set("pw-2");
    std::thread::sleep(Duration::from_millis(500)); // mosquitto reloads on SIGHUP
    let t0 = Instant::now();
    ids.extend((5..10).map(|n| p.send_location(location(n)).unwrap()));
    let r = p.flush(20_000).unwrap();
    assert!(r.completed, "{r:?}");
    assert!(wait_for_all(&sub.collected, &ids, WAIT), "lost");
    let m = p.metrics().unwrap();
    eprintln!("password changed: delivered {:?} after the change, {} refusal(s), {} provider calls", t0.elapsed(), m.mqtt_auth_refusals, passwords.calls());
    assert_eq!(m.mqtt_auth_refusals, 1, "the cached password was refused once");
    assert_eq!(passwords.calls(), 2, "asked at the first connection and after the refusal");
    assert!(t0.elapsed() < Duration::from_secs(5), "the refusal cost one reconnect, not a long backoff: {:?}", t0.elapsed());
}

#[test]
fn an_expiring_password_is_renewed_before_it_expires_without_a_refusal() {
    // A JWT-like password: valid 61 s by its stated expiry, so a minute before that (after 1 s)
    // the SDK asks again; the issuer rotates the broker's password with each one it hands out.
    let dir = tempfile::tempdir().unwrap();
    let broker = Arc::new(Mosquitto::start_with_passwords(dir.path(), &[("device", "jwt-0")]).unwrap());
    let issuer = broker.clone();
    let passwords = Arc::new(Passwords {
        current: Mutex::new("jwt-0".into()),
        lifetime: Some(Duration::from_secs(61)),
        calls: AtomicU64::new(0),
        on_call: Box::new(move |n| {
            let jwt = format!("jwt-{n}");
            issuer.set_password("device", &jwt).unwrap();
            std::thread::sleep(Duration::from_millis(500)); // mosquitto reloads on SIGHUP
            Some(jwt)
        }),
    });
    let (p, sub) = device_on(&broker, "cred-expiring", passwords.clone());
    let mut ids = Vec::new();
    for round in 0..3 {
        ids.extend((round * 3..round * 3 + 3).map(|n| p.send_location(location(n)).unwrap()));
        assert!(p.flush(20_000).unwrap().completed, "round {round}");
        idle(&p);
    }
    assert!(wait_for_all(&sub.collected, &ids, WAIT), "lost");
    let m = p.metrics().unwrap();
    assert_eq!(m.mqtt_auth_refusals, 0, "renewed before expiry, never refused");
    assert_eq!(passwords.calls(), 3, "one password per connection, each expiring within a minute when the next began");
}

#[test]
fn a_broker_that_refuses_every_password_is_backed_off_from_not_spun_on() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start_with_passwords(dir.path(), &[("device", "right")]).unwrap();
    let passwords = Passwords::fixed("wrong");
    let (p, sub) = device_on(&broker, "cred-refused", passwords.clone());
    let id = p.send_location(location(0)).unwrap();
    std::thread::sleep(Duration::from_secs(10));
    let m = p.metrics().unwrap();
    eprintln!("refusing broker: {} refusals and {} provider calls in 10 s", m.mqtt_auth_refusals, passwords.calls());
    // The backoff's ceiling grows 1, 2, 4, 8 s (at most 8 s in a young outage): a handful of
    // attempts in 10 s, each asking the provider again.
    assert!((2..=12).contains(&m.mqtt_auth_refusals), "{} refusals in 10 s", m.mqtt_auth_refusals);
    let calls = passwords.calls();
    assert!((m.mqtt_auth_refusals..=m.mqtt_auth_refusals + 1).contains(&calls), "asked again after each refusal: {calls} calls");
    assert_eq!(m.mqtt.queue_depth, 1, "kept, not lost");
    // The right password from now on: delivered at the next attempt.
    passwords.set("right");
    assert!(wait_for_all(&sub.collected, &[id], Duration::from_secs(20)), "not delivered once the password was right");
}
