//! Where the migration config in force came from, its status, the app's `ConfigListener`, and
//! the mapping of host-app remote values (Firebase Remote Config keys, docs/CONTRACT.md#host-remote-values).

use crate::config::rollout::RolloutDecision;
use crate::config::MigrationConfig;
use crate::error::ConfigError;
use std::collections::HashMap;

/// Where the config in force came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum ConfigSource {
    /// Compiled-in defaults: MQTT only.
    Defaults,
    /// `SdkConfig.migration`, or `applyConfig` / `applyConfigJson` called by the app.
    App,
    /// The last known good config, read from the data directory at start-up.
    Persisted,
    /// `applyRemoteValues` (the host app's own remote config).
    Host,
    /// Fetched from `SdkConfig.remoteConfigUrl`.
    Fetched,
}

impl ConfigSource {
    /// The label stored with the config and shown in reports.
    pub fn as_str(&self) -> &'static str {
        match self {
            ConfigSource::Defaults => "defaults",
            ConfigSource::App => "app",
            ConfigSource::Persisted => "persisted",
            ConfigSource::Host => "host",
            ConfigSource::Fetched => "fetched",
        }
    }
}

/// What the SDK knows about the config in force.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct ConfigStatus {
    /// `version` of the config in force.
    pub version: u64,
    /// Where it came from.
    pub source: ConfigSource,
    /// When it was applied (ms since the epoch; for a persisted config, when it was first applied).
    pub applied_at_ms: i64,
    /// Config documents or values refused since start-up.
    pub rejected: u64,
    /// When the last fetch from `remoteConfigUrl` started (ms since the epoch), if ever.
    pub last_fetch_at_ms: Option<i64>,
    /// How the last fetch ended, if there was one.
    pub last_fetch_result: Option<crate::config::fetch::FetchResult>,
    /// The ETag of the document fetched last.
    pub etag: Option<String>,
    /// No fetch is made before this time (a backoff after failures), if set.
    pub backoff_until_ms: Option<i64>,
    /// Failed fetches in a row.
    pub consecutive_fetch_failures: u32,
    /// When the next scheduled fetch is due (none without a URL or while in the background).
    pub next_fetch_at_ms: Option<i64>,
}

/// Implemented by the app to hear about every change of decision (a rollout step reaching this
/// device, an emergency rollback), in order, one call at a time. Called on the thread that
/// applied the config (`applyConfig*`, `refreshConfig`) or, for a scheduled fetch, on an SDK
/// callback thread (never the main thread, never a transport's); should return quickly. A
/// change the listener makes itself is told after it returns.
#[uniffi::export(foreign)]
pub trait ConfigListener: Send + Sync {
    /// The decision changed from `old` to `new`.
    fn on_decision_changed(&self, old: RolloutDecision, new: RolloutDecision);
}

fn parse_bool(key: &str, v: &str) -> Result<bool, ConfigError> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(ConfigError::InvalidValue { field: key.into(), reason: format!("{:?} is not a boolean", v.chars().take(32).collect::<String>()) }),
    }
}

/// The key under which the persisted config lists the device overrides set by remote values.
pub(crate) const HOST_OVERRIDES_KEY: &str = "hostOverrideIds";

/// Builds the config the host app's remote values describe, on top of `current`: the keys of
/// the migration plan (`pubsub_rollout_percentage`, `debug_mode`, `migration_override_<deviceId>` holding a
/// JSON override) plus `pubsub_enabled`, `mqtt_enabled`, `fallback_to_mqtt`, `emergency_mode`,
/// `rollout_salt` and `config_version`. Unknown keys are ignored; a bad value refuses them all.
/// The values are the host's whole set: a device override an earlier set made (`host_ids`) and
/// this one no longer names (or names with an empty value) is removed. Returns the config and
/// the ids of the overrides the values set.
pub fn from_remote_values(
    current: &MigrationConfig,
    host_ids: &std::collections::BTreeSet<String>,
    values: &HashMap<String, String>,
) -> Result<(MigrationConfig, std::collections::BTreeSet<String>), ConfigError> {
    let mut c = current.clone();
    let mut overrides = HashMap::new();
    for (key, value) in values {
        match key.as_str() {
            "pubsub_rollout_percentage" => {
                c.pubsub_percentage = value.trim().parse::<f64>().map_err(|_| ConfigError::InvalidValue {
                    field: key.clone(),
                    reason: format!("{:?} is not a number", value.chars().take(32).collect::<String>()),
                })?
            }
            "debug_mode" => c.debug_mode = parse_bool(key, value)?,
            "pubsub_enabled" => c.pubsub_enabled = parse_bool(key, value)?,
            "mqtt_enabled" => c.mqtt_enabled = parse_bool(key, value)?,
            "fallback_to_mqtt" => c.fallback_to_mqtt = parse_bool(key, value)?,
            "emergency_mode" => c.emergency_mode = parse_bool(key, value)?,
            "rollout_salt" => c.rollout_salt = value.clone(),
            "config_version" => {
                c.version = value.trim().parse().map_err(|_| ConfigError::InvalidValue { field: key.clone(), reason: "not a version number".into() })?
            }
            k if k.starts_with("migration_override_") => {
                let device = &k["migration_override_".len()..];
                if value.trim().is_empty() {
                    continue;
                }
                let doc = format!(r#"{{"deviceOverrides": {{{}: {value}}}}}"#, serde_json::to_string(device).unwrap_or_default());
                let invalid = |reason: String| ConfigError::InvalidValue { field: key.to_string(), reason };
                let parsed = MigrationConfig::parse(&doc).map_err(|e| invalid(e.to_string()))?;
                if let Some(why) = parsed.skipped.first() {
                    return Err(invalid(why.clone()));
                }
                overrides.extend(parsed.config.device_overrides);
            }
            _ => {}
        }
    }
    let ids = overrides.keys().cloned().collect();
    c.device_overrides.retain(|id, _| !host_ids.contains(id));
    c.device_overrides.extend(overrides);
    c.validate()?;
    Ok((c, ids))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Override;

    fn values(kv: &[(&str, &str)]) -> HashMap<String, String> {
        kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn maps_the_remote_config_keys() {
        let (c, ids) = from_remote_values(
            &MigrationConfig::default(),
            &Default::default(),
            &values(&[
                ("pubsub_rollout_percentage", "25.5"),
                ("pubsub_enabled", "true"),
                ("debug_mode", "1"),
                ("migration_override_d-1", r#"{"pubsubEnabled": true}"#),
                ("config_version", "12"),
                ("unrelated_key", "whatever"),
            ]),
        )
        .unwrap();
        assert_eq!((c.pubsub_percentage, c.pubsub_enabled, c.debug_mode, c.version), (25.5, true, true, 12));
        assert_eq!(c.device_overrides["d-1"].pubsub_enabled, Some(true));
        assert_eq!(ids.into_iter().collect::<Vec<_>>(), vec!["d-1".to_string()]);
    }

    #[test]
    fn an_override_the_host_no_longer_names_is_removed_and_others_stay() {
        let mut current = MigrationConfig::default();
        current.device_overrides.insert("from-a-document".into(), Override { pubsub_enabled: Some(false), ..Default::default() });
        let (c, ids) = from_remote_values(&current, &Default::default(), &values(&[("migration_override_d-1", r#"{"pubsubEnabled": true}"#)])).unwrap();
        assert!(c.device_overrides.contains_key("d-1") && c.device_overrides.contains_key("from-a-document"));
        let (c, ids) = from_remote_values(&c, &ids, &values(&[("pubsub_enabled", "true")])).unwrap();
        assert!(!c.device_overrides.contains_key("d-1"), "the key is gone, so is its override");
        assert!(c.device_overrides.contains_key("from-a-document"), "an override the host did not set stays");
        assert!(ids.is_empty());
        let (c, ids) = from_remote_values(&c, &ids, &values(&[("migration_override_d-2", r#"{"mqttEnabled": false}"#)])).unwrap();
        let (c, _) = from_remote_values(&c, &ids, &values(&[("migration_override_d-2", "")])).unwrap();
        assert!(!c.device_overrides.contains_key("d-2"), "an empty value removes it too");
    }

    #[test]
    fn a_bad_value_refuses_them_all() {
        for bad in [
            ("pubsub_rollout_percentage", "fifty"),
            ("pubsub_rollout_percentage", "150"),
            ("emergency_mode", "maybe"),
            ("migration_override_d-1", "{not json"),
            ("migration_override_a/b", r#"{"pubsubEnabled": true}"#),
        ] {
            assert!(from_remote_values(&MigrationConfig::default(), &Default::default(), &values(&[bad])).is_err(), "{bad:?}");
        }
    }
}
