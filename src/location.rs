//! The location an app hands to the SDK, and the validation rules (docs/CONTRACT.md#location-validation).

/// Why a location or an id was refused. Carried inside [`DualPubError`](crate::DualPubError) and counted in
/// `dualpub_locations_rejected_total{reason}` under [`ValidationError::metric_reason`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ValidationError {
    /// A number was NaN or infinite.
    #[error("{field} is not a finite number")]
    NotFinite {
        /// The offending field.
        field: &'static str,
    },
    /// A number was outside its documented range.
    #[error("{field} is out of range")]
    OutOfRange {
        /// The offending field.
        field: &'static str,
    },
    /// The timestamp lies after 2100-01-01 (a unit mistake: microseconds or nanoseconds).
    #[error("timestamp is after 2100-01-01: milliseconds since the Unix epoch are expected")]
    TimestampInFuture,
    /// A device or company id broke the id rules (docs/CONTRACT.md#device-and-company-ids).
    #[error("invalid {kind}: {reason}")]
    BadId {
        /// "device id" or "company id".
        kind: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

impl ValidationError {
    /// The `reason` label used in `dualpub_locations_rejected_total`.
    pub fn metric_reason(&self) -> String {
        match self {
            ValidationError::NotFinite { field } | ValidationError::OutOfRange { field } => {
                format!("invalid_{field}")
            }
            ValidationError::TimestampInFuture => "timestamp_in_future".into(),
            ValidationError::BadId { .. } => "invalid_id".into(),
        }
    }
}

/// How far after the phone's clock a location's timestamp may lie before it counts as clock
/// skew (`dualpub_clock_skew_total`): a fix stamped by GNSS on a phone whose clock is wrong is
/// accepted and counted, not refused.
pub const MAX_FUTURE_SKEW_MS: i64 = 24 * 60 * 60 * 1000;

/// The latest timestamp accepted, whatever the phone's clock: 2100-01-01T00:00:00Z. A later one
/// is a unit mistake (microseconds or nanoseconds for milliseconds), refused as
/// `timestamp_in_future`.
pub const MAX_TIMESTAMP_MS: i64 = 4_102_444_800_000;

/// Longest device or company id, in bytes of UTF-8.
pub const MAX_ID_BYTES: usize = 128;

/// One location fix, as the app reports it. Optional fields are omitted from the wire JSON.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct Location {
    /// Degrees, in [-90, 90].
    pub latitude: f64,
    /// Degrees, in [-180, 180].
    pub longitude: f64,
    /// Horizontal accuracy radius in metres, ≥ 0.
    #[uniffi(default = None)]
    pub accuracy: Option<f64>,
    /// Metres per second, ≥ 0.
    #[uniffi(default = None)]
    pub speed: Option<f64>,
    /// Degrees clockwise from north, in [0, 360).
    #[uniffi(default = None)]
    pub bearing: Option<f64>,
    /// Metres above the WGS84 ellipsoid.
    #[uniffi(default = None)]
    pub altitude: Option<f64>,
    /// When the fix was taken, milliseconds since the Unix epoch; > 0 and at most 24 h ahead.
    pub timestamp_ms: i64,
    /// Battery level as a fraction in [0, 1].
    #[uniffi(default = None)]
    pub battery: Option<f64>,
}

impl Location {
    /// Checks every field against docs/CONTRACT.md#location-validation.
    pub fn validate(&self) -> Result<(), ValidationError> {
        finite("latitude", self.latitude)?;
        finite("longitude", self.longitude)?;
        if !(-90.0..=90.0).contains(&self.latitude) {
            return Err(ValidationError::OutOfRange { field: "latitude" });
        }
        if !(-180.0..=180.0).contains(&self.longitude) {
            return Err(ValidationError::OutOfRange { field: "longitude" });
        }
        for (field, value) in [("accuracy", self.accuracy), ("speed", self.speed)] {
            if let Some(v) = value {
                finite(field, v)?;
                if v < 0.0 {
                    return Err(ValidationError::OutOfRange { field });
                }
            }
        }
        if let Some(b) = self.bearing {
            finite("bearing", b)?;
            if !(0.0..360.0).contains(&b) {
                return Err(ValidationError::OutOfRange { field: "bearing" });
            }
        }
        if let Some(a) = self.altitude {
            finite("altitude", a)?;
        }
        if let Some(b) = self.battery {
            finite("battery", b)?;
            if !(0.0..=1.0).contains(&b) {
                return Err(ValidationError::OutOfRange { field: "battery" });
            }
        }
        if self.timestamp_ms <= 0 {
            return Err(ValidationError::OutOfRange { field: "timestamp" });
        }
        if self.timestamp_ms > MAX_TIMESTAMP_MS {
            return Err(ValidationError::TimestampInFuture);
        }
        Ok(())
    }

    /// Whether its timestamp lies more than [`MAX_FUTURE_SKEW_MS`] after `now_ms` (the phone's
    /// clock): accepted, but counted as clock skew.
    pub fn skewed(&self, now_ms: i64) -> bool {
        self.timestamp_ms > now_ms.saturating_add(MAX_FUTURE_SKEW_MS)
    }
}

fn finite(field: &'static str, v: f64) -> Result<(), ValidationError> {
    if v.is_finite() {
        Ok(())
    } else {
        Err(ValidationError::NotFinite { field })
    }
}

/// Characters that stand for `/`, `+` or `#`: the twelve whose compatibility form (NFKC)
/// contains one (full-width, small, super- and subscript forms, ℅ and the like), and five that
/// only look like one. A list rather than an NFKC pass: the compatibility tables would cost the
/// library 56 KB for these twelve.
const LOOKALIKES: &[char] = &[
    '\u{207A}', '\u{208A}', '\u{2100}', '\u{2101}', '\u{2105}', '\u{2106}', '\u{FB29}', '\u{FE5F}', '\u{FE62}', '\u{FF03}', '\u{FF0B}', '\u{FF0F}', '\u{2215}',
    '\u{2044}', '\u{29F8}', '\u{2795}', '\u{266F}',
];

/// Why one character cannot be in an id, if it cannot.
fn forbidden(c: char) -> Option<&'static str> {
    use icu_properties::props::GeneralCategory;
    let u = c as u32;
    if c.is_control() {
        Some("a control character")
    } else if matches!(c, '/' | '+' | '#') || LOOKALIKES.contains(&c) {
        Some("an MQTT topic separator or wildcard (or a character that looks like one)")
    } else if (0xFDD0..=0xFDEF).contains(&u) || u & 0xFFFE == 0xFFFE {
        Some("a noncharacter")
    } else if icu_properties::CodePointMapData::<GeneralCategory>::new().get(c) == GeneralCategory::Format {
        Some("an invisible format character (zero-width, bidi control)")
    } else {
        None
    }
}

/// Checks a device or company id: 1–128 bytes of UTF-8 in Unicode normalization form C, not
/// starting with `$` (MQTT's system topics), with no control, format (zero-width, bidi) or
/// noncharacter code points and none of `/ + #` or their lookalikes (`LOOKALIKES`), which would let one device
/// publish into another device's MQTT topic or pass for another id. Rejected, never escaped or
/// normalised: an id the app sends is the id both backends see and the one bucketed.
pub fn validate_id(kind: &'static str, id: &str) -> Result<(), ValidationError> {
    let bad = |reason: String| Err(ValidationError::BadId { kind, reason });
    if id.is_empty() {
        return bad("empty".into());
    }
    if id.len() > MAX_ID_BYTES {
        return bad(format!("{} bytes, at most {MAX_ID_BYTES} allowed", id.len()));
    }
    if id.starts_with('$') {
        return bad("starts with $ (reserved for MQTT system topics)".into());
    }
    if let Some((c, why)) = id.chars().find_map(|c| forbidden(c).map(|why| (c, why))) {
        return bad(format!("contains U+{:04X}, {why}", c as u32));
    }
    if !icu_normalizer::ComposingNormalizerBorrowed::new_nfc().is_normalized(id) {
        return bad("not in Unicode normalization form C (NFC): the same text could name two devices".into());
    }
    Ok(())
}

/// The location of the contract's wire example (docs/CONTRACT.md#example-bytes), for unit tests.
#[cfg(test)]
pub(crate) fn contract_example() -> Location {
    Location {
        latitude: 52.52,
        longitude: 13.405,
        accuracy: Some(5.0),
        speed: Some(1.2),
        bearing: Some(90.0),
        altitude: Some(34.0),
        timestamp_ms: 1_763_790_000_000,
        battery: Some(0.82),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_763_790_000_000;

    fn ok() -> Location {
        contract_example()
    }

    #[test]
    fn accepts_a_normal_fix_and_the_boundaries() {
        assert_eq!(ok().validate(), Ok(()));
        let edge = Location { latitude: -90.0, longitude: 180.0, bearing: Some(0.0), ..ok() };
        assert_eq!(edge.validate(), Ok(()));
        let future = Location { timestamp_ms: NOW + MAX_FUTURE_SKEW_MS, ..ok() };
        assert_eq!((future.validate(), future.skewed(NOW)), (Ok(()), false));
    }

    #[test]
    fn a_gnss_fix_on_a_phone_whose_clock_is_a_day_behind_is_accepted_and_counted_as_skew() {
        // The phone's clock 25 h behind the fix's (GNSS) time.
        let fix = Location { timestamp_ms: NOW + 25 * 3_600_000, ..ok() };
        assert_eq!(fix.validate(), Ok(()));
        assert!(fix.skewed(NOW));
        let last = Location { timestamp_ms: MAX_TIMESTAMP_MS, ..ok() };
        assert_eq!(last.validate(), Ok(()), "2100-01-01 is the last accepted instant");
    }

    #[test]
    fn rejects_each_bad_field_with_its_name() {
        let cases: Vec<(Location, ValidationError)> = vec![
            (Location { latitude: f64::NAN, ..ok() }, ValidationError::NotFinite { field: "latitude" }),
            (Location { longitude: f64::INFINITY, ..ok() }, ValidationError::NotFinite { field: "longitude" }),
            (Location { latitude: 90.0001, ..ok() }, ValidationError::OutOfRange { field: "latitude" }),
            (Location { longitude: -180.5, ..ok() }, ValidationError::OutOfRange { field: "longitude" }),
            (Location { accuracy: Some(-1.0), ..ok() }, ValidationError::OutOfRange { field: "accuracy" }),
            (Location { speed: Some(-0.1), ..ok() }, ValidationError::OutOfRange { field: "speed" }),
            (Location { bearing: Some(360.0), ..ok() }, ValidationError::OutOfRange { field: "bearing" }),
            (Location { altitude: Some(f64::NEG_INFINITY), ..ok() }, ValidationError::NotFinite { field: "altitude" }),
            (Location { battery: Some(1.5), ..ok() }, ValidationError::OutOfRange { field: "battery" }),
            (Location { timestamp_ms: 0, ..ok() }, ValidationError::OutOfRange { field: "timestamp" }),
            (Location { timestamp_ms: MAX_TIMESTAMP_MS + 1, ..ok() }, ValidationError::TimestampInFuture),
            (Location { timestamp_ms: NOW * 1_000, ..ok() }, ValidationError::TimestampInFuture),
        ];
        for (loc, want) in cases {
            assert_eq!(loc.validate(), Err(want.clone()), "{loc:?}");
        }
    }

    #[test]
    fn device_ids_that_could_escape_their_topic_are_rejected() {
        assert!(validate_id("device id", "d-1").is_ok());
        assert!(validate_id("device id", "Gerät-ü-42").is_ok());
        assert!(validate_id("device id", &"x".repeat(128)).is_ok());
        for bad in ["", "a/b", "a+b", "a#", "a\nb", "a\u{7f}b", &"x".repeat(129)] {
            assert!(matches!(validate_id("device id", bad), Err(ValidationError::BadId { .. })), "{bad:?} accepted");
        }
    }
}
