//! RFC 3339 timestamps without a date crate.

use std::time::{SystemTime, UNIX_EPOCH};

/// Now as milliseconds since the epoch and as RFC 3339 UTC with microseconds and a `Z`
/// (Pub/Sub's `publishTime`), both from one reading of the clock.
pub fn now_ms_rfc3339() -> (u64, String) {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    (d.as_millis() as u64, format_rfc3339(d.as_secs() as i64, d.subsec_micros()))
}

/// Formats seconds since the epoch (plus microseconds) as `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
pub fn format_rfc3339(secs: i64, micros: u32) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil-from-days (Howard Hinnant).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_known_instants() {
        assert_eq!(super::format_rfc3339(0, 0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(super::format_rfc3339(1_763_790_000, 5), "2025-11-22T05:40:00.000005Z");
        assert_eq!(super::format_rfc3339(951_782_400, 0), "2000-02-29T00:00:00.000000Z");
    }
}
