//! What the benches read from /proc (Linux): a process's or a thread's CPU time and command name
//! (`/proc/<pid>/stat`), a process's child, this process's threads, and this process's memory
//! figures (`/proc/self/status`).

/// user + system CPU time of `pid` in ms (/proc/<pid>/stat, clock ticks of 10 ms).
pub fn cpu_ms(pid: u32) -> Option<f64> {
    parse_cpu_ms(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// utime + stime of a `/proc/<pid>/stat` line, in ms (the command name may hold spaces and
/// parentheses: fields are counted after the last `)`).
pub fn parse_cpu_ms(stat: &str) -> Option<f64> {
    let after = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) * 10.0)
}

/// The command name in a `/proc/…/stat` line (between the first `(` and the last `)`).
pub fn comm_of(stat: &str) -> Option<&str> {
    Some(&stat[stat.find('(')? + 1..stat.rfind(')')?])
}

/// The first child of `pid` (`/proc/<pid>/task/<pid>/children`), once it exists.
pub fn first_child(pid: u32) -> Option<u32> {
    let children = format!("/proc/{0}/task/{0}/children", pid);
    std::fs::read_to_string(children).ok().and_then(|s| s.split_whitespace().next().and_then(|p| p.parse().ok()))
}

/// A child process of this one named `name` (mosquitto, started by the test bed).
pub fn child_pid(name: &str) -> Option<u32> {
    let me = std::process::id().to_string();
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
        let ppid = stat.rsplit_once(')')?.1.split_whitespace().nth(1)?;
        (comm_of(&stat)? == name && ppid == me).then_some(pid)
    })
}

/// Every thread of this process (/proc/self/task): its id and its `stat` line (a thread that
/// ends while they are read is left out).
pub fn own_threads() -> Vec<(u32, String)> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return Vec::new() };
    tasks
        .flatten()
        .filter_map(|task| {
            let stat = std::fs::read_to_string(task.path().join("stat")).ok()?;
            let tid = task.file_name().to_str().and_then(|t| t.parse::<u32>().ok())?;
            Some((tid, stat))
        })
        .collect()
}

/// The memory figures of `/proc/self/status`, in KiB.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// Resident set now (`VmRSS`).
    pub rss_kib: u64,
    /// The resident set's high-water mark over the process's life (`VmHWM`).
    pub hwm_kib: u64,
    /// The anonymous part of the resident set (heap, stacks: `RssAnon`).
    pub anon_kib: u64,
    /// The file-backed part (the binary's pages, mapped files: `RssFile`).
    pub file_kib: u64,
}

impl Status {
    /// This process's figures now.
    pub fn read() -> Result<Status, String> {
        let text = std::fs::read_to_string("/proc/self/status").map_err(|e| format!("/proc/self/status: {e}"))?;
        Status::parse(&text).ok_or_else(|| "no VmRSS/VmHWM in /proc/self/status".into())
    }

    /// The figures of a `/proc/<pid>/status` text (`None` without `VmRSS` or `VmHWM`).
    pub fn parse(text: &str) -> Option<Status> {
        let field = |name: &str| {
            text.lines().find_map(|l| l.strip_prefix(name).and_then(|rest| rest.trim_start_matches(':').split_whitespace().next()?.parse::<u64>().ok()))
        };
        Some(Status { rss_kib: field("VmRSS")?, hwm_kib: field("VmHWM")?, anon_kib: field("RssAnon").unwrap_or(0), file_kib: field("RssFile").unwrap_or(0) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_is_read_after_the_command_name() {
        let stat = "4242 (java (main) x) S 1 4242 4242 0 -1 4194304 100 0 0 0 250 37 0 0 20 0 20 0 99 0 0";
        assert_eq!(parse_cpu_ms(stat), Some(2870.0));
        assert_eq!(parse_cpu_ms("garbage"), None);
    }

    #[test]
    fn the_command_name_is_read_between_the_outer_parentheses() {
        assert_eq!(comm_of("4242 (dualpub-store) S 1 4242"), Some("dualpub-store"));
        assert_eq!(comm_of("4242 (java (main) x) S 1 4242"), Some("java (main) x"));
        assert_eq!(comm_of("garbage"), None);
    }

    #[test]
    fn the_status_figures_are_read_in_kib() {
        let text = "Name:\tdualpub\nVmPeak:\t  300000 kB\nVmHWM:\t   96000 kB\nVmRSS:\t   12000 kB\nRssAnon:\t    9000 kB\nRssFile:\t    3000 kB\n";
        let s = Status::parse(text).unwrap();
        assert_eq!((s.rss_kib, s.hwm_kib, s.anon_kib, s.file_kib), (12000, 96000, 9000, 3000));
        assert!(Status::parse("Name:\tx\n").is_none());
    }

    #[test]
    fn this_process_is_read_from_proc() {
        let me = std::process::id();
        assert!(cpu_ms(me).is_some_and(|ms| ms >= 0.0));
        let threads = own_threads();
        assert!(threads.iter().any(|(tid, stat)| *tid == me && parse_cpu_ms(stat).is_some()), "{threads:?}");
        let s = Status::read().unwrap();
        assert!(s.rss_kib > 0 && s.hwm_kib >= s.rss_kib, "{s:?}");
        assert_eq!(child_pid("no-such-child-process"), None);
    }
}
