//! Pausing collection and purging what is queued (docs/CONTRACT.md#pause-and-purge): a user's
//! opt-out must stop collection at once and leave nothing of theirs on the phone.

use super::{Publisher, Shared};
use crate::error::{DualPubError, Error};
use crate::hub::Burst;

/// What `purge` deleted.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct PurgeReport {
    /// Locations deleted from the outbox (owed to either transport, or in flight).
    pub locations: u64,
    /// Dead letters deleted.
    pub dead_letters: u64,
}

/// The `reason` labels of `dualpub_dropped_total` (and the reports' `dropped`) for a purge.
pub(crate) const DROPPED_PURGED: &str = "purged";
/// See [`DROPPED_PURGED`].
pub(crate) const DROPPED_DEAD_LETTERS_PURGED: &str = "dead_letters_purged";

impl Shared {
    /// The app switched the network or collection; `back`: the transports may send again.
    pub(super) fn switched(&self, back: bool) {
        if back {
            self.hub.open_burst(Burst::Spread); // closes again at once if nothing is owed
        }
        self.hub.wake_all();
        self.hub.progress.notify(); // the delivery state changed
    }
}

impl Publisher {
    /// Pauses (`false`) or resumes collection. While paused `send_location(s)` refuses with
    /// [`DualPubError::CollectionPaused`] and nothing is sent on either transport (an attempt
    /// already on the wire ends first); what is queued stays, durable, until resumed or purged.
    /// Lasts for this publisher's life: pass the user's choice as `collectionEnabled` at start.
    pub fn set_collection_enabled(&self, enabled: bool) -> Result<(), DualPubError> {
        if self.is_closed() {
            return Err(Error::Closed.into());
        }
        let back = self.shared.hub.gate.set_paused(!enabled);
        self.shared.event(log::Level::Info, "collection", || format!("collection {}", if enabled { "resumed" } else { "paused" }));
        self.shared.switched(back);
        Ok(())
    }

    /// Whether collection is enabled (not paused).
    pub fn collection_enabled(&self) -> bool {
        !self.shared.hub.gate.paused()
    }

    /// Deletes every location queued (owed to either transport, or in flight: none of them is
    /// sent again) and every dead letter, from memory and disk; returns how many. They are
    /// counted in `dualpub_dropped_total` (reasons `purged`, `dead_letters_purged`) and so in the
    /// next migration report. A message already handed to the network cannot be recalled: pause
    /// collection first for an opt-out.
    pub fn purge(&self) -> Result<PurgeReport, DualPubError> {
        let (locations, dead_letters) = {
            let mut st = self.shared.lock();
            if st.closed {
                return Err(Error::Closed.into());
            }
            let purged = st.outbox.batched(|outbox| outbox.purge());
            for (reason, n) in [(DROPPED_PURGED, purged.0), (DROPPED_DEAD_LETTERS_PURGED, purged.1)] {
                if n > 0 {
                    self.shared.hub.metrics.dropped(reason, n);
                }
            }
            purged
        };
        self.shared.hub.progress.notify();
        self.shared.event(log::Level::Info, "purge", || format!("purged {locations} location(s) and {dead_letters} dead letter(s)"));
        Ok(PurgeReport { locations, dead_letters })
    }
}
