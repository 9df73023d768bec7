//! Errors. Inside the SDK every failure is an `Error`, which keeps its cause (SQLite, URL,
//! TLS, storage, token provider). It becomes the small public [`DualPubError`] through `From`;
//! [`Error::log_level`] and [`Error::kind`] say how the log funnel (`telemetry::events`) logs it
//! (and so what `debugReport()` shows). This module describes failures and logs nothing; it
//! names only the error types of the store, TLS and location validation. Nothing here ever
//! panics across the FFI.

pub use crate::location::ValidationError;

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
    /// Collection is paused (`setCollectionEnabled(false)`, or `collectionEnabled = false` at
    /// start): the location was refused and nothing was queued.
    #[error("collection is paused: nothing was queued")]
    CollectionPaused,
    /// A `sendLocations` batch larger than one call accepts (at most 10,000 locations and at
    /// most `maxOutboxRows`); nothing was queued. Split it.
    #[error("a batch of {size} locations is larger than {limit}: nothing was queued, split it")]
    BatchTooLarge {
        /// Locations in the batch.
        size: u64,
        /// The most one call accepts with this config.
        limit: u64,
    },
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

/// The longest error text the SDK keeps, logs or returns, in characters: a parser quoting a
/// hostile 200 KB value must not turn into a 200 KB log line, debug report or persisted state.
pub const MAX_ERROR_CHARS: usize = 300;

/// `text`, cut to [`MAX_ERROR_CHARS`] characters (with "…" where it was cut).
pub(crate) fn bounded(text: impl std::fmt::Display) -> String {
    let text = text.to_string();
    match text.char_indices().nth(MAX_ERROR_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// The longest log line or debug event message the SDK emits, in characters.
pub const MAX_LOG_CHARS: usize = 1000;

/// A log message cut to [`MAX_LOG_CHARS`] characters.
pub(crate) fn bounded_log(text: String) -> String {
    match text.char_indices().nth(MAX_LOG_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// Every failure inside the SDK, with its cause. Public calls turn it into a [`DualPubError`]
/// through the log funnel's `Events::failed` (telemetry), which logs it, or `From` where nothing
/// is to be logged.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// A location or id was refused.
    #[error(transparent)]
    Validation(#[from] ValidationError),
    /// A migration config was refused.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A setting of the app's `SdkConfig` is invalid.
    #[error("{field}: {reason}")]
    Setting {
        /// The setting, as README names it (`mqtt.brokerUrl`).
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A URL setting does not parse.
    #[error("{field}: {source}")]
    Url {
        /// The setting.
        field: &'static str,
        /// The parser's complaint.
        source: url::ParseError,
    },
    /// A TLS setting is unusable.
    #[error("{field}: {source}")]
    Tls {
        /// The setting.
        field: &'static str,
        /// Why.
        source: crate::tls::TlsError,
    },
    /// The data directory cannot be used.
    #[error(transparent)]
    Store(#[from] crate::outbox::store::StoreError),
    /// Reading the outbox failed.
    #[error("reading the outbox: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    /// An SDK thread or the runtime could not be started.
    #[error("cannot start {what}: {source}")]
    Start {
        /// What: the runtime, the store thread.
        what: &'static str,
        /// The operating system's answer.
        source: std::io::Error,
    },
    /// A blocking call was made where it would hold an SDK thread.
    #[error("{0} blocks: call it from a background thread, not an async task or an SDK callback")]
    WouldBlock(&'static str),
    /// A background operation the caller waited for never answered.
    #[error("{0} did not finish")]
    Lost(&'static str),
    /// The publisher was closed.
    #[error("the publisher is closed")]
    Closed,
}

impl Error {
    /// An invalid `SdkConfig` setting.
    pub fn setting(field: &'static str, reason: impl Into<String>) -> Self {
        Error::Setting { field, reason: reason.into() }
    }

    /// The level to log this failure at when a public call returns it: the SDK's own failures
    /// (storage, internal) are logged; the caller's mistakes are counted and returned, not logged.
    pub fn log_level(&self) -> Option<log::Level> {
        match self {
            Error::Validation(_) | Error::Closed => None,
            Error::Config(_) | Error::Setting { .. } | Error::Url { .. } | Error::Tls { .. } => Some(log::Level::Warn),
            Error::Store(_) | Error::Sqlite(_) | Error::Http(_) | Error::Start { .. } | Error::Lost(_) => Some(log::Level::Error),
            Error::WouldBlock(_) => Some(log::Level::Warn),
        }
    }

    /// The event kind it is logged under.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Validation(_) => "location",
            Error::Config(_) | Error::Setting { .. } | Error::Url { .. } | Error::Tls { .. } => "config",
            Error::Store(_) | Error::Sqlite(_) => "storage",
            _ => "internal",
        }
    }
}

impl From<Error> for DualPubError {
    fn from(e: Error) -> Self {
        match e {
            Error::Validation(v) => v.into(),
            Error::Config(c) => c.into(),
            Error::Setting { .. } | Error::Url { .. } | Error::Tls { .. } => DualPubError::InvalidConfig { reason: e.to_string() },
            Error::Store(_) | Error::Sqlite(_) => DualPubError::Storage { reason: e.to_string() },
            Error::Closed => DualPubError::Closed,
            Error::Http(_) | Error::Start { .. } | Error::WouldBlock(_) | Error::Lost(_) => DualPubError::Internal { reason: e.to_string() },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_internal_error_maps_to_one_public_kind() {
        type Is = fn(&DualPubError) -> bool;
        let cases: Vec<(Error, Is)> = vec![
            (Error::setting("mqtt.keepAliveSecs", "must be 5–3600"), |e| matches!(e, DualPubError::InvalidConfig { .. })),
            (Error::Config(ConfigError::TooLarge(9)), |e| matches!(e, DualPubError::InvalidConfig { .. })),
            (Error::Validation(ValidationError::TimestampInFuture), |e| matches!(e, DualPubError::InvalidLocation { .. })),
            (Error::Validation(ValidationError::BadId { kind: "device id", reason: "x".into() }), |e| matches!(e, DualPubError::InvalidId { .. })),
            (Error::Sqlite(rusqlite::Error::InvalidQuery), |e| matches!(e, DualPubError::Storage { .. })),
            (Error::WouldBlock("refreshConfig"), |e| matches!(e, DualPubError::Internal { .. })),
            (Error::Closed, |e| matches!(e, DualPubError::Closed)),
        ];
        for (internal, is) in cases {
            let text = internal.to_string();
            let public = DualPubError::from(internal);
            assert!(is(&public), "{text} became {public:?}");
            assert!(public.to_string().contains(&text), "the public message keeps the cause: {public} / {text}");
        }
    }
}
