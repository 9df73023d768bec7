//! What a publisher finds when it starts: the outbox database opened (a corrupt file moved
//! aside), the rows still owed and the dead letters, the last known good migration config (which
//! wins over the one compiled into the app, so a rollback reaches a phone that starts offline),
//! and the config fetcher's saved state. Everything worth telling is returned as [`Note`]s, for
//! the publisher to log through its funnel once it exists.

use crate::clock::Clock;
use crate::config::fetch::{FetchState, Fetcher};
use crate::config::rollout::decide;
use crate::config::source::ConfigSource;
use crate::config::{MigrationConfig, SdkConfig};
use crate::error::Error;
use crate::hub::Active;
use crate::outbox::store::{Msg, Store};
use crate::outbox::Outbox;
use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;

/// Something to log once the publisher's funnel exists: level, kind, message.
pub(crate) type Note = (log::Level, &'static str, String);

/// The restored state of a publisher.
pub(crate) struct Restored {
    /// The database, for the store thread.
    pub db: Store,
    /// The store thread's channel: the outbox sends on `store_tx`, the thread reads `store_rx`.
    pub store_tx: Sender<Msg>,
    /// See `store_tx`.
    pub store_rx: Receiver<Msg>,
    /// The outbox with the rows still owed and the dead letters.
    pub outbox: Outbox,
    /// The highest sequence number stored.
    pub max_seq: u64,
    /// Locations found still owed.
    pub recovered: u64,
    /// A corrupt database was moved aside.
    pub reset: bool,
    /// Dead letters beyond the cap, deleted as the outbox was opened.
    pub dead_letters_dropped: u64,
    /// Locations lost on the unreadable pages of a corrupt database (at most this many: the
    /// keys missing around them), counted as `dropped{unreadable}`.
    pub unreadable: u64,
    /// The outbox lives in memory only (no room on the disk).
    pub memory_only: bool,
    /// The config in force and the decision it gives this device.
    pub active: Active,
    /// The config fetcher, resuming its saved state.
    pub fetcher: Fetcher,
    /// The migration reports' tally (a new epoch when the directory has none).
    pub tally: crate::telemetry::reports::Tally,
    /// What the Pub/Sub endpoint showed of gzip in earlier runs.
    pub gzip: crate::telemetry::metrics::GzipSupport,
    /// What to log.
    pub notes: Vec<Note>,
}

/// Opens and reads the data directory of `config` (validated already).
pub(crate) fn restore(config: &SdkConfig, http: reqwest::Client, clock: Arc<dyn Clock>) -> Result<Restored, Error> {
    let mut notes: Vec<Note> = Vec::new();
    let (mut db, report) = Store::open(std::path::Path::new(&config.data_dir), config.max_storage_bytes)?;
    let run_clock = crate::clock::RunClock::resume(db.load_observed_ms()?);
    db.record_run_clock(run_clock);
    note_storage(config, &report, &mut notes);
    let (dead_letters, dead_letters_dropped) = db.load_dead_letters(crate::outbox::MAX_DEAD_LETTERS)?;
    if dead_letters_dropped > 0 {
        notes.push((log::Level::Warn, "dropped", format!("{dead_letters_dropped} dead letter(s): dead_letters_full")));
    }
    let max_seq = db.max_seq()?;
    let gzip = crate::telemetry::metrics::GzipSupport::from_code(db.load_meta(&crate::transport::gzip::meta_key(&config.pubsub.endpoint))?);
    let persisted = persisted_config(&db, &mut notes)?;
    let tally = match db.load_tally()? {
        Some(json) => crate::telemetry::reports::Tally::from_json(&json).unwrap_or_else(|| {
            notes.push((log::Level::Warn, "report", "the migration report counters were unreadable; a new epoch starts".into()));
            crate::telemetry::reports::Tally::new_epoch(clock.now_ms())
        }),
        None => crate::telemetry::reports::Tally::new_epoch(clock.now_ms()),
    };
    let mut tally = tally;
    // A row written by a last commit without its tally (the hub already gone) must not have its
    // seq given out again: the newest row's is the floor.
    if let Some(seq) = db.newest_payload()?.and_then(|p| crate::wire::seq_of(&p)) {
        tally.counters.last_seq = tally.counters.last_seq.max(seq);
    }
    let fetcher = fetcher(config, &db, persisted.is_some(), http, clock, &mut notes)?;
    let (migration, source, applied_at_ms, host_overrides) = match (persisted, &config.migration) {
        (Some((c, at, host)), _) => (c, ConfigSource::Persisted, at, host),
        (None, Some(c)) => (c.clone(), ConfigSource::App, crate::clock::now_ms(), Default::default()),
        (None, None) => (MigrationConfig::default(), ConfigSource::Defaults, crate::clock::now_ms(), Default::default()),
    };
    let decision = decide(&migration, &config.device_id, config.company_id.as_deref());
    notes.push((
        log::Level::Info,
        "config",
        format!(
            "starting for device bucket {} (config v{} from {}): mqtt={} pubsub={} reason={}",
            decision.bucket,
            decision.config_version,
            source.as_str(),
            decision.mqtt_enabled,
            decision.pubsub_enabled,
            decision.reason.as_str()
        ),
    ));
    let (store_tx, store_rx) = std::sync::mpsc::channel();
    let limits = crate::outbox::Limits {
        max_rows: config.max_outbox_rows as usize,
        max_age: std::time::Duration::from_secs(u64::from(config.max_outbox_age_hours) * 3600),
    };
    let mut outbox = Outbox::with_sink(store_tx.clone(), limits, run_clock);
    // Row by row, without payloads: they stay on disk until a transport reaches them.
    let recovered = db.load_index(|row| outbox.restore_row(row))?;
    outbox.restore_dead_letters(dead_letters);
    if recovered > 0 {
        notes.push((log::Level::Info, "storage", format!("resumes {recovered} location(s) from the outbox")));
    }
    Ok(Restored {
        db,
        store_tx,
        store_rx,
        outbox,
        max_seq,
        recovered,
        reset: report.moved_aside.is_some(),
        dead_letters_dropped,
        unreadable: report.salvage.rows_lost,
        memory_only: report.memory_only.is_some(),
        active: Active { config: migration, decision, source, applied_at_ms, host_overrides },
        fetcher,
        tally,
        gzip,
        notes,
    })
}

/// What opening the database found that is worth telling; deletes old corrupt copies.
fn note_storage(config: &SdkConfig, report: &crate::outbox::store::OpenReport, notes: &mut Vec<Note>) {
    if let (Some(aside), Some(reason)) = (&report.moved_aside, &report.reason) {
        notes.push((
            log::Level::Error,
            "storage",
            format!("the outbox database was unreadable ({reason}); moved aside to {} and started afresh with {}", aside.display(), report.salvage.describe()),
        ));
        if report.salvage.rows_lost > 0 {
            notes.push((log::Level::Warn, "dropped", format!("{} location(s): {}", report.salvage.rows_lost, crate::telemetry::metrics::DROPPED_UNREADABLE)));
        }
    }
    let keep_ms = i64::from(config.max_outbox_age_hours) * 3_600_000;
    let pruned = crate::outbox::store::prune_corrupt_copies(std::path::Path::new(&config.data_dir), crate::clock::now_ms(), keep_ms);
    if pruned > 0 {
        notes.push((log::Level::Info, "storage", format!("deleted {pruned} corrupt database copy(ies) older than maxOutboxAgeHours")));
    }
    if let Some(why) = &report.memory_only {
        notes.push((
            log::Level::Error,
            "storage",
            format!("cannot create the outbox database ({why}): locations are kept in memory for this run, and lost if the app is killed"),
        ));
    }
    if let Some(v) = report.newer_schema {
        notes.push((
            log::Level::Warn,
            "storage",
            format!("outbox schema {v} is newer than this SDK's {}; reading it as such", crate::outbox::store::SCHEMA_VERSION),
        ));
    }
}

/// The last known good config (with when it was applied and the host's override ids), if a
/// readable one was persisted.
type Persisted = (MigrationConfig, i64, std::collections::BTreeSet<String>);
fn persisted_config(db: &Store, notes: &mut Vec<Note>) -> Result<Option<Persisted>, Error> {
    Ok(match db.load_config()? {
        Some(stored) => match MigrationConfig::from_persisted(&stored.json) {
            Ok(c) => Some((c, stored.applied_at_ms, host_overrides(&stored.json))),
            Err(e) => {
                notes.push((log::Level::Error, "config", format!("ignores its persisted config ({e})")));
                None
            }
        },
        None => None,
    })
}

/// The ids of the device overrides the host app set, as persisted with the config.
fn host_overrides(json: &str) -> std::collections::BTreeSet<String> {
    serde_json::from_str::<serde_json::Value>(json)
        .ok()
        .and_then(|v| serde_json::from_value(v.get(crate::config::source::HOST_OVERRIDES_KEY)?.clone()).ok())
        .unwrap_or_default()
}

/// The config fetcher, resuming the saved state unless it is unreadable or belongs to another URL.
fn fetcher(config: &SdkConfig, db: &Store, have_config: bool, http: reqwest::Client, clock: Arc<dyn Clock>, notes: &mut Vec<Note>) -> Result<Fetcher, Error> {
    let mut state: FetchState = match db.load_fetch_state()? {
        Some(json) => serde_json::from_str(&json).unwrap_or_else(|e| {
            notes.push((log::Level::Error, "config_fetch", format!("ignores its saved config-fetch state ({e})")));
            FetchState::default()
        }),
        None => FetchState::default(),
    };
    if !have_config {
        // A 304 must not confirm a document this device no longer has.
        state.etag = None;
    }
    let url = match &config.remote_config_url {
        Some(u) => Some(crate::config::https_url("remoteConfigUrl", u, config.allow_insecure)?),
        None => None,
    };
    let (fetcher, afresh) = Fetcher::new(url, config.config_fetch_interval_secs, http, clock, state);
    if afresh {
        notes.push((log::Level::Info, "config_fetch", "remoteConfigUrl changed: the fetch state starts afresh".into()));
    }
    Ok(fetcher)
}
