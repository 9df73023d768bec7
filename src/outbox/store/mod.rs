//! The durable half of the outbox: SQLite (bundled) in WAL mode with `synchronous=NORMAL`,
//! written by one `dualpub-store` thread per publisher with group commit, so no app thread
//! ever waits on the disk.
//!
//! Every change to the in-memory outbox is sent here as an [`Op`], in order, under the outbox
//! lock; the writer applies whatever has queued up in bounded transactions, oldest first, and
//! then reports which new rows are durable. A row becomes visible to the transports only once
//! it is durable (or once the disk has failed, see [`Commit::failed`]).
//!
//! **A hostile disk.** A database SQLite calls corrupt is salvaged into a fresh file by key
//! ranges, stepping over the unreadable pages ([`salvage_into`]): at start-up (the damaged file
//! moved aside) and while running ([`Store::rebuild`]), when a read or a commit meets a corrupt
//! page or when the file was deleted or replaced under the open database (its device and inode
//! no longer those at the path). A read-back meeting an unreadable row answers the rows it could
//! read and names the others ([`Loaded::unreadable`]). A failed commit (a full disk) waits its
//! retry pause, then commits the backlog in bounded chunks, oldest first, so what fits is durable.
//!
//! Here: what the outbox and the store exchange ([`Op`], [`StoredRow`], [`Commit`]…) and the
//! reads and writes of an open [`Store`]. `schema.rs` creates and upgrades the database,
//! `open.rs` opens it (or moves a corrupt one aside), `salvage.rs` carries what is readable of a
//! damaged one into a fresh one, and `writer.rs` is the `dualpub-store` thread.

mod open;
mod salvage;
mod schema;
mod writer;

pub use open::*;
pub use salvage::*;
pub use schema::*;
pub use writer::*;

use crate::outbox::{Delivery, Transport};
use rusqlite::types::Value;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A row as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRow {
    /// Acceptance order.
    pub seq: u64,
    /// The eventId (shared with the outbox's copy: a queued insert holds no second one).
    pub event_id: Arc<str>,
    /// The wire JSON (shared with the outbox's copy).
    pub payload: Arc<[u8]>,
    /// The location's timestamp.
    pub timestamp_ms: i64,
    /// Wall-clock acceptance time.
    pub accepted_at_ms: i64,
    /// The run clock at acceptance (`None`: written before the run clock existed).
    pub observed_at_ms: Option<i64>,
    /// MQTT state (`Pending`, `Acked`, `NotOwed` or `DeadLettered`; in flight is stored as pending).
    pub mqtt: Delivery,
    /// Pub/Sub state.
    pub pubsub: Delivery,
    /// The wire `seq` in the payload (`None`: the payload has none, or the row was read from a
    /// database that did not keep it; the payload says then).
    pub wire_seq: Option<u64>,
}

/// What the outbox keeps in memory of a stored row at start-up: everything but the eventId and
/// the payload, which stay on disk until a transport is about to send them ([`Store::load_bodies`]).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredIndex {
    /// Acceptance order.
    pub seq: u64,
    /// The location's timestamp.
    pub timestamp_ms: i64,
    /// The payload's length in bytes (what a batch's size is counted in).
    pub len: u32,
    /// The run clock at acceptance (`None`: written before the run clock existed).
    pub observed_at_ms: Option<i64>,
    /// MQTT state.
    pub mqtt: Delivery,
    /// Pub/Sub state.
    pub pubsub: Delivery,
    /// The wire `seq` in the payload (`None`: the payload has none).
    pub wire_seq: Option<u64>,
}

/// A stored row's eventId and payload, read back for a transport.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredBody {
    /// Acceptance order.
    pub seq: u64,
    /// The eventId.
    pub event_id: String,
    /// The wire JSON.
    pub payload: Vec<u8>,
}

/// What a read-back found ([`Store::load_bodies`]).
#[derive(Debug, Default)]
pub struct Bodies {
    /// The rows still stored and readable, oldest first.
    pub found: Vec<StoredBody>,
    /// Rows on a corrupt page: they cannot be read, now or later.
    pub unreadable: Vec<u64>,
}

/// A stored dead letter.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredDeadLetter {
    /// Id, assigned by the outbox (unique per data directory).
    pub id: i64,
    /// The eventId.
    pub event_id: String,
    /// The wire JSON.
    pub payload: Vec<u8>,
    /// The location's timestamp.
    pub timestamp_ms: i64,
    /// Which transport refused it.
    pub transport: Transport,
    /// What the server said.
    pub error: String,
    /// When it was dead-lettered, on the run clock (`None`: before the run clock existed).
    pub observed_at_ms: Option<i64>,
}

/// One change to persist, in the order the outbox made it.
#[derive(Debug, Clone)]
pub enum Op {
    /// A newly accepted location.
    Insert(StoredRow),
    /// New delivery states for a row still owed somewhere.
    Update {
        /// The row.
        seq: u64,
        /// Its MQTT state.
        mqtt: Delivery,
        /// Its Pub/Sub state.
        pubsub: Delivery,
    },
    /// The row left the outbox.
    Delete(u64),
    /// A message refused as invalid.
    DeadLetter(StoredDeadLetter),
    /// A dead letter was re-queued through the API.
    RemoveDeadLetter(i64),
    /// The migration config now in force (the last known good), applied at the next start
    /// before any network call.
    SaveConfig(StoredConfig),
    /// The config fetcher's state (ETag, last attempt, backoff) as JSON, so a restart neither
    /// refetches too early nor forgets a backoff.
    SaveFetchState(String),
    /// A small setting kept across runs in the `meta` table (e.g. what a Pub/Sub endpoint
    /// showed of gzip, `crate::transport::gzip`).
    SaveMeta {
        /// The key.
        key: String,
        /// Its value.
        value: i64,
    },
    /// Report `reportSeq` was cut: commit (the reports' tally is written with every commit), and
    /// once committed say so ([`Commit::report_seq`]), so the report goes only after every
    /// location accepted before it is on disk too.
    Checkpoint(u64),
}

/// The last known good migration config.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredConfig {
    /// The document (`MigrationConfig::to_json`).
    pub json: String,
    /// Where it came from (`ConfigSource` label).
    pub source: String,
    /// When it was applied.
    pub applied_at_ms: i64,
}

/// What the writer reports after each group commit (or after a rebuild of the database).
#[derive(Debug, Default)]
pub struct Commit {
    /// Sequence numbers of rows inserted by this commit (now durable).
    pub durable: Vec<u64>,
    /// The commit failed (disk full, I/O error, the database file lost and not recreated yet):
    /// the rows of `durable` are *not* durable; the ops are kept and retried.
    pub failed: Option<StoreError>,
    /// The writer gives up at shutdown: this many changes could not be persisted.
    pub abandoned: usize,
    /// The newest report checkpoint in this commit: reports up to this `reportSeq` may go.
    pub report_seq: Option<u64>,
    /// Changes to existing rows, dead letters or settings the damaged database could not take
    /// (a corrupt page) and that were left out so the rest could commit; never a new location.
    pub skipped: usize,
    /// The database was rebuilt into a fresh file (nothing else in this report).
    pub rebuilt: Option<Rebuilt>,
}

/// Why the database was rebuilt while running.
#[derive(Debug, Clone, PartialEq)]
pub enum RebuildCause {
    /// SQLite found a corrupt page (this is what it said).
    Corrupt(String),
    /// The file (or its directory) was deleted or replaced under the open database: SQLite
    /// went on writing to a file nothing can open again.
    Lost,
}

/// A database rebuilt while running: what could be read of the old one is in a fresh file at
/// the same path.
#[derive(Debug)]
pub struct Rebuilt {
    /// Why.
    pub cause: RebuildCause,
    /// Where the damaged file was moved (a corrupt one; or whatever had taken the path).
    pub moved_aside: Option<PathBuf>,
    /// What was carried over, and the key ranges that could not be read.
    pub salvage: Salvage,
}

impl Rebuilt {
    /// A sentence for the log.
    pub fn describe(&self) -> String {
        let what = match &self.cause {
            RebuildCause::Corrupt(why) => format!("the outbox database is damaged ({why}); rebuilt it"),
            RebuildCause::Lost => "the outbox database was deleted or replaced while in use; recreated it".into(),
        };
        let aside = self.moved_aside.as_ref().map(|p| format!("; the old file moved aside to {}", p.display())).unwrap_or_default();
        format!("{what} with {}{aside}", self.salvage.describe())
    }
}

/// What a salvage carried from a damaged (or lost) database into a fresh one.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Salvage {
    /// Outbox rows carried over.
    pub rows: u64,
    /// Outbox keys (`seq`s) where nothing could be read, as ranges `from..end`: a row there, if
    /// there was one, was not carried over.
    pub lost_rows: Vec<(u64, u64)>,
    /// Outbox rows at most lost: the keys missing between the readable rows around each
    /// unreadable part (an unreadable part with nothing readable after it is not counted).
    pub rows_lost: u64,
    /// Dead letters carried over.
    pub dead_letters: u64,
    /// Dead-letter ids where nothing could be read, as ranges `from..end`.
    pub lost_dead_letters: Vec<(i64, i64)>,
    /// Tables not carried over whole.
    pub damaged: Vec<&'static str>,
    /// The salvage stopped before the end (the fresh database could not take more: this says
    /// why); what was left is only in the old file.
    pub stopped: Option<String>,
}

impl Salvage {
    /// A phrase for the log: "N location(s) and M dead letter(s) still readable, …".
    pub fn describe(&self) -> String {
        let mut text = format!("the {} location(s) and {} dead letter(s) still readable in it", self.rows, self.dead_letters);
        if !self.damaged.is_empty() {
            text += &format!("; unreadable parts in {}", self.damaged.join(", "));
            if self.rows_lost > 0 {
                text += &format!(" (at most {} location(s) lost)", self.rows_lost);
            }
        }
        if let Some(why) = &self.stopped {
            text += &format!("; stopped early ({why}), the rest stays in the old file");
        }
        text
    }
}

/// Gives the reports' tally (JSON) to write with every commit (`None`: nothing to write). It is
/// called on the writer thread inside the open transaction.
pub type TallySource = Box<dyn Fn() -> Option<String> + Send>;

/// Why the store could not be opened, or could not go on writing.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another publisher (in this or another process) holds the database.
    #[error("the data directory is in use by another publisher: {}", .0.display())]
    Busy(PathBuf),
    /// The directory cannot be created or written.
    #[error("cannot use the data directory ({what}): {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The operating system's answer.
        source: std::io::Error,
    },
    /// SQLite failed.
    #[error("storage error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The database file was deleted or replaced under the open database and could not be
    /// recreated yet (this says why): commits reach no file that survives the process.
    #[error("the outbox database was deleted or replaced while in use and cannot be recreated yet ({0})")]
    Lost(String),
    /// A rebuild could not carry everything readable into the fresh file (this says why); the
    /// old file stays in use.
    #[error("cannot rebuild the outbox database: {0}")]
    Rebuild(String),
}

impl StoreError {
    fn io(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> StoreError {
        let what = what.to_string();
        move |source| StoreError::Io { what, source }
    }
}

/// What opening found.
#[derive(Debug, Default)]
pub struct OpenReport {
    /// A corrupt or unreadable database was moved aside to this path and a fresh one created.
    pub moved_aside: Option<PathBuf>,
    /// Why it was moved aside.
    pub reason: Option<String>,
    /// The file was written by a newer SDK (this schema version); it is read as this build's.
    pub newer_schema: Option<i32>,
    /// No database could be created or written (a full disk, a read-only file system, no
    /// permission: this says why): the outbox lives in an in-memory database for this run.
    pub memory_only: Option<String>,
    /// What was read back from the corrupt database (moved aside) into the fresh one.
    pub salvage: Salvage,
}

/// The SQLite store.
pub struct Store {
    conn: Connection,
    /// The database file (`None`: in memory).
    path: Option<PathBuf>,
    /// The identity of the file opened at `path`.
    identity: Option<FileId>,
    /// `maxStorageBytes`.
    max_bytes: Option<u64>,
    /// A rebuilt file at this path could not be opened yet: it is, before anything else.
    reopen: Option<PathBuf>,
    /// Recorded with every commit, when set.
    run_clock: Option<crate::clock::RunClock>,
    /// The schema version the file had when opened.
    found_schema: i32,
    /// Written with every commit, when set.
    tally: Option<TallySource>,
}

impl Store {
    /// Every stored row, oldest first.
    #[cfg(test)]
    pub fn load_rows(&self) -> rusqlite::Result<Vec<StoredRow>> {
        let mut stmt = self
            .conn
            .prepare("SELECT seq, event_id, payload, timestamp_ms, accepted_at_ms, mqtt, pubsub, observed_at_ms, wire_seq FROM outbox ORDER BY seq")?;
        let rows = stmt.query_map([], |r| {
            Ok(StoredRow {
                seq: r.get::<_, i64>(0)? as u64,
                event_id: r.get::<_, String>(1)?.into(),
                payload: r.get::<_, Vec<u8>>(2)?.into(),
                timestamp_ms: r.get(3)?,
                accepted_at_ms: r.get(4)?,
                mqtt: delivery(r.get(5)?),
                pubsub: delivery(r.get(6)?),
                observed_at_ms: r.get(7)?,
                wire_seq: r.get::<_, Option<i64>>(8)?.map(|s| s as u64),
            })
        })?;
        rows.collect()
    }

    /// Every stored row without its eventId and payload, oldest first, handed to `each` one at
    /// a time (a 100,000-row backlog is never a vector in memory); returns how many. A row
    /// without a stored wire seq (written by an earlier build) has its payload read for it.
    pub fn load_index(&self, mut each: impl FnMut(StoredIndex)) -> rusqlite::Result<u64> {
        let mut stmt = self.conn.prepare(
            "SELECT seq, timestamp_ms, length(payload), mqtt, pubsub, observed_at_ms, wire_seq, CASE WHEN wire_seq IS NULL THEN payload END
             FROM outbox ORDER BY seq",
        )?;
        let mut rows = stmt.query([])?;
        let mut n = 0;
        while let Some(r) = rows.next()? {
            let wire_seq = match r.get::<_, Option<i64>>(6)? {
                Some(seq) => u64::try_from(seq).ok(),
                None => match r.get_ref(7)? {
                    rusqlite::types::ValueRef::Blob(payload) | rusqlite::types::ValueRef::Text(payload) => crate::wire::seq_of(payload),
                    _ => None,
                },
            };
            each(StoredIndex {
                seq: r.get::<_, i64>(0)? as u64,
                timestamp_ms: r.get(1)?,
                len: u32::try_from(r.get::<_, i64>(2)?).unwrap_or(u32::MAX),
                mqtt: delivery(r.get(3)?),
                pubsub: delivery(r.get(4)?),
                observed_at_ms: r.get(5)?,
                wire_seq,
            });
            n += 1;
        }
        Ok(n)
    }

    /// The payload of the newest stored row, if any.
    pub fn newest_payload(&self) -> rusqlite::Result<Option<Vec<u8>>> {
        self.conn.query_row("SELECT payload FROM outbox ORDER BY seq DESC LIMIT 1", [], |r| r.get(0)).optional()
    }

    /// The eventIds and payloads of rows `seqs` (those still stored), for a transport about to
    /// send them, read row by row: a row on a corrupt page is named in [`Bodies::unreadable`]
    /// and the others are read all the same. Fails (for a later try) on any other error.
    pub fn load_bodies(&mut self, seqs: &[u64]) -> rusqlite::Result<Bodies> {
        self.ensure_open()?;
        let mut stmt = self.conn.prepare_cached("SELECT event_id, payload FROM outbox WHERE seq = ?1")?;
        let mut out = Bodies { found: Vec::with_capacity(seqs.len()), unreadable: Vec::new() };
        for &seq in seqs {
            match stmt.query_row(params![seq as i64], |r| Ok(StoredBody { seq, event_id: r.get(0)?, payload: r.get(1)? })).optional() {
                Ok(body) => out.found.extend(body),
                Err(e) if is_corrupt(&e) => out.unreadable.push(seq),
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// The time the SDK observed on this directory in earlier runs (see `RunClock`).
    pub fn load_observed_ms(&self) -> rusqlite::Result<i64> {
        let v: Option<i64> = self.conn.query_row("SELECT value FROM meta WHERE key = 'observed_ms'", [], |r| r.get(0)).optional()?;
        Ok(v.unwrap_or(0))
    }

    /// A value [`Op::SaveMeta`] kept, if any.
    pub fn load_meta(&self, key: &str) -> rusqlite::Result<Option<i64>> {
        self.conn.query_row("SELECT value FROM meta WHERE key = ?1", params![key], |r| r.get(0)).optional()
    }

    /// From now on every commit also records the run clock's time.
    pub fn record_run_clock(&mut self, clock: crate::clock::RunClock) {
        self.run_clock = Some(clock);
    }

    /// Every dead letter, oldest first.
    /// The newest `keep` dead letters, oldest first; older ones are deleted. Returns them and how
    /// many were deleted (so a list grown by an earlier build never has to fit in memory).
    pub fn load_dead_letters(&self, keep: usize) -> rusqlite::Result<(Vec<StoredDeadLetter>, u64)> {
        let total: i64 = self.conn.query_row("SELECT COUNT(*) FROM dead_letters", [], |r| r.get(0))?;
        let excess = (total as u64).saturating_sub(keep as u64);
        if excess > 0 {
            self.conn.execute("DELETE FROM dead_letters WHERE id IN (SELECT id FROM dead_letters ORDER BY id LIMIT ?1)", params![excess as i64])?;
        }
        let mut stmt = self.conn.prepare("SELECT id, event_id, payload, timestamp_ms, transport, error, observed_at_ms FROM dead_letters ORDER BY id")?;
        let rows = stmt.query_map([], |r| {
            Ok(StoredDeadLetter {
                id: r.get(0)?,
                event_id: r.get(1)?,
                payload: r.get(2)?,
                timestamp_ms: r.get(3)?,
                transport: if r.get::<_, i64>(4)? == 0 { Transport::Mqtt } else { Transport::PubSub },
                error: r.get(5)?,
                observed_at_ms: r.get(6)?,
            })
        })?;
        Ok((rows.collect::<rusqlite::Result<_>>()?, excess))
    }

    /// The last known good migration config, if one was ever applied.
    pub fn load_config(&self) -> rusqlite::Result<Option<StoredConfig>> {
        use rusqlite::OptionalExtension;
        self.conn
            .query_row("SELECT json, source, applied_at_ms FROM config WHERE id = 1", [], |r| {
                Ok(StoredConfig { json: r.get(0)?, source: r.get(1)?, applied_at_ms: r.get(2)? })
            })
            .optional()
    }

    /// The config fetcher's saved state (JSON), if it ever saved one.
    pub fn load_fetch_state(&self) -> rusqlite::Result<Option<String>> {
        use rusqlite::OptionalExtension;
        self.conn.query_row("SELECT json FROM fetch_state WHERE id = 1", [], |r| r.get(0)).optional()
    }

    /// The highest sequence number ever stored (rows or none).
    pub fn max_seq(&self) -> rusqlite::Result<u64> {
        self.conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM outbox", [], |r| r.get::<_, i64>(0)).map(|v| v as u64)
    }

    /// Applies `ops` in one transaction (with the tally, when recorded); returns the newest
    /// report checkpoint among them.
    pub fn apply(&mut self, ops: &[Op]) -> rusqlite::Result<Option<u64>> {
        self.apply_ops(ops, true)
    }

    /// [`Store::apply`] on a database with a corrupt page that cannot be rebuilt now: after a
    /// corruption error SQLite fails everything else in that transaction, so the ops are split
    /// in halves, each its own transaction, down to the single ops the damage refuses, which are
    /// left out (the run clock and tally too, when they are what fails); returns how many were.
    /// A new location's insert refused that way fails the whole (the halves already in were
    /// committed; applying them again changes nothing), so no location is ever reported durable
    /// that is not.
    pub fn apply_around_damage(&mut self, ops: &[Op]) -> rusqlite::Result<(Option<u64>, usize)> {
        let extras = match self.apply_ops(&[], true) {
            Ok(_) => true,
            Err(e) if is_corrupt(&e) => false,
            Err(e) => return Err(e),
        };
        let mut done = (None, usize::from(!extras));
        self.apply_split(ops, extras, &mut done)?;
        Ok(done)
    }

    fn apply_split(&mut self, ops: &[Op], extras: bool, done: &mut (Option<u64>, usize)) -> rusqlite::Result<()> {
        if ops.is_empty() {
            return Ok(());
        }
        match self.apply_ops(ops, extras) {
            Ok(checkpoint) => {
                done.0 = done.0.max(checkpoint);
                Ok(())
            }
            Err(e) if is_corrupt(&e) && ops.len() == 1 && !matches!(ops[0], Op::Insert(_)) => {
                done.1 += 1;
                Ok(())
            }
            Err(e) if is_corrupt(&e) && ops.len() > 1 => {
                let (first, rest) = ops.split_at(ops.len() / 2);
                self.apply_split(first, extras, done)?;
                self.apply_split(rest, extras, done)
            }
            Err(e) => Err(e),
        }
    }

    /// Applies `ops` in one transaction, with the run clock and the tally when `extras`.
    fn apply_ops(&mut self, ops: &[Op], extras: bool) -> rusqlite::Result<Option<u64>> {
        self.ensure_open()?;
        let mut checkpoint = None;
        let tx = self.conn.transaction()?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT OR REPLACE INTO outbox (seq, event_id, payload, timestamp_ms, accepted_at_ms, mqtt, pubsub, observed_at_ms, wire_seq)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?;
            let mut update = tx.prepare_cached("UPDATE outbox SET mqtt = ?2, pubsub = ?3 WHERE seq = ?1")?;
            let mut delete = tx.prepare_cached("DELETE FROM outbox WHERE seq = ?1")?;
            let superseded = superseded_updates(ops);
            for (i, op) in ops.iter().enumerate() {
                match op {
                    Op::Insert(r) => {
                        insert.execute(params![
                            r.seq as i64,
                            &*r.event_id,
                            &*r.payload,
                            r.timestamp_ms,
                            r.accepted_at_ms,
                            code(r.mqtt),
                            code(r.pubsub),
                            r.observed_at_ms,
                            r.wire_seq.and_then(|s| i64::try_from(s).ok())
                        ])?;
                    }
                    Op::Update { .. } if superseded.contains(&i) => {}
                    Op::Update { seq, mqtt, pubsub } => {
                        update.execute(params![*seq as i64, code(*mqtt), code(*pubsub)])?;
                    }
                    Op::Delete(seq) => {
                        delete.execute(params![*seq as i64])?;
                    }
                    Op::DeadLetter(d) => {
                        tx.execute(
                            "INSERT OR REPLACE INTO dead_letters (id, event_id, payload, timestamp_ms, transport, error, observed_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                            params![d.id, d.event_id, d.payload, d.timestamp_ms, transport_code(d.transport), d.error, d.observed_at_ms],
                        )?;
                    }
                    Op::RemoveDeadLetter(id) => {
                        tx.execute("DELETE FROM dead_letters WHERE id = ?1", params![*id])?;
                    }
                    Op::SaveConfig(c) => {
                        tx.execute(
                            "INSERT OR REPLACE INTO config (id, json, source, applied_at_ms) VALUES (1, ?1, ?2, ?3)",
                            params![c.json, c.source, c.applied_at_ms],
                        )?;
                    }
                    Op::SaveFetchState(json) => {
                        tx.execute("INSERT OR REPLACE INTO fetch_state (id, json) VALUES (1, ?1)", params![json])?;
                    }
                    Op::SaveMeta { key, value } => {
                        tx.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)", params![key, value])?;
                    }
                    Op::Checkpoint(seq) => checkpoint = checkpoint.max(Some(*seq)),
                }
            }
            if let Some(clock) = self.run_clock.as_ref().filter(|_| extras) {
                tx.prepare_cached("INSERT OR REPLACE INTO meta (key, value) VALUES ('observed_ms', ?1)")?.execute(params![clock.now_ms()])?;
            }
            // Read now, after every op above was queued: it holds at least every reportSeq they name.
            if let Some(json) = self.tally.as_ref().filter(|_| extras).and_then(|tally| tally()) {
                tx.prepare_cached("INSERT OR REPLACE INTO report_state (id, json) VALUES (1, ?1)")?.execute(params![json])?;
            }
        }
        tx.commit()?;
        Ok(checkpoint)
    }

    /// After a failed commit on a full disk: checkpoints the WAL and truncates it to nothing, so
    /// the space the failed transaction took is free for the next (smaller) one.
    fn truncate_wal(&self) {
        let _ = self.conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
    }

    /// Whether the file at the path is no longer the one open (deleted, or replaced), so
    /// nothing written now would survive the process.
    pub fn lost(&self) -> bool {
        let (Some(path), Some(id), None) = (&self.path, self.identity, &self.reopen) else { return false };
        match file_id(path) {
            Ok(now) => now != Some(id),
            Err(e) => e.kind() == std::io::ErrorKind::NotFound,
        }
    }

    /// Opens the rebuilt file a [`Store::rebuild`] could not open at once.
    fn ensure_open(&mut self) -> rusqlite::Result<()> {
        if let Some(path) = self.reopen.clone() {
            let opened = Store::open_file(&path, self.max_bytes)?;
            (self.conn, self.identity, self.reopen) = (opened.conn, opened.identity, None);
        }
        Ok(())
    }

    /// Rebuilds the database while running: everything readable through the open connection
    /// (which still reads a file deleted under it) is salvaged into a fresh file, which then
    /// takes the path (the directory recreated if it went; a damaged file, or whatever took its
    /// place, moved aside). Nothing changes unless the salvage carried everything it could read.
    pub fn rebuild(&mut self, cause: RebuildCause) -> Result<Rebuilt, StoreError> {
        let Some(path) = self.path.clone() else { return Err(StoreError::Rebuild("the outbox is in memory".into())) };
        self.ensure_open()?;
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        private_dir(&dir).map_err(StoreError::io(dir.display()))?;
        let stamp = crate::clock::now_ms();
        let fresh_path = dir.join(format!("{DB_FILE}.rebuild-{stamp}"));
        remove_database(&fresh_path);
        private_file(&fresh_path).map_err(StoreError::io(fresh_path.display()))?;
        let salvage = {
            let fresh = match Store::open_file(&fresh_path, self.max_bytes) {
                Ok(fresh) => fresh,
                Err(e) => {
                    remove_database(&fresh_path);
                    return Err(StoreError::Rebuild(e.to_string()));
                }
            };
            let salvage = salvage_into(&self.conn, &fresh.conn);
            drop(fresh); // closed: its WAL checkpointed into it
            if let Some(why) = &salvage.stopped {
                remove_database(&fresh_path);
                return Err(StoreError::Rebuild(why.clone()));
            }
            salvage
        };
        // The old connection closes first: closing removes its WAL by name, which must not be
        // the new file's yet.
        drop(std::mem::replace(&mut self.conn, Connection::open_in_memory()?));
        let moved_aside = match path.exists() {
            true => {
                let aside = dir.join(format!("{DB_FILE}.corrupt-{stamp}"));
                move_aside(&path, &aside).map(|()| aside).ok()
            }
            false => None,
        };
        let wal = PathBuf::from(format!("{}-wal", fresh_path.display()));
        let _ = std::fs::remove_file(format!("{}-shm", fresh_path.display()));
        let _ = std::fs::remove_file(format!("{}-wal", path.display()));
        let placed = std::fs::rename(&fresh_path, &path);
        if placed.is_ok() && wal.exists() {
            let _ = std::fs::rename(&wal, format!("{}-wal", path.display()));
        }
        // Everything is in the fresh file now (at the path, unless the rename failed: then it is
        // used where it is, and a later start adopts it). If it cannot be opened this moment,
        // it is before the next commit or read.
        if let Err(e) = placed {
            self.path = Some(fresh_path.clone());
            self.reopen = Some(fresh_path);
            let _ = self.ensure_open();
            return Err(StoreError::io("placing the rebuilt outbox database")(e));
        }
        self.reopen = Some(path);
        self.identity = None;
        let _ = self.ensure_open();
        Ok(Rebuilt { cause, moved_aside, salvage })
    }

    /// From now on every commit also writes the reports' tally from `source`.
    pub fn record_tally(&mut self, source: TallySource) {
        self.tally = Some(source);
    }

    /// The reports' tally (JSON), if a commit ever wrote one.
    pub fn load_tally(&self) -> rusqlite::Result<Option<String>> {
        self.conn.query_row("SELECT json FROM report_state WHERE id = 1", [], |r| r.get(0)).optional()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(seq: u64) -> StoredRow {
        StoredRow {
            seq,
            event_id: format!("e{seq}").into(),
            payload: b"{}".to_vec().into(),
            timestamp_ms: 1,
            accepted_at_ms: 2,
            mqtt: Delivery::Pending,
            pubsub: Delivery::NotOwed,
            observed_at_ms: Some(3),
            wire_seq: Some(seq + 100),
        }
    }

    #[test]
    fn a_group_writes_each_row_s_last_state_only() {
        let up = |seq, mqtt| Op::Update { seq, mqtt, pubsub: Delivery::Pending };
        let ops = vec![Op::Insert(row(1)), up(1, Delivery::InFlight), up(1, Delivery::Acked), up(2, Delivery::Acked), Op::Delete(2), up(3, Delivery::Acked)];
        assert_eq!(superseded_updates(&ops), [1, 3].into_iter().collect(), "the first update of 1, and 2's update before its delete");
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = Store::open(dir.path(), None).unwrap();
        s.apply(&[Op::Insert(row(2)), Op::Insert(row(3))]).unwrap();
        s.apply(&ops).unwrap();
        let states: Vec<(u64, Delivery)> = s.load_rows().unwrap().iter().map(|r| (r.seq, r.mqtt)).collect();
        assert_eq!(states, [(1, Delivery::Acked), (3, Delivery::Acked)]);
    }

    #[test]
    fn rows_survive_reopening_and_settle_as_told() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut s, report) = Store::open(dir.path(), None).unwrap();
            assert!(report.moved_aside.is_none());
            let ops = vec![
                Op::Insert(row(1)),
                Op::Insert(row(2)),
                Op::Insert(row(3)),
                Op::Update { seq: 2, mqtt: Delivery::Acked, pubsub: Delivery::Pending },
                Op::Delete(3),
                Op::DeadLetter(StoredDeadLetter {
                    id: 7,
                    event_id: "e9".into(),
                    payload: b"x".to_vec(),
                    timestamp_ms: 1,
                    transport: Transport::PubSub,
                    error: "400".into(),
                    observed_at_ms: Some(4),
                }),
            ];
            s.apply(&ops).unwrap();
        }
        let (s, _) = Store::open(dir.path(), None).unwrap();
        let rows = s.load_rows().unwrap();
        assert_eq!(rows.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!((rows[1].mqtt, rows[1].pubsub), (Delivery::Acked, Delivery::Pending));
        let (dl, _) = s.load_dead_letters(usize::MAX).unwrap();
        assert_eq!((dl[0].id, dl[0].event_id.as_str(), dl[0].transport), (7, "e9", Transport::PubSub));
        assert_eq!(s.max_seq().unwrap(), 2);
        assert_eq!(s.load_config().unwrap(), None);
    }

    #[test]
    fn the_last_config_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut s, _) = Store::open(dir.path(), None).unwrap();
            for v in 1..=2 {
                let c = StoredConfig { json: format!("{{\"version\": {v}}}"), source: "app".into(), applied_at_ms: v };
                s.apply(&[Op::SaveConfig(c)]).unwrap();
            }
        }
        {
            let (mut s, _) = Store::open(dir.path(), None).unwrap();
            assert_eq!(s.load_fetch_state().unwrap(), None);
            s.apply(&[Op::SaveFetchState("{\"etag\":\"a\"}".into()), Op::SaveFetchState("{\"etag\":\"b\"}".into())]).unwrap();
        }
        let (s, _) = Store::open(dir.path(), None).unwrap();
        assert_eq!(s.load_config().unwrap().unwrap().json, "{\"version\": 2}");
        assert_eq!(s.load_fetch_state().unwrap().as_deref(), Some("{\"etag\":\"b\"}"));
    }

    /// A data directory as a build with schema `version` left it, then `sql` run on it.
    fn directory_at_schema(version: usize, sql: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let c = Connection::open(dir.path().join(DB_FILE)).unwrap();
        for ddl in &MIGRATIONS[..version] {
            c.execute_batch(ddl).unwrap();
        }
        c.execute_batch(&format!("PRAGMA user_version = {version}; {sql}")).unwrap();
        dir
    }

    #[test]
    fn an_older_schema_is_upgraded_in_place() {
        let dir = directory_at_schema(2, "INSERT INTO config VALUES (1, '{\"version\": 9}', 'fetched', 5);");
        let (mut s, report) = Store::open(dir.path(), None).unwrap();
        assert_eq!(report.moved_aside, None);
        assert_eq!(s.conn.query_row("PRAGMA user_version", [], |r| r.get::<_, i32>(0)).unwrap(), SCHEMA_VERSION);
        assert_eq!(s.load_config().unwrap().unwrap().json, "{\"version\": 9}");
        s.apply(&[Op::SaveFetchState("{}".into())]).unwrap();
        assert_eq!(s.load_fetch_state().unwrap().as_deref(), Some("{}"));
    }

    #[test]
    fn a_schema_3_directory_with_rows_and_dead_letters_is_upgraded_and_keeps_them() {
        let dir = directory_at_schema(
            3,
            "INSERT INTO outbox VALUES (1, 'e1', X'7B7D', 1, 2, 1, 0);
             INSERT INTO dead_letters VALUES (4, 'e4', X'7B7D', 1, 1, 'HTTP 400');",
        );
        let (s, _) = Store::open(dir.path(), None).unwrap();
        let rows = s.load_rows().unwrap();
        assert_eq!((rows.len(), rows[0].observed_at_ms), (1, None), "kept; no run-clock time yet");
        let (letters, dropped) = s.load_dead_letters(10).unwrap();
        assert_eq!((letters.len(), letters[0].observed_at_ms, dropped), (1, None, 0));
        assert_eq!(s.load_observed_ms().unwrap(), 0);
    }

    #[test]
    fn a_row_an_earlier_build_wrote_gets_its_wire_seq_from_its_payload() {
        // Schema 6 kept no wire seq. Its rows: a version 2 payload, a version 1 payload (no seq),
        // bytes that are not JSON.
        let dir = directory_at_schema(
            6,
            r#"INSERT INTO outbox VALUES (1, 'e1', CAST('{"eventId":"e1","deviceId":"d","latitude":1.0,"longitude":2.0,"timestamp":5,"schemaVersion":2,"seq":42,"route":"both","cfg":3}' AS BLOB), 1, 2, 1, 0, 3);
               INSERT INTO outbox VALUES (2, 'e2', CAST('{"eventId":"e2","deviceId":"d","latitude":1.0,"longitude":2.0,"timestamp":5,"schemaVersion":1}' AS BLOB), 1, 2, 1, 0, 3);
               INSERT INTO outbox VALUES (3, 'e3', X'00FF', 1, 2, 1, 0, 3);"#,
        );
        let (mut s, _) = Store::open(dir.path(), None).unwrap();
        // This build stores it with the row: the payload is not read for it.
        s.apply(&[Op::Insert(StoredRow { seq: 4, payload: b"{\"seq\":1}".to_vec().into(), wire_seq: Some(43), ..row(4) })]).unwrap();
        let mut got = Vec::new();
        s.load_index(|r| got.push((r.seq, r.wire_seq))).unwrap();
        assert_eq!(got, [(1, Some(42)), (2, None), (3, None), (4, Some(43))]);
        assert_eq!(s.load_rows().unwrap().iter().map(|r| r.wire_seq).collect::<Vec<_>>(), [None, None, None, Some(43)], "the old rows stay as written");
    }

    #[test]
    fn a_step_never_fails_on_a_column_an_earlier_build_added() {
        // Schema 4 as a development build wrote it: with step 5's column already there.
        let dir = directory_at_schema(4, "ALTER TABLE dead_letters ADD COLUMN observed_at_ms INTEGER;");
        let (s, report) = Store::open(dir.path(), None).unwrap();
        assert_eq!(report.moved_aside, None);
        assert_eq!(s.conn.query_row("PRAGMA user_version", [], |r| r.get::<_, i32>(0)).unwrap(), SCHEMA_VERSION);
    }

    #[test]
    fn a_corrupt_file_is_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(DB_FILE), b"this is not a database, just garbage bytes ".repeat(200)).unwrap();
        let (s, report) = Store::open(dir.path(), None).unwrap();
        let aside = report.moved_aside.expect("moved aside");
        assert!(aside.exists());
        assert!(report.reason.unwrap().to_lowercase().contains("not a database"));
        assert!(s.load_rows().unwrap().is_empty());
    }

    #[test]
    fn a_full_database_fails_writes_and_compaction_drops_rows_already_gone() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = Store::open(dir.path(), Some(64 * 1024)).unwrap();
        let big = |seq| StoredRow { payload: vec![b'x'; 4000].into(), ..row(seq) };
        let mut ops: VecDeque<Op> = (1..=40).map(|i| Op::Insert(big(i))).collect();
        let e = s.apply(ops.make_contiguous()).unwrap_err();
        assert_eq!(e.sqlite_error_code(), Some(rusqlite::ErrorCode::DiskFull), "{e}");
        ops.extend((1..=35).map(Op::Delete));
        compact(&mut ops);
        assert_eq!(ops.len(), 5);
        s.apply(ops.make_contiguous()).unwrap();
        assert_eq!(s.load_rows().unwrap().len(), 5);
    }

    #[test]
    fn a_second_publisher_on_the_same_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (_first, _) = Store::open(dir.path(), None).unwrap();
        assert!(matches!(Store::open(dir.path(), None), Err(StoreError::Busy(_))));
    }

    /// A row with an eventId that can be found in the file, and a payload of a location's size.
    fn sized(seq: u64) -> StoredRow {
        StoredRow { event_id: format!("<ev-{seq:08}>").into(), payload: vec![b'x'; 300].into(), ..row(seq) }
    }

    /// Per page of the database at `db` (from 1), the rows on it, and the page size.
    fn rows_by_page(db: &Path) -> (std::collections::BTreeMap<u64, Vec<u64>>, u64) {
        let bytes = std::fs::read(db).unwrap();
        let page_size = u64::from(u16::from_be_bytes([bytes[16], bytes[17]]));
        let mut pages = std::collections::BTreeMap::<u64, Vec<u64>>::new();
        // Table leaves only (type 13): an interior page keeps stale bytes of the rows it once held.
        for (i, page) in bytes.chunks(page_size as usize).enumerate().skip(1).filter(|(_, p)| p[0] == 13) {
            for w in page.windows(13).filter(|w| w.starts_with(b"<ev-") && w[12] == b'>') {
                let seq: u64 = std::str::from_utf8(&w[4..12]).unwrap().parse().unwrap();
                pages.entry(i as u64 + 1).or_default().push(seq);
            }
        }
        pages.values_mut().for_each(|rows| rows.sort_unstable());
        (pages, page_size)
    }

    /// The page holding row `seq`, with the rows on it.
    fn page_of(pages: &std::collections::BTreeMap<u64, Vec<u64>>, seq: u64) -> (u64, Vec<u64>) {
        pages.iter().find(|(_, rows)| rows.contains(&seq)).map(|(p, rows)| (*p, rows.clone())).unwrap()
    }

    /// Overwrites page `page` (from 1) with garbage.
    fn damage(db: &Path, page: u64, page_size: u64) {
        use std::io::{Seek, Write};
        let mut f = std::fs::OpenOptions::new().write(true).open(db).unwrap();
        f.seek(std::io::SeekFrom::Start((page - 1) * page_size)).unwrap();
        f.write_all(&vec![0xEE; page_size as usize]).unwrap();
    }

    /// A closed data directory with rows 1..=n, three dead letters, a config, a fetch state, a
    /// tally and a run clock.
    fn filled(n: u64) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = Store::open(dir.path(), None).unwrap();
        s.record_run_clock(crate::clock::RunClock::resume(5_000));
        s.record_tally(Box::new(|| Some("{\"epoch\":\"e-1\"}".into())));
        let mut ops: Vec<Op> = (1..=n).map(|i| Op::Insert(sized(i))).collect();
        for id in 1..=3 {
            let d = StoredDeadLetter {
                id,
                event_id: format!("d{id}"),
                payload: b"{}".to_vec(),
                timestamp_ms: 1,
                transport: Transport::PubSub,
                error: "400".into(),
                observed_at_ms: Some(9),
            };
            ops.push(Op::DeadLetter(d));
        }
        ops.push(Op::SaveConfig(StoredConfig { json: "{}".into(), source: "app".into(), applied_at_ms: 1 }));
        ops.push(Op::SaveFetchState("{\"failures\":2}".into()));
        s.apply(&ops).unwrap();
        dir
    }

    #[test]
    fn salvage_steps_over_bad_pages_and_keeps_every_table() {
        let dir = filled(3_000);
        let db = dir.path().join(DB_FILE);
        let (pages, page_size) = rows_by_page(&db);
        let bad: Vec<(u64, Vec<u64>)> = [1, 1_500, 3_000].into_iter().map(|seq| page_of(&pages, seq)).collect();
        for (page, _) in &bad {
            damage(&db, *page, page_size);
        }
        let (s, report) = Store::open(dir.path(), None).unwrap();
        assert!(report.moved_aside.is_some());
        let lost: u64 = bad.iter().map(|(_, rows)| rows.len() as u64).sum();
        assert_eq!(report.salvage.rows, 3_000 - lost, "every row not on a bad page: {:?}", report.salvage);
        let kept: std::collections::HashSet<u64> = s.load_rows().unwrap().iter().map(|r| r.seq).collect();
        for (_, rows) in &bad {
            assert!(rows.iter().all(|r| !kept.contains(r)));
            assert!(
                report.salvage.lost_rows.iter().any(|&(from, end)| rows.iter().all(|r| (from..end).contains(r))),
                "{rows:?} in {:?}",
                report.salvage.lost_rows
            );
        }
        assert_eq!(report.salvage.lost_rows.last().map(|r| r.1), Some(u64::MAX), "nothing readable after the last page");
        assert_eq!(report.salvage.rows_lost, (bad[0].1.len() + bad[1].1.len()) as u64, "the rows between readable ones are counted");
        assert_eq!(report.salvage.damaged, ["outbox"]);
        assert_eq!(s.load_dead_letters(10).unwrap().0.len(), 3);
        assert!(s.load_config().unwrap().is_some());
        assert_eq!(s.load_fetch_state().unwrap().as_deref(), Some("{\"failures\":2}"));
        assert_eq!(s.load_tally().unwrap().as_deref(), Some("{\"epoch\":\"e-1\"}"));
        assert!(s.load_observed_ms().unwrap() >= 5_000, "the run clock goes on");
        assert_eq!(s.load_rows().unwrap().iter().map(|r| r.observed_at_ms).max(), Some(Some(3)), "and the rows keep their place on it");
    }

    #[test]
    fn an_unreadable_run_clock_restarts_at_the_newest_salvaged_time() {
        let dir = filled(10);
        let db = dir.path().join(DB_FILE);
        let page = {
            let c = Connection::open(&db).unwrap();
            let page: i64 = c.query_row("SELECT rootpage FROM sqlite_master WHERE name = 'meta'", [], |r| r.get(0)).unwrap();
            c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)").unwrap();
            page as u64
        };
        damage(&db, page, rows_by_page(&db).1);
        let (s, report) = Store::open(dir.path(), None).unwrap();
        assert!(report.salvage.damaged.contains(&"meta"), "{:?}", report.salvage);
        assert_eq!(s.load_observed_ms().unwrap(), 9, "the newest time a row or dead letter carries");
    }

    #[test]
    fn a_read_back_names_the_unreadable_rows_reads_the_rest_and_a_rebuild_drops_the_page() {
        let dir = filled(3_000);
        let db = dir.path().join(DB_FILE);
        let (pages, page_size) = rows_by_page(&db);
        let (page, on_page) = page_of(&pages, 300);
        let (mut s, _) = Store::open(dir.path(), None).unwrap();
        s.conn.execute_batch("PRAGMA shrink_memory").unwrap();
        damage(&db, page, page_size);
        let asked: Vec<u64> = (on_page[0] - 5..=on_page[on_page.len() - 1] + 5).collect();
        let got = s.load_bodies(&asked).unwrap();
        assert_eq!(got.unreadable, on_page);
        assert_eq!(got.found.len(), 10, "the rows around it are read all the same");
        // A change on the bad page fails; left out, the rest commits.
        let e = s.apply(&[Op::Delete(on_page[0])]).unwrap_err();
        assert!(is_corrupt(&e), "{e}");
        let ops =
            [Op::Insert(sized(3_001)), Op::Delete(on_page[0]), Op::Update { seq: on_page[1], mqtt: Delivery::Acked, pubsub: Delivery::NotOwed }, Op::Delete(2)];
        assert_eq!(s.apply_around_damage(&ops).unwrap().1, 2);
        // Rebuilt: the bad page's rows are gone, everything else is there, the file is healthy.
        let r = s.rebuild(RebuildCause::Corrupt("test".into())).unwrap();
        assert_eq!(r.salvage.rows, 3_000 - 1 - on_page.len() as u64 + 1);
        assert!(r.salvage.lost_rows.iter().any(|&(from, end)| on_page.iter().all(|seq| (from..end).contains(seq))), "{:?}", r.salvage.lost_rows);
        assert!(r.moved_aside.as_ref().is_some_and(|p| p.exists()), "the damaged file is kept for inspection");
        s.apply(&[Op::Delete(3)]).unwrap();
        assert_eq!(s.load_bodies(&asked).unwrap().unreadable, Vec::<u64>::new());
        drop(s);
        let (s, report) = Store::open(dir.path(), None).unwrap();
        assert_eq!((report.moved_aside, s.load_rows().unwrap().len()), (None, 3_001 - 2 - on_page.len()));
    }

    #[test]
    fn a_database_deleted_under_the_store_is_noticed_and_recreated_from_the_open_file() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("data");
        let (mut s, _) = Store::open(&dir, None).unwrap();
        s.apply(&(1..=100).map(|i| Op::Insert(sized(i))).collect::<Vec<_>>()).unwrap();
        assert!(!s.lost());
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(s.lost(), "the path no longer leads to the open file");
        // SQLite goes on writing to the deleted file.
        s.apply(&(101..=150).map(|i| Op::Insert(sized(i))).collect::<Vec<_>>()).unwrap();
        let r = s.rebuild(RebuildCause::Lost).unwrap();
        assert_eq!((r.salvage.rows, r.moved_aside), (150, None));
        assert!(!s.lost() && dir.join(DB_FILE).exists());
        s.apply(&[Op::Insert(sized(151))]).unwrap();
        drop(s);
        let (s, _) = Store::open(&dir, None).unwrap();
        assert_eq!(s.load_rows().unwrap().len(), 151);
    }

    #[test]
    fn a_rebuilt_file_left_behind_is_adopted() {
        let dir = filled(5);
        let path = dir.path().join(DB_FILE);
        std::fs::rename(&path, dir.path().join(format!("{DB_FILE}.rebuild-17"))).unwrap();
        std::fs::write(dir.path().join(format!("{DB_FILE}.rebuild-3")), b"older").unwrap();
        let (s, report) = Store::open(dir.path(), None).unwrap();
        assert_eq!((report.moved_aside, s.load_rows().unwrap().len()), (None, 5));
        assert!(!dir.path().join(format!("{DB_FILE}.rebuild-3")).exists());
    }

    #[test]
    fn a_full_database_commits_what_fits_oldest_first_and_waits_its_pause() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path(), Some(1 << 20)).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let (seen_tx, seen) = std::sync::mpsc::channel();
        let writer = std::thread::spawn(move || {
            run_writer(store, rx, move |c| seen_tx.send((c.durable, c.failed.is_some())).unwrap(), |_| {});
        });
        // 1.4 MB of rows against 1 MB of room, in one message.
        tx.send(Msg::Ops((1..=4_000).map(|i| Op::Insert(sized(i))).collect())).unwrap();
        // A message every 20 ms for 2 s: gathered during the pauses, not each an attempt.
        for i in 0..100 {
            tx.send(Msg::Ops(vec![Op::Update { seq: 1 + i % 10, mqtt: Delivery::Pending, pubsub: Delivery::NotOwed }])).unwrap();
            std::thread::sleep(Duration::from_millis(20));
        }
        drop(tx);
        writer.join().unwrap();
        let commits: Vec<(Vec<u64>, bool)> = seen.try_iter().collect();
        let failures = commits.iter().filter(|c| c.1).count();
        let durable: Vec<u64> = commits.iter().filter(|c| !c.1).flat_map(|c| c.0.clone()).collect();
        assert!(commits[0].1 && commits[0].0.len() == 4_000, "the first attempt fails; its rows are made visible");
        assert!(failures <= 16, "{failures} failed commits in 2 s of messages every 20 ms");
        assert!(durable.len() >= 1_000 && durable.len() < 4_000, "what fits is durable: {}", durable.len());
        assert!(durable.windows(2).all(|w| w[0] < w[1]) && durable[0] == 1, "oldest first");
    }
}
