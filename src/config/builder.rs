//! A builder for [`SdkConfig`] with the documented defaults, for Rust callers (the demo, the
//! benchmark, tests). Kotlin and Swift get the same defaults from the generated record
//! constructors.

use crate::config::{MigrationConfig, MqttSettings, PubSubSettings, SdkConfig, DEFAULT_CONFIG_FETCH_INTERVAL_SECS};
use crate::error::DualPubError;

/// Builds an [`SdkConfig`]: the four required settings up front, everything else defaulted as
/// README documents, [`SdkConfigBuilder::build`] validates.
///
/// ```
/// let config = dualpub::SdkConfig::builder("d-1", "mqtts://broker.example:8883", "my-project", "/data/dualpub")
///     .company_id("c-9")
///     .pubsub_batch(500, 1_000_000, 250)
///     .build()
///     .unwrap();
/// assert_eq!(config.pubsub.topic, "location-updates");
/// ```
#[derive(Debug, Clone)]
pub struct SdkConfigBuilder {
    config: SdkConfig,
}

impl SdkConfig {
    /// A builder for a device, its MQTT broker, its Google Cloud project and its data directory.
    pub fn builder(
        device_id: impl Into<String>,
        mqtt_broker_url: impl Into<String>,
        pubsub_project: impl Into<String>,
        data_dir: impl Into<String>,
    ) -> SdkConfigBuilder {
        SdkConfigBuilder {
            config: SdkConfig {
                device_id: device_id.into(),
                company_id: None,
                mqtt: MqttSettings {
                    broker_url: mqtt_broker_url.into(),
                    client_id: None,
                    username: None,
                    password: None,
                    keep_alive_secs: 60,
                    idle_disconnect_secs: 30,
                    topic_template: crate::wire::DEFAULT_TOPIC_TEMPLATE.into(),
                    ca_certificates_pem: None,
                },
                pubsub: PubSubSettings {
                    endpoint: "https://pubsub.googleapis.com".into(),
                    project: pubsub_project.into(),
                    topic: "location-updates".into(),
                    ordering_enabled: true,
                    max_batch_messages: 1000,
                    max_batch_bytes: 1_000_000,
                    max_batch_latency_ms: 500,
                    ca_certificates_pem: None,
                    reports_topic: crate::config::DEFAULT_REPORTS_TOPIC.into(),
                    compression: None,
                },
                data_dir: data_dir.into(),
                migration: None,
                allow_insecure: false,
                max_outbox_rows: 100_000,
                max_outbox_age_hours: 168,
                max_storage_bytes: None,
                remote_config_url: None,
                config_fetch_interval_secs: DEFAULT_CONFIG_FETCH_INTERVAL_SECS,
                reports_enabled: true,
                collection_enabled: true,
                app_version: None,
                os_version: None,
                upload_window_secs: crate::config::DEFAULT_UPLOAD_WINDOW_SECS,
            },
        }
    }
}

impl SdkConfigBuilder {
    /// The company (fleet) the device belongs to.
    pub fn company_id(mut self, id: impl Into<String>) -> Self {
        self.config.company_id = Some(id.into());
        self
    }

    /// Whether this app sends migration reports (default true; the config can stop them too).
    pub fn reports(mut self, enabled: bool) -> Self {
        self.config.reports_enabled = enabled;
        self
    }

    /// The app and OS versions the migration reports carry.
    pub fn versions(mut self, app_version: impl Into<String>, os_version: impl Into<String>) -> Self {
        self.config.app_version = Some(app_version.into());
        self.config.os_version = Some(os_version.into());
        self
    }

    /// Seconds between two upload bursts (default 30; 0 sends at once; the migration config's
    /// `upload.windowSecs` wins).
    pub fn upload_window_secs(mut self, secs: u32) -> Self {
        self.config.upload_window_secs = secs;
        self
    }

    /// The Pub/Sub REST endpoint (default `https://pubsub.googleapis.com`).
    pub fn pubsub_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.config.pubsub.endpoint = endpoint.into();
        self
    }

    /// The Pub/Sub topic id (default `location-updates`).
    pub fn pubsub_topic(mut self, topic: impl Into<String>) -> Self {
        self.config.pubsub.topic = topic.into();
        self
    }

    /// Whether requests carry `orderingKey = deviceId` (default on).
    pub fn pubsub_ordering(mut self, on: bool) -> Self {
        self.config.pubsub.ordering_enabled = on;
        self
    }

    /// Pub/Sub batch limits: messages, request bytes, and how long the oldest location may wait.
    pub fn pubsub_batch(mut self, max_messages: u32, max_bytes: u64, max_latency_ms: u64) -> Self {
        let p = &mut self.config.pubsub;
        (p.max_batch_messages, p.max_batch_bytes, p.max_batch_latency_ms) = (max_messages, max_bytes, max_latency_ms);
        self
    }

    /// How Pub/Sub request bodies are encoded, whatever the migration config says
    /// (docs/CONTRACT.md#compression); unset, the config's `pubsub.compression` decides.
    pub fn pubsub_compression(mut self, compression: crate::config::PubsubCompression) -> Self {
        self.config.pubsub.compression = Some(compression);
        self
    }

    /// Extra trusted CA certificates (PEM) for the Pub/Sub endpoint and the config URL.
    pub fn pubsub_ca_pem(mut self, pem: impl Into<String>) -> Self {
        self.config.pubsub.ca_certificates_pem = Some(pem.into());
        self
    }

    /// The MQTT client id (default `dualpub-<deviceId>`).
    pub fn mqtt_client_id(mut self, id: impl Into<String>) -> Self {
        self.config.mqtt.client_id = Some(id.into());
        self
    }

    /// MQTT username and password.
    pub fn mqtt_credentials(mut self, username: impl Into<String>, password: impl Into<String>) -> Self {
        self.config.mqtt.username = Some(username.into());
        self.config.mqtt.password = Some(crate::Secret::new(password.into()));
        self
    }

    /// MQTT keep-alive in seconds (default 60).
    pub fn mqtt_keep_alive_secs(mut self, secs: u32) -> Self {
        self.config.mqtt.keep_alive_secs = secs;
        self
    }

    /// Hang up MQTT after this many seconds without work (default 30).
    pub fn mqtt_idle_disconnect_secs(mut self, secs: u32) -> Self {
        self.config.mqtt.idle_disconnect_secs = secs;
        self
    }

    /// The MQTT topic template (default `device/telemetry/{deviceId}`).
    pub fn mqtt_topic_template(mut self, template: impl Into<String>) -> Self {
        self.config.mqtt.topic_template = template.into();
        self
    }

    /// Extra trusted CA certificates (PEM) for the MQTT broker.
    pub fn mqtt_ca_pem(mut self, pem: impl Into<String>) -> Self {
        self.config.mqtt.ca_certificates_pem = Some(pem.into());
        self
    }

    /// The migration config in force until another is applied (default: MQTT only).
    pub fn migration(mut self, migration: MigrationConfig) -> Self {
        self.config.migration = Some(migration);
        self
    }

    /// Allows `mqtt://` and `http://` (local development only).
    pub fn allow_insecure(mut self, allow: bool) -> Self {
        self.config.allow_insecure = allow;
        self
    }

    /// Outbox caps: most locations kept and their oldest age in hours (defaults 100,000 and 168).
    pub fn outbox_limits(mut self, max_rows: u32, max_age_hours: u32) -> Self {
        (self.config.max_outbox_rows, self.config.max_outbox_age_hours) = (max_rows, max_age_hours);
        self
    }

    /// Largest the outbox database may grow, in bytes (default: as the disk allows).
    pub fn max_storage_bytes(mut self, bytes: u64) -> Self {
        self.config.max_storage_bytes = Some(bytes);
        self
    }

    /// Where to fetch the migration config from, and the least time between scheduled fetches.
    pub fn remote_config(mut self, url: impl Into<String>, interval_secs: u32) -> Self {
        self.config.remote_config_url = Some(url.into());
        self.config.config_fetch_interval_secs = interval_secs;
        self
    }

    /// The config as built, not validated (for tests that want an invalid one).
    pub fn into_unchecked(self) -> SdkConfig {
        self.config
    }

    /// The config, validated as [`crate::Publisher::new`] would.
    pub fn build(self) -> Result<SdkConfig, DualPubError> {
        self.config.validate()?;
        Ok(self.config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builder_takes_the_documented_defaults() {
        let c = SdkConfig::builder("d-1", "mqtts://b.example", "p", "/tmp/x").build().unwrap();
        assert_eq!((c.mqtt.keep_alive_secs, c.mqtt.idle_disconnect_secs), (60, 30));
        assert_eq!((c.pubsub.max_batch_messages, c.pubsub.max_batch_latency_ms), (1000, 500));
        assert_eq!((c.max_outbox_rows, c.max_outbox_age_hours, c.config_fetch_interval_secs), (100_000, 168, 900));
        assert!(!c.allow_insecure && c.migration.is_none() && c.remote_config_url.is_none());
    }

    #[test]
    fn build_validates() {
        let e = SdkConfig::builder("d-1", "mqtt://b.example", "p", "/tmp/x").build().unwrap_err();
        assert!(e.to_string().contains("allowInsecure"), "{e}");
        assert!(SdkConfig::builder("d-1", "mqtt://b.example", "p", "/tmp/x").allow_insecure(true).build().is_ok());
        assert!(SdkConfig::builder("a/b", "mqtts://b.example", "p", "/tmp/x").build().is_err());
    }
}
