//! `dualpub bench memory`: the resident memory of an offline device holding a backlog, against
//! its idle baseline (the target in docs/PERFORMANCE.md: at most 15 MB above idle with 100,000
//! locations queued, the outbox's default cap and a day at 1 Hz).
//!
//! Every measured device is a child process of this binary (`dualpub bench memory-device`), so
//! its figures are its own: it reads its own `/proc/self/status`. For each count the harness runs
//! a device that queues the locations one `sendLocation` at a time, one that imports them with
//! `sendLocations`, and a restart: a new device on the directory the first one left, which the
//! SDK restores when it starts. The table goes to stdout and, with the JSON figures, under `--out`.

use super::memory_device::Mode;
use serde::Serialize;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Options of `dualpub bench memory`.
#[derive(clap::Args, Debug, Clone)]
pub struct MemoryArgs {
    /// Locations per device: every case runs once per count.
    #[arg(long, value_delimiter = ',', default_values_t = [1_000, TARGET_COUNT])]
    pub counts: Vec<u64>,
    /// Cases to run (default: all): send, batch, restore (restore needs send or batch, whose
    /// directory it opens).
    #[arg(long, value_delimiter = ',')]
    pub cases: Vec<String>,
    /// 5,000 locations per device, start-up given less time to settle; checks only that the
    /// figures are sane and nothing was lost (for the test suite); exits 1 when a check fails.
    #[arg(long)]
    pub smoke: bool,
    /// Where the table and the JSON figures go (the devices' data directories too, while they run).
    #[arg(long, default_value = "target/memory")]
    pub out: PathBuf,
    /// Also print the figures as one JSON line after the table.
    #[arg(long)]
    pub json: bool,
}

/// The backlog the target is stated for: the outbox's default cap (`maxOutboxRows`).
pub const TARGET_COUNT: u64 = 100_000;

/// At most this many MB (10^6 bytes) above the idle baseline with [`TARGET_COUNT`] queued.
pub const TARGET_MB: f64 = 15.0;

/// Locations per device in `--smoke`.
const SMOKE_COUNT: u64 = 5_000;

/// Locations per `sendLocations` call in the batch case.
const BATCH: usize = 1_000;

/// Every case, in the order they run for a count (restore after the case whose directory it opens).
const CASES: [Mode; 3] = [Mode::Send, Mode::Batch, Mode::Restore];

fn case_name(m: Mode) -> &'static str {
    match m {
        Mode::Send => "send",
        Mode::Batch => "batch",
        Mode::Restore => "restore",
    }
}

fn case_label(m: Mode) -> String {
    match m {
        Mode::Send => "`sendLocation`, one at a time".into(),
        Mode::Batch => format!("`sendLocations`, {} per call", num(BATCH as u64)),
        Mode::Restore => "restart: restored by `new`".into(),
    }
}

/// One device's figures, relative to its baseline.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MemoryRow {
    case: String,
    count: u64,
    /// The idle baseline: the device's own before it queued anything, or for a restart that of
    /// the device that filled the directory (the same binary and config on an empty directory).
    idle_mb: f64,
    /// Resident once the backlog is durable (restart: once start-up settled).
    after_mb: f64,
    /// The high-water mark over the device's life.
    peak_mb: f64,
    peak_minus_idle_mb: f64,
    /// (peak − idle) / count.
    bytes_per_location: f64,
    /// Whether peak − idle ≤ [`TARGET_MB`]; `None` for a count other than [`TARGET_COUNT`].
    target_met: Option<bool>,
    /// What the device said (`dualpub bench memory-device`).
    device: serde_json::Value,
}

/// Everything a run measured.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// The cargo profile the binary was built with (the directory it runs from).
    profile: String,
    optimised: bool,
    allocator: &'static str,
    target_mb: f64,
    target_count: u64,
    rows: Vec<MemoryRow>,
    /// Checks that failed (a lost location, an insane figure).
    failures: Vec<String>,
}

/// Runs the harness; returns the exit code.
pub fn run(args: MemoryArgs) -> i32 {
    match run_all(&args) {
        Ok(true) => 0,
        Ok(false) => 1,
        Err(e) => {
            eprintln!("dualpub bench memory: {e}");
            1
        }
    }
}

fn kib_to_mb(kib: u64) -> f64 {
    kib as f64 * 1024.0 / 1e6
}

fn cases(wanted: &[String]) -> Result<Vec<Mode>, String> {
    if wanted.is_empty() {
        return Ok(CASES.to_vec());
    }
    let picked: Vec<Mode> = CASES.iter().copied().filter(|m| wanted.iter().any(|w| w == case_name(*m))).collect();
    if let Some(w) = wanted.iter().find(|w| !CASES.iter().any(|m| case_name(*m) == w.as_str())) {
        return Err(format!("unknown case {w:?} (send, batch, restore)"));
    }
    if picked.contains(&Mode::Restore) && !picked.iter().any(|m| *m != Mode::Restore) {
        return Err("restore opens the directory send or batch left: run one of them too".into());
    }
    Ok(picked)
}

/// The profile the running binary was built with: `target/<dir>/dualpub` (`debug` is `dev`).
fn profile() -> String {
    let exe = std::env::current_exe().ok();
    let dir = exe.as_deref().and_then(Path::parent).and_then(Path::file_name).and_then(|d| d.to_str()).unwrap_or("unknown");
    if dir == "debug" { "dev" } else { dir }.to_string()
}

fn run_all(args: &MemoryArgs) -> Result<bool, String> {
    let counts = if args.smoke { vec![SMOKE_COUNT] } else { args.counts.clone() };
    let cases = cases(&args.cases)?;
    std::fs::create_dir_all(&args.out).map_err(|e| format!("{}: {e}", args.out.display()))?;
    let settle_ms = if args.smoke { 300 } else { 1000 };
    let mut rows = Vec::new();
    for &n in &counts {
        rows.extend(run_count(args, &cases, n, settle_ms)?);
    }
    let failures = checks(&rows);
    let report = Report {
        profile: profile(),
        optimised: !cfg!(debug_assertions),
        allocator: "the system allocator (glibc malloc)",
        target_mb: TARGET_MB,
        target_count: TARGET_COUNT,
        rows,
        failures,
    };
    write(args, &report)?;
    for f in &report.failures {
        eprintln!("dualpub bench memory: FAILED: {f}");
    }
    if args.smoke && report.failures.is_empty() {
        eprintln!("dualpub bench memory --smoke: ok ({} devices checked)", report.rows.len());
    }
    Ok(report.failures.is_empty())
}

/// The table on stdout (and the JSON line with `--json`); both into files under `--out`.
fn write(args: &MemoryArgs, report: &Report) -> Result<(), String> {
    let table = markdown(report);
    print!("{table}");
    let json = serde_json::to_string(report).map_err(|e| e.to_string())?;
    if args.json {
        println!("{json}");
    }
    let stem = if args.smoke { "memory-smoke" } else { "memory" };
    let (md, js) = (args.out.join(format!("{stem}.md")), args.out.join(format!("{stem}.json")));
    std::fs::write(&md, &table).map_err(|e| format!("{}: {e}", md.display()))?;
    std::fs::write(&js, serde_json::to_string_pretty(report).unwrap_or(json)).map_err(|e| format!("{}: {e}", js.display()))?;
    eprintln!("dualpub bench memory: wrote {} and {}", md.display(), js.display());
    Ok(())
}

/// Every case for `n` locations, one device after the other.
fn run_count(args: &MemoryArgs, cases: &[Mode], n: u64, settle_ms: u64) -> Result<Vec<MemoryRow>, String> {
    let mut rows = Vec::new();
    // Removed once this count is done.
    let mut dirs = Vec::new();
    // The directory the first filling case left, and its idle baseline: the restart's.
    let mut filled: Option<(PathBuf, u64)> = None;
    for &mode in cases {
        let dir = match (&filled, mode) {
            (Some((d, _)), Mode::Restore) => d.clone(),
            _ => {
                let d = tempfile::Builder::new().prefix("data-").tempdir_in(&args.out).map_err(|e| e.to_string())?;
                let path = d.path().to_path_buf();
                dirs.push(d);
                path
            }
        };
        eprintln!("dualpub bench memory: {} × {n}", case_name(mode));
        let device = run_device(mode, n, &dir, settle_ms, args.smoke)?;
        let idle = match (&filled, mode) {
            (Some((_, idle)), Mode::Restore) => *idle,
            _ => kib(&device, "idle", "rssKib"),
        };
        if filled.is_none() && mode != Mode::Restore {
            filled = Some((dir, idle));
        }
        rows.push(row(mode, n, idle, device));
    }
    Ok(rows)
}

fn kib(device: &serde_json::Value, reading: &str, field: &str) -> u64 {
    device[reading][field].as_u64().unwrap_or(0)
}

fn row(mode: Mode, n: u64, idle_kib: u64, device: serde_json::Value) -> MemoryRow {
    let (after, peak) = (kib(&device, "after", "rssKib"), kib(&device, "after", "hwmKib"));
    let above = kib_to_mb(peak) - kib_to_mb(idle_kib);
    MemoryRow {
        case: case_name(mode).into(),
        count: n,
        idle_mb: kib_to_mb(idle_kib),
        after_mb: kib_to_mb(after),
        peak_mb: kib_to_mb(peak),
        peak_minus_idle_mb: above,
        bytes_per_location: above * 1e6 / n.max(1) as f64,
        target_met: (n == TARGET_COUNT).then_some(above <= TARGET_MB),
        device,
    }
}

/// Starts one device and waits for its `done` line (at most 10 minutes).
fn run_device(mode: Mode, n: u64, dir: &Path, settle_ms: u64, smoke: bool) -> Result<serde_json::Value, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut command = Command::new(exe);
    command.args(["bench", "memory-device", "--mode", case_name(mode), "--count", &n.to_string(), "--batch", &BATCH.to_string()]);
    command.arg("--settle-ms").arg(settle_ms.to_string()).arg("--data-dir").arg(dir);
    // The SDK's log lines (a refused connection before the network was reported down) are not ours to show.
    command.env("RUST_LOG", "error");
    let out = wait_for(command, Duration::from_secs(if smoke { 120 } else { 600 }))?;
    let line = out.lines().find_map(|l| l.strip_prefix("done ")).ok_or_else(|| format!("{} × {n}: no `done` line in {out:?}", case_name(mode)))?;
    serde_json::from_str(line).map_err(|e| format!("{} × {n}: {e}", case_name(mode)))
}

/// Runs `command` to its end (killing it after `timeout`); returns its stdout.
fn wait_for(mut command: Command, timeout: Duration) -> Result<String, String> {
    let program = format!("{command:?}");
    let mut child = command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().map_err(|e| format!("{program}: {e}"))?;
    let mut stdout = child.stdout.take().ok_or("no stdout")?;
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("{program}: still running after {timeout:?}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = reader.join().unwrap_or_default();
    if !status.success() {
        return Err(format!("{program}: {status}"));
    }
    Ok(out)
}

/// What every run checks: nothing was lost (the SDK owes every location on both transports,
/// dropped none, failed no commit) and the figures are sane.
fn checks(rows: &[MemoryRow]) -> Vec<String> {
    rows.iter().flat_map(|r| lost(r).into_iter().chain(insane(r)).map(move |f| format!("{} × {}: {f}", r.case, r.count))).collect()
}

fn lost(r: &MemoryRow) -> Vec<String> {
    let d = &r.device;
    let n = r.count;
    let u = |k: &str| d[k].as_u64().unwrap_or(u64::MAX);
    let mut f = Vec::new();
    // A restart is judged by what it owes alone: how a restore counts what it read is the SDK's.
    if r.case != "restore" && (u("accepted") != n || u("refused") != 0 || u("sdkAccepted") != n) {
        f.push(format!("accepted {} (the SDK counted {}), refused {}", u("accepted"), u("sdkAccepted"), u("refused")));
    }
    if u("owedMqtt") != n || u("owedPubsub") != n {
        f.push(format!("owes {} on MQTT and {} on Pub/Sub, not {n}", u("owedMqtt"), u("owedPubsub")));
    }
    let dropped = dropped(d);
    if dropped > 0 {
        f.push(format!("dropped {dropped}: {}", d["dropped"]));
    }
    if d["durable"] != serde_json::Value::Bool(true) || u("storageErrors") != 0 {
        f.push(format!("durable {}, storage errors {}", d["durable"], u("storageErrors")));
    }
    f
}

fn insane(r: &MemoryRow) -> Vec<String> {
    let mut f = Vec::new();
    if !(1.0..2000.0).contains(&r.idle_mb) {
        f.push(format!("idle baseline {:.1} MB", r.idle_mb));
    }
    if r.peak_mb + 1e-9 < r.after_mb || r.peak_mb + 1e-9 < r.idle_mb {
        f.push(format!("peak {:.1} MB below RSS after {:.1} MB or idle {:.1} MB", r.peak_mb, r.after_mb, r.idle_mb));
    }
    if !(r.bytes_per_location.is_finite() && r.bytes_per_location < 100_000.0) {
        f.push(format!("{:.0} bytes per location", r.bytes_per_location));
    }
    f
}

fn num(x: u64) -> String {
    let s = x.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The SDK's own count of what the device owes on each transport, and of what it dropped.
fn owed(device: &serde_json::Value) -> String {
    let u = |k: &str| device[k].as_u64().map(num).unwrap_or_else(|| "?".into());
    format!("{} / {}, {}", u("owedMqtt"), u("owedPubsub"), num(dropped(device)))
}

/// Locations the SDK dropped, every reason together (`dualpub_dropped_total`).
fn dropped(device: &serde_json::Value) -> u64 {
    device["dropped"].as_object().map(|m| m.values().filter_map(|v| v.as_u64()).sum()).unwrap_or(0)
}

fn mode_of(case: &str) -> Mode {
    CASES.into_iter().find(|m| case_name(*m) == case).unwrap_or(Mode::Send)
}

/// The markdown report: the table and how it was measured.
fn markdown(report: &Report) -> String {
    let mut s = format!(
        "Resident memory of an offline device with its backlog queued (`dualpub bench memory`; profile `{}`, {}; MB = 10^6 bytes)\n\n",
        report.profile, report.allocator
    );
    s.push_str(&format!(
        "| case | N | idle baseline MB | RSS after MB | peak MB | peak − idle MB | bytes per queued location | owed MQTT / Pub/Sub, dropped | target: ≤ {TARGET_MB:.0} MB above idle with {} queued |\n",
        num(TARGET_COUNT)
    ));
    s.push_str("|---|---:|---:|---:|---:|---:|---:|---|---|\n");
    for r in &report.rows {
        let verdict = match r.target_met {
            Some(true) => "met",
            Some(false) => "**not met**",
            None => "–",
        };
        s.push_str(&format!(
            "| {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.0} | {} | {verdict} |\n",
            case_label(mode_of(&r.case)),
            num(r.count),
            r.idle_mb,
            r.after_mb,
            r.peak_mb,
            r.peak_minus_idle_mb,
            r.bytes_per_location,
            owed(&r.device)
        ));
    }
    s.push_str(&method(report));
    s
}

fn method(report: &Report) -> String {
    format!(
        "\nEach row is its own process (`dualpub bench memory-device`, a child of the harness): a publisher with the SDK's default caps (`maxOutboxRows` 100,000), rollout 100 % so both transports owe every location, the network reported down (`setNetworkAvailable(false)`, called right after `new`) and both endpoints a closed loopback port, which refuses the attempt a restart's transports may make before that call reaches them. \
Idle baseline: `VmRSS` once `new` returned and start-up settled, before any location. RSS after: `VmRSS` once the last location was durable (`awaitDurable`, waited for after every {} locations: an app at 1 Hz never has more than one on its way to the disk). Peak: `VmHWM`, over the process's life. \
A restart is a new process on the directory the first row of its N left; the SDK reads the backlog in `new`; its RSS after is read once start-up settled and its baseline is that row's idle baseline (the same binary and config on an empty directory). \
Every row is checked that nothing was lost: the SDK's own counts (`metrics()`) owe all N on both transports, none dropped. Bytes per queued location = (peak − idle) / N. \
Build: `{}` ({}), {}; a phone's allocator differs (Android's scudo, iOS's libmalloc).\n",
        num(BATCH as u64),
        report.profile,
        if report.optimised { "optimised as for the phone, without LTO" } else { "the SDK unoptimised: a check of the harness, not a figure to quote" },
        report.allocator,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restore_needs_a_case_that_fills_the_directory() {
        assert_eq!(cases(&[]).unwrap(), CASES.to_vec());
        assert_eq!(cases(&["restore".into(), "send".into()]).unwrap(), vec![Mode::Send, Mode::Restore]);
        assert!(cases(&["restore".into()]).is_err());
        assert!(cases(&["sned".into()]).is_err());
    }

    #[test]
    fn a_row_is_measured_against_its_baseline_and_the_target_only_at_100_000() {
        let device = serde_json::json!({"after": {"rssKib": 20_000, "hwmKib": 30_000}});
        let r = row(Mode::Send, TARGET_COUNT, 10_000, device.clone());
        assert!((r.peak_minus_idle_mb - 20.48).abs() < 1e-9);
        assert!((r.bytes_per_location - 204.8).abs() < 1e-9);
        assert_eq!(r.target_met, Some(false));
        assert_eq!(row(Mode::Send, 1_000, 10_000, device).target_met, None);
    }

    #[test]
    fn a_lost_location_fails_the_run() {
        let ok = serde_json::json!({"accepted": 5, "refused": 0, "sdkAccepted": 5, "owedMqtt": 5, "owedPubsub": 5, "dropped": {}, "durable": true, "storageErrors": 0});
        assert!(lost(&row(Mode::Send, 5, 1, ok.clone())).is_empty());
        let mut short = ok;
        short["owedPubsub"] = 4.into();
        short["dropped"] = serde_json::json!({"outbox_full": 1});
        assert_eq!(lost(&row(Mode::Send, 5, 1, short)).len(), 2);
    }

    #[test]
    fn counts_have_thousands_separators() {
        assert_eq!((num(5), num(1_000), num(100_000), num(1_234_567)), ("5".into(), "1,000".into(), "100,000".into(), "1,234,567".into()));
    }
}
