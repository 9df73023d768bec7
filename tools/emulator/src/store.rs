//! Topics, subscriptions and messages, with Pub/Sub's documented limits, redelivery after
//! the ack deadline, and the delivery faults (discard, duplicate, delay) applied on publish.

use crate::faults::{Delivery, Faults};
use crate::time::now_ms_rfc3339;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Most messages per publish.
pub const MAX_MESSAGES: usize = 1000;
/// Largest publish request, bytes.
pub const MAX_REQUEST_BYTES: usize = 10_000_000;
/// Most attributes per message.
pub const MAX_ATTRIBUTES: usize = 100;
/// Longest attribute key, bytes.
pub const MAX_KEY_BYTES: usize = 256;
/// Longest attribute value, bytes.
pub const MAX_VALUE_BYTES: usize = 1024;

/// A google.rpc.Status error.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcError {
    /// HTTP status.
    pub code: u16,
    /// gRPC status name.
    pub status: &'static str,
    /// Human message.
    pub message: String,
}

impl RpcError {
    pub fn invalid(message: impl Into<String>) -> Self {
        RpcError { code: 400, status: "INVALID_ARGUMENT", message: message.into() }
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        RpcError { code: 404, status: "NOT_FOUND", message: message.into() }
    }
    pub fn exists(message: impl Into<String>) -> Self {
        RpcError { code: 409, status: "ALREADY_EXISTS", message: message.into() }
    }
    pub fn precondition(message: impl Into<String>) -> Self {
        RpcError { code: 400, status: "FAILED_PRECONDITION", message: message.into() }
    }
}

/// A stored message.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    /// Standard base64 of the data.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub data: String,
    /// Attributes.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
    /// Decimal string id.
    pub message_id: String,
    /// RFC 3339 publish time.
    pub publish_time: String,
    /// Ordering key.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub ordering_key: String,
}

/// A message to publish, already validated and decoded.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub data_b64: String,
    pub attributes: BTreeMap<String, String>,
    pub ordering_key: String,
    /// The `deviceId` and `seq` of the data, when it is a location (for the delivery faults).
    pub location: Option<crate::faults::LocationMatch>,
}

#[derive(Debug)]
struct Outstanding {
    message: Arc<Message>,
    deadline: Instant,
    attempt: u32,
}

#[derive(Debug)]
pub(crate) struct Subscription {
    pub topic: String,
    pub ack_deadline_seconds: u32,
    pub enable_message_ordering: bool,
    backlog: VecDeque<(Arc<Message>, u32)>,
    /// Messages held back by a delay fault, in publish order, with when they become visible.
    delayed: Vec<(Instant, Arc<Message>)>,
    outstanding: HashMap<String, Outstanding>,
}

/// Counters for tests.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    /// Publish requests received (including failed ones).
    pub publish_requests: u64,
    /// Messages stored.
    pub published_messages: u64,
    /// Publish requests answered with an injected failure.
    pub injected_failures: u64,
    /// Publish requests accepted and then cut.
    pub dropped_connections: u64,
    /// Requests that came with a `Content-Encoding: gzip` body (refused ones included).
    pub gzip_requests: u64,
    /// Of those, refused by `FaultPlan::refuse_gzip`.
    pub gzip_refused: u64,
}

#[derive(Debug, Default)]
struct Inner {
    topics: BTreeMap<String, Vec<String>>,
    subs: BTreeMap<String, Subscription>,
    next_message_id: u64,
    next_ack_id: u64,
    stats: Stats,
}

/// The emulator's data.
#[derive(Debug, Default)]
pub struct Store {
    inner: Mutex<Inner>,
    /// Signalled when messages arrive (wakes waiting pulls).
    pub arrived: Notify,
}

/// The JSON of a subscription resource.
pub fn subscription_json(name: &str, s: &Subscription) -> serde_json::Value {
    serde_json::json!({
        "name": name,
        "topic": s.topic,
        "pushConfig": {},
        "ackDeadlineSeconds": s.ack_deadline_seconds,
        "messageRetentionDuration": "604800s",
        "enableMessageOrdering": s.enable_message_ordering,
    })
}

impl Store {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn stats(&self) -> Stats {
        self.lock().stats.clone()
    }

    /// A request with a gzip body came, and was refused if `refused`.
    pub fn count_gzip(&self, refused: bool) {
        let mut i = self.lock();
        i.stats.gzip_requests += 1;
        i.stats.gzip_refused += refused as u64;
    }

    pub fn count_request(&self, injected_failure: bool, dropped: bool) {
        let mut i = self.lock();
        i.stats.publish_requests += 1;
        i.stats.injected_failures += injected_failure as u64;
        i.stats.dropped_connections += dropped as u64;
    }

    pub fn create_topic(&self, name: &str) -> Result<(), RpcError> {
        let mut i = self.lock();
        if i.topics.contains_key(name) {
            return Err(RpcError::exists("Topic already exists"));
        }
        i.topics.insert(name.to_string(), Vec::new());
        Ok(())
    }

    pub fn has_topic(&self, name: &str) -> bool {
        self.lock().topics.contains_key(name)
    }

    pub fn delete_topic(&self, name: &str) -> Result<(), RpcError> {
        let mut i = self.lock();
        let subs = i.topics.remove(name).ok_or_else(|| RpcError::not_found("Topic not found"))?;
        for s in subs {
            if let Some(sub) = i.subs.get_mut(&s) {
                sub.topic = "_deleted-topic_".into();
            }
        }
        Ok(())
    }

    pub fn list_topics(&self, project_prefix: &str) -> Vec<String> {
        self.lock().topics.keys().filter(|k| k.starts_with(project_prefix)).cloned().collect()
    }

    pub fn create_subscription(&self, name: &str, topic: &str, ack_deadline: u32, ordering: bool) -> Result<serde_json::Value, RpcError> {
        let mut i = self.lock();
        if i.subs.contains_key(name) {
            return Err(RpcError::exists("Subscription already exists"));
        }
        let Some(subs) = i.topics.get_mut(topic) else { return Err(RpcError::not_found("Topic not found")) };
        subs.push(name.to_string());
        let sub = Subscription {
            topic: topic.to_string(),
            ack_deadline_seconds: ack_deadline,
            enable_message_ordering: ordering,
            backlog: VecDeque::new(),
            delayed: Vec::new(),
            outstanding: HashMap::new(),
        };
        let json = subscription_json(name, &sub);
        i.subs.insert(name.to_string(), sub);
        Ok(json)
    }

    pub fn get_subscription(&self, name: &str) -> Result<serde_json::Value, RpcError> {
        let i = self.lock();
        i.subs.get(name).map(|s| subscription_json(name, s)).ok_or_else(|| RpcError::not_found("Subscription does not exist"))
    }

    pub fn delete_subscription(&self, name: &str) -> Result<(), RpcError> {
        let mut i = self.lock();
        let sub = i.subs.remove(name).ok_or_else(|| RpcError::not_found("Subscription does not exist"))?;
        if let Some(list) = i.topics.get_mut(&sub.topic) {
            list.retain(|s| s != name);
        }
        Ok(())
    }

    pub fn list_subscriptions(&self, project_prefix: &str) -> Vec<serde_json::Value> {
        let i = self.lock();
        i.subs.iter().filter(|(k, _)| k.starts_with(project_prefix)).map(|(k, s)| subscription_json(k, s)).collect()
    }

    /// Stores messages on `topic` and fans them out to its subscriptions, as `faults` decides
    /// message by message (under the store lock, so in id order); returns their ids.
    pub fn publish(&self, topic: &str, messages: Vec<NewMessage>, faults: &Faults) -> Result<Vec<String>, RpcError> {
        let mut i = self.lock();
        let Some(subs) = i.topics.get(topic).cloned() else { return Err(RpcError::not_found("Topic not found")) };
        let (published_at_ms, publish_time) = now_ms_rfc3339();
        let mut ids = Vec::with_capacity(messages.len());
        for m in messages {
            i.next_message_id += 1;
            let id = i.next_message_id.to_string();
            let message = Arc::new(Message {
                data: m.data_b64,
                attributes: m.attributes,
                message_id: id.clone(),
                publish_time: publish_time.clone(),
                ordering_key: m.ordering_key,
            });
            let delivery = faults.delivery(topic, &id, message.attributes.get("eventId").map(String::as_str), m.location, published_at_ms);
            for s in &subs {
                if let Some(sub) = i.subs.get_mut(s) {
                    match delivery {
                        Delivery::Normal => sub.backlog.push_back((message.clone(), 0)),
                        Delivery::Discard => {}
                        Delivery::Duplicate => sub.backlog.extend([(message.clone(), 0), (message.clone(), 0)]),
                        Delivery::Delay(d) => sub.delayed.push((Instant::now() + d, message.clone())),
                    }
                }
            }
            ids.push(id);
        }
        i.stats.published_messages += ids.len() as u64;
        drop(i);
        self.arrived.notify_waiters();
        Ok(ids)
    }

    /// Up to `max` messages for `sub`; expired leases are redelivered first, in order, and
    /// delayed messages join the end of the backlog once their delay is over.
    pub fn pull(&self, sub_name: &str, max: usize) -> Result<Vec<serde_json::Value>, RpcError> {
        let mut guard = self.lock();
        let i = &mut *guard;
        let sub = i.subs.get_mut(sub_name).ok_or_else(|| RpcError::not_found("Subscription does not exist"))?;
        let now = Instant::now();
        let (due, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut sub.delayed).into_iter().partition(|(at, _)| *at <= now);
        sub.delayed = waiting;
        sub.backlog.extend(due.into_iter().map(|(_, m)| (m, 0)));
        let mut expired: Vec<(String, Outstanding)> = Vec::new();
        sub.outstanding.retain(|ack, o| {
            if o.deadline <= now {
                expired.push((ack.clone(), Outstanding { message: o.message.clone(), deadline: o.deadline, attempt: o.attempt }));
                false
            } else {
                true
            }
        });
        expired.sort_by_key(|(_, o)| o.message.message_id.parse::<u64>().unwrap_or(0));
        for (_, o) in expired.into_iter().rev() {
            sub.backlog.push_front((o.message, o.attempt));
        }
        let mut out = Vec::new();
        let deadline = now + Duration::from_secs(sub.ack_deadline_seconds.into());
        while out.len() < max {
            let Some((message, attempt)) = sub.backlog.pop_front() else { break };
            i.next_ack_id += 1;
            let ack_id = format!("ack-{}-{}", i.next_ack_id, message.message_id);
            let attempt = attempt + 1;
            out.push(serde_json::json!({"ackId": ack_id, "message": &*message, "deliveryAttempt": attempt}));
            sub.outstanding.insert(ack_id, Outstanding { message, deadline, attempt });
        }
        Ok(out)
    }

    pub fn acknowledge(&self, sub_name: &str, ack_ids: &[String]) -> Result<(), RpcError> {
        let mut i = self.lock();
        let sub = i.subs.get_mut(sub_name).ok_or_else(|| RpcError::not_found("Subscription does not exist"))?;
        for a in ack_ids {
            sub.outstanding.remove(a);
        }
        Ok(())
    }

    pub fn modify_ack_deadline(&self, sub_name: &str, ack_ids: &[String], seconds: u32) -> Result<(), RpcError> {
        let mut i = self.lock();
        let sub = i.subs.get_mut(sub_name).ok_or_else(|| RpcError::not_found("Subscription does not exist"))?;
        let deadline = Instant::now() + Duration::from_secs(seconds.into());
        for a in ack_ids {
            if let Some(o) = sub.outstanding.get_mut(a) {
                o.deadline = deadline;
            }
        }
        drop(i);
        if seconds == 0 {
            self.arrived.notify_waiters();
        }
        Ok(())
    }
}
