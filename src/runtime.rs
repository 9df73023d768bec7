//! The SDK's one tokio runtime, shared by every publisher in the process: two worker threads
//! named `dualpub-worker`, started on first use. The app's threads only ever enqueue work.

use crate::error::Error;
use std::sync::OnceLock;
use tokio::runtime::{Handle, Runtime};

/// Worker threads: enough for two transports' I/O, small enough for a phone.
pub const WORKER_THREADS: usize = 2;

thread_local! {
    static SDK_WORKER: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether the calling thread is one of the SDK runtime's threads (its workers or its blocking
/// pool): a blocking wait there can hold up the very work it waits for.
pub(crate) fn on_sdk_thread() -> bool {
    SDK_WORKER.with(|w| w.get())
}

static RUNTIME: OnceLock<Result<Runtime, (std::io::ErrorKind, String)>> = OnceLock::new();

/// The runtime handle, starting the runtime on first call.
pub(crate) fn handle() -> Result<Handle, Error> {
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(WORKER_THREADS)
                .max_blocking_threads(4)
                .thread_name("dualpub-worker")
                .on_thread_start(|| SDK_WORKER.with(|w| w.set(true)))
                .enable_all()
                .build()
                .map_err(|e| (e.kind(), e.to_string()))
        })
        .as_ref()
        .map(|rt| rt.handle().clone())
        .map_err(|(kind, text)| Error::Start { what: "the SDK runtime", source: std::io::Error::new(*kind, text.clone()) })
}

/// Tasks alive on the SDK's runtime, every publisher's (the transports, the waits of async
/// calls): a wait that outlived its caller would show here (`debugReport()`, `sdkTasks`).
pub(crate) fn alive_tasks() -> usize {
    RUNTIME.get().and_then(|r| r.as_ref().ok()).map_or(0, |rt| rt.metrics().num_alive_tasks())
}

/// Sleeps for `d` unless shutdown is signalled first; returns false on shutdown.
pub(crate) async fn sleep_or_shutdown(d: std::time::Duration, shutdown: &mut tokio::sync::watch::Receiver<bool>) -> bool {
    if *shutdown.borrow() {
        return false;
    }
    tokio::select! {
        _ = tokio::time::sleep(d) => true,
        _ = shutdown.changed() => false,
    }
}
