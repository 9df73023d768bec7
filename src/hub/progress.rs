//! The signal the waiting calls wait on (`flush`, `awaitDurable`, `close`'s last report, the
//! delivery-state stream): given whenever rows are accepted, leave the outbox or become durable,
//! a report settles, or the app switches the network or collection. Blocking callers wait on
//! its condition variable with the state's lock; async callers ([`settle`], or a receiver from
//! [`Progress::subscribe`]) watch its generation, on the SDK's runtime, so that an app's `await`
//! holds no thread.

use super::{Hub, State};
use std::sync::{Condvar, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// The progress signal of one hub.
pub(crate) struct Progress {
    cond: Condvar,
    /// Bumped at every [`Progress::notify`]: an async waiter's wake-up.
    generation: watch::Sender<u64>,
}

impl Default for Progress {
    fn default() -> Self {
        Progress { cond: Condvar::new(), generation: watch::Sender::new(0) }
    }
}

impl Progress {
    /// Wakes every waiter, blocking and async.
    pub fn notify(&self) {
        self.cond.notify_all();
        self.generation.send_modify(|g| *g = g.wrapping_add(1));
    }

    /// A receiver that sees every [`Progress::notify`] from now on (`changed()`), for an async
    /// waiter on the SDK's runtime.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// Waits, blocking, for the next [`Progress::notify`] or `timeout`, with the state's lock
    /// released meanwhile.
    pub fn wait_timeout<'a>(&self, st: MutexGuard<'a, State>, timeout: Duration) -> MutexGuard<'a, State> {
        self.cond.wait_timeout(st, timeout).unwrap_or_else(|p| p.into_inner()).0
    }
}

/// Waits, without a thread of its own, until `done` holds for the hub's state, the publisher is
/// closed, or `deadline` passes. Runs on the SDK's runtime: it takes the state's lock briefly at
/// each progress signal, never across an await.
pub(crate) async fn settle(hub: &Hub, deadline: Instant, done: impl Fn(&State) -> bool) {
    let mut changes = hub.progress.subscribe();
    loop {
        // Seen before the look, so a signal given after it is never missed.
        changes.borrow_and_update();
        {
            let st = hub.lock();
            if done(&st) || st.closed {
                return;
            }
        }
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return },
            _ = tokio::time::sleep_until(deadline.into()) => return,
        }
    }
}
