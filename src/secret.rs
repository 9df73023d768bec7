//! Secrets the app hands the SDK (an MQTT password, a Pub/Sub access token), carried so that
//! printing the record that holds one cannot reveal it: Kotlin's data-class `toString()`, Swift's
//! `description` and `dump`, and Rust's `Debug` all show `***`. Only the SDK reads the value, to
//! authenticate.

use std::sync::Arc;

/// A secret value (password, token). Create it with `Secret(value)`; it prints as `***`.
#[derive(uniffi::Object, PartialEq, Eq)]
#[uniffi::export(Debug, Display, Eq)]
pub struct Secret {
    value: String,
}

#[uniffi::export]
impl Secret {
    /// Wraps `value`.
    #[uniffi::constructor]
    pub fn new(value: String) -> Arc<Self> {
        Arc::new(Secret { value })
    }

    /// Whether the value is empty.
    pub fn is_empty(&self) -> bool {
        self.value.is_empty()
    }
}

impl Secret {
    /// The value, for the SDK's own use (authentication). Never log or format it.
    pub(crate) fn expose(&self) -> &str {
        &self.value
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printing_never_shows_the_value() {
        let s = Secret::new("hunter2".into());
        assert_eq!(format!("{s} {s:?}"), "*** Secret(***)");
        let token = crate::AccessToken { token: s.clone(), expires_at_ms: 1 };
        assert!(!format!("{token:?}").contains("hunter2"), "{token:?}");
        assert_eq!(s.expose(), "hunter2");
        assert_eq!(*s, *Secret::new("hunter2".into()));
    }
}
