//! The REST routes. Paths like `…/topics/{t}:publish` do not fit a path router, so one
//! handler parses the path itself.

use crate::faults::{Action, FaultPlan};
use crate::store::{self, NewMessage, RpcError};
use crate::Emulator;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Bodies up to this size reach the handlers, so an over-limit publish gets Pub/Sub's own
/// INVALID_ARGUMENT rather than a cut connection (axum's default limit is 2 MB).
const BODY_LIMIT: usize = 4 * store::MAX_REQUEST_BYTES;

pub fn router(emulator: Arc<Emulator>) -> Router {
    Router::new().fallback(handle).layer(axum::extract::DefaultBodyLimit::max(BODY_LIMIT)).with_state(emulator)
}

fn rpc_error(e: RpcError) -> Response {
    let body = json!({"error": {"code": e.code, "message": e.message, "status": e.status}});
    (StatusCode::from_u16(e.code).unwrap_or(StatusCode::BAD_REQUEST), axum::Json(body)).into_response()
}

fn ok(v: Value) -> Response {
    (StatusCode::OK, axum::Json(v)).into_response()
}

fn parse_body<T: for<'de> Deserialize<'de> + Default>(body: &Bytes) -> Result<T, RpcError> {
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| RpcError::invalid(format!("Invalid JSON payload received. {e}")))
}

/// The body as sent, decoded when it came with `Content-Encoding: gzip` (as Google's front end
/// does; or refused, when the fault plan says so). Any other encoding is refused with 415.
fn decoded(emu: &Emulator, headers: &HeaderMap, body: Bytes) -> Result<Bytes, RpcError> {
    use std::io::Read;
    let encoding = headers.get("content-encoding").and_then(|v| v.to_str().ok()).map(|v| v.trim().to_ascii_lowercase());
    match encoding.as_deref() {
        None | Some("") | Some("identity") => Ok(body),
        Some("gzip") => {
            if let Some(code) = emu.faults.refuse_gzip() {
                emu.store.count_gzip(true);
                let message = if code == 415 { "Content-Encoding gzip is not supported." } else { "Invalid JSON payload received. Unexpected token." };
                return Err(RpcError { code, status: "INVALID_ARGUMENT", message: message.into() });
            }
            emu.store.count_gzip(false);
            let mut out = Vec::new();
            // At most the body limit decoded: a gzip bomb stops there.
            match flate2::read::GzDecoder::new(&body[..]).take(BODY_LIMIT as u64 + 1).read_to_end(&mut out) {
                Ok(n) if n <= BODY_LIMIT => Ok(Bytes::from(out)),
                Ok(_) => Err(RpcError::invalid("Request payload size exceeds the limit.")),
                Err(e) => Err(RpcError::invalid(format!("Invalid gzip body: {e}"))),
            }
        }
        Some(other) => Err(RpcError { code: 415, status: "INVALID_ARGUMENT", message: format!("Unsupported Content-Encoding {other}.") }),
    }
}

async fn handle(State(emu): State<Arc<Emulator>>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let path = uri.path();
    let body = match decoded(&emu, &headers, body) {
        Ok(b) => b,
        Err(refused) => return rpc_error(refused),
    };
    if let Some(rest) = path.strip_prefix("/emulator/") {
        return control(&emu, &method, rest, &body);
    }
    let Some(rest) = path.strip_prefix("/v1/") else {
        return rpc_error(RpcError::not_found(format!("no route for {path}")));
    };
    let expected = emu.bearer_token.lock().unwrap_or_else(|p| p.into_inner()).clone();
    if let Some(token) = expected {
        let got = headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
        if got != Some(token.as_str()) {
            return rpc_error(RpcError { code: 401, status: "UNAUTHENTICATED", message: "Request had invalid authentication credentials.".into() });
        }
    }
    let segs: Vec<&str> = rest.split('/').collect();
    let result = match (method.clone(), segs.as_slice()) {
        (m, ["projects", p, "topics", t]) => {
            if let Some(topic) = t.strip_suffix(":publish") {
                if m != Method::POST {
                    return rpc_error(RpcError::not_found("method not allowed"));
                }
                return publish(&emu, &format!("projects/{p}/topics/{topic}"), &body).await;
            }
            topic_resource(&emu, &m, &format!("projects/{p}/topics/{t}"))
        }
        (Method::GET, ["projects", p, "topics"]) => {
            let topics: Vec<Value> = emu.store.list_topics(&format!("projects/{p}/topics/")).into_iter().map(|n| json!({"name": n})).collect();
            Ok(json!({"topics": topics}))
        }
        (Method::GET, ["projects", p, "subscriptions"]) => Ok(json!({"subscriptions": emu.store.list_subscriptions(&format!("projects/{p}/subscriptions/"))})),
        (m, ["projects", p, "subscriptions", s]) => {
            let (name, verb) = match s.split_once(':') {
                Some((n, v)) => (format!("projects/{p}/subscriptions/{n}"), Some(v)),
                None => (format!("projects/{p}/subscriptions/{s}"), None),
            };
            match (m, verb) {
                (Method::POST, Some("pull")) => return pull(&emu, &name, &body).await,
                (Method::POST, Some("acknowledge")) => acknowledge(&emu, &name, &body),
                (Method::POST, Some("modifyAckDeadline")) => modify(&emu, &name, &body),
                (m, None) => subscription_resource(&emu, &m, &name, p, &body),
                _ => Err(RpcError::not_found(format!("no route for {path}"))),
            }
        }
        _ => Err(RpcError::not_found(format!("no route for {method} {path}"))),
    };
    match result {
        Ok(v) => ok(v),
        Err(e) => rpc_error(e),
    }
}

fn control(emu: &Emulator, method: &Method, what: &str, body: &Bytes) -> Response {
    match (method, what) {
        (&Method::POST, "faults") => match parse_body::<FaultPlan>(body) {
            Ok(plan) => {
                emu.faults.set(plan);
                ok(serde_json::to_value(emu.faults.plan()).unwrap_or(Value::Null))
            }
            Err(e) => rpc_error(e),
        },
        (&Method::GET, "faults") => ok(serde_json::to_value(emu.faults.plan()).unwrap_or(Value::Null)),
        (&Method::GET, "faults/log") => ok(serde_json::to_value(emu.fault_log()).unwrap_or(Value::Null)),
        (&Method::DELETE, "faults/log") => {
            emu.clear_fault_log();
            ok(json!({}))
        }
        (&Method::GET, "stats") => ok(serde_json::to_value(emu.stats()).unwrap_or(Value::Null)),
        _ => rpc_error(RpcError::not_found(format!("no control route {what}"))),
    }
}

fn valid_id(id: &str) -> Result<(), RpcError> {
    let ok = (3..=255).contains(&id.len())
        && id.starts_with(|c: char| c.is_ascii_alphabetic())
        && !id.starts_with("goog")
        && id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.~+%".contains(c));
    if ok {
        Ok(())
    } else {
        Err(RpcError::invalid(format!("Invalid resource name given (name={id}).")))
    }
}

fn topic_resource(emu: &Emulator, m: &Method, name: &str) -> Result<Value, RpcError> {
    match *m {
        Method::PUT => {
            valid_id(name.rsplit('/').next().unwrap_or(""))?;
            emu.store.create_topic(name)?;
            Ok(json!({"name": name}))
        }
        Method::GET => {
            if emu.store.has_topic(name) {
                Ok(json!({"name": name}))
            } else {
                Err(RpcError::not_found("Topic not found"))
            }
        }
        Method::DELETE => emu.store.delete_topic(name).map(|_| json!({})),
        _ => Err(RpcError::not_found("method not allowed")),
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct SubscriptionBody {
    topic: String,
    ack_deadline_seconds: Option<u32>,
    enable_message_ordering: bool,
}

fn subscription_resource(emu: &Emulator, m: &Method, name: &str, project: &str, body: &Bytes) -> Result<Value, RpcError> {
    match *m {
        Method::PUT => {
            valid_id(name.rsplit('/').next().unwrap_or(""))?;
            let b: SubscriptionBody = parse_body(body)?;
            if b.topic.is_empty() {
                return Err(RpcError::invalid("topic is required"));
            }
            let topic = if b.topic.starts_with("projects/") { b.topic } else { format!("projects/{project}/topics/{}", b.topic) };
            let deadline = b.ack_deadline_seconds.unwrap_or(10);
            let deadline = if deadline == 0 { 10 } else { deadline };
            if !(10..=600).contains(&deadline) {
                return Err(RpcError::invalid("Invalid ack deadline given. It must be between 10 and 600 seconds."));
            }
            emu.store.create_subscription(name, &topic, deadline, b.enable_message_ordering)
        }
        Method::GET => emu.store.get_subscription(name),
        Method::DELETE => emu.store.delete_subscription(name).map(|_| json!({})),
        _ => Err(RpcError::not_found("method not allowed")),
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct PublishMessage {
    data: Option<String>,
    attributes: BTreeMap<String, String>,
    ordering_key: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct PublishBody {
    messages: Vec<PublishMessage>,
}

/// Decodes standard or URL-safe base64, padded or not.
fn decode_b64(s: &str) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    [STANDARD, URL_SAFE, STANDARD_NO_PAD, URL_SAFE_NO_PAD].iter().find_map(|e| e.decode(s).ok())
}

fn validate_publish(emu: &Emulator, body: &Bytes) -> Result<Vec<NewMessage>, RpcError> {
    if body.len() > store::MAX_REQUEST_BYTES {
        return Err(RpcError::invalid(format!("Request payload size exceeds the limit: {} bytes.", store::MAX_REQUEST_BYTES)));
    }
    let b: PublishBody = parse_body(body)?;
    if b.messages.is_empty() {
        return Err(RpcError::invalid("The request contains no messages."));
    }
    if b.messages.len() > store::MAX_MESSAGES {
        return Err(RpcError::invalid(format!(
            "The value for message_count is too large. You passed {} in the request, but the maximum value is {}.",
            b.messages.len(),
            store::MAX_MESSAGES
        )));
    }
    let poison = emu.faults.reject_data_containing();
    let mut key: Option<String> = None;
    let mut out = Vec::with_capacity(b.messages.len());
    for (i, m) in b.messages.into_iter().enumerate() {
        let data = m.data.unwrap_or_default();
        let decoded = decode_b64(&data).ok_or_else(|| RpcError::invalid(format!("messages[{i}].data is not valid base64")))?;
        if decoded.is_empty() && m.attributes.is_empty() {
            return Err(RpcError::invalid(format!("messages[{i}]: Some messages contain no data and no attributes.")));
        }
        if m.attributes.len() > store::MAX_ATTRIBUTES {
            return Err(RpcError::invalid(format!("messages[{i}] has more than {} attributes", store::MAX_ATTRIBUTES)));
        }
        for (k, v) in &m.attributes {
            if k.is_empty() || k.len() > store::MAX_KEY_BYTES {
                return Err(RpcError::invalid(format!("messages[{i}]: attribute key must be 1-{} bytes", store::MAX_KEY_BYTES)));
            }
            if v.len() > store::MAX_VALUE_BYTES {
                return Err(RpcError::invalid(format!("messages[{i}]: attribute value exceeds {} bytes", store::MAX_VALUE_BYTES)));
            }
        }
        if let Some(p) = &poison {
            if String::from_utf8_lossy(&decoded).contains(p.as_str()) {
                return Err(RpcError::invalid(format!("messages[{i}] rejected by fault injection")));
            }
        }
        let ordering_key = m.ordering_key.unwrap_or_default();
        if !ordering_key.is_empty() {
            match &key {
                Some(k) if *k != ordering_key => {
                    return Err(RpcError::precondition("All messages in a publish request must have the same ordering key."));
                }
                _ => key = Some(ordering_key.clone()),
            }
        }
        let location = serde_json::from_slice::<crate::faults::LocationMatch>(&decoded).ok();
        out.push(NewMessage { data_b64: base64::engine::general_purpose::STANDARD.encode(&decoded), attributes: m.attributes, ordering_key, location });
    }
    Ok(out)
}

async fn publish(emu: &Emulator, topic: &str, body: &Bytes) -> Response {
    let (action, latency, retry_after) = emu.faults.next_action();
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    if let Action::Fail(code) = action {
        emu.store.count_request(true, false);
        let status = match code {
            400 => "INVALID_ARGUMENT",
            401 => "UNAUTHENTICATED",
            403 => "PERMISSION_DENIED",
            404 => "NOT_FOUND",
            409 => "ABORTED",
            429 => "RESOURCE_EXHAUSTED",
            499 => "CANCELLED",
            500 => "INTERNAL",
            503 => "UNAVAILABLE",
            504 => "DEADLINE_EXCEEDED",
            _ => "UNKNOWN",
        };
        let mut resp = rpc_error(RpcError { code, status, message: "injected fault".into() });
        if let Some(s) = retry_after {
            if let Ok(v) = HeaderValue::from_str(&s.to_string()) {
                resp.headers_mut().insert("retry-after", v);
            }
        }
        return resp;
    }
    let result = validate_publish(emu, body).and_then(|msgs| emu.store.publish(topic, msgs, &emu.faults));
    match (result, action) {
        (Ok(_), Action::AcceptThenDrop) => {
            emu.store.count_request(false, true);
            // Stored; now cut the response so the client never learns it succeeded.
            let broken = futures_util::stream::once(async { Err::<Bytes, std::io::Error>(std::io::Error::other("connection dropped by fault injection")) });
            Response::builder()
                .status(StatusCode::OK)
                .header("content-type", "application/json")
                .header("content-length", "1000")
                .body(Body::from_stream(broken))
                .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
        }
        (Ok(ids), _) => {
            emu.store.count_request(false, false);
            ok(json!({"messageIds": ids}))
        }
        (Err(e), _) => {
            emu.store.count_request(false, false);
            rpc_error(e)
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct PullBody {
    max_messages: Option<u32>,
    return_immediately: bool,
}

async fn pull(emu: &Emulator, sub: &str, body: &Bytes) -> Response {
    let b: PullBody = match parse_body(body) {
        Ok(b) => b,
        Err(e) => return rpc_error(e),
    };
    let max = b.max_messages.unwrap_or(100).clamp(1, 1000) as usize;
    // Like the service, an empty pull waits a little for messages unless told not to.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(if b.return_immediately { 0 } else { 2 });
    loop {
        let arrived = emu.store.arrived.notified();
        match emu.store.pull(sub, max) {
            Err(e) => return rpc_error(e),
            Ok(msgs) if !msgs.is_empty() => return ok(json!({"receivedMessages": msgs})),
            Ok(_) => {}
        }
        if tokio::time::Instant::now() >= deadline {
            return ok(json!({}));
        }
        // Also wake periodically so expired leases get redelivered.
        let _ = tokio::time::timeout_at(deadline.min(tokio::time::Instant::now() + Duration::from_millis(200)), arrived).await;
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct AckBody {
    ack_ids: Vec<String>,
    ack_deadline_seconds: Option<u32>,
}

fn acknowledge(emu: &Emulator, sub: &str, body: &Bytes) -> Result<Value, RpcError> {
    let b: AckBody = parse_body(body)?;
    if b.ack_ids.is_empty() {
        return Err(RpcError::invalid("No ack ids specified."));
    }
    emu.store.acknowledge(sub, &b.ack_ids)?;
    Ok(json!({}))
}

fn modify(emu: &Emulator, sub: &str, body: &Bytes) -> Result<Value, RpcError> {
    let b: AckBody = parse_body(body)?;
    // proto3 JSON omits zero: a missing deadline is 0, a nack.
    let secs = b.ack_deadline_seconds.unwrap_or(0);
    if secs > 600 {
        return Err(RpcError::invalid("Invalid ack deadline given. It must be between 0 and 600 seconds."));
    }
    emu.store.modify_ack_deadline(sub, &b.ack_ids, secs)?;
    Ok(json!({}))
}
