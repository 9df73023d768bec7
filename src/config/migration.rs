//! The remote migration config (docs/CONTRACT.md#migration-config): flags, percentages,
//! overrides and the report and upload settings, parsed strictly (duplicate keys, forbidden
//! fields, sizes) and validated before it may replace the one in force.

use super::compression::PubsubCompression;
use super::rollout::RolloutAlgorithm;
use crate::error::{bounded, ConfigError};
use crate::location::validate_id;
use crate::wire::{PubsubAttribute, REQUIRED_ATTRIBUTES};
use serde::Deserialize;
use std::collections::HashMap;

/// The salt used when a config names none.
pub const DEFAULT_SALT: &str = "pubsub-migration";

/// Default time between two reports, in seconds.
pub const DEFAULT_REPORT_INTERVAL_SECS: u32 = 900;
/// Least time between two reports, whatever the config says (only `close` may report sooner).
pub const MIN_REPORT_INTERVAL_SECS: u32 = 300;
/// Most time between two reports a config may ask for.
pub const MAX_REPORT_INTERVAL_SECS: u32 = 86_400;

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
    /// How Pub/Sub request bodies are encoded (`pubsub.compression`; docs/CONTRACT.md#compression).
    /// `None`: `auto`. The app's `PubSubSettings.compression`, when set, wins.
    #[uniffi(default = None)]
    pub pubsub_compression: Option<PubsubCompression>,
    /// The attributes every Pub/Sub message carries (`pubsub.attributes`;
    /// docs/CONTRACT.md#pubsub-attributes); must hold `deviceId` and `eventId`. `None`: `deviceId`,
    /// `eventId` and `companyId`.
    #[uniffi(default = None)]
    pub pubsub_attributes: Option<Vec<PubsubAttribute>>,
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
            pubsub_compression: None,
            pubsub_attributes: None,
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
    pubsub: Option<serde_json::Map<String, serde_json::Value>>,
}

/// The keys of the `pubsub` object a remote config may set; the rest (endpoint, project,
/// topic…) are the app's alone and ignored.
const PUBSUB_KEYS: [&str; 2] = ["compression", "attributes"];

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
        let mut top: serde_json::Map<String, serde_json::Value> = serde_json::from_str(json).map_err(|e| ConfigError::Malformed(bounded(e)))?;
        let mut ignored: Vec<String> =
            FORBIDDEN_KEYS.iter().filter(|k| top.contains_key(**k)).map(|k| format!("{k}: a remote config cannot change it")).collect();
        match top.get("pubsub") {
            Some(serde_json::Value::Object(p)) => ignored
                .extend(p.keys().filter(|k| !PUBSUB_KEYS.contains(&k.as_str())).map(|k| format!("pubsub.{}: a remote config cannot change it", truncate(k)))),
            Some(_) => {
                top.remove("pubsub");
                ignored.push("pubsub: a remote config can only set its compression and attributes".into());
            }
            None => {}
        }
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
        let (pubsub_compression, pubsub_attributes) = pubsub_wire(raw.pubsub.as_ref())?;
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
            pubsub_compression,
            pubsub_attributes,
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
        let mut pubsub = serde_json::Map::new();
        if let Some(c) = self.pubsub_compression {
            pubsub.insert("compression".into(), c.as_str().into());
        }
        if let Some(list) = &self.pubsub_attributes {
            pubsub.insert("attributes".into(), list.iter().map(|a| a.as_str()).collect::<Vec<_>>().into());
        }
        if !pubsub.is_empty() {
            doc["pubsub"] = pubsub.into();
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
        if let Some(list) = &self.pubsub_attributes {
            if let Some(missing) = REQUIRED_ATTRIBUTES.iter().find(|a| !list.contains(a)) {
                return Err(ConfigError::InvalidValue {
                    field: "pubsub.attributes".into(),
                    reason: format!("must hold {:?}: deduplication and routing need it", missing.as_str()),
                });
            }
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

/// Reads the `pubsub` object's `compression` and `attributes` (a wrong type or an unknown name
/// refuses the document: they change every request).
fn pubsub_wire(p: Option<&serde_json::Map<String, serde_json::Value>>) -> Result<(Option<PubsubCompression>, Option<Vec<PubsubAttribute>>), ConfigError> {
    let Some(p) = p else { return Ok((None, None)) };
    let invalid = |field: &str, reason: String| ConfigError::InvalidValue { field: field.into(), reason };
    let compression = match p.get("compression") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => Some(
            PubsubCompression::parse(s)
                .ok_or_else(|| invalid("pubsub.compression", format!("unknown value {:?} (expected \"auto\", \"gzip\" or \"none\")", truncate(s))))?,
        ),
        Some(_) => return Err(invalid("pubsub.compression", "must be a string".into())),
    };
    let attributes = match p.get("attributes") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::Array(names)) => {
            let mut list = Vec::with_capacity(names.len());
            for n in names {
                let name = n.as_str().ok_or_else(|| invalid("pubsub.attributes", "must be a list of attribute names".into()))?;
                let a = PubsubAttribute::parse(name).ok_or_else(|| invalid("pubsub.attributes", format!("unknown attribute {:?}", truncate(name))))?;
                if !list.contains(&a) {
                    list.push(a);
                }
            }
            Some(list)
        }
        Some(_) => return Err(invalid("pubsub.attributes", "must be a list of attribute names".into())),
    };
    Ok((compression, attributes))
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
