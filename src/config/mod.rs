//! Configuration: the app's [`SdkConfig`] (fixed at construction: endpoints, credentials,
//! storage) and the remote [`MigrationConfig`] (flags and percentages only, docs/CONTRACT.md#migration-config).

pub(crate) mod builder;
pub(crate) mod fetch;
pub mod rollout;
pub(crate) mod source;

use crate::error::{bounded, ConfigError, Error};
use crate::location::validate_id;
use rollout::RolloutAlgorithm;
use serde::Deserialize;
use std::collections::HashMap;

/// The salt used when a config names none.
pub const DEFAULT_SALT: &str = "pubsub-migration";

/// Longest accepted rollout salt, in bytes.
pub const MAX_SALT_BYTES: usize = 256;

/// A per-device or per-company override. Unset fields fall through to the global config.
#[derive(Debug, Clone, Default, PartialEq, uniffi::Record)]
pub struct Override {
    /// Forces MQTT on or off (the at-least-one-transport invariant still holds).
    #[uniffi(default = None)]
    pub mqtt_enabled: Option<bool>,
    /// `false` forces Pub/Sub off; `true` forces it on unless a percentage is also given.
    #[uniffi(default = None)]
    pub pubsub_enabled: Option<bool>,
    /// A percentage for this device or company, applied to the device's own bucket.
    #[uniffi(default = None)]
    pub pubsub_percentage: Option<f64>,
}

/// The migration config (docs/CONTRACT.md#migration-config). `Default` is the compiled-in config: MQTT only.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct MigrationConfig {
    /// Monotonic version of the document, reported in decisions and metrics.
    #[uniffi(default = 0)]
    pub version: u64,
    /// Publish to MQTT.
    #[uniffi(default = true)]
    pub mqtt_enabled: bool,
    /// Publish to Pub/Sub (subject to the percentage).
    #[uniffi(default = false)]
    pub pubsub_enabled: bool,
    /// Share of devices on Pub/Sub, 0–100 in steps of 0.01.
    #[uniffi(default = 0.0)]
    pub pubsub_percentage: f64,
    /// Send to MQTT what Pub/Sub cannot deliver.
    #[uniffi(default = true)]
    pub fallback_to_mqtt: bool,
    /// Verbose diagnostics.
    #[uniffi(default = false)]
    pub debug_mode: bool,
    /// Kill switch: Pub/Sub off, MQTT on, for every device.
    #[uniffi(default = false)]
    pub emergency_mode: bool,
    /// Salt of the `v1` bucketing; a new salt reshuffles cohorts.
    #[uniffi(default = "pubsub-migration")]
    pub rollout_salt: String,
    /// Bucketing algorithm.
    pub rollout_algorithm: RolloutAlgorithm,
    /// Overrides by device id.
    #[uniffi(default)]
    pub device_overrides: HashMap<String, Override>,
    /// Overrides by company id.
    #[uniffi(default)]
    pub company_overrides: HashMap<String, Override>,
    /// Devices send migration reports (docs/CONTRACT.md#migration-reports); `reports.enabled`.
    #[uniffi(default = true)]
    pub reports_enabled: bool,
    /// Seconds between two migration reports, 300–86,400 (`reports.intervalSecs`).
    #[uniffi(default = 900)]
    pub report_interval_secs: u32,
    /// Seconds between two upload bursts, 0–3,600 (`upload.windowSecs`; docs/CONTRACT.md#upload-windows):
    /// both transports send only in bursts this far apart (0: at once). `None`: the app's
    /// `SdkConfig.uploadWindowSecs`.
    #[uniffi(default = None)]
    pub upload_window_secs: Option<u32>,
}

impl Default for MigrationConfig {
    fn default() -> Self {
        MigrationConfig {
            version: 0,
            mqtt_enabled: true,
            pubsub_enabled: false,
            pubsub_percentage: 0.0,
            fallback_to_mqtt: true,
            debug_mode: false,
            emergency_mode: false,
            rollout_salt: DEFAULT_SALT.into(),
            rollout_algorithm: RolloutAlgorithm::V1,
            device_overrides: HashMap::new(),
            company_overrides: HashMap::new(),
            reports_enabled: true,
            report_interval_secs: DEFAULT_REPORT_INTERVAL_SECS,
            upload_window_secs: None,
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawOverride {
    mqtt_enabled: Option<bool>,
    pubsub_enabled: Option<bool>,
    pubsub_percentage: Option<f64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawReports {
    enabled: Option<bool>,
    interval_secs: Option<u32>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawUpload {
    window_secs: Option<u32>,
}

#[derive(Deserialize)]
struct RawRollout {
    salt: Option<String>,
    algorithm: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawConfig {
    version: Option<u64>,
    mqtt_enabled: Option<bool>,
    pubsub_enabled: Option<bool>,
    pubsub_percentage: Option<f64>,
    fallback_to_mqtt: Option<bool>,
    debug_mode: Option<bool>,
    emergency_mode: Option<bool>,
    rollout: Option<RawRollout>,
    device_overrides: Option<serde_json::Map<String, serde_json::Value>>,
    company_overrides: Option<serde_json::Map<String, serde_json::Value>>,
    reports: Option<RawReports>,
    upload: Option<RawUpload>,
}

/// The upload window when neither the app nor the config sets one, in seconds: a burst every
/// 30 s lets the cellular radio sleep between them (docs/CONTRACT.md#upload-windows).
pub const DEFAULT_UPLOAD_WINDOW_SECS: u32 = 30;

/// Longest upload window, in seconds (`upload.windowSecs`, `SdkConfig.uploadWindowSecs`).
pub const MAX_UPLOAD_WINDOW_SECS: u32 = 3600;

/// Largest config document accepted, in bytes (a hostile megabyte string is refused unread).
pub const MAX_DOCUMENT_BYTES: usize = 256 * 1024;

/// Keys a remote config may not use: endpoints, credentials and storage are the app's alone.
pub const FORBIDDEN_KEYS: &[&str] = &[
    "mqtt",
    "pubsub",
    "endpoint",
    "brokerUrl",
    "mqttUrl",
    "pubsubEndpoint",
    "project",
    "topic",
    "username",
    "password",
    "token",
    "credentials",
    "clientId",
    "caCertificatesPem",
    "dataDir",
    "remoteConfigUrl",
    "allowInsecure",
];

/// A parsed document: the config, plus what was skipped or ignored in it (each with a reason).
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedConfig {
    /// The config to apply.
    pub config: MigrationConfig,
    /// Overrides left out because they were invalid (the rest of the document applies).
    pub skipped: Vec<String>,
    /// Fields ignored because a remote config may not set them.
    pub ignored: Vec<String>,
}

/// Walks a JSON document and fails on a key repeated within one object (serde_json would
/// silently keep the last one), recording the key in `found` so the caller can tell a
/// duplicate from malformed JSON by type, not by message text.
struct NoDuplicateKeys<'a> {
    found: &'a std::cell::RefCell<Option<String>>,
}

impl<'de> serde::de::DeserializeSeed<'de> for NoDuplicateKeys<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for NoDuplicateKeys<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<(), A::Error> {
        while a.next_element_seed(NoDuplicateKeys { found: self.found })?.is_some() {}
        Ok(())
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<(), A::Error> {
        let mut seen = std::collections::HashSet::new();
        while let Some(k) = a.next_key::<String>()? {
            if !seen.insert(k.clone()) {
                let key = truncate(&k);
                *self.found.borrow_mut() = Some(key.clone());
                return Err(serde::de::Error::custom(format!("duplicate key {key:?}")));
            }
            a.next_value_seed(NoDuplicateKeys { found: self.found })?;
        }
        Ok(())
    }
}

/// Checks `json` for a repeated key in any object.
fn check_duplicate_keys(json: &str) -> Result<(), ConfigError> {
    use serde::de::DeserializeSeed;
    let found = std::cell::RefCell::new(None);
    let mut de = serde_json::Deserializer::from_str(json);
    let walked = NoDuplicateKeys { found: &found }.deserialize(&mut de).and_then(|()| de.end());
    match (walked, found.into_inner()) {
        (Ok(()), _) => Ok(()),
        (Err(e), Some(_)) => Err(ConfigError::DuplicateKey(bounded(e))),
        (Err(e), None) => Err(ConfigError::Malformed(bounded(e))),
    }
}

impl MigrationConfig {
    /// Parses a config document; see [`MigrationConfig::parse`].
    pub fn from_json(json: &str) -> Result<Self, ConfigError> {
        Self::parse(json).map(|p| p.config)
    }

    /// Parses a config document (docs/CONTRACT.md#migration-config). Unknown fields are ignored and missing ones take
    /// the compiled-in defaults. A document that is not JSON, too large, has a repeated key, or
    /// an invalid global value is refused whole; an invalid override is skipped and reported,
    /// the rest applied; fields that try to set endpoints, credentials or storage are ignored
    /// and reported.
    pub fn parse(json: &str) -> Result<ParsedConfig, ConfigError> {
        if json.len() > MAX_DOCUMENT_BYTES {
            return Err(ConfigError::TooLarge(json.len()));
        }
        let parsed = Self::parse_any_size(json)?;
        parsed.config.validate()?;
        Ok(parsed)
    }

    /// Reads back the last known good copy the SDK persisted itself. Never refused for its size:
    /// an emergency rollback must survive an offline restart whatever a host app merged into it.
    pub(crate) fn from_persisted(json: &str) -> Result<Self, ConfigError> {
        Self::parse_any_size(json).map(|p| p.config)
    }

    fn parse_any_size(json: &str) -> Result<ParsedConfig, ConfigError> {
        check_duplicate_keys(json)?;
        let top: serde_json::Map<String, serde_json::Value> = serde_json::from_str(json).map_err(|e| ConfigError::Malformed(bounded(e)))?;
        let ignored: Vec<String> = FORBIDDEN_KEYS.iter().filter(|k| top.contains_key(**k)).map(|k| format!("{k}: a remote config cannot change it")).collect();
        let raw: RawConfig = serde_json::from_value(serde_json::Value::Object(top)).map_err(|e| ConfigError::Malformed(bounded(e)))?;
        let d = MigrationConfig::default();
        let (salt, algorithm) = match raw.rollout {
            Some(r) => {
                let algorithm = match r.algorithm.as_deref() {
                    None => RolloutAlgorithm::V1,
                    Some(a) => RolloutAlgorithm::parse(a).ok_or_else(|| ConfigError::InvalidValue {
                        field: "rollout.algorithm".into(),
                        reason: format!("unknown algorithm {:?} (expected \"v1\" or \"crc32\")", truncate(a)),
                    })?,
                };
                (r.salt.unwrap_or(d.rollout_salt), algorithm)
            }
            None => (d.rollout_salt, d.rollout_algorithm),
        };
        let mut skipped = Vec::new();
        let mut convert = |field: &str, kind: &'static str, m: Option<serde_json::Map<String, serde_json::Value>>| -> HashMap<String, Override> {
            let mut out: HashMap<String, Override> = HashMap::new();
            let mut normalized = std::collections::HashSet::new();
            for (k, v) in m.unwrap_or_default() {
                let parsed = serde_json::from_value::<RawOverride>(v).map_err(bounded).and_then(|o| {
                    validate_id(kind, &k).map_err(|e| e.to_string())?;
                    if !normalized.insert(crate::config::rollout::normalize_id(&k)) {
                        return Err("another override names the same id (ids match case-insensitively)".into());
                    }
                    if let Some(p) = o.pubsub_percentage {
                        percentage("pubsubPercentage", p).map_err(|e| e.to_string())?;
                    }
                    Ok(Override { mqtt_enabled: o.mqtt_enabled, pubsub_enabled: o.pubsub_enabled, pubsub_percentage: o.pubsub_percentage })
                });
                match parsed {
                    Ok(o) => {
                        out.insert(k, o);
                    }
                    Err(why) => skipped.push(format!("{field}[{:?}]: {why}", truncate(&k))),
                }
            }
            out
        };
        let device_overrides = convert("deviceOverrides", "device id", raw.device_overrides);
        let company_overrides = convert("companyOverrides", "company id", raw.company_overrides);
        let config = MigrationConfig {
            version: raw.version.unwrap_or(d.version),
            mqtt_enabled: raw.mqtt_enabled.unwrap_or(d.mqtt_enabled),
            pubsub_enabled: raw.pubsub_enabled.unwrap_or(d.pubsub_enabled),
            pubsub_percentage: raw.pubsub_percentage.unwrap_or(d.pubsub_percentage),
            fallback_to_mqtt: raw.fallback_to_mqtt.unwrap_or(d.fallback_to_mqtt),
            debug_mode: raw.debug_mode.unwrap_or(d.debug_mode),
            emergency_mode: raw.emergency_mode.unwrap_or(d.emergency_mode),
            rollout_salt: salt,
            rollout_algorithm: algorithm,
            device_overrides,
            company_overrides,
            reports_enabled: raw.reports.as_ref().and_then(|r| r.enabled).unwrap_or(d.reports_enabled),
            report_interval_secs: raw.reports.as_ref().and_then(|r| r.interval_secs).unwrap_or(d.report_interval_secs),
            upload_window_secs: raw.upload.as_ref().and_then(|u| u.window_secs).or(d.upload_window_secs),
        };
        config.validate_values()?;
        Ok(ParsedConfig { config, skipped, ignored })
    }

    /// The config as a document of the same shape `from_json` reads.
    pub fn to_json(&self) -> serde_json::Value {
        let overrides = |m: &HashMap<String, Override>| -> serde_json::Value {
            m.iter()
                .map(|(k, o)| {
                    let mut v = serde_json::Map::new();
                    if let Some(b) = o.mqtt_enabled {
                        v.insert("mqttEnabled".into(), b.into());
                    }
                    if let Some(b) = o.pubsub_enabled {
                        v.insert("pubsubEnabled".into(), b.into());
                    }
                    if let Some(p) = o.pubsub_percentage {
                        v.insert("pubsubPercentage".into(), p.into());
                    }
                    (k.clone(), serde_json::Value::Object(v))
                })
                .collect::<serde_json::Map<_, _>>()
                .into()
        };
        let mut doc = serde_json::json!({
            "version": self.version,
            "mqttEnabled": self.mqtt_enabled,
            "pubsubEnabled": self.pubsub_enabled,
            "pubsubPercentage": self.pubsub_percentage,
            "fallbackToMqtt": self.fallback_to_mqtt,
            "debugMode": self.debug_mode,
            "emergencyMode": self.emergency_mode,
            "rollout": {"salt": self.rollout_salt, "algorithm": self.rollout_algorithm.as_str()},
            "deviceOverrides": overrides(&self.device_overrides),
            "companyOverrides": overrides(&self.company_overrides),
            "reports": {"enabled": self.reports_enabled, "intervalSecs": self.report_interval_secs},
        });
        if let Some(w) = self.upload_window_secs {
            doc["upload"] = serde_json::json!({ "windowSecs": w });
        }
        doc
    }

    /// Checks every value and the size ([`MAX_DOCUMENT_BYTES`] as JSON): every config applied,
    /// whatever its source, passes here, so whatever is persisted reads back.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.document().map(drop)
    }

    /// The config as the JSON document the SDK persists, once [`MigrationConfig::validate`]
    /// holds (the size is measured on this very text).
    pub(crate) fn document(&self) -> Result<String, ConfigError> {
        self.validate_values()?;
        let text = self.to_json().to_string();
        if text.len() > MAX_DOCUMENT_BYTES {
            return Err(ConfigError::TooLarge(text.len()));
        }
        Ok(text)
    }

    /// Checks every value (not the size).
    fn validate_values(&self) -> Result<(), ConfigError> {
        percentage("pubsubPercentage", self.pubsub_percentage)?;

        if !(MIN_REPORT_INTERVAL_SECS..=MAX_REPORT_INTERVAL_SECS).contains(&self.report_interval_secs) {
            return Err(ConfigError::InvalidValue {
                field: "reports.intervalSecs".into(),
                reason: format!("{} is not in {MIN_REPORT_INTERVAL_SECS}–{MAX_REPORT_INTERVAL_SECS}", self.report_interval_secs),
            });
        }
        if let Some(w) = self.upload_window_secs.filter(|w| *w > MAX_UPLOAD_WINDOW_SECS) {
            return Err(ConfigError::InvalidValue { field: "upload.windowSecs".into(), reason: format!("{w} is not in 0–{MAX_UPLOAD_WINDOW_SECS}") });
        }
        if self.rollout_salt.is_empty() || self.rollout_salt.len() > MAX_SALT_BYTES {
            return Err(ConfigError::InvalidValue { field: "rollout.salt".into(), reason: format!("must be 1–{MAX_SALT_BYTES} bytes") });
        }
        for (kind, field, map) in [("device id", "deviceOverrides", &self.device_overrides), ("company id", "companyOverrides", &self.company_overrides)] {
            let mut seen = std::collections::HashSet::new();
            for (id, o) in map {
                if !seen.insert(crate::config::rollout::normalize_id(id)) {
                    return Err(ConfigError::InvalidValue {
                        field: format!("{field}[{:?}]", truncate(id)),
                        reason: "two overrides name the same id (ids match case-insensitively)".into(),
                    });
                }
                validate_id(kind, id).map_err(|e| ConfigError::InvalidValue { field: format!("{field}[{:?}]", truncate(id)), reason: e.to_string() })?;
                if let Some(p) = o.pubsub_percentage {
                    percentage(&format!("{field}[{id:?}].pubsubPercentage"), p)?;
                }
            }
        }
        Ok(())
    }
}

fn percentage(field: &str, p: f64) -> Result<(), ConfigError> {
    if p.is_finite() && (0.0..=100.0).contains(&p) {
        Ok(())
    } else {
        Err(ConfigError::InvalidValue { field: field.into(), reason: format!("{p} is not a percentage in [0, 100]") })
    }
}

/// Keeps hostile megabyte strings out of error messages and logs.
fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

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
}

/// The default Pub/Sub topic of migration reports (`pubsub.reportsTopic`).
pub const DEFAULT_REPORTS_TOPIC: &str = "migration-reports";

/// Default time between two reports, in seconds.
pub const DEFAULT_REPORT_INTERVAL_SECS: u32 = 900;
/// Least time between two reports, whatever the config says (only `close` may report sooner).
pub const MIN_REPORT_INTERVAL_SECS: u32 = 300;
/// Most time between two reports a config may ask for.
pub const MAX_REPORT_INTERVAL_SECS: u32 = 86_400;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_need_tls_unless_insecure_is_allowed() {
        assert!(https_url("f", "https://c.example/x.json", false).is_ok());
        assert!(https_url("f", "http://127.0.0.1:8086/x", true).is_ok());
        for (bad, insecure) in [("http://127.0.0.1/x", false), ("https://", true), ("http://", true), ("ftp://c.example/x", true), ("c.example", true)] {
            let e = https_url("remoteConfigUrl", bad, insecure).expect_err(bad);
            assert!(e.to_string().contains("remoteConfigUrl"), "{e}");
        }
    }

    #[test]
    fn parses_the_contract_example_document() {
        let c = MigrationConfig::from_json(
            r#"{"version": 42, "mqttEnabled": true, "pubsubEnabled": true, "pubsubPercentage": 25.5,
            "fallbackToMqtt": true, "debugMode": false, "emergencyMode": false,
            "rollout": {"salt": "pubsub-migration", "algorithm": "v1"},
            "deviceOverrides":  {"d-1": {"pubsubEnabled": true}},
            "companyOverrides": {"c-9": {"pubsubPercentage": 100}}, "futureField": [1,2]}"#,
        )
        .unwrap();
        assert_eq!(c.version, 42);
        assert_eq!(c.pubsub_percentage, 25.5);
        assert_eq!(c.device_overrides["d-1"].pubsub_enabled, Some(true));
        assert_eq!(c.company_overrides["c-9"].pubsub_percentage, Some(100.0));
    }

    #[test]
    fn a_bad_override_is_skipped_and_forbidden_fields_ignored() {
        let p = MigrationConfig::parse(
            r#"{"version": 3, "pubsubEnabled": true, "brokerUrl": "mqtt://evil", "password": "x",
            "deviceOverrides": {"a/b": {"pubsubEnabled": true}, "ok-1": {"pubsubEnabled": true}, "d": {"pubsubEnabled": 1},
                                "Dev-2": {"mqttEnabled": false}, "dev-2": {"mqttEnabled": true}},
            "companyOverrides": {"c": {"pubsubPercentage": 200}, "c-9": {"pubsubPercentage": 50}}}"#,
        )
        .unwrap();
        assert_eq!(p.config.version, 3);
        assert!(p.config.device_overrides.contains_key("ok-1"));
        assert!(p.config.company_overrides.contains_key("c-9"));
        assert_eq!(p.config.device_overrides.len() + p.config.company_overrides.len(), 3, "{p:?}");
        assert_eq!(p.skipped.len(), 4, "{:?}", p.skipped);
        assert_eq!(p.ignored.len(), 2, "{:?}", p.ignored);
        assert!(matches!(MigrationConfig::parse(&format!(r#"{{"rollout": {{"salt": "{}"}}}}"#, "x".repeat(300_000))), Err(ConfigError::TooLarge(_))));
    }

    #[test]
    fn to_json_round_trips() {
        let c = MigrationConfig::from_json(
            r#"{"version": 4, "pubsubEnabled": true, "pubsubPercentage": 12.5, "debugMode": true,
            "rollout": {"salt": "s", "algorithm": "crc32"}, "deviceOverrides": {"d": {"mqttEnabled": false}}}"#,
        )
        .unwrap();
        assert_eq!(MigrationConfig::from_json(&c.to_json().to_string()).unwrap(), c);
    }

    #[test]
    fn missing_fields_take_the_mqtt_only_defaults() {
        assert_eq!(MigrationConfig::from_json("{}").unwrap(), MigrationConfig::default());
        let c = MigrationConfig::from_json(r#"{"rollout":{"algorithm":"crc32"}}"#).unwrap();
        assert_eq!((c.rollout_algorithm, c.rollout_salt.as_str()), (RolloutAlgorithm::Crc32, DEFAULT_SALT));
    }

    #[test]
    fn invalid_documents_are_rejected_whole() {
        for bad in [
            "",
            "[]",
            "not json",
            r#"{"pubsubPercentage": 101}"#,
            r#"{"pubsubPercentage": -0.5}"#,
            r#"{"pubsubPercentage": "50"}"#,
            r#"{"pubsubPercentage": 1e999}"#,
            r#"{"mqttEnabled": "yes"}"#,
            r#"{"version": -1}"#,
            r#"{"rollout": {"algorithm": "md5"}}"#,
            r#"{"rollout": {"salt": ""}}"#,
            r#"{"version": 1, "version": 2}"#,
            r#"{"deviceOverrides": {"d": {"pubsubEnabled": true, "pubsubEnabled": false}}}"#,
        ] {
            assert!(MigrationConfig::from_json(bad).is_err(), "accepted {bad:?}");
        }
    }
}
