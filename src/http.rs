//! The one HTTP client (reqwest + rustls) a publisher uses for Pub/Sub and for the config
//! fetch: the SDK's TLS config (web PKI roots plus `pubsub.caCertificatesPem`), HTTP/1.1,
//! timeouts, and redirects that never go from TLS to plaintext.

use crate::config::SdkConfig;
use crate::error::Error;
use crate::{tls, wire};
use std::time::Duration;

/// Per-request timeout (a caller may set a shorter one per request).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Connection timeout.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Builds the client from the app's settings (validated already).
pub(crate) fn client(config: &SdkConfig) -> Result<reqwest::Client, Error> {
    let tls = tls::client_config(config.pubsub.ca_certificates_pem.as_deref(), &[b"http/1.1"])
        .map_err(|source| Error::Tls { field: "pubsub.caCertificatesPem", source })?;
    Ok(reqwest::Client::builder()
        .tls_backend_preconfigured((*tls).clone())
        .timeout(REQUEST_TIMEOUT)
        .connect_timeout(CONNECT_TIMEOUT)
        .user_agent(wire::SDK_ID)
        // Pub/Sub never redirects; a config host may (a CDN), but never from TLS to plaintext.
        .redirect(reqwest::redirect::Policy::custom(|a| {
            if a.previous().len() > 5 {
                a.error("too many redirects")
            } else if a.url().scheme() != "https" && a.previous().iter().any(|u| u.scheme() == "https") {
                a.error("redirect from https to plaintext refused")
            } else {
                a.follow()
            }
        }))
        .build()?)
}

/// A reqwest error's text with its causes, the URL replaced by `<endpoint>` (a config URL may
/// carry a key in its query).
pub(crate) fn without_url(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    if let Some(u) = e.url() {
        s = s.replace(u.as_str(), "<endpoint>");
    }
    let mut source = std::error::Error::source(e);
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}
