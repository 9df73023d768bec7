//! Reading one location message (docs/CONTRACT.md#location-fields): the fields the verifier
//! joins and judges on, a digest of the whole message (xxHash64, as ClickHouse's `xxHash64`, so
//! `tools/rollup/sql/verify.sql` shows the same digests), and — for the rare copies whose bytes
//! differ — which fields differ, compared as JSON values.

use std::borrow::Cow;
use std::collections::BTreeMap;

/// The fields of a version 2 location, in the contract's order; a field outside this list is
/// compared as part of [`OTHER`].
pub const FIELDS: [&str; 15] = [
    "eventId",
    "deviceId",
    "companyId",
    "latitude",
    "longitude",
    "accuracy",
    "speed",
    "bearing",
    "altitude",
    "timestamp",
    "battery",
    "schemaVersion",
    "seq",
    "route",
    "cfg",
];

/// The name given to fields outside [`FIELDS`] that differ between copies.
pub const OTHER: &str = "(other)";

/// The digest of a message's bytes: xxHash64 with seed 0.
pub fn digest(bytes: &[u8]) -> u64 {
    xxhash_rust::xxh64::xxh64(bytes, 0)
}

/// A digest as the verifier's output shows it: 16 lowercase hex digits.
pub fn digest_hex(d: u64) -> String {
    format!("{d:016x}")
}

/// The parts of a location the verifier reads.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Location<'a> {
    // Borrowed unless escaped in the JSON (an id may hold `"` or `\`).
    #[serde(borrow)]
    pub event_id: Cow<'a, str>,
    #[serde(borrow)]
    pub device_id: Cow<'a, str>,
    pub timestamp: i64,
    pub seq: u64,
    #[serde(borrow)]
    pub route: Cow<'a, str>,
    pub cfg: u64,
}

/// Reads a message; `None` when it is not a version 2 location (not a JSON object with
/// `eventId`, `deviceId`, `timestamp`, `seq`, `route` and `cfg` of the right types, once each).
pub fn parse(bytes: &[u8]) -> Option<Location<'_>> {
    serde_json::from_slice(bytes).ok()
}

/// A copy's fields as comparable values: contract field (or [`OTHER`]) → its values in one form
/// per JSON value (fields outside the contract together, in name order). `None` when the bytes
/// are not a JSON object.
pub fn field_values(bytes: &[u8]) -> Option<BTreeMap<&'static str, String>> {
    let map: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(bytes).ok()?;
    let mut out = BTreeMap::new();
    let mut others = BTreeMap::new();
    for (k, v) in &map {
        match FIELDS.iter().find(|f| **f == k.as_str()) {
            Some(f) => {
                out.insert(*f, canonical(v));
            }
            None => {
                others.insert(k.as_str(), canonical(v));
            }
        }
    }
    if !others.is_empty() {
        out.insert(OTHER, format!("{others:?}"));
    }
    Some(out)
}

/// The fields whose values are not the same in every copy (absent in one and present in another
/// counts), in the contract's order, [`OTHER`] last.
pub fn differing(copies: &[BTreeMap<&'static str, String>]) -> Vec<&'static str> {
    FIELDS.iter().copied().chain([OTHER]).filter(|f| copies.windows(2).any(|w| w[0].get(f) != w[1].get(f))).collect()
}

/// A JSON value in one form per value, as ClickHouse's `JSONExtractKeysAndValuesRaw` writes
/// them (`tools/rollup/sql/verify_mismatches.sql`): a string decoded, a number that is an
/// integer (`1`, `1.0`, `1e3`) as that integer, any other number as its double (`52.520` is
/// `52.52`, `-0.0` is not `0`), other values written compactly.
fn canonical(v: &serde_json::Value) -> String {
    const TWO_63: f64 = 9_223_372_036_854_775_808.0;
    match v {
        serde_json::Value::String(s) => format!("s{s}"),
        serde_json::Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => format!("i{i}"),
            (_, Some(u), _) => format!("i{u}"),
            (_, _, Some(f)) if f.fract() == 0.0 && f.abs() < TWO_63 && !(f == 0.0 && f.is_sign_negative()) => format!("i{}", f as i64),
            (_, _, Some(f)) => format!("f{:x}", f.to_bits()),
            _ => format!("n{n}"),
        },
        other => format!("j{other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"{"eventId":"01936f1e-7c3a-7cc1-9f0a-3b2f6c1d2e4f","deviceId":"d-1","companyId":"c-9","latitude":52.52,"longitude":13.405,"accuracy":5.0,"speed":1.2,"bearing":90.0,"altitude":34.0,"timestamp":1763790000000,"battery":0.82,"schemaVersion":2,"seq":1234,"route":"both","cfg":42}"#;

    fn differ(a: &str, b: &str) -> Vec<&'static str> {
        differing(&[field_values(a.as_bytes()).unwrap(), field_values(b.as_bytes()).unwrap()])
    }

    #[test]
    fn a_location_is_read_and_its_fields_told_apart() {
        let a = parse(FULL.as_bytes()).unwrap();
        assert_eq!(
            (a.event_id.as_ref(), a.device_id.as_ref(), a.timestamp, a.seq, a.route.as_ref(), a.cfg),
            ("01936f1e-7c3a-7cc1-9f0a-3b2f6c1d2e4f", "d-1", 1763790000000, 1234, "both", 42)
        );
        assert!(matches!(a.event_id, Cow::Borrowed(_)));
        assert_eq!(differ(FULL, &FULL.replace("52.52", "52.53")), ["latitude"]);
        // Whitespace and field order: other bytes, the same fields.
        let spaced = FULL.replace(r#""latitude":"#, r#""latitude": "#).replace(r#""cfg":42}"#, r#""cfg":42 }"#);
        assert_ne!(digest(spaced.as_bytes()), digest(FULL.as_bytes()));
        assert_eq!(differ(FULL, &spaced), Vec::<&str>::new(), "values compare, not the bytes around them");
        // The same values spelled otherwise: the same fields (as ClickHouse compares them).
        let respelled =
            FULL.replace("52.52,", "52.520,").replace(r#""accuracy":5.0"#, r#""accuracy":5"#).replace(r#""deviceId":"d-1""#, r#""deviceId":"d\u002d1""#);
        assert_eq!(differ(FULL, &respelled), Vec::<&str>::new());
        assert_eq!(differ(&FULL.replace(r#""speed":1.2"#, r#""speed":-0.0"#), &FULL.replace(r#""speed":1.2"#, r#""speed":0"#)), ["speed"]);
        // A field gone, and one the contract does not know.
        assert_eq!(differ(FULL, &FULL.replace(r#""battery":0.82,"#, r#""extra":1,"#)), ["battery", OTHER]);
    }

    #[test]
    fn what_is_not_a_version_2_location_is_refused() {
        for bad in [
            "not json",
            "[1]",
            r#"{"eventId":"e","deviceId":"d","timestamp":1,"seq":1,"route":"both"}"#,
            r#"{"eventId":"e","deviceId":"d","timestamp":1,"seq":-1,"route":"both","cfg":1}"#,
            r#"{"eventId":"e","deviceId":"d","timestamp":1,"seq":1,"seq":2,"route":"both","cfg":1}"#,
            r#"{"eventId":"e","deviceId":"d","timestamp":1.5,"seq":1,"route":"both","cfg":1}"#,
            r#"{"eventId":"e","deviceId":"d","timestamp":1,"seq":1,"route":"both","cfg":1} x"#,
        ] {
            assert!(parse(bad.as_bytes()).is_none(), "{bad}");
        }
        let escaped = parse(br#"{"event\u0049d":"e\"1","deviceId":"d\\2","timestamp":1,"seq":1,"route":"both","cfg":1}"#).unwrap();
        assert_eq!((escaped.event_id.as_ref(), escaped.device_id.as_ref()), ("e\"1", "d\\2"));
    }

    #[test]
    fn the_digest_is_xxhash64_with_seed_zero() {
        // Published xxHash64 test vectors (seed 0): "" and "abc".
        assert_eq!(digest(b""), 0xef46db3751d8e999);
        assert_eq!(digest(b"abc"), 0x44bc2cf5ad770999);
        assert_eq!(digest_hex(0xff), "00000000000000ff");
    }
}
