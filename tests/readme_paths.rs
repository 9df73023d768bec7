//! The public Rust paths README.md documents exist: its "Rust" example is compiled here
//! statement for statement (a test checks that every statement of it appears in this file), and
//! every module it names as public is used once.

use dualpub::{Location, Publisher, SdkConfig};

/// What README's example returns here.
type Outcome = Result<dualpub::FlushReport, Box<dyn std::error::Error>>;

/// README.md's Rust example, verbatim between the markers (only `data_dir` and `now_ms` are
/// given here).
fn readme_example(data_dir: &str, now_ms: i64) -> Outcome {
    // -- README --
    // The four required settings up front; everything else takes the defaults documented below.
    let config = SdkConfig::builder("d-1", "mqtts://broker.example.com:8883", "my-project", data_dir)
        .company_id("c-9")
        .remote_config("https://config.example.com/dualpub.json", 900)
        .build()?; // validates, as the constructor would
    let publisher = Publisher::new(config, None)?; // or dualpub::DualPublisher
    let event_id = publisher.send_location(Location {
        latitude: 52.52,
        longitude: 13.405,
        timestamp_ms: now_ms,
        accuracy: Some(5.0),
        speed: None,
        bearing: None,
        altitude: None,
        battery: None,
    })?;
    publisher.apply_config_json(r#"{"version": 3, "pubsubEnabled": true, "pubsubPercentage": 10}"#)?;
    let report = publisher.flush(std::time::Duration::from_secs(10)); // blocks: background threads only
                                                                      // -- end --
    assert_eq!(event_id.len(), 36, "a UUID");
    Ok(report)
}

/// Every statement of README's Rust block is in `readme_example` (compared without spaces and
/// trailing commas, so rustfmt's line breaks do not matter).
#[test]
fn this_file_holds_the_readme_example() {
    // Compiled, not run: it would wait 10 s in `flush` for a broker that is not there.
    let _compiled: fn(&str, i64) -> Outcome = readme_example;
    let readme = include_str!("../README.md");
    let block = readme.split("```rust\n").nth(1).and_then(|b| b.split("```").next()).expect("README has a Rust block");
    let strip = |s: &str| {
        s.lines().map(|l| l.split("//").next().unwrap_or("")).collect::<String>().replace(char::is_whitespace, "").replace(",}", "}").replace(",)", ")")
    };
    let here = strip(include_str!("readme_paths.rs"));
    for statement in strip(block).split_inclusive(';') {
        let statement = statement.trim_start_matches("usedualpub::{Location,Publisher,SdkConfig};");
        assert!(here.contains(statement), "README's Rust example changed: {statement}");
    }
}

/// The modules README names as the public Rust surface, one item each.
#[test]
fn the_public_modules_readme_names_exist() {
    let _ = dualpub::clock::ManualClock::new(0);
    let _: Option<dualpub::config::MigrationConfig> = None;
    let _: Option<dualpub::location::Location> = None;
    let _ = dualpub::logging::init;
    let _: Option<dualpub::metrics::MetricsSnapshot> = None;
    let b = dualpub::rollout::bucket(dualpub::RolloutAlgorithm::V1, "pubsub-migration", "d-1");
    let _ = dualpub::rollout::in_rollout(dualpub::RolloutAlgorithm::V1, b, 10.0);
    let _ = dualpub::wire::mqtt_topic("device/telemetry/{deviceId}", "d-1");
    let _: Option<dualpub::error::ValidationError> = None;
    let _: Option<dualpub::MetricsSnapshot> = None;
    let _: Option<(dualpub::SdkConfigBuilder, dualpub::FetchResult, dualpub::RolloutDecision)> = None;
}
