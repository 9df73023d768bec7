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
