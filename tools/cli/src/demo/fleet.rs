//! The demo's simulated devices: their data root, the SDK config they share, one
//! `DualPublisher` each, the cohort the config in force sends to each transport, their config
//! fetch at launch (`--config-url`), and the locations they drive around.

use super::bed::{Chaos, TestBed};
use super::{DemoArgs, Device};
use dualpub::{DualPublisher, Location, MigrationConfig, SdkConfig};
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

/// The devices' data root: --data-dir, or a temporary directory (returned too: removed on drop).
pub(super) fn data_root(args: &DemoArgs) -> Result<(PathBuf, Option<tempfile::TempDir>), String> {
    match &args.data_dir {
        Some(d) => Ok((d.clone(), None)),
        None => {
            let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
            Ok((tmp.path().to_path_buf(), Some(tmp)))
        }
    }
}

/// What every device's SDK config has in common.
pub(super) struct FleetSettings {
    /// The broker and endpoint the SDK talks to: the test bed's, or the chaos proxies'.
    mqtt_url: String,
    endpoint: String,
    data_root: PathBuf,
    allow_insecure: bool,
    /// The CA the SDK trusts for both backends.
    ca_pem: Option<String>,
    /// The migration config --rollout, --salt and --no-mqtt ask for.
    migration: MigrationConfig,
}

impl FleetSettings {
    /// The SDK's URLs (through the chaos proxies with --chaos) and the flags' migration config.
    pub(super) fn new(args: &DemoArgs, bed: &TestBed, chaos: Option<&Chaos>, data_root: PathBuf) -> FleetSettings {
        let (mqtt_url, endpoint) = match chaos {
            Some(c) => c.sdk_urls(&bed.mqtt_url, &bed.endpoint),
            None => (bed.mqtt_url.clone(), bed.endpoint.clone()),
        };
        let migration = MigrationConfig {
            version: 1,
            pubsub_enabled: true,
            pubsub_percentage: args.rollout,
            rollout_salt: args.salt.clone(),
            mqtt_enabled: !args.no_mqtt,
            ..MigrationConfig::default()
        };
        FleetSettings { mqtt_url, endpoint, ca_pem: bed.ca_pem.clone(), data_root, allow_insecure: bed.allow_insecure, migration }
    }

    /// Device `id`'s SDK config (validated): 30 s keep-alive, Pub/Sub batches of up to 200 ms,
    /// the upload window of `--window-secs`.
    fn sdk_config(&self, args: &DemoArgs, id: &str) -> Result<SdkConfig, dualpub::DualPubError> {
        let data_dir = self.data_root.join(id).to_string_lossy().into_owned();
        let mut builder = SdkConfig::builder(id, self.mqtt_url.as_str(), args.backend.pubsub_project.as_str(), data_dir)
            .pubsub_endpoint(self.endpoint.as_str())
            .pubsub_topic(args.backend.pubsub_topic.as_str())
            .pubsub_batch(1000, 1_000_000, 200)
            .mqtt_keep_alive_secs(30)
            .mqtt_idle_disconnect_secs(30)
            .allow_insecure(self.allow_insecure)
            .outbox_limits(100_000, 168)
            .upload_window_secs(args.window_secs);
        if let Some(ca) = &self.ca_pem {
            builder = builder.mqtt_ca_pem(ca.as_str()).pubsub_ca_pem(ca.as_str());
        }
        // With a config URL the fetched document decides (MQTT only until it arrives).
        builder = match &args.config_url {
            Some(url) => builder.remote_config(url.as_str(), dualpub::config::DEFAULT_CONFIG_FETCH_INTERVAL_SECS),
            None => builder.migration(self.migration.clone()),
        };
        builder.build()
    }
}

/// One `DualPublisher` per device, ids demo-device-0 … demo-device-{N-1}.
pub(super) fn build_fleet(args: &DemoArgs, settings: &FleetSettings) -> Result<Vec<Device>, String> {
    (0..args.devices).map(|i| start_device(args, settings, format!("demo-device-{i}"))).collect()
}

/// Starts one device's publisher; without --config-url the flags' config is applied on top.
fn start_device(args: &DemoArgs, settings: &FleetSettings, id: String) -> Result<Device, String> {
    let publisher = settings.sdk_config(args, &id).and_then(|c| DualPublisher::new(c, None)).map_err(|e| format!("{id}: {e}"))?;
    if args.config_url.is_none() {
        // A data directory from an earlier run keeps its last config; the flags of this
        // run are what the operator asked for, so apply them on top.
        publisher.apply_config(settings.migration.clone()).map_err(|e| format!("{id}: {e}"))?;
    }
    Ok((id, publisher))
}

/// Which devices the config in force sends to Pub/Sub and which to MQTT (a device whose
/// decision cannot be read is in neither).
pub(super) struct Cohort {
    /// The Pub/Sub cohort in fleet order.
    pub(super) pubsub_devices: Vec<String>,
    pub(super) pubsub: HashSet<String>,
    pub(super) mqtt: HashSet<String>,
}

impl Cohort {
    /// Reads every device's rollout decision.
    pub(super) fn of(fleet: &[Device]) -> Cohort {
        let decisions: Vec<(&String, dualpub::RolloutDecision)> = fleet.iter().filter_map(|(id, p)| p.decision().ok().map(|d| (id, d))).collect();
        let pubsub_devices: Vec<String> = decisions.iter().filter(|(_, d)| d.pubsub_enabled).map(|(id, _)| (*id).clone()).collect();
        let mqtt = decisions.iter().filter(|(_, d)| d.mqtt_enabled).map(|(id, _)| (*id).clone()).collect();
        Cohort { pubsub: pubsub_devices.iter().cloned().collect(), pubsub_devices, mqtt }
    }

    /// Prints the fleet's size, the cohort and the rule that chose it.
    pub(super) fn announce(&self, args: &DemoArgs, config: Option<&ConfigReport>) {
        let rule = match config {
            Some(r) => format!("by the config in force ({})", r.describe()),
            None => format!("at {} % (salt {:?})", args.rollout, args.salt),
        };
        eprintln!(
            "dualpub demo: {} devices, {} in the Pub/Sub cohort {rule}, {} locations each",
            args.devices,
            self.pubsub_devices.len(),
            args.locations_per_device
        );
    }
}

/// How the fleet's config fetch at launch went.
#[derive(Clone)]
pub(super) struct ConfigReport {
    /// Fetches per result (`applied`, `not_modified`, `failed`, …) since the devices started:
    /// the SDK's own fetch at start-up (when one is due) and the demo's refresh.
    pub(super) results: std::collections::BTreeMap<String, usize>,
    /// Devices per config version in force after the fetch.
    pub(super) versions: std::collections::BTreeMap<u64, usize>,
    /// Devices per config source in force (`fetched`, `persisted`, `defaults`).
    pub(super) sources: std::collections::BTreeMap<String, usize>,
}

impl ConfigReport {
    /// One line: devices per version and per source, fetches per result.
    pub(super) fn describe(&self) -> String {
        let list = |m: Vec<(String, usize)>| m.into_iter().map(|(k, n)| format!("{n} {k}")).collect::<Vec<_>>().join(", ");
        format!(
            "versions: {}; sources: {}; fetch: {}",
            list(self.versions.iter().map(|(v, n)| (format!("at v{v}"), *n)).collect()),
            list(self.sources.iter().map(|(k, n)| (k.clone(), *n)).collect()),
            list(self.results.iter().map(|(k, n)| (k.clone(), *n)).collect()),
        )
    }
}

/// Every device fetches the config now (in parallel), as an app that wants the fresh config at
/// launch would; what failed leaves the device on its persisted config or the defaults.
pub(super) fn fetch_configs(fleet: &[(String, Arc<DualPublisher>)], url: &str) -> ConfigReport {
    eprintln!("dualpub demo: fetching the migration config from {url}");
    // In parallel, a thread per device, as the drain at the end.
    let errors: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = fleet
            .iter()
            .map(|(id, p)| {
                s.spawn(move || match p.refresh_config() {
                    Ok(dualpub::FetchResult::Rejected { reason } | dualpub::FetchResult::Failed { reason }) => {
                        log::warn!("{id}: config fetch: {reason}");
                        None
                    }
                    Ok(_) => None,
                    Err(e) => Some(format!("error: {e}")),
                })
            })
            .collect();
        handles.into_iter().filter_map(|h| h.join().ok().flatten()).collect()
    });
    // The fetch results themselves come from the SDK's own count (its start-up fetch included).
    let mut report = ConfigReport { results: Default::default(), versions: Default::default(), sources: Default::default() };
    for error in errors {
        *report.results.entry(error).or_default() += 1;
    }
    for (_, p) in fleet {
        for (result, n) in p.metrics().map(|m| m.config_fetches).unwrap_or_default() {
            *report.results.entry(result).or_default() += n as usize;
        }
        if let Ok(status) = p.config_status() {
            *report.versions.entry(status.version).or_default() += 1;
            *report.sources.entry(status.source.as_str().to_string()).or_default() += 1;
        }
    }
    eprintln!("dualpub demo: config {}", report.describe());
    report
}

/// Device `i` drives around Berlin on its own circle.
pub(super) fn simulated_location(i: usize, round: usize, timestamp_ms: i64) -> Location {
    let angle = (round as f64) * 0.05 + (i as f64) * 0.7;
    let radius = 0.01 + (i % 17) as f64 * 0.002;
    Location {
        latitude: 52.52 + radius * angle.sin(),
        longitude: 13.405 + radius * angle.cos(),
        accuracy: Some(3.0 + (i % 5) as f64),
        speed: Some(8.0 + (round % 7) as f64),
        bearing: Some(((angle.to_degrees() + 90.0) % 360.0 + 360.0) % 360.0),
        altitude: Some(34.0),
        timestamp_ms,
        battery: Some((1.0 - round as f64 * 0.001).clamp(0.05, 1.0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simulated_locations_stay_near_berlin_with_legal_fields() {
        for i in 0..40 {
            for round in [0, 1, 7, 500, 5_000] {
                let l = simulated_location(i, round, 1_000);
                assert!((l.latitude - 52.52).abs() < 0.05 && (l.longitude - 13.405).abs() < 0.05, "{i} {round}: {l:?}");
                let bearing = l.bearing.unwrap();
                assert!((0.0..360.0).contains(&bearing), "{i} {round}: bearing {bearing}");
                let battery = l.battery.unwrap();
                assert!((0.05..=1.0).contains(&battery), "{i} {round}: battery {battery}");
                assert_eq!(l.timestamp_ms, 1_000);
            }
        }
        // Each device drives its own circle.
        assert_ne!(simulated_location(0, 3, 0).latitude, simulated_location(1, 3, 0).latitude);
        assert_eq!(simulated_location(9, 1_000, 0).battery, Some(0.05));
    }

    #[test]
    fn the_config_report_is_one_line_in_key_order() {
        let report = ConfigReport {
            results: [("not_modified".to_string(), 2), ("applied".to_string(), 3)].into_iter().collect(),
            versions: [(7, 4), (2, 1)].into_iter().collect(),
            sources: [("fetched".to_string(), 4), ("defaults".to_string(), 1)].into_iter().collect(),
        };
        assert_eq!(report.describe(), "versions: 1 at v2, 4 at v7; sources: 1 defaults, 4 fetched; fetch: 3 applied, 2 not_modified");
    }
}
