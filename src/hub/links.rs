//! What each transport's last attempt said of its link: `close` waits a moment for the last
//! report only over a link that is up or not yet tried.

use crate::outbox::Transport;
use std::sync::atomic::{AtomicU8, Ordering};

/// What a transport's last attempt said of its link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Link {
    /// Not tried since start-up, or hung up while idle.
    Untried = 0,
    /// Connected (MQTT) or the last request was answered (Pub/Sub).
    Up = 1,
    /// The last attempt failed.
    Down = 2,
}

/// Per transport, its [`Link`] (set by the transport tasks, read by `close` and the API).
#[derive(Debug)]
pub(crate) struct Links([AtomicU8; 2]);

impl Default for Links {
    fn default() -> Self {
        Links([AtomicU8::new(Link::Untried as u8), AtomicU8::new(Link::Untried as u8)])
    }
}

impl Links {
    /// Records what `t`'s last attempt said of its link.
    pub fn set(&self, t: Transport, link: Link) {
        self.0[t.index()].store(link as u8, Ordering::Relaxed);
    }

    /// Whether `t`'s link is known to be down (its last attempt failed).
    pub fn down(&self, t: Transport) -> bool {
        self.0[t.index()].load(Ordering::Relaxed) == Link::Down as u8
    }

    /// Whether `t`'s link is up (connected, or the last request answered).
    pub fn up(&self, t: Transport) -> bool {
        self.0[t.index()].load(Ordering::Relaxed) == Link::Up as u8
    }
}
