//! A map from sequence numbers to values for keys that arrive in increasing order and mostly
//! leave in the same order: the outbox's rows. A deque of slots indexed by `seq − base`, so an
//! entry costs its own size and nothing else (a `BTreeMap` of the same 32-byte entries cost
//! about 75 bytes each, half-full nodes included: docs/PERFORMANCE.md, "Memory").
//!
//! A key removed from the middle leaves an empty slot until the keys before it are gone too.
//! Rows leave the outbox in acceptance order per transport, so the empty slots between the
//! oldest row and the newest stay few. A row stuck while thousands after it are delivered (owed
//! to a transport that stays unreachable) would make the deque span the whole gap: a key more
//! than [`MAX_SPAN`] behind the newest leaves the deque for a side map of **stragglers** while
//! the deque is less than half full, so empty slots never span more than [`MAX_SPAN`] (2 MB of
//! 32-byte entries) whatever is stuck, and a straggler costs a map node (about 75 bytes) until it
//! leaves. A dense backlog (everything owed, nothing stuck) stays in the deque.

use std::collections::{BTreeMap, VecDeque};

/// The most slots the deque spans: keys further behind the newest live in the side map.
pub(crate) const MAX_SPAN: u64 = 65_536;

/// A key this far past the deque's end (everything after the deque's values left) makes them
/// stragglers at once, rather than growing the deque over the gap in one allocation.
const JUMP: u64 = 1_024;

/// Values by increasing `u64` keys (see the module documentation).
#[derive(Debug)]
pub(crate) struct SeqMap<T> {
    /// The key of `slots[0]`.
    base: u64,
    slots: VecDeque<Option<T>>,
    /// Occupied slots.
    len: usize,
    /// Keys far behind the newest (all below `base`).
    stragglers: BTreeMap<u64, T>,
}

impl<T> Default for SeqMap<T> {
    fn default() -> Self {
        SeqMap { base: 0, slots: VecDeque::new(), len: 0, stragglers: BTreeMap::new() }
    }
}

impl<T> SeqMap<T> {
    fn slot(&self, key: u64) -> Option<usize> {
        let i = usize::try_from(key.checked_sub(self.base)?).ok()?;
        (i < self.slots.len()).then_some(i)
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.len + self.stragglers.len()
    }

    /// The value of `key`.
    pub fn get(&self, key: u64) -> Option<&T> {
        if key < self.base {
            return self.stragglers.get(&key);
        }
        self.slot(key).and_then(|i| self.slots[i].as_ref())
    }

    /// The value of `key`, to change it.
    pub fn get_mut(&mut self, key: u64) -> Option<&mut T> {
        if key < self.base {
            return self.stragglers.get_mut(&key);
        }
        self.slot(key).and_then(|i| self.slots[i].as_mut())
    }

    /// Sets `key`'s value; returns the one it replaces. Cheap for a key past every key present
    /// (the outbox's case): the deque's front moves along when it would span more than
    /// [`MAX_SPAN`], its values joining the stragglers (a slot at a time, as keys come). A key
    /// before the deque grows its front, or joins the stragglers when far behind.
    pub fn insert(&mut self, key: u64, value: T) -> Option<T> {
        if self.slots.is_empty() && self.stragglers.last_key_value().is_none_or(|(last, _)| *last < key) {
            self.base = key;
        }
        if key < self.base {
            if self.end() - key >= MAX_SPAN || self.stragglers.last_key_value().is_some_and(|(last, _)| *last >= key) {
                return self.stragglers.insert(key, value);
            }
            let gap = (self.base - key) as usize;
            for _ in 0..gap {
                self.slots.push_front(None);
            }
            self.base = key;
        }
        // A key far past the end: the deque's values are far behind it, stragglers now.
        if key >= self.end().saturating_add(JUMP) && !self.slots.is_empty() {
            let base = self.base;
            for (i, v) in std::mem::take(&mut self.slots).into_iter().enumerate() {
                if let Some(v) = v {
                    self.stragglers.insert(base + i as u64, v);
                }
            }
            self.len = 0;
            self.base = key;
        }
        // Keep a sparse deque within MAX_SPAN of the newest key: its oldest values become
        // stragglers. A dense one (a backlog owed everywhere) stays whole: a slot costs less than
        // a map node.
        while key - self.base >= MAX_SPAN && (self.len as u64) * 2 < key - self.base {
            match self.slots.pop_front() {
                Some(Some(v)) => {
                    self.stragglers.insert(self.base, v);
                    self.len -= 1;
                }
                Some(None) => {}
                None => {
                    self.base = key;
                    break;
                }
            }
            self.base += 1;
        }
        if self.slots.is_empty() {
            self.base = key;
        }
        let i = (key - self.base) as usize;
        if i >= self.slots.len() {
            self.slots.resize_with(i + 1, || None);
        }
        let old = self.slots[i].replace(value);
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    /// Removes `key`'s value; empty slots at either end go with it.
    pub fn remove(&mut self, key: u64) -> Option<T> {
        if key < self.base {
            return self.stragglers.remove(&key);
        }
        let value = self.slot(key).and_then(|i| self.slots[i].take())?;
        self.len -= 1;
        while let Some(None) = self.slots.front() {
            self.slots.pop_front();
            self.base += 1;
        }
        while let Some(None) = self.slots.back() {
            self.slots.pop_back();
        }
        // A drained backlog gives its memory back (a deque keeps its largest capacity otherwise).
        if self.slots.capacity() > 4 * self.slots.len() + 1024 {
            self.slots.shrink_to_fit();
        }
        Some(value)
    }

    /// The smallest key and its value.
    pub fn first(&self) -> Option<(u64, &T)> {
        self.stragglers.first_key_value().map(|(k, v)| (*k, v)).or_else(|| self.slots.front().and_then(|v| v.as_ref()).map(|v| (self.base, v)))
    }

    /// Every key and value, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &T)> {
        let base = self.base;
        self.stragglers.iter().map(|(k, v)| (*k, v)).chain(self.slots.iter().enumerate().filter_map(move |(i, v)| v.as_ref().map(|v| (base + i as u64, v))))
    }

    /// The keys and values up to `key` (inclusive), in key order.
    pub fn up_to(&self, key: u64) -> impl Iterator<Item = (u64, &T)> {
        let base = self.base;
        let n = key.checked_sub(base).map_or(0, |d| usize::try_from(d).map_or(usize::MAX, |d| d.saturating_add(1)));
        let deque = self.slots.iter().enumerate().filter_map(move |(i, v)| v.as_ref().map(|v| (base + i as u64, v)));
        self.stragglers.range(..=key).map(|(k, v)| (*k, v)).chain(deque.take_while(move |(k, _)| *k <= key).take(n))
    }

    /// The keys and values from `from` up to `end` (exclusive), in key order. Empty slots in
    /// that range are stepped over one by one: a walk costs the width of the range (within the
    /// deque; stragglers are a map's).
    pub fn range(&self, from: u64, end: u64) -> impl Iterator<Item = (u64, &T)> {
        let stragglers = self.stragglers.range(from.min(self.base)..end.min(self.base).max(from.min(self.base))).map(|(k, v)| (*k, v));
        let start = from.max(self.base);
        let len = self.slots.len();
        let first = usize::try_from(start - self.base).map_or(len, |i| i.min(len));
        let last = usize::try_from(end.saturating_sub(self.base)).map_or(len, |i| i.min(len)).max(first);
        stragglers.chain(self.slots.range(first..last).enumerate().filter_map(move |(i, v)| v.as_ref().map(|v| (start + i as u64, v))))
    }

    /// One past the largest key (the smallest key when empty).
    pub fn end(&self) -> u64 {
        self.base + self.slots.len() as u64
    }

    /// Slots held, occupied or not (memory is `slots × size_of::<Option<T>>()`).
    #[cfg(test)]
    pub fn slots(&self) -> usize {
        self.slots.len()
    }

    /// Values kept apart as stragglers.
    #[cfg(test)]
    pub fn stragglers(&self) -> usize {
        self.stragglers.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_come_in_order_and_leave_in_any_order() {
        let mut m = SeqMap::default();
        for k in 10..20 {
            assert_eq!(m.insert(k, k * 2), None);
        }
        assert_eq!((m.len(), m.first(), m.get(15)), (10, Some((10, &20)), Some(&30)));
        assert_eq!(m.insert(15, 30), Some(30), "replaced");
        assert_eq!(m.remove(15), Some(30));
        assert_eq!((m.remove(15), m.get(15), m.len(), m.slots()), (None, None, 9, 10), "a hole in the middle stays a slot");
        for k in 10..15 {
            m.remove(k);
        }
        assert_eq!((m.first(), m.slots()), (Some((16, &32)), 4), "the hole went with the keys before it");
        assert_eq!(m.up_to(17).map(|(k, _)| k).collect::<Vec<_>>(), [16, 17]);
        assert_eq!(m.iter().map(|(k, _)| k).collect::<Vec<_>>(), [16, 17, 18, 19]);
        assert_eq!(m.range(0, 18).map(|(k, _)| k).collect::<Vec<_>>(), [16, 17], "from before the first key");
        assert_eq!(m.range(17, u64::MAX).map(|(k, _)| k).collect::<Vec<_>>(), [17, 18, 19]);
        assert_eq!((m.range(30, 40).count(), m.range(18, 18).count(), m.end()), (0, 0, 20));
        m.insert(25, 50);
        assert_eq!((m.get(22), m.get(25), m.slots()), (None, Some(&50), 10), "a gap in the keys is empty slots");
        for k in [16, 17, 18, 19, 25] {
            m.remove(k);
        }
        assert_eq!((m.len(), m.slots(), m.first()), (0, 0, None));
        m.insert(3, 6);
        assert_eq!(m.first(), Some((3, &6)), "empty: any key starts it again");
        m.insert(1, 2);
        assert_eq!((m.first(), m.len(), m.slots()), (Some((1, &2)), 2, 3), "a key before the others grows the front");
    }

    #[test]
    fn a_drained_backlog_gives_its_memory_back() {
        let mut m = SeqMap::default();
        for k in 0..100_000 {
            m.insert(k, k);
        }
        for k in 0..99_990 {
            m.remove(k);
        }
        assert!(m.slots.capacity() < 2_048, "capacity {} for {} slots", m.slots.capacity(), m.slots());
        assert_eq!(m.first(), Some((99_990, &99_990)));
    }

    #[test]
    fn a_stuck_key_leaves_the_deque_instead_of_making_it_span_the_gap() {
        // Key 0 stuck while 300,000 keys after it come and go (a row owed to an MQTT that stays
        // unreachable while Pub/Sub delivers a week at 1 Hz).
        let mut m = SeqMap::default();
        m.insert(0, 0u64);
        let mut widest = 0;
        for k in 1..300_000u64 {
            m.insert(k, k);
            widest = widest.max(m.slots());
            m.remove(k);
        }
        assert!(widest as u64 <= JUMP + 1, "the deque spanned {widest} slots");
        assert_eq!((m.len(), m.stragglers(), m.first()), (1, 1, Some((0, &0))));
        assert_eq!(m.get(0), Some(&0));
        // Rows after it come and go again: nothing spans the gap, and the straggler leaves in turn.
        m.insert(300_000, 1);
        assert!(m.slots() <= 1, "{} slots", m.slots());
        assert_eq!(m.iter().map(|(k, _)| k).collect::<Vec<_>>(), [0, 300_000]);
        assert_eq!(m.range(0, 300_001).map(|(k, _)| k).collect::<Vec<_>>(), [0, 300_000]);
        assert_eq!(m.up_to(10).map(|(k, _)| k).collect::<Vec<_>>(), [0]);
        assert_eq!(m.remove(0), Some(0));
        assert_eq!((m.len(), m.first()), (1, Some((300_000, &1))));
    }

    #[test]
    fn a_dense_backlog_stays_in_the_deque() {
        let mut m = SeqMap::default();
        for k in 0..200_000u64 {
            m.insert(k, k);
        }
        assert_eq!((m.stragglers(), m.slots(), m.len()), (0, 200_000, 200_000), "no map node for a dense backlog");
    }

    #[test]
    fn behaves_as_an_ordered_map_whatever_the_gaps() {
        // Random inserts (mostly increasing, with far jumps and keys before the front) and
        // removals, checked against a BTreeMap after every step.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut m = SeqMap::default();
        let mut model = BTreeMap::new();
        let mut newest = 0u64;
        for step in 0..200_000u64 {
            let r = next();
            match r % 10 {
                0..=4 => {
                    newest += match r % 97 {
                        0 => 70_000,
                        1 => 2_000,
                        _ => 1,
                    };
                    assert_eq!(m.insert(newest, step), model.insert(newest, step));
                }
                5 => {
                    let key = newest.saturating_sub((r >> 8) % 140_000);
                    assert_eq!(m.insert(key, step), model.insert(key, step), "insert {key}");
                }
                _ => {
                    let key = match model.iter().nth(((r >> 8) % 4) as usize) {
                        Some((k, _)) if r % 3 > 0 => *k,
                        _ => newest.saturating_sub((r >> 8) % 100),
                    };
                    assert_eq!(m.remove(key), model.remove(&key), "remove {key}");
                }
            }
            assert_eq!(m.len(), model.len());
            assert_eq!(m.first(), model.iter().next().map(|(k, v)| (*k, v)));
            let in_deque = (m.len() - m.stragglers()) as u64;
            let empty = m.slots() as u64 - in_deque;
            assert!(empty <= MAX_SPAN.max(in_deque) + 1, "{empty} empty slots beside {in_deque} values");
            if step % 1_000 == 0 {
                assert!(m.iter().map(|(k, v)| (k, *v)).eq(model.iter().map(|(k, v)| (*k, *v))));
                let (from, to) = (newest.saturating_sub((r >> 16) % 100_000), newest.saturating_sub((r >> 32) % 1_000));
                assert!(m.range(from, to).map(|(k, _)| k).eq(model.range(from..to.max(from)).map(|(k, _)| *k)), "range {from}..{to}");
                assert!(m.up_to(to).map(|(k, _)| k).eq(model.range(..=to).map(|(k, _)| *k)), "up_to {to}");
            }
        }
    }

    #[test]
    fn a_key_before_the_base_or_far_past_the_end_is_absent() {
        let mut m = SeqMap::default();
        m.insert(100, ());
        assert!(m.get(99).is_none() && m.get(101).is_none() && m.get(u64::MAX).is_none());
        assert_eq!(m.up_to(50).count(), 0);
        assert_eq!(m.up_to(u64::MAX).count(), 1);
    }
}
