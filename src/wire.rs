//! The wire contract (docs/CONTRACT.md#wire-format): the JSON bytes both transports carry, the MQTT topic and the
//! Pub/Sub attributes. One encoding, done once per location, so both backends see the same bytes.

use crate::location::Location;
use serde::Serialize;
use std::collections::BTreeMap;

/// `schemaVersion` of the JSON document.
pub const SCHEMA_VERSION: u32 = 1;

/// The `sdk` attribute: `dualpub/<version>`.
pub const SDK_ID: &str = concat!("dualpub/", env!("CARGO_PKG_VERSION"));

/// The default MQTT topic template; `{deviceId}` is replaced by the device id.
pub const DEFAULT_TOPIC_TEMPLATE: &str = "device/telemetry/{deviceId}";

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WireLocation<'a> {
    event_id: &'a str,
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

/// A new eventId: a UUIDv7, so ids sort by acceptance time and backends can dedupe on them.
pub fn new_event_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Encodes a validated location as the UTF-8 JSON both transports carry (optional fields
/// omitted, field order fixed).
pub fn encode(event_id: &str, device_id: &str, company_id: Option<&str>, loc: &Location) -> Vec<u8> {
    let wire = WireLocation {
        event_id,
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
    serde_json::to_vec(&wire).unwrap_or_default()
}

/// The MQTT topic for a device: the template with `{deviceId}` replaced.
pub fn mqtt_topic(template: &str, device_id: &str) -> String {
    template.replace("{deviceId}", device_id)
}

/// The Pub/Sub attributes of one message (docs/CONTRACT.md#pubsub-attributes).
pub fn pubsub_attributes(device_id: &str, company_id: Option<&str>, event_id: &str, timestamp_ms: i64) -> BTreeMap<&'static str, String> {
    let mut a = BTreeMap::new();
    a.insert("deviceId", device_id.to_string());
    a.insert("eventId", event_id.to_string());
    a.insert("timestamp", timestamp_ms.to_string());
    a.insert("priority", "normal".to_string());
    a.insert("schemaVersion", SCHEMA_VERSION.to_string());
    a.insert("sdk", SDK_ID.to_string());
    if let Some(c) = company_id {
        a.insert("companyId", c.to_string());
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_the_contract_example_byte_for_byte() {
        let loc = crate::location::contract_example();
        let json = encode("01936f1e-7c3a-7cc1-9f0a-3b2f6c1d2e4f", "d-1", Some("c-9"), &loc);
        let want = r#"{"eventId":"01936f1e-7c3a-7cc1-9f0a-3b2f6c1d2e4f","deviceId":"d-1","companyId":"c-9","latitude":52.52,"longitude":13.405,"accuracy":5.0,"speed":1.2,"bearing":90.0,"altitude":34.0,"timestamp":1763790000000,"battery":0.82,"schemaVersion":1}"#;
        assert_eq!(String::from_utf8(json).unwrap(), want);
    }

    #[test]
    fn omits_optional_fields() {
        let loc = Location { latitude: 1.0, longitude: 2.0, accuracy: None, speed: None, bearing: None, altitude: None, timestamp_ms: 5, battery: None };
        let json = String::from_utf8(encode("e", "d", None, &loc)).unwrap();
        assert_eq!(json, r#"{"eventId":"e","deviceId":"d","latitude":1.0,"longitude":2.0,"timestamp":5,"schemaVersion":1}"#);
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
    fn topic_and_attributes_follow_the_contract() {
        assert_eq!(mqtt_topic(DEFAULT_TOPIC_TEMPLATE, "d-1"), "device/telemetry/d-1");
        let a = pubsub_attributes("d-1", Some("c-9"), "e-1", 1763790000000);
        assert_eq!(a["deviceId"], "d-1");
        assert_eq!(a["eventId"], "e-1");
        assert_eq!(a["timestamp"], "1763790000000");
        assert_eq!(a["priority"], "normal");
        assert_eq!(a["schemaVersion"], "1");
        assert_eq!(a["companyId"], "c-9");
        assert!(a["sdk"].starts_with("dualpub/"));
        assert!(!pubsub_attributes("d", None, "e", 1).contains_key("companyId"));
    }
}
