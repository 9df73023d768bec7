//! The HTTP clients (reqwest + rustls) of a publisher, one for Pub/Sub and one for the config
//! fetch, built the same way: the SDK's TLS config (web PKI roots plus
//! `pubsub.caCertificatesPem`), HTTP/1.1, timeouts, no `Referer` header (a config URL may carry
//! a key). They differ in redirects: a Pub/Sub publish never follows one (locations must not be
//! re-posted elsewhere); a config fetch may follow a few (a CDN), never from TLS to plaintext.

use crate::error::Error;
use crate::{tls, wire};
use std::time::Duration;

/// Per-request timeout (a caller may set a shorter one per request).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Connection timeout.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Which redirects a client follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Redirects {
    /// None: a redirect is an answer like any other (Pub/Sub publishes).
    Never,
    /// Up to five, never from `https` to plaintext (config fetches).
    Safe,
}

/// The largest response body the SDK reads from Pub/Sub (message ids need a few KiB).
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// Builds a client trusting `ca_pem` (the app's `pubsub.caCertificatesPem`, validated already)
/// or, without it, the platform's roots.
pub(crate) fn client(ca_pem: Option<&str>, redirects: Redirects) -> Result<reqwest::Client, Error> {
    let tls = tls::client_config(ca_pem, &[b"http/1.1"]).map_err(|source| Error::Tls { field: "pubsub.caCertificatesPem", source })?;
    Ok(reqwest::Client::builder()
        .tls_backend_preconfigured((*tls).clone())
        .timeout(REQUEST_TIMEOUT)
        .connect_timeout(CONNECT_TIMEOUT)
        .user_agent(wire::SDK_ID)
        .referer(false)
        .redirect(match redirects {
            Redirects::Never => reqwest::redirect::Policy::none(),
            Redirects::Safe => reqwest::redirect::Policy::custom(|a| {
                if a.previous().len() > 5 {
                    a.error("too many redirects")
                } else if a.url().scheme() != "https" && a.previous().iter().any(|u| u.scheme() == "https") {
                    a.error("redirect from https to plaintext refused")
                } else {
                    a.follow()
                }
            }),
        })
        .build()?)
}

/// Reads a response body up to `limit` bytes; `None` if it is longer (the rest is not read).
pub(crate) async fn body_up_to(mut resp: reqwest::Response, limit: usize) -> Result<Option<Vec<u8>>, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        body.extend_from_slice(&chunk);
        if body.len() > limit {
            return Ok(None);
        }
    }
    Ok(Some(body))
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
