//! What `shutdown` releases while the app still holds the object. Alone in its binary: it
//! counts the process's threads and reads the process-wide log level.

mod common;

use common::*;
use dualpub::{DebugEvent, DebugListener};
use std::sync::Arc;

struct Quiet;
impl DebugListener for Quiet {
    fn on_debug_event(&self, _event: DebugEvent) {}
}

/// Threads of this process named `name`.
fn threads(name: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|d| d.flatten().filter(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == name)).count())
        .unwrap_or(0)
}

#[test]
fn shutdown_releases_listeners_and_threads_and_leaves_the_log_level_alone() {
    let emu = emulator();
    let before = threads("dualpub-debug");
    let publishers: Vec<_> = (0..10)
        .map(|i| {
            let p = TestDevice::new(&device(&format!("lifecycle-{i}")), &emu).mqtt(&dead_mqtt()).start();
            p.set_debug_listener(Some(Arc::new(Quiet))).unwrap();
            p
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(300)); // a new thread names itself
    if std::path::Path::new("/proc/self/task").exists() {
        assert_eq!(threads("dualpub-debug"), before + 10);
    }
    for p in &publishers {
        p.shutdown();
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    if std::path::Path::new("/proc/self/task").exists() {
        assert_eq!(threads("dualpub-debug"), before, "closed publishers (still referenced) keep no debug thread");
    }
    // Rust callers reach the core directly: debug mode after close must not raise the level.
    let core = dualpub::Publisher::new(TestDevice::new(&device("lifecycle-core"), &emu).mqtt(&dead_mqtt()).config(), None).unwrap();
    core.close();
    core.set_debug_mode(Some(true));
    assert_eq!(dualpub::logging::level(), dualpub::logging::QUIET, "a closed publisher raised the process-wide log level");
    drop(publishers);
}

#[test]
fn a_thousand_windowed_publishers_created_and_shut_down_leave_threads_handles_and_memory_flat() {
    // Each publisher with the default 30 s upload window: created, 5 locations, shut down
    // (which sends them in a last burst), dropped, its data directory removed. The broker is
    // mosquitto, out of this process (the embedded one keeps every message in memory for its
    // subscribers), so what is counted is the SDK's; an independent subscriber checks that every
    // location arrived and keeps only their eventIds. The emulator keeps nothing: no
    // subscription.
    const CYCLES: usize = 1_000;
    const WARM_UP: usize = 50;
    let broker_dir = tempfile::tempdir().unwrap();
    let broker = dualpub_testbed::mosquitto::Mosquitto::start(broker_dir.path(), None).unwrap();
    let emu = emulator();
    let id = device("lifecycle-cycles");
    let mqtt = subscribers::mqtt("127.0.0.1", broker.port, &format!("device/telemetry/{id}")).unwrap();
    let mut arrived = std::collections::HashSet::new();
    let collect = |arrived: &mut std::collections::HashSet<String>| arrived.extend(mqtt.collected.take().into_iter().map(|r| r.event_id));
    let mut baseline = None;
    for cycle in 0..CYCLES {
        let p = TestDevice::new(&id, &emu).mqtt(&broker.url()).rollout(100.0).start();
        let d = p.decision().unwrap();
        assert!(d.mqtt_enabled && d.pubsub_enabled, "{d:?}");
        for n in 0..5 {
            p.send_location(location(cycle * 5 + n)).unwrap();
        }
        p.shutdown();
        drop(p);
        std::fs::remove_dir_all(data_dir(&id)).unwrap();
        collect(&mut arrived);
        if cycle + 1 == WARM_UP {
            baseline = footprint();
        }
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while arrived.len() < CYCLES * 5 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
        collect(&mut arrived);
    }
    assert_eq!(arrived.len(), CYCLES * 5, "every location went out in its publisher's last burst");
    let Some((threads, fds, resident)) = baseline else { return }; // not Linux: nothing to count
    let (threads_after, fds_after, resident_after) = footprint().unwrap();
    eprintln!(
        "after {WARM_UP} and {CYCLES} cycles: threads {threads} -> {threads_after}, fds {fds} -> {fds_after}, resident {resident} -> {resident_after} bytes"
    );
    let cycles = CYCLES - WARM_UP;
    assert!(threads_after <= threads + 2, "threads grew from {threads} to {threads_after} over {cycles} cycles");
    assert!(fds_after <= fds + 2, "file descriptors grew from {fds} to {fds_after} over {cycles} cycles");
    // A leak of 4 KB a cycle would show; the allocator's own growth stays well below.
    assert!(resident_after <= resident + 4_000_000, "resident memory grew from {resident} to {resident_after} bytes over {cycles} cycles");
}
