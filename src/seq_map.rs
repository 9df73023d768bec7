//! A map from sequence numbers to values for keys that arrive in increasing order and mostly
//! leave in the same order: the outbox's rows. A deque of slots indexed by `seq − base`, so an
//! entry costs its own size and nothing else (a `BTreeMap` of the same 32-byte entries cost
//! about 75 bytes each, half-full nodes included: docs/PERFORMANCE.md, "Memory").
//!
//! A key removed from the middle leaves an empty slot until the keys before it are gone too.
//! Rows leave the outbox in acceptance order per transport, so the empty slots between the
//! oldest row and the newest stay few; a row stuck while thousands after it are delivered
//! costs 32 bytes per delivered row until it leaves (by delivery, or the outbox's caps).

use std::collections::VecDeque;

/// Values by increasing `u64` keys (see the module documentation).
#[derive(Debug)]
pub(crate) struct SeqMap<T> {
    /// The key of `slots[0]`.
    base: u64,
    slots: VecDeque<Option<T>>,
    /// Occupied slots.
    len: usize,
}

impl<T> Default for SeqMap<T> {
    fn default() -> Self {
        SeqMap { base: 0, slots: VecDeque::new(), len: 0 }
    }
}

impl<T> SeqMap<T> {
    fn slot(&self, key: u64) -> Option<usize> {
        let i = usize::try_from(key.checked_sub(self.base)?).ok()?;
        (i < self.slots.len()).then_some(i)
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.len
    }

    /// The value of `key`.
    pub fn get(&self, key: u64) -> Option<&T> {
        self.slot(key).and_then(|i| self.slots[i].as_ref())
    }

    /// The value of `key`, to change it.
    pub fn get_mut(&mut self, key: u64) -> Option<&mut T> {
        self.slot(key).and_then(|i| self.slots[i].as_mut())
    }

    /// Sets `key`'s value; returns the one it replaces. Cheap for a key past every key present
    /// (the outbox's case); a key before them grows the front.
    pub fn insert(&mut self, key: u64, value: T) -> Option<T> {
        if self.slots.is_empty() {
            self.base = key;
        }
        if key < self.base {
            let gap = (self.base - key) as usize;
            for _ in 0..gap {
                self.slots.push_front(None);
            }
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
        self.slots.front().and_then(|v| v.as_ref()).map(|v| (self.base, v))
    }

    /// Every key and value, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &T)> {
        let base = self.base;
        self.slots.iter().enumerate().filter_map(move |(i, v)| v.as_ref().map(|v| (base + i as u64, v)))
    }

    /// The keys and values up to `key` (inclusive), in key order.
    pub fn up_to(&self, key: u64) -> impl Iterator<Item = (u64, &T)> {
        let n = key.checked_sub(self.base).map_or(0, |d| usize::try_from(d).map_or(usize::MAX, |d| d.saturating_add(1)));
        self.iter().take_while(move |(k, _)| *k <= key).take(n)
    }

    /// The keys and values from `from` up to `end` (exclusive), in key order. Empty slots in
    /// that range are stepped over one by one: a walk costs the width of the range.
    pub fn range(&self, from: u64, end: u64) -> impl Iterator<Item = (u64, &T)> {
        let start = from.max(self.base);
        let len = self.slots.len();
        let first = usize::try_from(start - self.base).map_or(len, |i| i.min(len));
        let last = usize::try_from(end.saturating_sub(self.base)).map_or(len, |i| i.min(len)).max(first);
        self.slots.range(first..last).enumerate().filter_map(move |(i, v)| v.as_ref().map(|v| (start + i as u64, v)))
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
    fn a_key_before_the_base_or_far_past_the_end_is_absent() {
        let mut m = SeqMap::default();
        m.insert(100, ());
        assert!(m.get(99).is_none() && m.get(101).is_none() && m.get(u64::MAX).is_none());
        assert_eq!(m.up_to(50).count(), 0);
        assert_eq!(m.up_to(u64::MAX).count(), 1);
    }
}
