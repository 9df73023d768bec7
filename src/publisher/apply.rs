//! Config application: a config (the app's, the host app's remote values, or a fetched
//! document) is parsed, validated, applied under the publisher's lock (with a report cut
//! before the decision changes), persisted with the next commit, and the change told to the
//! app's listener. Also the debug switches a config may turn, and one config fetch end to end.

use super::listener::Change;
use super::{HostOverrides, Shared};
use crate::clock;
use crate::config::fetch::{FetchResult, Response, Trigger};
use crate::config::rollout::{decide, RolloutDecision};
use crate::config::source::ConfigSource;
use crate::config::MigrationConfig;
use crate::error::DualPubError;
use crate::hub::Active;
use crate::outbox::{store, Transport};
use std::sync::atomic::Ordering;
use std::sync::Arc;

impl Shared {
    /// Recomputes debug mode from the config and the app's local switch; takes effect at once
    /// (log level and event stream).
    pub(super) fn refresh_debug_mode(&self, config_debug: bool) {
        let local = *self.debug_local.lock().unwrap_or_else(|p| p.into_inner());
        let on = local.unwrap_or(config_debug);
        // Under the state lock, so a closed publisher (which left debug mode for good) never
        // raises the process-wide log level again.
        let st = self.lock();
        let changed = !st.closed && self.hub.events.set_debug_mode(on);
        if changed {
            crate::telemetry::logging::debug_mode_changed(on);
        }
        drop(st);
        if changed {
            self.event(log::Level::Info, "debug", || format!("debug mode {}", if on { "on" } else { "off" }));
        }
    }

    /// Counts and logs a refused config.
    pub(super) fn config_refused(&self, e: &crate::error::ConfigError) {
        self.config_rejected.fetch_add(1, Ordering::SeqCst);
        self.hub.metrics.config_rejected(e.metric_reason(), 1);
        self.event(log::Level::Warn, "config", || format!("refused a config: {e}"));
    }

    /// Parses a config document (docs/CONTRACT.md#refused-skipped-or-ignored): refused whole (and
    /// counted) if malformed; invalid overrides and forbidden fields are left out, counted and logged.
    pub(super) fn parse_document(&self, json: &str) -> Result<MigrationConfig, crate::error::ConfigError> {
        let parsed = MigrationConfig::parse(json).inspect_err(|e| self.config_refused(e))?;
        for why in &parsed.skipped {
            self.hub.metrics.config_rejected("invalid_override", 1);
            self.event(log::Level::Warn, "config", || format!("skipped an invalid override: {why}"));
        }
        for why in &parsed.ignored {
            self.hub.metrics.config_rejected("ignored_field", 1);
            self.event(log::Level::Warn, "config", || format!("ignored {why}"));
        }
        Ok(parsed.config)
    }

    /// Applies `config` at once (from `source`); returns the new decision. An invalid config is
    /// refused and counted, and the one in force stays. The app's `ConfigListener` hears of a
    /// change before this returns, on this thread ([`Listener`](super::listener::Listener)).
    pub(super) fn apply(&self, config: MigrationConfig, source: ConfigSource, host_overrides: HostOverrides) -> Result<RolloutDecision, DualPubError> {
        let (decision, change) = self.apply_quietly(config, source, host_overrides)?;
        if let Some((old, new)) = change {
            self.listener.tell(old, new);
        }
        Ok(decision)
    }

    /// As [`Shared::apply`], leaving the listener to the caller: returns the new decision and,
    /// if it changed, (old, new) to tell the listener once the caller holds no lock.
    pub(super) fn apply_quietly(
        &self,
        config: MigrationConfig,
        source: ConfigSource,
        host_overrides: HostOverrides,
    ) -> Result<(RolloutDecision, Option<Change>), DualPubError> {
        // Validated and serialised once, before the lock: the document may be 256 KiB.
        let mut document = config.document().inspect_err(|e| self.config_refused(e))?;
        if !host_overrides.is_empty() {
            let mut json = config.to_json();
            json[crate::config::source::HOST_OVERRIDES_KEY] = serde_json::json!(host_overrides);
            document = json.to_string();
        }
        let s = &self.settings;
        let decision = decide(&config, &s.device_id, s.company_id.as_deref());
        let mut st = self.lock();
        if st.closed {
            return Err(DualPubError::Closed);
        }
        if st.active.decision != decision {
            // Cut before the change, so the report's decision is the one its counters accrued under.
            self.hub.reporter().cut(&st, crate::telemetry::reports::Trigger::Config);
        }
        let applied_at_ms = clock::now_ms();
        st.outbox.persist_config(store::StoredConfig { json: document, source: source.as_str().into(), applied_at_ms });
        let old = std::mem::replace(&mut st.active, Arc::new(Active { config, decision: decision.clone(), source, applied_at_ms, host_overrides }));
        // A decision that stops a transport (an emergency stopping Pub/Sub; MQTT turned off at the
        // end of the migration) also stops what is queued for it; the other transport takes over
        // anything that would otherwise be owed to nobody (docs/CONTRACT.md#decision).
        // MQTT carrying Pub/Sub's fallback keeps what it holds.
        let mut done = Vec::new();
        for t in Transport::ALL {
            let was = if t == Transport::Mqtt { old.decision.mqtt_enabled } else { old.decision.pubsub_enabled };
            if was && !self.hub.owes(t, &decision) {
                done.extend(st.outbox.stop_owing(t));
            }
        }
        let config_debug = st.active.config.debug_mode;
        let window = st.active.config.upload_window_secs;
        if old.decision != decision {
            // Under the lock, so the stream sees the decisions in the order they took force.
            self.decisions.send_replace(decision.clone());
        }
        self.hub.completed(st, &done);
        self.hub.gate.set_config_window(window);
        self.refresh_debug_mode(config_debug);
        let change = (old.decision != decision).then(|| (old.decision.clone(), decision.clone()));
        if change.is_some() {
            self.hub.metrics.decision_changed();
            self.event(log::Level::Info, "config", || {
                let (o, n) = (&old.decision, &decision);
                format!(
                    "decision changed (config v{} -> v{}): mqtt {} -> {}, pubsub {} -> {}, reason {} -> {}",
                    o.config_version,
                    n.config_version,
                    o.mqtt_enabled,
                    n.mqtt_enabled,
                    o.pubsub_enabled,
                    n.pubsub_enabled,
                    o.reason.as_str(),
                    n.reason.as_str()
                )
            });
        }
        self.hub.wake_all();
        Ok((decision, change))
    }

    /// One config fetch, start to end: asks the fetcher for the document, applies what it
    /// answered and records the result (persisted with the fetch state). Returns the result
    /// (`None` when the schedule did not call for an attempt) and the change of decision, which
    /// the caller tells the listener off the runtime (a listener may block, e.g. in `flush`).
    pub(super) async fn fetch_config(&self, trigger: Trigger) -> (Option<FetchResult>, Option<Change>) {
        let mut attempt = match self.fetcher.begin(trigger).await {
            Ok(a) => a,
            Err(answer) => return (answer, None),
        };
        let response = attempt.get().await;
        if self.lock().closed {
            // Closed meanwhile: nothing to record, nobody to tell.
            return (Some(FetchResult::Failed { reason: "the publisher is closed".into() }), None);
        }
        let (result, retry_after_ms, accepted, change) = match response {
            Response::Document { text, etag } => match self.apply_fetched(&text, attempt.newest_version()) {
                Ok((result, version, change)) => (result, None, Some((version, etag)), change),
                Err(e) => (FetchResult::Rejected { reason: e.to_string() }, None, None, None),
            },
            Response::NotModified => (FetchResult::NotModified, None, None, None),
            Response::Refused(e) => {
                self.config_refused(&e);
                (FetchResult::Rejected { reason: e.to_string() }, None, None, None)
            }
            Response::Failed { reason, retry_after_ms } => (FetchResult::Failed { reason }, retry_after_ms, None, None),
        };
        let state = attempt.finish(result.clone(), retry_after_ms, accepted);
        self.hub.metrics.config_fetched(result.label());
        let level = if result.is_failure() { log::Level::Warn } else { log::Level::Info };
        let ended = self.fetcher.now_ms();
        self.event(level, "config_fetch", || match state.backoff_until_ms {
            Some(until) if result.is_failure() => format!("{result:?}; next attempt in {} s", (until - ended) / 1000),
            _ => format!("{result:?}"),
        });
        if let Ok(json) = serde_json::to_string(&state) {
            self.lock().outbox.persist_fetch_state(json);
        }
        (Some(result), change)
    }

    /// A scheduled fetch (the fetch task, on the runtime): a change of decision is told to the
    /// listener on an SDK callback thread, never on a runtime worker.
    pub(super) async fn scheduled_fetch(self: &Arc<Self>) -> Option<FetchResult> {
        self.fetch_and_tell(Trigger::Schedule).await
    }

    /// Fetches (for `trigger`) and tells a change of decision to the listener on an SDK
    /// callback thread, never on a runtime worker.
    pub(super) async fn fetch_and_tell(self: &Arc<Self>, trigger: Trigger) -> Option<FetchResult> {
        let (result, change) = self.fetch_config(trigger).await;
        if let Some(c) = change {
            // Queued first: if no callback thread can be had now, the next change tells it too.
            self.listener.queue(c);
            let shared = self.clone();
            if crate::callback::spawn(move || shared.listener.tell_untold()).is_none() {
                self.event(log::Level::Error, "config", || "ConfigListener told later: too many app callbacks are stuck".into());
            }
        }
        result
    }

    /// Parses and applies a fetched document; refused (and counted) if it is older than one
    /// fetched before. Returns the result, the document's version and the change of decision.
    pub(super) fn apply_fetched(&self, text: &str, newest: Option<u64>) -> Result<(FetchResult, u64, Option<Change>), DualPubError> {
        let config = self.parse_document(text)?;
        let version = config.version;
        if let Some(newest) = newest.filter(|&n| version < n) {
            let e = crate::error::ConfigError::StaleVersion { version, newest };
            self.config_refused(&e);
            return Err(e.into());
        }
        if self.active().config == config {
            return Ok((FetchResult::NotModified, version, None));
        }
        let (_, change) = self.apply_quietly(config, ConfigSource::Fetched, HostOverrides::new())?;
        Ok((FetchResult::Applied { version }, version, change))
    }
}
