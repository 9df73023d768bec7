//! `dualpub verify`: both pipelines checked against each other, per rollout step, with a verdict
//! (docs/VERIFY.md). Reads what each pipeline received — a capture file (`dualpub demo
//! --capture`, or the same JSON lines written by any subscriber) — and the devices' migration
//! reports, joins by eventId and reconciles every missing location with its device's report.

pub mod engine;
pub mod findings;
pub mod gaps;
pub mod histogram;
pub mod html;
pub mod live;
pub mod output;
pub mod payload;
pub mod reports;
pub mod runs;
pub mod selftest;
pub mod sli;
pub mod stats;
pub mod synthetic;

use engine::{Findings, Pipeline, Thresholds, Verifier};
use std::io::BufRead;
use std::path::{Path, PathBuf};

/// Options of `dualpub verify`. The backend flags read the pipelines live instead of a capture,
/// so their help and rules are this command's own.
#[derive(clap::Args, Debug, Clone)]
#[command(
    mut_arg("mqtt_url", |a| a
        .value_name("URL")
        .conflicts_with("capture")
        .requires("pubsub_endpoint")
        .help("Instead of a capture: read the pipelines live for `--window-secs`: this MQTT broker (`device/telemetry/+`, persistent session `--session`) …")),
    mut_arg("pubsub_endpoint", |a| a
        .value_name("URL")
        .requires("mqtt_url")
        .help("… and this Pub/Sub endpoint (pull subscription `--subscription` on `--pubsub-topic`), with the migration reports of both")),
    mut_arg("pubsub_project", |a| a.help("The Pub/Sub project (live)")),
    mut_arg("pubsub_topic", |a| a.help("The locations topic (live)")),
)]
pub struct VerifyArgs {
    /// What the pipelines received: JSON lines of `{"pipeline": "mqtt"|"pubsub", "receivedAtMs",
    /// "payload"}` (the `dualpub demo --capture` format), `{"pipeline", "gap": {"fromMs",
    /// "toMs"}}` lines for the subscriber's own disconnections, and a `{"window": {"fromMs",
    /// "toMs"}}` line for when the subscribers read (else the first to the last arrival).
    #[arg(long, value_name = "FILE", required_unless_present_any = ["synthetic", "selftest", "mqtt_url"])]
    pub capture: Option<PathBuf>,
    /// Instead of a capture: read the pipelines live (the help of each flag is set above).
    #[command(flatten)]
    pub backend: crate::backend::BackendArgs,
    /// The pull subscription (live; created on the topic if missing).
    #[arg(long, default_value = "dualpub-verify")]
    pub subscription: String,
    /// The MQTT client id of the persistent session (live).
    #[arg(long, default_value = "dualpub-verify")]
    pub session: String,
    /// How long to read live, in seconds.
    #[arg(long, default_value_t = 60)]
    pub window_secs: u64,
    /// Prove the verifier: run a demo whose Pub/Sub loses, duplicates and delays known
    /// messages after acknowledging them, and check the verifier names exactly those.
    #[arg(long, conflicts_with_all = ["capture", "reports", "synthetic"])]
    pub selftest: bool,
    /// Instead of a capture: measure the verifier on N generated locations (both pipelines,
    /// 25 % on Pub/Sub too), printing events per second and memory per event.
    #[arg(long, value_name = "N", conflicts_with_all = ["capture", "reports"])]
    pub synthetic: Option<u64>,
    /// The devices' migration reports: JSON lines, each a report or a `{"report": …}` envelope
    /// (`dualpub demo --reports-out`). Without them every missing location is "unexplained".
    #[arg(long, value_name = "FILE")]
    pub reports: Option<PathBuf>,
    /// Most locations acknowledged by a device but never received a step may have.
    #[arg(long, default_value_t = 0)]
    pub max_acked_not_received: u64,
    /// Highest 95 % upper bound of the discrepancy rate a step may have (0.001 = 0.1 %).
    #[arg(long, default_value_t = 0.001)]
    pub max_rate_bound: f64,
    /// Forget a location once every pipeline it is owed has received it and its last copy is
    /// this much older than both pipelines' newest arrival, so memory stays bounded over a long
    /// window; a copy arriving later still is counted as a settled copy, not joined. A location
    /// missing somewhere is kept to the end whatever the grace.
    #[arg(long, default_value_t = 600)]
    pub grace_secs: u64,
    /// A location this much later on one pipeline than on the other is listed as late, in ms.
    #[arg(long, default_value_t = 5_000)]
    pub late_ms: i64,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Also write the findings as one self-contained HTML page (verdicts, charts, missing
    /// locations) to this file.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
}

impl VerifyArgs {
    /// A verifier with the thresholds and grace these options ask for.
    pub fn verifier(&self) -> Verifier {
        Verifier::new(self.thresholds()).with_grace(i64::try_from(self.grace_secs.saturating_mul(1_000)).unwrap_or(i64::MAX))
    }

    /// The thresholds these options ask for.
    pub fn thresholds(&self) -> Thresholds {
        Thresholds { max_acked_not_received: self.max_acked_not_received, max_rate_bound: self.max_rate_bound, late_ms: self.late_ms, ..Thresholds::default() }
    }
}

/// Runs `dualpub verify`; the exit code is 0 for pass, 3 for fail, 4 for too little traffic,
/// 2 for unreadable input (or an --html file that cannot be written).
pub fn run(args: VerifyArgs) -> i32 {
    if !(args.max_rate_bound > 0.0 && args.max_rate_bound < 1.0) {
        eprintln!("dualpub verify: --max-rate-bound must be in (0, 1)");
        return 2;
    }
    if args.selftest {
        return selftest::run();
    }
    if let Some(n) = args.synthetic {
        return synthetic::measure(n, &args);
    }
    if let (Some(mqtt_url), Some(endpoint)) = (&args.backend.mqtt_url, &args.backend.pubsub_endpoint) {
        let sources = live::Sources {
            mqtt_url: mqtt_url.clone(),
            session: args.session.clone(),
            pubsub_endpoint: endpoint.trim_end_matches('/').to_string(),
            project: args.backend.pubsub_project.clone(),
            topic: args.backend.pubsub_topic.clone(),
            subscription: args.subscription.clone(),
            window: std::time::Duration::from_secs(args.window_secs),
        };
        return match live::read(&sources, args.verifier()) {
            Ok(f) => report(&args, &f),
            Err(e) => {
                eprintln!("dualpub verify: {e}");
                2
            }
        };
    }
    let capture = args.capture.as_deref().unwrap_or(Path::new("-"));
    let read = read_capture(capture, args.verifier()).and_then(|mut v| match args.reports.as_deref() {
        Some(r) => read_reports(r, &mut v).map(|()| v),
        None => Ok(v),
    });
    match read {
        Ok(v) => report(&args, &v.finish()),
        Err(e) => {
            eprintln!("dualpub verify: {e}");
            2
        }
    }
}

/// Prints the findings as the options ask (table or JSON, and the HTML page); the exit code.
fn report(args: &VerifyArgs, findings: &Findings) -> i32 {
    if args.json {
        println!("{}", output::json(findings));
    } else {
        print!("{}", output::table(findings));
    }
    if let Some(path) = &args.html {
        if let Err(e) = std::fs::write(path, html::page(findings)) {
            eprintln!("dualpub verify: --html {}: {e}", path.display());
            return 2;
        }
    }
    exit_code(findings)
}

/// The exit code of a verdict.
pub fn exit_code(f: &Findings) -> i32 {
    match f.verdict {
        "pass" => 0,
        "fail" => 3,
        _ => 4,
    }
}

fn lines(path: &Path) -> Result<impl Iterator<Item = (usize, Result<String, String>)>, String> {
    Ok(lines_at(path)?.map(|(n, _, l)| (n, l)))
}

/// A file's lines with their numbers and byte offsets.
fn lines_at(path: &Path) -> Result<impl Iterator<Item = (usize, u64, Result<String, String>)>, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let shown = path.display().to_string();
    let mut reader = std::io::BufReader::new(file);
    let (mut n, mut offset) = (0usize, 0u64);
    Ok(std::iter::from_fn(move || {
        let mut line = String::new();
        let at = offset;
        n += 1;
        match reader.read_line(&mut line) {
            Ok(0) => None,
            Ok(read) => {
                offset += read as u64;
                let end = line.trim_end_matches(['\n', '\r']).len();
                line.truncate(end);
                Some((n, at, Ok(line)))
            }
            Err(e) => Some((n, at, Err(format!("{shown}: line {n}: {e}")))),
        }
    }))
}

/// A capture's message by its line's byte offset (a [`Verifier`]'s source).
pub fn capture_source(path: &Path) -> engine::Source {
    let path = path.to_path_buf();
    Box::new(move |offset| {
        use std::io::{Seek, SeekFrom};
        let mut file = std::fs::File::open(&path).ok()?;
        file.seek(SeekFrom::Start(offset)).ok()?;
        let mut line = String::new();
        std::io::BufReader::new(file).read_line(&mut line).ok()?;
        serde_json::from_str::<CaptureLine>(&line).ok()?.payload.map(String::into_bytes)
    })
}

/// One capture line: a message a pipeline received, the subscriber's own gap, or the window the
/// subscribers read in.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct CaptureLine {
    #[serde(default)]
    pipeline: Option<Pipeline>,
    #[serde(default)]
    received_at_ms: Option<i64>,
    #[serde(default)]
    payload: Option<String>,
    #[serde(default)]
    gap: Option<Span>,
    #[serde(default)]
    window: Option<Span>,
}

/// `{"fromMs", "toMs"}`.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Span {
    from_ms: i64,
    to_ms: i64,
}

/// What a capture holds besides its messages, read before them: the window, the subscribers'
/// own gaps, and each pipeline's last message line (after it that pipeline has ended).
#[derive(Default)]
struct Outline {
    window: Option<(i64, i64)>,
    gaps: Vec<(Pipeline, i64, i64)>,
    last_line: [usize; 2],
}

/// A capture line that names no pipeline is a window line; any other needs one.
fn pipeline_of(c: &CaptureLine, path: &Path, n: usize) -> Result<Pipeline, String> {
    c.pipeline.ok_or_else(|| format!("{}: line {n}: pipeline must be mqtt or pubsub", path.display()))
}

fn parse_line(path: &Path, n: usize, line: &str) -> Result<CaptureLine, String> {
    serde_json::from_str(line).map_err(|e| format!("{}: line {n}: {e}", path.display()))
}

/// Reads a capture's outline (every line is parsed, payloads are skipped).
fn outline(path: &Path) -> Result<Outline, String> {
    let mut o = Outline::default();
    for (n, line) in lines(path)? {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let c = parse_line(path, n, &line)?;
        if let Some(w) = &c.window {
            o.window = Some((w.from_ms, w.to_ms));
            continue;
        }
        let p = pipeline_of(&c, path, n)?;
        match (&c.payload, &c.gap) {
            (Some(_), _) => o.last_line[p.index()] = n,
            (None, Some(g)) => o.gaps.push((p, g.from_ms, g.to_ms)),
            (None, None) => return Err(format!("{}: line {n}: neither a payload nor a gap", path.display())),
        }
    }
    Ok(o)
}

/// A verifier reading a capture file, fed to it: its window (`{"window": {"fromMs", "toMs"}}`),
/// the subscribers' gaps, then the messages in file order, each with its line's offset (the
/// file is the verifier's source: the copies of a mismatched location are read again); after a
/// pipeline's last message it has ended, so settling no longer waits for it (docs/VERIFY.md,
/// "Memory").
pub fn read_capture(path: &Path, v: Verifier) -> Result<Verifier, String> {
    let o = outline(path)?;
    let v = v.with_source(capture_source(path));
    let mut v = match o.window {
        Some((from, to)) => v.with_window(from, to),
        None => v,
    };
    for (p, from, to) in &o.gaps {
        v.own_gap(*p, *from, *to);
    }
    for p in Pipeline::ALL {
        if o.last_line[p.index()] == 0 {
            v.ended(p);
        }
    }
    for (n, offset, line) in lines_at(path)? {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let c = parse_line(path, n, &line)?;
        let (Some(p), Some(payload)) = (c.pipeline, c.payload) else { continue };
        let at = c.received_at_ms.ok_or_else(|| format!("{}: line {n}: a message without receivedAtMs", path.display()))?;
        v.arrival_from(p, at, payload.as_bytes(), offset);
        if o.last_line[p.index()] == n {
            v.ended(p);
        }
    }
    Ok(v)
}

/// Feeds a reports file (reports, or envelopes with `report`) to `v`.
pub fn read_reports(path: &Path, v: &mut Verifier) -> Result<(), String> {
    for (n, line) in lines(path)? {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let doc: serde_json::Value = serde_json::from_str(&line).map_err(|e| format!("{}: line {n}: {e}", path.display()))?;
        // An envelope holds the report as an object; a bare report's own "report" is its version.
        v.report(doc.get("report").filter(|r| r.is_object()).unwrap_or(&doc));
    }
    Ok(())
}
