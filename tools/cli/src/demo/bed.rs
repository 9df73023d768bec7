//! The demo's test bed: the MQTT broker and the Pub/Sub endpoint (embedded ones unless URLs are
//! given), and `--chaos`, fault proxies in front of both with a thread that keeps breaking things.
//!
//! The SDK talks to the embedded backends as to production, over TLS (`mqtts://`, `https://`)
//! through TLS fronts with a CA made for the run and passed as `caCertificatesPem`; the
//! verifying subscribers read the backends directly, not through the SDK's path, so their
//! verdict under faults is about the SDK.

use super::DemoArgs;
use dualpub_testbed::broker::EmbeddedBroker;
use dualpub_testbed::proxy::FaultProxy;
use dualpub_testbed::subscribers;
use dualpub_testbed::tls::{LocalCa, TlsFront};
use dualpub_testbed::{EmulatorHandle, EmulatorOptions};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The MQTT broker and the Pub/Sub endpoint: embedded ones unless URLs are given.
pub(super) struct TestBed {
    /// The broker the SDK connects to.
    pub(super) mqtt_url: String,
    /// The Pub/Sub endpoint the SDK publishes to.
    pub(super) endpoint: String,
    /// The CA the SDK trusts for both (the run's own, or `--ca-file`'s).
    pub(super) ca_pem: Option<String>,
    /// Where the verifying subscribers read MQTT (plaintext): the embedded broker directly,
    /// `--verify-mqtt-url`, or the SDK's broker.
    pub(super) mqtt_host: String,
    pub(super) mqtt_port: u16,
    /// Where the verifying subscribers pull Pub/Sub: the emulator directly,
    /// `--verify-pubsub-endpoint`, or the SDK's endpoint.
    pub(super) verify_endpoint: String,
    pub(super) allow_insecure: bool,
    pub(super) emulator: Option<EmulatorHandle>,
    _broker: Option<EmbeddedBroker>,
    _fronts: Vec<TlsFront>,
}

/// The SDK's TLS connections to the embedded backends over the run.
#[derive(Debug, Clone, Copy)]
pub(super) struct Connects {
    /// Connections per second (both backends together).
    pub(super) rate: dualpub_testbed::tls::ConnectRate,
    /// Handshakes by kind (both backends together).
    pub(super) handshakes: dualpub_testbed::tls::Handshakes,
}

impl TestBed {
    /// The SDK's TLS connections to the embedded backends so far (none with external ones).
    pub(super) fn connects(&self) -> Option<Connects> {
        if self._fronts.is_empty() {
            return None;
        }
        let arrivals: Vec<_> = self._fronts.iter().flat_map(|f| f.arrivals()).collect();
        let mut handshakes = dualpub_testbed::tls::Handshakes::default();
        for h in self._fronts.iter().map(|f| f.handshakes()) {
            handshakes.full += h.full;
            handshakes.resumed += h.resumed;
            handshakes.failed += h.failed;
        }
        Some(Connects { rate: dualpub_testbed::tls::ConnectRate::of(&arrivals), handshakes })
    }

    /// Starts the embedded broker and emulator (behind TLS fronts) where no URL was given, and
    /// says what is used.
    pub(super) fn start(args: &DemoArgs) -> Result<TestBed, String> {
        let ca = LocalCa::new();
        let mut fronts = Vec::new();
        let mut front = |port: u16| -> Result<u16, String> {
            let f = TlsFront::start(std::net::SocketAddr::from(([127, 0, 0, 1], port)), &ca).map_err(|e| format!("cannot start a TLS front: {e}"))?;
            let port = f.port;
            fronts.push(f);
            Ok(port)
        };
        let (mqtt_url, direct_mqtt, broker) = match &args.backend.mqtt_url {
            Some(u) => (u.clone(), dualpub_testbed::url_host_port(u, 1883)?, None),
            None => {
                let b = EmbeddedBroker::start().map_err(|e| format!("cannot start the embedded MQTT broker: {e}"))?;
                (format!("mqtts://127.0.0.1:{}", front(b.port)?), ("127.0.0.1".to_string(), b.port), Some(b))
            }
        };
        let (endpoint, direct_endpoint, emulator) = match &args.backend.pubsub_endpoint {
            Some(e) => (e.trim_end_matches('/').to_string(), e.trim_end_matches('/').to_string(), None),
            None => {
                let h = EmulatorHandle::spawn(EmulatorOptions::default()).map_err(|e| format!("cannot start the Pub/Sub emulator: {e}"))?;
                subscribers::create_topic(&h.url(), &args.backend.pubsub_project, &args.backend.pubsub_topic).map_err(|e| e.to_string())?;
                subscribers::create_topic(&h.url(), &args.backend.pubsub_project, dualpub::config::DEFAULT_REPORTS_TOPIC).map_err(|e| e.to_string())?;
                let (_, port) = dualpub_testbed::url_host_port(&h.url(), 80)?;
                (format!("https://127.0.0.1:{}", front(port)?), h.url(), Some(h))
            }
        };
        let ca_pem = match &args.ca_file {
            Some(path) => Some(std::fs::read_to_string(path).map_err(|e| format!("--ca-file {}: {e}", path.display()))?),
            None if broker.is_some() || emulator.is_some() => Some(ca.ca_pem.clone()),
            None => None,
        };
        let (mqtt_host, mqtt_port) = match &args.verify_mqtt_url {
            Some(u) => dualpub_testbed::url_host_port(u, 1883)?,
            None => direct_mqtt,
        };
        let verify_endpoint = args.verify_pubsub_endpoint.as_deref().unwrap_or(&direct_endpoint).trim_end_matches('/').to_string();
        let allow_insecure = allow_insecure(args, &mqtt_url, &endpoint);
        eprintln!("dualpub demo: MQTT {mqtt_url}, Pub/Sub {endpoint} (project {}, topic {})", args.backend.pubsub_project, args.backend.pubsub_topic);
        if !args.no_verify {
            eprintln!("dualpub demo: verifying subscribers read mqtt://{mqtt_host}:{mqtt_port} and {verify_endpoint}");
        }
        Ok(TestBed { mqtt_url, endpoint, ca_pem, mqtt_host, mqtt_port, verify_endpoint, allow_insecure, emulator, _broker: broker, _fronts: fronts })
    }
}

/// Plaintext is allowed without --allow-insecure only towards the servers started here.
fn allow_insecure(args: &DemoArgs, mqtt_url: &str, endpoint: &str) -> bool {
    let mqtt_local_or_tls = args.backend.mqtt_url.is_none() || mqtt_url.starts_with("mqtts://");
    let pubsub_local_or_tls = args.backend.pubsub_endpoint.is_none() || endpoint.starts_with("https://");
    let config_local_or_tls = args
        .config_url
        .as_deref()
        .is_none_or(|u| u.starts_with("https://") || u.starts_with("http://127.0.0.1") || u.starts_with("http://localhost") || u.starts_with("http://[::1]"));
    args.allow_insecure || (mqtt_local_or_tls && pubsub_local_or_tls && config_local_or_tls)
}

/// `--chaos`: fault proxies in front of the broker and the Pub/Sub endpoint, and a thread that
/// keeps breaking things until [`Chaos::calm`].
pub(super) struct Chaos {
    pub(super) mqtt: Arc<FaultProxy>,
    pub(super) pubsub: Arc<FaultProxy>,
    stop: Arc<AtomicBool>,
    events: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
    emulator: Option<Arc<dualpub_emulator::Emulator>>,
}

impl Chaos {
    /// Puts fault proxies in front of both backends as the SDK reaches them (`mqtt_url`,
    /// `endpoint`) and starts the fault thread.
    pub(super) fn start(mqtt_url: &str, endpoint: &str, emulator: Option<&EmulatorHandle>) -> std::io::Result<Chaos> {
        use std::net::ToSocketAddrs;
        let resolve = |host: &str, port: u16| (host, port).to_socket_addrs()?.next().ok_or_else(|| std::io::Error::other(format!("cannot resolve {host}")));
        let (mqtt_host, mqtt_port) = dualpub_testbed::url_host_port(mqtt_url, 1883).map_err(std::io::Error::other)?;
        let mqtt = Arc::new(FaultProxy::start(resolve(&mqtt_host, mqtt_port)?)?);
        let (host, port) = dualpub_testbed::url_host_port(endpoint, 80).map_err(std::io::Error::other)?;
        let pubsub = Arc::new(FaultProxy::start(resolve(&host, port)?)?);
        let emulator = emulator.map(|e| e.emulator().clone());
        let stop = Arc::new(AtomicBool::new(false));
        let events = Arc::new(AtomicU64::new(0));
        let thread = {
            let (mqtt, pubsub, stop, events, emulator) = (mqtt.clone(), pubsub.clone(), stop.clone(), events.clone(), emulator.clone());
            std::thread::spawn(move || {
                use rand::Rng;
                let mut rng = rand::rng();
                while !stop.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(rng.random_range(200..800)));
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    events.fetch_add(1, Ordering::SeqCst);
                    match rng.random_range(0..5) {
                        0 => mqtt.cut_connections(),
                        1 => {
                            // A broker restart, as the SDK sees it: connections reset, refused for a while.
                            mqtt.outage();
                            std::thread::sleep(Duration::from_millis(rng.random_range(300..1500)));
                            mqtt.restore();
                        }
                        2 => pubsub.cut_connections(),
                        3 => {
                            pubsub.outage();
                            std::thread::sleep(Duration::from_millis(rng.random_range(200..1000)));
                            pubsub.restore();
                        }
                        _ => {
                            if let Some(e) = &emulator {
                                e.faults().set(dualpub_testbed::FaultPlan {
                                    fail_rate: 0.3,
                                    fail_statuses: vec![429, 500, 503],
                                    latency_ms: rng.random_range(0..100),
                                    drop_after_accept_next: rng.random_range(0..3),
                                    retry_after_secs: None,
                                    ..Default::default()
                                });
                            }
                        }
                    }
                }
            })
        };
        Ok(Chaos { mqtt, pubsub, stop, events, thread: Some(thread), emulator })
    }

    /// Stops breaking things (waiting for the fault thread) and repairs everything, so the
    /// fleet can drain.
    pub(super) fn calm(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.mqtt.restore();
        self.pubsub.restore();
        if let Some(e) = &self.emulator {
            e.faults().clear();
        }
    }

    /// The SDK's URLs through the proxies: `mqtt_url` and `endpoint` with the proxies' ports
    /// (same schemes: TLS passes through).
    pub(super) fn sdk_urls(&self, mqtt_url: &str, endpoint: &str) -> (String, String) {
        let scheme = |url: &str| url.split_once("://").map_or("http", |(s, _)| s).to_string();
        (format!("{}://127.0.0.1:{}", scheme(mqtt_url), self.mqtt.port), format!("{}://127.0.0.1:{}", scheme(endpoint), self.pubsub.port))
    }

    /// How many faults were injected.
    pub(super) fn stop(mut self) -> u64 {
        self.calm();
        self.events.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Demo {
        #[command(flatten)]
        args: DemoArgs,
    }

    fn args(flags: &[&str]) -> DemoArgs {
        Demo::parse_from(std::iter::once("demo").chain(flags.iter().copied())).args
    }

    #[test]
    fn plaintext_needs_allow_insecure_only_towards_servers_not_started_here() {
        // The embedded broker and emulator.
        assert!(allow_insecure(&args(&[]), "mqtt://127.0.0.1:1883", "http://127.0.0.1:8085"));
        // An external broker over TLS, the embedded emulator.
        let a = args(&["--mqtt-url", "mqtts://broker.example:8883"]);
        assert!(allow_insecure(&a, "mqtts://broker.example:8883", "http://127.0.0.1:8085"));
        // An external plaintext broker or endpoint.
        let a = args(&["--mqtt-url", "mqtt://broker.example:1883"]);
        assert!(!allow_insecure(&a, "mqtt://broker.example:1883", "http://127.0.0.1:8085"));
        let a = args(&["--pubsub-endpoint", "http://pubsub.example"]);
        assert!(!allow_insecure(&a, "mqtt://127.0.0.1:1883", "http://pubsub.example"));
        // A plaintext config server: only on this machine.
        assert!(allow_insecure(&args(&["--config-url", "http://127.0.0.1:8086/c"]), "mqtt://127.0.0.1:1", "http://127.0.0.1:2"));
        assert!(allow_insecure(&args(&["--config-url", "http://localhost:8086/c"]), "mqtt://127.0.0.1:1", "http://127.0.0.1:2"));
        assert!(!allow_insecure(&args(&["--config-url", "http://config.example/c"]), "mqtt://127.0.0.1:1", "http://127.0.0.1:2"));
        // --allow-insecure permits it all.
        let a = args(&["--mqtt-url", "mqtt://broker.example:1883", "--allow-insecure"]);
        assert!(allow_insecure(&a, "mqtt://broker.example:1883", "http://127.0.0.1:8085"));
    }
}
