//! Shared helpers of the integration tests: configs, locations, and the test bed.
#![allow(dead_code, unused_imports)]

use dualpub::{Location, MigrationConfig, MqttSettings, PubSubSettings, SdkConfig};
pub use dualpub_testbed::broker::EmbeddedBroker;
pub use dualpub_testbed::subscribers::{self, Collected, Subscriber};
pub use dualpub_testbed::{EmulatorHandle, EmulatorOptions, FaultPlan};
use std::collections::HashSet;
use std::sync::OnceLock;
use std::time::Duration;

pub const PROJECT: &str = "test-project";
pub const TOPIC: &str = "location-updates";

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
    e.emulator().set_bearer_token(token);
    e
}

/// Subscribes to every device topic on the embedded broker.
pub fn mqtt_subscriber(filter_device: &str) -> Subscriber {
    subscribers::mqtt("127.0.0.1", broker().port, &format!("device/telemetry/{filter_device}")).expect("mqtt subscriber")
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

/// An SDK config for the local test bed.
pub fn config(device_id: &str, mqtt_url: &str, endpoint: &str, migration: MigrationConfig) -> SdkConfig {
    SdkConfig {
        device_id: device_id.into(),
        company_id: Some("c-9".into()),
        mqtt: MqttSettings {
            broker_url: mqtt_url.into(),
            client_id: None,
            username: None,
            password: None,
            keep_alive_secs: 30,
            idle_disconnect_secs: 30,
            topic_template: dualpub::wire::DEFAULT_TOPIC_TEMPLATE.into(),
            ca_certificates_pem: None,
        },
        pubsub: PubSubSettings {
            endpoint: endpoint.into(),
            project: PROJECT.into(),
            topic: TOPIC.into(),
            ordering_enabled: true,
            max_batch_messages: 100,
            max_batch_bytes: 1_000_000,
            max_batch_latency_ms: 50,
            ca_certificates_pem: None,
        },
        data_dir: std::env::temp_dir().join(format!("dualpub-test-{device_id}")).to_string_lossy().into_owned(),
        migration: Some(migration),
        allow_insecure: true,
        max_outbox_rows: 100_000,
        max_outbox_age_hours: 168,
        max_storage_bytes: None,
        remote_config_url: None,
        config_fetch_interval_secs: dualpub::config::DEFAULT_CONFIG_FETCH_INTERVAL_SECS,
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
