//! How Pub/Sub request bodies are encoded, set by the migration config (`pubsub.compression`)
//! and overridable by the app (docs/CONTRACT.md#compression).

/// How Pub/Sub request bodies are encoded (`pubsub.compression`; docs/CONTRACT.md#compression).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, uniffi::Enum)]
pub enum PubsubCompression {
    /// gzip above the threshold, unless this endpoint refused gzip before; the first
    /// compressed request to an endpoint is the probe (the default).
    Auto,
    /// gzip above the threshold even where the endpoint refused it before (a refused request
    /// still goes again uncompressed at once).
    Gzip,
    /// Never compress.
    None,
}

impl PubsubCompression {
    /// The name in config documents: `auto`, `gzip` or `none`.
    pub fn as_str(&self) -> &'static str {
        match self {
            PubsubCompression::Auto => "auto",
            PubsubCompression::Gzip => "gzip",
            PubsubCompression::None => "none",
        }
    }

    /// Parses `auto`, `gzip` or `none`.
    pub fn parse(s: &str) -> Option<Self> {
        [PubsubCompression::Auto, PubsubCompression::Gzip, PubsubCompression::None].into_iter().find(|c| c.as_str() == s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_read_back() {
        for c in [PubsubCompression::Auto, PubsubCompression::Gzip, PubsubCompression::None] {
            assert_eq!(PubsubCompression::parse(c.as_str()), Some(c));
        }
        assert_eq!(PubsubCompression::parse("br"), None);
        assert_eq!(PubsubCompression::parse("GZIP"), None, "names are case-sensitive");
    }
}
