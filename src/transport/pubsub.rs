//! Google Pub/Sub over REST (reqwest + rustls): batching, response classification, token
//! refresh and fallback to MQTT (GUIDE §5).
//!
//! One request is in flight at a time per publisher, so one device's locations reach Pub/Sub
//! in acceptance order (a failed batch is put back in front of later rows).

use crate::breaker::{Breaker, BreakerState};
use crate::config::SdkConfig;
use crate::error::DualPubError;
use crate::outbox::{Row, Transport};
use crate::publisher::Shared;
use crate::retry::{parse_retry_after, Backoff};
use crate::token::TokenCache;
use crate::transport::sleep_or_shutdown;
use crate::{tls, wire};
use base64::Engine;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Per-request timeout.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Room per message for attributes and JSON framing, on top of the base64 data, when sizing
/// a batch against `maxBatchBytes`.
const MESSAGE_OVERHEAD: usize = 512;

/// The HTTP client (Pub/Sub and the config fetch): rustls with the SDK's TLS config, HTTP/1.1,
/// timeouts.
pub fn http_client(config: &SdkConfig) -> Result<reqwest::Client, DualPubError> {
    let tls = tls::client_config(config.pubsub.ca_certificates_pem.as_deref(), &[b"http/1.1"])
        .map_err(|e| DualPubError::InvalidConfig { reason: format!("pubsub: {e}") })?;
    reqwest::Client::builder()
        .tls_backend_preconfigured((*tls).clone())
        .timeout(REQUEST_TIMEOUT)
        .connect_timeout(Duration::from_secs(10))
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
        .build()
        .map_err(|e| DualPubError::Internal { reason: format!("cannot build the HTTP client: {e}") })
}

/// How one publish attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// 200 with one messageId per message.
    Delivered,
    /// Worth retrying after a backoff: 409/429/499/5xx, transport errors, no token.
    Retry { why: String, retry_after: Option<Duration> },
    /// 401: fetch a new token, then back off.
    Unauthorized,
    /// 400 (or 413): something in the batch is invalid; split it to find what.
    BadRequest { why: String },
    /// 403/404 and other 4xx: misconfiguration; fall back and back off long.
    ConfigError { why: String },
}

/// Classifies an HTTP status as GUIDE §5 says.
pub fn classify(status: u16, body: &str, retry_after: Option<Duration>) -> Outcome {
    let why = format!("HTTP {status}: {}", short(body));
    match status {
        200..=299 => Outcome::Delivered,
        401 => Outcome::Unauthorized,
        400 | 413 => Outcome::BadRequest { why },
        409 | 429 | 499 | 500 | 502 | 503 | 504 => Outcome::Retry { why, retry_after },
        500..=599 => Outcome::Retry { why, retry_after },
        _ => Outcome::ConfigError { why },
    }
}

fn short(body: &str) -> String {
    let oneline: String = body.chars().take(200).map(|c| if c.is_control() { ' ' } else { c }).collect();
    oneline.trim().to_string()
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PubsubMessage<'a> {
    data: String,
    attributes: BTreeMap<&'static str, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ordering_key: Option<&'a str>,
}

#[derive(Serialize)]
struct PublishRequest<'a> {
    messages: Vec<PubsubMessage<'a>>,
}

/// The request body for a batch (GUIDE §3).
pub(crate) fn request_body(settings: &SdkConfig, rows: &[Row]) -> Vec<u8> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let ordering_key = settings.pubsub.ordering_enabled.then_some(settings.device_id.as_str());
    let messages = rows
        .iter()
        .map(|r| PubsubMessage {
            data: b64.encode(&r.payload),
            attributes: wire::pubsub_attributes(&settings.device_id, settings.company_id.as_deref(), &r.event_id, r.timestamp_ms),
            ordering_key,
        })
        .collect();
    serde_json::to_vec(&PublishRequest { messages }).unwrap_or_default()
}

fn cost(r: &Row) -> usize {
    r.payload.len().div_ceil(3) * 4 + MESSAGE_OVERHEAD
}

/// The Pub/Sub task: wait for a batch, publish it, classify, retry, fall back.
pub(crate) async fn run(shared: Arc<Shared>, http: reqwest::Client, mut tokens: TokenCache, mut shutdown: watch::Receiver<bool>) {
    let p = &shared.settings.pubsub;
    let url = format!("{}/v1/projects/{}/topics/{}:publish", p.endpoint.trim_end_matches('/'), p.project, p.topic);
    let max_count = p.max_batch_messages as usize;
    let max_bytes = p.max_batch_bytes as usize;
    let mut backoff = Backoff::pubsub();
    let mut breaker = Breaker::pubsub();
    while wait_for_batch(&shared, &mut shutdown).await {
        // An open breaker sends nothing until its period ends; then one batch is the probe.
        if let BreakerState::Open(until) = breaker.state(Instant::now()) {
            fall_back_all(&shared);
            if !sleep_or_shutdown(until.saturating_duration_since(Instant::now()), &mut shutdown).await {
                break;
            }
            continue;
        }
        let rows = shared.lock().outbox.take(Transport::PubSub, max_count, max_bytes, cost);
        // Batches split after a 400 are sent in order, oldest first.
        let mut work: Vec<Vec<Row>> = vec![rows];
        while let Some(batch) = work.pop() {
            if batch.is_empty() {
                continue;
            }
            // Halves of a split batch: stop if the SDK closes or the config stops owing Pub/Sub.
            if *shutdown.borrow() || !shared.active().decision.pubsub_enabled {
                let seqs: Vec<u64> = batch.iter().chain(work.iter().flatten()).map(|r| r.seq).collect();
                work.clear();
                release_in_flight(&shared, &seqs);
                break;
            }
            let outcome = publish(&shared, &http, &url, &mut tokens, &batch).await;
            match outcome {
                Outcome::Delivered => {
                    backoff.reset();
                    if breaker.success() {
                        shared.metrics.set_circuit_open(Transport::PubSub, false);
                        shared.event(log::Level::Info, "pubsub", || "circuit closed: the probe was delivered".into());
                    }
                    let acked: Vec<(u64, Instant)> = batch.iter().map(|r| (r.seq, r.accepted_at)).collect();
                    shared.ack(Transport::PubSub, &acked);
                }
                Outcome::BadRequest { why } if batch.len() > 1 => {
                    shared.event(log::Level::Warn, "pubsub", || format!("refused a batch of {} ({why}); splitting it", batch.len()));
                    let mut first = batch;
                    let second = first.split_off(first.len() / 2);
                    work.push(second);
                    work.push(first);
                }
                Outcome::BadRequest { why } => {
                    let row = &batch[0];
                    shared.event(log::Level::Error, "pubsub", || format!("refused event {} as invalid ({why}); dead-lettered", row.event_id));
                    fall_back(&shared, &batch);
                    shared.metrics.dead_letter();
                    shared.metrics.failed(Transport::PubSub, 1);
                    let mut st = shared.lock();
                    let done = st.outbox.dead_letter(Transport::PubSub, row.seq, why);
                    shared.completed(st, &done);
                }
                failure => {
                    let mut rest: Vec<u64> = batch.iter().map(|r| r.seq).collect();
                    rest.extend(work.drain(..).flatten().map(|r| r.seq));
                    fail(&shared, &batch, &rest, failure, &mut tokens, &mut backoff, &mut breaker, &mut shutdown).await;
                    break;
                }
            }
        }
    }
}

/// After a failed attempt: put the rows back in order, count the failure on the breaker (an
/// opening breaker sends everything owed to Pub/Sub to MQTT too), back off.
#[allow(clippy::too_many_arguments)]
async fn fail(
    shared: &Shared,
    batch: &[Row],
    all_in_flight: &[u64],
    outcome: Outcome,
    tokens: &mut TokenCache,
    backoff: &mut Backoff,
    breaker: &mut Breaker,
    shutdown: &mut watch::Receiver<bool>,
) {
    shared.metrics.failed(Transport::PubSub, batch.len() as u64);
    shared.metrics.retry(Transport::PubSub);
    let now = Instant::now();
    let opened = match &outcome {
        Outcome::ConfigError { .. } => breaker.trip(now),
        _ => breaker.failure(now),
    };
    let delay = match &outcome {
        Outcome::Unauthorized => {
            tokens.invalidate();
            backoff.next_delay()
        }
        Outcome::Retry { retry_after, .. } => backoff.next_delay_with(*retry_after),
        Outcome::ConfigError { .. } => {
            // Misconfiguration will not heal by itself quickly: wait the longest.
            backoff.next_delay_with(Some(Duration::MAX))
        }
        _ => backoff.next_delay(),
    };
    release_in_flight(shared, all_in_flight);
    let why = match &outcome {
        Outcome::Retry { why, .. } | Outcome::ConfigError { why } | Outcome::BadRequest { why } => why.clone(),
        Outcome::Unauthorized => "HTTP 401".into(),
        Outcome::Delivered => String::new(),
    };
    if opened {
        shared.metrics.set_circuit_open(Transport::PubSub, true);
        shared.metrics.circuit_opened(Transport::PubSub);
        shared.event(log::Level::Warn, "pubsub", || format!("circuit open after a failed publish of {} ({why})", batch.len()));
        fall_back_all(shared);
        // The run loop waits out the open period.
        return;
    }
    shared.event(log::Level::Warn, "pubsub", || format!("publish of {} failed ({why}); retrying in {} ms", batch.len(), delay.as_millis()));
    sleep_or_shutdown(delay, shutdown).await;
}

/// Pub/Sub cannot deliver (its breaker is open): everything owed to it also goes to MQTT,
/// when the config allows; it stays owed to Pub/Sub.
fn fall_back_all(shared: &Shared) {
    let seqs = shared.lock().outbox.owed_seqs(Transport::PubSub);
    fall_back_seqs(shared, &seqs);
}

/// Puts in-flight rows back in the Pub/Sub queue; if the config stopped owing Pub/Sub while they
/// were in flight, hands them to MQTT instead.
fn release_in_flight(shared: &Shared, seqs: &[u64]) {
    let mut st = shared.lock();
    st.outbox.release(Transport::PubSub, seqs);
    if !st.active.decision.pubsub_enabled {
        let done = st.outbox.stop_owing(Transport::PubSub, Transport::Mqtt);
        shared.completed(st, &done);
        shared.wake(Transport::Mqtt);
    }
}

/// Sends `batch` to MQTT too when the config says so; counts each newly owed location.
fn fall_back(shared: &Shared, batch: &[Row]) {
    let seqs: Vec<u64> = batch.iter().map(|r| r.seq).collect();
    fall_back_seqs(shared, &seqs);
}

fn fall_back_seqs(shared: &Shared, seqs: &[u64]) {
    let newly = {
        let mut st = shared.lock();
        if !st.active.decision.fallback_to_mqtt {
            return;
        }
        st.outbox.also_owe(Transport::Mqtt, seqs)
    };
    if newly > 0 {
        shared.metrics.fallback(newly);
        shared.wake(Transport::Mqtt);
        shared.event(log::Level::Info, "fallback", || format!("{newly} location(s) also sent to mqtt"));
    }
}

/// One publish request.
async fn publish(shared: &Shared, http: &reqwest::Client, url: &str, tokens: &mut TokenCache, batch: &[Row]) -> Outcome {
    let bearer = match tokens.bearer().await {
        Ok(b) => b,
        Err(why) => return Outcome::Retry { why, retry_after: None },
    };
    let body = request_body(&shared.settings, batch);
    let len = body.len() as u64;
    let mut req = http.post(url).header("content-type", "application/json").body(body);
    if let Some(token) = bearer {
        req = req.bearer_auth(token);
    }
    shared.metrics.http_request();
    shared.metrics.bytes_sent(Transport::PubSub, len);
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) => return Outcome::Retry { why: format!("transport error: {}", without_url(&e)), retry_after: None },
    };
    let status = resp.status().as_u16();
    let retry_after = resp.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(parse_retry_after);
    let text = match resp.text().await {
        Ok(t) => t,
        Err(e) => return Outcome::Retry { why: format!("reading the response: {}", without_url(&e)), retry_after },
    };
    match classify(status, &text, retry_after) {
        Outcome::Delivered => match message_ids(&text) {
            Some(n) if n == batch.len() => Outcome::Delivered,
            other => Outcome::Retry { why: format!("expected {} messageIds, got {other:?}", batch.len()), retry_after: None },
        },
        other => other,
    }
}

/// A reqwest error's text with its causes, the URL replaced by `<endpoint>`.
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

fn message_ids(body: &str) -> Option<usize> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Resp {
        message_ids: Vec<String>,
    }
    serde_json::from_str::<Resp>(body).ok().map(|r| r.message_ids.len())
}

/// Waits until a batch should go: the count or byte limit is reached, the oldest pending
/// location has waited `maxBatchLatencyMs`, or a flush asks for it. False on shutdown.
async fn wait_for_batch(shared: &Shared, shutdown: &mut watch::Receiver<bool>) -> bool {
    let p = &shared.settings.pubsub;
    let max_latency = Duration::from_millis(p.max_batch_latency_ms);
    loop {
        if *shutdown.borrow() {
            return false;
        }
        let deadline = {
            let st = shared.lock();
            let n = st.outbox.pending_count(Transport::PubSub);
            let flushing = st.outbox.oldest_pending_seq(Transport::PubSub).is_some_and(|s| s <= shared.flush_target.load(Ordering::SeqCst));
            if n == 0 {
                None
            } else if n >= p.max_batch_messages as usize
                || flushing
                || st.outbox.pending_cost(Transport::PubSub, p.max_batch_messages as usize, cost) >= p.max_batch_bytes as usize
            {
                return true;
            } else {
                st.outbox.oldest_pending(Transport::PubSub).map(|t| t.checked_add(max_latency).unwrap_or(t))
            }
        };
        match deadline {
            Some(at) if at <= Instant::now() => return true,
            Some(at) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(at.into()) => {}
                    _ = shared.wake_pubsub.notified() => {}
                    _ = shutdown.changed() => {}
                }
            }
            None => {
                tokio::select! {
                    _ = shared.wake_pubsub.notified() => {}
                    _ = shutdown.changed() => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_classified_as_the_guide_says() {
        for s in [409, 429, 499, 500, 502, 503, 504] {
            assert!(matches!(classify(s, "", None), Outcome::Retry { .. }), "{s}");
        }
        assert_eq!(classify(401, "", None), Outcome::Unauthorized);
        assert!(matches!(classify(400, "bad", None), Outcome::BadRequest { .. }));
        assert!(matches!(classify(403, "", None), Outcome::ConfigError { .. }));
        assert!(matches!(classify(404, "", None), Outcome::ConfigError { .. }));
        assert_eq!(classify(200, "", None), Outcome::Delivered);
        let ra = Some(Duration::from_secs(3));
        assert_eq!(classify(429, "", ra), Outcome::Retry { why: "HTTP 429: ".into(), retry_after: ra });
    }
}
