//! A hostile disk: a read-only data directory. Every test here goes through the public API.

mod common;

use common::*;
use dualpub::DualPublisher;
use std::path::PathBuf;

fn debug(p: &DualPublisher) -> serde_json::Value {
    serde_json::from_str(&p.debug_report().unwrap()).unwrap()
}

/// A tmpfs mounted for one test, unmounted when dropped.
#[cfg(target_os = "linux")]
struct Tmpfs(PathBuf);

#[cfg(target_os = "linux")]
impl Tmpfs {
    /// A tmpfs of 4 MiB; `None` where mounting is not allowed (not root).
    fn mount(name: &str) -> Option<Tmpfs> {
        let dir = std::env::temp_dir().join(format!("dualpub-tmpfs-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).ok()?;
        let ok = std::process::Command::new("mount").args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"]).arg(&dir).status().ok()?.success();
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
