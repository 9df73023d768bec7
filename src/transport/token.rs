//! Access tokens for Pub/Sub: the app implements [`TokenProvider`]; the SDK caches the token,
//! refreshes it before expiry and after a 401, and survives a provider that throws, panics or
//! hangs. The provider runs on an SDK callback thread ([`crate::callback`]).

use crate::error::TokenError;
use std::sync::Arc;
use std::time::Duration;

/// Refresh this long before a token expires.
pub const REFRESH_MARGIN_MS: i64 = 60_000;

/// Give up on a provider call after this long (the call keeps its own thread; the SDK backs off).
pub const PROVIDER_TIMEOUT: Duration = Duration::from_secs(30);

/// An OAuth access token for Pub/Sub.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct AccessToken {
    /// The bearer token (never logged, printed as `***`).
    pub token: Arc<crate::Secret>,
    /// Expiry, milliseconds since the Unix epoch.
    pub expires_at_ms: i64,
}

/// Implemented by the app to hand the SDK Pub/Sub access tokens. Called on an SDK background
/// thread, never the main thread; it may block (for example on a network call).
#[uniffi::export(foreign)]
pub trait TokenProvider: Send + Sync {
    /// Returns a fresh token, or throws when none can be had right now.
    fn fetch_token(&self) -> Result<AccessToken, TokenError>;
}

/// Why no token could be had; the Pub/Sub task backs off and asks again.
#[derive(Debug, thiserror::Error)]
pub enum TokenFailure {
    /// The provider did not answer within [`PROVIDER_TIMEOUT`].
    #[error("token provider timed out")]
    TimedOut,
    /// Too many app callbacks are stuck in the process to start another.
    #[error("token provider not called: {} app callbacks are stuck", crate::callback::MAX_RUNNING)]
    Busy,
    /// The thread running the provider ended without an answer.
    #[error("token provider thread ended without an answer")]
    Lost,
    /// The provider panicked (caught).
    #[error("token provider panicked")]
    Panicked,
    /// The provider threw.
    #[error(transparent)]
    Refused(#[from] TokenError),
    /// The provider returned an empty token.
    #[error("token provider returned an empty token")]
    Empty,
}

type ProviderCall = tokio::sync::oneshot::Receiver<std::thread::Result<Result<AccessToken, TokenError>>>;

/// The SDK's token cache around an optional provider.
pub struct TokenCache {
    provider: Option<Arc<dyn TokenProvider>>,
    cached: Option<AccessToken>,
    /// A provider call that outlived its timeout: waited on again rather than started anew, so a
    /// hanging provider holds at most one thread per publisher.
    running: Option<ProviderCall>,
}

impl TokenCache {
    /// A cache over `provider`; with none, requests carry no `Authorization` header (emulator).
    pub fn new(provider: Option<Arc<dyn TokenProvider>>) -> Self {
        TokenCache { provider, cached: None, running: None }
    }

    /// The bearer token to send, fetching a new one when missing or about to expire.
    pub async fn bearer(&mut self) -> Result<Option<String>, TokenFailure> {
        let Some(provider) = self.provider.clone() else { return Ok(None) };
        let now = crate::clock::now_ms();
        if let Some(t) = &self.cached {
            if t.expires_at_ms - REFRESH_MARGIN_MS > now {
                return Ok(Some(t.token.expose().to_string()));
            }
        }
        let mut call = match self.running.take() {
            Some(call) => call,
            None => crate::callback::spawn(move || provider.fetch_token()).ok_or(TokenFailure::Busy)?,
        };
        let token = match tokio::time::timeout(PROVIDER_TIMEOUT, &mut call).await {
            Err(_) => {
                self.running = Some(call);
                return Err(TokenFailure::TimedOut);
            }
            Ok(Err(_)) => return Err(TokenFailure::Lost),
            Ok(Ok(Err(_panic))) => return Err(TokenFailure::Panicked),
            Ok(Ok(Ok(Err(e)))) => return Err(e.into()),
            Ok(Ok(Ok(Ok(t)))) => t,
        };
        if token.token.is_empty() {
            return Err(TokenFailure::Empty);
        }
        self.cached = Some(token.clone());
        Ok(Some(token.token.expose().to_string()))
    }

    /// Forget the cached token (after a 401).
    pub fn invalidate(&mut self) {
        self.cached = None;
    }
}
