//! What the outbox holds and the rest of the SDK speaks in: the two transports, where a
//! location stands with each ([`Delivery`]), an accepted location ([`Row`]) and which
//! transports delivered it once it left ([`DualOutcome`]).

use std::sync::Arc;
use std::time::Instant;

/// The two transports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, uniffi::Enum)]
pub enum Transport {
    /// MQTT (the legacy pipeline).
    Mqtt,
    /// Google Pub/Sub (the new pipeline).
    PubSub,
}

impl Transport {
    /// Both transports, in index order.
    pub const ALL: [Transport; 2] = [Transport::Mqtt, Transport::PubSub];

    /// This transport's slot in per-transport arrays (`[mqtt, pubsub]`).
    pub const fn index(self) -> usize {
        match self {
            Transport::Mqtt => 0,
            Transport::PubSub => 1,
        }
    }

    /// The other transport.
    pub const fn other(self) -> Transport {
        match self {
            Transport::Mqtt => Transport::PubSub,
            Transport::PubSub => Transport::Mqtt,
        }
    }

    /// The label used in metrics and logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            Transport::Mqtt => "mqtt",
            Transport::PubSub => "pubsub",
        }
    }
}

/// Where a location stands with one transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// This transport does not owe the location.
    NotOwed,
    /// Owed and waiting to be sent.
    Pending,
    /// Sent; waiting for the acknowledgement.
    InFlight,
    /// Acknowledged (PUBACK for that publish, or a Pub/Sub messageId).
    Acked,
    /// Refused as invalid by the transport and kept in the dead-letter list.
    DeadLettered,
}

impl Delivery {
    /// Owed: pending or in flight.
    pub fn owed(self) -> bool {
        matches!(self, Delivery::Pending | Delivery::InFlight)
    }
}

/// One accepted location: what `sendLocation` inserts, and what a transport takes to send.
#[derive(Debug, Clone)]
pub struct Row {
    /// Acceptance order, unique per publisher.
    pub seq: u64,
    /// The eventId (UUIDv7), the same on every transport and every retry.
    pub event_id: Arc<str>,
    /// The wire JSON, shared by both transports.
    pub payload: Arc<[u8]>,
    /// The location's own timestamp (for the Pub/Sub attribute).
    pub timestamp_ms: i64,
    /// When `sendLocation` accepted it (for latency and age).
    pub accepted_at: Instant,
    /// Which transports owe it, `[mqtt, pubsub]`.
    pub(super) owed: [bool; 2],
}

impl Row {
    /// A new row owed to the transports the decision names.
    pub fn new(seq: u64, event_id: Arc<str>, payload: Arc<[u8]>, timestamp_ms: i64, mqtt: bool, pubsub: bool) -> Row {
        Row { seq, event_id, payload, timestamp_ms, accepted_at: Instant::now(), owed: [mqtt, pubsub] }
    }
}

/// Which transports delivered a location once it left the outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DualOutcome {
    /// Acknowledged by both.
    Both,
    /// Acknowledged by MQTT only.
    MqttOnly,
    /// Acknowledged by Pub/Sub only.
    PubSubOnly,
}
