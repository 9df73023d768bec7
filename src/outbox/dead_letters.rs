//! The dead letters: messages a transport refused as invalid (Pub/Sub's HTTP 400), kept —
//! durably, oldest first, within a count, a byte and an age cap — for the app to read and send
//! again, never deleted silently. The outbox owns the list and persists every change to it.

use super::store::StoredDeadLetter;
use super::{Eviction, Transport};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// A message Pub/Sub refused as invalid (HTTP 400), kept (durably) rather than deleted.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct DeadLetter {
    /// Id for `retryDeadLetters`.
    pub id: i64,
    /// The eventId.
    pub event_id: String,
    /// The wire JSON.
    pub payload: String,
    /// The transport that refused it.
    pub transport: Transport,
    /// What the server said.
    pub error: String,
    /// The location's timestamp.
    pub timestamp_ms: i64,
}

/// Most dead letters kept; beyond it the oldest are dropped (counted as `dead_letters_full`).
pub const MAX_DEAD_LETTERS: usize = 10_000;

/// Most payload bytes the dead letters keep in all.
pub const MAX_DEAD_LETTER_BYTES: usize = 16 << 20;

/// A dead letter with when it was dead-lettered, on the run clock.
type KeptLetter = (DeadLetter, i64);

/// The letter an app sees of a stored one (a payload that is not UTF-8 is shown lossily).
fn letter(d: &StoredDeadLetter) -> DeadLetter {
    DeadLetter {
        id: d.id,
        event_id: d.event_id.clone(),
        payload: String::from_utf8_lossy(&d.payload).into_owned(),
        transport: d.transport,
        error: d.error.clone(),
        timestamp_ms: d.timestamp_ms,
    }
}

/// The kept dead letters, oldest (lowest id) first.
#[derive(Debug, Default)]
pub(super) struct DeadLetters {
    letters: VecDeque<KeptLetter>,
    /// Payload bytes of the letters.
    bytes: usize,
    next_id: i64,
    /// When the letters were last checked for age.
    last_age_sweep: Option<Instant>,
}

impl DeadLetters {
    /// The letters the store kept, with `at` mapping their run-clock time to this run's.
    pub fn restore(&mut self, stored: Vec<StoredDeadLetter>, at: impl Fn(Option<i64>) -> i64) {
        self.next_id = self.next_id.max(stored.iter().map(|d| d.id).max().unwrap_or(0));
        self.bytes = stored.iter().map(|d| d.payload.len()).sum();
        self.letters = stored.iter().map(|d| (letter(d), at(d.observed_at_ms))).collect();
    }

    /// Keeps a new letter (run-clock time `now`); returns what to persist.
    pub fn keep(&mut self, event_id: &str, payload: &[u8], timestamp_ms: i64, transport: Transport, error: String, now: i64) -> StoredDeadLetter {
        self.next_id += 1;
        let stored = StoredDeadLetter {
            id: self.next_id,
            event_id: event_id.to_string(),
            payload: payload.to_vec(),
            timestamp_ms,
            transport,
            error,
            observed_at_ms: Some(now),
        };
        self.bytes += payload.len();
        self.letters.push_back((letter(&stored), now));
        stored
    }

    /// Drops the letters kept longer than `max_age` (on the run clock, `now_ms`; looked for at
    /// most once a minute: the list may hold thousands), then the oldest beyond
    /// [`MAX_DEAD_LETTERS`] or [`MAX_DEAD_LETTER_BYTES`]. Returns the ids dropped (to persist)
    /// and how many for each reason.
    pub fn cap(&mut self, max_age: Duration, now_ms: i64) -> (Vec<i64>, Vec<(Eviction, u64)>) {
        let mut dropped = Vec::new();
        let mut too_old = 0;
        if self.last_age_sweep.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
            self.last_age_sweep = Some(Instant::now());
            let max_age_ms = i64::try_from(max_age.as_millis()).unwrap_or(i64::MAX);
            let oldest_kept = now_ms.saturating_sub(max_age_ms);
            let (old, kept): (Vec<KeptLetter>, Vec<KeptLetter>) = std::mem::take(&mut self.letters).into_iter().partition(|(_, at)| *at < oldest_kept);
            self.letters = kept.into();
            for (d, _) in &old {
                self.bytes -= d.payload.len();
                dropped.push(d.id);
            }
            too_old = old.len() as u64;
        }
        let mut full = 0;
        while self.letters.len() > MAX_DEAD_LETTERS || self.bytes > MAX_DEAD_LETTER_BYTES {
            let Some((d, _)) = self.letters.pop_front() else { break };
            self.bytes -= d.payload.len();
            dropped.push(d.id);
            full += 1;
        }
        let counts = [(Eviction::DeadLetterTooOld, too_old), (Eviction::DeadLettersFull, full)].into_iter().filter(|(_, n)| *n > 0).collect();
        (dropped, counts)
    }

    /// Takes letters out of the list (all when `ids` is empty).
    pub fn take(&mut self, ids: &[i64]) -> Vec<DeadLetter> {
        let wanted: std::collections::HashSet<i64> = ids.iter().copied().collect();
        let (taken, kept): (Vec<KeptLetter>, Vec<KeptLetter>) =
            std::mem::take(&mut self.letters).into_iter().partition(|(d, _)| wanted.is_empty() || wanted.contains(&d.id));
        self.letters = kept.into();
        self.bytes = self.letters.iter().map(|(d, _)| d.payload.len()).sum();
        taken.into_iter().map(|(d, _)| d).collect()
    }

    /// The letters with an id in one of the ranges `[from, end)`, as the store writes them.
    pub fn stored_in(&self, ranges: &[(i64, i64)]) -> Vec<StoredDeadLetter> {
        self.letters
            .iter()
            .filter(|(d, _)| ranges.iter().any(|&(from, end)| (from..end).contains(&d.id)))
            .map(|(d, at)| StoredDeadLetter {
                id: d.id,
                event_id: d.event_id.clone(),
                payload: d.payload.clone().into_bytes(),
                timestamp_ms: d.timestamp_ms,
                transport: d.transport,
                error: d.error.clone(),
                observed_at_ms: Some(*at),
            })
            .collect()
    }

    /// At most `limit` letters after id `after_id` (a page), oldest first.
    pub fn page(&self, after_id: i64, limit: usize) -> Vec<DeadLetter> {
        let start = self.letters.partition_point(|(d, _)| d.id <= after_id);
        self.letters.range(start..).take(limit).map(|(d, _)| d.clone()).collect()
    }

    /// How many letters are kept.
    pub fn len(&self) -> usize {
        self.letters.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_byte_cap_drops_the_oldest_and_a_rebuild_rewrites_what_it_lost() {
        let mut d = DeadLetters::default();
        let mib = vec![b'x'; 1 << 20];
        for n in 0..17 {
            d.keep(&format!("e{n}"), &mib, n, Transport::PubSub, "HTTP 400".into(), 1_000 + n);
        }
        let (dropped, counts) = d.cap(Duration::MAX, 2_000);
        assert_eq!((dropped, counts), (vec![1], vec![(Eviction::DeadLettersFull, 1)]), "17 MiB over a 16 MiB cap: the oldest goes");
        assert_eq!(d.len(), 16);
        let again = d.stored_in(&[(5, 7)]);
        assert_eq!(again.iter().map(|l| (l.id, l.event_id.as_str(), l.observed_at_ms)).collect::<Vec<_>>(), [(5, "e4", Some(1_004)), (6, "e5", Some(1_005))]);
        assert_eq!(d.take(&[5]).len(), 1);
        assert_eq!(d.page(0, 2).iter().map(|l| l.id).collect::<Vec<_>>(), [2, 3]);
        assert_eq!(d.page(4, 2).iter().map(|l| l.id).collect::<Vec<_>>(), [6, 7], "a page steps over the taken letter");
    }

    #[test]
    fn letters_older_than_the_age_cap_go_at_the_next_sweep() {
        let mut d = DeadLetters::default();
        d.keep("old", b"{}", 1, Transport::PubSub, "HTTP 400".into(), 0);
        d.keep("new", b"{}", 2, Transport::PubSub, "HTTP 400".into(), 50_000);
        let (dropped, counts) = d.cap(Duration::from_secs(60), 70_000);
        assert_eq!((dropped, counts), (vec![1], vec![(Eviction::DeadLetterTooOld, 1)]));
        assert_eq!(d.page(0, 10)[0].event_id, "new");
    }
}
