//! Salvage: what is readable of a damaged database, carried into a fresh one by key ranges,
//! stepping over the unreadable pages (at start-up and when a running store rebuilds).

use super::*;

/// Rows read from a damaged database at a time, and written to the fresh one in one
/// transaction: what a salvage holds in memory at once.
pub(super) const SALVAGE_CHUNK: i64 = 512;

/// The tables a salvage carries over, with the integer key it reads them by (`meta` is keyed
/// by text; its rowid orders it).
pub(super) const SALVAGED: [(&str, &str); 6] =
    [("outbox", "seq"), ("dead_letters", "id"), ("config", "id"), ("fetch_state", "id"), ("report_state", "id"), ("meta", "rowid")];

/// The columns of `table` (none if it does not exist).
pub(super) fn columns(conn: &Connection, table: &str) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare("SELECT name FROM pragma_table_info(?1)")?;
    let names = stmt.query_map([table], |r| r.get(0))?.collect();
    names
}

/// What one table's salvage carried over.
#[derive(Debug, Default)]
pub(super) struct Copied {
    rows: u64,
    /// Key ranges `from..end` where nothing could be read.
    lost: Vec<(i64, i64)>,
    /// Keys at most lost (see [`Salvage::rows_lost`]).
    lost_at_most: u64,
}

/// Up to [`SALVAGE_CHUNK`] rows of `read` (key first) from key `from` on, and whether the read
/// stopped at an error rather than at the end.
pub(super) fn read_chunk(src: &Connection, read: &str, from: i64, width: usize) -> (Vec<(i64, Vec<Value>)>, bool) {
    let mut out = Vec::new();
    let Ok(mut stmt) = src.prepare_cached(read) else { return (out, true) };
    let Ok(mut rows) = stmt.query(params![from, SALVAGE_CHUNK]) else { return (out, true) };
    loop {
        match rows.next() {
            Ok(Some(r)) => {
                let key = r.get::<_, i64>(0);
                let values: rusqlite::Result<Vec<Value>> = (1..=width).map(|i| r.get::<_, Value>(i)).collect();
                match (key, values) {
                    (Ok(key), Ok(values)) => out.push((key, values)),
                    _ => return (out, true),
                }
            }
            Ok(None) => return (out, false),
            Err(_) => return (out, true),
        }
    }
}

/// Writes `rows` with `write` in one transaction; returns how many went in. A row the fresh
/// table refuses (garbage that passed for a row: a NULL where none may be) is left out; any
/// other failure (a full disk) is returned.
pub(super) fn write_chunk(dst: &Connection, write: &str, rows: &[(i64, Vec<Value>)]) -> rusqlite::Result<u64> {
    if rows.is_empty() {
        return Ok(0);
    }
    let tx = dst.unchecked_transaction()?;
    let mut n = 0;
    {
        let mut stmt = tx.prepare_cached(write)?;
        for (_, values) in rows {
            match stmt.execute(rusqlite::params_from_iter(values.iter())) {
                Ok(_) => n += 1,
                Err(e) if matches!(e.sqlite_error_code(), Some(rusqlite::ErrorCode::ConstraintViolation | rusqlite::ErrorCode::TypeMismatch)) => {}
                Err(e) => return Err(e),
            }
        }
    }
    tx.commit()?;
    Ok(n)
}

/// Whether a read of one row (every column) from key `x` on works.
pub(super) fn readable_from(src: &Connection, probe: &str, x: i64) -> bool {
    src.prepare_cached(probe).and_then(|mut stmt| stmt.query_row([x], |_| Ok(())).optional()).is_ok()
}

/// Reading from key `from` on fails: the smallest key after it from which reading works again
/// (steps doubling until one works, then bisecting back); `None` when nothing after `from` can
/// be read.
pub(super) fn resume_after(src: &Connection, probe: &str, from: i64) -> Option<i64> {
    let mut lo = from;
    // The keys salvaged are never negative: from below zero, zero is where to look first (steps
    // doubling from far below it would leap from there to the end of the key space).
    let start = match from < 0 {
        true if readable_from(src, probe, 0) => return Some(bisect(src, probe, lo, 0)),
        true => {
            lo = 0;
            0
        }
        false => from,
    };
    let mut step = 1i128;
    let hi = loop {
        let x = (i128::from(start) + step).min(i128::from(i64::MAX)) as i64;
        if readable_from(src, probe, x) {
            break x;
        }
        if x == i64::MAX {
            return None;
        }
        (lo, step) = (x, step * 2);
    };
    Some(bisect(src, probe, lo, hi))
}

/// The smallest key in `lo + 1..=hi` from which reading works, reading from `lo` failing and
/// from `hi` working.
pub(super) fn bisect(src: &Connection, probe: &str, mut lo: i64, mut hi: i64) -> i64 {
    while i128::from(hi) - i128::from(lo) > 1 {
        let mid = (i128::from(lo) + (i128::from(hi) - i128::from(lo)) / 2) as i64;
        if readable_from(src, probe, mid) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    hi
}

/// Copies `table` from `src` to `dst` by key ranges of [`SALVAGE_CHUNK`] rows, stepping over
/// the keys that cannot be read ([`resume_after`]). Only the columns both have are copied. A
/// failure to write `dst` is returned; what could not be read is listed.
pub(super) fn copy_table(src: &Connection, dst: &Connection, table: &str, key: &str) -> rusqlite::Result<Copied> {
    let mut out = Copied::default();
    let wanted = columns(dst, table)?;
    let cols: Vec<String> = match columns(src, table) {
        Ok(have) => have.into_iter().filter(|c| wanted.contains(c)).collect(),
        Err(_) => {
            out.lost.push((i64::MIN, i64::MAX));
            return Ok(out);
        }
    };
    if cols.is_empty() {
        return Ok(out); // an older schema without it
    }
    let list = cols.join(", ");
    let read = format!("SELECT {key}, {list} FROM {table} WHERE {key} >= ?1 ORDER BY {key} LIMIT ?2");
    let probe = format!("SELECT {key}, {list} FROM {table} WHERE {key} >= ?1 ORDER BY {key} LIMIT 1");
    let write = format!("INSERT OR REPLACE INTO {table} ({list}) VALUES ({})", vec!["?"; cols.len()].join(", "));
    let mut from = i64::MIN;
    loop {
        let (rows, failed) = read_chunk(src, &read, from, cols.len());
        out.rows += write_chunk(dst, &write, &rows)?;
        // Keys only ever move forward, whatever a damaged page returns.
        let advanced = rows.last().map(|(k, _)| *k).filter(|&k| k >= from);
        if let Some(k) = advanced {
            match k.checked_add(1) {
                Some(next) => from = next,
                None => break,
            }
        }
        let full = rows.len() as i64 == SALVAGE_CHUNK;
        if advanced.is_some() {
            if failed || full {
                continue; // more to read, or read again from where it failed
            }
            break;
        }
        if !failed && !full {
            break; // the end
        }
        // Nothing readable from `from` on: skip to where reading works again. The keys skipped
        // are at most the rows lost (keys start at 1).
        match resume_after(src, &probe, from) {
            Some(resume) => {
                out.lost.push((from, resume));
                out.lost_at_most += u64::try_from(i128::from(resume) - i128::from(from.max(1))).unwrap_or(0);
                from = resume;
            }
            None => {
                out.lost.push((from, i64::MAX));
                break;
            }
        }
    }
    Ok(out)
}

/// Carries everything readable of `src` (a damaged or lost database) into `dst` (a fresh one),
/// table by table, streamed in chunks ([`copy_table`]): the outbox, the dead letters, the
/// last known good config, the fetch state, the reports' tally and the run clock. When the run
/// clock itself is unreadable it restarts at the newest time a salvaged row or dead letter
/// carries, so nothing salvaged is younger than the clock.
pub fn salvage_into(src: &Connection, dst: &Connection) -> Salvage {
    let mut out = Salvage::default();
    for (table, key) in SALVAGED {
        let copied = match copy_table(src, dst, table, key) {
            Ok(c) => c,
            Err(e) => {
                out.stopped = Some(e.to_string());
                out.damaged.push(table);
                break;
            }
        };
        if !copied.lost.is_empty() {
            out.damaged.push(table);
        }
        match table {
            "outbox" => {
                out.rows = copied.rows;
                out.rows_lost = copied.lost_at_most;
                out.lost_rows = copied.lost.iter().map(|&(a, b)| (a.max(0) as u64, if b == i64::MAX { u64::MAX } else { b.max(0) as u64 })).collect();
            }
            "dead_letters" => {
                out.dead_letters = copied.rows;
                out.lost_dead_letters = copied.lost;
            }
            _ => {}
        }
    }
    let clock: rusqlite::Result<Option<i64>> = dst.query_row("SELECT value FROM meta WHERE key = 'observed_ms'", [], |r| r.get(0)).optional();
    if out.stopped.is_none() && matches!(clock, Ok(None)) {
        let newest: rusqlite::Result<Option<i64>> =
            dst.query_row("SELECT MAX(m) FROM (SELECT MAX(observed_at_ms) AS m FROM outbox UNION ALL SELECT MAX(observed_at_ms) FROM dead_letters)", [], |r| {
                r.get(0)
            });
        if let Ok(Some(ms)) = newest {
            let _ = dst.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('observed_ms', ?1)", params![ms]);
        }
    }
    out
}
