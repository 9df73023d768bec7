//! The `dualpub-store` thread: applies the outbox's changes in bounded group commits, oldest
//! first, reads payloads back for the transports, and rebuilds the database when it is damaged
//! or deleted under it.

use super::*;

/// Messages to the writer thread.
pub enum Msg {
    /// Persist these, in order.
    Ops(Vec<Op>),
    /// Read these rows' eventIds and payloads back for `transport` (they left memory:
    /// docs/PERFORMANCE.md, "Memory"); answered through the `loaded` callback of [`run_writer`].
    Load {
        /// The transport that wants them.
        transport: Transport,
        /// The rows, oldest first.
        seqs: Vec<u64>,
    },
    /// Persist what is queued, then stop.
    Stop,
}

/// The writer's answer to [`Msg::Load`].
#[derive(Debug)]
pub struct Loaded {
    /// The transport that asked.
    pub transport: Transport,
    /// The rows still stored, oldest first.
    pub bodies: Vec<StoredBody>,
    /// Rows on a corrupt page of the database: they can never be read back (the database is
    /// rebuilt without them).
    pub unreadable: Vec<u64>,
    /// The read failed; `bodies` is empty and the transport asks again later.
    pub failed: Option<rusqlite::Error>,
}

/// How long a writer with nothing to do waits before it looks whether its database file is
/// still the one at the path (a commit looks each time).
pub(super) const IDLE_CHECK: Duration = Duration::from_secs(60);

/// After a rebuild failed, the least time before the next is tried; after one for a corrupt
/// page, before the next for a corrupt page.
pub(super) const REBUILD_PAUSE: Duration = Duration::from_secs(60);

/// Most ops in one transaction, and most payload bytes: a backlog commits in chunks, oldest
/// first, so a disk with some room left takes what fits. Until a commit has failed, a chunk
/// ends only where a message does (one `sendLocations` call becomes durable, and visible, at once).
pub(super) const CHUNK_OPS: usize = 1_000;
pub(super) const CHUNK_BYTES: usize = 512 * 1024;

/// The shortest pause between commit attempts while stopping (the publisher waits for the
/// writer at most a few seconds).
pub(super) const STOPPING_PAUSE: Duration = Duration::from_millis(100);

/// What the writer has been asked to do and not done yet.
#[derive(Default)]
pub(super) struct Inbox {
    ops: VecDeque<Op>,
    /// Where each message not yet reported visible ends (an index into `ops`).
    ends: VecDeque<usize>,
    /// `ops[..reported]` were reported visible by a failed commit: a chunk may end anywhere there.
    reported: usize,
    loads: Vec<(Transport, Vec<u64>)>,
    stopping: bool,
}

impl Inbox {
    pub(super) fn take(&mut self, msg: Msg) {
        match msg {
            Msg::Ops(ops) => {
                self.ops.extend(ops);
                self.ends.push_back(self.ops.len());
            }
            Msg::Load { transport, seqs } => self.loads.push((transport, seqs)),
            Msg::Stop => self.stopping = true,
        }
    }

    /// How many ops the next transaction takes: up to [`CHUNK_OPS`] and [`CHUNK_BYTES`] (at
    /// least one), extended to the end of the message it stops in unless that was reported
    /// visible already.
    pub(super) fn chunk(&self) -> usize {
        let (mut n, mut bytes) = (0, 0);
        for op in &self.ops {
            n += 1;
            bytes += match op {
                Op::Insert(r) => r.payload.len(),
                Op::DeadLetter(d) => d.payload.len(),
                _ => 0,
            };
            if n >= CHUNK_OPS || bytes >= CHUNK_BYTES {
                break;
            }
        }
        if n <= self.reported {
            return n;
        }
        self.ends.iter().copied().find(|&end| end >= n).unwrap_or(self.ops.len()).min(self.ops.len())
    }

    /// The first `n` ops were committed.
    pub(super) fn committed(&mut self, n: usize) {
        self.ops.drain(..n);
        self.reported = self.reported.saturating_sub(n);
        while self.ends.front().is_some_and(|&end| end <= n) {
            self.ends.pop_front();
        }
        self.ends.iter_mut().for_each(|end| *end -= n);
    }

    /// New rows not yet reported; from now on all of them are.
    pub(super) fn report_all(&mut self) -> Vec<u64> {
        let fresh = inserts(self.ops.range(self.reported..));
        self.reported = self.ops.len();
        self.ends.clear();
        fresh
    }
}

/// The seqs of the inserts among `ops`.
pub(super) fn inserts<'a>(ops: impl IntoIterator<Item = &'a Op>) -> Vec<u64> {
    ops.into_iter().filter_map(|op| if let Op::Insert(r) = op { Some(r.seq) } else { None }).collect()
}

/// The writer thread's state.
pub(super) struct Writer<C, L> {
    store: Store,
    rx: Receiver<Msg>,
    committed: C,
    loaded: L,
    inbox: Inbox,
    retry: crate::retry::Backoff,
    /// After a failed commit: no new attempt before this (what arrives meanwhile is gathered).
    not_before: Option<Instant>,
    /// A read met a corrupt page (SQLite's words): the database is rebuilt at the next chance.
    damaged: Option<String>,
    /// After a failed rebuild: none before this.
    rebuild_not_before: Option<Instant>,
    /// After a rebuild for a corrupt page: no other for a corrupt page before this (a disk that
    /// keeps damaging pages has commits go around the damage instead, not a rebuild each time).
    corrupt_not_before: Option<Instant>,
}

/// Runs the writer: waits for ops, gathers everything queued (group commit), applies it in
/// transactions of bounded size, oldest first, and reports each through `committed`. A failed
/// commit keeps its ops (compacted) and waits a growing pause, gathering what arrives
/// meanwhile; reads asked for by [`Msg::Load`] are answered (through `loaded`) during the pause
/// too, and otherwise after the commit of whatever was queued with them. A corrupt page, or the
/// database file deleted or replaced under it, has the database rebuilt ([`Store::rebuild`]).
/// Returns when told to stop (after a last commit) or when every sender is gone.
pub fn run_writer(store: Store, rx: Receiver<Msg>, committed: impl FnMut(Commit), loaded: impl FnMut(Loaded)) {
    let mut w = Writer {
        store,
        rx,
        committed,
        loaded,
        inbox: Inbox::default(),
        retry: crate::retry::Backoff::new(crate::retry::Policy::STORE),
        not_before: None,
        damaged: None,
        rebuild_not_before: None,
        corrupt_not_before: None,
    };
    loop {
        w.wait();
        while let Ok(msg) = w.rx.try_recv() {
            w.inbox.take(msg);
        }
        if w.inbox.stopping {
            w.not_before = w.not_before.map(|t| t.min(Instant::now() + STOPPING_PAUSE));
        }
        if let Some(why) = w.damaged.clone().filter(|_| w.may_rebuild_corrupt()) {
            w.rebuild_or_report(RebuildCause::Corrupt(why));
        }
        if !w.inbox.ops.is_empty() && w.not_before.is_none_or(|t| Instant::now() >= t) {
            w.commit();
        }
        w.answer_loads();
        if w.inbox.stopping {
            if w.inbox.ops.is_empty() {
                return;
            }
            if w.retry.failures() > 5 {
                let abandoned = w.inbox.ops.len();
                (w.committed)(Commit { abandoned, ..Commit::default() });
                return;
            }
        }
    }
}

impl<C: FnMut(Commit), L: FnMut(Loaded)> Writer<C, L> {
    /// Waits until there is something to do: a message, the end of a retry pause, or (idle)
    /// the time to look whether the database file is still there.
    pub(super) fn wait(&mut self) {
        if !self.inbox.loads.is_empty() || (self.damaged.is_some() && self.may_rebuild_corrupt()) {
            return;
        }
        let now = Instant::now();
        let (timeout, idle) = match (self.inbox.ops.is_empty(), self.not_before) {
            (false, None) => return,
            (false, Some(t)) if t <= now => return,
            (false, Some(t)) => (t - now, false),
            (true, _) if self.inbox.stopping => return,
            (true, _) => (IDLE_CHECK, true),
        };
        if self.inbox.stopping {
            // Nothing more is coming: only the pause is left to wait.
            std::thread::sleep(timeout);
            return;
        }
        match self.rx.recv_timeout(timeout) {
            Ok(msg) => self.inbox.take(msg),
            Err(RecvTimeoutError::Timeout) if idle && self.store.lost() => {
                self.rebuild_or_report(RebuildCause::Lost);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => self.inbox.stopping = true,
        }
    }

    pub(super) fn may_rebuild(&self) -> bool {
        self.rebuild_not_before.is_none_or(|t| Instant::now() >= t)
    }

    pub(super) fn may_rebuild_corrupt(&self) -> bool {
        self.may_rebuild() && self.corrupt_not_before.is_none_or(|t| Instant::now() >= t)
    }

    /// Rebuilds the database and reports it; a failure is returned (the next try waits
    /// [`REBUILD_PAUSE`]).
    pub(super) fn rebuild(&mut self, cause: RebuildCause) -> Result<(), StoreError> {
        if !self.may_rebuild() {
            return Err(StoreError::Rebuild("an attempt failed moments ago".into()));
        }
        let corrupt = matches!(cause, RebuildCause::Corrupt(_));
        match self.store.rebuild(cause) {
            Ok(rebuilt) => {
                self.damaged = None;
                self.rebuild_not_before = None;
                if corrupt {
                    self.corrupt_not_before = Some(Instant::now() + REBUILD_PAUSE);
                }
                (self.committed)(Commit { rebuilt: Some(rebuilt), ..Commit::default() });
                Ok(())
            }
            Err(e) => {
                self.rebuild_not_before = Some(Instant::now() + REBUILD_PAUSE);
                Err(e)
            }
        }
    }

    /// [`Writer::rebuild`], a failure reported (a storage error, logged).
    pub(super) fn rebuild_or_report(&mut self, cause: RebuildCause) -> bool {
        match self.rebuild(cause) {
            Ok(()) => true,
            Err(e) => {
                (self.committed)(Commit { failed: Some(e), ..Commit::default() });
                false
            }
        }
    }

    /// Commits what is queued, chunk by chunk, oldest first, until it is all in or a chunk fails.
    pub(super) fn commit(&mut self) {
        while !self.inbox.ops.is_empty() {
            let n = self.inbox.chunk();
            match self.apply_chunk(n) {
                Ok((report_seq, skipped)) => {
                    let durable = inserts(self.inbox.ops.range(..n));
                    self.inbox.committed(n);
                    self.retry.reset();
                    self.not_before = None;
                    (self.committed)(Commit { durable, report_seq, skipped, ..Commit::default() });
                }
                Err(e) => return self.failed(e),
            }
        }
    }

    /// Applies the first `n` queued ops in one transaction. On a corrupt page the database is
    /// rebuilt and the chunk applied to the new one; when it cannot be rebuilt now, the chunk
    /// goes in without the changes the damage refuses. A file deleted or replaced under the
    /// database has it recreated before the chunk counts as committed.
    pub(super) fn apply_chunk(&mut self, n: usize) -> Result<(Option<u64>, usize), StoreError> {
        let first = self.store.apply(&self.inbox.ops.make_contiguous()[..n]);
        let applied = match first {
            Ok(report_seq) => (report_seq, 0),
            Err(e) if is_corrupt(&e) => {
                let rebuilt = self.may_rebuild_corrupt() && self.rebuild_or_report(RebuildCause::Corrupt(e.to_string()));
                let ops = &self.inbox.ops.make_contiguous()[..n];
                match if rebuilt { self.store.apply(ops) } else { Err(e) } {
                    Ok(report_seq) => (report_seq, 0),
                    Err(e) if is_corrupt(&e) => {
                        self.damaged.get_or_insert_with(|| e.to_string());
                        self.store.apply_around_damage(ops)?
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            Err(e) => return Err(e.into()),
        };
        // What this chunk wrote went to a file nothing can open again: it is durable once the
        // database is recreated from the open one (the ops stay queued until then; they are
        // idempotent).
        if self.store.lost() {
            self.rebuild(RebuildCause::Lost).map_err(|e| StoreError::Lost(e.to_string()))?;
        }
        Ok(applied)
    }

    /// A chunk failed: the rows not yet visible are made so (delivered from memory), the ops
    /// kept (compacted), and the next attempt waits a growing pause.
    pub(super) fn failed(&mut self, e: StoreError) {
        let full = matches!(&e, StoreError::Sqlite(e) if is_full(e));
        let durable = self.inbox.report_all();
        (self.committed)(Commit { durable, failed: Some(e), ..Commit::default() });
        // Rows inserted and already gone again need never reach the disk: a smaller retry fits
        // where the full one did not (a full disk frees up as rows leave).
        compact(&mut self.inbox.ops);
        self.inbox.reported = self.inbox.ops.len();
        if full {
            self.store.truncate_wal();
        }
        let mut pause = self.retry.next_delay().max(Duration::from_millis(10));
        if self.inbox.stopping {
            pause = pause.min(STOPPING_PAUSE);
        }
        self.not_before = Some(Instant::now() + pause);
    }

    /// Answers the reads asked for. One that meets a corrupt page has the database rebuilt next.
    pub(super) fn answer_loads(&mut self) {
        for (transport, seqs) in std::mem::take(&mut self.inbox.loads) {
            let answer = match self.store.load_bodies(&seqs) {
                Ok(Bodies { found, unreadable }) => {
                    if !unreadable.is_empty() {
                        self.damaged.get_or_insert_with(|| format!("{} row(s) unreadable", unreadable.len()));
                    }
                    Loaded { transport, bodies: found, unreadable, failed: None }
                }
                Err(e) => Loaded { transport, bodies: Vec::new(), unreadable: Vec::new(), failed: Some(e) },
            };
            (self.loaded)(answer);
        }
    }
}

/// Positions of `Update`s that a later op of the same group makes moot (another `Update` or a
/// `Delete` of the same row): one commit writes a row's last state only (a row acknowledged
/// by both transports within a group is one DELETE, not an UPDATE and a DELETE).
pub(super) fn superseded_updates(ops: &[Op]) -> std::collections::HashSet<usize> {
    let mut later = std::collections::HashSet::new();
    let mut moot = std::collections::HashSet::new();
    for (i, op) in ops.iter().enumerate().rev() {
        match op {
            Op::Update { seq, .. } if !later.insert(*seq) => {
                moot.insert(i);
            }
            Op::Delete(seq) => {
                later.insert(*seq);
            }
            // An insert is never moot, and what came before it is another row's.
            Op::Insert(r) => {
                later.remove(&r.seq);
            }
            _ => {}
        }
    }
    moot
}

/// Drops every op of rows whose insert and delete are both still queued.
pub(super) fn compact(ops: &mut VecDeque<Op>) {
    use std::collections::HashSet;
    let inserted: HashSet<u64> = inserts(ops.iter()).into_iter().collect();
    let gone: HashSet<u64> = ops.iter().filter_map(|o| if let Op::Delete(s) = o { Some(*s) } else { None }).filter(|s| inserted.contains(s)).collect();
    if gone.is_empty() {
        return;
    }
    ops.retain(|o| match o {
        Op::Insert(r) => !gone.contains(&r.seq),
        Op::Update { seq, .. } | Op::Delete(seq) => !gone.contains(seq),
        Op::DeadLetter(_) | Op::RemoveDeadLetter(_) | Op::SaveConfig(_) | Op::SaveFetchState(_) | Op::SaveMeta { .. } | Op::Checkpoint(_) => true,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunk_ends_where_a_message_does_until_a_commit_failed() {
        let mut inbox = Inbox::default();
        for n in [3, 2_000, 5] {
            inbox.take(Msg::Ops((0..n).map(Op::Delete).collect()));
        }
        assert_eq!(inbox.chunk(), 2_003, "one sendLocations call is committed whole");
        assert_eq!(inbox.report_all().len(), 0);
        assert_eq!(inbox.chunk(), CHUNK_OPS, "after a failure: bounded");
        inbox.committed(CHUNK_OPS);
        inbox.take(Msg::Ops((0..10).map(Op::Delete).collect()));
        assert_eq!((inbox.ops.len(), inbox.reported), (1_018, 1_008));
        assert_eq!(inbox.chunk(), CHUNK_OPS);
        inbox.committed(CHUNK_OPS);
        assert_eq!(inbox.chunk(), 18, "up to the end of the message past what was reported");
    }
}
