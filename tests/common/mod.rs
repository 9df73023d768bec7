//! Shared helpers of the integration tests: configs, locations, and the test bed.
#![allow(dead_code, unused_imports)]

use dualpub::{DualPublisher, Location, MigrationConfig, SdkConfig, TokenProvider};
pub use dualpub_testbed::broker::EmbeddedBroker;
pub use dualpub_testbed::subscribers::{self, Collected, Subscriber};
pub use dualpub_testbed::{EmulatorHandle, EmulatorOptions, FaultPlan};
use std::collections::HashSet;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

pub const PROJECT: &str = "test-project";
pub const TOPIC: &str = "location-updates";
/// The migration reports' Pub/Sub topic (the SDK's default).
pub const REPORTS_TOPIC: &str = "migration-reports";

/// One embedded broker for the whole test binary (rumqttd cannot be stopped).
pub fn broker() -> &'static EmbeddedBroker {
    static B: OnceLock<EmbeddedBroker> = OnceLock::new();
    B.get_or_init(|| EmbeddedBroker::start().expect("embedded broker"))
}

/// A fresh emulator with the test topic created.
pub fn emulator() -> EmulatorHandle {
    emulator_with(EmulatorOptions::default())
}

/// A fresh emulator with options, and the test topic created (without a token check in the way).
pub fn emulator_with(options: EmulatorOptions) -> EmulatorHandle {
    let token = options.bearer_token.clone();
    let e = EmulatorHandle::spawn(EmulatorOptions { bearer_token: None, ..options }).expect("emulator");
    subscribers::create_topic(&e.url(), PROJECT, TOPIC).expect("topic");
    subscribers::create_topic(&e.url(), PROJECT, REPORTS_TOPIC).expect("reports topic");
    e.emulator().set_bearer_token(token);
    e
}

/// Subscribes to every device topic on the embedded broker.
pub fn mqtt_subscriber(filter_device: &str) -> Subscriber {
    subscribers::mqtt("127.0.0.1", broker().port, &format!("device/telemetry/{filter_device}")).expect("mqtt subscriber")
}

/// Subscribes to a device's migration reports on the embedded broker.
pub fn mqtt_report_subscriber(device_id: &str) -> Subscriber {
    subscribers::mqtt("127.0.0.1", broker().port, &format!("device/migration-report/{device_id}")).expect("mqtt report subscriber")
}

/// A pull subscription on the emulator's migration reports topic.
pub fn pubsub_report_subscriber(emulator: &EmulatorHandle, name: &str) -> Subscriber {
    subscribers::pubsub(&emulator.url(), PROJECT, REPORTS_TOPIC, name).expect("pubsub report subscriber")
}

/// The migration reports `c` received, parsed, in arrival order.
pub fn reports(c: &Collected) -> Vec<serde_json::Value> {
    c.all().into_iter().map(|r| serde_json::from_slice(&r.payload).expect("a report is JSON")).collect()
}

/// A pull subscription on the emulator's test topic.
pub fn pubsub_subscriber(emulator: &EmulatorHandle, name: &str) -> Subscriber {
    subscribers::pubsub(&emulator.url(), PROJECT, TOPIC, name).expect("pubsub subscriber")
}

/// A unique device id per test.
pub fn device(name: &str) -> String {
    format!("{name}-{}", std::process::id())
}

/// A migration config with Pub/Sub at `percentage`.
pub fn rollout(percentage: f64) -> MigrationConfig {
    MigrationConfig { version: 1, pubsub_enabled: true, pubsub_percentage: percentage, ..MigrationConfig::default() }
}

/// The data directory a test device uses (it survives the publisher, for restart tests).
pub fn data_dir(device_id: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("dualpub-test-{device_id}"))
}

/// The outbox database of a test device, for tests that reach into it.
pub fn outbox_db(device_id: &str) -> std::path::PathBuf {
    data_dir(device_id).join("outbox.db")
}

/// An MQTT URL nobody listens on (a free port): MQTT keeps everything queued.
pub fn dead_mqtt() -> String {
    format!("mqtt://127.0.0.1:{}", dualpub_testbed::free_port().unwrap())
}

/// The CA of the test binary's TLS fronts.
pub fn local_ca() -> &'static dualpub_testbed::tls::LocalCa {
    static CA: OnceLock<dualpub_testbed::tls::LocalCa> = OnceLock::new();
    CA.get_or_init(dualpub_testbed::tls::LocalCa::new)
}

/// The port of a TLS front (with [`local_ca`]'s certificate) for the loopback port `port`: one
/// per port for the test binary's life.
pub fn tls_front(port: u16) -> u16 {
    static FRONTS: OnceLock<std::sync::Mutex<std::collections::HashMap<u16, u16>>> = OnceLock::new();
    let mut fronts = FRONTS.get_or_init(Default::default).lock().unwrap();
    *fronts.entry(port).or_insert_with(|| {
        let front = dualpub_testbed::tls::TlsFront::start(std::net::SocketAddr::from(([127, 0, 0, 1], port)), local_ca()).expect("TLS front");
        Box::leak(Box::new(front)).port
    })
}

/// The embedded broker over TLS.
pub fn tls_broker_url() -> String {
    format!("mqtts://127.0.0.1:{}", tls_front(broker().port))
}

/// An SDK config for the local test bed.
pub fn config(device_id: &str, mqtt_url: &str, endpoint: &str, migration: MigrationConfig) -> SdkConfig {
    SdkConfig::builder(device_id, mqtt_url, PROJECT, data_dir(device_id).to_string_lossy())
        .company_id("c-9")
        .pubsub_endpoint(endpoint)
        .pubsub_topic(TOPIC)
        .pubsub_batch(100, 1_000_000, 50)
        .mqtt_keep_alive_secs(30)
        .migration(migration)
        .allow_insecure(true)
        .into_unchecked()
}

/// A test device on the local test bed: `TestDevice::new(&id, &emu).rollout(100.0).start()`.
/// Defaults: the embedded broker, company `c-9`, Pub/Sub at 0 %, batches of 100 within 50 ms,
/// a data directory of its own under the temp dir, no token provider, and the SDK's default
/// upload window (30 s: tests that do not flush wait for it; see [`TestDevice::real_time`]).
pub struct TestDevice {
    config: SdkConfig,
    tokens: Option<Arc<dyn TokenProvider>>,
}

impl TestDevice {
    /// Device `id` (used as given) publishing to the embedded broker and `emu`.
    pub fn new(id: &str, emu: &EmulatorHandle) -> Self {
        TestDevice { config: config(id, &broker().url(), &emu.url(), rollout(0.0)), tokens: None }
    }

    /// Device `id` on the embedded broker, publishing to the Pub/Sub REST endpoint `endpoint`
    /// (a hostile test server rather than the emulator).
    pub fn with_endpoint(id: &str, endpoint: &str) -> Self {
        TestDevice { config: config(id, &broker().url(), endpoint, rollout(0.0)), tokens: None }
    }

    /// Pub/Sub at `percentage` (config version 1).
    pub fn rollout(self, percentage: f64) -> Self {
        self.migration(rollout(percentage))
    }

    /// This migration config at start-up.
    pub fn migration(mut self, m: MigrationConfig) -> Self {
        self.config.migration = Some(m);
        self
    }

    /// Another MQTT broker URL.
    pub fn mqtt(mut self, url: &str) -> Self {
        self.config.mqtt.broker_url = url.into();
        self
    }

    /// A token provider for Pub/Sub.
    pub fn tokens(mut self, tokens: Arc<dyn TokenProvider>) -> Self {
        self.tokens = Some(tokens);
        self
    }

    /// Upload window 0: every location is sent as soon as it is durable. For tests of
    /// real-time mechanics (batch latency, breakers, fallback timing, decision changes while
    /// sending) that the default 30 s window would otherwise hold until its burst.
    pub fn real_time(mut self) -> Self {
        self.config.upload_window_secs = 0;
        self
    }

    /// Over TLS, as in production: the embedded broker and the emulator through TLS fronts
    /// (`mqtts://`, `https://`) with [`local_ca`] as `caCertificatesPem`; any other MQTT URL
    /// (a dead port) keeps its port with `mqtts://`. Call it after [`TestDevice::mqtt`].
    pub fn over_tls(mut self) -> Self {
        let port_of = |url: &str| url.rsplit(':').next().and_then(|p| p.trim_end_matches('/').parse::<u16>().ok());
        let c = &mut self.config;
        c.mqtt.broker_url = match port_of(&c.mqtt.broker_url) {
            Some(p) if p == broker().port => tls_broker_url(),
            Some(p) => format!("mqtts://127.0.0.1:{p}"),
            None => c.mqtt.broker_url.clone(),
        };
        if let Some(p) = port_of(&c.pubsub.endpoint) {
            c.pubsub.endpoint = format!("https://127.0.0.1:{}", tls_front(p));
        }
        c.mqtt.ca_certificates_pem = Some(local_ca().ca_pem.clone());
        c.pubsub.ca_certificates_pem = Some(local_ca().ca_pem.clone());
        self
    }

    /// Any other setting.
    pub fn with(mut self, change: impl FnOnce(&mut SdkConfig)) -> Self {
        change(&mut self.config);
        self
    }

    /// The config, to start a publisher some other way.
    pub fn config(self) -> SdkConfig {
        self.config
    }

    /// Starts the publisher (`DualPublisher`, as an app would).
    pub fn try_start(self) -> Result<Arc<DualPublisher>, dualpub::DualPubError> {
        DualPublisher::new(self.config, self.tokens)
    }

    /// Starts the publisher; panics (the test fails) if it refuses.
    pub fn start(self) -> Arc<DualPublisher> {
        let id = self.config.device_id.clone();
        self.try_start().unwrap_or_else(|e| panic!("publisher for {id} refused to start: {e}"))
    }
}

/// The `n`th location of a test track.
pub fn location(n: usize) -> Location {
    Location {
        latitude: 52.52 + n as f64 * 1e-4,
        longitude: 13.405,
        accuracy: Some(5.0),
        speed: Some(1.2),
        bearing: Some(90.0),
        altitude: Some(34.0),
        timestamp_ms: 1_763_790_000_000 + n as i64 * 1000,
        battery: Some(0.82),
    }
}

/// Waits until `c` has seen every id in `ids`.
pub fn wait_for_all(c: &Collected, ids: &[String], timeout: Duration) -> bool {
    c.wait_until(timeout, |c| {
        let got: HashSet<String> = c.all().into_iter().map(|r| r.event_id).collect();
        ids.iter().all(|i| got.contains(i))
    })
}

/// Event ids `c` received, in order.
pub fn event_ids(c: &Collected) -> Vec<String> {
    c.all().into_iter().map(|r| r.event_id).collect()
}

/// Threads, open file descriptors and resident bytes of this process (Linux).
pub fn footprint() -> Option<(usize, usize, u64)> {
    let count = |dir: &str| std::fs::read_dir(dir).map(|d| d.count()).ok();
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let resident_pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some((count("/proc/self/task")?, count("/proc/self/fd")?, resident_pages * 4096))
}
