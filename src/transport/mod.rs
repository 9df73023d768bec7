//! The two transports. Each runs as one task on the SDK runtime, takes rows owed to it through
//! its [`Lane`], and reports acknowledgements back; neither keeps anything the outbox does not.

pub(crate) mod lane;
pub(crate) mod mqtt;
pub(crate) mod pubsub;

pub(crate) use lane::Lane;

use std::time::Duration;
use tokio::sync::watch;

/// Sleeps for `d` unless shutdown is signalled first; returns false on shutdown.
pub(crate) async fn sleep_or_shutdown(d: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    if *shutdown.borrow() {
        return false;
    }
    tokio::select! {
        _ = tokio::time::sleep(d) => true,
        _ = shutdown.changed() => false,
    }
}
