//! A buggy host app: huge batches, listeners that loop, files others could read.

mod common;

use common::*;
use dualpub::{ConfigListener, DualPubError, DualPublisher, MigrationConfig, RolloutDecision};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

#[test]
fn a_batch_that_cannot_fit_is_refused_whole_and_never_evicts_itself() {
    let emu = emulator();
    let id = device("batch-limit");
    let p = TestDevice::new(&id, &emu).mqtt(&dead_mqtt()).with(|c| c.max_outbox_rows = 100).start();
    p.send_locations((0..80).map(location).collect()).unwrap();
    let e = p.send_locations((0..101).map(location).collect()).unwrap_err();
    assert!(matches!(e, DualPubError::BatchTooLarge { size: 101, limit: 100 }), "{e:?}");
    let m = p.metrics().unwrap();
    assert_eq!((m.accepted, m.dropped.values().sum::<u64>()), (80, 0), "nothing of the refused batch was accepted or evicted");
    let ids = p.send_locations((0..100).map(location).collect()).unwrap();
    let m = p.metrics().unwrap();
    assert_eq!(m.dropped.get("outbox_full"), Some(&80), "the older rows made room");
    assert_eq!((ids.len() as u64, m.mqtt.queue_depth), (100, 100), "the whole batch is queued");

    let big = TestDevice::new(&device("batch-cap"), &emu).mqtt(&dead_mqtt()).start();
    let e = big.send_locations((0..10_001).map(location).collect()).unwrap_err();
    assert!(matches!(e, DualPubError::BatchTooLarge { size: 10_001, limit: 10_000 }), "{e:?}");
    assert_eq!(big.send_locations((0..10_000).map(location).collect()).unwrap().len(), 10_000);
}

/// Applies the opposite config every time it is told of a change, `left` times.
struct FlipFlop {
    publisher: Mutex<Option<Arc<DualPublisher>>>,
    told: AtomicUsize,
    left: AtomicUsize,
}

impl ConfigListener for FlipFlop {
    fn on_decision_changed(&self, _old: RolloutDecision, new: RolloutDecision) {
        self.told.fetch_add(1, Ordering::SeqCst);
        if self.left.fetch_sub(1, Ordering::SeqCst) == 0 {
            self.left.store(0, Ordering::SeqCst);
            return;
        }
        let p = self.publisher.lock().unwrap().clone();
        if let Some(p) = p {
            let next = MigrationConfig { version: 2, pubsub_enabled: !new.pubsub_enabled, pubsub_percentage: 100.0, ..MigrationConfig::default() };
            p.apply_config(next).unwrap();
        }
    }
}

#[test]
fn a_listener_that_applies_configs_back_and_forth_loops_without_recursing() {
    let emu = emulator();
    let p = TestDevice::new(&device("flip-flop"), &emu).mqtt(&dead_mqtt()).start();
    let l = Arc::new(FlipFlop { publisher: Mutex::new(Some(p.clone())), told: AtomicUsize::new(0), left: AtomicUsize::new(5_000) });
    p.set_config_listener(Some(l.clone())).unwrap();
    // Each change is told after the apply that made it returns: 5,000 flips, stack depth one.
    p.apply_config(rollout(100.0)).unwrap();
    assert_eq!(l.told.load(Ordering::SeqCst), 5_001);
    *l.publisher.lock().unwrap() = None;
    let d = p.decision().unwrap();
    assert!(d.pubsub_enabled, "on, then 5,000 flips: on again: {d:?}");
}

#[cfg(unix)]
#[test]
fn the_outbox_is_readable_by_the_app_alone() {
    use std::os::unix::fs::PermissionsExt;
    let emu = emulator();
    let id = device("private-files");
    let dir = data_dir(&id);
    let _ = std::fs::remove_dir_all(&dir);
    let p = TestDevice::new(&id, &emu).mqtt(&dead_mqtt()).start();
    p.send_location(location(1)).unwrap();
    assert!(p.await_durable(5_000).unwrap());
    let mode = |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700, "the data directory");
    for f in ["outbox.db", "outbox.db-wal"] {
        assert_eq!(mode(&dir.join(f)), 0o600, "{f}");
    }
}

#[test]
fn corrupt_copies_older_than_the_age_cap_are_deleted() {
    let emu = emulator();
    let id = device("corrupt-copies");
    let dir = data_dir(&id);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let now = dualpub::clock::now_ms();
    let old = dir.join(format!("outbox.db.corrupt-{}", now - 200 * 3_600_000));
    let recent = dir.join(format!("outbox.db.corrupt-{}", now - 3_600_000));
    for f in [&old, &recent] {
        std::fs::write(f, b"locations of long ago").unwrap();
    }
    let _p = TestDevice::new(&id, &emu).mqtt(&dead_mqtt()).start();
    assert!(!old.exists(), "a copy older than maxOutboxAgeHours (168 h) is deleted");
    assert!(recent.exists(), "a recent copy is kept");
}

/// A tmpfs of 256 KiB, filled to the last byte, unmounted when dropped.
#[cfg(target_os = "linux")]
struct FullDisk(std::path::PathBuf);

#[cfg(target_os = "linux")]
impl FullDisk {
    fn mount(name: &str) -> Option<FullDisk> {
        let dir = std::env::temp_dir().join(format!("dualpub-full-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).ok()?;
        let ok = std::process::Command::new("mount").args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"]).arg(&dir).status().ok()?.success();
        if !ok {
            return None;
        }
        let disk = FullDisk(dir);
        std::fs::create_dir_all(disk.0.join("device")).ok()?;
        let mut filler = std::fs::File::create(disk.0.join("filler")).ok()?;
        use std::io::Write;
        while filler.write_all(&[0u8; 4096]).is_ok() {}
        Some(disk)
    }
}

#[cfg(target_os = "linux")]
impl Drop for FullDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[cfg(target_os = "linux")]
#[test]
fn a_full_disk_at_the_first_start_keeps_the_outbox_in_memory() {
    let Some(disk) = FullDisk::mount("first-start") else {
        eprintln!("SKIPPED: mounting a tmpfs needs root (CI runs as root)");
        return;
    };
    let emu = emulator();
    let data_dir = disk.0.join("device").to_string_lossy().into_owned();
    let p = TestDevice::new(&device("full-disk"), &emu).rollout(100.0).with(|c| c.data_dir = data_dir).try_start();
    let p = p.expect("a full disk is not a reason to refuse the app: the outbox goes to memory");
    let ids = p.send_locations((0..5).map(location).collect()).unwrap();
    assert!(!p.await_durable(1_000).unwrap(), "in memory is not durable: a kill would lose them");
    let r = p.flush(10_000).unwrap();
    assert!(r.completed, "{r:?}");
    assert_eq!(ids.len(), 5);
    let m = p.metrics().unwrap();
    assert_eq!((m.mqtt.published, m.pubsub.published), (5, 5));
    assert!(m.storage_errors >= 1, "counted");
    let report = p.debug_report().unwrap();
    assert!(report.contains(r#""memoryOnly":true"#) && report.contains("cannot create the outbox database"), "{report}");
    p.shutdown();
}

#[test]
fn every_apply_has_one_size_limit_and_the_persisted_copy_is_never_refused_for_size() {
    use std::collections::HashMap;
    let emu = emulator();
    let id = device("config-size");
    let p = TestDevice::new(&id, &emu).mqtt(&dead_mqtt()).rollout(100.0).start();
    // The host app merges 10,000 overrides and an emergency: more than a document may hold.
    let mut values: HashMap<String, String> = (0..10_000).map(|i| (format!("migration_override_dev-{i:05}"), r#"{"pubsubEnabled": true}"#.into())).collect();
    values.insert("emergency_mode".into(), "true".into());
    let e = p.apply_remote_values(values).unwrap_err();
    assert!(matches!(&e, DualPubError::InvalidConfig { reason } if reason.contains("too large")), "refused at apply, where the app hears of it: {e:?}");
    assert!(p.decision().unwrap().pubsub_enabled, "the config in force stays");
    p.shutdown();
    drop(p);

    // A last known good copy larger than that (written by an earlier build) still wins at an
    // offline cold start: here an emergency.
    let db = outbox_db(&id);
    let overrides: serde_json::Map<String, serde_json::Value> =
        (0..10_000).map(|i| (format!("dev-{i:05}"), serde_json::json!({"pubsubEnabled": true}))).collect();
    let big =
        serde_json::json!({"version": 9, "emergencyMode": true, "pubsubEnabled": true, "pubsubPercentage": 100, "deviceOverrides": overrides}).to_string();
    assert!(big.len() > 256 * 1024);
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute("INSERT OR REPLACE INTO config (id, json, source, applied_at_ms) VALUES (1, ?1, 'fetched', 1)", [&big]).unwrap();
    drop(conn);
    let q = TestDevice::new(&id, &emu).mqtt(&dead_mqtt()).rollout(100.0).start();
    let status = q.config_status().unwrap();
    assert_eq!((status.source, status.version), (dualpub::ConfigSource::Persisted, 9));
    let d = q.decision().unwrap();
    assert!(!d.pubsub_enabled && d.reason == dualpub::DecisionReason::Emergency, "{d:?}");
}

#[test]
fn a_removed_override_key_removes_the_override() {
    use std::collections::HashMap;
    let emu = emulator();
    let id = device("override-removal");
    let p = TestDevice::new(&id, &emu).mqtt(&dead_mqtt()).start();
    let key = format!("migration_override_{id}");
    let on = p.apply_remote_values(HashMap::from([(key, r#"{"pubsubEnabled": true}"#.to_string())])).unwrap();
    assert!(on.pubsub_enabled && on.reason == dualpub::DecisionReason::DeviceOverride);
    let off = p.apply_remote_values(HashMap::from([("pubsub_enabled".to_string(), "true".to_string())])).unwrap();
    assert!(!off.pubsub_enabled && off.reason == dualpub::DecisionReason::RolloutOut, "the override outlived its key: {off:?}");
}

#[test]
fn dead_letters_are_capped_by_count_and_age_and_paged() {
    let emu = emulator();
    let id = device("dead-letter-cap");
    let p = TestDevice::new(&id, &emu).mqtt(&dead_mqtt()).start();
    p.shutdown();
    drop(p);
    // A topic that refused everything for a long while: 10,050 dead letters, 20 of them (ids
    // 100–119) kept for 200 h of the SDK's run clock (past the 168 h cap), the rest for 1 s.
    let db = outbox_db(&id);
    let conn = rusqlite::Connection::open(&db).unwrap();
    let hour = 3_600_000i64;
    conn.execute_batch("BEGIN").unwrap();
    conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('observed_ms', ?1)", [300 * hour]).unwrap();
    for i in 1..=10_050i64 {
        let at = if (100..120).contains(&i) { 100 * hour } else { 300 * hour - 1_000 };
        conn.execute(
            "INSERT INTO dead_letters (id, event_id, payload, timestamp_ms, transport, error, observed_at_ms) VALUES (?1, ?2, ?3, 1, 1, 'HTTP 400', ?4)",
            rusqlite::params![i, format!("e{i}"), br#"{"latitude":52.5}"#.to_vec(), at],
        )
        .unwrap();
    }
    conn.execute_batch("COMMIT").unwrap();
    drop(conn);
    let p = TestDevice::new(&id, &emu).mqtt(&dead_mqtt()).start();
    let letters = p.dead_letters().unwrap();
    assert_eq!(letters.len(), 9_980, "at most 10,000 are kept, and none past the age cap");
    assert_eq!(letters[0].event_id, "e51", "the oldest were dropped");
    let m = p.metrics().unwrap();
    assert_eq!(m.dropped.get("dead_letters_full"), Some(&50), "{:?}", m.dropped);
    assert_eq!(m.dropped.get("dead_letter_too_old"), Some(&20), "{:?}", m.dropped);
    let page = p.dead_letters_page(letters[9_977].id, 10).unwrap();
    assert_eq!(page.iter().map(|d| d.event_id.as_str()).collect::<Vec<_>>(), ["e10049", "e10050"]);
    let ids: Vec<i64> = (1..=30_000).collect();
    assert_eq!(p.retry_dead_letters(ids).unwrap(), 9_980, "a long id list is handled whole");
    assert!(p.dead_letters().unwrap().is_empty());
}

#[test]
fn a_clock_set_forward_while_the_app_was_off_ages_no_durable_row() {
    let emu = emulator();
    let id = device("clock-jump");
    let p = TestDevice::new(&id, &emu).mqtt(&dead_mqtt()).start();
    p.send_locations((0..100).map(location).collect()).unwrap();
    assert!(p.await_durable(5_000).unwrap());
    p.shutdown();
    drop(p);
    // The wall clock moved 170 h ahead before the next start (past the 168 h age cap): as far
    // as wall-clock differences go, every stored row is now a week old.
    let db = outbox_db(&id);
    let conn = rusqlite::Connection::open(&db).unwrap();
    assert_eq!(conn.execute("UPDATE outbox SET accepted_at_ms = accepted_at_ms - 170 * 3600 * 1000", []).unwrap(), 100);
    drop(conn);
    let p = TestDevice::new(&id, &emu).mqtt(&dead_mqtt()).start();
    p.send_location(location(100)).unwrap();
    let m = p.metrics().unwrap();
    assert_eq!(m.dropped.get("too_old"), None, "{:?}", m.dropped);
    assert_eq!((m.recovered, m.mqtt.queue_depth), (100, 101));
}

#[test]
fn ids_that_pass_for_other_ids_or_topics_are_refused() {
    let emu = emulator();
    for bad in ["d\u{2215}evil", "d\u{ff0b}x", "d\u{ff03}x", "\u{202e}live-d", "d-1\u{200b}", "d-\u{fdd0}", "$SYS-1", "cafe\u{301}"] {
        let e = TestDevice::new(bad, &emu).mqtt(&dead_mqtt()).try_start().err();
        assert!(matches!(e, Some(DualPubError::InvalidId { .. })), "{bad:?} was accepted as a device id: {e:?}");
    }
    let ok = TestDevice::new(&device("caf\u{e9}"), &emu).mqtt(&dead_mqtt()).try_start();
    assert!(ok.is_ok(), "an NFC id with an accent is fine: {:?}", ok.err());
}

#[test]
fn what_is_readable_in_a_corrupt_database_is_salvaged() {
    let emu = emulator();
    let id = device("salvage");
    let p = TestDevice::new(&id, &emu).mqtt(&dead_mqtt()).start();
    p.apply_config(MigrationConfig { version: 7, emergency_mode: true, ..MigrationConfig::default() }).unwrap();
    p.send_locations((0..50).map(location).collect()).unwrap();
    assert!(p.await_durable(5_000).unwrap());
    p.shutdown();
    drop(p);
    // One page goes bad: the (empty) dead-letter table's. The outbox and the config are intact.
    let db = outbox_db(&id);
    let (root, page): (i64, i64) = {
        let conn = rusqlite::Connection::open(&db).unwrap();
        let root = conn.query_row("SELECT rootpage FROM sqlite_master WHERE name = 'dead_letters'", [], |r| r.get(0)).unwrap();
        (root, conn.query_row("PRAGMA page_size", [], |r| r.get(0)).unwrap())
    };
    {
        use std::io::{Seek, Write};
        let mut f = std::fs::OpenOptions::new().write(true).open(&db).unwrap();
        f.seek(std::io::SeekFrom::Start(((root - 1) * page) as u64)).unwrap();
        f.write_all(&[0xEE; 64]).unwrap();
    }
    let p = TestDevice::new(&id, &emu).mqtt(&dead_mqtt()).start();
    let m = p.metrics().unwrap();
    assert_eq!(m.storage_resets, 1, "the corrupt file was moved aside");
    assert_eq!((m.recovered, m.mqtt.queue_depth), (50, 50), "its readable locations were carried over");
    let status = p.config_status().unwrap();
    assert_eq!((status.source, status.version), (dualpub::ConfigSource::Persisted, 7), "and the last known good config (an emergency)");
    assert!(!p.decision().unwrap().pubsub_enabled);
}

/// Applies a config to `other` when told of a change, once.
struct CallsTheOther {
    other: Mutex<Option<Arc<DualPublisher>>>,
    told: AtomicUsize,
}

impl ConfigListener for CallsTheOther {
    fn on_decision_changed(&self, _old: RolloutDecision, _new: RolloutDecision) {
        if self.told.fetch_add(1, Ordering::SeqCst) == 0 {
            if let Some(o) = self.other.lock().unwrap().clone() {
                o.apply_config(MigrationConfig { version: 3, pubsub_enabled: true, pubsub_percentage: 100.0, ..MigrationConfig::default() }).unwrap();
            }
        }
    }
}

#[test]
fn a_listener_that_applies_a_config_to_another_publisher_gets_that_one_told_at_once() {
    let emu = emulator();
    let a = TestDevice::new(&device("listener-a"), &emu).mqtt(&dead_mqtt()).start();
    let b = TestDevice::new(&device("listener-b"), &emu).mqtt(&dead_mqtt()).start();
    let la = Arc::new(CallsTheOther { other: Mutex::new(Some(b.clone())), told: AtomicUsize::new(0) });
    let lb = Arc::new(CallsTheOther { other: Mutex::new(None), told: AtomicUsize::new(0) });
    a.set_config_listener(Some(la.clone())).unwrap();
    b.set_config_listener(Some(lb.clone())).unwrap();
    a.apply_config(rollout(100.0)).unwrap();
    assert_eq!(la.told.load(Ordering::SeqCst), 1);
    assert_eq!(lb.told.load(Ordering::SeqCst), 1, "B's change, made inside A's listener, was told before A's apply returned");
    *la.other.lock().unwrap() = None;
}
