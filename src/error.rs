//! Errors: a detailed internal error per concern, mapped to one small public error per API
//! (the pattern of mozilla/application-services). Nothing here ever panics across the FFI.

/// Why a location or an id was refused. Carried inside [`DualPubError`] and counted in
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
    /// The timestamp lies more than 24 h in the future.
    #[error("timestamp is more than 24 h in the future")]
    TimestampInFuture,
    /// A device or company id broke the id rules of GUIDE §3.
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

/// Why a migration config was refused as a whole (the last known good stays in force).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// The document is not JSON, or a field has the wrong JSON type.
    #[error("malformed config: {0}")]
    Malformed(String),
    /// The document is larger than any real config.
    #[error("config document too large ({0} bytes)")]
    TooLarge(usize),
    /// An object names the same key twice.
    #[error("malformed config: {0}")]
    DuplicateKey(String),
    /// A field has a value outside its range (for example a percentage of 101 or NaN).
    #[error("invalid value for {field}: {reason}")]
    InvalidValue {
        /// The JSON path of the field.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A fetched document is older than one already fetched (a stale cache answering): a
    /// rollback must never be undone by an old copy.
    #[error("stale config: version {version} is older than version {newest} fetched before")]
    StaleVersion {
        /// The document's version.
        version: u64,
        /// The newest version fetched so far.
        newest: u64,
    },
}

/// The error every exported call returns. Kotlin sees `DualPubException.<Variant>`, Swift
/// `DualPubError.<variant>`.
#[derive(Debug, thiserror::Error, uniffi::Error)]
pub enum DualPubError {
    /// The location was refused; nothing was queued.
    #[error("invalid location: {reason}")]
    InvalidLocation {
        /// Which field and why.
        reason: String,
    },
    /// A device or company id was refused.
    #[error("invalid id: {reason}")]
    InvalidId {
        /// Which id and why.
        reason: String,
    },
    /// An `SdkConfig` or migration config was refused; the previous one stays in force.
    #[error("invalid configuration: {reason}")]
    InvalidConfig {
        /// Which field and why.
        reason: String,
    },
    /// The data directory cannot be used (unwritable, or another publisher holds it).
    #[error("storage error: {reason}")]
    Storage {
        /// What failed.
        reason: String,
    },
    /// The publisher was closed; create a new one.
    #[error("the publisher is closed")]
    Closed,
    /// Something inside the SDK failed that the caller cannot fix; details are logged.
    #[error("internal error: {reason}")]
    Internal {
        /// A description safe to show in logs (no tokens, no coordinates).
        reason: String,
    },
}

impl From<ValidationError> for DualPubError {
    fn from(e: ValidationError) -> Self {
        match e {
            ValidationError::BadId { .. } => DualPubError::InvalidId { reason: e.to_string() },
            _ => DualPubError::InvalidLocation { reason: e.to_string() },
        }
    }
}

impl ConfigError {
    /// The `reason` label of `dualpub_config_rejected_total`.
    pub fn metric_reason(&self) -> &'static str {
        match self {
            ConfigError::Malformed(_) => "malformed",
            ConfigError::TooLarge(_) => "too_large",
            ConfigError::DuplicateKey(_) => "duplicate_key",
            ConfigError::InvalidValue { .. } => "invalid_value",
            ConfigError::StaleVersion { .. } => "stale_version",
        }
    }
}

impl From<ConfigError> for DualPubError {
    fn from(e: ConfigError) -> Self {
        DualPubError::InvalidConfig { reason: e.to_string() }
    }
}

/// The error an app's [`crate::TokenProvider`] throws when it cannot produce a token.
#[derive(Debug, thiserror::Error, uniffi::Error)]
pub enum TokenError {
    /// No token now; the SDK backs off and asks again later.
    #[error("token unavailable: {reason}")]
    Unavailable {
        /// Why (logged; must not contain the token itself).
        reason: String,
    },
}

impl From<uniffi::UnexpectedUniFFICallbackError> for TokenError {
    fn from(e: uniffi::UnexpectedUniFFICallbackError) -> Self {
        TokenError::Unavailable { reason: format!("token provider failed: {}", e.reason) }
    }
}
