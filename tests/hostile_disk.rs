//! A hostile disk: an unreadable page under a running publisher, a corrupt database at start-up,
//! the data directory deleted while running, a full disk (or `maxStorageBytes`), a read-only
//! data directory. Every test here goes through the public API; the database is reached into
//! only to damage it (or to read what a publisher left there).

mod common;

use common::*;
use dualpub::{DualPublisher, SdkConfig};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(30);

/// A page of the outbox table: its number (from 1) and the eventIds of its rows.
struct Leaf {
    page: i64,
    event_ids: Vec<String>,
}

/// The page of `db` (closed, its WAL checkpointed: no publisher on it) that holds each of
/// `ids` (an eventId is stored with its row, twice: in its column and in the payload), and the
/// page size.
fn pages_of(db: &Path, ids: &[String]) -> (std::collections::HashMap<String, i64>, i64) {
    let bytes = std::fs::read(db).unwrap();
    let page_size = match u16::from_be_bytes([bytes[16], bytes[17]]) {
        1 => 65_536,
        n => i64::from(n),
    };
    let wanted: std::collections::HashSet<&[u8]> = ids.iter().map(|i| i.as_bytes()).collect();
    let mut at = std::collections::HashMap::new();
    // Table leaves only (type 13): an interior page keeps stale bytes of the rows it once held.
    for (i, page) in bytes.chunks(page_size as usize).enumerate().skip(1).filter(|(_, p)| p[0] == 13) {
        for w in 0..page.len().saturating_sub(36) {
            if page[w + 8] == b'-' && page[w + 13] == b'-' && page[w + 23] == b'-' && wanted.contains(&page[w..w + 36]) {
                at.entry(String::from_utf8(page[w..w + 36].to_vec()).unwrap()).or_insert(i as i64 + 1);
            }
        }
    }
    assert_eq!(at.len(), ids.len(), "every row found on a page");
    (at, page_size)
}

/// The outbox page holding `ids[k]`, with every row on it, and the page size.
fn leaf_of(db: &Path, ids: &[String], k: usize) -> (Leaf, i64) {
    let (at, page_size) = pages_of(db, ids);
    let page = at[&ids[k]];
    let event_ids: Vec<String> = ids.iter().filter(|i| at[*i] == page).cloned().collect();
    assert!(event_ids.len() > 1 && event_ids.len() < 100, "a leaf page of the outbox: {} rows", event_ids.len());
    (Leaf { page, event_ids }, page_size)
}

/// Overwrites page `page` (from 1) of `db` with garbage, as a failing flash cell would.
fn damage_page(db: &Path, page: i64, page_size: i64) {
    use std::io::{Seek, Write};
    let mut f = std::fs::OpenOptions::new().write(true).open(db).unwrap();
    f.seek(std::io::SeekFrom::Start(((page - 1) * page_size) as u64)).unwrap();
    f.write_all(&vec![0xEE; page_size as usize]).unwrap();
    f.sync_all().unwrap();
}

/// A fresh data directory for `id` (a directory an earlier process with the same pid left is
/// removed).
fn fresh(id: &str) -> PathBuf {
    let dir = data_dir(id);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Queues `n` locations (MQTT only, broker dead) in `id`'s data directory and closes the publisher.
fn queue_offline(id: &str, emu: &EmulatorHandle, n: usize) -> Vec<String> {
    fresh(id);
    let p = TestDevice::new(id, emu).mqtt(&dead_mqtt()).start();
    let mut ids = Vec::with_capacity(n);
    for start in (0..n).step_by(10_000) {
        ids.extend(p.send_locations((start..n.min(start + 10_000)).map(location).collect()).unwrap());
    }
    assert!(p.await_durable(60_000).unwrap());
    p.shutdown();
    ids
}

fn debug(p: &DualPublisher) -> serde_json::Value {
    serde_json::from_str(&p.debug_report().unwrap()).unwrap()
}

/// One unreadable page under a running publisher costs its own rows (counted, logged) and
/// nothing else: the rows after it are delivered, new locations too.
#[test]
fn an_unreadable_page_under_a_running_publisher_costs_only_its_own_rows() {
    let emu = emulator();
    let id = device("bad-page-read");
    let ids = queue_offline(&id, &emu, 3_000);
    let db = outbox_db(&id);
    // A page the start-up reads leave out of SQLite's page cache (it keeps the newest).
    let (bad, page_size) = leaf_of(&db, &ids, 1_200);
    let mqtt = mqtt_subscriber(&id);
    let p = TestDevice::new(&id, &emu).with(|c| c.upload_window_secs = 3600).start();
    damage_page(&db, bad.page, page_size);
    let later = p.send_location(location(9_999)).unwrap();
    assert!(p.await_durable(10_000).unwrap(), "new locations are durable");
    let r = p.flush(WAIT.as_millis() as u64).unwrap();
    assert!(r.completed, "the transport got past the bad page: {r:?}");
    let readable: Vec<String> = ids.iter().filter(|e| !bad.event_ids.contains(e)).cloned().chain([later.clone()]).collect();
    assert!(wait_for_all(&mqtt.collected, &readable, WAIT), "every readable location and the new one were delivered");
    let m = p.metrics().unwrap();
    assert_eq!(m.dropped.get("unreadable"), Some(&(bad.event_ids.len() as u64)), "each unreadable row counted once: {:?}", m.dropped);
    let recent = debug(&p)["recentErrors"].to_string();
    assert!(recent.contains("unreadable"), "{recent}");
    // Commits still work, and what was accepted after the damage survives a restart (offline,
    // so that shutdown's last burst does not deliver it first).
    p.set_network_available(false).unwrap();
    p.send_locations((0..20).map(location).collect()).unwrap();
    assert!(p.await_durable(10_000).unwrap());
    p.shutdown();
    drop(p);
    let q = TestDevice::new(&id, &emu).mqtt(&dead_mqtt()).start();
    let m = q.metrics().unwrap();
    assert_eq!((m.storage_resets, m.recovered), (0, 20), "the rebuilt database is healthy and holds what is owed: {m:?}");
}

/// The row cap evicting rows on an unreadable page: the DELETE fails, and it must not make every
/// later commit fail with it.
#[test]
fn evicting_rows_on_an_unreadable_page_leaves_commits_working() {
    let emu = emulator();
    let id = device("bad-page-evict");
    let ids = queue_offline(&id, &emu, 2_000);
    let db = outbox_db(&id);
    let (bad, page_size) = leaf_of(&db, &ids, 10);
    let capped = |c: &mut SdkConfig| {
        c.max_outbox_rows = 2_000;
        c.upload_window_secs = 3600;
    };
    let p = TestDevice::new(&id, &emu).mqtt(&dead_mqtt()).with(capped).start();
    damage_page(&db, bad.page, page_size);
    // Each new location evicts the oldest: the rows on the bad page among them.
    let new: Vec<String> = (0..100).map(|n| p.send_location(location(20_000 + n)).unwrap()).collect();
    assert!(p.await_durable(10_000).unwrap(), "commits go on after the failed eviction");
    let later = p.send_location(location(30_000)).unwrap();
    assert!(p.await_durable(10_000).unwrap(), "and keep going");
    assert_eq!(p.metrics().unwrap().dropped.get("outbox_full"), Some(&101));
    p.shutdown();
    drop(p);
    let mqtt = mqtt_subscriber(&id);
    let q = TestDevice::new(&id, &emu).with(capped).start();
    assert_eq!(q.metrics().unwrap().recovered, 2_000, "the newest 2,000 survived the restart");
    assert!(q.flush(WAIT.as_millis() as u64).unwrap().completed);
    let mut accepted_after = new;
    accepted_after.push(later);
    assert!(wait_for_all(&mqtt.collected, &accepted_after, WAIT), "everything accepted after the damage was delivered");
}

/// A 100,000-row outbox with one bad page in the middle: salvage steps over the page, keeps
/// every other row and every other table (dead letters, the reports' tally, the fetch state,
/// the run clock).
#[test]
fn salvage_steps_over_a_bad_page_and_keeps_every_table() {
    let emu = emulator();
    let id = device("salvage-all");
    fresh(&id);
    let p = TestDevice::new(&id, &emu).mqtt(&dead_mqtt()).start();
    let mut ids = Vec::new();
    for start in (0..100_000).step_by(10_000) {
        ids.extend(p.send_locations((start..start + 10_000).map(location).collect()).unwrap());
    }
    // Two seconds of observed time: the rows are that old on the run clock.
    std::thread::sleep(Duration::from_secs(2));
    assert!(p.await_durable(60_000).unwrap());
    let epoch = debug(&p)["reports"]["epoch"].as_str().unwrap().to_string();
    p.shutdown();
    drop(p);
    let db = outbox_db(&id);
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        for n in 1..=3 {
            conn.execute(
                "INSERT INTO dead_letters (id, event_id, payload, timestamp_ms, transport, error, observed_at_ms) VALUES (?1, ?2, X'7B7D', 1, 1, 'HTTP 400', 100)",
                rusqlite::params![n, format!("dead-{n}")],
            )
            .unwrap();
        }
        conn.execute("INSERT OR REPLACE INTO fetch_state (id, json) VALUES (1, '{\"failures\":4}')", []).unwrap();
    }
    let (bad, page_size) = leaf_of(&db, &ids, ids.len() / 2);
    damage_page(&db, bad.page, page_size);
    let readable = ids.len() - bad.event_ids.len();

    let started = Instant::now();
    let q = TestDevice::new(&id, &emu).mqtt(&dead_mqtt()).start();
    let took = started.elapsed();
    let m = q.metrics().unwrap();
    let d = debug(&q);
    eprintln!("salvaged {} of {readable} readable rows in {took:?}; dropped {:?}", m.recovered, m.dropped);
    assert_eq!(m.storage_resets, 1, "the corrupt file was moved aside");
    assert!(m.recovered as f64 >= 0.999 * readable as f64, "{} of {readable} readable rows salvaged", m.recovered);
    assert_eq!(m.dropped.get("unreadable"), Some(&(bad.event_ids.len() as u64)), "the rows of the bad page are counted: {:?}", m.dropped);
    assert_eq!(d["queue"]["deadLetters"], 3, "dead letters salvaged: {d}");
    assert_eq!(d["reports"]["epoch"], epoch.as_str(), "the reports' tally salvaged: the epoch goes on");
    assert_eq!(d["configFetch"]["state"]["failures"], 4, "the fetch state salvaged: {}", d["configFetch"]);
    assert!(m.queue_oldest_age_seconds >= 2.0, "the run clock salvaged: the rows keep their age ({} s)", m.queue_oldest_age_seconds);
}

/// The data directory deleted under a running publisher: noticed, reported, recreated, and
/// everything accepted is still there after a restart.
#[test]
fn a_data_directory_deleted_while_running_is_recreated_with_everything_owed() {
    let emu = emulator();
    let id = device("deleted-dir");
    let dir = fresh(&id);
    let p = TestDevice::new(&id, &emu).mqtt(&dead_mqtt()).start();
    let mut ids = p.send_locations((0..200).map(location).collect()).unwrap();
    assert!(p.await_durable(10_000).unwrap());
    std::fs::remove_dir_all(&dir).unwrap();
    ids.extend(p.send_locations((200..400).map(location).collect()).unwrap());
    assert!(p.await_durable(10_000).unwrap());
    let m = p.metrics().unwrap();
    assert!(m.storage_errors >= 1, "the loss of the file is a storage error: {m:?}");
    let recent = debug(&p)["recentErrors"].to_string();
    assert!(recent.contains("deleted"), "and logged: {recent}");
    assert!(outbox_db(&id).exists(), "the directory and the database were recreated");
    p.shutdown();
    drop(p);
    let mqtt = mqtt_subscriber(&id);
    let q = TestDevice::new(&id, &emu).start();
    assert_eq!(q.metrics().unwrap().recovered, 400, "everything accepted survived the deletion");
    assert!(q.flush(WAIT.as_millis() as u64).unwrap().completed);
    assert!(wait_for_all(&mqtt.collected, &ids, WAIT));
}

/// `maxStorageBytes` reached with a backlog far larger than the room left: the backlog commits
/// in bounded chunks, oldest first, so what fits is durable; a failed commit waits its retry
/// pause (locations arriving meanwhile are gathered, not each a new attempt).
#[test]
fn a_full_database_commits_what_fits_and_honours_its_retry_pause() {
    let emu = emulator();
    let id = device("full-progress");
    fresh(&id);
    let p = TestDevice::new(&id, &emu).mqtt(&dead_mqtt()).with(|c| c.max_storage_bytes = Some(2 << 20)).start();
    // About 7 MB of locations against 2 MB of room.
    for start in (0..20_000).step_by(10_000) {
        p.send_locations((start..start + 10_000).map(location).collect()).unwrap();
    }
    assert!(!p.await_durable(3_000).unwrap(), "not all of it fits");
    std::thread::sleep(Duration::from_secs(5));
    let before = p.metrics().unwrap().storage_errors;
    for n in 0..20 {
        p.send_location(location(50_000 + n)).unwrap();
        std::thread::sleep(Duration::from_secs(1));
    }
    let failed = p.metrics().unwrap().storage_errors - before;
    eprintln!("{failed} failed commits in 20 s at 1 location a second");
    assert!(failed <= 14, "{failed} failed commits in 20 s: the retry pause is not honoured");
    p.shutdown();
    drop(p);
    let q = TestDevice::new(&id, &emu).mqtt(&dead_mqtt()).start();
    let recovered = q.metrics().unwrap().recovered;
    eprintln!("{recovered} locations durable");
    assert!(recovered >= 2_000, "what fitted was committed: {recovered} locations durable");
}

/// A tmpfs mounted for one test, unmounted when dropped.
#[cfg(target_os = "linux")]
struct Tmpfs(PathBuf);

#[cfg(target_os = "linux")]
impl Tmpfs {
    /// A tmpfs of 4 MiB; `None` where mounting is not allowed (not root).
    fn mount(name: &str) -> Option<Tmpfs> {
        Tmpfs::mount_sized(name, "4m")
    }

    fn mount_sized(name: &str, size: &str) -> Option<Tmpfs> {
        let dir = std::env::temp_dir().join(format!("dualpub-tmpfs-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).ok()?;
        let ok = std::process::Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"]).arg(&dir).status().ok()?.success();
        ok.then_some(Tmpfs(dir))
    }

    fn remount(&self, mode: &str) {
        let ok = std::process::Command::new("mount").args(["-o", &format!("remount,{mode}")]).arg(&self.0).status().unwrap().success();
        assert!(ok, "remount {mode}");
    }
}

#[cfg(target_os = "linux")]
impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// A read-only file system (EROFS) under the data directory: a memory-only publisher, logged and
/// shown, never a refusal; the locations already on the read-only disk stay there for later.
#[cfg(target_os = "linux")]
#[test]
fn a_read_only_data_directory_gives_a_memory_only_publisher() {
    let Some(disk) = Tmpfs::mount("erofs") else {
        eprintln!("SKIPPED: mounting a tmpfs needs root (CI runs as root)");
        return;
    };
    let emu = emulator();
    let id = device("read-only");
    let existing = disk.0.join("existing").to_string_lossy().into_owned();
    let missing = disk.0.join("missing").to_string_lossy().into_owned();
    let p = TestDevice::new(&id, &emu).mqtt(&dead_mqtt()).with(|c| c.data_dir = existing.clone()).start();
    p.send_locations((0..5).map(location).collect()).unwrap();
    assert!(p.await_durable(5_000).unwrap());
    p.shutdown();
    drop(p);
    disk.remount("ro");
    for dir in [&existing, &missing] {
        let p = TestDevice::new(&id, &emu).rollout(100.0).with(|c| c.data_dir = dir.clone()).try_start();
        let p = p.unwrap_or_else(|e| panic!("a read-only data directory ({dir}) refused the app: {e}"));
        let r = debug(&p);
        assert_eq!(r["storage"]["memoryOnly"], true, "{r}");
        assert!(r["recentErrors"].to_string().contains("Read-only file system"), "{}", r["recentErrors"]);
        assert!(p.metrics().unwrap().storage_errors >= 1);
        let ids = p.send_locations((0..3).map(location).collect()).unwrap();
        assert!(!p.await_durable(500).unwrap(), "in memory is not durable");
        assert!(p.flush(10_000).unwrap().completed, "delivered from memory");
        assert_eq!(ids.len(), 3);
        p.shutdown();
    }
    disk.remount("rw");
    let p = TestDevice::new(&id, &emu).mqtt(&dead_mqtt()).with(|c| c.data_dir = existing.clone()).start();
    assert_eq!(p.metrics().unwrap().recovered, 5, "what the read-only disk held is still there");
    p.shutdown();
}

/// A data directory the app may not write (EACCES): as root nothing is refused, so the publisher
/// starts in a child process of this test running as `nobody` (setpriv), on a directory inside
/// one only root may enter.
#[cfg(target_os = "linux")]
#[test]
fn a_data_directory_without_permission_gives_a_memory_only_publisher() {
    const CHILD: &str = "DUALPUB_EACCES_DIR";
    if let Ok(dir) = std::env::var(CHILD) {
        let emu = emulator();
        let p = TestDevice::new(&device("eacces"), &emu).mqtt(&dead_mqtt()).with(|c| c.data_dir = dir).try_start();
        let p = p.unwrap_or_else(|e| panic!("a data directory without permission refused the app: {e}"));
        let r = debug(&p);
        assert_eq!(r["storage"]["memoryOnly"], true, "{r}");
        assert!(r["recentErrors"].to_string().contains("Permission denied"), "{}", r["recentErrors"]);
        p.shutdown();
        return;
    }
    let is_root = std::process::Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    let setpriv = std::process::Command::new("setpriv").arg("--version").output().is_ok_and(|o| o.status.success());
    if !is_root || !setpriv {
        eprintln!("SKIPPED: needs root and setpriv to run the publisher as another user");
        return;
    }
    let locked = std::env::temp_dir().join(format!("dualpub-eacces-{}", std::process::id()));
    std::fs::create_dir_all(&locked).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o700)).unwrap();
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", "a_data_directory_without_permission_gives_a_memory_only_publisher", "--nocapture", "--test-threads=1"])
        .env(CHILD, locked.join("device"))
        .env("HOME", "/tmp")
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&locked);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && text.contains("1 passed"), "the publisher as `nobody`:\n{text}");
}

// Figures, not checks (run one at a time, each alone in its process):
// cargo test -p dualpub --test hostile_disk -- --ignored --nocapture --exact <name>

/// A field of `/proc/self/status` in KiB (`VmRSS`, `VmHWM`).
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with(&format!("{field}:"))).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// CPU time (user + system, clock ticks of 10 ms) of this process's `dualpub-store` thread.
fn store_cpu_ticks() -> u64 {
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        if std::fs::read_to_string(task.path().join("comm")).unwrap_or_default().trim() == "dualpub-store" {
            let stat = std::fs::read_to_string(task.path().join("stat")).unwrap();
            let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split_whitespace().collect();
            return fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        }
    }
    panic!("no dualpub-store thread")
}

/// An offline device (both endpoints closed ports) on `dir`.
fn offline(id: &str, dir: &Path) -> SdkConfig {
    let mut c = config(id, &dead_mqtt(), "http://127.0.0.1:9", rollout(0.0));
    c.data_dir = dir.to_string_lossy().into_owned();
    c
}

/// Start-up on a 100,000-row outbox, healthy and with one bad page in the middle: time of
/// `new` and the growth of the peak resident memory (`VmHWM`) during it, each start a process of
/// its own (this test binary again, [`figures_start_child`]).
#[test]
#[ignore = "figures"]
fn figures_salvage_at_start_up() {
    let emu = emulator();
    let id = device("figures-salvage");
    let ids = queue_offline(&id, &emu, 100_000);
    let db = outbox_db(&id);
    let (bad, page_size) = leaf_of(&db, &ids, ids.len() / 2);
    let runs = 3;
    for (case, damaged) in [("healthy", false), ("one bad page", true)] {
        let mut figures = Vec::new();
        for run in 0..runs {
            let dir = std::env::temp_dir().join(format!("dualpub-figures-start-{}-{run}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::copy(&db, dir.join("outbox.db")).unwrap();
            if damaged {
                damage_page(&dir.join("outbox.db"), bad.page, page_size);
            }
            let out = std::process::Command::new(std::env::current_exe().unwrap())
                .args(["--ignored", "--exact", "figures_start_child", "--nocapture"])
                .env("DUALPUB_FIGURES_DIR", &dir)
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
            let line = text.lines().find(|l| l.starts_with("FIGURES")).unwrap_or_else(|| panic!("{text}")).to_string();
            figures.push(line);
            let _ = std::fs::remove_dir_all(&dir);
        }
        eprintln!("{case} ({} readable rows):\n  {}", ids.len() - if damaged { bad.event_ids.len() } else { 0 }, figures.join("\n  "));
    }
}

/// One start for [`figures_salvage_at_start_up`] (does nothing unless it sets the directory).
#[test]
#[ignore = "figures"]
fn figures_start_child() {
    let Ok(dir) = std::env::var("DUALPUB_FIGURES_DIR") else { return };
    let c = offline(&device("figures-child"), Path::new(&dir));
    let (hwm, rss) = (status_kib("VmHWM"), status_kib("VmRSS"));
    let started = Instant::now();
    let p = DualPublisher::new(c, None).unwrap();
    let took = started.elapsed();
    let m = p.metrics().unwrap();
    println!(
        "FIGURES new {:.0} ms, VmHWM +{:.1} MB (from {:.1} MB; VmRSS before {:.1} MB), recovered {}, resets {}",
        took.as_secs_f64() * 1000.0,
        (status_kib("VmHWM") - hwm) as f64 / 1024.0,
        hwm as f64 / 1024.0,
        rss as f64 / 1024.0,
        m.recovered,
        m.storage_resets
    );
    p.shutdown();
}

/// A database at `maxStorageBytes` (1 MiB) with about 60,000 locations queued and one arriving a
/// second: failed commits a second, the store thread's CPU, resident memory per queued location.
#[test]
#[ignore = "figures"]
fn figures_full_database() {
    let id = device("figures-full");
    let dir = fresh(&id);
    let mut c = offline(&id, &dir);
    c.max_storage_bytes = Some(1 << 20);
    let p = DualPublisher::new(c, None).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let idle = status_kib("VmRSS");
    for start in (0..60_000).step_by(10_000) {
        p.send_locations((start..start + 10_000).map(location).collect()).unwrap();
    }
    std::thread::sleep(Duration::from_secs(15));
    let queued = status_kib("VmRSS");
    let (errors, cpu, started) = (p.metrics().unwrap().storage_errors, store_cpu_ticks(), Instant::now());
    for n in 0..60 {
        p.send_location(location(100_000 + n)).unwrap();
        std::thread::sleep(Duration::from_secs(1));
    }
    let secs = started.elapsed().as_secs_f64();
    let m = p.metrics().unwrap();
    let durable = debug(&p)["queue"]["durableSeq"].clone();
    eprintln!(
        "FIGURES full database: {} queued (durable through seq {durable}), {:.2} failed commits/s, store thread {:.1} % of a core, VmRSS {:.1} MB idle -> {:.1} MB queued ({:.0} bytes per queued location)",
        m.mqtt.queue_depth,
        (m.storage_errors - errors) as f64 / secs,
        (store_cpu_ticks() - cpu) as f64 / secs,
        idle as f64 / 1024.0,
        queued as f64 / 1024.0,
        (queued - idle) as f64 * 1024.0 / 60_000.0
    );
    p.shutdown();
}

/// A full disk (a 24 MiB tmpfs filled up) with about 60,000 locations queued, then 6 MB freed:
/// what the next ten seconds commit, and what the WAL takes of the space.
#[cfg(target_os = "linux")]
#[test]
#[ignore = "figures"]
fn figures_full_disk() {
    let Some(disk) = Tmpfs::mount_sized("figures-full-disk", "24m") else {
        eprintln!("SKIPPED: needs root");
        return;
    };
    let dir = disk.0.join("device");
    let p = DualPublisher::new(offline(&device("figures-disk"), &dir), None).unwrap();
    p.send_location(location(0)).unwrap();
    assert!(p.await_durable(5_000).unwrap());
    let filler_path = disk.0.join("filler");
    {
        use std::io::Write;
        let mut filler = std::fs::File::create(&filler_path).unwrap();
        while filler.write_all(&[0u8; 65_536]).is_ok() {}
        let _ = filler.sync_all();
    }
    for start in (0..60_000).step_by(10_000) {
        p.send_locations((start..start + 10_000).map(location).collect()).unwrap();
    }
    std::thread::sleep(Duration::from_secs(10));
    let free = || {
        let out = std::process::Command::new("df").args(["--output=avail", "-B1"]).arg(&disk.0).output().unwrap();
        String::from_utf8_lossy(&out.stdout).lines().nth(1).unwrap().trim().parse::<u64>().unwrap() as f64 / 1e6
    };
    let wal = || std::fs::metadata(dir.join("outbox.db-wal")).map(|m| m.len()).unwrap_or(0) as f64 / 1e6;
    let durable = || debug(&p)["queue"]["durableSeq"].as_u64().unwrap();
    eprintln!("FIGURES before: free {:.1} MB, WAL {:.1} MB, durable through seq {}", free(), wal(), durable());
    let filler = std::fs::OpenOptions::new().write(true).open(&filler_path).unwrap();
    let len = filler.metadata().unwrap().len();
    filler.set_len(len - 6_000_000).unwrap();
    for s in 1..=10 {
        std::thread::sleep(Duration::from_secs(1));
        eprintln!("FIGURES {s:>2} s after freeing 6 MB: free {:.1} MB, WAL {:.1} MB, durable through seq {}", free(), wal(), durable());
    }
    p.shutdown();
}
