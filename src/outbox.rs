//! The outbox: every accepted location with its delivery state per transport. A row leaves
//! only when every transport that owes it has acknowledged it (docs/CONTRACT.md#per-transport-state).
//!
//! The outbox lives in memory (the working set the transports take from) and, when it has a
//! sink, every change is also sent, in order, to the `dualpub-store` thread that persists it
//! ([`crate::store`]). A new row stays invisible to the transports until the store reports it
//! durable ([`Outbox::make_visible`]). All methods are called with the publisher's lock held
//! and do no I/O themselves.

use crate::metrics::DualOutcome;
use crate::store::{Msg, Op, StoredConfig, StoredDeadLetter, StoredRow};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::{Duration, Instant};

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
    /// The same, as wall-clock milliseconds (persisted).
    pub accepted_at_ms: i64,
    /// The same on the run clock (persisted; what a restored row's age is measured by).
    observed_at_ms: i64,
    /// The state per transport, indexed by [`Transport::index`].
    delivery: [Delivery; 2],
    /// Handed to the transports (durable, or the disk has failed).
    visible: bool,
}

impl Row {
    /// A new row owed to the transports the decision names.
    pub fn new(seq: u64, event_id: Arc<str>, payload: Arc<[u8]>, timestamp_ms: i64, mqtt: bool, pubsub: bool) -> Row {
        let state = |on| if on { Delivery::Pending } else { Delivery::NotOwed };
        Row {
            seq,
            event_id,
            payload,
            timestamp_ms,
            accepted_at: Instant::now(),
            accepted_at_ms: crate::clock::now_ms(),
            observed_at_ms: 0,
            delivery: [state(mqtt), state(pubsub)],
            visible: false,
        }
    }

    /// A row read back from the store at start-up. Its age is the time the SDK observed since it
    /// was accepted (`clock`), never a wall-clock difference: a clock set forward while the app
    /// was off must not age a durable backlog into eviction. A row from before the run clock
    /// existed counts as new.
    pub fn restored(r: StoredRow, clock: &crate::clock::RunClock) -> Row {
        let observed_at_ms = clock.restored(r.observed_at_ms);
        let age = Duration::from_millis((clock.base_ms() - observed_at_ms) as u64);
        let now = Instant::now();
        Row {
            seq: r.seq,
            event_id: Arc::from(r.event_id),
            payload: Arc::from(r.payload),
            timestamp_ms: r.timestamp_ms,
            accepted_at: now.checked_sub(age).unwrap_or(now),
            accepted_at_ms: r.accepted_at_ms,
            observed_at_ms,
            delivery: [r.mqtt, r.pubsub],
            visible: false,
        }
    }

    fn stored(&self) -> StoredRow {
        StoredRow {
            seq: self.seq,
            event_id: self.event_id.to_string(),
            payload: self.payload.to_vec(),
            timestamp_ms: self.timestamp_ms,
            accepted_at_ms: self.accepted_at_ms,
            observed_at_ms: Some(self.observed_at_ms),
            mqtt: self.delivery(Transport::Mqtt),
            pubsub: self.delivery(Transport::PubSub),
        }
    }

    /// This row's state with transport `t`.
    pub fn delivery(&self, t: Transport) -> Delivery {
        self.delivery[t.index()]
    }

    fn set(&mut self, t: Transport, d: Delivery) {
        self.delivery[t.index()] = d;
    }

    fn done(&self) -> bool {
        !self.delivery.iter().any(|d| d.owed())
    }

    fn outcome(&self) -> Option<DualOutcome> {
        match (self.delivery(Transport::Mqtt) == Delivery::Acked, self.delivery(Transport::PubSub) == Delivery::Acked) {
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
    /// `None` when no transport delivered it (dead-lettered with nothing else owed).
    pub outcome: Option<DualOutcome>,
}

/// A message Pub/Sub refused as invalid (HTTP 400), kept (durably) rather than deleted.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct DeadLetter {
    /// Id for `retryDeadLetters`.
    pub id: i64,
    /// The eventId.
    pub event_id: String,
    /// The wire JSON.
    pub payload: String,
    /// The transport that refused it.
    pub transport: Transport,
    /// What the server said.
    pub error: String,
    /// The location's timestamp.
    pub timestamp_ms: i64,
}

/// Why rows (or dead letters) were evicted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Eviction {
    /// The outbox reached its row limit.
    OutboxFull,
    /// The row was older than the age limit.
    TooOld,
    /// The dead-letter list reached [`MAX_DEAD_LETTERS`] or [`MAX_DEAD_LETTER_BYTES`].
    DeadLettersFull,
    /// The dead letter's location was older than the age limit.
    DeadLetterTooOld,
}

/// A dead letter with when it was dead-lettered, on the run clock.
type KeptLetter = (DeadLetter, i64);

/// Most dead letters kept; beyond it the oldest are dropped (counted as `dead_letters_full`).
pub const MAX_DEAD_LETTERS: usize = 10_000;

/// Most payload bytes the dead letters keep in all.
pub const MAX_DEAD_LETTER_BYTES: usize = 16 << 20;

/// The outbox's caps.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most locations kept.
    pub max_rows: usize,
    /// Oldest location (and dead letter) kept, by the time the SDK observed since.
    pub max_age: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_rows: usize::MAX, max_age: Duration::MAX }
    }
}

impl Eviction {
    /// The `reason` label of `dualpub_dropped_total`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Eviction::OutboxFull => "outbox_full",
            Eviction::TooOld => "too_old",
            Eviction::DeadLettersFull => "dead_letters_full",
            Eviction::DeadLetterTooOld => "dead_letter_too_old",
        }
    }
}

/// The outbox.
#[derive(Debug, Default)]
pub struct Outbox {
    rows: BTreeMap<u64, Row>,
    /// Per transport: visible rows waiting to be sent, by acceptance order.
    pending: [BTreeSet<u64>; 2],
    /// Per transport: rows owed (pending or in flight).
    owed: [usize; 2],
    /// Oldest first (by id).
    dead_letters: std::collections::VecDeque<KeptLetter>,
    /// Payload bytes of the dead letters.
    dead_letter_bytes: usize,
    next_dead_letter_id: i64,
    limits: Limits,
    /// The SDK's run clock (rows record their acceptance on it).
    run_clock: crate::clock::RunClock,
    /// When the dead letters were last checked for age.
    last_age_sweep: Option<Instant>,
    sink: Option<Sender<Msg>>,
    /// Changes gathered by [`Outbox::batched`], sent to the store as one message.
    batch: std::cell::RefCell<Option<Vec<Op>>>,
}

impl Outbox {
    /// An outbox whose changes are persisted through `sink` (the store writer's channel).
    pub fn with_sink(sink: Sender<Msg>, limits: Limits, run_clock: crate::clock::RunClock) -> Outbox {
        Outbox { sink: Some(sink), limits, run_clock, ..Outbox::default() }
    }

    fn persist(&self, op: Op) {
        if let Some(batch) = self.batch.borrow_mut().as_mut() {
            batch.push(op);
        } else if let Some(sink) = &self.sink {
            // The writer outlives every sender; if it is gone the SDK is closing.
            let _ = sink.send(Msg::Ops(vec![op]));
        }
    }

    /// Runs `f`, sending the changes it makes to the store as one message, so the store commits
    /// them together (one `sendLocations` call becomes durable, and visible, at once).
    pub fn batched<R>(&mut self, f: impl FnOnce(&mut Outbox) -> R) -> R {
        *self.batch.borrow_mut() = Some(Vec::new());
        let r = f(self);
        let ops = self.batch.borrow_mut().take().unwrap_or_default();
        if let (false, Some(sink)) = (ops.is_empty(), &self.sink) {
            let _ = sink.send(Msg::Ops(ops));
        }
        r
    }

    /// Persists a row's new state: gone if nothing is owed any more, else its states.
    fn persist_row(&self, seq: u64) {
        if self.sink.is_none() {
            return;
        }
        match self.rows.get(&seq) {
            Some(r) => self.persist(Op::Update { seq, mqtt: r.delivery(Transport::Mqtt), pubsub: r.delivery(Transport::PubSub) }),
            None => self.persist(Op::Delete(seq)),
        }
    }

    /// Persists the migration config now in force.
    pub fn persist_config(&self, config: StoredConfig) {
        self.persist(Op::SaveConfig(config));
    }

    /// Report `report_seq` was cut: asks for a commit (it persists the reports' tally) that says
    /// so once done.
    pub fn persist_checkpoint(&self, report_seq: u64) {
        self.persist(Op::Checkpoint(report_seq));
    }

    /// The event time (`timestamp`) of row `seq`, if it is still in the outbox.
    pub fn timestamp_of(&self, seq: u64) -> Option<i64> {
        self.rows.get(&seq).map(|r| r.timestamp_ms)
    }

    /// Persists the config fetcher's state (JSON), in order with everything else.
    pub fn persist_fetch_state(&self, json: String) {
        self.persist(Op::SaveFetchState(json));
    }

    /// Loads what the store kept: rows (oldest first, visible at once: they are durable) and
    /// dead letters.
    pub fn restore(&mut self, rows: Vec<StoredRow>, dead_letters: Vec<StoredDeadLetter>) {
        let seqs: Vec<u64> = rows.iter().map(|r| r.seq).collect();
        for r in rows {
            let row = Row::restored(r, &self.run_clock);
            for t in Transport::ALL {
                if row.delivery(t).owed() {
                    *self.owed_count(t) += 1;
                }
            }
            self.rows.insert(row.seq, row);
        }
        self.make_visible(&seqs);
        self.next_dead_letter_id = self.next_dead_letter_id.max(dead_letters.iter().map(|d| d.id).max().unwrap_or(0));
        self.dead_letter_bytes = dead_letters.iter().map(|d| d.payload.len()).sum();
        self.dead_letters = dead_letters
            .into_iter()
            .map(|d| {
                let at = self.run_clock.restored(d.observed_at_ms);
                let letter = DeadLetter {
                    id: d.id,
                    event_id: d.event_id,
                    payload: String::from_utf8_lossy(&d.payload).into_owned(),
                    transport: d.transport,
                    error: d.error,
                    timestamp_ms: d.timestamp_ms,
                };
                (letter, at)
            })
            .collect();
    }

    /// Hands rows to the transports: they are durable now (or the disk failed and holding them
    /// back would help nobody).
    pub fn make_visible(&mut self, seqs: &[u64]) {
        for seq in seqs {
            let Some(row) = self.rows.get_mut(seq) else { continue };
            if row.visible {
                continue;
            }
            row.visible = true;
            let owed: Vec<Transport> = Transport::ALL.into_iter().filter(|t| row.delivery(*t) == Delivery::Pending).collect();
            for t in owed {
                self.pending(t).insert(*seq);
            }
        }
    }

    /// Evicts the oldest rows beyond the row limit or older than the age limit, and the oldest
    /// dead letters beyond theirs; returns how many for each reason. Only locations count:
    /// metrics and debug data live elsewhere and can never evict a location.
    pub fn evict(&mut self) -> Vec<(Eviction, u64)> {
        let Limits { max_rows, max_age } = self.limits;
        let now = Instant::now();
        let mut out = Vec::new();
        let mut too_old = 0;
        while let Some((&seq, row)) = self.rows.first_key_value() {
            if now.duration_since(row.accepted_at) <= max_age {
                break;
            }
            self.remove(seq);
            too_old += 1;
        }
        let mut full = 0;
        while self.rows.len() > max_rows {
            let Some(&seq) = self.rows.keys().next() else { break };
            self.remove(seq);
            full += 1;
        }
        if too_old > 0 {
            out.push((Eviction::TooOld, too_old));
        }
        if full > 0 {
            out.push((Eviction::OutboxFull, full));
        }
        out.extend(self.cap_dead_letters());
        out
    }

    /// Drops the dead letters kept longer than the age limit (on the run clock, as rows are
    /// aged; looked for at most once a minute: the list may hold thousands), then the oldest
    /// beyond [`MAX_DEAD_LETTERS`] or [`MAX_DEAD_LETTER_BYTES`].
    fn cap_dead_letters(&mut self) -> Vec<(Eviction, u64)> {
        let mut too_old = 0;
        if self.last_age_sweep.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
            self.last_age_sweep = Some(Instant::now());
            let max_age_ms = i64::try_from(self.limits.max_age.as_millis()).unwrap_or(i64::MAX);
            let oldest_kept = self.run_clock.now_ms().saturating_sub(max_age_ms);
            let (old, kept): (Vec<KeptLetter>, Vec<KeptLetter>) = std::mem::take(&mut self.dead_letters).into_iter().partition(|(_, at)| *at < oldest_kept);
            self.dead_letters = kept.into();
            for (d, _) in &old {
                self.dead_letter_bytes -= d.payload.len();
                self.persist(Op::RemoveDeadLetter(d.id));
            }
            too_old = old.len() as u64;
        }
        let mut full = 0;
        while self.dead_letters.len() > MAX_DEAD_LETTERS || self.dead_letter_bytes > MAX_DEAD_LETTER_BYTES {
            let Some(id) = self.dead_letters.front().map(|(d, _)| d.id) else { break };
            self.remove_dead_letter_front();
            self.persist(Op::RemoveDeadLetter(id));
            full += 1;
        }
        [(Eviction::DeadLetterTooOld, too_old), (Eviction::DeadLettersFull, full)].into_iter().filter(|(_, n)| *n > 0).collect()
    }

    fn remove_dead_letter_front(&mut self) {
        if let Some((d, _)) = self.dead_letters.pop_front() {
            self.dead_letter_bytes -= d.payload.len();
        }
    }

    fn remove(&mut self, seq: u64) {
        if let Some(row) = self.rows.remove(&seq) {
            for t in Transport::ALL {
                if row.delivery(t).owed() {
                    *self.owed_count(t) -= 1;
                }
                self.pending(t).remove(&seq);
            }
            self.persist(Op::Delete(seq));
        }
    }

    /// Number of rows in the outbox.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether the outbox is empty.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    fn pending_set(&self, t: Transport) -> &BTreeSet<u64> {
        &self.pending[t.index()]
    }

    fn pending(&mut self, t: Transport) -> &mut BTreeSet<u64> {
        &mut self.pending[t.index()]
    }

    fn owed_count(&mut self, t: Transport) -> &mut usize {
        &mut self.owed[t.index()]
    }

    /// Adds an accepted row (in acceptance order). With a sink, it is persisted and stays
    /// invisible to the transports until [`Outbox::make_visible`]; without one it is visible at once.
    pub fn insert(&mut self, mut row: Row) {
        row.observed_at_ms = self.run_clock.at(row.accepted_at);
        let seq = row.seq;
        for t in Transport::ALL {
            if row.delivery(t) == Delivery::Pending {
                *self.owed_count(t) += 1;
            }
        }
        if self.sink.is_some() {
            self.persist(Op::Insert(row.stored()));
        }
        self.rows.insert(seq, row);
        if self.sink.is_none() {
            self.make_visible(&[seq]);
        }
    }

    /// Takes the oldest rows pending for `t` (at most `max_count`, and at most `max_bytes` as
    /// measured by `cost`, but always at least one) and marks them in flight.
    #[cfg(test)]
    pub fn take(&mut self, t: Transport, max_count: usize, max_bytes: usize, cost: impl Fn(&Row) -> usize) -> Vec<Row> {
        self.take_up_to(t, u64::MAX, max_count, max_bytes, cost)
    }

    /// [`Outbox::take`], only rows with a sequence number up to `max_seq` (an upload burst's).
    pub fn take_up_to(&mut self, t: Transport, max_seq: u64, max_count: usize, max_bytes: usize, cost: impl Fn(&Row) -> usize) -> Vec<Row> {
        let mut out = Vec::new();
        let mut bytes = 0;
        while out.len() < max_count {
            let Some(&seq) = self.pending(t).first().filter(|s| **s <= max_seq) else { break };
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
        self.pending_set(t).first().and_then(|s| self.rows.get(s)).map(|r| r.accepted_at)
    }

    /// Sequence number of the oldest row pending (not in flight) for `t`.
    pub fn oldest_pending_seq(&self, t: Transport) -> Option<u64> {
        self.pending_set(t).first().copied()
    }

    /// Number of rows pending (not in flight) for `t` with a sequence number up to `max_seq`.
    pub fn pending_count_up_to(&self, t: Transport, max_seq: u64) -> usize {
        if max_seq == u64::MAX {
            self.pending_count(t)
        } else {
            self.pending_set(t).range(..=max_seq).count()
        }
    }

    /// Number of rows pending (not in flight) for `t`.
    pub fn pending_count(&self, t: Transport) -> usize {
        self.pending_set(t).len()
    }

    /// Sum of `cost` over the oldest `max_count` rows pending for `t` (a batch's size).
    pub fn pending_cost(&self, t: Transport, max_count: usize, cost: impl Fn(&Row) -> usize) -> usize {
        self.pending_set(t).iter().take(max_count).filter_map(|s| self.rows.get(s)).map(cost).sum()
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
                done.push(Completed { outcome });
            }
            self.persist_row(*seq);
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
                    let visible = row.visible;
                    if visible {
                        self.pending(t).insert(*seq);
                    }
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
                    let visible = row.visible;
                    if visible {
                        self.pending(t).insert(*seq);
                    }
                    n += 1;
                    self.persist_row(*seq);
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
        let orphans: Vec<u64> = seqs.iter().filter(|s| self.rows.get(s).is_some_and(|r| r.delivery(instead) == Delivery::NotOwed)).copied().collect();
        self.also_owe(instead, &orphans);
        self.settle(t, &seqs, Delivery::NotOwed)
    }

    /// Moves one in-flight row of `t` to the dead-letter list; returns it if it left the outbox.
    pub fn dead_letter(&mut self, t: Transport, seq: u64, error: String) -> Vec<Completed> {
        if let Some(row) = self.rows.get(&seq) {
            self.next_dead_letter_id += 1;
            let now = self.run_clock.now_ms();
            let stored = StoredDeadLetter {
                id: self.next_dead_letter_id,
                event_id: row.event_id.to_string(),
                payload: row.payload.to_vec(),
                timestamp_ms: row.timestamp_ms,
                transport: t,
                error: error.clone(),
                observed_at_ms: Some(now),
            };
            self.dead_letter_bytes += row.payload.len();
            let letter = DeadLetter {
                id: stored.id,
                event_id: stored.event_id.clone(),
                payload: String::from_utf8_lossy(&row.payload).into_owned(),
                transport: t,
                error,
                timestamp_ms: row.timestamp_ms,
            };
            self.dead_letters.push_back((letter, now));
            self.persist(Op::DeadLetter(stored));
        }
        self.settle(t, &[seq], Delivery::DeadLettered)
    }

    /// Takes dead letters out of the list to send them again (all when `ids` is empty); the
    /// caller queues them as new rows with their original eventId and bytes.
    pub fn take_dead_letters(&mut self, ids: &[i64]) -> Vec<DeadLetter> {
        let wanted: std::collections::HashSet<i64> = ids.iter().copied().collect();
        let (taken, kept): (Vec<KeptLetter>, Vec<KeptLetter>) =
            std::mem::take(&mut self.dead_letters).into_iter().partition(|(d, _)| wanted.is_empty() || wanted.contains(&d.id));
        self.dead_letters = kept.into();
        self.dead_letter_bytes = self.dead_letters.iter().map(|(d, _)| d.payload.len()).sum();
        for (d, _) in &taken {
            self.persist(Op::RemoveDeadLetter(d.id));
        }
        taken.into_iter().map(|(d, _)| d).collect()
    }

    /// Sequence numbers of every row still owed to `t`, oldest first.
    pub fn owed_seqs(&self, t: Transport) -> Vec<u64> {
        self.rows.values().filter(|r| r.delivery(t).owed()).map(|r| r.seq).collect()
    }

    /// Rows still owed to `t` (pending or in flight).
    pub fn depth(&self, t: Transport) -> usize {
        self.owed[t.index()]
    }

    /// How many rows accepted at or before `seq` are still owed to each transport.
    pub fn owed_up_to(&self, seq: u64) -> (u64, u64) {
        let mut m = 0;
        let mut p = 0;
        for row in self.rows.range(..=seq).map(|(_, r)| r) {
            m += row.delivery(Transport::Mqtt).owed() as u64;
            p += row.delivery(Transport::PubSub).owed() as u64;
        }
        (m, p)
    }

    /// Sequence number of the oldest row still in the outbox.
    pub fn oldest_seq(&self) -> Option<u64> {
        self.rows.keys().next().copied()
    }

    /// Whether every row accepted at or before `seq` has left.
    pub fn drained_up_to(&self, seq: u64) -> bool {
        self.rows.range(..=seq).next().is_none()
    }

    /// Acceptance time of the oldest row still owed.
    pub fn oldest(&self) -> Option<Instant> {
        self.rows.values().next().map(|r| r.accepted_at)
    }

    /// The dead letters, oldest first: at most `limit` after id `after_id` (a page).
    pub fn dead_letters(&self, after_id: i64, limit: usize) -> Vec<DeadLetter> {
        let start = self.dead_letters.partition_point(|(d, _)| d.id <= after_id);
        self.dead_letters.range(start..).take(limit).map(|(d, _)| d.clone()).collect()
    }

    /// How many dead letters are kept.
    pub fn dead_letter_count(&self) -> usize {
        self.dead_letters.len()
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
    fn dead_letters_are_capped_oldest_first_and_paged() {
        let mut o = Outbox::default();
        let n = MAX_DEAD_LETTERS as u64 + 5;
        for s in 1..=n {
            o.insert(row(s, false, true));
        }
        o.take(Transport::PubSub, usize::MAX, usize::MAX, len);
        for s in 1..=n {
            o.dead_letter(Transport::PubSub, s, "400".into());
        }
        assert_eq!(o.evict(), vec![(Eviction::DeadLettersFull, 5)]);
        assert_eq!(o.dead_letter_count(), MAX_DEAD_LETTERS);
        let first = o.dead_letters(0, 3);
        assert_eq!(first.iter().map(|d| d.event_id.as_str()).collect::<Vec<_>>(), ["e6", "e7", "e8"], "the oldest went first");
        let next = o.dead_letters(first[2].id, 2);
        assert_eq!(next.iter().map(|d| d.event_id.as_str()).collect::<Vec<_>>(), ["e9", "e10"]);
        // Retrying 30,000 ids is linear: every id is looked up in a set.
        let ids: Vec<i64> = (0..30_000).collect();
        assert_eq!(o.take_dead_letters(&ids).len(), MAX_DEAD_LETTERS);
        assert_eq!(o.dead_letter_count(), 0);
    }

    #[test]
    fn restored_rows_age_by_the_run_clock() {
        let stored = |seq, observed_at_ms| StoredRow {
            seq,
            event_id: format!("e{seq}"),
            payload: b"{}".to_vec(),
            timestamp_ms: 1,
            accepted_at_ms: 0, // a wall clock from long ago: ignored
            observed_at_ms,
            mqtt: Delivery::Pending,
            pubsub: Delivery::NotOwed,
        };
        let hour = 3_600_000;
        let limits = Limits { max_rows: 100, max_age: Duration::from_secs(168 * 3600) };
        let (tx, _rx) = std::sync::mpsc::channel();
        let mut o = Outbox::with_sink(tx, limits, crate::clock::RunClock::resume(200 * hour));
        // Observed 169 h and 1 h before the end of the last run; one from before the run clock.
        o.restore(vec![stored(1, Some(31 * hour)), stored(2, Some(199 * hour)), stored(3, None)], vec![]);
        assert_eq!(o.evict(), vec![(Eviction::TooOld, 1)]);
        assert_eq!(o.depth(Transport::Mqtt), 2);
    }

    #[test]
    fn dead_letters_are_kept() {
        let mut o = Outbox::default();
        o.insert(row(1, false, true));
        o.take(Transport::PubSub, 1, 1 << 20, len);
        let done = o.dead_letter(Transport::PubSub, 1, "400 bad".into());
        assert_eq!(done[0].outcome, None);
        assert_eq!(o.dead_letters(0, 10)[0].event_id, "e1");
    }
}
