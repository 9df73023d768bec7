//! The app's [`ConfigListener`] and the changes of decision not yet told to it. Each change is
//! told once, in the order the decisions changed, one call at a time: whoever finds no one
//! telling does the telling, and a change queued meanwhile (by another thread, or by the
//! listener itself applying a config) is told by that teller once the current call returns —
//! so a listener that applies configs back and forth loops instead of recursing. Whatever the
//! listener throws or panics with stays here.

use crate::config::rollout::RolloutDecision;
use crate::config::source::ConfigListener;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// A change of decision to tell the app's listener about: (old, new).
pub(super) type Change = (RolloutDecision, RolloutDecision);

/// The listener and its queue of untold changes.
#[derive(Default)]
pub(super) struct Listener {
    listener: Mutex<Option<Arc<dyn ConfigListener>>>,
    /// Decision changes not yet told.
    untold: Mutex<VecDeque<Change>>,
    /// Someone is telling.
    telling: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Listener {
    /// Registers `listener` (`None` removes it) and returns the one it replaces, for the caller
    /// to release with no lock held (the release is a call into the app's runtime).
    pub fn replace(&self, listener: Option<Arc<dyn ConfigListener>>) -> Option<Arc<dyn ConfigListener>> {
        std::mem::replace(&mut *lock(&self.listener), listener)
    }

    /// Queues a change without telling it: the next [`Listener::tell_untold`] tells it.
    pub fn queue(&self, change: Change) {
        lock(&self.untold).push_back(change);
    }

    /// Queues a change and tells every queued change, on this thread unless someone is telling.
    pub fn tell(&self, old: RolloutDecision, new: RolloutDecision) {
        self.queue((old, new));
        self.tell_untold();
    }

    /// Tells the listener every queued change, in order, one call at a time (see the module).
    pub fn tell_untold(&self) {
        loop {
            if self.telling.swap(true, Ordering::SeqCst) {
                return; // someone (perhaps this very thread, further up) is telling
            }
            loop {
                let next = lock(&self.untold).pop_front();
                let Some((old, new)) = next else { break };
                let listener = lock(&self.listener).clone();
                if let Some(l) = listener {
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || l.on_decision_changed(old, new)));
                }
            }
            self.telling.store(false, Ordering::SeqCst);
            // A change queued after the last pop and before the flag was cleared found someone
            // telling and left it to us: go round again.
            if lock(&self.untold).is_empty() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::rollout::decide;
    use crate::config::MigrationConfig;
    use std::sync::atomic::AtomicUsize;

    /// A decision told apart by its config version.
    fn d(version: u64) -> RolloutDecision {
        decide(&MigrationConfig { version, ..Default::default() }, "device-1", None)
    }

    /// Records (old, new) versions; while `inside` it counts overlapping calls.
    #[derive(Default)]
    struct Record {
        told: Mutex<Vec<(u64, u64)>>,
        inside: AtomicUsize,
        overlapped: AtomicBool,
    }

    impl ConfigListener for Record {
        fn on_decision_changed(&self, old: RolloutDecision, new: RolloutDecision) {
            if self.inside.fetch_add(1, Ordering::SeqCst) > 0 {
                self.overlapped.store(true, Ordering::SeqCst);
            }
            std::thread::yield_now();
            lock(&self.told).push((old.config_version, new.config_version));
            self.inside.fetch_sub(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn changes_are_told_in_order_and_without_a_listener_are_dropped() {
        let q = Listener::default();
        q.tell(d(1), d(2)); // nobody listens yet: told to no one, not kept
        let r = Arc::new(Record::default());
        assert!(q.replace(Some(r.clone())).is_none());
        q.queue((d(2), d(3)));
        q.queue((d(3), d(4)));
        assert!(lock(&r.told).is_empty(), "queued, not told");
        q.tell(d(4), d(5));
        assert_eq!(*lock(&r.told), [(2, 3), (3, 4), (4, 5)]);
        assert!(q.replace(None).is_some(), "the old listener is handed back to release");
    }

    /// Applies a config from inside the call, as a listener may: the nested change is told
    /// after the call returns, not inside it.
    struct Reentrant {
        queue: Arc<Listener>,
        depth: AtomicUsize,
        max_depth: AtomicUsize,
        told: Mutex<Vec<u64>>,
    }

    impl ConfigListener for Reentrant {
        fn on_decision_changed(&self, _old: RolloutDecision, new: RolloutDecision) {
            let depth = self.depth.fetch_add(1, Ordering::SeqCst) + 1;
            self.max_depth.fetch_max(depth, Ordering::SeqCst);
            lock(&self.told).push(new.config_version);
            if new.config_version < 50 {
                self.queue.tell(new.clone(), d(new.config_version + 1));
            }
            self.depth.fetch_sub(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_listener_that_changes_the_decision_loops_instead_of_recursing() {
        let q = Arc::new(Listener::default());
        let l = Arc::new(Reentrant { queue: q.clone(), depth: AtomicUsize::new(0), max_depth: AtomicUsize::new(0), told: Mutex::new(Vec::new()) });
        q.replace(Some(l.clone()));
        q.tell(d(0), d(1));
        assert_eq!(*lock(&l.told), (1..=50).collect::<Vec<_>>());
        assert_eq!(l.max_depth.load(Ordering::SeqCst), 1, "never called inside itself");
        q.replace(None); // the listener holds the queue: break the cycle
    }

    struct Panics(AtomicUsize);

    impl ConfigListener for Panics {
        fn on_decision_changed(&self, _old: RolloutDecision, _new: RolloutDecision) {
            self.0.fetch_add(1, Ordering::SeqCst);
            panic!("the app's listener failed");
        }
    }

    #[test]
    fn a_panicking_listener_is_told_every_change_all_the_same() {
        let q = Listener::default();
        let l = Arc::new(Panics(AtomicUsize::new(0)));
        q.replace(Some(l.clone()));
        q.queue((d(1), d(2)));
        q.tell(d(2), d(3));
        q.tell(d(3), d(4));
        assert_eq!(l.0.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn changes_from_many_threads_are_each_told_once_one_call_at_a_time() {
        let q = Arc::new(Listener::default());
        let r = Arc::new(Record::default());
        q.replace(Some(r.clone()));
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let q = q.clone();
                std::thread::spawn(move || {
                    for n in 0..250u64 {
                        let v = t * 1_000 + n;
                        q.tell(d(v), d(v + 1));
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        // No tell_untold here: every change must have been told by the time the tellers return.
        let told = lock(&r.told).clone();
        assert!(!r.overlapped.load(Ordering::SeqCst), "two calls at once");
        assert_eq!(told.len(), 1_000, "each change told once");
        for t in 0..4u64 {
            let mine: Vec<u64> = told.iter().map(|(o, _)| *o).filter(|o| o / 1_000 == t).collect();
            assert_eq!(mine, (0..250).map(|n| t * 1_000 + n).collect::<Vec<_>>(), "one thread's changes in its order");
        }
    }
}
