//! gzip for Pub/Sub request bodies (docs/CONTRACT.md#compression): which bodies go compressed,
//! and what an endpoint has shown of gzip. Whether Pub/Sub's REST front end takes a gzip body is
//! not documented, so the first compressed request to an endpoint is the probe: what its answer
//! shows is kept in the data directory (the `meta` table, key [`meta_key`]) for the next runs.

use crate::config::PubsubCompression;
pub use crate::telemetry::metrics::GzipSupport;
use std::io::Write;

/// Bodies of at least this many bytes go compressed; smaller ones gain too little to pay for
/// the gzip header and trailer.
pub const THRESHOLD_BYTES: usize = 1024;

/// The `meta` key under which an endpoint's [`GzipSupport`] is kept.
pub(crate) fn meta_key(endpoint: &str) -> String {
    format!("pubsub_gzip:{}", endpoint.trim_end_matches('/'))
}

/// Whether a body of `len` bytes goes compressed under `mode` to an endpoint that showed `support`.
pub(crate) fn compresses(mode: PubsubCompression, support: GzipSupport, len: usize) -> bool {
    len >= THRESHOLD_BYTES
        && match mode {
            PubsubCompression::Auto => support != GzipSupport::Refused,
            PubsubCompression::Gzip => true,
            PubsubCompression::None => false,
        }
}

/// Bodies up to this size are compressed at zlib's default level 6, larger ones at level 1. A
/// burst's body (about 17 KB at 1 Hz with the 30 s window) is where the bytes of a month add up,
/// and level 6 makes it 15 % smaller than level 1 for a few tenths of a millisecond; a backlog's
/// 560 KB body is where time counts, and level 1 compresses it in 40 % of level 6's time
/// (`cargo bench --bench gzip`, docs/PERFORMANCE.md).
pub const SMALL_BODY_BYTES: usize = 64 * 1024;

/// `body` gzip-compressed (RFC 1952; level 6 up to [`SMALL_BODY_BYTES`], level 1 above); `None`
/// only if the encoder failed, and then the body goes uncompressed.
pub(crate) fn compress(body: &[u8]) -> Option<Vec<u8>> {
    let level = if body.len() <= SMALL_BODY_BYTES { flate2::Compression::default() } else { flate2::Compression::fast() };
    let mut encoder = flate2::write::GzEncoder::new(Vec::with_capacity(body.len() / 3), level);
    encoder.write_all(body).ok()?;
    encoder.finish().ok()
}

/// What the answer to a compressed request says of gzip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Nothing about gzip (delivered, or failed for a reason of its own): the answer stands.
    Stands,
    /// HTTP 415: the endpoint does not take gzip. Record it and send the same messages
    /// uncompressed at once.
    Refused,
    /// HTTP 400 from an endpoint that never took gzip: the body's encoding or one of its
    /// messages. The same messages go uncompressed at once; delivered, gzip was refused.
    Suspect,
}

/// Reads the HTTP `status` (`None`: no answer) of a compressed request to an endpoint that
/// showed `support` so far.
pub(crate) fn verdict(support: GzipSupport, status: Option<u16>) -> Verdict {
    match status {
        Some(415) => Verdict::Refused,
        Some(400) if support != GzipSupport::Accepted => Verdict::Suspect,
        _ => Verdict::Stands,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn a_compressed_body_reads_back_whole_and_smaller() {
        let body: Vec<u8> =
            (0..200).flat_map(|i| format!("{{\"data\":\"eyJldmVudElkIjoi{i}\",\"attributes\":{{\"deviceId\":\"d-1\"}}}},").into_bytes()).collect();
        let packed = compress(&body).unwrap();
        assert_eq!(&packed[..2], &[0x1f, 0x8b], "a gzip member");
        assert!(packed.len() * 5 < body.len(), "{} of {}", packed.len(), body.len());
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&packed[..]).read_to_end(&mut back).unwrap();
        assert_eq!(back, body);
    }

    #[test]
    fn only_bodies_past_the_threshold_go_compressed_and_none_never() {
        use PubsubCompression::*;
        assert!(!compresses(Auto, GzipSupport::Unknown, THRESHOLD_BYTES - 1));
        assert!(compresses(Auto, GzipSupport::Unknown, THRESHOLD_BYTES));
        assert!(compresses(Auto, GzipSupport::Accepted, 1 << 20));
        assert!(!compresses(Auto, GzipSupport::Refused, 1 << 20), "auto keeps a refusal");
        assert!(compresses(Gzip, GzipSupport::Refused, 1 << 20), "gzip overrides it");
        assert!(!compresses(None, GzipSupport::Accepted, 1 << 20));
    }

    #[test]
    fn a_415_refuses_and_a_400_is_suspect_until_gzip_was_taken() {
        assert_eq!(verdict(GzipSupport::Unknown, Some(415)), Verdict::Refused);
        assert_eq!(verdict(GzipSupport::Accepted, Some(415)), Verdict::Refused);
        assert_eq!(verdict(GzipSupport::Unknown, Some(400)), Verdict::Suspect);
        assert_eq!(verdict(GzipSupport::Refused, Some(400)), Verdict::Suspect);
        assert_eq!(verdict(GzipSupport::Accepted, Some(400)), Verdict::Stands, "a message of the batch is bad");
        for status in [Some(200), Some(503), Some(401), None] {
            assert_eq!(verdict(GzipSupport::Unknown, status), Verdict::Stands, "{status:?}");
        }
    }

    #[test]
    fn the_persisted_code_reads_back() {
        for s in [GzipSupport::Unknown, GzipSupport::Accepted, GzipSupport::Refused] {
            assert_eq!(GzipSupport::from_code(Some(s.code())), s);
        }
        assert_eq!(GzipSupport::from_code(Some(9)), GzipSupport::Unknown);
        assert_eq!(meta_key("https://pubsub.googleapis.com/"), "pubsub_gzip:https://pubsub.googleapis.com");
    }
}
