//! The app's settings ([`SdkConfig`]): endpoints, credentials, storage and limits, fixed when
//! the publisher is built and validated then.

use super::{MigrationConfig, MAX_UPLOAD_WINDOW_SECS};
use crate::error::Error;
use crate::location::validate_id;

/// MQTT connection settings.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct MqttSettings {
    /// `mqtts://host:port` (TLS) or, only with `allowInsecure`, `mqtt://host:port`.
    pub broker_url: String,
    /// MQTT client id; defaults to `dualpub-<deviceId>`.
    #[uniffi(default = None)]
    pub client_id: Option<String>,
    /// Username, if the broker wants one.
    #[uniffi(default = None)]
    pub username: Option<String>,
    /// Password (never logged, printed as `***`).
    #[uniffi(default = None)]
    pub password: Option<std::sync::Arc<crate::Secret>>,
    /// Keep-alive interval in seconds (5–3600).
    #[uniffi(default = 60)]
    pub keep_alive_secs: u32,
    /// Hang up after MQTT has owed nothing for this many seconds, so the radio can sleep
    /// (1–3600); the next location reconnects.
    #[uniffi(default = 30)]
    pub idle_disconnect_secs: u32,
    /// Topic template; `{deviceId}` is replaced by the device id.
    #[uniffi(default = "device/telemetry/{deviceId}")]
    pub topic_template: String,
    /// Extra trusted CA certificates (PEM), for private brokers; the bundled web PKI roots
    /// are always trusted too.
    #[uniffi(default = None)]
    pub ca_certificates_pem: Option<String>,
}

/// Google Pub/Sub settings.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct PubSubSettings {
    /// REST endpoint, `https://pubsub.googleapis.com` in production.
    #[uniffi(default = "https://pubsub.googleapis.com")]
    pub endpoint: String,
    /// Google Cloud project id.
    pub project: String,
    /// Topic id.
    #[uniffi(default = "location-updates")]
    pub topic: String,
    /// Send `orderingKey = deviceId` (the topic's subscription must enable ordering to benefit).
    #[uniffi(default = true)]
    pub ordering_enabled: bool,
    /// Flush a batch at this many messages (1–1000).
    #[uniffi(default = 1000)]
    pub max_batch_messages: u32,
    /// Flush a batch at this many request bytes (base64 counted; at most 10 MB).
    #[uniffi(default = 1000000)]
    pub max_batch_bytes: u64,
    /// Flush a batch this long after its oldest location was accepted.
    #[uniffi(default = 500)]
    pub max_batch_latency_ms: u64,
    /// Extra trusted CA certificates (PEM) for the endpoint.
    #[uniffi(default = None)]
    pub ca_certificates_pem: Option<String>,
    /// Topic id of the migration reports (docs/CONTRACT.md#how-reports-travel).
    #[uniffi(default = "migration-reports")]
    pub reports_topic: String,
    /// How request bodies are encoded, overriding the migration config's `pubsub.compression`
    /// (docs/CONTRACT.md#compression); `None`: the config decides (default `auto`).
    #[uniffi(default = None)]
    pub compression: Option<super::PubsubCompression>,
}

/// Everything the app decides at construction. Endpoints and credentials live only here; a
/// remote config can never change them.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct SdkConfig {
    /// This device's id (docs/CONTRACT.md#device-and-company-ids).
    pub device_id: String,
    /// The company (fleet) the device belongs to, for company overrides.
    #[uniffi(default = None)]
    pub company_id: Option<String>,
    /// MQTT settings.
    pub mqtt: MqttSettings,
    /// Pub/Sub settings.
    pub pubsub: PubSubSettings,
    /// A private directory the SDK owns (the outbox lives here).
    pub data_dir: String,
    /// The migration config in force until another is applied; `None` = MQTT only.
    #[uniffi(default = None)]
    pub migration: Option<MigrationConfig>,
    /// Allow `mqtt://` and `http://` (local development only).
    #[uniffi(default = false)]
    pub allow_insecure: bool,
    /// Most locations the outbox keeps; beyond it the oldest are dropped (and counted).
    #[uniffi(default = 100000)]
    pub max_outbox_rows: u32,
    /// Oldest location the outbox keeps, in hours; older ones are dropped (and counted).
    #[uniffi(default = 168)]
    pub max_outbox_age_hours: u32,
    /// Largest the outbox database may grow, in bytes (`None`: as the disk allows). Beyond it,
    /// new locations are kept in memory (up to `maxOutboxRows`) exactly as on a full disk.
    #[uniffi(default = None)]
    pub max_storage_bytes: Option<u64>,
    /// Where to fetch the migration config document (docs/CONTRACT.md#fetched-documents) from, `https://` (or `http://`
    /// with `allowInsecure`). `None`: the app applies configs itself. Verified against the web
    /// PKI roots plus `pubsub.caCertificatesPem`.
    #[uniffi(default = None)]
    pub remote_config_url: Option<String>,
    /// Least time between two scheduled fetches, in seconds (60–604800; default 15 minutes).
    /// `refreshConfig` ignores it; a backoff after failures is added to it.
    #[uniffi(default = 900)]
    pub config_fetch_interval_secs: u32,
    /// Send migration reports (docs/CONTRACT.md#migration-reports) when the config allows them;
    /// `false` opts this app out whatever the config says.
    #[uniffi(default = true)]
    pub reports_enabled: bool,
    /// The app's version, for migration reports (at most 32 characters of `A-Z a-z 0-9 . _ + -`).
    #[uniffi(default = None)]
    pub app_version: Option<String>,
    /// The OS version, for migration reports (same rule as `appVersion`).
    #[uniffi(default = None)]
    pub os_version: Option<String>,
    /// Seconds between two upload bursts (0–3,600) unless the migration config sets
    /// `upload.windowSecs`: locations are persisted at once and both transports send them
    /// together in one burst per window, so the radio can sleep in between
    /// (docs/CONTRACT.md#upload-windows). Default 30; 0 sends each location as soon as it is
    /// durable (for apps that need real time, at the radio's cost: docs/PERFORMANCE.md).
    #[uniffi(default = 30)]
    pub upload_window_secs: u32,
    /// Whether the SDK collects and uploads at start (default true). `false` starts it paused,
    /// as `setCollectionEnabled(false)` leaves it: pass the user's stored choice here at every
    /// start, so that nothing is sent before the app could pause it (docs/CONTRACT.md#pause-and-purge).
    #[uniffi(default = true)]
    pub collection_enabled: bool,
}

/// The default Pub/Sub topic of migration reports (`pubsub.reportsTopic`).
pub const DEFAULT_REPORTS_TOPIC: &str = "migration-reports";

/// Default least time between two scheduled config fetches (15 minutes).
pub const DEFAULT_CONFIG_FETCH_INTERVAL_SECS: u32 = 900;

/// Pub/Sub's documented request limits.
pub const PUBSUB_MAX_MESSAGES: u32 = 1000;
/// Pub/Sub's documented request size limit.
pub const PUBSUB_MAX_BYTES: u64 = 10_000_000;
/// Longest a location may wait for its Pub/Sub batch to fill.
pub const MAX_BATCH_LATENCY_MS: u64 = 60_000;

impl SdkConfig {
    /// Checks everything that can be checked without I/O.
    pub fn validate(&self) -> Result<(), crate::DualPubError> {
        self.check().map_err(Into::into)
    }

    /// [`SdkConfig::validate`], with the internal error.
    pub(crate) fn check(&self) -> Result<(), Error> {
        validate_id("device id", &self.device_id)?;
        if let Some(c) = &self.company_id {
            validate_id("company id", c)?;
        }
        let url = url::Url::parse(&self.mqtt.broker_url).map_err(|source| Error::Url { field: "mqtt.brokerUrl", source })?;
        match url.scheme() {
            "mqtts" | "ssl" => {}
            "mqtt" | "tcp" if self.allow_insecure => {}
            "mqtt" | "tcp" => return Err(Error::setting("mqtt.brokerUrl", "plaintext mqtt:// needs allowInsecure")),
            s => return Err(Error::setting("mqtt.brokerUrl", format!("unsupported scheme {s:?}"))),
        }
        if url.host_str().is_none() {
            return Err(Error::setting("mqtt.brokerUrl", "no host"));
        }
        if !(5..=3600).contains(&self.mqtt.keep_alive_secs) {
            return Err(Error::setting("mqtt.keepAliveSecs", "must be 5–3600"));
        }
        if !(1..=3600).contains(&self.mqtt.idle_disconnect_secs) {
            return Err(Error::setting("mqtt.idleDisconnectSecs", "must be 1–3600"));
        }
        let topic = crate::wire::mqtt_topic(&self.mqtt.topic_template, &self.device_id);
        if topic.is_empty() || topic.contains(['+', '#', '\0']) {
            return Err(Error::setting("mqtt.topicTemplate", "must give a topic without wildcards"));
        }
        https_url("pubsub.endpoint", &self.pubsub.endpoint, self.allow_insecure)?;
        for (field, v) in [("pubsub.project", &self.pubsub.project), ("pubsub.topic", &self.pubsub.topic), ("pubsub.reportsTopic", &self.pubsub.reports_topic)]
        {
            if v.is_empty() || !v.chars().all(|c| c.is_ascii_alphanumeric() || "-_.~%+".contains(c)) {
                return Err(Error::setting(field, format!("{v:?} is not a valid resource id")));
            }
        }
        if !(1..=PUBSUB_MAX_MESSAGES).contains(&self.pubsub.max_batch_messages) {
            return Err(Error::setting("pubsub.maxBatchMessages", format!("must be 1–{PUBSUB_MAX_MESSAGES}")));
        }
        if !(1_000..=PUBSUB_MAX_BYTES).contains(&self.pubsub.max_batch_bytes) {
            return Err(Error::setting("pubsub.maxBatchBytes", format!("must be 1000–{PUBSUB_MAX_BYTES}")));
        }
        for (field, pem) in [("mqtt.caCertificatesPem", &self.mqtt.ca_certificates_pem), ("pubsub.caCertificatesPem", &self.pubsub.ca_certificates_pem)] {
            if let Some(pem) = pem {
                crate::tls::parse_ca_pem(pem).map_err(|source| Error::Tls { field, source })?;
            }
        }
        if self.pubsub.max_batch_latency_ms > MAX_BATCH_LATENCY_MS {
            return Err(Error::setting("pubsub.maxBatchLatencyMs", format!("must be 0–{MAX_BATCH_LATENCY_MS}")));
        }
        if self.max_outbox_rows == 0 || self.max_outbox_age_hours == 0 {
            return Err(Error::setting("maxOutboxRows and maxOutboxAgeHours", "must be at least 1"));
        }
        if self.data_dir.is_empty() {
            return Err(Error::setting("dataDir", "is empty"));
        }
        if let Some(m) = &self.migration {
            m.validate()?;
        }
        if let Some(u) = &self.remote_config_url {
            https_url("remoteConfigUrl", u, self.allow_insecure)?;
        }
        if self.upload_window_secs > MAX_UPLOAD_WINDOW_SECS {
            return Err(Error::setting("uploadWindowSecs", format!("must be 0–{MAX_UPLOAD_WINDOW_SECS}")));
        }
        if !(60..=604_800).contains(&self.config_fetch_interval_secs) {
            return Err(Error::setting("configFetchIntervalSecs", "must be 60–604800"));
        }
        for (field, v) in [("appVersion", &self.app_version), ("osVersion", &self.os_version)] {
            if v.as_ref().is_some_and(|v| v.is_empty() || v.len() > 32 || !v.chars().all(|c| c.is_ascii_alphanumeric() || "._+-".contains(c))) {
                return Err(Error::setting(field, "must be 1–32 characters of A-Z a-z 0-9 . _ + -"));
            }
        }
        Ok(())
    }
}

/// Parses an HTTP endpoint of the app's settings: `https://`, or `http://` with `allowInsecure`
/// (an http(s) URL always has a host: the parser refuses one without).
pub(crate) fn https_url(field: &'static str, value: &str, allow_insecure: bool) -> Result<url::Url, Error> {
    let url = url::Url::parse(value).map_err(|source| Error::Url { field, source })?;
    match url.scheme() {
        "https" => Ok(url),
        "http" if allow_insecure => Ok(url),
        "http" => Err(Error::setting(field, "plaintext http:// needs allowInsecure")),
        s => Err(Error::setting(field, format!("unsupported scheme {s:?}"))),
    }
}
