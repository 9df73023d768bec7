//! Who gets Pub/Sub: the stable bucketing (docs/CONTRACT.md#bucketing) and the per-device decision.
//! Computed here, once, in Rust — never re-implemented in Kotlin or Swift.

use crate::config::{MigrationConfig, Override};
use sha2::{Digest, Sha256};

/// Number of `v1` buckets: steps of 0.01 %.
pub const V1_BUCKETS: u64 = 10_000;

/// Which hash puts a device in a bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, uniffi::Enum)]
pub enum RolloutAlgorithm {
    /// `SHA-256(salt + ":" + normalized id)`, first 8 bytes big-endian, mod 10 000 (the default).
    V1,
    /// `crc32_ieee(raw id bytes) % 100`, compatible with the backend gateway's percentage routing (docs/CONTRACT.md#crc32).
    Crc32,
}

impl RolloutAlgorithm {
    /// The name used in config documents and vectors: `v1` or `crc32`.
    pub fn as_str(&self) -> &'static str {
        match self {
            RolloutAlgorithm::V1 => "v1",
            RolloutAlgorithm::Crc32 => "crc32",
        }
    }

    /// Parses `v1` or `crc32`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "v1" => Some(RolloutAlgorithm::V1),
            "crc32" => Some(RolloutAlgorithm::Crc32),
            _ => None,
        }
    }
}

/// Why a device publishes where it does; visible to the app and in metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum DecisionReason {
    /// `emergencyMode` is set: Pub/Sub off, MQTT on.
    Emergency,
    /// A per-device override decided.
    DeviceOverride,
    /// A per-company override decided.
    CompanyOverride,
    /// `pubsubEnabled` is false.
    Disabled,
    /// The device's bucket is inside the rollout percentage.
    RolloutIn,
    /// The device's bucket is outside the rollout percentage.
    RolloutOut,
}

impl DecisionReason {
    /// The snake_case label used in logs and metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            DecisionReason::Emergency => "emergency",
            DecisionReason::DeviceOverride => "device_override",
            DecisionReason::CompanyOverride => "company_override",
            DecisionReason::Disabled => "disabled",
            DecisionReason::RolloutIn => "rollout_in",
            DecisionReason::RolloutOut => "rollout_out",
        }
    }
}

/// Where this device publishes under the config in force, and why.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct RolloutDecision {
    /// Locations go to MQTT.
    pub mqtt_enabled: bool,
    /// Locations go to Pub/Sub.
    pub pubsub_enabled: bool,
    /// Locations Pub/Sub cannot deliver also go to MQTT.
    pub fallback_to_mqtt: bool,
    /// Why.
    pub reason: DecisionReason,
    /// The device's bucket under the config's algorithm and salt (0–9 999 for `v1`, 0–99 for `crc32`).
    pub bucket: u32,
    /// The `version` of the config that decided.
    pub config_version: u64,
    /// MQTT's circuit breaker is open (connections keep failing); filled in by `decision()`.
    pub mqtt_circuit_open: bool,
    /// Pub/Sub's circuit breaker is open (locations also go to MQTT when `fallbackToMqtt`).
    pub pubsub_circuit_open: bool,
}

/// `v1` normalisation: ASCII whitespace trimmed, ASCII letters lowercased (Kotlin UUIDs are
/// lowercase, Swift's uppercase; both must land in the same bucket).
pub fn normalize_id(device_id: &str) -> String {
    device_id.trim_matches(|c: char| c.is_ascii_whitespace()).to_ascii_lowercase()
}

/// The device's bucket under `algorithm` (the salt matters only for `v1`).
pub fn bucket(algorithm: RolloutAlgorithm, salt: &str, device_id: &str) -> u32 {
    match algorithm {
        RolloutAlgorithm::V1 => {
            let mut h = Sha256::new();
            h.update(salt.as_bytes());
            h.update(b":");
            h.update(normalize_id(device_id).as_bytes());
            let digest = h.finalize();
            let mut first = [0u8; 8];
            first.copy_from_slice(&digest[..8]);
            (u64::from_be_bytes(first) % V1_BUCKETS) as u32
        }
        RolloutAlgorithm::Crc32 => crc32fast::hash(device_id.as_bytes()) % 100,
    }
}

/// `round(percentage × 100)`, rounding halves away from zero: the threshold in 0.01 % steps.
pub fn threshold(percentage: f64) -> u32 {
    (percentage * 100.0).round().clamp(0.0, V1_BUCKETS as f64) as u32
}

/// Whether `bucket` is inside `percentage` under `algorithm`'s rule.
pub fn in_rollout(algorithm: RolloutAlgorithm, bucket: u32, percentage: f64) -> bool {
    let t = threshold(percentage);
    match algorithm {
        RolloutAlgorithm::V1 => bucket < t,
        RolloutAlgorithm::Crc32 => bucket * 100 < t,
    }
}

/// The decision for one device, in the order of docs/CONTRACT.md#decision: emergency, device override, company
/// override, `pubsubEnabled == false`, bucket rule. At least one transport is always on.
pub fn decide(config: &MigrationConfig, device_id: &str, company_id: Option<&str>) -> RolloutDecision {
    let algorithm = config.rollout_algorithm;
    let bucket = bucket(algorithm, &config.rollout_salt, device_id);
    let global_pubsub = config.pubsub_enabled && in_rollout(algorithm, bucket, config.pubsub_percentage);
    let apply_override = |o: &Override| -> (bool, bool) {
        let pubsub = match (o.pubsub_enabled, o.pubsub_percentage) {
            (Some(false), _) => false,
            (_, Some(p)) => in_rollout(algorithm, bucket, p),
            (Some(true), None) => true,
            (None, None) => global_pubsub,
        };
        (o.mqtt_enabled.unwrap_or(config.mqtt_enabled), pubsub)
    };
    let (mut mqtt, pubsub, reason) = if config.emergency_mode {
        (true, false, DecisionReason::Emergency)
    } else if let Some(o) = find_override(&config.device_overrides, device_id) {
        let (m, p) = apply_override(o);
        (m, p, DecisionReason::DeviceOverride)
    } else if let Some(o) = company_id.and_then(|c| find_override(&config.company_overrides, c)) {
        let (m, p) = apply_override(o);
        (m, p, DecisionReason::CompanyOverride)
    } else if !config.pubsub_enabled {
        (config.mqtt_enabled, false, DecisionReason::Disabled)
    } else if global_pubsub {
        (config.mqtt_enabled, true, DecisionReason::RolloutIn)
    } else {
        (config.mqtt_enabled, false, DecisionReason::RolloutOut)
    };
    if !mqtt && !pubsub {
        mqtt = true;
    }
    RolloutDecision {
        mqtt_enabled: mqtt,
        pubsub_enabled: pubsub,
        fallback_to_mqtt: config.fallback_to_mqtt,
        reason,
        bucket,
        config_version: config.version,
        mqtt_circuit_open: false,
        pubsub_circuit_open: false,
    }
}

/// Overrides match the id exactly, or else after `v1` normalisation.
fn find_override<'a>(map: &'a std::collections::HashMap<String, Override>, id: &str) -> Option<&'a Override> {
    map.get(id).or_else(|| {
        let n = normalize_id(id);
        map.iter().find(|(k, _)| normalize_id(k) == n).map(|(_, v)| v)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn cfg(pct: f64) -> MigrationConfig {
        MigrationConfig { pubsub_enabled: true, pubsub_percentage: pct, ..MigrationConfig::default() }
    }

    #[test]
    fn normalisation_makes_kotlin_and_swift_uuids_agree() {
        let lower = "3f2504e0-4f89-11d3-9a0c-0305e82c3301";
        let upper = "  3F2504E0-4F89-11D3-9A0C-0305E82C3301\t";
        assert_eq!(bucket(RolloutAlgorithm::V1, "s", lower), bucket(RolloutAlgorithm::V1, "s", upper));
        // crc32 hashes the raw bytes, as the gateway does.
        assert_ne!(bucket(RolloutAlgorithm::Crc32, "", "ABC"), bucket(RolloutAlgorithm::Crc32, "", "abc"));
    }

    #[test]
    fn known_values() {
        // Independently computed: python3 -c "import hashlib;d=hashlib.sha256(b'pubsub-migration:d-1').digest();print(int.from_bytes(d[:8],'big')%10000)"
        // and zlib.crc32(b'd-1') % 100; the full set lives in tests/vectors/bucketing.json.
        assert_eq!(bucket(RolloutAlgorithm::V1, "pubsub-migration", "d-1"), 648);
        assert_eq!(bucket(RolloutAlgorithm::V1, "pubsub-migration", "demo-device-0"), 8856);
        assert_eq!(bucket(RolloutAlgorithm::Crc32, "ignored", "d-1"), 43);
        assert_eq!(threshold(25.5), 2550);
        assert_eq!(threshold(0.01), 1);
        assert_eq!(threshold(99.99), 9999);
        assert_eq!(threshold(100.0), 10_000);
    }

    #[test]
    fn raising_the_percentage_only_adds_devices() {
        let ids: Vec<String> = (0..2000).map(|i| format!("dev-{i}")).collect();
        let mut previous: Vec<bool> = vec![false; ids.len()];
        for pct in [0.0, 0.01, 1.0, 10.0, 25.5, 50.0, 99.99, 100.0] {
            let c = cfg(pct);
            for (i, id) in ids.iter().enumerate() {
                let on = decide(&c, id, None).pubsub_enabled;
                assert!(on || !previous[i], "{id} left the cohort at {pct}");
                previous[i] = on;
            }
        }
        assert!(previous.iter().all(|&on| on));
    }

    #[test]
    fn precedence_follows_the_contract() {
        let mut c = cfg(0.0);
        c.device_overrides.insert("d-1".into(), Override { pubsub_enabled: Some(true), ..Default::default() });
        c.company_overrides.insert("c-9".into(), Override { pubsub_percentage: Some(100.0), ..Default::default() });
        assert_eq!(decide(&c, "d-1", None).reason, DecisionReason::DeviceOverride);
        assert!(decide(&c, "D-1 ", None).pubsub_enabled, "override matches the normalised id");
        let by_company = decide(&c, "d-2", Some("c-9"));
        assert_eq!((by_company.reason, by_company.pubsub_enabled), (DecisionReason::CompanyOverride, true));
        let plain = decide(&c, "d-2", Some("c-1"));
        assert_eq!((plain.reason, plain.pubsub_enabled), (DecisionReason::RolloutOut, false));
        c.emergency_mode = true;
        let e = decide(&c, "d-1", Some("c-9"));
        assert_eq!((e.reason, e.pubsub_enabled, e.mqtt_enabled), (DecisionReason::Emergency, false, true));
        let off = MigrationConfig { pubsub_enabled: false, pubsub_percentage: 100.0, ..MigrationConfig::default() };
        assert_eq!(decide(&off, "x", None).reason, DecisionReason::Disabled);
    }

    #[test]
    fn at_least_one_transport_stays_on() {
        let c = MigrationConfig { mqtt_enabled: false, pubsub_enabled: false, ..MigrationConfig::default() };
        let d = decide(&c, "d-1", None);
        assert!(d.mqtt_enabled && !d.pubsub_enabled);
        let mut o = HashMap::new();
        o.insert("d-1".to_string(), Override { mqtt_enabled: Some(false), pubsub_enabled: Some(false), ..Default::default() });
        let c = MigrationConfig { device_overrides: o, ..MigrationConfig::default() };
        assert!(decide(&c, "d-1", None).mqtt_enabled);
        let only_pubsub = MigrationConfig { mqtt_enabled: false, ..cfg(100.0) };
        let d = decide(&only_pubsub, "d-1", None);
        assert!(!d.mqtt_enabled && d.pubsub_enabled);
    }
}
