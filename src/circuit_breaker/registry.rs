//! The bounded registry of breakers, one per key, and the state every
//! breaker of a layer shares.
//!
//! Keys are hashed once per lookup with a randomly keyed SipHash (keys may
//! come from callers, so the hash must resist flooding), and the hash picks a
//! shard and a slot: each shard is a `RwLock<HashMap<u64, Vec<Arc<Entry>>>>`
//! whose map does not hash again. Looking up a known key takes a shared read
//! lock and allocates nothing; an entry is allocated only when its key first
//! appears, under the shard's write lock.
//!
//! Each shard holds at most `max_keys / shards` entries. When a new key
//! arrives at a full shard, the shard first drops its idle entries (unused
//! for the idle timeout, no call in flight, not open), then, if still full,
//! the least recently used eighth of it: closed breakers without calls in
//! flight first, then any other. Evicting an entry that still has calls in
//! flight is safe: those calls record into it and it is freed after them.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, BuildHasherDefault};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::config::CircuitBreakerConfig;
use super::core::Core;
use super::entry::Entry;
use super::state::CircuitState;
use crate::util::{saturating_millis, shard_layout, IdHasher};

const MAX_SHARDS: usize = 16;

type Map = HashMap<u64, Vec<Arc<Entry>>, BuildHasherDefault<IdHasher>>;

#[derive(Default)]
struct Shard {
    map: RwLock<Map>,
    len: AtomicUsize,
    last_sweep_ms: AtomicU64,
}

impl Shard {
    fn read(&self) -> RwLockReadGuard<'_, Map> {
        self.map.read().unwrap_or_else(|e| e.into_inner())
    }
    fn write(&self) -> RwLockWriteGuard<'_, Map> {
        self.map.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// The breakers of one layer, by key, and what they share: one `Arc` of it
/// is held by the layer, every service it builds and every handle.
pub(crate) struct Registry {
    core: Arc<Core>,
    shards: Box<[Shard]>,
    per_shard: usize,
    hasher: RandomState,
    /// Bumped whenever an entry leaves the registry, so that services can
    /// tell whether the entry they cached is still the key's entry.
    removals: AtomicU64,
    /// Entries created so far: each one's creation order.
    created: AtomicU64,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("config", &self.core.config)
            .field("keys", &self.len())
            .field("shards", &self.shards.len())
            .field("per_shard", &self.per_shard)
            .finish()
    }
}

impl Registry {
    pub(crate) fn new(config: CircuitBreakerConfig) -> Self {
        let (shards, per_shard) = shard_layout(config.max_keys, MAX_SHARDS);
        Registry {
            per_shard,
            shards: (0..shards).map(|_| Shard::default()).collect(),
            hasher: RandomState::new(),
            removals: AtomicU64::new(0),
            created: AtomicU64::new(0),
            core: Arc::new(Core::new(config)),
        }
    }

    /// What every breaker of the layer shares.
    pub(crate) fn core(&self) -> &Core {
        &self.core
    }

    /// Changes whenever an entry leaves the registry.
    pub(crate) fn removals(&self) -> u64 {
        self.removals.load(Ordering::Acquire)
    }

    fn removed(&self, shard: &Shard, n: usize) {
        if n > 0 {
            shard.len.fetch_sub(n, Ordering::Relaxed);
            self.removals.fetch_add(1, Ordering::AcqRel);
        }
    }

    fn hash(&self, key: &str) -> u64 {
        self.hasher.hash_one(key)
    }

    fn shard(&self, hash: u64) -> &Shard {
        // Bits the map's own bucket index and tag do not use.
        &self.shards[((hash >> 32) as usize) & (self.shards.len() - 1)]
    }

    /// The entry of `key`, if known. Allocates nothing.
    pub(crate) fn get(&self, key: &str) -> Option<Arc<Entry>> {
        let hash = self.hash(key);
        find(&self.shard(hash).read(), key, hash)
    }

    /// The entry of `key`, made if the key is new. The key is hashed once.
    pub(crate) fn entry(&self, key: &str) -> Arc<Entry> {
        let hash = self.hash(key);
        let shard = self.shard(hash);
        if let Some(entry) = find(&shard.read(), key, hash) {
            return entry;
        }
        let mut map = shard.write();
        // Another call may have made it between the two locks.
        if let Some(entry) = find(&map, key, hash) {
            return entry;
        }
        let now = self.core.now_nanos();
        let idle_ms = saturating_millis(self.core.config.idle_timeout);
        let full = shard.len.load(Ordering::Relaxed) >= self.per_shard;
        let since_sweep =
            (now / 1_000_000).saturating_sub(shard.last_sweep_ms.load(Ordering::Relaxed));
        if full || since_sweep >= idle_ms / 4 {
            self.sweep_idle(shard, &mut map, now);
        }
        if shard.len.load(Ordering::Relaxed) >= self.per_shard {
            self.evict_lru(shard, &mut map);
        }
        let seq = self.created.fetch_add(1, Ordering::Relaxed);
        let entry = Arc::new(Entry::new(self.core.clone(), key, hash, now, seq));
        map.entry(hash).or_default().push(entry.clone());
        shard.len.fetch_add(1, Ordering::Relaxed);
        entry
    }

    /// Drops the entries of `shard` that are idle and not in use.
    fn sweep_idle(&self, shard: &Shard, map: &mut Map, now: u64) -> usize {
        let now_ms = now / 1_000_000;
        shard.last_sweep_ms.store(now_ms, Ordering::Relaxed);
        let idle_ms = saturating_millis(self.core.config.idle_timeout);
        let mut removed = 0;
        map.retain(|_, v| {
            v.retain(|b| {
                let idle = now_ms.saturating_sub(b.last_used_ms()) >= idle_ms
                    && Arc::strong_count(b) == 1
                    && !b.is_open_after(now);
                if idle {
                    b.forget();
                }
                removed += usize::from(idle);
                !idle
            });
            !v.is_empty()
        });
        self.removed(shard, removed);
        removed
    }

    /// Drops the least recently used eighth of a full shard.
    fn evict_lru(&self, shard: &Shard, map: &mut Map) {
        let mut candidates: Vec<(u8, u64, u64, u64, *const Entry)> = map
            .values()
            .flatten()
            .map(|b| {
                let in_use = Arc::strong_count(b) > 1;
                let rank = match (b.state(), in_use) {
                    (CircuitState::Closed, false) => 0,
                    (_, false) => 1,
                    (_, true) => 2,
                };
                (rank, b.last_used_ms(), b.seq(), b.hash(), Arc::as_ptr(b))
            })
            .collect();
        let count = (self.per_shard / 8).clamp(1, candidates.len());
        if count < candidates.len() {
            candidates.select_nth_unstable_by_key(count - 1, |c| (c.0, c.1, c.2));
        }
        for &(_, _, _, hash, ptr) in &candidates[..count] {
            if let Some(v) = map.get_mut(&hash) {
                v.retain(|b| {
                    let evicted = std::ptr::eq(Arc::as_ptr(b), ptr);
                    if evicted {
                        b.forget();
                    }
                    !evicted
                });
                if v.is_empty() {
                    map.remove(&hash);
                }
            }
        }
        self.removed(shard, count);
    }

    pub(crate) fn remove(&self, key: &str) -> Option<Arc<Entry>> {
        let hash = self.hash(key);
        let shard = self.shard(hash);
        let mut map = shard.write();
        let v = map.get_mut(&hash)?;
        let at = v.iter().position(|b| b.is_key(key, hash))?;
        let b = v.swap_remove(at);
        b.forget();
        if v.is_empty() {
            map.remove(&hash);
        }
        self.removed(shard, 1);
        Some(b)
    }

    pub(crate) fn clear(&self) -> Vec<Arc<Entry>> {
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            let mut map = shard.write();
            out.extend(map.drain().flat_map(|(_, v)| v).inspect(|b| b.forget()));
            shard.len.store(0, Ordering::Relaxed);
        }
        self.removals.fetch_add(1, Ordering::AcqRel);
        out
    }

    pub(crate) fn all(&self) -> Vec<Arc<Entry>> {
        self.shards
            .iter()
            .flat_map(|s| s.read().values().flatten().cloned().collect::<Vec<_>>())
            .collect()
    }

    pub(crate) fn evict_idle(&self) -> usize {
        let now = self.core.now_nanos();
        self.shards
            .iter()
            .map(|s| self.sweep_idle(s, &mut s.write(), now))
            .sum()
    }

    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.len.load(Ordering::Relaxed))
            .sum()
    }

    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.shards.len() * self.per_shard
    }
}

/// The entry of `key` (whose hash is `hash`) in `map`.
fn find(map: &Map, key: &str, hash: u64) -> Option<Arc<Entry>> {
    map.get(&hash)?
        .iter()
        .find(|e| e.is_key(key, hash))
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn registry(config: CircuitBreakerConfig) -> Registry {
        Registry::new(config)
    }

    #[test]
    fn capacity_never_exceeds_max_keys() {
        for max in [1, 2, 3, 15, 16, 17, 100, 10_000] {
            let r = registry(CircuitBreakerConfig::new().max_keys(max));
            assert!(r.capacity() <= max && r.capacity() >= max / 2, "{max}");
        }
    }

    #[test]
    fn keys_are_found_again_and_long_keys_are_told_apart() {
        let r = registry(CircuitBreakerConfig::new());
        let a = r.entry("gpt-4o");
        assert!(Arc::ptr_eq(&a, &r.get("gpt-4o").unwrap()));
        assert!(r.get("gpt-4o-mini").is_none());
        let long_a = format!("{}a", "x".repeat(300));
        let long_b = format!("{}b", "x".repeat(300));
        let la = r.entry(&long_a);
        let lb = r.entry(&long_b);
        assert!(!Arc::ptr_eq(&la, &lb));
        assert!(Arc::ptr_eq(&la, &r.get(&long_a).unwrap()));
        assert_eq!(la.key().len(), 256);
        assert_eq!(r.len(), 3);
        assert!(r.remove("gpt-4o").is_some());
        assert_eq!(r.len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn idle_keys_are_swept_unless_in_use_or_open() {
        let r = registry(CircuitBreakerConfig::new().idle_timeout(Duration::from_secs(60)));
        let held = r.entry("held");
        r.entry("idle");
        r.entry("open").force_open(Duration::from_secs(3600));
        tokio::time::advance(Duration::from_secs(61)).await;
        assert_eq!(r.evict_idle(), 1);
        assert!(r.get("idle").is_none());
        assert!(r.get("held").is_some() && r.get("open").is_some());
        drop(held);
    }
}
