//! The tasks a publisher runs on the SDK runtime (MQTT, Pub/Sub, config fetch, the upload
//! window, the report schedule), owned: `close` waits for them to end after shutdown is
//! signalled, and dropping them aborts them. The window's and the schedule's loops live here,
//! over the hub whose state they tick.

use crate::hub::{gate, Hub};
use crate::runtime;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How long `close` waits for the transport and fetch tasks to finish.
pub const TASK_STOP_TIMEOUT: Duration = Duration::from_secs(3);

/// The publisher's tasks on the SDK runtime: awaited at `close`, aborted if they overrun.
pub(crate) struct Tasks(Mutex<Vec<JoinHandle<()>>>);

impl Tasks {
    /// Owns `tasks`.
    pub fn new(tasks: Vec<JoinHandle<()>>) -> Self {
        Tasks(Mutex::new(tasks))
    }

    /// Waits (at most [`TASK_STOP_TIMEOUT`]) for every task to end after shutdown was signalled;
    /// aborts those that do not. Inside any tokio runtime (a drop on an SDK thread, or a Rust
    /// app closing from its own async code) it cannot block: the tasks are left to end on their
    /// own, which they do at the shutdown signal.
    pub fn stop(&self) {
        let tasks = std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()));
        if tasks.is_empty() || tokio::runtime::Handle::try_current().is_ok() {
            return;
        }
        let Ok(rt) = runtime::handle() else { return };
        let aborts: Vec<_> = tasks.iter().map(|t| t.abort_handle()).collect();
        let all = async {
            for t in tasks {
                let _ = t.await;
            }
        };
        // The timer is made inside the block, where the runtime's context is entered.
        if rt.block_on(async { tokio::time::timeout(TASK_STOP_TIMEOUT, all).await }).is_err() {
            aborts.iter().for_each(|a| a.abort());
        }
    }
}

impl Drop for Tasks {
    fn drop(&mut self) {
        for t in self.0.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            t.abort();
        }
    }
}

/// The window task: opens each burst when it is due (waking both transports at once, so they
/// start within moments of each other) and closes a stalled one.
pub(crate) async fn window(hub: Arc<Hub>, mut shutdown: watch::Receiver<bool>) {
    loop {
        if *shutdown.borrow() {
            return;
        }
        let next = hub.gate.next();
        let timer = async {
            match next {
                gate::Next::At(at) => tokio::time::sleep_until(at.into()).await,
                gate::Next::Idle => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = timer => {
                hub.gate.woke();
                // Decided under the state lock, so what is owed cannot change meanwhile.
                let opened = {
                    let st = hub.lock();
                    hub.gate.tick(Instant::now(), Hub::owed(&st), st.next_seq - 1)
                };
                if opened {
                    hub.wake_all();
                    // With a window the burst paces the retries: a transport that takes part
                    // stops waiting out its own backoff (one sitting out stays out).
                    for t in crate::outbox::Transport::ALL.into_iter().filter(|t| hub.gate.may_send(*t)) {
                        hub.rousers.rouse(t);
                    }
                }
            }
            _ = hub.gate.changed.notified() => hub.gate.woke(),
            _ = shutdown.changed() => {}
        }
    }
}

/// The report schedule's task: cuts a silent report when two intervals passed without location
/// traffic (the only time a report wakes the radio by itself while the app runs). Sleeps until
/// then, re-reading the clock at least every five minutes; until shutdown.
pub(crate) async fn reports(hub: Arc<Hub>, mut shutdown: watch::Receiver<bool>) {
    const RECHECK_MS: i64 = 300_000;
    loop {
        // Past due and not cut (the daily cap): look again in five minutes, not in a loop.
        let wait_ms = hub.reporter().silent_due_ms().map_or(RECHECK_MS, |due| match due.saturating_sub(hub.now_ms()) {
            d if d <= 0 => RECHECK_MS,
            d => d.clamp(1_000, RECHECK_MS),
        });
        let mut wait = std::time::Duration::from_millis(wait_ms as u64);
        // A config change deferred by the once-a-minute rule is reported when the minute ends.
        if let Some(due) = hub.reporter().config_due_in() {
            wait = wait.min(due + std::time::Duration::from_millis(10));
        }
        // A report backing off after a failed send is tried again when its pause ends.
        let retry = hub.reporter().slots().next_retry();
        if let Some(at) = retry {
            wait = wait.min(at.saturating_duration_since(std::time::Instant::now()) + std::time::Duration::from_millis(10));
        }
        if !runtime::sleep_or_shutdown(wait, &mut shutdown).await {
            return;
        }
        if !hub.reporter().tick() && retry.is_some_and(|at| std::time::Instant::now() >= at) {
            hub.wake_all();
        }
    }
}
