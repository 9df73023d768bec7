//! Logging: `log` records go to logcat (tag `dualpub`) on Android, to `os_log` (subsystem
//! `io.dualpub`) on iOS and to stderr elsewhere. Quiet by default (warnings and errors); debug
//! mode on any publisher raises the level to debug. The level is filtered in Rust, so nothing
//! below it is even formatted, let alone sent across the FFI.
//!
//! If the host process already installed a `log` logger (a Rust app, a test harness), the SDK
//! logs through it and leaves its level alone.

use log::LevelFilter;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::OnceLock;

/// Level when no publisher is in debug mode.
pub const QUIET: LevelFilter = LevelFilter::Warn;
/// Level while at least one publisher is in debug mode.
pub const VERBOSE: LevelFilter = LevelFilter::Debug;

static OWNS_LOGGER: AtomicBool = AtomicBool::new(false);
static DEBUG_PUBLISHERS: AtomicUsize = AtomicUsize::new(0);
static INIT: OnceLock<()> = OnceLock::new();

/// Installs the platform logger once per process (a no-op if the host installed one).
pub fn init() {
    INIT.get_or_init(|| {
        if install_platform_logger() {
            OWNS_LOGGER.store(true, Ordering::SeqCst);
        }
        apply_level();
    });
}

#[cfg(target_os = "android")]
fn install_platform_logger() -> bool {
    // init_once does nothing if a logger exists; an Android app rarely installs a Rust one.
    android_logger::init_once(android_logger::Config::default().with_tag("dualpub").with_max_level(LevelFilter::Trace));
    true
}

#[cfg(any(target_os = "ios", target_os = "macos"))]
fn install_platform_logger() -> bool {
    oslog::OsLogger::new("io.dualpub").level_filter(LevelFilter::Trace).init().is_ok()
}

#[cfg(not(any(target_os = "android", target_os = "ios", target_os = "macos")))]
fn install_platform_logger() -> bool {
    log::set_logger(&StderrLogger).is_ok()
}

/// stderr, one line per record.
#[cfg(not(any(target_os = "android", target_os = "ios", target_os = "macos")))]
struct StderrLogger;

#[cfg(not(any(target_os = "android", target_os = "ios", target_os = "macos")))]
impl log::Log for StderrLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record) {
        if self.enabled(record.metadata()) {
            eprintln!("[{}] {}", record.level(), record.args());
        }
    }

    fn flush(&self) {}
}

/// The level the SDK wants now: debug while any publisher is in debug mode, else quiet.
pub fn level() -> LevelFilter {
    if DEBUG_PUBLISHERS.load(Ordering::SeqCst) > 0 {
        VERBOSE
    } else {
        QUIET
    }
}

fn apply_level() {
    if OWNS_LOGGER.load(Ordering::SeqCst) {
        log::set_max_level(level());
    }
}

/// A publisher entered (`true`) or left (`false`) debug mode; takes effect at once.
pub fn debug_mode_changed(entered: bool) {
    if entered {
        DEBUG_PUBLISHERS.fetch_add(1, Ordering::SeqCst);
    } else {
        let _ = DEBUG_PUBLISHERS.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
    }
    apply_level();
}

/// A coordinate as logs and debug events may show it: rounded to 0.01° (about 1 km) unless the
/// app opted in to precise coordinates.
pub fn coordinate(value: f64, precise: bool) -> String {
    if precise {
        format!("{value}")
    } else {
        format!("{:.2}", value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coordinates_are_rounded_to_about_a_kilometre() {
        assert_eq!(coordinate(52.520_008, false), "52.52");
        assert_eq!(coordinate(-13.404_954, false), "-13.40");
        assert_eq!(coordinate(52.520_008, true), "52.520008");
    }
}
