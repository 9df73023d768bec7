//! The hub of one publisher: the outbox under its one lock (with the decision in force, so a
//! location accepted after a config is applied is routed by it), the signals around it (wake a
//! transport, wake `flush` waiters), the metrics and the log funnel. The API, the store thread
//! and the transport tasks meet here; each transport sees it only through its narrow
//! [`crate::transport::Lane`].

use crate::config::MigrationConfig;
use crate::debug::Events;
use crate::metrics::Metrics;
use crate::outbox::{Completed, Outbox, Transport};
use crate::remote::ConfigSource;
use crate::rollout::RolloutDecision;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
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
    pub active: Arc<Active>,
    pub closed: bool,
}

/// The outbox under its lock and what signals around it.
pub(crate) struct Hub {
    state: Mutex<State>,
    /// Signalled whenever rows leave the outbox or become durable (for `flush`, `awaitDurable`).
    pub progress: Condvar,
    /// Per transport, indexed by [`Transport::index`]: there is work for it.
    wake: [Notify; 2],
    /// The migration metrics.
    pub metrics: Metrics,
    /// The log funnel (platform log, `debugReport()`, debug listener).
    pub events: Events,
    /// Pub/Sub sends rows up to this sequence number at once instead of waiting for the
    /// latency limit (set by `flush`).
    pub flush_target: AtomicU64,
}

impl Hub {
    /// A hub over `outbox`, with `active` in force, sequence numbers continuing after `max_seq`.
    pub fn new(outbox: Outbox, active: Active, max_seq: u64, events: Events) -> Self {
        Hub {
            state: Mutex::new(State { outbox, next_seq: max_seq + 1, durable_seq: max_seq, active: Arc::new(active), closed: false }),
            progress: Condvar::new(),
            wake: [Notify::new(), Notify::new()],
            metrics: Metrics::default(),
            events,
            flush_target: AtomicU64::new(0),
        }
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
            st = self.progress.wait_timeout(st, left).unwrap_or_else(|p| p.into_inner()).0;
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
        drop(st);
        self.progress.notify_all();
    }

    /// Acknowledges rows for `t`, recording latency from acceptance.
    pub fn ack(&self, t: Transport, acked: &[(u64, Instant)]) {
        let now = Instant::now();
        let seqs: Vec<u64> = acked.iter().map(|(s, _)| *s).collect();
        let mut st = self.lock();
        let done = st.outbox.ack(t, &seqs);
        self.metrics.published(t, acked.iter().map(|(_, at)| now.duration_since(*at).as_secs_f64() * 1000.0));
        self.completed(st, &done);
    }

    /// Wakes the task of transport `t`.
    pub fn wake(&self, t: Transport) {
        self.wake[t.index()].notify_one();
    }

    /// Wakes both transport tasks.
    pub fn wake_all(&self) {
        Transport::ALL.into_iter().for_each(|t| self.wake(t));
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
        let decision = crate::rollout::decide(&config, "d-1", None);
        Arc::new(Hub::new(
            Outbox::default(),
            Active { config, decision, source: ConfigSource::App, applied_at_ms: 0, host_overrides: Default::default() },
            0,
            Events::default(),
        ))
    }

    /// Queues `n` locations owed to the transports named.
    pub fn queue(hub: &Hub, n: usize, mqtt: bool, pubsub: bool) -> Vec<u64> {
        let mut st = hub.lock();
        (0..n)
            .map(|_| {
                let seq = st.next_seq;
                st.next_seq += 1;
                st.outbox.insert(Row::new(seq, format!("e{seq}").into(), Arc::from(&b"{}"[..]), 1, mqtt, pubsub));
                seq
            })
            .collect()
    }
}
