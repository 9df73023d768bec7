//! The `dualpub-store` thread and what it tells the publisher: commits (rows durable, a
//! report's number on disk, a rebuilt database), payloads read back for a transport, and
//! locations a damaged page made unreadable.

use super::Shared;
use crate::error::Error;
use crate::hub::State;
use crate::outbox::store;
use std::sync::MutexGuard;
use std::time::Duration;

/// How long a transport waits before asking again for payloads the database failed to read.
const RELOAD_PAUSE: Duration = Duration::from_secs(5);

impl Shared {
    /// Called by the store thread with payloads it read back for `loaded.transport`: they go
    /// back into the outbox and the transport is woken to take them. After a failed read
    /// (logged) it is woken [`RELOAD_PAUSE`] later to ask again.
    pub(super) fn loaded(&self, loaded: store::Loaded) {
        let t = loaded.transport;
        if !loaded.unreadable.is_empty() {
            let mut st = self.lock();
            let gone = st.outbox.drop_unreadable(&loaded.unreadable);
            self.unreadable(st, gone);
        }
        let Some(e) = loaded.failed else {
            self.lock().outbox.install(t, loaded.bodies);
            self.hub.wake(t);
            return;
        };
        // The transport's read stays "in progress" for the pause, so no take asks again sooner.
        self.hub.metrics.storage_error();
        self.event(log::Level::Error, "storage", || {
            format!("cannot read queued locations back for {} ({e}); trying again in {} s", t.as_str(), RELOAD_PAUSE.as_secs())
        });
        let hub = self.hub.clone();
        let retry = move || {
            hub.lock().outbox.install(t, Vec::new());
            hub.wake(t);
        };
        match crate::runtime::handle() {
            Ok(rt) => drop(rt.spawn(async move {
                tokio::time::sleep(RELOAD_PAUSE).await;
                retry();
            })),
            Err(_) => retry(),
        }
    }

    /// `gone` locations left the outbox (`st`) because the database cannot read them: counted
    /// and logged; `flush` waiters and the upload burst see them gone.
    pub(super) fn unreadable(&self, st: MutexGuard<'_, State>, gone: u64) {
        if gone > 0 {
            self.hub.metrics.dropped(crate::telemetry::metrics::DROPPED_UNREADABLE, gone);
        }
        self.hub.completed(st, &[]);
        if gone > 0 {
            self.event(log::Level::Warn, "dropped", || {
                format!("{gone} location(s): {} (a damaged page of the outbox database)", crate::telemetry::metrics::DROPPED_UNREADABLE)
            });
        }
    }

    /// Called by the store thread after it rebuilt the database: what the new file lacks is
    /// written again from memory, or (only on the lost disk) leaves the outbox, counted.
    pub(super) fn rebuilt(&self, r: &store::Rebuilt) {
        match r.cause {
            store::RebuildCause::Corrupt(_) => self.hub.metrics.storage_reset(),
            store::RebuildCause::Lost => self.hub.metrics.storage_error(),
        }
        self.event(log::Level::Error, "storage", || r.describe());
        let mut st = self.lock();
        let (again, gone) = st.outbox.rebuilt_without(&r.salvage.lost_rows, &r.salvage.lost_dead_letters);
        self.unreadable(st, gone);
        if again > 0 {
            self.event(log::Level::Warn, "storage", || format!("wrote {again} location(s) the rebuilt outbox database lacked again from memory"));
        }
    }

    /// Called by the store thread after each group commit.
    pub(super) fn committed(&self, commit: store::Commit) {
        if let Some(r) = &commit.rebuilt {
            self.rebuilt(r);
        }
        if commit.skipped > 0 {
            self.event(log::Level::Error, "storage", || format!("left {} change(s) the damaged outbox database refused out of a commit", commit.skipped));
        }
        {
            let mut st = self.lock();
            // Durable, or the disk failed: either way the transports may have them now.
            st.outbox.make_visible(&commit.durable);
            match &commit.failed {
                // In memory only (no room on the disk): committed, but nothing survives a kill.
                None if self.memory_only => {}
                None => {
                    if let Some(&max) = commit.durable.iter().max() {
                        st.durable_seq = st.durable_seq.max(max);
                    }
                    // On disk: beyond what the transports send next, their payloads leave memory.
                    st.outbox.mark_on_disk(&commit.durable);
                }
                Some(e) => {
                    self.hub.metrics.storage_error();
                    self.event(log::Level::Error, "storage", || format!("cannot persist the outbox ({e}); delivering from memory and retrying"));
                }
            }
        }
        if let (Some(seq), None) = (commit.report_seq, &commit.failed) {
            self.hub.reporter().persisted(seq);
        }
        if commit.abandoned > 0 {
            self.event(log::Level::Error, "storage", || format!("gave up persisting {} change(s) at shutdown", commit.abandoned));
        }
        self.hub.progress.notify();
        if !commit.durable.is_empty() {
            self.hub.wake_all();
        }
    }
}

/// Starts the `dualpub-store` thread; the returned receiver fires when it has finished.
pub(super) fn start_store_writer(
    db: store::Store,
    rx: std::sync::mpsc::Receiver<store::Msg>,
    shared: std::sync::Weak<Shared>,
) -> Result<std::sync::mpsc::Receiver<()>, Error> {
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("dualpub-store".into())
        .spawn(move || {
            let for_loads = shared.clone();
            store::run_writer(
                db,
                rx,
                |commit| {
                    if let Some(shared) = shared.upgrade() {
                        shared.committed(commit);
                    }
                },
                |loaded| {
                    if let Some(shared) = for_loads.upgrade() {
                        shared.loaded(loaded);
                    }
                },
            );
            let _ = done_tx.send(());
        })
        .map_err(|source| Error::Start { what: "the store thread", source })?;
    Ok(done_rx)
}
