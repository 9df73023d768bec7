//! The database's schema: the steps that create and upgrade it (`PRAGMA user_version`), and
//! how a row's per-transport state is written in its columns.

use super::*;

/// The schema steps, oldest first: step `n` (from 1) takes `PRAGMA user_version` from `n − 1`
/// to `n`, in one transaction. Never edit a step that shipped; append one.
pub(super) const MIGRATIONS: [&str; 7] = [
    // 1: the outbox and the dead letters.
    "CREATE TABLE IF NOT EXISTS outbox (
         seq INTEGER PRIMARY KEY,
         event_id TEXT NOT NULL,
         payload BLOB NOT NULL,
         timestamp_ms INTEGER NOT NULL,
         accepted_at_ms INTEGER NOT NULL,
         mqtt INTEGER NOT NULL,
         pubsub INTEGER NOT NULL);
     CREATE TABLE IF NOT EXISTS dead_letters (
         id INTEGER PRIMARY KEY,
         event_id TEXT NOT NULL,
         payload BLOB NOT NULL,
         timestamp_ms INTEGER NOT NULL,
         transport INTEGER NOT NULL,
         error TEXT NOT NULL);",
    // 2: the last known good migration config.
    "CREATE TABLE IF NOT EXISTS config (
         id INTEGER PRIMARY KEY CHECK (id = 1),
         json TEXT NOT NULL,
         source TEXT NOT NULL,
         applied_at_ms INTEGER NOT NULL);",
    // 3: the config fetcher's state.
    "CREATE TABLE IF NOT EXISTS fetch_state (
         id INTEGER PRIMARY KEY CHECK (id = 1),
         json TEXT NOT NULL);",
    // 4: the SDK's run clock (crate::clock::RunClock): the time observed across runs, and each
    // row's place on it, so rows age by time the SDK saw, never by a wall-clock difference.
    "ALTER TABLE outbox ADD COLUMN observed_at_ms INTEGER;
     CREATE TABLE IF NOT EXISTS meta (
         key TEXT PRIMARY KEY,
         value INTEGER NOT NULL);",
    // 5: when each dead letter was dead-lettered, on the run clock (dead letters age like rows).
    "ALTER TABLE dead_letters ADD COLUMN observed_at_ms INTEGER;",
    // 6: the migration reports' tally (crate::telemetry::reports::Tally as JSON): cumulative counters, the
    // schedule and the last location seq, written with every commit.
    "CREATE TABLE IF NOT EXISTS report_state (
         id INTEGER PRIMARY KEY CHECK (id = 1),
         json TEXT NOT NULL);",
    // 7: each row's wire seq (the `seq` in its payload), read with the index at start-up so the
    // outbox knows which seqs it still owes without reading payloads back. NULL in rows an
    // earlier build wrote (and in rows whose payload has none): read from the payload then.
    "ALTER TABLE outbox ADD COLUMN wire_seq INTEGER;",
];

/// The schema version this build writes (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i32 = MIGRATIONS.len() as i32;

/// The database file inside the data directory.
pub const DB_FILE: &str = "outbox.db";

pub(super) fn code(d: Delivery) -> i64 {
    match d {
        Delivery::NotOwed => 0,
        Delivery::Pending | Delivery::InFlight => 1,
        Delivery::Acked => 2,
        Delivery::DeadLettered => 3,
    }
}

pub(super) fn delivery(c: i64) -> Delivery {
    match c {
        1 => Delivery::Pending,
        2 => Delivery::Acked,
        3 => Delivery::DeadLettered,
        _ => Delivery::NotOwed,
    }
}

pub(super) fn transport_code(t: Transport) -> i64 {
    match t {
        Transport::Mqtt => 0,
        Transport::PubSub => 1,
    }
}

impl Store {
    /// Brings the schema up to [`SCHEMA_VERSION`]; returns the version found.
    pub(super) fn migrate(&self) -> rusqlite::Result<i32> {
        let version: i32 = self.conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        for (step, ddl) in MIGRATIONS.iter().enumerate() {
            let to = step as i32 + 1;
            if version < to {
                self.conn.execute_batch("BEGIN IMMEDIATE")?;
                let done = self.run_step(ddl).and_then(|()| self.conn.execute_batch(&format!("PRAGMA user_version = {to}; COMMIT;")));
                if let Err(e) = done {
                    let _ = self.conn.execute_batch("ROLLBACK");
                    return Err(e);
                }
            }
        }
        // Take the exclusive lock now, so a second publisher on this directory fails at once.
        self.conn.execute_batch("BEGIN IMMEDIATE; COMMIT;")?;
        Ok(version)
    }

    /// Runs one schema step, statement by statement. `ALTER TABLE t ADD COLUMN c …` is skipped
    /// when `t` already has `c`, so a step can never fail on a column an earlier build added.
    pub(super) fn run_step(&self, ddl: &str) -> rusqlite::Result<()> {
        for statement in ddl.split(';').map(str::trim).filter(|s| !s.is_empty()) {
            let words: Vec<&str> = statement.split_whitespace().collect();
            if let ["ALTER", "TABLE", table, "ADD", "COLUMN", column, ..] = words.as_slice() {
                let has: i64 = self.conn.query_row("SELECT COUNT(*) FROM pragma_table_info(?1) WHERE name = ?2", params![table, column], |r| r.get(0))?;
                if has > 0 {
                    continue;
                }
            }
            self.conn.execute_batch(statement)?;
        }
        Ok(())
    }
}
