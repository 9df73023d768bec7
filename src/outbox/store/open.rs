//! Opening the store: the private directory and file, a fresh file adopted from a rebuild left
//! behind, a corrupt file moved aside and salvaged, an in-memory database when the disk cannot
//! be written, the exclusive lock (one publisher per directory), and the size cap.

use super::*;

/// A file's identity: device and inode (Unix). The path is compared with it to notice the file,
/// or its directory, deleted or replaced under the open database.
pub(super) type FileId = (u64, u64);

pub(super) fn file_id(path: &Path) -> std::io::Result<Option<FileId>> {
    let meta = std::fs::metadata(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        Ok(Some((meta.dev(), meta.ino())))
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        Ok(None)
    }
}

/// Creates `dir` (and its parents) and makes it private to the app (0700 on Unix): the outbox
/// holds locations.
pub(super) fn private_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
    }
    #[cfg(not(unix))]
    std::fs::create_dir_all(dir)
}

/// Makes the database file private to the app (0600 on Unix) before SQLite opens it, creating
/// it empty if it does not exist; SQLite gives its `-wal` and `-shm` files the same permissions.
/// An existing file is only chmod-ed by path, never opened: closing any descriptor of a file
/// releases the POSIX locks this process holds on it, which would let a second publisher in.
pub(super) fn private_file(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        if !path.exists() {
            match std::fs::OpenOptions::new().create_new(true).write(true).mode(0o600).open(path) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {} // created meanwhile
                Err(e) => return Err(e),
            }
        }
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        Ok(())
    }
}

/// Deletes copies of corrupt databases (`outbox.db.corrupt-<ms>*`) moved aside more than
/// `keep_ms` before `now_ms`: they hold locations, and the outbox's own age cap applies to them.
pub fn prune_corrupt_copies(dir: &Path, now_ms: i64, keep_ms: i64) -> usize {
    let prefix = format!("{DB_FILE}.corrupt-");
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(&prefix) else { continue };
        let stamp: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
        if stamp.parse::<i64>().is_ok_and(|at| now_ms.saturating_sub(at) > keep_ms) && std::fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

pub(super) fn is_full(e: &rusqlite::Error) -> bool {
    matches!(e.sqlite_error_code(), Some(rusqlite::ErrorCode::DiskFull))
}

pub(super) fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(e.sqlite_error_code(), Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked))
}

/// Only a database SQLite calls corrupt (or not a database at all) is moved aside; a full
/// disk or a permission problem must never cost the app its queued locations.
pub(super) fn is_corrupt(e: &rusqlite::Error) -> bool {
    matches!(e.sqlite_error_code(), Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase))
}

/// A database SQLite may not write: a read-only file system or file, no permission, or a file
/// it cannot open at all.
pub(super) fn is_unwritable(e: &rusqlite::Error) -> bool {
    matches!(e.sqlite_error_code(), Some(rusqlite::ErrorCode::ReadOnly | rusqlite::ErrorCode::PermissionDenied | rusqlite::ErrorCode::CannotOpen))
}

/// A data directory the app may not write (a read-only file system, no permission: `EROFS`,
/// `EACCES`, `EPERM`) or with no room left for even an empty file.
pub(super) fn is_unwritable_io(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(e.kind(), ReadOnlyFilesystem | PermissionDenied | StorageFull | QuotaExceeded)
}

/// Moves the database `path` (with its `-wal` and `-shm` files) to `aside`.
pub(super) fn move_aside(path: &Path, aside: &Path) -> std::io::Result<()> {
    std::fs::rename(path, aside)?;
    for suffix in ["-wal", "-shm"] {
        let side = PathBuf::from(format!("{}{suffix}", path.display()));
        if side.exists() {
            let _ = std::fs::rename(&side, format!("{}{suffix}", aside.display()));
        }
    }
    Ok(())
}

/// A rebuild ([`Store::rebuild`]) left its fresh file behind (the process ended between closing
/// the old file and renaming the new one into place, or the rename failed): when nothing is at
/// `path` the newest such file takes its place; the others are removed.
pub(super) fn adopt_rebuilt(dir: &Path, path: &Path) {
    let prefix = format!("{DB_FILE}.rebuild-");
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut found: Vec<(u64, PathBuf)> = entries
        .flatten()
        .filter_map(|e| {
            let stamp = e.file_name().to_str()?.strip_prefix(&prefix)?.parse::<u64>().ok()?;
            Some((stamp, e.path()))
        })
        .collect();
    found.sort();
    let mut found: Vec<PathBuf> = found.into_iter().map(|(_, p)| p).collect();
    if let Some(newest) = found.pop() {
        if path.exists() {
            found.push(newest);
        } else if std::fs::rename(&newest, path).is_ok() {
            let _ = std::fs::rename(format!("{}-wal", newest.display()), format!("{}-wal", path.display()));
        }
    }
    for stale in found {
        remove_database(&stale);
    }
}

/// Removes the database `path` and its `-wal` and `-shm` files, if there.
pub(super) fn remove_database(path: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}

impl Store {
    /// Opens (or creates) `dir/outbox.db`. A corrupt or unreadable file is moved aside, a fresh
    /// database created and what is readable of the old one salvaged into it; the report says
    /// so. A directory or database that cannot be written (a full disk, a read-only file system,
    /// no permission) gives an in-memory database for this run. Fails only when another
    /// publisher holds the database, or for a failure none of these explain.
    pub fn open(dir: &Path, max_bytes: Option<u64>) -> Result<(Store, OpenReport), StoreError> {
        let path = dir.join(DB_FILE);
        adopt_rebuilt(dir, &path);
        let prepared = private_dir(dir).map_err(StoreError::io(dir.display())).and_then(|()| private_file(&path).map_err(StoreError::io(path.display())));
        match prepared {
            Ok(()) => {}
            // Not writable: keep the outbox in memory for this run rather than refuse the app (a
            // kill loses what is queued; what the directory holds stays there for a later run).
            Err(StoreError::Io { source, what }) if is_unwritable_io(&source) => {
                let why = StoreError::Io { source, what }.to_string();
                return Ok((Store::in_memory()?, OpenReport { memory_only: Some(why), ..OpenReport::default() }));
            }
            Err(e) => return Err(e),
        }
        match Store::open_file(&path, max_bytes) {
            Ok(store) => {
                let newer_schema = (store.found_schema > SCHEMA_VERSION).then_some(store.found_schema);
                Ok((store, OpenReport { newer_schema, ..OpenReport::default() }))
            }
            Err(e) if is_busy(&e) => Err(StoreError::Busy(path)),
            // A full disk (or quota) leaves no room for even a fresh database, and a read-only
            // one takes nothing: in memory for this run, as above.
            Err(e) if is_full(&e) || is_unwritable(&e) => {
                let store = Store::in_memory()?;
                Ok((store, OpenReport { memory_only: Some(e.to_string()), ..OpenReport::default() }))
            }
            Err(e) if !is_corrupt(&e) => Err(StoreError::Sqlite(e)),
            Err(e) => {
                let reason = e.to_string();
                let aside = dir.join(format!("{DB_FILE}.corrupt-{}", crate::clock::now_ms()));
                move_aside(&path, &aside).map_err(StoreError::io("moving the corrupt database aside"))?;
                private_file(&path).map_err(StoreError::io(path.display()))?;
                let store = Store::open_file(&path, max_bytes)?;
                // What cannot be written (a disk too full for it) stays in the copy; the app
                // still gets its publisher.
                let salvage = match Connection::open_with_flags(&aside, OpenFlags::SQLITE_OPEN_READ_WRITE) {
                    Ok(old) => {
                        let _ = old.pragma_update(None, "cache_size", -512);
                        salvage_into(&old, &store.conn)
                    }
                    Err(e) => Salvage { damaged: SALVAGED.iter().map(|(t, _)| *t).collect(), stopped: Some(e.to_string()), ..Salvage::default() },
                };
                Ok((store, OpenReport { moved_aside: Some(aside), reason: Some(reason), salvage, ..OpenReport::default() }))
            }
        }
    }

    /// An outbox database in memory (nothing survives the process), for a disk with no room.
    pub(super) fn in_memory() -> rusqlite::Result<Store> {
        let conn = Connection::open_in_memory()?;
        let mut store = Store { conn, path: None, identity: None, max_bytes: None, reopen: None, run_clock: None, found_schema: 0, tally: None };
        store.found_schema = store.migrate()?;
        Ok(store)
    }

    pub(super) fn open_file(path: &Path, max_bytes: Option<u64>) -> rusqlite::Result<Store> {
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE)?;
        conn.busy_timeout(Duration::from_millis(200))?;
        // One publisher per data directory: the exclusive lock is taken by the first write below.
        conn.pragma_update(None, "locking_mode", "EXCLUSIVE")?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        // 512 KiB of page cache instead of SQLite's 2 MB: the writer appends and the transports
        // read back consecutive rows, so a small cache costs no reads that matter, and it is
        // memory a phone keeps for the app's whole life (docs/PERFORMANCE.md, "Memory").
        conn.pragma_update(None, "cache_size", -512)?;
        // A WAL checkpoint every 2,000 pages (8 MB of WAL) instead of 1,000: the checkpoints' two
        // fsyncs each were most of the outbox's fsyncs (docs/RADIO.md, "fsyncs").
        conn.pragma_update(None, "wal_autocheckpoint", 2000)?;
        // After a checkpoint the WAL file is cut back to 1 MiB instead of keeping its largest
        // size: on a full disk the space it held is what the next commits need.
        conn.pragma_update(None, "journal_size_limit", 1 << 20)?;
        let identity = file_id(path).ok().flatten();
        let mut store = Store { conn, path: Some(path.to_path_buf()), identity, max_bytes, reopen: None, run_clock: None, found_schema: 0, tally: None };
        store.found_schema = store.migrate()?;
        // Reads every page of both tables: a corrupt file fails here, not later.
        let check: String = store.conn.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
        if check != "ok" {
            return Err(rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CORRUPT), Some(format!("quick_check: {check}"))));
        }
        store.limit(max_bytes)?;
        Ok(store)
    }

    /// Caps the database at `max_bytes` (SQLite then fails writes with SQLITE_FULL, exactly as
    /// on a full disk).
    pub(super) fn limit(&self, max_bytes: Option<u64>) -> rusqlite::Result<()> {
        if let Some(max) = max_bytes {
            let page: i64 = self.conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
            let pages = (max as i64 / page.max(512)).max(1);
            self.conn.query_row(&format!("PRAGMA max_page_count = {pages}"), [], |_| Ok(()))?;
        }
        Ok(())
    }
}
