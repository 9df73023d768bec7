//! The exported layer: a thin `DualPublisher` object over [`crate::Publisher`]. Kotlin and
//! Swift see only what is declared here and in the records it uses.

use crate::config::rollout::{self, RolloutAlgorithm, RolloutDecision};
use crate::config::{MigrationConfig, SdkConfig};
use crate::error::DualPubError;
use crate::location::Location;
use crate::outbox::DeadLetter;
use crate::publisher::{FlushReport, Publisher};
use crate::telemetry::events::DebugListener;
use crate::telemetry::metrics::MetricsSnapshot;
use crate::transport::token::TokenProvider;
use std::sync::Arc;
use std::time::Duration;

#[cfg(feature = "ffi-bench")]
pub mod bench;
pub mod streams;

/// Publishes this device's locations to MQTT, Pub/Sub or both, as the migration config
/// decides. Thread-safe; every method returns quickly except `flush`, `awaitDurable`,
/// `refreshConfig` and `shutdown`, which wait by design (worker threads only), and the
/// constructors, which open the outbox database; each has an async twin (`open`, `flushAsync`,
/// `awaitDurableAsync`, `refreshConfigAsync`, `shutdownAsync`) that is safe on the main thread.
#[derive(uniffi::Object)]
pub struct DualPublisher {
    inner: Publisher,
}

impl DualPublisher {
    fn live(&self) -> Result<&Publisher, DualPubError> {
        if self.inner.is_closed() {
            Err(DualPubError::Closed)
        } else {
            Ok(&self.inner)
        }
    }
}

#[uniffi::export]
impl DualPublisher {
    /// Validates `config` and starts the SDK in the background (connections are made lazily,
    /// off the calling thread). `token_provider` supplies Pub/Sub access tokens; pass none for
    /// the local emulator.
    #[uniffi::constructor]
    pub fn new(config: SdkConfig, token_provider: Option<Arc<dyn TokenProvider>>) -> Result<Arc<Self>, DualPubError> {
        Ok(Arc::new(DualPublisher { inner: Publisher::new(config, token_provider)? }))
    }

    /// As the primary constructor, with every app provider: `token_provider` for Pub/Sub access
    /// tokens, `mqtt_credential_provider` for MQTT credentials that change (an expiring JWT as
    /// the password; they take the place of `mqtt.username`/`password`). Both are called on SDK
    /// background threads (docs/CONTRACT.md#mqtt-credentials).
    #[uniffi::constructor]
    pub fn with_providers(
        config: SdkConfig,
        token_provider: Option<Arc<dyn TokenProvider>>,
        mqtt_credential_provider: Option<Arc<dyn crate::MqttCredentialProvider>>,
    ) -> Result<Arc<Self>, DualPubError> {
        let providers = crate::Providers { tokens: token_provider, mqtt_credentials: mqtt_credential_provider };
        Ok(Arc::new(DualPublisher { inner: Publisher::with_providers(config, providers)? }))
    }

    /// The async twin of `withProviders` (Kotlin `suspend`, Swift `async`): opens the outbox
    /// database and reads its backlog on an SDK thread, so it is safe to call from the main
    /// thread. Cancelling it does not stop the opening; the publisher then closes itself.
    #[uniffi::constructor]
    pub async fn open(
        config: SdkConfig,
        token_provider: Option<Arc<dyn TokenProvider>>,
        mqtt_credential_provider: Option<Arc<dyn crate::MqttCredentialProvider>>,
    ) -> Result<Arc<Self>, DualPubError> {
        let providers = crate::Providers { tokens: token_provider, mqtt_credentials: mqtt_credential_provider };
        Ok(Arc::new(DualPublisher { inner: Publisher::open_async(config, providers).await? }))
    }

    /// Validates a location, assigns its eventId and queues it; returns the eventId.
    /// No disk or network I/O on the calling thread.
    pub fn send_location(&self, location: Location) -> Result<String, DualPubError> {
        self.live()?.send_location(location)
    }

    /// Queues many locations at once (backlog import); all or none. Returns their eventIds.
    pub fn send_locations(&self, locations: Vec<Location>) -> Result<Vec<String>, DualPubError> {
        self.live()?.send_locations(locations)
    }

    /// Applies a migration config now; returns the resulting decision.
    pub fn apply_config(&self, config: MigrationConfig) -> Result<RolloutDecision, DualPubError> {
        self.live()?.apply_config(config)
    }

    /// Parses and applies a migration config document (JSON, docs/CONTRACT.md#migration-config).
    pub fn apply_config_json(&self, json: String) -> Result<RolloutDecision, DualPubError> {
        self.live()?.apply_config_json(&json)
    }

    /// Applies the host app's remote values (Firebase Remote Config keys such as
    /// `pubsub_rollout_percentage`, `debug_mode`, `migration_override_<deviceId>`, `emergency_mode`).
    pub fn apply_remote_values(&self, values: std::collections::HashMap<String, String>) -> Result<RolloutDecision, DualPubError> {
        self.live()?.apply_remote_values(values)
    }

    /// The config in force (version, source, when applied, how many were refused) and the
    /// state of fetching it (last fetch and result, ETag, backoff, next fetch).
    pub fn config_status(&self) -> Result<crate::config::source::ConfigStatus, DualPubError> {
        Ok(self.live()?.config_status())
    }

    /// Fetches the config from `remoteConfigUrl` now (for a silent push saying it changed)
    /// unless a backoff is in force, and applies it; returns what happened. Blocks until the
    /// fetch ends (at most 25 s): never call it on the UI thread.
    pub fn refresh_config(&self) -> Result<crate::config::fetch::FetchResult, DualPubError> {
        self.live()?.refresh_config()
    }

    /// The async twin of `refreshConfig`: safe on the main thread. The fetch runs to its end
    /// (at most 25 s) even if the call is cancelled; a change of decision reaches the
    /// `ConfigListener` on an SDK callback thread.
    pub async fn refresh_config_async(&self) -> Result<crate::config::fetch::FetchResult, DualPubError> {
        self.inner.refresh_config_async().await
    }

    /// Tells the SDK whether the app is in the foreground (the default). Scheduled config
    /// fetches happen only in the foreground.
    pub fn set_app_foreground(&self, foreground: bool) -> Result<(), DualPubError> {
        self.live()?.set_app_foreground(foreground);
        Ok(())
    }

    /// A stream of the decision: the one in force first, then each change (Kotlin:
    /// `decisionFlow()`/`decisionStateFlow(scope)`; Swift: `decisionUpdates()`). Replaces
    /// `setConfigListener`.
    pub fn decisions(&self) -> Result<Arc<streams::DecisionStream>, DualPubError> {
        Ok(Arc::new(streams::DecisionStream::new(self.live()?.stream_source())))
    }

    /// A stream of the delivery state (pending per transport, oldest pending age, last
    /// acknowledgements, breakers, network, collection, burst): the state now, then each change
    /// (Kotlin: `deliveryStateFlow()`; Swift: `deliveryStateUpdates()`).
    pub fn delivery_states(&self) -> Result<Arc<streams::DeliveryStateStream>, DualPubError> {
        Ok(Arc::new(streams::DeliveryStateStream::new(self.live()?.stream_source())))
    }

    /// A stream of debug events while debug mode is on, bounded (Kotlin: `debugEventFlow()`;
    /// Swift: `debugEventUpdates()`). Replaces `setDebugListener`.
    pub fn debug_events(&self) -> Result<Arc<streams::DebugEventStream>, DualPubError> {
        Ok(Arc::new(streams::DebugEventStream::new(self.live()?.stream_source())))
    }

    /// Registers a listener for every change of decision (`None` removes it). Deprecated: kept
    /// for this release only; use `decisions()` (a `Flow` in Kotlin, an `AsyncStream` in Swift).
    pub fn set_config_listener(&self, listener: Option<Arc<dyn crate::config::source::ConfigListener>>) -> Result<(), DualPubError> {
        self.live()?.set_config_listener(listener);
        Ok(())
    }

    /// Where this device publishes now, and why.
    pub fn decision(&self) -> Result<RolloutDecision, DualPubError> {
        Ok(self.live()?.decision())
    }

    /// The migration config in force.
    pub fn current_config(&self) -> Result<MigrationConfig, DualPubError> {
        Ok(self.live()?.config())
    }

    /// Waits up to `timeout_ms` until everything accepted so far is acknowledged by every
    /// transport owing it. Blocks: call it from a background thread.
    pub fn flush(&self, timeout_ms: u64) -> Result<FlushReport, DualPubError> {
        Ok(self.live()?.flush(Duration::from_millis(timeout_ms)))
    }

    /// The async twin of `flush` (Kotlin `suspend`, Swift `async`): safe on the main thread, it
    /// holds no thread while it waits. Cancelling it stops the wait, not the flush: its burst
    /// stays open until `timeout_ms`.
    pub async fn flush_async(&self, timeout_ms: u64) -> Result<FlushReport, DualPubError> {
        self.inner.flush_async(Duration::from_millis(timeout_ms)).await
    }

    /// Sends everything owed now and waits, at most `timeout_ms`, until it is delivered or the
    /// network is unavailable; reports what left and what is still owed. For background work
    /// (Android `DualPubUploadWorker`, iOS `DualPubBackground`): safe on any thread, it holds
    /// none while it waits; cancelling it stops the wait, not the burst.
    pub async fn drain_async(&self, timeout_ms: u64) -> Result<crate::DrainReport, DualPubError> {
        self.inner.drain_async(Duration::from_millis(timeout_ms)).await
    }

    /// Sends everything queued now in one burst of both transports, whatever the upload window
    /// (for what must go now). Returns at once: safe on any thread.
    pub fn flush_now(&self) -> Result<(), DualPubError> {
        self.live()?.flush_now();
        Ok(())
    }

    /// Tells the SDK whether the device has a network (call it from the connectivity callback:
    /// Android `ConnectivityManager.NetworkCallback`, iOS `NWPathMonitor`). While `false`
    /// nothing is attempted; when it turns `true`, one burst sends what is queued. Returns at once.
    pub fn set_network_available(&self, available: bool) -> Result<(), DualPubError> {
        self.live()?.set_network_available(available);
        Ok(())
    }

    /// Pauses (`false`) or resumes (`true`) collection, for a user's opt-out: while paused
    /// `sendLocation(s)` refuses with `CollectionPaused` and nothing is sent; what is queued
    /// stays until resumed or purged. Lasts for this publisher's life (pass the user's choice as
    /// `SdkConfig.collectionEnabled` at start). Returns at once.
    pub fn set_collection_enabled(&self, enabled: bool) -> Result<(), DualPubError> {
        self.live()?.set_collection_enabled(enabled)
    }

    /// Whether collection is enabled (not paused).
    pub fn collection_enabled(&self) -> Result<bool, DualPubError> {
        Ok(self.live()?.collection_enabled())
    }

    /// Deletes every queued location and every dead letter, from memory and disk, and returns
    /// how many; the next migration report counts them (`dropped`: `purged`,
    /// `dead_letters_purged`). A message already on the wire cannot be recalled: pause first.
    /// Returns at once (the deletion is committed in the background, like every change).
    pub fn purge(&self) -> Result<crate::PurgeReport, DualPubError> {
        self.live()?.purge()
    }

    /// The migration metrics.
    pub fn metrics(&self) -> Result<MetricsSnapshot, DualPubError> {
        Ok(self.live()?.metrics())
    }

    /// The migration metrics as Prometheus text.
    pub fn metrics_prometheus(&self) -> Result<String, DualPubError> {
        Ok(self.live()?.metrics_prometheus())
    }

    /// Messages Pub/Sub refused as invalid (kept, never deleted).
    pub fn dead_letters(&self) -> Result<Vec<DeadLetter>, DualPubError> {
        Ok(self.live()?.dead_letters())
    }

    /// A page of the dead letters, oldest first: at most `limit` with an id above `afterId`
    /// (0 for the first page).
    pub fn dead_letters_page(&self, after_id: i64, limit: u32) -> Result<Vec<DeadLetter>, DualPubError> {
        Ok(self.live()?.dead_letters_page(after_id, limit))
    }

    /// Waits up to `timeout_ms` until every location accepted so far is on disk (survives a
    /// process kill); returns whether it is. Blocks: call it from a background thread.
    pub fn await_durable(&self, timeout_ms: u64) -> Result<bool, DualPubError> {
        Ok(self.live()?.await_durable(Duration::from_millis(timeout_ms)))
    }

    /// The async twin of `awaitDurable`: safe on the main thread.
    pub async fn await_durable_async(&self, timeout_ms: u64) -> Result<bool, DualPubError> {
        self.inner.await_durable_async(Duration::from_millis(timeout_ms)).await
    }

    /// Queues dead letters again (all when `ids` is empty); returns how many.
    pub fn retry_dead_letters(&self, ids: Vec<i64>) -> Result<u32, DualPubError> {
        self.live()?.retry_dead_letters(ids)
    }

    /// Switches debug mode on or off here, overriding the remote config's `debugMode` until
    /// `clearDebugMode`. Takes effect at once (log level and debug events).
    pub fn set_debug_mode(&self, enabled: bool) -> Result<(), DualPubError> {
        self.live()?.set_debug_mode(Some(enabled));
        Ok(())
    }

    /// Hands debug mode back to the remote config.
    pub fn clear_debug_mode(&self) -> Result<(), DualPubError> {
        self.live()?.set_debug_mode(None);
        Ok(())
    }

    /// Opt-in: debug output may show precise coordinates (rounded to about 1 km otherwise).
    pub fn set_precise_coordinates_in_debug(&self, opt_in: bool) -> Result<(), DualPubError> {
        self.live()?.set_precise_coordinates_in_debug(opt_in);
        Ok(())
    }

    /// Registers a listener for debug events (rate-limited; only while debug mode is on).
    /// Deprecated: kept for this release only; use `debugEvents()`.
    pub fn set_debug_listener(&self, listener: Option<Arc<dyn DebugListener>>) -> Result<(), DualPubError> {
        self.live()?.set_debug_listener(listener);
        Ok(())
    }

    /// A JSON report: config, decision, queue depths, breaker states, recent errors.
    pub fn debug_report(&self) -> Result<String, DualPubError> {
        Ok(self.live()?.debug_report())
    }

    /// Stops the publisher, sends the last migration report and persists what is queued (waits
    /// at most 10 s in all; see `close` in ARCHITECTURE.md's threads). Later calls fail
    /// with `Closed`; a new publisher on the same data directory resumes delivery. (Named
    /// `shutdown` because Kotlin's `AutoCloseable.close()` — what `use {}` calls — frees the
    /// object, which shuts it down too.)
    pub fn shutdown(&self) {
        self.inner.close()
    }

    /// The async twin of `shutdown`: the same close on an SDK thread (`dualpub-close`), safe on
    /// the main thread. Cancelling it does not stop the close.
    pub async fn shutdown_async(self: Arc<Self>) {
        // The close runs to its end whatever becomes of this future; nothing to report.
        let _ = crate::publisher::on_thread("dualpub-close", move || self.inner.close()).await;
    }
}

/// Rust-only helpers of the exported object, for the demo and tests (not in the bindings).
impl DualPublisher {
    /// See [`Publisher::keep_latency_samples`].
    pub fn keep_latency_samples(&self) {
        self.inner.keep_latency_samples();
    }

    /// See [`Publisher::latency_samples`].
    pub fn latency_samples(&self) -> [Vec<f64>; 2] {
        self.inner.latency_samples()
    }
}

/// The rollout bucket of `device_id`: what the SDK computes, for tools and tests.
#[uniffi::export]
pub fn rollout_bucket(device_id: String, salt: String, algorithm: RolloutAlgorithm) -> u32 {
    rollout::bucket(algorithm, &salt, &device_id)
}

/// Whether `device_id` is in the Pub/Sub cohort at `percentage` (no overrides considered).
#[uniffi::export]
pub fn rollout_in_cohort(device_id: String, salt: String, algorithm: RolloutAlgorithm, percentage: f64) -> bool {
    rollout::in_rollout(algorithm, rollout::bucket(algorithm, &salt, &device_id), percentage)
}

/// The SDK version (`dualpub/<version>`).
#[uniffi::export]
pub fn sdk_version() -> String {
    crate::wire::SDK_ID.to_string()
}
