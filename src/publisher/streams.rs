//! What the app's streams read (docs/CONTRACT.md#streams): the decision in force, the delivery
//! state, and debug events. The exported stream objects (`crate::ffi::streams`) pull from here;
//! nothing is pushed into the app, so a cancelled collector gets nothing more.

use super::waits::{on_runtime, Unwanted};
use super::Publisher;
use crate::config::rollout::RolloutDecision;
use crate::error::DualPubError;
use crate::outbox::Transport;
use crate::telemetry::events::DebugEvent;
use std::future::Future;
use std::time::Duration;
use tokio::sync::{broadcast, watch};

/// Where delivery stands, for a "did it get there?" indicator.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct DeliveryState {
    /// Locations still owed to MQTT.
    pub pending_mqtt: u64,
    /// Locations still owed to Pub/Sub.
    pub pending_pubsub: u64,
    /// Age of the oldest location still owed, ms (0: none).
    pub oldest_pending_age_ms: u64,
    /// When MQTT last acknowledged a location in this run (wall clock, ms).
    pub last_ack_mqtt_ms: Option<i64>,
    /// When Pub/Sub last acknowledged a location in this run (wall clock, ms).
    pub last_ack_pubsub_ms: Option<i64>,
    /// MQTT's circuit breaker is open (it is not being tried for now).
    pub mqtt_circuit_open: bool,
    /// Pub/Sub's circuit breaker is open (its locations fall back to MQTT).
    pub pubsub_circuit_open: bool,
    /// The app says the network is available (`setNetworkAvailable`).
    pub network_available: bool,
    /// Collection is enabled (`setCollectionEnabled`).
    pub collection_enabled: bool,
    /// An upload burst is open: the transports may be sending now.
    pub burst_open: bool,
}

impl DeliveryState {
    /// Whether `other` says something new: everything but the age, which changes by itself.
    fn differs_from(&self, other: &DeliveryState) -> bool {
        DeliveryState { oldest_pending_age_ms: 0, ..self.clone() } != DeliveryState { oldest_pending_age_ms: 0, ..other.clone() }
    }
}

/// How often a delivery-state wait looks again without a progress signal (a breaker or a burst
/// changes without one).
const DELIVERY_LOOK: Duration = Duration::from_secs(1);

impl super::Shared {
    fn delivery_state(&self) -> DeliveryState {
        let g = self.lock().gauges();
        let m = &self.hub.metrics;
        let gate = &self.hub.gate;
        DeliveryState {
            pending_mqtt: g.depth[Transport::Mqtt.index()],
            pending_pubsub: g.depth[Transport::PubSub.index()],
            oldest_pending_age_ms: (g.oldest_age_seconds * 1000.0) as u64,
            last_ack_mqtt_ms: m.last_ack_ms(Transport::Mqtt),
            last_ack_pubsub_ms: m.last_ack_ms(Transport::PubSub),
            mqtt_circuit_open: m.circuit_open(Transport::Mqtt),
            pubsub_circuit_open: m.circuit_open(Transport::PubSub),
            network_available: gate.network_said(),
            collection_enabled: !gate.paused(),
            burst_open: gate.is_open(),
        }
    }
}

impl Publisher {
    /// What the app's streams read, for as long as they live (it does not keep the publisher
    /// open: a stream of a closed publisher ends).
    pub(crate) fn stream_source(&self) -> StreamSource {
        StreamSource { shared: self.shared.clone(), closing: self.shutdown.subscribe() }
    }
}

/// The publisher's side of the app's streams.
#[derive(Clone)]
pub(crate) struct StreamSource {
    shared: std::sync::Arc<super::Shared>,
    closing: watch::Receiver<bool>,
}

impl StreamSource {
    /// The decision in force now, and each change of it, as a watch: its receiver sees the
    /// decisions in the order they took force (at least the last of a quick run of them).
    pub fn decision_watch(&self) -> watch::Receiver<RolloutDecision> {
        self.shared.decisions.subscribe()
    }

    /// Turns `true` when the publisher closes.
    pub fn closing(&self) -> watch::Receiver<bool> {
        self.closing.clone()
    }

    /// A decision as the app sees it: with the breakers' state now.
    pub fn with_breakers(&self, d: RolloutDecision) -> RolloutDecision {
        self.shared.with_breakers(d)
    }

    /// Debug events from now on while debug mode is on (at most
    /// [`crate::telemetry::events::STREAM_CAPACITY`] waiting: a stream that falls further
    /// behind loses the oldest, counted in `debugEventsDropped`).
    pub fn debug_event_receiver(&self) -> broadcast::Receiver<DebugEvent> {
        self.shared.hub.events.subscribe()
    }

    /// Counts debug events a slow stream missed.
    pub fn debug_events_missed(&self, n: u64) {
        self.shared.hub.events.missed(n);
    }

    /// The delivery state once it differs from `last` (at once when `last` is `None`), on the
    /// SDK's runtime; `None` once the publisher is closed.
    pub fn next_delivery_state(&self, last: Option<DeliveryState>) -> impl Future<Output = Result<Option<DeliveryState>, DualPubError>> + Send + 'static {
        let shared = self.shared.clone();
        on_runtime(&self.shared, Unwanted::Stop, async move {
            let mut signals = shared.hub.progress.subscribe();
            loop {
                // Seen before the look, so a signal given after it is never missed.
                signals.borrow_and_update();
                if shared.lock().closed {
                    return Ok(None);
                }
                let now = shared.delivery_state();
                if last.as_ref().is_none_or(|l| now.differs_from(l)) {
                    return Ok(Some(now));
                }
                // Any progress signal (a location accepted or delivered, a switch) or a second.
                if let Ok(Err(_)) = tokio::time::timeout(DELIVERY_LOOK, signals.changed()).await {
                    return Ok(None); // the hub is gone
                }
            }
        })
    }
}
