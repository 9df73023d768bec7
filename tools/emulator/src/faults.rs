//! Fault injection. On publish requests: scripted statuses, a random failure rate, latency,
//! `Retry-After`, and accept-then-drop-connection (the messages are stored, the response is
//! cut, so the client retries and creates duplicates). On delivery, after a normal publish:
//! discard, duplicate or delay the next messages, each hit recorded in a [`FaultLog`].

use rand::Rng;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

/// What to do to publish requests; also the JSON body of `POST /emulator/faults`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct FaultPlan {
    /// Fail the next requests with these HTTP statuses, one each, then succeed.
    pub fail_next: Vec<u16>,
    /// Fail this fraction (0–1) of requests at random…
    pub fail_rate: f64,
    /// …with one of these statuses (default 503).
    pub fail_statuses: Vec<u16>,
    /// Delay every publish response by this long.
    pub latency_ms: u64,
    /// Store the next N publishes, then drop the connection instead of answering.
    pub drop_after_accept_next: u32,
    /// Send `Retry-After: N` with injected failures.
    pub retry_after_secs: Option<u64>,
    /// Refuse with 400 any message whose data (decoded) contains this text.
    pub reject_data_containing: Option<String>,
    /// Limit the delivery faults below to this topic (full `projects/{p}/topics/{t}` or just
    /// `{t}`); `None`: every topic. Messages on other topics leave their counts alone.
    pub fault_topic: Option<String>,
    /// Acknowledge the next N published messages normally but deliver them to no subscription.
    pub discard_after_ack_next: u32,
    /// Acknowledge normally but deliver to no subscription the first message whose data is a
    /// location of this device with this `seq`, once per entry (e.g. a device's last location).
    pub discard_after_ack_where: Vec<LocationMatch>,
    /// Deliver the next N published messages twice to every subscription (same `messageId`).
    pub duplicate_next: u32,
    /// Make the next N published messages visible to subscriptions only `delay_ms` after publish.
    pub delay_next: u32,
    /// How long `delay_next` holds a message back.
    pub delay_ms: u64,
    /// Answer every request with a `Content-Encoding: gzip` body with this status (400 or 415)
    /// instead of decoding it: a front end that does not take gzip.
    pub refuse_gzip: Option<u16>,
}

/// A location by device and `seq` (docs/CONTRACT.md#version-2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LocationMatch {
    /// The payload's `deviceId`.
    pub device_id: String,
    /// The payload's `seq`.
    pub seq: u64,
}

/// One message hit by a delivery fault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Hit {
    /// The `messageId` returned to the publisher.
    pub message_id: String,
    /// Full topic name, `projects/{p}/topics/{t}`.
    pub topic: String,
    /// The message's `eventId` attribute, if it had one.
    pub event_id: Option<String>,
    /// The `deviceId` and `seq` of its data, when the data is a location.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<LocationMatch>,
    /// Publish time, milliseconds since the Unix epoch (the `publishTime`, truncated).
    pub published_at_ms: u64,
}

/// Every message the delivery faults hit, each list in publish order; the JSON of
/// `GET /emulator/faults/log`. A message is in at most one list.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct FaultLog {
    /// Acknowledged to the publisher, delivered to no subscription.
    pub discarded: Vec<Hit>,
    /// Delivered twice to every subscription.
    pub duplicated: Vec<Hit>,
    /// Held back `delay_ms` before any subscription could pull it.
    pub delayed: Vec<Hit>,
}

/// What happens to one published message on its way to the subscriptions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// Delivered once, at once.
    Normal,
    /// Delivered to no subscription.
    Discard,
    /// Delivered twice to every subscription.
    Duplicate,
    /// Visible to subscriptions only after this long.
    Delay(Duration),
}

/// What the emulator does to one publish request.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Answer normally.
    Serve,
    /// Answer with this status instead of publishing.
    Fail(u16),
    /// Publish, then drop the connection.
    AcceptThenDrop,
}

#[derive(Debug, Default)]
struct Inner {
    plan: FaultPlan,
    fail_next: VecDeque<u16>,
    log: FaultLog,
}

/// The live fault settings of an emulator.
#[derive(Debug, Default)]
pub struct Faults {
    inner: Mutex<Inner>,
}

impl Faults {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Replaces the plan (the fault log is kept).
    pub fn set(&self, plan: FaultPlan) {
        let mut i = self.lock();
        i.fail_next = plan.fail_next.iter().copied().collect();
        i.plan = plan;
    }

    /// Removes every fault (the fault log is kept).
    pub fn clear(&self) {
        self.set(FaultPlan::default());
    }

    /// Fails the next `n` publishes with `status`.
    pub fn fail_next(&self, n: usize, status: u16) {
        let mut i = self.lock();
        i.fail_next.extend(std::iter::repeat_n(status, n));
    }

    /// The current plan (with what is left of `failNext`).
    pub fn plan(&self) -> FaultPlan {
        let i = self.lock();
        FaultPlan { fail_next: i.fail_next.iter().copied().collect(), ..i.plan.clone() }
    }

    /// Decides the fate of the next publish request.
    pub fn next_action(&self) -> (Action, u64, Option<u64>) {
        let mut i = self.lock();
        let latency = i.plan.latency_ms;
        let retry_after = i.plan.retry_after_secs;
        if let Some(s) = i.fail_next.pop_front() {
            return (Action::Fail(s), latency, retry_after);
        }
        if i.plan.drop_after_accept_next > 0 {
            i.plan.drop_after_accept_next -= 1;
            return (Action::AcceptThenDrop, latency, retry_after);
        }
        if i.plan.fail_rate > 0.0 && rand::rng().random::<f64>() < i.plan.fail_rate {
            let statuses = &i.plan.fail_statuses;
            let s = if statuses.is_empty() { 503 } else { statuses[rand::rng().random_range(0..statuses.len())] };
            return (Action::Fail(s), latency, retry_after);
        }
        (Action::Serve, latency, retry_after)
    }

    /// The status gzip bodies are refused with, if they are.
    pub fn refuse_gzip(&self) -> Option<u16> {
        self.lock().plan.refuse_gzip
    }

    /// The poison text, if any.
    pub fn reject_data_containing(&self) -> Option<String> {
        self.lock().plan.reject_data_containing.clone()
    }

    /// Decides the delivery of the next message published on `topic` (a location of
    /// `location`, when its data is one), and logs it if a fault hits it. The faults take their
    /// turns: first a `discard_after_ack_where` match, then the `discard_after_ack_next`
    /// messages, then the `duplicate_next`, then the `delay_next`, so a message gets at most one.
    /// Called with the store lock held (lock order: store, then faults).
    pub(crate) fn delivery(&self, topic: &str, message_id: &str, event_id: Option<&str>, location: Option<LocationMatch>, published_at_ms: u64) -> Delivery {
        let mut guard = self.lock();
        let i = &mut *guard;
        let p = &mut i.plan;
        if let Some(only) = &p.fault_topic {
            if only != topic && topic.rsplit('/').next() != Some(only.as_str()) {
                return Delivery::Normal;
            }
        }
        let matched = location.as_ref().and_then(|l| p.discard_after_ack_where.iter().position(|m| m == l));
        let (delivery, list) = if let Some(m) = matched {
            p.discard_after_ack_where.remove(m);
            (Delivery::Discard, &mut i.log.discarded)
        } else if p.discard_after_ack_next > 0 {
            p.discard_after_ack_next -= 1;
            (Delivery::Discard, &mut i.log.discarded)
        } else if p.duplicate_next > 0 {
            p.duplicate_next -= 1;
            (Delivery::Duplicate, &mut i.log.duplicated)
        } else if p.delay_next > 0 {
            p.delay_next -= 1;
            (Delivery::Delay(Duration::from_millis(p.delay_ms)), &mut i.log.delayed)
        } else {
            return Delivery::Normal;
        };
        list.push(Hit { message_id: message_id.into(), topic: topic.into(), event_id: event_id.map(Into::into), location, published_at_ms });
        delivery
    }

    /// The messages the delivery faults hit so far.
    pub(crate) fn log(&self) -> FaultLog {
        self.lock().log.clone()
    }

    /// Empties the fault log.
    pub(crate) fn clear_log(&self) {
        self.lock().log = FaultLog::default();
    }
}
