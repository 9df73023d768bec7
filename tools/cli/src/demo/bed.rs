//! The demo's test bed: the MQTT broker and the Pub/Sub endpoint (embedded ones unless URLs are
//! given), and `--chaos`, fault proxies in front of both with a thread that keeps breaking things.

use super::DemoArgs;
use dualpub_testbed::broker::EmbeddedBroker;
use dualpub_testbed::proxy::FaultProxy;
use dualpub_testbed::subscribers;
use dualpub_testbed::{EmulatorHandle, EmulatorOptions};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The MQTT broker and the Pub/Sub endpoint: embedded ones unless URLs are given.
pub(super) struct TestBed {
    pub(super) mqtt_url: String,
    pub(super) mqtt_host: String,
    pub(super) mqtt_port: u16,
    pub(super) endpoint: String,
    pub(super) allow_insecure: bool,
    pub(super) emulator: Option<EmulatorHandle>,
    _broker: Option<EmbeddedBroker>,
}

impl TestBed {
    /// Starts the embedded broker and emulator where no URL was given, and says what is used.
    pub(super) fn start(args: &DemoArgs) -> Result<TestBed, String> {
        let (mqtt_url, mqtt_host, mqtt_port, broker) = match &args.backend.mqtt_url {
            Some(u) => {
                let (host, port) = dualpub_testbed::url_host_port(u, 1883)?;
                (u.clone(), host, port, None)
            }
            None => {
                let b = EmbeddedBroker::start().map_err(|e| format!("cannot start the embedded MQTT broker: {e}"))?;
                (b.url(), "127.0.0.1".to_string(), b.port, Some(b))
            }
        };
        let (endpoint, emulator) = match &args.backend.pubsub_endpoint {
            Some(e) => (e.trim_end_matches('/').to_string(), None),
            None => {
                let h = EmulatorHandle::spawn(EmulatorOptions::default()).map_err(|e| format!("cannot start the Pub/Sub emulator: {e}"))?;
                subscribers::create_topic(&h.url(), &args.backend.pubsub_project, &args.backend.pubsub_topic).map_err(|e| e.to_string())?;
                subscribers::create_topic(&h.url(), &args.backend.pubsub_project, dualpub::config::DEFAULT_REPORTS_TOPIC).map_err(|e| e.to_string())?;
                (h.url(), Some(h))
            }
        };
        let allow_insecure = allow_insecure(args, &mqtt_url, &endpoint);
        eprintln!("dualpub demo: MQTT {mqtt_url}, Pub/Sub {endpoint} (project {}, topic {})", args.backend.pubsub_project, args.backend.pubsub_topic);
        Ok(TestBed { mqtt_url, mqtt_host, mqtt_port, endpoint, allow_insecure, emulator, _broker: broker })
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
    /// Puts fault proxies in front of both backends and starts the fault thread.
    pub(super) fn start(mqtt_host: &str, mqtt_port: u16, endpoint: &str, emulator: Option<&EmulatorHandle>) -> std::io::Result<Chaos> {
        use std::net::ToSocketAddrs;
        let resolve = |host: &str, port: u16| (host, port).to_socket_addrs()?.next().ok_or_else(|| std::io::Error::other(format!("cannot resolve {host}")));
        let mqtt = Arc::new(FaultProxy::start(resolve(mqtt_host, mqtt_port)?)?);
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
