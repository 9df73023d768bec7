//! Access tokens for Pub/Sub: the app implements [`TokenProvider`]; the SDK caches the token,
//! refreshes it before expiry and after a 401, and survives a provider that throws, panics or
//! hangs. The provider runs on an SDK callback thread ([`crate::callback`]). [`Asked`] is that
//! machinery for any value an app provider hands over (MQTT credentials use it too).

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

/// Why an app provider (tokens, MQTT credentials) gave nothing; the transport backs off and
/// asks again.
#[derive(Debug, thiserror::Error)]
pub enum TokenFailure {
    /// The provider did not answer within [`PROVIDER_TIMEOUT`].
    #[error("{0} provider timed out")]
    TimedOut(&'static str),
    /// Too many app callbacks are stuck in the process to start another.
    #[error("{0} provider not called: {max} app callbacks are stuck", max = crate::callback::MAX_RUNNING)]
    Busy(&'static str),
    /// The thread running the provider ended without an answer.
    #[error("{0} provider thread ended without an answer")]
    Lost(&'static str),
    /// The provider panicked (caught).
    #[error("{0} provider panicked")]
    Panicked(&'static str),
    /// The provider threw.
    #[error(transparent)]
    Refused(#[from] TokenError),
    /// The provider returned an empty value.
    #[error("{0} provider returned nothing usable (empty)")]
    Empty(&'static str),
}

type ProviderCall<T> = tokio::sync::oneshot::Receiver<std::thread::Result<Result<T, TokenError>>>;

/// A value an app provider hands over, cached: asked for on an SDK callback thread when the
/// cached one is missing or no longer fresh, with the provider's bounds (at most
/// [`PROVIDER_TIMEOUT`] a call; a call that outlives it is waited on again rather than started
/// anew, so a hanging provider holds at most one thread per publisher).
pub(crate) struct Asked<T> {
    /// What is asked for, in messages ("token", "credentials").
    what: &'static str,
    cached: Option<T>,
    running: Option<ProviderCall<T>>,
}

impl<T: Clone + Send + 'static> Asked<T> {
    /// Nothing cached yet.
    pub fn new(what: &'static str) -> Self {
        Asked { what, cached: None, running: None }
    }

    /// The cached value if `fresh` says it still is; otherwise `ask` (on a callback thread),
    /// cached if `usable` accepts it.
    pub async fn get(
        &mut self,
        fresh: impl Fn(&T) -> bool,
        usable: impl Fn(&T) -> bool,
        ask: impl FnOnce() -> Result<T, TokenError> + Send + 'static,
    ) -> Result<T, TokenFailure> {
        if let Some(v) = self.cached.as_ref().filter(|v| fresh(v)) {
            return Ok(v.clone());
        }
        let what = self.what;
        let mut call = match self.running.take() {
            Some(call) => call,
            None => crate::callback::spawn(ask).ok_or(TokenFailure::Busy(what))?,
        };
        let value = match tokio::time::timeout(PROVIDER_TIMEOUT, &mut call).await {
            Err(_) => {
                self.running = Some(call);
                return Err(TokenFailure::TimedOut(what));
            }
            Ok(Err(_)) => return Err(TokenFailure::Lost(what)),
            Ok(Ok(Err(_panic))) => return Err(TokenFailure::Panicked(what)),
            Ok(Ok(Ok(Err(e)))) => return Err(e.into()),
            Ok(Ok(Ok(Ok(v)))) => v,
        };
        if !usable(&value) {
            return Err(TokenFailure::Empty(what));
        }
        self.cached = Some(value.clone());
        Ok(value)
    }

    /// Forgets the cached value (the server refused it).
    pub fn invalidate(&mut self) {
        self.cached = None;
    }
}

/// The SDK's token cache around an optional provider.
pub struct TokenCache {
    provider: Option<Arc<dyn TokenProvider>>,
    asked: Asked<AccessToken>,
}

impl TokenCache {
    /// A cache over `provider`; with none, requests carry no `Authorization` header (emulator).
    pub fn new(provider: Option<Arc<dyn TokenProvider>>) -> Self {
        TokenCache { provider, asked: Asked::new("token") }
    }

    /// The bearer token to send, fetching a new one when missing or about to expire.
    pub async fn bearer(&mut self) -> Result<Option<String>, TokenFailure> {
        let Some(provider) = self.provider.clone() else { return Ok(None) };
        let now = crate::clock::now_ms();
        let token = self.asked.get(|t| t.expires_at_ms - REFRESH_MARGIN_MS > now, |t| !t.token.is_empty(), move || provider.fetch_token()).await?;
        Ok(Some(token.token.expose().to_string()))
    }

    /// Forget the cached token (after a 401).
    pub fn invalidate(&mut self) {
        self.asked.invalidate();
    }
}
