//! The tasks a publisher runs on the SDK runtime (MQTT, Pub/Sub, config fetch), owned: `close`
//! waits for them to end after shutdown is signalled, and dropping them aborts them.

use crate::runtime;
use std::sync::Mutex;
use std::time::Duration;
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
