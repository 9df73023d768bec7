//! The exported streams: the rollout decision, the delivery state and debug events, each an
//! object whose async `next()` the app pulls from. Kotlin wraps them as `Flow`s
//! (bindings/kotlin/src/main/kotlin/io/dualpub/Streams.kt: `decisionFlow`, `deliveryStateFlow`,
//! `debugEventFlow`), Swift as `AsyncStream`s (ios/Sources/DualPub/Streams+DualPub.swift).
//! Nothing is pushed into the app: a collector that is cancelled drops its pending `next()`,
//! which ends the SDK's side of the wait, and is called back never again.
//!
//! A `next()` polls only channels the SDK completes (a watch, a broadcast, a oneshot): no lock
//! held across an await, no I/O. One `next()` at a time per stream: a second one while the
//! first waits returns `None` at once. `cancel()` ends a pending `next()` at once: Swift calls it
//! when its consuming task is cancelled (a cancelled Swift task does not drop the Rust future).

use crate::config::rollout::RolloutDecision;
use crate::publisher::{DeliveryState, StreamSource};
use crate::telemetry::events::DebugEvent;
use std::sync::Mutex;
use tokio::sync::{broadcast, watch};

/// Holds a stream's receiver while one `next()` uses it, and puts it back when that `next()`
/// ends or is dropped (a cancelled collector), so the next call carries on from there.
struct Lent<'a, R> {
    slot: &'a Mutex<Option<R>>,
    item: Option<R>,
}

impl<'a, R> Lent<'a, R> {
    /// The receiver, unless another `next()` holds it.
    fn take(slot: &'a Mutex<Option<R>>) -> Option<Self> {
        let item = slot.lock().unwrap_or_else(|p| p.into_inner()).take()?;
        Some(Lent { slot, item: Some(item) })
    }

    fn get(&mut self) -> &mut R {
        self.item.as_mut().expect("lent until dropped")
    }
}

impl<R> Drop for Lent<'_, R> {
    fn drop(&mut self) {
        *self.slot.lock().unwrap_or_else(|p| p.into_inner()) = self.item.take();
    }
}

/// What ends a stream: its publisher closing, or the stream's own `close()`.
struct Ends {
    closing: watch::Receiver<bool>,
    stopped: watch::Sender<bool>,
}

impl Ends {
    fn of(source: &StreamSource) -> Ends {
        Ends { closing: source.closing(), stopped: watch::Sender::new(false) }
    }

    /// Resolves once the stream has ended (at once if it has).
    async fn ended(&self) {
        let (mut closing, mut stopped) = (self.closing.clone(), self.stopped.subscribe());
        tokio::select! {
            _ = closing.wait_for(|c| *c) => {}
            _ = stopped.wait_for(|s| *s) => {}
        }
    }

    fn stop(&self) {
        self.stopped.send_replace(true);
    }
}

/// Where this device publishes: the decision in force at the first `next()`, then each change
/// (Kotlin `StateFlow`, Swift `AsyncStream`).
#[derive(uniffi::Object)]
pub struct DecisionStream {
    source: StreamSource,
    decisions: Mutex<Option<watch::Receiver<RolloutDecision>>>,
    ends: Ends,
}

/// Where delivery stands: the state at the first `next()`, then each change (anything but the
/// oldest location's age, which grows by itself).
#[derive(uniffi::Object)]
pub struct DeliveryStateStream {
    source: StreamSource,
    last: Mutex<Option<DeliveryState>>,
    ends: Ends,
}

/// Debug events from the stream's creation on, while debug mode is on. Bounded: a collector
/// more than 256 events behind loses the oldest (counted in `debugReport()`'s
/// `debugEventsDropped`).
#[derive(uniffi::Object)]
pub struct DebugEventStream {
    source: StreamSource,
    events: Mutex<Option<broadcast::Receiver<DebugEvent>>>,
    ends: Ends,
}

impl DecisionStream {
    pub(crate) fn new(source: StreamSource) -> Self {
        let mut decisions = source.decision_watch();
        decisions.mark_changed(); // the first `next()` answers with the one in force
        DecisionStream { decisions: Mutex::new(Some(decisions)), ends: Ends::of(&source), source }
    }
}

impl DeliveryStateStream {
    pub(crate) fn new(source: StreamSource) -> Self {
        DeliveryStateStream { last: Mutex::new(None), ends: Ends::of(&source), source }
    }
}

impl DebugEventStream {
    pub(crate) fn new(source: StreamSource) -> Self {
        DebugEventStream { events: Mutex::new(Some(source.debug_event_receiver())), ends: Ends::of(&source), source }
    }
}

#[uniffi::export]
impl DecisionStream {
    /// The next decision: the one in force at the first call, then each change; `None` once
    /// the publisher is closed.
    pub async fn next(&self) -> Option<RolloutDecision> {
        let mut decisions = Lent::take(&self.decisions)?;
        tokio::select! {
            biased;
            _ = self.ends.ended() => None,
            changed = decisions.get().changed() => {
                changed.ok()?;
                let d = decisions.get().borrow_and_update().clone();
                Some(self.source.with_breakers(d))
            }
        }
    }

    /// Ends the stream: a pending `next()` returns `None` at once, and so does every later one.
    /// (Not `close`: Kotlin's `AutoCloseable.close()` frees the object.)
    pub fn cancel(&self) {
        self.ends.stop();
    }
}

#[uniffi::export]
impl DeliveryStateStream {
    /// The next delivery state: the state now at the first call, then each change; `None`
    /// once the publisher is closed.
    pub async fn next(&self) -> Option<DeliveryState> {
        let last = self.last.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let state = tokio::select! {
            biased;
            _ = self.ends.ended() => None,
            state = self.source.next_delivery_state(last) => state.ok().flatten(),
        }?;
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(state.clone());
        Some(state)
    }

    /// Ends the stream: a pending `next()` returns `None` at once, and so does every later one.
    /// (Not `close`: Kotlin's `AutoCloseable.close()` frees the object.)
    pub fn cancel(&self) {
        self.ends.stop();
    }
}

#[uniffi::export]
impl DebugEventStream {
    /// The next debug event; `None` once the publisher is closed.
    pub async fn next(&self) -> Option<DebugEvent> {
        let mut events = Lent::take(&self.events)?;
        loop {
            tokio::select! {
                biased;
                _ = self.ends.ended() => return None,
                got = events.get().recv() => match got {
                    Ok(e) => return Some(e),
                    Err(broadcast::error::RecvError::Lagged(n)) => self.source.debug_events_missed(n),
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
            }
        }
    }

    /// Ends the stream: a pending `next()` returns `None` at once, and so does every later one.
    /// (Not `close`: Kotlin's `AutoCloseable.close()` frees the object.)
    pub fn cancel(&self) {
        self.ends.stop();
    }
}
