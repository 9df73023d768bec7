//! A log of what crosses a [`crate::proxy::FaultProxy`]: every chunk read from either side of
//! every connection, with its time, direction, connection, size and backend, plus connection
//! opens, closes and refused attempts. The radio harness (docs/RADIO.md) reads it: each entry is
//! something a phone's radio would have had to send or receive.
//!
//! A chunk is what one `read` returned, not a TCP segment: loopback delivers a small message as
//! one chunk, a large one may arrive in several (which the burst analysis counts as packets a
//! few microseconds apart, so they never change a burst). TCP's own segments (handshake, ACKs)
//! are not seen; the connection's open and close are logged as entries of 0 bytes instead.

use serde::Serialize;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Which way an entry went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// From the client (the phone) to the backend.
    Up,
    /// From the backend to the client.
    Down,
}

/// What an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Bytes of a connection.
    Data,
    /// A connection accepted and forwarded (the client's SYN; 0 bytes).
    Open,
    /// A connection ended, by either side or by a cut (0 bytes).
    Close,
    /// A connection attempt refused by the proxy during an outage (0 bytes; the connection id
    /// is not reused).
    Refused,
}

/// One entry.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entry {
    /// Microseconds since the log was created.
    pub t_us: u64,
    /// The backend's label (e.g. `mqtt`, `pubsub`).
    pub backend: &'static str,
    /// The connection, unique within the log.
    pub conn: u64,
    /// Direction.
    pub dir: Direction,
    /// What it is.
    pub kind: Kind,
    /// Bytes carried (0 for opens, closes and refusals).
    pub bytes: u64,
}

impl Entry {
    /// The time in milliseconds since the log was created.
    pub fn t_ms(&self) -> f64 {
        self.t_us as f64 / 1000.0
    }
}

#[derive(Debug)]
struct Inner {
    start: Instant,
    next_conn: AtomicU64,
    entries: Mutex<Vec<Entry>>,
}

/// A shared, append-only packet log; clones append to the same log.
#[derive(Debug, Clone)]
pub struct PacketLog {
    inner: Arc<Inner>,
}

impl Default for PacketLog {
    fn default() -> Self {
        Self::new()
    }
}

impl PacketLog {
    /// An empty log whose clock starts now.
    pub fn new() -> PacketLog {
        PacketLog { inner: Arc::new(Inner { start: Instant::now(), next_conn: AtomicU64::new(1), entries: Mutex::new(Vec::new()) }) }
    }

    /// When the log's clock started.
    pub fn start(&self) -> Instant {
        self.inner.start
    }

    /// Microseconds since the log started, for `at`.
    pub fn micros_at(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.inner.start).as_micros() as u64
    }

    /// A new connection id.
    pub fn next_conn(&self) -> u64 {
        self.inner.next_conn.fetch_add(1, Ordering::SeqCst)
    }

    /// Appends an entry stamped now.
    pub fn record(&self, backend: &'static str, conn: u64, dir: Direction, kind: Kind, bytes: u64) {
        let t_us = self.micros_at(Instant::now());
        let mut entries = self.inner.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.push(Entry { t_us, backend, conn, dir, kind, bytes });
    }

    /// Every entry so far, in time order.
    pub fn entries(&self) -> Vec<Entry> {
        let mut v = self.inner.entries.lock().unwrap_or_else(|p| p.into_inner()).clone();
        // Entries are pushed under one lock right after their timestamp is taken, so they are
        // nearly sorted; two threads can still swap neighbours by a microsecond.
        v.sort_by_key(|e| e.t_us);
        v
    }

    /// Writes the log as tab-separated lines: `t_ms backend conn dir kind bytes`.
    pub fn write_tsv(&self, path: &Path) -> std::io::Result<()> {
        let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
        writeln!(f, "t_ms\tbackend\tconn\tdir\tkind\tbytes")?;
        for e in self.entries() {
            let dir = match e.dir {
                Direction::Up => "up",
                Direction::Down => "down",
            };
            let kind = match e.kind {
                Kind::Data => "data",
                Kind::Open => "open",
                Kind::Close => "close",
                Kind::Refused => "refused",
            };
            writeln!(f, "{:.3}\t{}\t{}\t{dir}\t{kind}\t{}", e.t_ms(), e.backend, e.conn, e.bytes)?;
        }
        f.flush()
    }
}
