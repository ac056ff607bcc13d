//! The mirror's bounded tables: per key, one deadline in one atomic.
//!
//! A table maps a key to a [`Slot`] twice: by the key itself (sharded
//! `RwLock`ed maps, read on the hot path: a hash, a shared lock, one atomic
//! load) and by the key's [`Digest`] (one `Mutex`ed map, used by the
//! background task, which only ever sees digests). A key first read is
//! linked once (its digest computed, its slot made or found); after that a
//! read allocates nothing. A table also counts its live deadlines, so that a
//! read while nothing at all is held costs one atomic load.
//!
//! A table holds at most `max_keys` slots; a new key at a full table first
//! drops slots without a deadline, oldest first, then the oldest of any.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock};

use super::key::Digest;
use crate::util::IdHasher;

const SHARDS: usize = 16;

type ShardMap = HashMap<u64, Vec<Arc<Slot>>, BuildHasherDefault<IdHasher>>;

/// One key's deadline.
#[derive(Debug)]
pub(crate) struct Slot {
    pub(crate) digest: Digest,
    /// Nanoseconds after the mirror's epoch; 0: none.
    until: AtomicU64,
    /// The store's deadline (its clock, ms) this value came from; 0: not
    /// confirmed by the store.
    token: AtomicU64,
    seq: u64,
    key: OnceLock<Arc<str>>,
    /// Dropped from its table: a holder of this slot reads through the
    /// table again.
    evicted: AtomicBool,
    /// Closes of this key's breaker the fleet said (opens only).
    closes: AtomicU64,
}

impl Slot {
    #[inline]
    pub(crate) fn until(&self) -> u64 {
        self.until.load(Ordering::Acquire)
    }

    #[inline]
    pub(crate) fn evicted(&self) -> bool {
        self.evicted.load(Ordering::Relaxed)
    }

    pub(crate) fn key(&self) -> Option<&str> {
        self.key.get().map(|k| &**k)
    }

    /// Held outside the table (by a caller's per-key state).
    fn held(self: &Arc<Self>) -> bool {
        let own = if self.key.get().is_some() { 2 } else { 1 };
        Arc::strong_count(self) > own
    }

    pub(crate) fn token(&self) -> u64 {
        self.token.load(Ordering::Acquire)
    }

    /// How many closes of this key's breaker the fleet said so far.
    pub(crate) fn closes(&self) -> u64 {
        self.closes.load(Ordering::Acquire)
    }

    /// The fleet said a close.
    pub(crate) fn count_close(&self) {
        self.closes.fetch_add(1, Ordering::AcqRel);
    }
}

#[derive(Default)]
struct Index {
    slots: HashMap<Digest, Arc<Slot>>,
    seq: u64,
}

pub(crate) struct Table {
    shards: Box<[RwLock<ShardMap>]>,
    index: Mutex<Index>,
    live: AtomicUsize,
    hasher: RandomState,
    max_keys: usize,
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table")
            .field("keys", &self.len())
            .field("live", &self.live.load(Ordering::Relaxed))
            .field("max_keys", &self.max_keys)
            .finish()
    }
}

impl Table {
    pub(crate) fn new(max_keys: usize) -> Table {
        Table {
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            index: Mutex::default(),
            live: AtomicUsize::new(0),
            hasher: RandomState::new(),
            max_keys: max_keys.max(1),
        }
    }

    fn index(&self) -> MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn shard(&self, hash: u64) -> &RwLock<ShardMap> {
        &self.shards[((hash >> 32) as usize) & (SHARDS - 1)]
    }

    pub(crate) fn len(&self) -> usize {
        self.index().slots.len()
    }

    /// The deadline of `key` (nanoseconds after the epoch), if one is set.
    /// The hot path: one atomic load while nothing is held; else a hash, a
    /// shared lock and one atomic load for a key seen before.
    #[inline]
    pub(crate) fn until(&self, key: &str) -> Option<u64> {
        if self.live.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let until = match self.find(key) {
            Some(v) => v,
            None => self.slot(key).until(),
        };
        (until != 0).then_some(until)
    }

    fn find(&self, key: &str) -> Option<u64> {
        let hash = self.hasher.hash_one(key);
        let map = self.shard(hash).read().unwrap_or_else(|e| e.into_inner());
        let slots = map.get(&hash)?;
        let slot = slots
            .iter()
            .find(|s| s.key.get().is_some_and(|k| &**k == key))?;
        Some(slot.until())
    }

    /// The slot of `key`, made or linked when the key is new.
    pub(crate) fn slot(&self, key: &str) -> Arc<Slot> {
        let hash = self.hasher.hash_one(key);
        let found = {
            let map = self.shard(hash).read().unwrap_or_else(|e| e.into_inner());
            map.get(&hash)
                .and_then(|v| v.iter().find(|s| s.key.get().is_some_and(|k| &**k == key)))
                .cloned()
        };
        if let Some(slot) = found {
            return slot;
        }
        let digest = Digest::of(key);
        let mut index = self.index();
        let slot = self.get_or_make(&mut index, digest);
        slot.key.get_or_init(|| Arc::from(key));
        let mut map = self.shard(hash).write().unwrap_or_else(|e| e.into_inner());
        let list = map.entry(hash).or_default();
        if !list.iter().any(|s| Arc::ptr_eq(s, &slot)) {
            list.push(slot.clone());
        }
        drop(map);
        drop(index);
        slot
    }

    /// The slot of a digest the store named; made (not yet linked to a key)
    /// when `make` is set and none exists.
    pub(crate) fn by_digest(&self, digest: Digest, make: bool) -> Option<Arc<Slot>> {
        let mut index = self.index();
        if make {
            Some(self.get_or_make(&mut index, digest))
        } else {
            index.slots.get(&digest).cloned()
        }
    }

    fn get_or_make(&self, index: &mut Index, digest: Digest) -> Arc<Slot> {
        if let Some(slot) = index.slots.get(&digest) {
            return slot.clone();
        }
        if index.slots.len() >= self.max_keys {
            self.evict(index);
        }
        index.seq += 1;
        let slot = Arc::new(Slot {
            digest,
            until: AtomicU64::new(0),
            token: AtomicU64::new(0),
            seq: index.seq,
            key: OnceLock::new(),
            evicted: AtomicBool::new(false),
            closes: AtomicU64::new(0),
        });
        index.slots.insert(digest, slot.clone());
        slot
    }

    /// Drops an eighth of a full table: slots nobody else holds first, then
    /// slots without a deadline, oldest first.
    fn evict(&self, index: &mut Index) {
        let mut order: Vec<(bool, bool, u64, Digest)> = index
            .slots
            .values()
            .map(|s| (s.held(), s.until() != 0, s.seq, s.digest))
            .collect();
        order.sort_unstable_by_key(|&(held, live, seq, _)| (held, live, seq));
        let n = (self.max_keys / 8).max(1);
        for (_, _, _, digest) in order.into_iter().take(n) {
            let Some(slot) = index.slots.remove(&digest) else {
                continue;
            };
            self.clear(&slot);
            slot.evicted.store(true, Ordering::Relaxed);
            if let Some(key) = slot.key.get() {
                let hash = self.hasher.hash_one(&**key);
                let mut map = self.shard(hash).write().unwrap_or_else(|e| e.into_inner());
                if let Some(list) = map.get_mut(&hash) {
                    list.retain(|s| !Arc::ptr_eq(s, &slot));
                    if list.is_empty() {
                        map.remove(&hash);
                    }
                }
            }
        }
    }

    fn stored(&self, old: u64, new: u64) {
        match (old == 0, new == 0) {
            (true, false) => {
                self.live.fetch_add(1, Ordering::Relaxed);
            }
            (false, true) => {
                self.live.fetch_sub(1, Ordering::Relaxed);
            }
            _ => {}
        }
    }

    /// Moves the deadline later, never earlier; records the store's token.
    pub(crate) fn raise(&self, slot: &Slot, until: u64, token: u64) {
        let old = slot.until.fetch_max(until, Ordering::AcqRel);
        self.stored(old, old.max(until));
        if token != 0 {
            slot.token.fetch_max(token, Ordering::AcqRel);
        }
    }

    /// Sets the deadline and token, earlier or later.
    pub(crate) fn replace(&self, slot: &Slot, until: u64, token: u64) {
        slot.token.store(token, Ordering::Release);
        let old = slot.until.swap(until, Ordering::AcqRel);
        self.stored(old, until);
    }

    /// Forgets the deadline.
    pub(crate) fn clear(&self, slot: &Slot) {
        self.replace(slot, 0, 0);
    }

    /// Forgets every deadline at or before `now`; returns how many.
    pub(crate) fn sweep(&self, now: u64) -> usize {
        let index = self.index();
        let mut n = 0;
        for slot in index.slots.values() {
            let v = slot.until();
            if v != 0
                && v <= now
                && slot
                    .until
                    .compare_exchange(v, 0, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
            {
                slot.token.store(0, Ordering::Release);
                self.stored(v, 0);
                n += 1;
            }
        }
        n
    }

    /// The slots whose value the store confirmed.
    pub(crate) fn confirmed(&self) -> Vec<Arc<Slot>> {
        let index = self.index();
        index
            .slots
            .values()
            .filter(|s| s.token() != 0)
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_see_raises_and_replaces() {
        let t = Table::new(64);
        assert_eq!(t.until("k"), None);
        let s = t.slot("k");
        t.raise(&s, 100, 0);
        assert_eq!(t.until("k"), Some(100));
        t.raise(&s, 50, 7);
        assert_eq!(t.until("k"), Some(100), "extend-only");
        assert_eq!(s.token(), 7);
        t.replace(&s, 40, 9);
        assert_eq!(t.until("k"), Some(40));
        assert_eq!(t.until("other"), None);
        t.clear(&s);
        assert_eq!(t.until("k"), None);
        assert_eq!(t.live.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn digests_link_to_keys() {
        let t = Table::new(64);
        let remote = t.by_digest(Digest::of("k"), true).unwrap();
        t.replace(&remote, 5, 1);
        assert_eq!(
            t.until("k"),
            Some(5),
            "a key read after a remote update finds it"
        );
        assert!(Arc::ptr_eq(&t.slot("k"), &remote));
        assert_eq!(t.len(), 1);
        assert!(t.by_digest(Digest::of("x"), false).is_none());
    }

    #[test]
    fn sweep_forgets_past_deadlines() {
        let t = Table::new(64);
        let a = t.slot("a");
        let b = t.slot("b");
        t.raise(&a, 10, 3);
        t.raise(&b, 30, 0);
        assert_eq!(t.confirmed().len(), 1);
        assert_eq!(t.sweep(20), 1);
        assert_eq!(t.until("a"), None);
        assert_eq!(a.token(), 0);
        assert_eq!(t.until("b"), Some(30));
        assert_eq!(t.sweep(30), 1);
        assert_eq!(t.live.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn bounded_evicting_idle_then_oldest() {
        let t = Table::new(16);
        let held = t.slot("held");
        t.raise(&held, 1_000, 0);
        for i in 0..1_000 {
            t.slot(&format!("k{i}"));
            assert!(t.len() <= 16);
        }
        assert_eq!(
            t.until("held"),
            Some(1_000),
            "live deadlines outlast idle keys"
        );
        for i in 0..100 {
            let s = t.slot(&format!("h{i}"));
            t.raise(&s, 5, 0);
        }
        assert!(t.len() <= 16);
        assert!(t.live.load(Ordering::Relaxed) <= 16);
        assert_eq!(t.until("h99"), Some(5));
    }

    #[test]
    fn slots_held_elsewhere_go_last_and_say_when_they_went() {
        let t = Table::new(8);
        let kept = t.slot("kept");
        for i in 0..100 {
            t.slot(&format!("k{i}"));
        }
        assert!(!kept.evicted(), "a held slot outlasts the others");
        assert!(Arc::ptr_eq(&kept, &t.slot("kept")));
        let all: Vec<_> = (0..8).map(|i| t.slot(&format!("held{i}"))).collect();
        t.slot("one more");
        assert!(
            kept.evicted() || all.iter().any(|s| s.evicted()),
            "bounded even when all are held"
        );
        assert!(t.len() <= 8);
    }
}
