//! The wire contract (docs/CONTRACT.md#wire-format): the JSON bytes both transports carry, the MQTT topic and the
//! Pub/Sub attributes. One encoding, done once per location, so both backends see the same bytes.

use crate::location::Location;
use serde::Serialize;
use std::collections::BTreeMap;

/// `schemaVersion` of the JSON document.
pub const SCHEMA_VERSION: u32 = 2;

/// The `sdk` attribute: `dualpub/<version>`.
pub const SDK_ID: &str = concat!("dualpub/", env!("CARGO_PKG_VERSION"));

/// The default MQTT topic template; `{deviceId}` is replaced by the device id.
pub const DEFAULT_TOPIC_TEMPLATE: &str = "device/telemetry/{deviceId}";

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WireLocation<'a> {
    device_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    company_id: Option<&'a str>,
    latitude: f64,
    longitude: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    accuracy: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    speed: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bearing: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    altitude: Option<f64>,
    timestamp: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    battery: Option<f64>,
    schema_version: u32,
}

/// The routing decision a location was accepted under (the wire's `route`): which transports
/// the config sent it to. A fallback copy on MQTT keeps the `pubsub` it was accepted with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// MQTT and Pub/Sub.
    Both,
    /// MQTT only.
    Mqtt,
    /// Pub/Sub only.
    PubSub,
}

impl Route {
    /// The route of a decision that sends to MQTT (`mqtt`) and/or Pub/Sub (`pubsub`).
    pub fn of(mqtt: bool, pubsub: bool) -> Route {
        match (mqtt, pubsub) {
            (true, true) => Route::Both,
            (false, true) => Route::PubSub,
            // A decision always has a transport on; MQTT is the one that stays.
            _ => Route::Mqtt,
        }
    }

    /// `both`, `mqtt` or `pubsub`.
    pub fn as_str(self) -> &'static str {
        match self {
            Route::Both => "both",
            Route::Mqtt => "mqtt",
            Route::PubSub => "pubsub",
        }
    }
}

/// What a location's bytes end with, known only when it is accepted under the lock: its `seq`,
/// `route` and `cfg` (the migration config version in force).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Acceptance {
    /// Per device and data directory, +1 per accepted location.
    pub seq: u64,
    /// The decision it was accepted under.
    pub route: Route,
    /// The migration config version in force.
    pub cfg: u64,
}

/// A new eventId: a UUIDv7, so ids sort by acceptance time and backends can dedupe on them.
pub fn new_event_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Encodes a validated location as the UTF-8 JSON both transports carry (optional fields
/// omitted, field order fixed).
pub fn encode(event_id: &str, device_id: &str, company_id: Option<&str>, loc: &Location, acceptance: Acceptance) -> Vec<u8> {
    finish(event_id, &encode_start(device_id, company_id, loc), acceptance)
}

/// The location's fields from `deviceId` to `schemaVersion`, without braces: the expensive
/// part, done before the lock. [`finish`] wraps it with what acceptance decides: the eventId
/// (generated under the lock, so a device's eventIds and `seq`s are in the same order) before
/// it, `seq`, `route` and `cfg` after it.
pub fn encode_start(device_id: &str, company_id: Option<&str>, loc: &Location) -> Vec<u8> {
    let wire = WireLocation {
        device_id,
        company_id,
        latitude: loc.latitude,
        longitude: loc.longitude,
        accuracy: loc.accuracy,
        speed: loc.speed,
        bearing: loc.bearing,
        altitude: loc.altitude,
        timestamp: loc.timestamp_ms,
        battery: loc.battery,
        schema_version: SCHEMA_VERSION,
    };
    // Serialising plain numbers and validated strings cannot fail.
    let json = serde_json::to_vec(&wire).unwrap_or_default();
    // The fields without the braces: finish() writes them around the eventId and seq, route, cfg.
    json.get(1..json.len().saturating_sub(1)).unwrap_or_default().to_vec()
}

/// The whole document: `{"eventId":…,` [`encode_start`]'s fields `,"seq":…,"route":…,"cfg":…}`
/// (a few dozen bytes of copying, cheap enough to run under the outbox lock).
pub fn finish(event_id: &str, fields: &[u8], a: Acceptance) -> Vec<u8> {
    use std::io::Write;
    let mut json = Vec::with_capacity(fields.len() + event_id.len() + 64);
    // A UUID needs no JSON escaping.
    let _ = write!(json, "{{\"eventId\":\"{event_id}\",");
    json.extend_from_slice(fields);
    let _ = write!(json, ",\"seq\":{},\"route\":\"{}\",\"cfg\":{}}}", a.seq, a.route.as_str(), a.cfg);
    json
}

/// The `seq` a payload carries (version 2), read back from its bytes; `None` for a payload
/// without one (version 1) or that is not a JSON object.
pub(crate) fn seq_of(payload: &[u8]) -> Option<u64> {
    #[derive(serde::Deserialize)]
    struct Seq {
        seq: Option<u64>,
    }
    serde_json::from_slice::<Seq>(payload).ok()?.seq
}

/// The MQTT topic for a device: the template with `{deviceId}` replaced.
pub fn mqtt_topic(template: &str, device_id: &str) -> String {
    template.replace("{deviceId}", device_id)
}

/// One Pub/Sub message attribute the SDK can send (docs/CONTRACT.md#pubsub-attributes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, uniffi::Enum)]
pub enum PubsubAttribute {
    /// `deviceId`: always sent (routing, subscription filters).
    DeviceId,
    /// `eventId`: always sent (deduplication).
    EventId,
    /// `companyId`, when the app configured one (per-fleet subscription filters).
    CompanyId,
    /// `timestamp`: the payload's timestamp in ms.
    Timestamp,
    /// `priority`: always `normal`.
    Priority,
    /// `schemaVersion`: the payload's schema version.
    SchemaVersion,
    /// `sdk`: `dualpub/<version>`.
    Sdk,
}

/// Every attribute, in the order the contract lists them.
pub const ALL_ATTRIBUTES: [PubsubAttribute; 7] = [
    PubsubAttribute::DeviceId,
    PubsubAttribute::EventId,
    PubsubAttribute::CompanyId,
    PubsubAttribute::Timestamp,
    PubsubAttribute::Priority,
    PubsubAttribute::SchemaVersion,
    PubsubAttribute::Sdk,
];

/// What every message carries when the migration config names no list (`pubsub.attributes`):
/// what deduplication and routing need.
pub const DEFAULT_ATTRIBUTES: [PubsubAttribute; 3] = [PubsubAttribute::DeviceId, PubsubAttribute::EventId, PubsubAttribute::CompanyId];

/// What every list must hold: the contract's deduplication key and routing key.
pub const REQUIRED_ATTRIBUTES: [PubsubAttribute; 2] = [PubsubAttribute::DeviceId, PubsubAttribute::EventId];

impl PubsubAttribute {
    /// The attribute's name on the wire and in config documents.
    pub fn as_str(&self) -> &'static str {
        match self {
            PubsubAttribute::DeviceId => "deviceId",
            PubsubAttribute::EventId => "eventId",
            PubsubAttribute::CompanyId => "companyId",
            PubsubAttribute::Timestamp => "timestamp",
            PubsubAttribute::Priority => "priority",
            PubsubAttribute::SchemaVersion => "schemaVersion",
            PubsubAttribute::Sdk => "sdk",
        }
    }

    /// Parses an attribute name.
    pub fn parse(s: &str) -> Option<Self> {
        ALL_ATTRIBUTES.into_iter().find(|a| a.as_str() == s)
    }
}

/// The Pub/Sub attributes of one message: those of `only` that apply
/// (docs/CONTRACT.md#pubsub-attributes; `companyId` only when the app configured one).
pub fn pubsub_attributes(
    only: &[PubsubAttribute],
    device_id: &str,
    company_id: Option<&str>,
    event_id: &str,
    timestamp_ms: i64,
) -> BTreeMap<&'static str, String> {
    only.iter()
        .filter_map(|a| {
            let value = match a {
                PubsubAttribute::DeviceId => device_id.to_string(),
                PubsubAttribute::EventId => event_id.to_string(),
                PubsubAttribute::CompanyId => company_id?.to_string(),
                PubsubAttribute::Timestamp => timestamp_ms.to_string(),
                PubsubAttribute::Priority => "normal".to_string(),
                PubsubAttribute::SchemaVersion => SCHEMA_VERSION.to_string(),
                PubsubAttribute::Sdk => SDK_ID.to_string(),
            };
            Some((a.as_str(), value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_the_contract_example_byte_for_byte() {
        let loc = crate::location::contract_example();
        let json = encode("01936f1e-7c3a-7cc1-9f0a-3b2f6c1d2e4f", "d-1", Some("c-9"), &loc, Acceptance { seq: 1234, route: Route::Both, cfg: 42 });
        let want = r#"{"eventId":"01936f1e-7c3a-7cc1-9f0a-3b2f6c1d2e4f","deviceId":"d-1","companyId":"c-9","latitude":52.52,"longitude":13.405,"accuracy":5.0,"speed":1.2,"bearing":90.0,"altitude":34.0,"timestamp":1763790000000,"battery":0.82,"schemaVersion":2,"seq":1234,"route":"both","cfg":42}"#;
        assert_eq!(String::from_utf8(json).unwrap(), want);
    }

    #[test]
    fn omits_optional_fields() {
        let loc = Location { latitude: 1.0, longitude: 2.0, accuracy: None, speed: None, bearing: None, altitude: None, timestamp_ms: 5, battery: None };
        let json = String::from_utf8(encode("e", "d", None, &loc, Acceptance { seq: 1, route: Route::PubSub, cfg: 0 })).unwrap();
        assert_eq!(json, r#"{"eventId":"e","deviceId":"d","latitude":1.0,"longitude":2.0,"timestamp":5,"schemaVersion":2,"seq":1,"route":"pubsub","cfg":0}"#);
        let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(parsed["route"], "pubsub");
    }

    #[test]
    fn a_route_names_the_transports_of_the_decision() {
        assert_eq!([Route::of(true, true), Route::of(true, false), Route::of(false, true)], [Route::Both, Route::Mqtt, Route::PubSub]);
        assert_eq!(Route::of(false, false), Route::Mqtt, "no transport on means MQTT stays");
    }

    #[test]
    fn event_ids_are_uuid_v7_and_increase() {
        let a = new_event_id();
        let b = new_event_id();
        let u = uuid::Uuid::parse_str(&a).unwrap();
        assert_eq!(u.get_version_num(), 7);
        assert!(a < b, "{a} !< {b}");
    }

    #[test]
    fn attribute_names_read_back() {
        for a in ALL_ATTRIBUTES {
            assert_eq!(PubsubAttribute::parse(a.as_str()), Some(a));
        }
        assert_eq!(PubsubAttribute::parse("DeviceId"), None, "names are case-sensitive");
    }

    #[test]
    fn topic_and_attributes_follow_the_contract() {
        assert_eq!(mqtt_topic(DEFAULT_TOPIC_TEMPLATE, "d-1"), "device/telemetry/d-1");
        let all = ALL_ATTRIBUTES;
        let a = pubsub_attributes(&all, "d-1", Some("c-9"), "e-1", 1763790000000);
        assert_eq!(a["deviceId"], "d-1");
        assert_eq!(a["eventId"], "e-1");
        assert_eq!(a["timestamp"], "1763790000000");
        assert_eq!(a["priority"], "normal");
        assert_eq!(a["schemaVersion"], "2");
        assert_eq!(a["companyId"], "c-9");
        assert!(a["sdk"].starts_with("dualpub/"));
        assert!(!pubsub_attributes(&all, "d", None, "e", 1).contains_key("companyId"));
        let diet = pubsub_attributes(&DEFAULT_ATTRIBUTES, "d-1", Some("c-9"), "e-1", 1);
        assert_eq!(diet.keys().copied().collect::<Vec<_>>(), ["companyId", "deviceId", "eventId"], "the default: deduplication and routing");
    }
}
