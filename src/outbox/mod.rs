//! The outbox: every accepted location with its delivery state per transport. A row leaves
//! only when every transport that owes it has acknowledged it (docs/CONTRACT.md#per-transport-state).
//!
//! The outbox's index lives in memory (the transports take from it) and, when it has a sink,
//! every change is also sent, in order, to the `dualpub-store` thread that persists it
//! ([`store`]). A new row stays invisible to the transports until the store reports it
//! durable ([`Outbox::make_visible`]). All methods are called with the publisher's lock held
//! and do no I/O themselves.
//!
//! **Memory.** An index entry is 32 bytes (states, size, times); a row's eventId and payload —
//! ten times that — stay in memory only for the oldest rows the transports will send next (at
//! most 2 × [`MAX_RESIDENT`]), rows not yet on disk and rows in flight. Beyond that they live only in
//! SQLite: once a row is on disk ([`Outbox::mark_on_disk`]) its body may leave memory, and a
//! transport that reaches a row without one asks the store thread to read the next
//! [`LOAD_CHUNK`] back ([`Outbox::install`]) and takes them once they are there. So memory no
//! longer grows with the backlog (docs/PERFORMANCE.md, "Memory").

mod dead_letters;
mod rows;
pub(crate) mod seq_map;
pub(crate) mod store;
pub(crate) mod wire_seqs;

pub use dead_letters::{DeadLetter, MAX_DEAD_LETTERS};
pub use rows::{Delivery, DualOutcome, Row, Transport};
use std::collections::BTreeSet;
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::{Duration, Instant};
use store::{Msg, Op, StoredBody, StoredConfig, StoredDeadLetter, StoredIndex, StoredRow};

/// A row's eventId and payload while they are in memory.
#[derive(Debug)]
struct Body {
    event_id: Arc<str>,
    payload: Arc<[u8]>,
}

/// What the outbox holds in memory for every row (32 bytes); the body only while resident.
#[derive(Debug)]
struct Entry {
    /// The run clock at acceptance (what age and latency are measured by).
    observed_at_ms: i64,
    /// The location's own timestamp.
    timestamp_ms: i64,
    /// Payload bytes (a batch's size is counted without the payload in memory).
    len: u32,
    /// The state per transport, indexed by [`Transport::index`].
    delivery: [Delivery; 2],
    /// [`VISIBLE`], [`ON_DISK`], [`PINNED`] (one byte keeps the entry at 32).
    flags: u8,
    /// The eventId and payload, while resident.
    body: Option<Box<Body>>,
}

/// Entry flag: handed to the transports (durable, or the disk has failed).
const VISIBLE: u8 = 1;
/// Entry flag: committed to the database, so its body may leave memory.
const ON_DISK: u8 = 2;
/// Entry flag: read back for a transport that has not taken it yet; its body stays until then.
const PINNED: u8 = 4;

impl Entry {
    fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    fn mark(&mut self, flag: u8, on: bool) {
        if on {
            self.flags |= flag;
        } else {
            self.flags &= !flag;
        }
    }

    fn delivery(&self, t: Transport) -> Delivery {
        self.delivery[t.index()]
    }

    fn set(&mut self, t: Transport, d: Delivery) {
        self.delivery[t.index()] = d;
    }

    fn done(&self) -> bool {
        !self.delivery.iter().any(|d| d.owed())
    }

    fn in_flight(&self) -> bool {
        self.delivery.contains(&Delivery::InFlight)
    }

    /// Whether its body may leave memory now: on disk, and no transport about to send it.
    fn spillable(&self) -> bool {
        self.has(ON_DISK) && !self.has(PINNED) && !self.in_flight()
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

/// Rows whose eventId and payload stay in memory after a shrink, besides those in flight, read
/// back and not yet taken, or not yet on disk: a full Pub/Sub batch and an MQTT window (about
/// 0.5 MB). A shrink happens when twice as many are resident, so it costs a scan of the
/// resident rows once per [`MAX_RESIDENT`] rows at most.
pub const MAX_RESIDENT: usize = 1_024;

/// Rows read back from the database at a time when a transport reaches rows not in memory (a
/// full Pub/Sub batch).
pub const LOAD_CHUNK: usize = 1_000;

/// A row that left the outbox, with which transports delivered it.
#[derive(Debug, Clone)]
pub struct Completed {
    /// `None` when no transport delivered it (dead-lettered with nothing else owed).
    pub outcome: Option<DualOutcome>,
}

/// Why rows (or dead letters) were evicted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Eviction {
    /// The outbox reached its row limit.
    OutboxFull,
    /// The row was older than the age limit.
    TooOld,
    /// The dead-letter list reached [`MAX_DEAD_LETTERS`] or
    /// [`MAX_DEAD_LETTER_BYTES`](dead_letters::MAX_DEAD_LETTER_BYTES).
    DeadLettersFull,
    /// The dead letter's location was older than the age limit.
    DeadLetterTooOld,
}

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

/// The moment `now` (an instant and the run clock's time at it, `now_ms`) less the time the SDK
/// observed since run-clock time `observed_at_ms` (saturating at `now`).
fn instant_of(now: Instant, now_ms: i64, observed_at_ms: i64) -> Instant {
    let age = Duration::from_millis(now_ms.saturating_sub(observed_at_ms).max(0) as u64);
    now.checked_sub(age).unwrap_or(now)
}

/// The outbox.
#[derive(Debug, Default)]
pub struct Outbox {
    rows: seq_map::SeqMap<Entry>,
    /// The wire `seq` each row carries, as runs (not a field of the 32-byte entry).
    wire: wire_seqs::WireSeqs,
    /// Per transport: visible rows waiting to be sent, by acceptance order.
    pending: [BTreeSet<u64>; 2],
    /// Per transport: rows owed (pending or in flight).
    owed: [usize; 2],
    /// Rows whose body is in memory.
    resident: BTreeSet<u64>,
    /// No shrink is tried until more rows than this are resident (see [`Outbox::shrink`]).
    shrink_at: usize,
    /// Per transport: bodies asked of the store and not yet installed.
    loading: [bool; 2],
    /// The messages a transport refused as invalid.
    dead_letters: dead_letters::DeadLetters,
    limits: Limits,
    /// The SDK's run clock (rows record their acceptance on it).
    run_clock: crate::clock::RunClock,
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

    /// The run clock now (ms): the time the SDK observed, across runs.
    pub fn run_now_ms(&self) -> i64 {
        self.run_clock.now_ms()
    }

    /// Runs `f`, sending the changes it makes to the store as one message, so the store commits
    /// them together (one `sendLocations` call becomes durable, and visible, at once). If `f`
    /// panics, the changes it made are sent all the same and the batch is closed before the
    /// panic goes on: later changes are never swallowed by a batch left open.
    pub fn batched<R>(&mut self, f: impl FnOnce(&mut Outbox) -> R) -> R {
        *self.batch.borrow_mut() = Some(Vec::new());
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(self)));
        let ops = self.batch.borrow_mut().take().unwrap_or_default();
        if let (false, Some(sink)) = (ops.is_empty(), &self.sink) {
            let _ = sink.send(Msg::Ops(ops));
        }
        r.unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }

    /// Persists a row's new state: gone if nothing is owed any more, else its states.
    fn persist_row(&self, seq: u64) {
        if self.sink.is_none() {
            return;
        }
        match self.rows.get(seq) {
            Some(e) => self.persist(Op::Update { seq, mqtt: e.delivery(Transport::Mqtt), pubsub: e.delivery(Transport::PubSub) }),
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
        self.rows.get(seq).map(|e| e.timestamp_ms)
    }

    /// Persists the config fetcher's state (JSON), in order with everything else.
    pub fn persist_fetch_state(&self, json: String) {
        self.persist(Op::SaveFetchState(json));
    }

    /// Persists a small setting in the `meta` table, in order with everything else.
    pub fn persist_meta(&self, key: String, value: i64) {
        self.persist(Op::SaveMeta { key, value });
    }

    /// The moment of this run at run-clock time `observed_at_ms` (earlier than the run's start
    /// for a restored row: its age is the time the SDK observed since it was accepted, never a
    /// wall-clock difference).
    fn instant_at(&self, observed_at_ms: i64) -> Instant {
        instant_of(Instant::now(), self.run_clock.now_ms(), observed_at_ms)
    }

    /// Loads one row the store kept (oldest first; visible at once: it is durable). Its body
    /// stays on disk until a transport reaches it. A row from before the run clock existed
    /// counts as new.
    pub fn restore_row(&mut self, r: StoredIndex) {
        self.wire.push(r.seq, r.wire_seq);
        let entry = Entry {
            observed_at_ms: self.run_clock.restored(r.observed_at_ms),
            timestamp_ms: r.timestamp_ms,
            len: r.len,
            delivery: [r.mqtt, r.pubsub],
            flags: VISIBLE | ON_DISK,
            body: None,
        };
        for t in Transport::ALL {
            if entry.delivery(t).owed() {
                *self.owed_count(t) += 1;
            }
            if entry.delivery(t) == Delivery::Pending {
                self.pending(t).insert(r.seq);
            }
        }
        self.rows.insert(r.seq, entry);
    }

    /// Loads the dead letters the store kept.
    pub fn restore_dead_letters(&mut self, dead_letters: Vec<StoredDeadLetter>) {
        let run_clock = &self.run_clock;
        self.dead_letters.restore(dead_letters, |observed_at_ms| run_clock.restored(observed_at_ms));
    }

    /// Hands rows to the transports: they are durable now (or the disk failed and holding them
    /// back would help nobody).
    pub fn make_visible(&mut self, seqs: &[u64]) {
        for seq in seqs {
            let Some(entry) = self.rows.get_mut(*seq) else { continue };
            if entry.has(VISIBLE) {
                continue;
            }
            entry.mark(VISIBLE, true);
            let owed: Vec<Transport> = Transport::ALL.into_iter().filter(|t| entry.delivery(*t) == Delivery::Pending).collect();
            for t in owed {
                self.pending(t).insert(*seq);
            }
        }
    }

    /// Rows `seqs` are committed to the database: their bodies may leave memory.
    pub fn mark_on_disk(&mut self, seqs: &[u64]) {
        for seq in seqs {
            if let Some(entry) = self.rows.get_mut(*seq) {
                entry.mark(ON_DISK, true);
            }
        }
        self.shrink();
    }

    /// With more than 2 × [`MAX_RESIDENT`] bodies in memory, drops the newest spillable ones
    /// until [`MAX_RESIDENT`] are left: the transports send the oldest first, so the newest are
    /// needed last. After a shrink that could not get there (rows in flight, or not on disk
    /// while the disk fails) the next is tried only once [`MAX_RESIDENT`] more are resident, so
    /// the scan costs O(1) per row however it ends.
    fn shrink(&mut self) {
        self.shrink_at = self.shrink_at.min(self.resident.len() + MAX_RESIDENT);
        if self.resident.len() <= self.shrink_at.max(2 * MAX_RESIDENT) {
            return;
        }
        let over = self.resident.len() - MAX_RESIDENT;
        let spill: Vec<u64> = self.resident.iter().rev().filter(|&&s| self.rows.get(s).is_some_and(Entry::spillable)).take(over).copied().collect();
        for seq in spill {
            if let Some(entry) = self.rows.get_mut(seq) {
                entry.body = None;
            }
            self.resident.remove(&seq);
        }
        self.shrink_at = self.resident.len() + MAX_RESIDENT;
    }

    /// Puts back the bodies the store read for `t` ([`store::Msg::Load`]); rows gone or
    /// resident meanwhile are skipped. `t` may ask again.
    /// They stay (pinned) until a transport takes them, so a shrink cannot undo a read.
    pub fn install(&mut self, t: Transport, bodies: Vec<StoredBody>) {
        self.loading[t.index()] = false;
        for b in bodies {
            let Some(entry) = self.rows.get_mut(b.seq) else { continue };
            if entry.body.is_none() {
                entry.body = Some(Box::new(Body { event_id: Arc::from(b.event_id), payload: Arc::from(b.payload) }));
                entry.mark(PINNED, true);
                self.resident.insert(b.seq);
            }
        }
        self.shrink();
    }

    /// Rows `seqs` cannot be read back from the database (a corrupt page): those still here
    /// without their body in memory leave the outbox. Returns how many (the caller counts them,
    /// `dropped{unreadable}`, and logs them).
    pub fn drop_unreadable(&mut self, seqs: &[u64]) -> u64 {
        let gone: Vec<u64> = seqs.iter().copied().filter(|&s| self.rows.get(s).is_some_and(|e| e.body.is_none())).collect();
        gone.iter().for_each(|&seq| self.remove(seq));
        gone.len() as u64
    }

    /// The database was rebuilt without the rows with keys in `lost` and the dead letters with
    /// ids in `lost_letters` (ranges `from..end`): a row that was on disk is written again if its
    /// body is in memory, and leaves the outbox if it was only on the lost disk; dead letters
    /// (always in memory) are written again. Returns (rows written again, rows gone); the caller
    /// counts the gone ones (`dropped{unreadable}`) and logs them.
    pub fn rebuilt_without(&mut self, lost: &[(u64, u64)], lost_letters: &[(i64, i64)]) -> (u64, u64) {
        let on_disk: Vec<u64> =
            lost.iter().flat_map(|&(from, end)| self.rows.range(from, end).filter(|(_, e)| e.has(ON_DISK)).map(|(seq, _)| seq).collect::<Vec<_>>()).collect();
        let (mut again, mut gone) = (0, 0);
        let now = (self.run_clock.now_ms(), crate::clock::now_ms());
        for seq in on_disk {
            let Some(entry) = self.rows.get(seq) else { continue };
            let Some(body) = &entry.body else {
                self.remove(seq);
                gone += 1;
                continue;
            };
            let row = StoredRow {
                seq,
                event_id: body.event_id.clone(),
                payload: body.payload.clone(),
                timestamp_ms: entry.timestamp_ms,
                accepted_at_ms: now.1 - (now.0 - entry.observed_at_ms).max(0),
                observed_at_ms: Some(entry.observed_at_ms),
                mqtt: entry.delivery(Transport::Mqtt),
                pubsub: entry.delivery(Transport::PubSub),
                wire_seq: crate::wire::seq_of(&body.payload),
            };
            self.persist(Op::Insert(row));
            again += 1;
        }
        for letter in self.dead_letters.stored_in(lost_letters) {
            self.persist(Op::DeadLetter(letter));
        }
        (again, gone)
    }

    /// Rows whose body is in memory.
    pub fn resident(&self) -> usize {
        self.resident.len()
    }

    /// Asks the store for the bodies of up to [`LOAD_CHUNK`] rows pending for `t` without one,
    /// from `from` on (once at a time per transport).
    fn request_load(&mut self, t: Transport, from: u64) {
        let Some(sink) = &self.sink else { return };
        if self.loading[t.index()] {
            return;
        }
        let seqs: Vec<u64> =
            self.pending[t.index()].range(from..).filter(|&&s| self.rows.get(s).is_some_and(|e| e.body.is_none())).take(LOAD_CHUNK).copied().collect();
        if !seqs.is_empty() && sink.send(Msg::Load { transport: t, seqs }).is_ok() {
            self.loading[t.index()] = true;
        }
    }

    /// Evicts the oldest rows beyond the row limit or older than the age limit, and the oldest
    /// dead letters beyond theirs; returns how many for each reason. Only locations count:
    /// metrics and debug data live elsewhere and can never evict a location.
    pub fn evict(&mut self) -> Vec<(Eviction, u64)> {
        let Limits { max_rows, max_age } = self.limits;
        let max_age_ms = i64::try_from(max_age.as_millis()).unwrap_or(i64::MAX);
        let oldest_kept = self.run_clock.now_ms().saturating_sub(max_age_ms);
        let mut out = Vec::new();
        let mut too_old = 0;
        while let Some((seq, entry)) = self.rows.first() {
            if entry.observed_at_ms >= oldest_kept {
                break;
            }
            self.remove(seq);
            too_old += 1;
        }
        let mut full = 0;
        while self.rows.len() > max_rows {
            let Some((seq, _)) = self.rows.first() else { break };
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

    /// Drops the dead letters beyond their caps (`DeadLetters::cap`) and persists it.
    fn cap_dead_letters(&mut self) -> Vec<(Eviction, u64)> {
        let (dropped, counts) = self.dead_letters.cap(self.limits.max_age, self.run_clock.now_ms());
        for id in dropped {
            self.persist(Op::RemoveDeadLetter(id));
        }
        counts
    }

    fn remove(&mut self, seq: u64) {
        if let Some(entry) = self.rows.remove(seq) {
            for t in Transport::ALL {
                if entry.delivery(t).owed() {
                    *self.owed_count(t) -= 1;
                }
                self.pending(t).remove(&seq);
            }
            self.resident.remove(&seq);
            self.persist(Op::Delete(seq));
        }
    }

    /// Deletes every row, whatever it is owed or in flight, and every dead letter (a privacy
    /// opt-out); returns how many of each. An acknowledgement or failure that arrives later for
    /// a deleted row finds nothing, so nothing is sent again.
    pub fn purge(&mut self) -> (u64, u64) {
        let mut rows = 0;
        while let Some((seq, _)) = self.rows.first() {
            self.remove(seq);
            rows += 1;
        }
        (rows, self.take_dead_letters(&[]).len() as u64)
    }

    /// Number of rows in the outbox.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether the outbox is empty.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.rows.len() == 0
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

    /// Adds an accepted row (in acceptance order) whose payload carries wire `seq` `wire_seq`
    /// (`None`: a payload without one). With a sink, it is persisted and stays invisible to the
    /// transports until [`Outbox::make_visible`]; without one it is visible at once.
    pub fn insert(&mut self, row: Row, wire_seq: Option<u64>) {
        self.wire.prune(self.rows.first().map(|(seq, _)| seq));
        self.wire.push(row.seq, wire_seq);
        let observed_at_ms = self.run_clock.at(row.accepted_at);
        let state = |on| if on { Delivery::Pending } else { Delivery::NotOwed };
        let delivery = [state(row.owed[0]), state(row.owed[1])];
        for t in Transport::ALL {
            if delivery[t.index()] == Delivery::Pending {
                *self.owed_count(t) += 1;
            }
        }
        if self.sink.is_some() {
            self.persist(Op::Insert(StoredRow {
                seq: row.seq,
                event_id: row.event_id.clone(),
                payload: row.payload.clone(),
                timestamp_ms: row.timestamp_ms,
                accepted_at_ms: crate::clock::now_ms(),
                observed_at_ms: Some(observed_at_ms),
                mqtt: delivery[0],
                pubsub: delivery[1],
                wire_seq,
            }));
        }
        let entry = Entry {
            observed_at_ms,
            timestamp_ms: row.timestamp_ms,
            len: u32::try_from(row.payload.len()).unwrap_or(u32::MAX),
            delivery,
            flags: 0,
            body: Some(Box::new(Body { event_id: row.event_id, payload: row.payload })),
        };
        self.resident.insert(row.seq);
        self.rows.insert(row.seq, entry);
        if self.sink.is_none() {
            self.make_visible(&[row.seq]);
        }
    }

    /// Takes the oldest rows pending for `t` (at most `max_count`, and at most `max_bytes` as
    /// measured by `cost` of a payload length, but always at least one) and marks them in flight.
    #[cfg(test)]
    pub fn take(&mut self, t: Transport, max_count: usize, max_bytes: usize, cost: impl Fn(usize) -> usize) -> Vec<Row> {
        self.take_up_to(t, u64::MAX, max_count, max_bytes, cost)
    }

    /// [`Outbox::take`], only rows with a sequence number up to `max_seq` (an upload burst's).
    /// When it reaches a row whose body is not in memory before the batch is full, it takes
    /// nothing: it asks the store for the next bodies and the transport is woken once they are
    /// there (so a batch is never cut short by where memory ends).
    pub fn take_up_to(&mut self, t: Transport, max_seq: u64, max_count: usize, max_bytes: usize, cost: impl Fn(usize) -> usize) -> Vec<Row> {
        let mut out: Vec<Row> = Vec::new();
        let mut bytes = 0;
        let now = (Instant::now(), self.run_clock.now_ms());
        let candidates: Vec<u64> = self.pending_set(t).range(..=max_seq).take(max_count).copied().collect();
        for seq in candidates {
            let Some(entry) = self.rows.get(seq) else {
                self.pending(t).remove(&seq);
                continue;
            };
            let c = cost(entry.len as usize);
            if !out.is_empty() && bytes + c > max_bytes {
                break;
            }
            let Some(body) = &entry.body else {
                // Not in memory: read the next ones back, and take the whole batch then.
                self.request_load(t, seq);
                let back: Vec<u64> = out.iter().map(|r| r.seq).collect();
                self.release(t, &back);
                return Vec::new();
            };
            bytes += c;
            out.push(Row {
                seq,
                event_id: body.event_id.clone(),
                payload: body.payload.clone(),
                timestamp_ms: entry.timestamp_ms,
                accepted_at: instant_of(now.0, now.1, entry.observed_at_ms),
                owed: [entry.delivery(Transport::Mqtt).owed(), entry.delivery(Transport::PubSub).owed()],
            });
            if let Some(entry) = self.rows.get_mut(seq) {
                entry.set(t, Delivery::InFlight);
                entry.mark(PINNED, false);
            }
            self.pending(t).remove(&seq);
        }
        out
    }

    /// Oldest acceptance time among rows pending (not in flight) for `t`.
    pub fn oldest_pending(&self, t: Transport) -> Option<Instant> {
        self.pending_set(t).first().and_then(|s| self.rows.get(*s)).map(|e| self.instant_at(e.observed_at_ms))
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

    /// Sum of `cost` (of each payload length) over the oldest `max_count` rows pending for `t`
    /// (a batch's size).
    pub fn pending_cost(&self, t: Transport, max_count: usize, cost: impl Fn(usize) -> usize) -> usize {
        self.pending_set(t).iter().take(max_count).filter_map(|s| self.rows.get(*s)).map(|e| cost(e.len as usize)).sum()
    }

    /// Marks rows acknowledged by `t`; returns those that left the outbox.
    pub fn ack(&mut self, t: Transport, seqs: &[u64]) -> Vec<Completed> {
        self.settle(t, seqs, Delivery::Acked)
    }

    fn settle(&mut self, t: Transport, seqs: &[u64], to: Delivery) -> Vec<Completed> {
        let mut done = Vec::new();
        for seq in seqs {
            let Some(entry) = self.rows.get_mut(*seq) else { continue };
            if !entry.delivery(t).owed() {
                continue;
            }
            entry.set(t, to);
            let finished = entry.done().then(|| entry.outcome());
            self.pending(t).remove(seq);
            *self.owed_count(t) -= 1;
            if let Some(outcome) = finished {
                self.rows.remove(*seq);
                self.resident.remove(seq);
                done.push(Completed { outcome });
            }
            self.persist_row(*seq);
        }
        self.shrink();
        done
    }

    /// Puts in-flight rows back in the queue of `t` (the attempt failed or the connection
    /// dropped); they keep their place by acceptance order.
    pub fn release(&mut self, t: Transport, seqs: &[u64]) {
        for seq in seqs {
            if let Some(entry) = self.rows.get_mut(*seq) {
                if entry.delivery(t) == Delivery::InFlight {
                    entry.set(t, Delivery::Pending);
                    let visible = entry.has(VISIBLE);
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
            if let Some(entry) = self.rows.get_mut(*seq) {
                if entry.delivery(t) == Delivery::NotOwed {
                    entry.set(t, Delivery::Pending);
                    let visible = entry.has(VISIBLE);
                    if visible {
                        self.pending(t).insert(*seq);
                    }
                    self.wire.owed_again(t.index(), *seq);
                    n += 1;
                    self.persist_row(*seq);
                }
            }
        }
        *self.owed_count(t) += n as usize;
        n as u64
    }

    /// The config stopped owing `t`: rows pending for it are released from that duty, and the
    /// other transport is made to owe any row that would otherwise be owed to nobody. A row the
    /// other transport dead-lettered stays owed to `t` (its only way out). Rows in flight finish
    /// their attempt. Returns the rows that left the outbox.
    pub fn stop_owing(&mut self, t: Transport) -> Vec<Completed> {
        let instead = t.other();
        let mut seqs = Vec::new();
        let mut orphans = Vec::new();
        let pending: Vec<u64> = self.pending(t).iter().copied().collect();
        for seq in pending {
            match self.rows.get(seq).map(|e| e.delivery(instead)) {
                Some(Delivery::DeadLettered) => continue,
                Some(Delivery::NotOwed) => orphans.push(seq),
                _ => {}
            }
            seqs.push(seq);
        }
        self.also_owe(instead, &orphans);
        self.settle(t, &seqs, Delivery::NotOwed)
    }

    /// Moves one in-flight row of `t` to the dead-letter list; returns it if it left the outbox.
    /// An in-flight row always has its body in memory (a body never leaves while its row is in
    /// flight); were it missing, the row goes back to the queue rather than be lost.
    pub fn dead_letter(&mut self, t: Transport, seq: u64, error: String) -> Vec<Completed> {
        let Some(entry) = self.rows.get(seq) else { return Vec::new() };
        let Some(body) = &entry.body else {
            self.release(t, &[seq]);
            return Vec::new();
        };
        let now = self.run_clock.now_ms();
        let stored = self.dead_letters.keep(&body.event_id, &body.payload, entry.timestamp_ms, t, error, now);
        self.persist(Op::DeadLetter(stored));
        self.settle(t, &[seq], Delivery::DeadLettered)
    }

    /// Takes dead letters out of the list to send them again (all when `ids` is empty); the
    /// caller queues them as new rows with their original eventId and bytes.
    pub fn take_dead_letters(&mut self, ids: &[i64]) -> Vec<DeadLetter> {
        let taken = self.dead_letters.take(ids);
        for d in &taken {
            self.persist(Op::RemoveDeadLetter(d.id));
        }
        taken
    }

    /// Sequence numbers of every row still owed to `t`, oldest first.
    pub fn owed_seqs(&self, t: Transport) -> Vec<u64> {
        self.rows.iter().filter(|(_, e)| e.delivery(t).owed()).map(|(s, _)| s).collect()
    }

    /// Rows still owed to `t` (pending or in flight).
    pub fn depth(&self, t: Transport) -> usize {
        self.owed[t.index()]
    }

    /// How many rows accepted at or before `seq` are still owed to each transport.
    pub fn owed_up_to(&self, seq: u64) -> (u64, u64) {
        let mut m = 0;
        let mut p = 0;
        for e in self.rows.up_to(seq).map(|(_, e)| e) {
            m += e.delivery(Transport::Mqtt).owed() as u64;
            p += e.delivery(Transport::PubSub).owed() as u64;
        }
        (m, p)
    }

    /// The lowest wire `seq` among the locations still owed to `t` (pending, in flight, or not
    /// yet durable), or `None` when nothing is owed to it (or nothing owed carries a `seq`: a
    /// payload written before wire format version 2). A re-queued dead letter counts with its
    /// own, old `seq`. Every location of the data directory with a lower `seq` has left `t`'s
    /// queue. Amortised O(1) per row, plus O(1) per run ([`wire_seqs`]).
    pub fn oldest_owed_wire_seq(&self, t: Transport) -> Option<u64> {
        if self.owed[t.index()] == 0 {
            return None;
        }
        self.wire.lowest_owed(t.index(), self.rows.end(), |from, to| self.rows.range(from, to).find(|(_, e)| e.delivery(t).owed()).map(|(seq, _)| seq))
    }

    /// Sequence number of the oldest row still in the outbox.
    pub fn oldest_seq(&self) -> Option<u64> {
        self.rows.first().map(|(seq, _)| seq)
    }

    /// Whether every row accepted at or before `seq` has left.
    pub fn drained_up_to(&self, seq: u64) -> bool {
        self.rows.up_to(seq).next().is_none()
    }

    /// Acceptance time of the oldest row still owed.
    pub fn oldest(&self) -> Option<Instant> {
        self.rows.first().map(|(_, e)| self.instant_at(e.observed_at_ms))
    }

    /// The dead letters, oldest first: at most `limit` after id `after_id` (a page).
    pub fn dead_letters(&self, after_id: i64, limit: usize) -> Vec<DeadLetter> {
        self.dead_letters.page(after_id, limit)
    }

    /// How many dead letters are kept.
    pub fn dead_letter_count(&self) -> usize {
        self.dead_letters.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn len(payload_len: usize) -> usize {
        payload_len
    }

    fn row(seq: u64, mqtt: bool, pubsub: bool) -> Row {
        Row::new(seq, format!("e{seq}").into(), Arc::from(&b"{}"[..]), 1, mqtt, pubsub)
    }

    #[test]
    fn a_row_leaves_only_when_every_owed_transport_acked() {
        let mut o = Outbox::default();
        o.insert(row(1, true, true), Some(1));
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
    fn a_panic_inside_a_batch_sends_its_changes_and_closes_it() {
        let (tx, rx) = std::sync::mpsc::channel();
        let mut o = Outbox::with_sink(tx, Limits::default(), crate::clock::RunClock::resume(0));
        let hit = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            o.batched(|o| {
                o.insert(row(1, true, true), Some(1));
                panic!("injected");
            })
        }));
        assert!(hit.is_err(), "the panic goes on");
        o.insert(row(2, true, true), Some(2));
        let sent: Vec<Vec<u64>> = rx
            .try_iter()
            .map(|m| match m {
                Msg::Ops(ops) => ops.iter().filter_map(|op| if let Op::Insert(r) = op { Some(r.seq) } else { None }).collect(),
                _ => vec![],
            })
            .collect();
        assert_eq!(sent, [vec![1], vec![2]], "the batch's insert sent, the next one on its own");
    }

    #[test]
    fn released_rows_keep_their_place() {
        let mut o = Outbox::default();
        for s in 1..=3 {
            o.insert(row(s, true, false), Some(s));
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
        o.insert(row(1, false, true), Some(1));
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
        o.insert(row(1, false, true), Some(1));
        o.insert(row(2, true, true), Some(2));
        let done = o.stop_owing(Transport::PubSub);
        assert!(done.is_empty());
        assert_eq!((o.depth(Transport::Mqtt), o.depth(Transport::PubSub)), (2, 0));
    }

    #[test]
    fn stopping_mqtt_hands_orphans_to_pubsub_but_keeps_a_dead_letters_copy() {
        let mut o = Outbox::default();
        o.insert(row(1, true, false), Some(1));
        o.insert(row(2, true, true), Some(2));
        // Row 3: Pub/Sub refused it as invalid; its MQTT copy is its only way out.
        o.insert(row(3, true, true), Some(3));
        o.take(Transport::PubSub, 10, 1 << 20, len);
        o.release(Transport::PubSub, &[2]);
        o.dead_letter(Transport::PubSub, 3, "400".into());
        assert!(o.stop_owing(Transport::Mqtt).is_empty());
        assert_eq!(o.owed_seqs(Transport::Mqtt), [3]);
        assert_eq!(o.owed_seqs(Transport::PubSub), [1, 2]);
    }

    #[test]
    fn byte_limit_splits_batches_but_never_starves() {
        let mut o = Outbox::default();
        for s in 1..=3 {
            o.insert(row(s, false, true), Some(s));
        }
        assert_eq!(o.take(Transport::PubSub, 10, 1, len).len(), 1);
        assert_eq!(o.take(Transport::PubSub, 10, 4, len).len(), 2);
    }

    #[test]
    fn dead_letters_are_capped_oldest_first_and_paged() {
        let mut o = Outbox::default();
        let n = MAX_DEAD_LETTERS as u64 + 5;
        for s in 1..=n {
            o.insert(row(s, false, true), Some(s));
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
        let stored = |seq, observed_at_ms| StoredIndex {
            seq,
            timestamp_ms: 1,
            len: 2,
            observed_at_ms,
            mqtt: Delivery::Pending,
            pubsub: Delivery::NotOwed,
            wire_seq: Some(seq),
        };
        let hour = 3_600_000;
        let limits = Limits { max_rows: 100, max_age: Duration::from_secs(168 * 3600) };
        let (tx, _rx) = std::sync::mpsc::channel();
        let mut o = Outbox::with_sink(tx, limits, crate::clock::RunClock::resume(200 * hour));
        // Observed 169 h and 1 h before the end of the last run; one from before the run clock.
        for r in [stored(1, Some(31 * hour)), stored(2, Some(199 * hour)), stored(3, None)] {
            o.restore_row(r);
        }
        assert_eq!(o.evict(), vec![(Eviction::TooOld, 1)]);
        assert_eq!(o.depth(Transport::Mqtt), 2);
    }

    /// An outbox with a store channel, `n` rows owed to Pub/Sub only, all committed to disk.
    fn committed(n: u64) -> (Outbox, std::sync::mpsc::Receiver<Msg>) {
        let (tx, rx) = std::sync::mpsc::channel();
        let mut o = Outbox::with_sink(tx, Limits::default(), crate::clock::RunClock::resume(0));
        let seqs: Vec<u64> = (1..=n).collect();
        for &s in &seqs {
            o.insert(row(s, false, true), Some(s));
        }
        o.make_visible(&seqs);
        o.mark_on_disk(&seqs);
        (o, rx)
    }

    /// The load requests sent to the store so far (inserts and other ops skipped).
    fn loads(rx: &std::sync::mpsc::Receiver<Msg>) -> Vec<(Transport, Vec<u64>)> {
        rx.try_iter().filter_map(|m| if let Msg::Load { transport, seqs } = m { Some((transport, seqs)) } else { None }).collect()
    }

    fn bodies(seqs: &[u64]) -> Vec<StoredBody> {
        seqs.iter().map(|&s| StoredBody { seq: s, event_id: format!("e{s}"), payload: b"{}".to_vec() }).collect()
    }

    #[test]
    fn an_index_entry_is_32_bytes() {
        assert_eq!(std::mem::size_of::<Entry>(), 32, "what a queued location costs in memory besides the map");
    }

    #[test]
    fn bodies_beyond_the_resident_limit_stay_on_disk_and_come_back_in_order() {
        let n = 3 * MAX_RESIDENT as u64 + 3_000;
        let (mut o, rx) = committed(n);
        let m = MAX_RESIDENT as u64;
        assert_eq!(o.resident(), MAX_RESIDENT, "the oldest stay in memory, the newest leave");
        // The resident rows go at once.
        let taken = o.take(Transport::PubSub, MAX_RESIDENT, usize::MAX, len);
        assert_eq!(taken.iter().map(|r| r.seq).collect::<Vec<_>>(), (1..=m).collect::<Vec<_>>());
        assert!(loads(&rx).is_empty(), "nothing read back while memory held the rows");
        o.ack(Transport::PubSub, &taken.iter().map(|r| r.seq).collect::<Vec<_>>());
        // The next row is not in memory: no batch cut short, the next 1,000 are asked for, once.
        assert!(o.take(Transport::PubSub, 1_000, usize::MAX, len).is_empty());
        assert!(o.take(Transport::PubSub, 1_000, usize::MAX, len).is_empty());
        let asked = loads(&rx);
        assert_eq!(asked.len(), 1);
        assert_eq!((asked[0].0, asked[0].1.first(), asked[0].1.len()), (Transport::PubSub, Some(&(m + 1)), LOAD_CHUNK));
        o.install(Transport::PubSub, bodies(&asked[0].1));
        let taken = o.take(Transport::PubSub, 1_000, usize::MAX, len);
        assert_eq!(taken.iter().map(|r| r.seq).collect::<Vec<_>>(), (m + 1..=m + 1_000).collect::<Vec<_>>(), "in acceptance order");
        assert_eq!(*taken[999].event_id, *format!("e{}", m + 1_000));
        assert_eq!(o.depth(Transport::PubSub), (n - m) as usize, "nothing lost on the way");
    }

    #[test]
    fn a_batch_reaching_past_memory_is_given_back_whole() {
        let (mut o, rx) = committed(3 * MAX_RESIDENT as u64);
        // A batch larger than what memory holds: nothing goes, the rest is asked for.
        assert!(o.take(Transport::PubSub, MAX_RESIDENT + 10, usize::MAX, len).is_empty());
        assert_eq!(o.oldest_pending_seq(Transport::PubSub), Some(1), "given back, in place");
        let asked = loads(&rx).remove(0).1;
        o.install(Transport::PubSub, bodies(&asked));
        let taken = o.take(Transport::PubSub, MAX_RESIDENT + 10, usize::MAX, len);
        assert_eq!(taken.iter().map(|r| r.seq).collect::<Vec<_>>(), (1..=MAX_RESIDENT as u64 + 10).collect::<Vec<_>>());
    }

    #[test]
    fn a_body_leaves_memory_only_when_on_disk_and_not_in_flight() {
        let (tx, _rx) = std::sync::mpsc::channel();
        let mut o = Outbox::with_sink(tx, Limits::default(), crate::clock::RunClock::resume(0));
        let n = 2 * MAX_RESIDENT as u64 + 10;
        let seqs: Vec<u64> = (1..=n).collect();
        for &s in &seqs {
            o.insert(row(s, true, true), Some(s));
        }
        o.make_visible(&seqs);
        // MQTT takes everything before the commit reports it on disk, and puts all but the
        // newest ten back.
        assert_eq!(o.take(Transport::Mqtt, usize::MAX, usize::MAX, len).len(), n as usize);
        let (older, newest) = seqs.split_at(seqs.len() - 10);
        o.release(Transport::Mqtt, older);
        o.mark_on_disk(&seqs);
        assert_eq!(o.resident(), MAX_RESIDENT, "shrunk to the limit");
        assert!(newest.iter().all(|s| o.resident.contains(s)), "in flight: kept");
        assert!(o.resident.range(..=MAX_RESIDENT as u64 - 10).count() == MAX_RESIDENT - 10, "then the oldest, which go first");
        // Pub/Sub reaches a row whose body is on disk only: nothing to dead-letter, nothing lost.
        assert!(o.dead_letter(Transport::PubSub, MAX_RESIDENT as u64, "400".into()).is_empty());
        assert_eq!(o.depth(Transport::PubSub), n as usize);
    }

    #[test]
    fn a_read_back_stays_until_taken() {
        // Owed to both; Pub/Sub delivers the 2,048 rows in memory while MQTT waits.
        let (tx, rx) = std::sync::mpsc::channel();
        let mut o = Outbox::with_sink(tx, Limits::default(), crate::clock::RunClock::resume(0));
        let add = |o: &mut Outbox, seqs: std::ops::RangeInclusive<u64>| {
            let seqs: Vec<u64> = seqs.collect();
            seqs.iter().for_each(|&s| o.insert(row(s, true, true), Some(s)));
            o.make_visible(&seqs);
            o.mark_on_disk(&seqs);
        };
        add(&mut o, 1..=5_000);
        let front = o.take(Transport::PubSub, MAX_RESIDENT, usize::MAX, len);
        o.ack(Transport::PubSub, &front.iter().map(|r| r.seq).collect::<Vec<_>>());
        assert!(o.take(Transport::PubSub, 1_000, usize::MAX, len).is_empty());
        let asked = loads(&rx).remove(0).1;
        o.install(Transport::PubSub, bodies(&asked));
        // New rows fill memory past the limit before Pub/Sub takes its read: the shrink drops
        // the newest it may, and MQTT's old rows, never the read Pub/Sub is waiting for.
        add(&mut o, 5_001..=6_100);
        assert!(o.resident() <= 2 * MAX_RESIDENT);
        let taken = o.take(Transport::PubSub, 1_000, usize::MAX, len);
        assert_eq!(taken.first().map(|r| r.seq), Some(MAX_RESIDENT as u64 + 1));
        assert_eq!(taken.len(), 1_000);
    }

    /// The oldest wire seq owed to each transport, `[mqtt, pubsub]`.
    fn oldest_owed(o: &Outbox) -> [Option<u64>; 2] {
        Transport::ALL.map(|t| o.oldest_owed_wire_seq(t))
    }

    #[test]
    fn the_oldest_owed_location_stuck_on_mqtt_is_found_while_pubsub_delivers_newer_ones() {
        let mut o = Outbox::default();
        assert_eq!(oldest_owed(&o), [None, None], "nothing owed");
        // Rows 1-5 (wire seqs 101-105) owed to both.
        for s in 1..=5 {
            o.insert(row(s, true, true), Some(s + 100));
        }
        assert_eq!(oldest_owed(&o), [Some(101), Some(101)]);
        // Pub/Sub delivers all five; MQTT has 1 and 2 in flight and gets only 2 acknowledged.
        let all: Vec<u64> = o.take(Transport::PubSub, 10, usize::MAX, len).iter().map(|r| r.seq).collect();
        o.ack(Transport::PubSub, &all);
        o.take(Transport::Mqtt, 2, usize::MAX, len);
        o.ack(Transport::Mqtt, &[2]);
        assert_eq!(o.oldest_pending_seq(Transport::Mqtt), Some(3), "row 1 is in flight, not pending");
        assert_eq!(oldest_owed(&o), [Some(101), None], "in flight is still owed; Pub/Sub owes nothing");
        // A route change: new locations go to Pub/Sub only and are delivered; row 1 stays stuck.
        for s in 6..=8 {
            o.insert(row(s, false, true), Some(s + 100));
        }
        assert_eq!(oldest_owed(&o), [Some(101), Some(106)]);
        let newer: Vec<u64> = o.take(Transport::PubSub, 10, usize::MAX, len).iter().map(|r| r.seq).collect();
        o.ack(Transport::PubSub, &newer);
        o.release(Transport::Mqtt, &[1]);
        assert_eq!((o.depth(Transport::Mqtt), oldest_owed(&o)), (4, [Some(101), None]), "MQTT owes 1, 3, 4 and 5: 1 is not among the newest four");
        o.take(Transport::Mqtt, 1, usize::MAX, len);
        o.ack(Transport::Mqtt, &[1]);
        assert_eq!(oldest_owed(&o), [Some(103), None]);
        let rest: Vec<u64> = o.take(Transport::Mqtt, 10, usize::MAX, len).iter().map(|r| r.seq).collect();
        o.ack(Transport::Mqtt, &rest);
        assert_eq!((o.is_empty(), oldest_owed(&o)), (true, [None, None]), "0 in the report when nothing is owed");
    }

    #[test]
    fn the_oldest_owed_counts_rows_not_yet_durable_and_rows_owed_again_by_a_fallback() {
        let (tx, _rx) = std::sync::mpsc::channel();
        let mut o = Outbox::with_sink(tx, Limits::default(), crate::clock::RunClock::resume(0));
        for s in 1..=3 {
            o.insert(row(s, false, true), Some(s + 10));
        }
        o.insert(row(4, true, true), Some(14));
        assert_eq!(o.pending_count(Transport::Mqtt), 0, "not durable yet: invisible to the transports");
        assert_eq!(oldest_owed(&o), [Some(14), Some(11)], "but owed");
        o.make_visible(&[1, 2, 3, 4]);
        // Pub/Sub's breaker opens: MQTT is made to owe rows 1-3 too, behind where it last looked.
        o.take(Transport::PubSub, 10, usize::MAX, len);
        assert_eq!(o.also_owe(Transport::Mqtt, &[1, 2, 3]), 3);
        assert_eq!(oldest_owed(&o), [Some(11), Some(11)]);
    }

    #[test]
    fn wire_seqs_survive_a_restart_and_a_dead_letter_requeue() {
        let (tx, _rx) = std::sync::mpsc::channel();
        let mut o = Outbox::with_sink(tx, Limits::default(), crate::clock::RunClock::resume(0));
        // The last run left rows 3 and 7 (wire seqs 33 and 37) owed to Pub/Sub; its last seq was 40.
        for (seq, wire) in [(3, 33), (7, 37)] {
            o.restore_row(StoredIndex {
                seq,
                timestamp_ms: 1,
                len: 2,
                observed_at_ms: Some(0),
                mqtt: Delivery::NotOwed,
                pubsub: Delivery::Pending,
                wire_seq: Some(wire),
            });
        }
        assert_eq!(oldest_owed(&o), [None, Some(33)]);
        // This run: outbox seqs continue after 7, wire seqs after 40.
        for s in 8..=9 {
            o.insert(row(s, false, true), Some(s + 33));
        }
        o.make_visible(&[8, 9]);
        o.mark_on_disk(&[8, 9]);
        assert_eq!(o.wire.wire_of(8), Some(41));
        assert_eq!(o.wire.wire_of(7), Some(37), "restored rows keep theirs");
        // Rows 3 and 7 are read back and delivered; row 8 (41) is refused and dead-lettered.
        o.install(
            Transport::PubSub,
            vec![StoredBody { seq: 3, event_id: "e3".into(), payload: b"{}".to_vec() }, StoredBody { seq: 7, event_id: "e7".into(), payload: b"{}".to_vec() }],
        );
        let taken: Vec<u64> = o.take(Transport::PubSub, 4, usize::MAX, len).iter().map(|r| r.seq).collect();
        assert_eq!(taken, [3, 7, 8, 9]);
        o.ack(Transport::PubSub, &[3, 7]);
        o.dead_letter(Transport::PubSub, 8, "400".into());
        assert_eq!(oldest_owed(&o), [None, Some(42)]);
        // Re-queued as row 10, with its bytes and so its seq (41): the oldest owed again.
        o.take_dead_letters(&[]);
        o.insert(row(10, false, true), Some(41));
        assert_eq!((o.wire.wire_of(9), o.wire.wire_of(10)), (Some(42), Some(41)));
        assert_eq!(oldest_owed(&o), [None, Some(41)], "a re-queued dead letter is the oldest location owed");
        o.ack(Transport::PubSub, &[9]);
        // A location accepted after it continues from 43: a run of its own.
        o.insert(row(11, false, true), Some(43));
        assert_eq!((o.wire.wire_of(11), oldest_owed(&o)), (Some(43), [None, Some(41)]));
        assert!(o.wire.runs() <= 3, "the runs of rows gone are pruned: {}", o.wire.runs());
    }

    #[test]
    fn dead_letters_are_kept() {
        let mut o = Outbox::default();
        o.insert(row(1, false, true), Some(1));
        o.take(Transport::PubSub, 1, 1 << 20, len);
        let done = o.dead_letter(Transport::PubSub, 1, "400 bad".into());
        assert_eq!(done[0].outcome, None);
        assert_eq!(o.dead_letters(0, 10)[0].event_id, "e1");
    }
}
