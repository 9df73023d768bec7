//! The outbox: every accepted location with its delivery state per transport. A row leaves
//! only when every transport that owes it has acknowledged it (GUIDE §5).
//!
//! This version keeps rows in memory; the durable SQLite store of the next milestone sits
//! behind the same methods. All methods are called with the publisher's outbox lock held
//! and do no I/O.

use crate::metrics::DualOutcome;
use std::collections::{BTreeMap, BTreeSet};
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
    fn owed(self) -> bool {
        matches!(self, Delivery::Pending | Delivery::InFlight)
    }
}

/// One accepted location.
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
    mqtt: Delivery,
    pubsub: Delivery,
}

impl Row {
    /// A new row owed to the transports the decision names.
    pub fn new(seq: u64, event_id: Arc<str>, payload: Arc<[u8]>, timestamp_ms: i64, mqtt: bool, pubsub: bool) -> Row {
        let state = |on| if on { Delivery::Pending } else { Delivery::NotOwed };
        Row { seq, event_id, payload, timestamp_ms, accepted_at: Instant::now(), mqtt: state(mqtt), pubsub: state(pubsub) }
    }

    /// This row's state with transport `t`.
    pub fn delivery(&self, t: Transport) -> Delivery {
        match t {
            Transport::Mqtt => self.mqtt,
            Transport::PubSub => self.pubsub,
        }
    }

    fn set(&mut self, t: Transport, d: Delivery) {
        match t {
            Transport::Mqtt => self.mqtt = d,
            Transport::PubSub => self.pubsub = d,
        }
    }

    fn done(&self) -> bool {
        !self.mqtt.owed() && !self.pubsub.owed()
    }

    fn outcome(&self) -> Option<DualOutcome> {
        match (self.mqtt == Delivery::Acked, self.pubsub == Delivery::Acked) {
            (true, true) => Some(DualOutcome::Both),
            (true, false) => Some(DualOutcome::MqttOnly),
            (false, true) => Some(DualOutcome::PubSubOnly),
            (false, false) => None,
        }
    }
}

/// A row that left the outbox, with which transports delivered it.
#[derive(Debug, Clone)]
pub struct Completed {
    /// The row's sequence number.
    pub seq: u64,
    /// `None` when no transport delivered it (dead-lettered with nothing else owed).
    pub outcome: Option<DualOutcome>,
}

/// A message Pub/Sub refused as invalid (HTTP 400), kept rather than deleted.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct DeadLetter {
    /// The eventId.
    pub event_id: String,
    /// The wire JSON.
    pub payload: String,
    /// The transport that refused it.
    pub transport: Transport,
    /// What the server said.
    pub error: String,
}

/// The in-memory outbox.
#[derive(Debug, Default)]
pub struct Outbox {
    rows: BTreeMap<u64, Row>,
    pending_mqtt: BTreeSet<u64>,
    pending_pubsub: BTreeSet<u64>,
    owed_mqtt: usize,
    owed_pubsub: usize,
    dead_letters: Vec<DeadLetter>,
}

impl Outbox {
    fn pending(&mut self, t: Transport) -> &mut BTreeSet<u64> {
        match t {
            Transport::Mqtt => &mut self.pending_mqtt,
            Transport::PubSub => &mut self.pending_pubsub,
        }
    }

    fn owed_count(&mut self, t: Transport) -> &mut usize {
        match t {
            Transport::Mqtt => &mut self.owed_mqtt,
            Transport::PubSub => &mut self.owed_pubsub,
        }
    }

    /// Adds accepted rows (in acceptance order).
    pub fn insert(&mut self, row: Row) {
        for t in [Transport::Mqtt, Transport::PubSub] {
            if row.delivery(t) == Delivery::Pending {
                self.pending(t).insert(row.seq);
                *self.owed_count(t) += 1;
            }
        }
        self.rows.insert(row.seq, row);
    }

    /// Takes the oldest rows pending for `t` (at most `max_count`, and at most `max_bytes` as
    /// measured by `cost`, but always at least one) and marks them in flight.
    pub fn take(&mut self, t: Transport, max_count: usize, max_bytes: usize, cost: impl Fn(&Row) -> usize) -> Vec<Row> {
        let mut out = Vec::new();
        let mut bytes = 0;
        while out.len() < max_count {
            let Some(&seq) = self.pending(t).first() else { break };
            let Some(row) = self.rows.get_mut(&seq) else {
                self.pending(t).remove(&seq);
                continue;
            };
            let c = cost(row);
            if !out.is_empty() && bytes + c > max_bytes {
                break;
            }
            bytes += c;
            row.set(t, Delivery::InFlight);
            out.push(row.clone());
            self.pending(t).remove(&seq);
        }
        out
    }

    /// Oldest acceptance time among rows pending (not in flight) for `t`.
    pub fn oldest_pending(&self, t: Transport) -> Option<Instant> {
        let set = match t {
            Transport::Mqtt => &self.pending_mqtt,
            Transport::PubSub => &self.pending_pubsub,
        };
        set.first().and_then(|s| self.rows.get(s)).map(|r| r.accepted_at)
    }

    /// Number of rows pending (not in flight) for `t`.
    pub fn pending_count(&self, t: Transport) -> usize {
        match t {
            Transport::Mqtt => self.pending_mqtt.len(),
            Transport::PubSub => self.pending_pubsub.len(),
        }
    }

    /// Sum of `cost` over the oldest `max_count` rows pending for `t` (a batch's size).
    pub fn pending_cost(&self, t: Transport, max_count: usize, cost: impl Fn(&Row) -> usize) -> usize {
        let set = match t {
            Transport::Mqtt => &self.pending_mqtt,
            Transport::PubSub => &self.pending_pubsub,
        };
        set.iter().take(max_count).filter_map(|s| self.rows.get(s)).map(cost).sum()
    }

    /// Marks rows acknowledged by `t`; returns those that left the outbox.
    pub fn ack(&mut self, t: Transport, seqs: &[u64]) -> Vec<Completed> {
        self.settle(t, seqs, Delivery::Acked)
    }

    fn settle(&mut self, t: Transport, seqs: &[u64], to: Delivery) -> Vec<Completed> {
        let mut done = Vec::new();
        for seq in seqs {
            let Some(row) = self.rows.get_mut(seq) else { continue };
            if !row.delivery(t).owed() {
                continue;
            }
            row.set(t, to);
            let finished = row.done().then(|| row.outcome());
            self.pending(t).remove(seq);
            *self.owed_count(t) -= 1;
            if let Some(outcome) = finished {
                self.rows.remove(seq);
                done.push(Completed { seq: *seq, outcome });
            }
        }
        done
    }

    /// Puts in-flight rows back in the queue of `t` (the attempt failed or the connection
    /// dropped); they keep their place by acceptance order.
    pub fn release(&mut self, t: Transport, seqs: &[u64]) {
        for seq in seqs {
            if let Some(row) = self.rows.get_mut(seq) {
                if row.delivery(t) == Delivery::InFlight {
                    row.set(t, Delivery::Pending);
                    self.pending(t).insert(*seq);
                }
            }
        }
    }

    /// Makes `t` owe rows it did not owe (fallback); returns how many were newly owed.
    pub fn also_owe(&mut self, t: Transport, seqs: &[u64]) -> u64 {
        let mut n = 0;
        for seq in seqs {
            if let Some(row) = self.rows.get_mut(seq) {
                if row.delivery(t) == Delivery::NotOwed {
                    row.set(t, Delivery::Pending);
                    self.pending(t).insert(*seq);
                    n += 1;
                }
            }
        }
        *self.owed_count(t) += n as usize;
        n as u64
    }

    /// The config stopped owing `t`: rows pending for it are released from that duty, and
    /// `instead` is made to owe any row that would otherwise be owed to nobody. Rows in flight
    /// finish their attempt. Returns the rows that left the outbox.
    pub fn stop_owing(&mut self, t: Transport, instead: Transport) -> Vec<Completed> {
        let seqs: Vec<u64> = self.pending(t).iter().copied().collect();
        let orphans: Vec<u64> = seqs
            .iter()
            .filter(|s| self.rows.get(s).is_some_and(|r| r.delivery(instead) == Delivery::NotOwed))
            .copied()
            .collect();
        self.also_owe(instead, &orphans);
        self.settle(t, &seqs, Delivery::NotOwed)
    }

    /// Moves one in-flight row of `t` to the dead-letter list; returns it if it left the outbox.
    pub fn dead_letter(&mut self, t: Transport, seq: u64, error: String) -> Vec<Completed> {
        if let Some(row) = self.rows.get(&seq) {
            self.dead_letters.push(DeadLetter {
                event_id: row.event_id.to_string(),
                payload: String::from_utf8_lossy(&row.payload).into_owned(),
                transport: t,
                error,
            });
        }
        self.settle(t, &[seq], Delivery::DeadLettered)
    }

    /// Rows still owed to `t` (pending or in flight).
    pub fn depth(&self, t: Transport) -> usize {
        match t {
            Transport::Mqtt => self.owed_mqtt,
            Transport::PubSub => self.owed_pubsub,
        }
    }

    /// How many rows accepted at or before `seq` are still owed to each transport.
    pub fn owed_up_to(&self, seq: u64) -> (u64, u64) {
        let mut m = 0;
        let mut p = 0;
        for row in self.rows.range(..=seq).map(|(_, r)| r) {
            m += row.mqtt.owed() as u64;
            p += row.pubsub.owed() as u64;
        }
        (m, p)
    }

    /// Whether every row accepted at or before `seq` has left.
    pub fn drained_up_to(&self, seq: u64) -> bool {
        self.rows.range(..=seq).next().is_none()
    }

    /// Acceptance time of the oldest row still owed.
    pub fn oldest(&self) -> Option<Instant> {
        self.rows.values().next().map(|r| r.accepted_at)
    }

    /// The dead-letter list.
    pub fn dead_letters(&self) -> &[DeadLetter] {
        &self.dead_letters
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn len(r: &Row) -> usize {
        r.payload.len()
    }

    fn row(seq: u64, mqtt: bool, pubsub: bool) -> Row {
        Row::new(seq, format!("e{seq}").into(), Arc::from(&b"{}"[..]), 1, mqtt, pubsub)
    }

    #[test]
    fn a_row_leaves_only_when_every_owed_transport_acked() {
        let mut o = Outbox::default();
        o.insert(row(1, true, true));
        let m = o.take(Transport::Mqtt, 10, 1 << 20, len);
        assert_eq!(m.len(), 1);
        assert!(o.ack(Transport::Mqtt, &[1]).is_empty(), "still owed to Pub/Sub");
        assert_eq!((o.depth(Transport::Mqtt), o.depth(Transport::PubSub)), (0, 1));
        o.take(Transport::PubSub, 10, 1 << 20, len);
        let done = o.ack(Transport::PubSub, &[1]);
        assert_eq!(done[0].outcome, Some(DualOutcome::Both));
        assert!(o.drained_up_to(1));
    }

    #[test]
    fn released_rows_keep_their_place() {
        let mut o = Outbox::default();
        for s in 1..=3 {
            o.insert(row(s, true, false));
        }
        let first = o.take(Transport::Mqtt, 2, 1 << 20, len);
        assert_eq!(first.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![1, 2]);
        o.release(Transport::Mqtt, &[1, 2]);
        let again = o.take(Transport::Mqtt, 3, 1 << 20, len);
        assert_eq!(again.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![1, 2, 3]);
        assert!(o.ack(Transport::Mqtt, &[9]).is_empty(), "unknown seq is ignored");
    }

    #[test]
    fn fallback_owes_mqtt_and_keeps_pubsub_owed() {
        let mut o = Outbox::default();
        o.insert(row(1, false, true));
        o.take(Transport::PubSub, 1, 1 << 20, len);
        assert_eq!(o.also_owe(Transport::Mqtt, &[1]), 1);
        assert_eq!(o.also_owe(Transport::Mqtt, &[1]), 0, "counted once");
        o.release(Transport::PubSub, &[1]);
        o.take(Transport::Mqtt, 1, 1 << 20, len);
        assert!(o.ack(Transport::Mqtt, &[1]).is_empty());
        assert_eq!(o.depth(Transport::PubSub), 1);
    }

    #[test]
    fn stopping_pubsub_hands_orphans_to_mqtt() {
        let mut o = Outbox::default();
        o.insert(row(1, false, true));
        o.insert(row(2, true, true));
        let done = o.stop_owing(Transport::PubSub, Transport::Mqtt);
        assert!(done.is_empty());
        assert_eq!((o.depth(Transport::Mqtt), o.depth(Transport::PubSub)), (2, 0));
    }

    #[test]
    fn byte_limit_splits_batches_but_never_starves() {
        let mut o = Outbox::default();
        for s in 1..=3 {
            o.insert(row(s, false, true));
        }
        assert_eq!(o.take(Transport::PubSub, 10, 1, len).len(), 1);
        assert_eq!(o.take(Transport::PubSub, 10, 4, len).len(), 2);
    }

    #[test]
    fn dead_letters_are_kept() {
        let mut o = Outbox::default();
        o.insert(row(1, false, true));
        o.take(Transport::PubSub, 1, 1 << 20, len);
        let done = o.dead_letter(Transport::PubSub, 1, "400 bad".into());
        assert_eq!(done[0].outcome, None);
        assert_eq!(o.dead_letters()[0].event_id, "e1");
    }
}
