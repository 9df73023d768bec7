//! Google Pub/Sub over REST (reqwest + rustls): batching, response classification, token
//! refresh and fallback to MQTT (docs/CONTRACT.md#pubsub-delivery and docs/CONTRACT.md#fallback).
//!
//! One request is in flight at a time per publisher, so one device's locations reach Pub/Sub
//! in acceptance order (a failed batch is put back in front of later rows). Each request's
//! size and timeout follow the throughput the link has shown ([`Pace`]): a slow link gets
//! requests that upload in seconds, not one big request that times out and goes again whole.
//!
//! What follows an answer (acknowledge, split after a 400 down to one dead letter, retry with
//! backoff, open the breaker and fall back to MQTT) is the [`Machine`] state machine, which
//! knows nothing of the network; [`run`] feeds it the answers of [`Rest::publish`], which
//! gzips a large body and learns, from its first compressed request, whether the endpoint takes
//! gzip ([`crate::transport::gzip`]).

use crate::config::{PubsubCompression, SdkConfig};
use crate::http::{without_url, MAX_RESPONSE_BYTES};
use crate::hub::Lane;
use crate::outbox::{Row, Transport};
use crate::retry::{parse_retry_after, Backoff};
use crate::transport::breaker::{Breaker, BreakerState};
use crate::transport::gzip::{self, GzipSupport, Verdict};
use crate::transport::pace::Pace;
use crate::transport::token::TokenCache;
use crate::wire;
use crate::wire::PubsubAttribute;
use base64::Engine;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Room per message for attributes and JSON framing, on top of the base64 data, when sizing
/// a batch against `maxBatchBytes`.
const MESSAGE_OVERHEAD: usize = 512;

/// The longest a migration report's request may take (the next location batch waits for it).
const REPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest any location request may take, however big and however slow the link.
const MAX_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

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

impl Outcome {
    /// What went wrong, for a log line (empty when delivered).
    fn why(&self) -> String {
        match self {
            Outcome::Retry { why, .. } | Outcome::ConfigError { why } | Outcome::BadRequest { why } => why.clone(),
            Outcome::Unauthorized => "HTTP 401".into(),
            Outcome::Delivered => String::new(),
        }
    }
}

/// Classifies an HTTP status (docs/CONTRACT.md#pubsub-delivery).
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

/// The request body for a batch, its messages carrying `attributes` (docs/CONTRACT.md#pubsub).
pub(crate) fn request_body(settings: &Settings, attributes: &[PubsubAttribute], rows: &[Row]) -> Vec<u8> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let ordering_key = settings.ordering.then_some(settings.device_id.as_str());
    let messages = rows
        .iter()
        .map(|r| PubsubMessage {
            data: b64.encode(&r.payload),
            attributes: wire::pubsub_attributes(attributes, &settings.device_id, settings.company_id.as_deref(), &r.event_id, r.timestamp_ms),
            ordering_key,
        })
        .collect();
    serde_json::to_vec(&PublishRequest { messages }).unwrap_or_default()
}

/// A message's share of a request, for a payload of `len` bytes (base64 plus attributes).
fn cost(len: usize) -> usize {
    len.div_ceil(3) * 4 + MESSAGE_OVERHEAD
}

/// What the Pub/Sub task needs from the app's settings.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// The `meta` key the endpoint's gzip support is kept under ([`gzip::meta_key`]).
    pub gzip_key: String,
    /// The app's compression override (`None`: the migration config decides).
    pub compression: Option<PubsubCompression>,
    /// `…/v1/projects/{project}/topics/{topic}:publish`.
    pub url: String,
    /// The same for the migration reports' topic.
    pub report_url: String,
    /// The device (attribute and ordering key) and its company.
    pub device_id: String,
    /// The company, for the attribute.
    pub company_id: Option<String>,
    /// Send `orderingKey = deviceId`.
    pub ordering: bool,
    /// Batch limits.
    pub max_count: usize,
    /// Batch limit in request bytes (base64 counted).
    pub max_bytes: usize,
    /// Longest a location waits for its batch to fill.
    pub max_latency: Duration,
}

impl Settings {
    /// The Pub/Sub task's settings from the app's (validated already).
    pub fn from_config(c: &SdkConfig) -> Self {
        let p = &c.pubsub;
        Settings {
            gzip_key: gzip::meta_key(&p.endpoint),
            compression: p.compression,
            url: format!("{}/v1/projects/{}/topics/{}:publish", p.endpoint.trim_end_matches('/'), p.project, p.topic),
            report_url: format!("{}/v1/projects/{}/topics/{}:publish", p.endpoint.trim_end_matches('/'), p.project, p.reports_topic),
            device_id: c.device_id.clone(),
            company_id: c.company_id.clone(),
            ordering: p.ordering_enabled,
            max_count: p.max_batch_messages as usize,
            max_bytes: p.max_batch_bytes as usize,
            max_latency: Duration::from_millis(p.max_batch_latency_ms),
        }
    }
}

/// What the task does after an answer.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Next {
    /// Send the next batch of the work list (a half of a split batch, or nothing left).
    Continue,
    /// The attempt failed: everything in flight went back; wait this long before the next one,
    /// having asked for a new token first if `refresh_token`.
    Wait {
        /// The backoff.
        delay: Duration,
        /// The server refused the token (401).
        refresh_token: bool,
    },
    /// The breaker opened: everything owed went to MQTT too (if allowed); the task waits out
    /// the open period.
    Opened,
}

/// The Pub/Sub delivery state machine: what each answer does to the outbox, the backoff and
/// the breaker.
#[derive(Debug)]
pub(crate) struct Machine {
    backoff: Backoff,
    breaker: Breaker,
}

impl Default for Machine {
    fn default() -> Self {
        Machine { backoff: Backoff::pubsub(), breaker: Breaker::pubsub() }
    }
}

impl Machine {
    /// The breaker's state at `now`.
    pub fn breaker(&self, now: Instant) -> BreakerState {
        self.breaker.state(now)
    }

    /// Lets the breaker's probe pass now if it is open.
    pub fn probe_now(&mut self, now: Instant) {
        self.breaker.probe_now(now);
    }

    /// Handles the answer to `batch`; `work` holds the batches still to send after it (the
    /// halves of earlier splits, oldest last-in-first-out).
    pub fn on_answer(&mut self, lane: &Lane, batch: Vec<Row>, work: &mut Vec<Vec<Row>>, outcome: Outcome, now: Instant) -> Next {
        match outcome {
            Outcome::Delivered => {
                self.backoff.reset();
                lane.set_link(crate::hub::Link::Up);
                if self.breaker.success() {
                    lane.metrics().set_circuit_open(Transport::PubSub, false);
                    lane.event(log::Level::Info, || "circuit closed: the probe was delivered".into());
                }
                lane.ack(&batch.iter().map(|r| (r.seq, r.accepted_at)).collect::<Vec<_>>());
                Next::Continue
            }
            Outcome::BadRequest { why } if batch.len() > 1 => {
                lane.event(log::Level::Warn, || format!("refused a batch of {} ({why}); splitting it", batch.len()));
                let mut first = batch;
                let second = first.split_off(first.len() / 2);
                work.push(second);
                work.push(first);
                Next::Continue
            }
            Outcome::BadRequest { why } => {
                let row = &batch[0];
                lane.event(log::Level::Error, || format!("refused event {} as invalid ({why}); dead-lettered", row.event_id));
                lane.fall_back(&[row.seq]);
                lane.dead_letter(row.seq, why);
                Next::Continue
            }
            failure => {
                let mut in_flight: Vec<u64> = batch.iter().map(|r| r.seq).collect();
                in_flight.extend(work.drain(..).flatten().map(|r| r.seq));
                self.on_failure(lane, batch.len(), &in_flight, failure, now)
            }
        }
    }

    /// After a failed attempt: put the rows back in order, count the failure on the breaker (an
    /// opening breaker sends everything owed to Pub/Sub to MQTT too), draw the backoff.
    fn on_failure(&mut self, lane: &Lane, batch_len: usize, in_flight: &[u64], outcome: Outcome, now: Instant) -> Next {
        lane.set_link(crate::hub::Link::Down);
        lane.metrics().failed(Transport::PubSub, batch_len as u64);
        lane.metrics().retry(Transport::PubSub);
        let opened = match &outcome {
            Outcome::ConfigError { .. } => self.breaker.trip(now),
            _ => self.breaker.failure(now),
        };
        let delay = match &outcome {
            Outcome::Retry { retry_after, .. } => self.backoff.next_delay_with(*retry_after),
            // Misconfiguration will not heal by itself quickly: wait the longest.
            Outcome::ConfigError { .. } => self.backoff.next_delay_with(Some(Duration::MAX)),
            _ => self.backoff.next_delay(),
        };
        lane.release_or_hand_over(in_flight);
        let why = outcome.why();
        if opened {
            lane.metrics().set_circuit_open(Transport::PubSub, true);
            lane.metrics().circuit_opened(Transport::PubSub);
            lane.event(log::Level::Warn, || format!("circuit open after a failed publish of {batch_len} ({why})"));
            lane.fall_back_all();
            lane.breaker_opened();
            return Next::Opened;
        }
        lane.event(log::Level::Warn, || format!("publish of {batch_len} failed ({why}); retrying in {} ms", delay.as_millis()));
        Next::Wait { delay, refresh_token: outcome == Outcome::Unauthorized }
    }
}

/// The Pub/Sub task: wait for a batch, publish it, let the [`Machine`] decide what follows.
pub(crate) async fn run(lane: Lane, mut rest: Rest, mut shutdown: watch::Receiver<bool>) {
    let mut machine = Machine::default();
    let mut pace = Pace::default();
    let (max_count, max_bytes) = (rest.settings.max_count, rest.settings.max_bytes);
    while wait_for_batch(&lane, &rest.settings, &mut shutdown).await {
        // An open breaker sends nothing until its period ends; then one batch is the probe.
        if let BreakerState::Open(until) = machine.breaker(Instant::now()) {
            lane.fall_back_all();
            if !lane.back_off(until.saturating_duration_since(Instant::now()), &mut shutdown).await {
                break;
            }
            // Roused before the period ended: the probe goes now.
            machine.probe_now(Instant::now());
            continue;
        }
        // A probe after an open period is one message; otherwise what the link can take.
        let first = match machine.breaker(Instant::now()) {
            BreakerState::HalfOpen => lane.take(1, max_bytes, cost),
            _ => lane.take(max_count, pace.batch_bytes(max_bytes), cost),
        };
        if first.is_empty() && lane.batch_status(max_count, cost).pending > 0 {
            // Their payloads are being read back from the database (src/outbox.rs, "Memory"):
            // the lane is woken once they are in memory.
            tokio::select! {
                _ = lane.work_arrives() => {}
                _ = shutdown.changed() => {}
            }
            continue;
        }
        // Batches split after a 400 are sent in order, oldest first.
        let mut work: Vec<Vec<Row>> = vec![first];
        let mut delivered = true;
        while let Some(batch) = work.pop() {
            if batch.is_empty() {
                continue;
            }
            // Halves of a split batch: stop if the SDK closes or the config stops owing Pub/Sub.
            if *shutdown.borrow() || !lane.owed_by_config() {
                let seqs: Vec<u64> = batch.iter().chain(work.iter().flatten()).map(|r| r.seq).collect();
                work.clear();
                lane.release_or_hand_over(&seqs);
                break;
            }
            let outcome = rest.publish(&lane, &batch, &mut pace).await;
            match machine.on_answer(&lane, batch, &mut work, outcome, Instant::now()) {
                Next::Continue => {}
                Next::Wait { delay, refresh_token } => {
                    if refresh_token {
                        rest.tokens.invalidate();
                    }
                    lane.burst_failed();
                    delivered = false;
                    lane.back_off(delay, &mut shutdown).await;
                    break;
                }
                // The run loop waits out the open period.
                Next::Opened => {
                    lane.burst_failed();
                    delivered = false;
                    break;
                }
            }
        }
        // A migration report goes after the locations, in the same network window.
        if delivered {
            send_report(&lane, &mut rest).await;
        }
    }
}

/// Sends the migration report waiting for Pub/Sub, if it may go now; its outcome never
/// touches the locations' backoff, breaker or counters.
async fn send_report(lane: &Lane, rest: &mut Rest) {
    if let Some(report) = lane.take_report(false) {
        let delivered = rest.publish_report(&report).await == Outcome::Delivered;
        lane.set_link(if delivered { crate::hub::Link::Up } else { crate::hub::Link::Down });
        lane.report_settled(report.seq, delivered);
    }
}

/// The Pub/Sub REST client of one publisher: HTTP client, settings, token cache and what the
/// endpoint has shown of gzip.
pub(crate) struct Rest {
    /// The publish settings.
    pub settings: Settings,
    http: reqwest::Client,
    /// The app's tokens, cached.
    pub tokens: TokenCache,
    gzip: GzipSupport,
}

impl Rest {
    /// A client for `settings` over `http`, authorised by `tokens`, to an endpoint that showed
    /// `gzip` in earlier runs.
    pub fn new(settings: Settings, http: reqwest::Client, tokens: TokenCache, gzip: GzipSupport) -> Self {
        Rest { settings, http, tokens, gzip }
    }

    /// Publishes one migration report to the reports' topic; its answer classified.
    pub async fn publish_report(&mut self, report: &crate::telemetry::reports::CutReport) -> Outcome {
        let bearer = match self.tokens.bearer().await {
            Ok(b) => b,
            Err(e) => return Outcome::Retry { why: e.to_string(), retry_after: None },
        };
        let mut attributes = BTreeMap::new();
        attributes.insert("deviceId", self.settings.device_id.clone());
        attributes.insert("reportSeq", report.seq.to_string());
        attributes.insert("epoch", report.epoch.to_string());
        attributes.insert("sdk", wire::SDK_ID.to_string());
        let message = PubsubMessage { data: base64::engine::general_purpose::STANDARD.encode(&report.bytes), attributes, ordering_key: None };
        let body = serde_json::to_vec(&PublishRequest { messages: vec![message] }).unwrap_or_default();
        // A short deadline of its own: the next location batch waits behind this request.
        let mut req = self.http.post(&self.settings.report_url).header("content-type", "application/json").body(body).timeout(REPORT_TIMEOUT);
        if let Some(token) = bearer {
            req = req.bearer_auth(token);
        }
        // Not counted in the location metrics (requests, bytes): reports never count against locations.
        answer(req.send().await, 1).await
    }

    /// Publishes one batch: gzip-compressed when the body is large enough and the endpoint is
    /// not known to refuse it (docs/CONTRACT.md#compression). A compressed request the endpoint
    /// refuses goes again uncompressed at once, and the refusal is kept for good; the answer
    /// returned is the one that counts for the batch.
    pub async fn publish(&mut self, lane: &Lane, batch: &[Row], pace: &mut Pace) -> Outcome {
        let bearer = match self.tokens.bearer().await {
            Ok(b) => b,
            Err(e) => return Outcome::Retry { why: e.to_string(), retry_after: None },
        };
        let (config_mode, attributes) = lane.pubsub_wire();
        let mode = self.settings.compression.or(config_mode).unwrap_or(PubsubCompression::Auto);
        let body = request_body(&self.settings, &attributes, batch);
        if gzip::compresses(mode, self.gzip, body.len()) {
            if let Some(packed) = gzip::compress(&body) {
                let (status, outcome) = self.send(lane, bearer.as_deref(), Body::gzip(packed, body.len()), batch.len(), pace).await;
                match gzip::verdict(self.gzip, status) {
                    Verdict::Stands => {
                        if outcome == Outcome::Delivered {
                            self.learn(lane, GzipSupport::Accepted);
                        }
                        return outcome;
                    }
                    Verdict::Refused => self.refused(lane, &outcome.why()),
                    Verdict::Suspect => {
                        // The 400 may be a bad message: only a delivered uncompressed copy says gzip was the cause.
                        let (_, again) = self.send(lane, bearer.as_deref(), Body::plain(body), batch.len(), pace).await;
                        if again == Outcome::Delivered {
                            self.refused(lane, &outcome.why());
                        }
                        return again;
                    }
                }
            }
        }
        self.send(lane, bearer.as_deref(), Body::plain(body), batch.len(), pace).await.1
    }

    /// Keeps what the endpoint showed of gzip when it changed (in memory, on disk, in the metrics).
    fn learn(&mut self, lane: &Lane, support: GzipSupport) {
        if support != self.gzip {
            self.gzip = support;
            lane.record_gzip(self.settings.gzip_key.clone(), support);
        }
    }

    /// The endpoint refused a gzip body (`answer`): counted each time, logged once (when it
    /// changes what the endpoint is known for), kept.
    fn refused(&mut self, lane: &Lane, answer: &str) {
        lane.metrics().gzip_refused();
        if self.gzip != GzipSupport::Refused {
            lane.event(log::Level::Warn, || {
                format!("the Pub/Sub endpoint refused a gzip body ({answer}); requests go uncompressed from now on (the same messages went again at once)")
            });
        }
        self.learn(lane, GzipSupport::Refused);
    }

    /// One request, timed out by `pace` from its size; its HTTP status (`None`: no answer) and
    /// its answer classified, and what it showed of the link given back to `pace` (an answer's
    /// rate; a timeout or a connection cut during the request halves the next one; no
    /// connection at all changes nothing). `pace` counts body bytes before compression, the
    /// unit batches are sized in.
    async fn send(&self, lane: &Lane, bearer: Option<&str>, body: Body, expected: usize, pace: &mut Pace) -> (Option<u16>, Outcome) {
        let len = body.plain_len;
        let timeout = pace.timeout(len, MAX_REQUEST_TIMEOUT);
        lane.metrics().http_request();
        lane.metrics().bytes_sent(Transport::PubSub, body.bytes.len() as u64);
        lane.metrics().pubsub_body(len as u64, body.gzip);
        let mut req = self.http.post(&self.settings.url).header("content-type", "application/json").timeout(timeout);
        if body.gzip {
            req = req.header("content-encoding", "gzip");
        }
        if let Some(token) = bearer {
            req = req.bearer_auth(token);
        }
        let started = Instant::now();
        let sent = req.body(body.bytes).send().await;
        match &sent {
            Ok(_) => pace.answered(len, started.elapsed()),
            // No connection (refused, reset, a failed TLS handshake: an outage, a dead route)
            // says nothing of what the link carries: the request keeps its size.
            Err(e) if e.is_connect() && !e.is_timeout() => {}
            Err(e) => {
                pace.failed(len, e.is_timeout());
                if e.is_timeout() {
                    lane.metrics().stall(Transport::PubSub);
                }
            }
        }
        let status = sent.as_ref().ok().map(|r| r.status().as_u16());
        (status, answer(sent, expected).await)
    }
}

/// A request body as sent, and its length before compression.
struct Body {
    bytes: Vec<u8>,
    plain_len: usize,
    gzip: bool,
}

impl Body {
    /// An uncompressed body.
    fn plain(bytes: Vec<u8>) -> Self {
        Body { plain_len: bytes.len(), bytes, gzip: false }
    }

    /// A gzip body of `plain_len` bytes before compression.
    fn gzip(bytes: Vec<u8>, plain_len: usize) -> Self {
        Body { bytes, plain_len, gzip: true }
    }
}

/// Classifies the answer to a request of `expected` messages.
async fn answer(sent: Result<reqwest::Response, reqwest::Error>, expected: usize) -> Outcome {
    let resp = match sent {
        Ok(r) => r,
        Err(e) => return Outcome::Retry { why: format!("transport error: {}", without_url(&e)), retry_after: None },
    };
    let status = resp.status().as_u16();
    let retry_after = resp.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(parse_retry_after);
    // Message ids need a few KiB: a larger body (a proxy's error page, a hostile server) is not read.
    let text = match crate::http::body_up_to(resp, MAX_RESPONSE_BYTES).await {
        Ok(Some(body)) => String::from_utf8_lossy(&body).into_owned(),
        Ok(None) if (200..300).contains(&status) => {
            return Outcome::Retry { why: format!("HTTP {status} with a body over {MAX_RESPONSE_BYTES} bytes"), retry_after }
        }
        Ok(None) => format!("(a body over {MAX_RESPONSE_BYTES} bytes)"),
        Err(e) => return Outcome::Retry { why: format!("reading the response: {}", without_url(&e)), retry_after },
    };
    match classify(status, &text, retry_after) {
        Outcome::Delivered => match message_ids(&text) {
            Some(n) if n == expected => Outcome::Delivered,
            other => Outcome::Retry { why: format!("expected {expected} messageIds, got {other:?}"), retry_after: None },
        },
        other => other,
    }
}

fn message_ids(body: &str) -> Option<usize> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Resp {
        message_ids: Vec<String>,
    }
    serde_json::from_str::<Resp>(body).ok().map(|r| r.message_ids.len())
}

/// Waits until a batch should go: with an upload window, whenever a burst is open and
/// something is pending (the whole backlog goes, batch after batch); without one, when the
/// count or byte limit is reached, the oldest pending location has waited
/// `maxBatchLatencyMs`, or a flush asks for it. Never while the network is unavailable.
/// False on shutdown.
async fn wait_for_batch(lane: &Lane, settings: &Settings, shutdown: &mut watch::Receiver<bool>) -> bool {
    loop {
        if *shutdown.borrow() {
            return false;
        }
        let b = lane.batch_status(settings.max_count, cost);
        let deadline = if !lane.network() || (lane.windowed() && !lane.may_send() && !(b.pending == 0 && lane.report_ready())) {
            None // wait for a burst (or the network) to open
        } else if lane.windowed() && b.pending > 0 {
            return true;
        } else if b.pending == 0 {
            if lane.report_ready() {
                return true; // a migration report alone (a silent one, or the radio is on)
            }
            None
        } else if b.pending >= settings.max_count || b.flushing || b.cost >= settings.max_bytes {
            return true;
        } else {
            b.oldest.map(|t| t.checked_add(settings.max_latency).unwrap_or(t))
        };
        match deadline {
            Some(at) if at <= Instant::now() => return true,
            Some(at) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(at.into()) => {}
                    _ = lane.work_arrives() => {}
                    _ = shutdown.changed() => {}
                }
            }
            None => {
                tokio::select! {
                    _ = lane.work_arrives() => {}
                    _ = shutdown.changed() => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::test_support::{hub, queue};
    use crate::hub::Hub;
    use crate::MigrationConfig;
    use std::sync::Arc;

    /// Pub/Sub only (MQTT off), fallback allowed.
    fn pubsub_only() -> (Arc<Hub>, Lane) {
        let h = hub(MigrationConfig { version: 1, mqtt_enabled: false, pubsub_enabled: true, pubsub_percentage: 100.0, ..MigrationConfig::default() });
        let lane = Lane::new(h.clone(), Transport::PubSub);
        (h, lane)
    }

    fn retry(retry_after: Option<Duration>) -> Outcome {
        Outcome::Retry { why: "HTTP 503: ".into(), retry_after }
    }

    /// Sends everything pending the way [`run`] does, answering each request with `answer`;
    /// returns the sizes of the requests made and how it ended.
    fn drive(m: &mut Machine, lane: &Lane, answer: impl Fn(&[Row]) -> Outcome) -> (Vec<usize>, Next) {
        let mut requests = Vec::new();
        let mut work = vec![lane.take(1000, usize::MAX, cost)];
        while let Some(batch) = work.pop() {
            if batch.is_empty() {
                continue;
            }
            requests.push(batch.len());
            let outcome = answer(&batch);
            match m.on_answer(lane, batch, &mut work, outcome, Instant::now()) {
                Next::Continue => {}
                other => return (requests, other),
            }
        }
        (requests, Next::Continue)
    }

    #[test]
    fn statuses_are_classified_as_the_contract_says() {
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

    #[test]
    fn success_acknowledges_the_whole_batch() {
        let (h, lane) = pubsub_only();
        queue(&h, 10, false, true);
        let mut m = Machine::default();
        assert_eq!(drive(&mut m, &lane, |_| Outcome::Delivered), (vec![10], Next::Continue));
        assert!(h.lock().outbox.is_empty());
        assert_eq!(h.metrics.snapshot(&Default::default()).pubsub.published, 10);
    }

    #[test]
    fn a_400_splits_the_batch_down_to_one_dead_letter() {
        let (h, lane) = pubsub_only();
        queue(&h, 8, false, true);
        let mut m = Machine::default();
        let poisoned = 6;
        let (requests, next) = drive(&mut m, &lane, |b| {
            if b.iter().any(|r| r.seq == poisoned) {
                Outcome::BadRequest { why: "HTTP 400: invalid".into() }
            } else {
                Outcome::Delivered
            }
        });
        assert_eq!(next, Next::Continue);
        // 1–4 ok; 5–8 split: 5–6 split: 5 ok, 6 dead-lettered; then 7–8 ok (oldest first throughout).
        assert_eq!(requests, vec![8, 4, 4, 2, 1, 1, 2], "halves, oldest first, down to the one bad message");
        let st = h.lock();
        assert_eq!(st.outbox.dead_letter_count(), 1);
        assert_eq!(st.outbox.dead_letters(0, 10)[0].event_id, format!("e{poisoned}"));
        assert_eq!(st.outbox.depth(Transport::PubSub), 0, "the seven good ones were delivered");
        assert_eq!(st.outbox.depth(Transport::Mqtt), 1, "the dead letter also went to MQTT (fallback)");
        drop(st);
        let snap = h.metrics.snapshot(&Default::default());
        assert_eq!((snap.dead_letter, snap.pubsub.published, snap.fallback), (1, 7, 1));
    }

    #[test]
    fn a_401_asks_for_a_new_token_and_puts_the_rows_back() {
        let (h, lane) = pubsub_only();
        queue(&h, 3, false, true);
        let mut m = Machine::default();
        let (_, next) = drive(&mut m, &lane, |_| Outcome::Unauthorized);
        assert!(matches!(next, Next::Wait { refresh_token: true, delay } if delay <= Duration::from_millis(100)), "{next:?}");
        assert_eq!(h.lock().outbox.pending_count(Transport::PubSub), 3, "back in the queue");
        assert_eq!(h.lock().outbox.oldest_pending_seq(Transport::PubSub), Some(1), "in order");
    }

    #[test]
    fn a_429_waits_as_long_as_retry_after_says() {
        let (h, lane) = pubsub_only();
        queue(&h, 2, false, true);
        let mut m = Machine::default();
        let (_, next) = drive(&mut m, &lane, |_| retry(Some(Duration::from_secs(5))));
        assert_eq!(next, Next::Wait { delay: Duration::from_secs(5), refresh_token: false });
        let (_, next) = drive(&mut m, &lane, |_| retry(Some(Duration::from_secs(3600))));
        assert_eq!(next, Next::Wait { delay: Duration::from_secs(60), refresh_token: false }, "never past the cap");
        assert_eq!(h.metrics.snapshot(&Default::default()).pubsub.retries, 2);
    }

    #[test]
    fn the_breaker_opens_after_five_failures_and_everything_owed_falls_back() {
        let (h, lane) = pubsub_only();
        queue(&h, 4, false, true);
        let mut m = Machine::default();
        for attempt in 1..=4 {
            let (_, next) = drive(&mut m, &lane, |_| retry(None));
            assert!(matches!(next, Next::Wait { .. }), "attempt {attempt}: {next:?}");
            assert_eq!(h.lock().outbox.depth(Transport::Mqtt), 0, "no fallback before the breaker opens");
        }
        let (_, next) = drive(&mut m, &lane, |_| retry(None));
        assert_eq!(next, Next::Opened);
        assert!(matches!(m.breaker(Instant::now()), BreakerState::Open(_)));
        assert!(h.metrics.circuit_open(Transport::PubSub));
        let st = h.lock();
        assert_eq!((st.outbox.depth(Transport::Mqtt), st.outbox.depth(Transport::PubSub)), (4, 4), "MQTT owes them too; Pub/Sub still does");
        drop(st);
        assert_eq!(h.metrics.snapshot(&Default::default()).fallback, 4);
    }

    #[test]
    fn a_403_opens_the_breaker_at_once() {
        let (h, lane) = pubsub_only();
        queue(&h, 2, false, true);
        let mut m = Machine::default();
        let (_, next) = drive(&mut m, &lane, |_| Outcome::ConfigError { why: "HTTP 403: denied".into() });
        assert_eq!(next, Next::Opened);
        assert_eq!(h.lock().outbox.depth(Transport::Mqtt), 2);
    }

    #[test]
    fn a_good_probe_closes_the_breaker() {
        let (h, lane) = pubsub_only();
        queue(&h, 2, false, true);
        let mut m = Machine::default();
        drive(&mut m, &lane, |_| Outcome::ConfigError { why: "HTTP 404".into() });
        assert!(h.metrics.circuit_open(Transport::PubSub));
        drive(&mut m, &lane, |_| Outcome::Delivered);
        assert!(!h.metrics.circuit_open(Transport::PubSub));
        assert_eq!(m.breaker(Instant::now()), BreakerState::Closed);
    }

    #[test]
    fn without_fallback_an_open_breaker_leaves_mqtt_alone() {
        let h = hub(MigrationConfig {
            version: 1,
            mqtt_enabled: false,
            pubsub_enabled: true,
            pubsub_percentage: 100.0,
            fallback_to_mqtt: false,
            ..MigrationConfig::default()
        });
        let lane = Lane::new(h.clone(), Transport::PubSub);
        queue(&h, 2, false, true);
        let mut m = Machine::default();
        assert_eq!(drive(&mut m, &lane, |_| Outcome::ConfigError { why: "HTTP 403".into() }).1, Next::Opened);
        assert_eq!(h.lock().outbox.depth(Transport::Mqtt), 0);
        assert_eq!(h.lock().outbox.depth(Transport::PubSub), 2, "still owed to Pub/Sub");
    }

    #[test]
    fn rows_in_flight_when_the_config_stops_pubsub_go_to_mqtt() {
        let (h, lane) = pubsub_only();
        queue(&h, 3, false, true);
        let batch = lane.take(10, usize::MAX, cost);
        {
            let mut st = h.lock();
            let config = MigrationConfig { emergency_mode: true, ..MigrationConfig::default() };
            let decision = crate::config::rollout::decide(&config, "d-1", None);
            st.active = Arc::new(crate::hub::Active {
                config,
                decision,
                source: crate::config::source::ConfigSource::App,
                applied_at_ms: 0,
                host_overrides: Default::default(),
            });
        }
        assert!(!lane.owed_by_config());
        lane.release_or_hand_over(&batch.iter().map(|r| r.seq).collect::<Vec<_>>());
        let st = h.lock();
        assert_eq!((st.outbox.depth(Transport::PubSub), st.outbox.depth(Transport::Mqtt)), (0, 3));
        assert_eq!(st.outbox.owed_seqs(Transport::Mqtt), vec![1, 2, 3]);
    }
}
