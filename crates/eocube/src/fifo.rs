//! A map bounded in bytes that drops its oldest entries first: the COG header cache of
//! [`crate::cog::Fetcher`] and the decoded cube chunks of [`crate::pyramid`]'s level-0 tiles.
//! Both are filled in an order that makes "oldest first" as good as least-recently-used (scenes
//! and tiles are visited in sweeps), and FIFO needs no bookkeeping on reads.
//!
//! Owns: the byte accounting and eviction order. Must not touch: what the entries are or how
//! their size is counted (the caller says it).

use std::borrow::Borrow;
use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Entries by key, at most `budget` bytes of them (the newest entry is kept even when it alone is
/// larger, so a caller about to use it can). Shared behind `&self`: a lock held only to look up
/// or insert.
pub(crate) struct Fifo<K, V> {
    budget: usize,
    inner: Mutex<Entries<K, V>>,
}

struct Entries<K, V> {
    by_key: HashMap<K, (V, usize)>,
    order: VecDeque<K>,
    bytes: usize,
}

impl<K: Eq + Hash + Clone, V: Clone> Fifo<K, V> {
    pub(crate) fn new(budget: usize) -> Fifo<K, V> {
        Fifo { budget, inner: Mutex::new(Entries { by_key: HashMap::new(), order: VecDeque::new(), bytes: 0 }) }
    }

    fn lock(&self) -> MutexGuard<'_, Entries<K, V>> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.lock().by_key.get(key).map(|(v, _)| v.clone())
    }

    /// Keeps `value` (of `bytes` bytes) under `key` unless the key is there already, then drops
    /// the oldest entries until the total fits the budget again.
    pub(crate) fn put(&self, key: K, value: V, bytes: usize) {
        let mut e = self.lock();
        if e.by_key.contains_key(&key) {
            return;
        }
        e.bytes += bytes;
        e.by_key.insert(key.clone(), (value, bytes));
        e.order.push_back(key);
        while e.bytes > self.budget && e.order.len() > 1 {
            let Some(old) = e.order.pop_front() else { break };
            if let Some((_, b)) = e.by_key.remove(&old) {
                e.bytes -= b;
            }
        }
    }

    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.lock().bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_go_first_and_the_newest_stays() {
        let f: Fifo<String, u32> = Fifo::new(10);
        f.put("a".into(), 1, 4);
        f.put("b".into(), 2, 4);
        f.put("a".into(), 9, 4); // already there: kept as it was
        assert_eq!((f.get("a"), f.get("b"), f.bytes()), (Some(1), Some(2), 8));
        f.put("c".into(), 3, 4); // 12 > 10: "a" goes
        assert_eq!((f.get("a"), f.get("b"), f.get("c"), f.bytes()), (None, Some(2), Some(3), 8));
        f.put("huge".into(), 4, 50); // larger than the budget alone: kept, everything else goes
        assert_eq!((f.get("b"), f.get("c"), f.get("huge"), f.bytes()), (None, None, Some(4), 50));
        f.put("d".into(), 5, 1);
        assert_eq!((f.get("huge"), f.get("d"), f.bytes()), (None, Some(5), 1));
    }
}
