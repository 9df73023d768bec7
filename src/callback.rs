//! App callbacks (a `TokenProvider`, a `ConfigListener` told of a fetched change) run on
//! threads the SDK starts for them, named `dualpub-callback`: never on the runtime's workers,
//! whose stall would stop every transport, and never on its blocking pool, where host names are
//! resolved (four hung calls there stopped every connection to `localhost` in the process). A
//! call that never returns holds its own thread; at most [`MAX_RUNNING`] run at once in the
//! process, so a hung app cannot make the SDK start threads without end.

use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::oneshot;

/// App callbacks that may run at once in the process.
pub const MAX_RUNNING: usize = 16;

static RUNNING: AtomicUsize = AtomicUsize::new(0);

/// App callbacks running now (a stuck one counts until it returns).
pub fn running() -> usize {
    RUNNING.load(Ordering::SeqCst)
}

/// Counts a running call; uncounts it when dropped (at the end of the thread, however it ends).
struct Running;

impl Drop for Running {
    fn drop(&mut self) {
        RUNNING.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Runs `f` on a new `dualpub-callback` thread, a panic caught; the receiver gets the result.
/// `None` when [`MAX_RUNNING`] calls are already running (stuck) or no thread can be started.
pub(crate) fn spawn<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<oneshot::Receiver<std::thread::Result<T>>> {
    if RUNNING.fetch_add(1, Ordering::SeqCst) >= MAX_RUNNING {
        RUNNING.fetch_sub(1, Ordering::SeqCst);
        return None;
    }
    let counted = Running;
    let (tx, rx) = oneshot::channel();
    std::thread::Builder::new()
        .name("dualpub-callback".into())
        .spawn(move || {
            let _counted = counted;
            let _ = tx.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)));
        })
        .ok()
        .map(|_| rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hung_calls_are_capped_and_counted_until_they_return() {
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let wait = std::sync::Arc::new(std::sync::Mutex::new(wait));
        let mut hung = Vec::new();
        while let Some(rx) = {
            let w = wait.clone();
            spawn(move || w.lock().unwrap().recv().ok())
        } {
            hung.push(rx);
        }
        assert_eq!(running(), MAX_RUNNING, "spawned up to the cap, and refused beyond it");
        for _ in 0..hung.len() {
            release.send(()).unwrap();
        }
        for rx in hung {
            assert!(rx.blocking_recv().unwrap().is_ok());
        }
        let panicked = spawn(|| panic!("an app callback panics")).unwrap();
        assert!(panicked.blocking_recv().unwrap().is_err(), "the panic stays on its thread");
    }
}
