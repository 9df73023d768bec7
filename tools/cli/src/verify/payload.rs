//! Reading one location message (docs/CONTRACT.md#location-fields): the fields the verifier
//! joins and judges on, a digest of the whole message (xxHash64, as ClickHouse's `xxHash64`, so
//! `tools/rollup/sql/verify.sql` shows the same digests) and a small digest of each field, so
//! that two copies of a location whose bytes differ can be told apart field by field without
//! keeping either copy.

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use std::borrow::Cow;

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

/// Which fields a copy has and a 16-bit digest of each one's JSON text (slot 15: every field
/// outside [`FIELDS`] together, order aside).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FieldDigests {
    present: u16,
    digest: [u16; 16],
}

impl FieldDigests {
    /// The fields (a bit per slot) in which two copies differ.
    pub fn differing(&self, other: &FieldDigests) -> u16 {
        let mut mask = self.present ^ other.present;
        for i in 0..16 {
            if self.present & other.present & (1 << i) != 0 && self.digest[i] != other.digest[i] {
                mask |= 1 << i;
            }
        }
        mask
    }

    /// Adds a field's value (slot 15: `key` too, for a field outside [`FIELDS`]).
    fn add(&mut self, slot: usize, key: &str, raw: &str) {
        let mut hasher = xxhash_rust::xxh64::Xxh64::new(slot as u64);
        if slot == 15 {
            hasher.update(key.as_bytes());
            hasher.update(&[0]);
        }
        hash_value(&mut hasher, raw);
        let h = (hasher.digest() & 0xffff) as u16;
        if slot == 15 {
            self.digest[15] = self.digest[15].wrapping_add(h); // order does not matter
        } else if self.present & (1 << slot) != 0 {
            self.digest[slot] = self.digest[slot].wrapping_add(h).wrapping_add(1);
        } else {
            self.digest[slot] = h;
        }
        self.present |= 1 << slot;
    }
}

/// The names of the fields in a [`FieldDigests::differing`] mask, in the contract's order.
pub fn field_names(mask: u16) -> Vec<&'static str> {
    (0..16).filter(|i| mask & (1 << i) != 0).map(|i| if i < 15 { FIELDS[i] } else { OTHER }).collect()
}

/// Feeds a JSON value to `h` in one form per value, so that fields compare as JSON values, as
/// ClickHouse's `JSONExtractKeysAndValuesRaw` writes them (`tools/rollup/sql/verify_mismatches.sql`):
/// a string decoded, a number that is an integer (`1`, `1.0`, `1e3`) as that integer, any other
/// number as its double (`52.520` is `52.52`), other values re-written compactly.
fn hash_value(h: &mut xxhash_rust::xxh64::Xxh64, raw: &str) {
    const TWO_63: f64 = 9_223_372_036_854_775_808.0;
    let integer = |h: &mut xxhash_rust::xxh64::Xxh64, i: i128| {
        h.update(b"i");
        h.update(&i.to_le_bytes());
    };
    match raw.as_bytes().first() {
        Some(b'"') => match text_of(raw) {
            Some(s) => {
                h.update(b"s");
                h.update(s.as_bytes());
            }
            None => h.update(raw.as_bytes()),
        },
        Some(b'-' | b'0'..=b'9') => {
            let exact = if raw.contains(['.', 'e', 'E']) { None } else { raw.parse::<i64>().map(i128::from).or_else(|_| raw.parse::<u64>().map(i128::from)).ok() };
            match (exact, raw.parse::<f64>()) {
                (Some(i), _) => integer(h, i),
                (None, Ok(f)) if f.fract() == 0.0 && f.abs() < TWO_63 && !(f == 0.0 && f.is_sign_negative()) => integer(h, f as i128),
                (None, Ok(f)) => {
                    h.update(b"f");
                    h.update(&f.to_bits().to_le_bytes());
                }
                (None, Err(_)) => h.update(raw.as_bytes()),
            }
        }
        Some(b'{' | b'[') => match serde_json::from_str::<serde_json::Value>(raw) {
            Ok(v) => {
                h.update(b"j");
                h.update(v.to_string().as_bytes());
            }
            Err(_) => h.update(raw.as_bytes()),
        },
        _ => h.update(raw.as_bytes()),
    }
}

/// The parts of a location the verifier reads.
#[derive(Debug)]
pub struct Location<'a> {
    pub event_id: Cow<'a, str>,
    pub device_id: Cow<'a, str>,
    pub timestamp: i64,
    pub seq: u64,
    pub route: Cow<'a, str>,
    pub cfg: u64,
    pub fields: FieldDigests,
}

/// Reads a message; `None` when it is not a version 2 location (not a JSON object, or without
/// `eventId`, `deviceId`, `timestamp`, `seq`, `route` and `cfg` of the right types, or with one
/// of the contract's fields twice).
pub fn parse(bytes: &[u8]) -> Option<Location<'_>> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let loc = de.deserialize_map(LocationVisitor).ok()?;
    de.end().ok()?;
    loc
}

/// A string that borrows from the input unless it holds escapes.
struct Text<'a>(Cow<'a, str>);

impl<'de> serde::Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(s)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(s.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

/// A field's value as JSON text, read as a string (borrowed when it has no escape).
fn text(raw: &RawValue) -> Option<Cow<'_, str>> {
    text_of(raw.get())
}

/// A JSON string's text (borrowed when it has no escape); `None` when it is no string.
fn text_of(s: &str) -> Option<Cow<'_, str>> {
    match s.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        Some(inner) if !inner.contains('\\') => Some(Cow::Borrowed(inner)),
        _ => serde_json::from_str::<String>(s).ok().map(Cow::Owned),
    }
}

struct LocationVisitor;

impl<'de> Visitor<'de> for LocationVisitor {
    type Value = Option<Location<'de>>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a location object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let (mut event_id, mut device_id, mut route) = (None, None, None);
        let (mut timestamp, mut seq, mut cfg) = (None, None, None);
        let mut fields = FieldDigests::default();
        let mut ok = true;
        while let Some(Text(key)) = map.next_key::<Text<'de>>()? {
            let raw: &'de RawValue = map.next_value()?;
            let slot = FIELDS.iter().position(|f| *f == key);
            if let Some(i) = slot {
                ok &= fields.present & (1 << i) == 0; // a contract field twice: not a location
            }
            fields.add(slot.unwrap_or(15), &key, raw.get());
            match slot {
                Some(0) => event_id = text(raw),
                Some(1) => device_id = text(raw),
                Some(9) => timestamp = serde_json::from_str::<i64>(raw.get()).ok(),
                Some(12) => seq = serde_json::from_str::<u64>(raw.get()).ok(),
                Some(13) => route = text(raw),
                Some(14) => cfg = serde_json::from_str::<u64>(raw.get()).ok(),
                _ => {}
            }
        }
        Ok(match (ok, event_id, device_id, timestamp, seq, route, cfg) {
            (true, Some(event_id), Some(device_id), Some(timestamp), Some(seq), Some(route), Some(cfg)) => {
                Some(Location { event_id, device_id, timestamp, seq, route, cfg, fields })
            }
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"{"eventId":"01936f1e-7c3a-7cc1-9f0a-3b2f6c1d2e4f","deviceId":"d-1","companyId":"c-9","latitude":52.52,"longitude":13.405,"accuracy":5.0,"speed":1.2,"bearing":90.0,"altitude":34.0,"timestamp":1763790000000,"battery":0.82,"schemaVersion":2,"seq":1234,"route":"both","cfg":42}"#;

    #[test]
    fn a_location_is_read_and_its_fields_told_apart() {
        let a = parse(FULL.as_bytes()).unwrap();
        assert_eq!(
            (a.event_id.as_ref(), a.device_id.as_ref(), a.timestamp, a.seq, a.route.as_ref(), a.cfg),
            ("01936f1e-7c3a-7cc1-9f0a-3b2f6c1d2e4f", "d-1", 1763790000000, 1234, "both", 42)
        );
        assert!(matches!(a.event_id, Cow::Borrowed(_)));
        let flipped = FULL.replace("52.52", "52.53");
        let b = parse(flipped.as_bytes()).unwrap();
        assert_eq!(field_names(a.fields.differing(&b.fields)), ["latitude"]);
        // Whitespace and field order: other bytes, the same fields.
        let spaced = FULL.replace(r#""latitude":"#, r#""latitude": "#).replace(r#""cfg":42}"#, r#""cfg":42 }"#);
        assert_ne!(digest(spaced.as_bytes()), digest(FULL.as_bytes()));
        assert_eq!(a.fields.differing(&parse(spaced.as_bytes()).unwrap().fields), 0, "raw values compare, not bytes around them");
        // The same values spelled otherwise: the same fields (as ClickHouse compares them).
        let respelled = FULL.replace("52.52,", "52.520,").replace(r#""accuracy":5.0"#, r#""accuracy":5"#).replace(r#""deviceId":"d-1""#, r#""deviceId":"d\u002d1""#);
        assert_eq!(a.fields.differing(&parse(respelled.as_bytes()).unwrap().fields), 0);
        let negative_zero = FULL.replace(r#""speed":1.2"#, r#""speed":-0.0"#);
        let zero = FULL.replace(r#""speed":1.2"#, r#""speed":0"#);
        assert_eq!(field_names(parse(zero.as_bytes()).unwrap().fields.differing(&parse(negative_zero.as_bytes()).unwrap().fields)), ["speed"]);
        // A field gone, and one the contract does not know.
        let changed = FULL.replace(r#""battery":0.82,"#, r#""extra":1,"#);
        assert_eq!(field_names(a.fields.differing(&parse(changed.as_bytes()).unwrap().fields)), ["battery", OTHER]);
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
