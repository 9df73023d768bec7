//! MQTT credentials that change (docs/CONTRACT.md#mqtt-credentials): brokers that authenticate
//! devices with expiring passwords (a JWT as the password, common with EMQX fleets) refuse a
//! connection once it has expired. The app implements [`MqttCredentialProvider`]; the MQTT task
//! asks it before a connection when it has no credentials, when the ones it has expire within
//! a minute, and after the broker refused them. Like the `TokenProvider`, it runs on an SDK
//! callback thread with the same bounds ([`crate::transport::token::Asked`]).

use crate::error::TokenError;
use crate::transport::token::{Asked, TokenFailure, REFRESH_MARGIN_MS};
use std::sync::Arc;

/// A username and password for the MQTT broker.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct MqttCredentials {
    /// The username.
    pub username: String,
    /// The password (never logged, printed as `***`); for JWT authentication, the token.
    pub password: Arc<crate::Secret>,
    /// When the password expires, ms since the Unix epoch: asked for again a minute before.
    /// `None`: until the broker refuses it.
    pub expires_at_ms: Option<i64>,
}

/// Implemented by the app to hand the SDK MQTT credentials that change. Called on an SDK
/// background thread, never the main thread; it may block (for example on a network call).
#[uniffi::export(foreign)]
pub trait MqttCredentialProvider: Send + Sync {
    /// Returns credentials to connect with, or throws when none can be had right now.
    fn fetch_credentials(&self) -> Result<MqttCredentials, TokenError>;
}

/// The MQTT task's credentials, cached around the app's provider.
pub(crate) struct CredentialCache {
    provider: Arc<dyn MqttCredentialProvider>,
    asked: Asked<MqttCredentials>,
}

impl CredentialCache {
    /// A cache over `provider`.
    pub fn new(provider: Arc<dyn MqttCredentialProvider>) -> Self {
        CredentialCache { provider, asked: Asked::new("credentials") }
    }

    /// The credentials to connect with now: the cached ones unless they expire within a minute,
    /// else the provider's.
    pub async fn current(&mut self) -> Result<MqttCredentials, TokenFailure> {
        let provider = self.provider.clone();
        let now = crate::clock::now_ms();
        let fresh = |c: &MqttCredentials| c.expires_at_ms.is_none_or(|at| at - REFRESH_MARGIN_MS > now);
        self.asked.get(fresh, |c| !c.username.is_empty() || !c.password.is_empty(), move || provider.fetch_credentials()).await
    }

    /// The broker refused the credentials: the next connection asks the provider again.
    pub fn refused(&mut self) {
        self.asked.invalidate();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// Hands out `user`/`pw-N` (N counting calls), expiring `ttl_ms` from now.
    struct Counting {
        calls: AtomicU64,
        ttl_ms: Option<i64>,
    }

    impl MqttCredentialProvider for Counting {
        fn fetch_credentials(&self) -> Result<MqttCredentials, TokenError> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            Ok(MqttCredentials {
                username: "user".into(),
                password: crate::Secret::new(format!("pw-{n}")),
                expires_at_ms: self.ttl_ms.map(|t| crate::clock::now_ms() + t),
            })
        }
    }

    fn password(c: &MqttCredentials) -> String {
        c.password.expose().to_string()
    }

    #[tokio::test]
    async fn credentials_are_cached_until_refused_or_about_to_expire() {
        let long = Arc::new(Counting { calls: AtomicU64::new(0), ttl_ms: Some(3_600_000) });
        let mut cache = CredentialCache::new(long.clone());
        assert_eq!(password(&cache.current().await.unwrap()), "pw-1");
        assert_eq!(password(&cache.current().await.unwrap()), "pw-1", "an hour left: cached");
        cache.refused();
        assert_eq!(password(&cache.current().await.unwrap()), "pw-2", "refused: asked again");
        let short = Arc::new(Counting { calls: AtomicU64::new(0), ttl_ms: Some(30_000) });
        let mut cache = CredentialCache::new(short.clone());
        cache.current().await.unwrap();
        assert_eq!(password(&cache.current().await.unwrap()), "pw-2", "expiring within a minute: asked again");
        let forever = Arc::new(Counting { calls: AtomicU64::new(0), ttl_ms: None });
        let mut cache = CredentialCache::new(forever.clone());
        cache.current().await.unwrap();
        cache.current().await.unwrap();
        assert_eq!(forever.calls.load(Ordering::SeqCst), 1, "no stated expiry: until refused");
    }

    #[tokio::test]
    async fn a_provider_that_throws_or_hands_nothing_is_a_failure_not_a_connection() {
        struct Throws;
        impl MqttCredentialProvider for Throws {
            fn fetch_credentials(&self) -> Result<MqttCredentials, TokenError> {
                Err(TokenError::Unavailable { reason: "signed out".into() })
            }
        }
        struct Empty;
        impl MqttCredentialProvider for Empty {
            fn fetch_credentials(&self) -> Result<MqttCredentials, TokenError> {
                Ok(MqttCredentials { username: String::new(), password: crate::Secret::new(String::new()), expires_at_ms: None })
            }
        }
        let e = CredentialCache::new(Arc::new(Throws)).current().await.unwrap_err();
        assert!(e.to_string().contains("signed out"), "{e}");
        let e = CredentialCache::new(Arc::new(Empty)).current().await.unwrap_err();
        assert_eq!(e.to_string(), "credentials provider returned nothing usable (empty)");
    }
}
