//! The async twins of the calls that wait (`flush`, `awaitDurable`, `refreshConfig`, and the
//! background `drain`): the wait runs as a task on the SDK's runtime and the app's future only
//! awaits that task's answer on a oneshot channel, so polling it (from Kotlin's main dispatcher,
//! or a Swift task) takes no lock and does no I/O, and a thousand waiters hold no thread.
//! Dropping the app's future (a cancelled coroutine) ends the wait, never what it waited for:
//! the flush's burst stays open until its deadline and a fetch runs to its end. Opening and
//! closing, which block by nature, run on a thread of their own ([`on_thread`]).

use super::{Publisher, Shared};
use crate::config::fetch::{FetchResult, Trigger, REFRESH_TIMEOUT};
use crate::error::{DualPubError, Error};
use crate::hub::{progress, Burst};
use crate::publisher::FlushReport;
use crate::runtime;
use std::any::Any;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Whether a task keeps running once nobody waits for its answer.
#[derive(Clone, Copy, PartialEq)]
pub(super) enum Unwanted {
    /// The answer was all it was for: it stops.
    Stop,
    /// It does work of its own (a config fetch): it runs to its end.
    Finish,
}

/// Starts `work` on the SDK's runtime now and returns the future of its answer.
pub(super) fn on_runtime<T: Send + 'static>(
    shared: &Arc<Shared>,
    unwanted: Unwanted,
    work: impl Future<Output = Result<T, Error>> + Send + 'static,
) -> impl Future<Output = Result<T, DualPubError>> + Send + 'static {
    let (tx, rx) = oneshot::channel::<Answer>();
    let task = Box::pin(async move {
        let mut tx = tx;
        let mut work = std::pin::pin!(work);
        tokio::select! {
            // The work first: its synchronous start (a flush's burst) always happens.
            biased;
            answer = &mut work => { let _ = tx.send(answer.map(|a| Box::new(a) as Box<dyn Any + Send>)); }
            _ = tx.closed(), if unwanted == Unwanted::Stop => {}
        }
    });
    let waiting = answer(spawn(task).map(|()| rx), shared.hub.clone());
    async move { waiting.await.map(|a| *a.downcast::<T>().expect("the answer's own type")) }
}

/// An async call's answer, its type erased so that one channel type serves every call (each
/// type would cost the library its own copy of the channel's code: docs/SIZE.md).
type Answer = Result<Box<dyn Any + Send>, Error>;

/// Awaits the answer of a task started (or not) on the runtime; failures are logged and typed.
async fn answer(started: Result<oneshot::Receiver<Answer>, Error>, hub: Arc<crate::hub::Hub>) -> Result<Box<dyn Any + Send>, DualPubError> {
    let got = match started {
        Ok(rx) => rx.await.unwrap_or(Err(Error::Lost("an async call's answer"))),
        Err(e) => Err(e),
    };
    got.map_err(|e| hub.events.failed(e))
}

/// Spawns a boxed task on the SDK's runtime: one task type for every async call, so the
/// runtime's per-type task code is compiled once (it is most of what an async call costs in the
/// library's size: docs/SIZE.md).
fn spawn(task: std::pin::Pin<Box<dyn Future<Output = ()> + Send>>) -> Result<(), Error> {
    runtime::handle().map(|rt| drop(rt.spawn(task)))
}

impl Shared {
    /// A flush's start: everything accepted so far becomes its target, Pub/Sub sends up to it at
    /// once, and an upload burst opens now and stays open until the flush gives up.
    pub(super) fn begin_flush(&self, timeout: Duration) -> (u64, Instant) {
        let start = Instant::now();
        let target = self.lock().next_seq - 1;
        self.hub.flush_target.fetch_max(target, Ordering::SeqCst);
        self.hub.open_burst(Burst::Until(start.checked_add(timeout).unwrap_or(start + Duration::from_secs(365 * 86_400))));
        self.hub.wake_all();
        (target, start)
    }

    /// What became of a flush's target by now.
    pub(super) fn flush_report(&self, target: u64, start: Instant) -> FlushReport {
        let (pending_mqtt, pending_pubsub) = self.lock().outbox.owed_up_to(target);
        FlushReport { completed: pending_mqtt == 0 && pending_pubsub == 0, pending_mqtt, pending_pubsub, elapsed_ms: start.elapsed().as_millis() as u64 }
    }

    fn closed(&self) -> Result<(), Error> {
        if self.lock().closed {
            Err(Error::Closed)
        } else {
            Ok(())
        }
    }
}

/// What a background drain achieved (`drainAsync`: an Android WorkManager job, an iOS
/// background task).
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct DrainReport {
    /// Nothing was owed any more when it returned.
    pub completed: bool,
    /// Messages MQTT acknowledged while it ran (locations and reports).
    pub delivered_mqtt: u64,
    /// Messages Pub/Sub acknowledged while it ran.
    pub delivered_pubsub: u64,
    /// Locations still owed to MQTT.
    pub pending_mqtt: u64,
    /// Locations still owed to Pub/Sub.
    pub pending_pubsub: u64,
    /// The app said the network was available (a drain without it returns at once).
    pub network_available: bool,
    /// How long it ran.
    pub elapsed_ms: u64,
}

impl Publisher {
    /// Sends everything owed in one burst and waits until it is delivered, `timeout` passes, or
    /// the network is (or goes) unavailable; reports what was delivered and what is left. For
    /// the platform's background work (Android's `DualPubUploadWorker`, iOS's background
    /// task): bounded, and it never holds a thread while it waits.
    pub fn drain_async(&self, timeout: Duration) -> impl Future<Output = Result<DrainReport, DualPubError>> + Send + 'static {
        let shared = self.shared.clone();
        on_runtime(&self.shared, Unwanted::Stop, async move {
            shared.closed()?;
            let metrics = &shared.hub.metrics;
            let acked = || [metrics.acknowledged(crate::outbox::Transport::Mqtt), metrics.acknowledged(crate::outbox::Transport::PubSub)];
            let before = acked();
            let (target, start) = shared.begin_flush(timeout);
            let gate = &shared.hub.gate;
            progress::settle(&shared.hub, start + timeout, |st| st.outbox.drained_up_to(target) || !gate.network()).await;
            let f = shared.flush_report(target, start);
            let after = acked();
            Ok(DrainReport {
                completed: f.completed,
                delivered_mqtt: after[0] - before[0],
                delivered_pubsub: after[1] - before[1],
                pending_mqtt: f.pending_mqtt,
                pending_pubsub: f.pending_pubsub,
                network_available: gate.network(),
                elapsed_ms: start.elapsed().as_millis() as u64,
            })
        })
    }

    /// The async twin of [`Publisher::flush`]: the same flush, waited for without a thread.
    /// Dropping the future stops the wait, not the flush (its burst stays open until
    /// `timeout`).
    pub fn flush_async(&self, timeout: Duration) -> impl Future<Output = Result<FlushReport, DualPubError>> + Send + 'static {
        let shared = self.shared.clone();
        on_runtime(&self.shared, Unwanted::Stop, async move {
            shared.closed()?;
            let (target, start) = shared.begin_flush(timeout);
            progress::settle(&shared.hub, start + timeout, |st| st.outbox.drained_up_to(target)).await;
            Ok(shared.flush_report(target, start))
        })
    }

    /// The async twin of [`Publisher::await_durable`].
    pub fn await_durable_async(&self, timeout: Duration) -> impl Future<Output = Result<bool, DualPubError>> + Send + 'static {
        let shared = self.shared.clone();
        on_runtime(&self.shared, Unwanted::Stop, async move {
            shared.closed()?;
            let start = Instant::now();
            let target = shared.lock().next_seq - 1;
            progress::settle(&shared.hub, start + timeout, |st| st.durable_seq >= target).await;
            Ok(shared.lock().durable_seq >= target)
        })
    }

    /// The async twin of [`Publisher::refresh_config`]: the fetch runs to its end (at most
    /// 25 s) even if the future is dropped; a change of decision is told to the
    /// `ConfigListener` on an SDK callback thread, as for a scheduled fetch.
    pub fn refresh_config_async(&self) -> impl Future<Output = Result<FetchResult, DualPubError>> + Send + 'static {
        let shared = self.shared.clone();
        on_runtime(&self.shared, Unwanted::Finish, async move {
            shared.closed()?;
            let fetched = tokio::time::timeout(REFRESH_TIMEOUT, shared.fetch_and_tell(Trigger::Refresh)).await;
            let result = fetched.unwrap_or_else(|_| Some(FetchResult::Failed { reason: format!("no answer within {} s", REFRESH_TIMEOUT.as_secs()) }));
            shared.closed()?;
            Ok(result.unwrap_or(FetchResult::NotConfigured))
        })
    }
}

/// Runs `f` on a thread of its own, named `name`, and returns the future of its answer: for
/// the rare calls whose work blocks by nature (opening the outbox database, closing), which
/// must not hold one of the runtime's two workers. A dropped future lets `f` finish.
pub(crate) fn on_thread<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> impl Future<Output = Result<T, DualPubError>> + Send + 'static {
    let (tx, rx) = oneshot::channel();
    let spawned = std::thread::Builder::new().name(name.to_string()).spawn(move || {
        let _ = tx.send(f());
    });
    async move {
        spawned.map_err(|source| DualPubError::from(Error::Start { what: "an SDK thread", source }))?;
        rx.await.map_err(|_| DualPubError::from(Error::Lost("an SDK thread's answer")))
    }
}

impl Publisher {
    /// The async twin of [`Publisher::with_providers`]: the outbox database is opened and its
    /// backlog read on a thread of the SDK's (`dualpub-open`), not the caller's.
    pub fn open_async(config: crate::SdkConfig, providers: super::Providers) -> impl Future<Output = Result<Publisher, DualPubError>> + Send + 'static {
        let opening = on_thread("dualpub-open", move || Publisher::with_providers(config, providers));
        async move { opening.await? }
    }
}
