//! The hub of one publisher: the outbox under its one lock (with the decision in force, so a
//! location accepted after a config is applied is routed by it), the signals around it (wake a
//! transport, wake `flush` waiters), the metrics and the log funnel. The API, the store thread
//! and the transport tasks meet here; each transport sees it only through its narrow
//! [`Lane`]. The migration reports' schedule and slots hang off it too
//! ([`crate::telemetry::reports`]): they are cut from the same counters and outbox, under the same lock.

pub(crate) mod gate;
pub(crate) mod lane;
mod links;
pub(crate) mod progress;
mod reporter;

pub(crate) use lane::Lane;
pub(crate) use links::{Link, Links, Rousers};
pub(crate) use reporter::Reporter;

use crate::config::rollout::RolloutDecision;
use crate::config::source::ConfigSource;
use crate::config::MigrationConfig;
use crate::outbox::{Completed, Outbox, Transport};
use crate::telemetry::events::Events;
use crate::telemetry::metrics::Metrics;
use crate::telemetry::reports::{Identity, Reports, Tally, Trigger};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// The config in force and the decision it gives this device.
#[derive(Debug, Clone)]
pub(crate) struct Active {
    pub config: MigrationConfig,
    pub decision: RolloutDecision,
    pub source: ConfigSource,
    pub applied_at_ms: i64,
    /// Device overrides the host app's remote values set (`migration_override_<id>`): the next
    /// remote values without that key remove it.
    pub host_overrides: std::collections::BTreeSet<String>,
}

/// Everything behind the publisher's one lock.
pub(crate) struct State {
    pub outbox: Outbox,
    pub next_seq: u64,
    /// Every location with a sequence number up to this one is on disk.
    pub durable_seq: u64,
    /// The last location `seq` (the wire's) given out; persisted with the reports' tally.
    pub last_loc_seq: u64,
    pub active: Arc<Active>,
    pub closed: bool,
}

impl State {
    /// What each transport owes, and the highest sequence number up to which every location
    /// has left the outbox (the gate compares it with the open burst's target itself).
    fn burst_view(&self) -> ([bool; 2], u64) {
        let delivered_through = self.outbox.oldest_seq().map_or(self.next_seq - 1, |oldest| oldest - 1);
        (Hub::owed(self), delivered_through)
    }

    /// The gauges of the outbox and the decision in force (for `metrics()` and reports).
    pub fn gauges(&self) -> crate::telemetry::metrics::Gauges {
        crate::telemetry::metrics::Gauges {
            depth: Transport::ALL.map(|t| self.outbox.depth(t) as u64),
            oldest_age_seconds: self.outbox.oldest().map(|t| t.elapsed().as_secs_f64()).unwrap_or(0.0),
            config_version: self.active.decision.config_version,
            rollout_bucket: self.active.decision.bucket,
        }
    }
}

/// The outbox under its lock and what signals around it.
pub(crate) struct Hub {
    state: Mutex<State>,
    /// Signalled whenever rows leave the outbox or become durable (for `flush`, `awaitDurable`).
    pub progress: progress::Progress,
    /// Per transport, indexed by [`Transport::index`]: there is work for it.
    wake: [Notify; 2],
    /// The migration metrics.
    pub metrics: Metrics,
    /// The log funnel (platform log, `debugReport()`, debug listener).
    pub events: Events,
    /// Pub/Sub sends rows up to this sequence number at once instead of waiting for the
    /// latency limit (set by `flush`).
    pub flush_target: AtomicU64,
    /// The migration reports (locked after `state`, never before).
    reports: Mutex<Reports>,
    /// Who the device is, for its reports.
    identity: Identity,
    /// The app allows reports (`SdkConfig.reportsEnabled`).
    reports_allowed: bool,
    /// The clock reports are scheduled and stamped by.
    clock: Arc<dyn crate::clock::Clock>,
    /// Per transport, what its last attempt said of the link, so `close` waits a moment for
    /// the last report over a link that is up or not yet tried.
    pub links: Links,
    /// Per transport, cuts a retry backoff short (the link is likely back, or the app asks):
    /// signalled by [`Hub::rouse`], awaited by [`crate::hub::Lane::back_off`].
    pub rousers: Rousers,
    /// When the transports may send: upload bursts and the app's network switch (a leaf lock).
    pub gate: gate::Gate,
}

/// How [`Hub::open_burst`] opens a burst.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Burst {
    /// At once (`flushNow`, a closing publisher's last report).
    Now,
    /// At once, for a blocking `flush` that waits until then: failures do not end it earlier.
    Until(Instant),
    /// Soon: the network came back or a backlog was restored, events a whole fleet may share,
    /// so the burst waits for the device's phase of min(W, 30 s) (docs/CONTRACT.md#upload-windows).
    Spread,
}

/// How long after a transport delivered locations the radio counts as still on: a report not
/// allowed to wake the radio by itself may go within this window.
const RADIO_WARM: Duration = Duration::from_secs(20);

/// What the hub needs to start besides the outbox.
pub(crate) struct Setup {
    /// The config in force.
    pub active: Active,
    /// The highest outbox sequence number stored.
    pub max_seq: u64,
    /// The reports' persisted tally (a new epoch if none).
    pub tally: Tally,
    /// Who the device is.
    pub identity: Identity,
    /// `SdkConfig.reportsEnabled`.
    pub reports_allowed: bool,
    /// The publisher's clock.
    pub clock: Arc<dyn crate::clock::Clock>,
    /// `SdkConfig.uploadWindowSecs`.
    pub upload_window_secs: u32,
}

impl Hub {
    /// A hub over `outbox`, with `setup.active` in force, outbox sequence numbers continuing
    /// after `setup.max_seq` and location `seq`s after the tally's.
    pub fn new(outbox: Outbox, setup: Setup, events: Events) -> Self {
        let Setup { active, max_seq, tally, identity, reports_allowed, clock, upload_window_secs } = setup;
        let gate = gate::Gate::new(upload_window_secs, active.config.upload_window_secs, Some(gate::Phase::of_device(&identity.device_id)));
        let last_loc_seq = tally.counters.last_seq;
        Hub {
            state: Mutex::new(State { outbox, next_seq: max_seq + 1, durable_seq: max_seq, last_loc_seq, active: Arc::new(active), closed: false }),
            progress: progress::Progress::default(),
            wake: [Notify::new(), Notify::new()],
            metrics: Metrics::default(),
            events,
            flush_target: AtomicU64::new(0),
            reports: Mutex::new(Reports::resume(tally)),
            identity,
            reports_allowed,
            clock,
            links: Links::default(),
            rousers: Rousers::default(),
            gate,
        }
    }

    /// The device clock, ms.
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// The migration reports' handle on this hub.
    pub fn reporter(&self) -> Reporter<'_> {
        Reporter::new(self)
    }

    /// Locks the state; a poisoned lock (a panic elsewhere) is recovered, never propagated.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits on [`Hub::progress`] until `done` holds, the publisher is closed, or `timeout`
    /// (counted from `start`) has passed; returns the lock for a last look.
    pub fn wait_until<'a>(&self, mut st: MutexGuard<'a, State>, start: Instant, timeout: Duration, done: impl Fn(&State) -> bool) -> MutexGuard<'a, State> {
        while !done(&st) && !st.closed {
            let left = timeout.saturating_sub(start.elapsed());
            if left.is_zero() {
                break;
            }
            st = self.progress.wait_timeout(st, left);
        }
        st
    }

    /// Records rows that left the outbox while the lock `st` is still held (so a `flush` that
    /// sees them gone also sees them counted), then releases it and wakes `flush` waiters.
    pub fn completed(&self, st: MutexGuard<'_, State>, done: &[Completed]) {
        for c in done {
            if let Some(o) = c.outcome {
                self.metrics.outcome(o);
            }
        }
        // The burst's locations delivered (or nothing left that may still go): the burst
        // closes and MQTT hangs up. Decided before the lock goes (`Gate::settled`).
        let (owed, delivered_through) = st.burst_view();
        let closed = self.gate.settled(owed, delivered_through, Instant::now());
        drop(st);
        self.progress.notify();
        if closed {
            self.wake_all();
        }
    }

    /// Per transport, whether anything is still owed to it.
    pub fn owed(st: &State) -> [bool; 2] {
        Transport::ALL.map(|t| st.outbox.depth(t) > 0)
    }

    /// Transport `t` failed in the open upload burst: it waits for the next one.
    pub fn burst_failed(&self, t: Transport) {
        let st = self.lock();
        let (owed, delivered_through) = st.burst_view();
        let closed = self.gate.failed(t, owed, delivered_through, Instant::now());
        drop(st);
        if closed {
            self.wake_all();
        }
    }

    /// Opens an upload burst (flush, `flushNow`, the network back, a restored backlog) and wakes
    /// the transports, cutting their retry backoff short; with nothing owed it closes again at
    /// once. [`Burst::Spread`] puts it off by the device's share of the fleet spread (at once
    /// without a window).
    pub fn open_burst(&self, how: Burst) {
        Transport::ALL.into_iter().for_each(|t| self.rouse(t));
        let now = Instant::now();
        let st = self.lock();
        let target = st.next_seq - 1;
        let opened = match how {
            Burst::Until(until) => self.gate.open_urgent(now, until, target),
            Burst::Now => self.gate.open_now(now, target),
            Burst::Spread => self.gate.open_spread(now) && self.gate.open_now(now, target),
        };
        if opened {
            let (owed, delivered_through) = st.burst_view();
            self.gate.settled(owed, delivered_through, now);
            drop(st);
            self.wake_all();
        }
    }

    /// Acknowledges rows for `t`, recording latency from acceptance. Location traffic: a
    /// report that is due is cut now, to go out in this network window.
    pub fn ack(&self, t: Transport, acked: &[(u64, Instant)]) {
        let now = Instant::now();
        let seqs: Vec<u64> = acked.iter().map(|(s, _)| *s).collect();
        let mut st = self.lock();
        let timestamps: Vec<i64> = seqs.iter().filter_map(|s| st.outbox.timestamp_of(*s)).collect();
        let done = st.outbox.batched(|o| o.ack(t, &seqs)); // one store message for them all
        self.gate.delivered(t);
        self.metrics.published(t, acked.iter().map(|(_, at)| now.duration_since(*at).as_secs_f64() * 1000.0));
        self.reporter().slots().acked(t, timestamps, self.now_ms());
        self.reporter().cut(&st, Trigger::Interval);
        self.completed(st, &done);
    }

    /// Whether decision `d` sends new work to `t` now: Pub/Sub when enabled; MQTT when enabled,
    /// or as Pub/Sub's fallback while its breaker is open (docs/CONTRACT.md#fallback).
    pub fn owes(&self, t: Transport, d: &crate::config::rollout::RolloutDecision) -> bool {
        match t {
            Transport::Mqtt => d.mqtt_enabled || (d.pubsub_enabled && d.fallback_to_mqtt && self.metrics.circuit_open(Transport::PubSub)),
            Transport::PubSub => d.pubsub_enabled,
        }
    }

    /// Wakes the task of transport `t` (there may be work: with an upload window, the next
    /// burst is scheduled if none is).
    pub fn wake(&self, t: Transport) {
        self.gate.work_owed(Instant::now());
        self.wake[t.index()].notify_one();
    }

    /// Wakes both transport tasks.
    pub fn wake_all(&self) {
        Transport::ALL.into_iter().for_each(|t| self.wake(t));
    }

    /// Tells transport `t` to try again now: it no longer sits out upload bursts after a
    /// failure, and a retry backoff or an open breaker it is sleeping out ends.
    pub fn rouse(&self, t: Transport) {
        self.gate.rouse(t);
        self.rousers.rouse(t);
        self.wake(t);
    }

    /// Resolves when [`Hub::wake`] is called for `t` (or was, since the last wait).
    pub async fn woken(&self, t: Transport) {
        self.wake[t.index()].notified().await;
    }

    /// Logs an event through the funnel.
    pub fn event(&self, level: log::Level, kind: &str, message: impl FnOnce() -> String) {
        self.events.event(level, kind, message);
    }

    /// Applies the outbox caps: the oldest locations (and dead letters) beyond them are dropped,
    /// counted and logged.
    pub fn enforce_limits(&self, st: &mut State) {
        for (why, n) in st.outbox.evict() {
            self.metrics.dropped(why.as_str(), n);
            self.event(log::Level::Warn, "dropped", || format!("{n} location(s): {}", why.as_str()));
        }
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    //! A hub with an in-memory outbox (rows visible at once) for unit tests of the transports.
    use super::*;
    use crate::outbox::Row;

    /// A hub in force with `config` for device `d-1`.
    pub fn hub(config: MigrationConfig) -> Arc<Hub> {
        hub_with_window(config, 0)
    }

    /// The same with an upload window of `window_secs`.
    pub fn hub_with_window(config: MigrationConfig, window_secs: u32) -> Arc<Hub> {
        let decision = crate::config::rollout::decide(&config, "d-1", None);
        let setup = Setup {
            active: Active { config, decision, source: ConfigSource::App, applied_at_ms: 0, host_overrides: Default::default() },
            max_seq: 0,
            tally: Tally::new_epoch(0),
            identity: Identity { device_id: "d-1".into(), ..Identity::default() },
            reports_allowed: true,
            clock: Arc::new(crate::clock::ManualClock::new(1_000)),
            upload_window_secs: window_secs,
        };
        Arc::new(Hub::new(Outbox::default(), setup, Events::default()))
    }

    /// Queues `n` locations owed to the transports named.
    pub fn queue(hub: &Hub, n: usize, mqtt: bool, pubsub: bool) -> Vec<u64> {
        let mut st = hub.lock();
        (0..n)
            .map(|_| {
                let seq = st.next_seq;
                st.next_seq += 1;
                st.outbox.insert(Row::new(seq, format!("e{seq}").into(), Arc::from(&b"{}"[..]), 1, mqtt, pubsub), Some(seq));
                seq
            })
            .collect()
    }
}
