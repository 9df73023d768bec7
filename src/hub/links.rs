//! What each transport's last attempt said of its link (`close` waits a moment for the last
//! report only over a link that is up or not yet tried), and the signal that cuts a
//! transport's retry wait short when there is a reason to believe its link is back.

use crate::outbox::Transport;
use std::sync::atomic::{AtomicU8, Ordering};
use tokio::sync::Notify;

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
    /// Records what `t`'s last attempt said of its link; returns whether the link just came
    /// back (it was down and is up now).
    pub fn set(&self, t: Transport, link: Link) -> bool {
        let before = self.0[t.index()].swap(link as u8, Ordering::Relaxed);
        before == Link::Down as u8 && link == Link::Up
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

/// Per transport, wakes a task sleeping out a retry backoff (or an open breaker): `flush`,
/// `flushNow`, the network coming back, or the other transport's link coming back are all
/// reasons to try again now rather than when the backoff ends (docs/CONTRACT.md#retries).
#[derive(Debug, Default)]
pub(crate) struct Rousers([Notify; 2]);

impl Rousers {
    /// Wakes `t`'s task if it is sleeping out a backoff now; a task not sleeping is not
    /// affected (no permit is stored, so a later backoff is slept in full).
    pub fn rouse(&self, t: Transport) {
        self.0[t.index()].notify_waiters();
    }

    /// Resolves at the next [`Rousers::rouse`] of `t`.
    pub async fn roused(&self, t: Transport) {
        self.0[t.index()].notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_link_that_was_down_comes_back() {
        let links = Links::default();
        assert!(!links.set(Transport::Mqtt, Link::Up), "untried to up is not a return");
        assert!(!links.set(Transport::Mqtt, Link::Down));
        assert!(!links.set(Transport::PubSub, Link::Up), "the other transport's link is its own");
        assert!(links.set(Transport::Mqtt, Link::Up), "down to up is");
        assert!(!links.set(Transport::Mqtt, Link::Up), "and only once");
    }

    #[tokio::test]
    async fn a_rouse_wakes_a_sleeper_and_leaves_no_permit_behind() {
        let r = std::sync::Arc::new(Rousers::default());
        r.rouse(Transport::Mqtt); // nobody sleeping: nothing stored
        let quiet = tokio::time::timeout(std::time::Duration::from_millis(50), r.roused(Transport::Mqtt)).await;
        assert!(quiet.is_err(), "an earlier rouse does not cut a later backoff short");
        let sleeper = tokio::spawn({
            let r = r.clone();
            async move { r.roused(Transport::PubSub).await }
        });
        tokio::task::yield_now().await;
        while !sleeper.is_finished() {
            r.rouse(Transport::PubSub);
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        sleeper.await.unwrap();
    }
}
