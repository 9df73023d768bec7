//! `dualpub`: the demo and ops CLI (dev-only; never linked into the mobile library).
//!
//! - `dualpub demo …` drives a simulated fleet through the real SDK and verifies delivery with
//!   independent subscribers.
//! - `dualpub verify --capture F --reports R` checks both pipelines against each other per
//!   rollout step, with a verdict (docs/VERIFY.md).
//! - `dualpub bucket --device-id ID …` answers "is this device in the Pub/Sub cohort?".
//! - `dualpub bench radio [--smoke]` measures what the SDK and the seed design's peer cost a
//!   phone's cellular radio (docs/RADIO.md).
//! - `dualpub bench memory [--smoke]` measures the resident memory of an offline device holding
//!   its backlog (docs/PERFORMANCE.md).
//! - `dualpub bench throughput [--smoke]` measures the SDK's window-0 throughput next to bare
//!   rumqttc + reqwest loops, and a backlog drain (docs/PERFORMANCE.md).
//! - `dualpub emulator [--port P]` runs the local Pub/Sub emulator.
//! - `dualpub config-server --file F [--port P]` serves a migration config document (with ETag
//!   and 304; `POST /_control/mode` makes it answer 304/429/500/slowly/garbage).

mod backend;
mod bench;
mod demo;
mod verify;

use clap::{Parser, Subcommand, ValueEnum};
use dualpub::rollout::{self, RolloutAlgorithm};

#[derive(Parser)]
#[command(name = "dualpub", version, about = "dualpub demo and ops tool")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum Algorithm {
    V1,
    Crc32,
}

#[derive(Subcommand)]
enum Command {
    /// Run a simulated fleet through the SDK against MQTT and Pub/Sub and verify delivery.
    Demo(Box<demo::DemoArgs>),
    /// Check both pipelines against each other per rollout step, with a verdict (docs/VERIFY.md).
    Verify(Box<verify::VerifyArgs>),
    /// Measurements (docs/RADIO.md, docs/PERFORMANCE.md).
    #[command(subcommand)]
    Bench(bench::Bench),
    /// Print a device's rollout bucket and whether it is in the Pub/Sub cohort.
    Bucket {
        /// The device id (exactly as the app passes it).
        #[arg(long)]
        device_id: String,
        /// Rollout salt.
        #[arg(long, default_value = dualpub::config::DEFAULT_SALT)]
        salt: String,
        /// Bucketing algorithm.
        #[arg(long, value_enum, default_value = "v1")]
        algorithm: Algorithm,
        /// Rollout percentage (0–100); without it "pubsub" is null.
        #[arg(long)]
        percentage: Option<f64>,
    },
    /// Run the local Pub/Sub emulator until killed.
    Emulator {
        /// Port on 127.0.0.1 (0 = any free port).
        #[arg(long, default_value_t = 8085)]
        port: u16,
        /// Require this bearer token on every request.
        #[arg(long)]
        bearer_token: Option<String>,
    },
    /// Serve a migration config file (re-read at every request) until killed, for
    /// `demo --config-url` and apps under test.
    ConfigServer {
        /// The JSON document to serve.
        #[arg(long)]
        file: std::path::PathBuf,
        /// Port on 127.0.0.1 (0 = any free port).
        #[arg(long, default_value_t = 8086)]
        port: u16,
    },
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn,rumqttd=off")).init();
    let code = match Cli::parse().command {
        Command::Demo(args) => demo::run(*args, &verify_demo),
        Command::Verify(args) => verify::run(*args),
        Command::Bench(b) => bench::run(b),
        Command::Bucket { device_id, salt, algorithm, percentage } => bucket(&device_id, &salt, algorithm, percentage),
        Command::Emulator { port, bearer_token } => emulator(port, bearer_token),
        Command::ConfigServer { file, port } => config_server(file, port),
    };
    std::process::exit(code);
}

/// `demo --verify`: the verifier over what the demo's subscribers received, its own gaps and the
/// reports, with the default thresholds. Wired here so that neither the demo nor the verifier
/// imports the other.
fn verify_demo(d: &demo::Deliveries, reports: &[serde_json::Value]) -> Result<demo::Verdict, String> {
    let f = verify::live::verify_received(d.window, &d.mqtt, &d.pubsub, &d.mqtt_gaps, reports, verify::engine::Thresholds::default());
    let findings = serde_json::to_value(&f).map_err(|e| e.to_string())?;
    Ok(demo::Verdict { table: verify::output::table(&f), findings, failed: f.verdict == "fail" })
}

fn bucket(device_id: &str, salt: &str, algorithm: Algorithm, percentage: Option<f64>) -> i32 {
    let algorithm = match algorithm {
        Algorithm::V1 => RolloutAlgorithm::V1,
        Algorithm::Crc32 => RolloutAlgorithm::Crc32,
    };
    if let Some(p) = percentage {
        if !(p.is_finite() && (0.0..=100.0).contains(&p)) {
            eprintln!("dualpub bucket: --percentage must be in [0, 100], got {p}");
            return 2;
        }
    }
    let b = rollout::bucket(algorithm, salt, device_id);
    let pubsub = percentage.map(|p| rollout::in_rollout(algorithm, b, p));
    println!("{}", serde_json::json!({"bucket": b, "pubsub": pubsub}));
    0
}

fn emulator(port: u16, bearer_token: Option<String>) -> i32 {
    use std::io::Write;
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("dualpub emulator: {e}");
            return 1;
        }
    };
    rt.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("dualpub emulator: cannot listen on 127.0.0.1:{port}: {e}");
                return 1;
            }
        };
        let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
        println!("dualpub emulator listening on http://{addr}");
        let _ = std::io::stdout().flush();
        let emu = dualpub_emulator::new_emulator(&dualpub_emulator::EmulatorOptions { port, bearer_token });
        let stop = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        match dualpub_emulator::serve(listener, emu, stop).await {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("dualpub emulator: {e}");
                1
            }
        }
    })
}

fn config_server(file: std::path::PathBuf, port: u16) -> i32 {
    if !file.is_file() {
        eprintln!("dualpub config-server: {} is not a file", file.display());
        return 2;
    }
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("dualpub config-server: {e}");
            return 1;
        }
    };
    let stop = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    match rt.block_on(dualpub_testbed::config_server::serve_until(file, port, stop)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("dualpub config-server: cannot serve on 127.0.0.1:{port}: {e}");
            1
        }
    }
}
