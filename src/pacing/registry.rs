//! The bounded registry of pacing slots, one per key.
//!
//! A key is known by its fingerprint: a randomly seeded 64-bit hash of what
//! the extractor feeds ([`ExtractKey::write_key`]), so that the default key
//! (authority, credential, model) is found without building a string and
//! without keeping the credential. The fingerprint picks a shard, each a
//! `RwLock<HashMap<u64, Arc<Slot>>>`: looking up a known key takes a shared
//! read lock and allocates nothing; a slot (and the key's name) is
//! allocated only when its key first appears, under the shard's write lock.
//!
//! Each shard holds at most `max_keys / shards` slots. When a new key
//! arrives at a full shard, the shard first forgets its idle slots (no
//! hold, the rate at rest, no call holding the slot), then, if still full,
//! the least recently used eighth of it: idle slots first, then slots no
//! call holds, then any. A call that still holds a forgotten slot finishes
//! with it.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use foldhash::fast::{FixedState, RandomState};
use http::request::Parts;

use super::config::PacingConfig;
use super::core::Core;
use super::slot::Slot;
use crate::key::ExtractKey;
use crate::util::{shard_layout, truncate};

const MAX_SHARDS: usize = 16;

/// The longest key name kept; longer names are cut (the fingerprint still
/// tells the keys apart).
const MAX_KEY_LEN: usize = 256;

type Map = HashMap<u64, Arc<Slot>, FixedState>;

#[derive(Default)]
struct Shard(RwLock<Map>);

impl Shard {
    fn read(&self) -> RwLockReadGuard<'_, Map> {
        self.0.read().unwrap_or_else(|e| e.into_inner())
    }
    fn write(&self) -> RwLockWriteGuard<'_, Map> {
        self.0.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// The slots of one layer, by key, and what they share: one `Arc` of it is
/// held by the layer, every service it builds and every handle.
pub(crate) struct Registry {
    core: Arc<Core>,
    shards: Box<[Shard]>,
    per_shard: usize,
    seed: RandomState,
    /// Bumped whenever a slot leaves the registry, so that services can
    /// tell whether the slot they cached is still the key's slot.
    removals: AtomicU64,
    created: AtomicU64,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("config", &self.core.config)
            .field("keys", &self.len())
            .finish_non_exhaustive()
    }
}

impl Registry {
    pub(crate) fn new(config: PacingConfig) -> Self {
        let (shards, per_shard) = shard_layout(config.max_keys, MAX_SHARDS);
        Registry {
            per_shard,
            shards: (0..shards).map(|_| Shard::default()).collect(),
            seed: RandomState::default(),
            removals: AtomicU64::new(0),
            created: AtomicU64::new(0),
            core: Arc::new(Core::new(config)),
        }
    }

    pub(crate) fn core(&self) -> &Arc<Core> {
        &self.core
    }

    /// Changes whenever a slot leaves the registry.
    #[inline]
    pub(crate) fn removals(&self) -> u64 {
        self.removals.load(Ordering::Acquire)
    }

    /// The fingerprint of the key of `parts`, if it has one.
    #[inline]
    pub(crate) fn fingerprint<K: ExtractKey>(&self, key: &K, parts: &Parts) -> Option<u64> {
        let mut state = self.seed.build_hasher();
        key.write_key(parts, &mut state).then(|| state.finish())
    }

    fn shard(&self, fingerprint: u64) -> &Shard {
        // Bits the map's own bucket index does not use.
        &self.shards[((fingerprint >> 40) as usize) & (self.shards.len() - 1)]
    }

    /// The slot of `fingerprint`, made (named by `name`) if the key is new.
    pub(crate) fn slot(&self, fingerprint: u64, name: impl FnOnce() -> Arc<str>) -> Arc<Slot> {
        let shard = self.shard(fingerprint);
        if let Some(slot) = shard.read().get(&fingerprint) {
            return slot.clone();
        }
        let mut map = shard.write();
        // Another call may have made it between the two locks.
        if let Some(slot) = map.get(&fingerprint) {
            return slot.clone();
        }
        if map.len() >= self.per_shard {
            let now = self.core.now_nanos();
            if self.forget_idle(&mut map, now) == 0 {
                self.forget_least_used(&mut map, now);
            }
        }
        let seq = self.created.fetch_add(1, Ordering::Relaxed);
        let slot = Arc::new(Slot::new(self.core.clone(), fingerprint, name(), seq));
        map.insert(fingerprint, slot.clone());
        slot
    }

    /// The name a new slot gets: the extractor's key, cut to
    /// [`MAX_KEY_LEN`] bytes.
    pub(crate) fn name<K: ExtractKey>(key: &K, parts: &Parts) -> Arc<str> {
        let name = key.extract(parts).unwrap_or_default();
        Arc::from(truncate(&name, MAX_KEY_LEN))
    }

    /// Forgets the idle slots of a shard; returns how many.
    fn forget_idle(&self, map: &mut Map, now: u64) -> usize {
        let before = map.len();
        map.retain(|_, s| !(s.is_idle(now) && Arc::strong_count(s) == 1));
        self.removed(before - map.len())
    }

    /// Forgets the least recently used eighth of a full shard.
    fn forget_least_used(&self, map: &mut Map, now: u64) {
        let mut ranked: Vec<(u8, u64, u64, u64)> = map
            .values()
            .map(|s| {
                let rank = match (s.is_idle(now), Arc::strong_count(s) > 1) {
                    (true, false) => 0,
                    (false, false) => 1,
                    (_, true) => 2,
                };
                (rank, s.last_used_ms(), s.seq(), s.fingerprint())
            })
            .collect();
        let count = (self.per_shard / 8).clamp(1, ranked.len());
        if count < ranked.len() {
            ranked.select_nth_unstable(count - 1);
        }
        for &(_, _, _, fingerprint) in &ranked[..count] {
            map.remove(&fingerprint);
        }
        self.removed(count);
    }

    fn removed(&self, n: usize) -> usize {
        if n > 0 {
            self.removals.fetch_add(1, Ordering::AcqRel);
        }
        n
    }

    /// Every slot (in no particular order).
    pub(crate) fn all(&self) -> Vec<Arc<Slot>> {
        self.shards
            .iter()
            .flat_map(|s| s.read().values().cloned().collect::<Vec<_>>())
            .collect()
    }

    /// The slot named `key`: a walk over every slot, for reading from
    /// outside the call path.
    pub(crate) fn find(&self, key: &str) -> Option<Arc<Slot>> {
        self.shards
            .iter()
            .find_map(|s| s.read().values().find(|slot| &**slot.key() == key).cloned())
    }

    /// Forgets every slot.
    pub(crate) fn clear(&self) {
        for shard in self.shards.iter() {
            shard.write().clear();
        }
        self.removals.fetch_add(1, Ordering::AcqRel);
    }

    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| s.read().len()).sum()
    }

    /// The most keys the registry holds.
    pub(crate) fn capacity(&self) -> usize {
        self.shards.len() * self.per_shard
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::ByAuthority;

    fn parts(uri: &str) -> Parts {
        http::Request::get(uri).body(()).unwrap().into_parts().0
    }

    #[test]
    fn capacity_never_exceeds_max_keys() {
        for max in [1, 2, 3, 15, 16, 17, 100, 10_000] {
            let r = Registry::new(PacingConfig::new().max_keys(max));
            assert!(r.capacity() <= max && r.capacity() >= max / 2, "{max}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn keys_are_found_again_and_named_once() {
        let r = Registry::new(PacingConfig::new());
        let a = parts("http://a.example/");
        let fa = r.fingerprint(&ByAuthority, &a).unwrap();
        assert_eq!(
            Some(fa),
            r.fingerprint(&ByAuthority, &parts("http://a.example/x"))
        );
        let fb = r
            .fingerprint(&ByAuthority, &parts("http://b.example/"))
            .unwrap();
        assert_ne!(fa, fb);
        let slot = r.slot(fa, || Registry::name(&ByAuthority, &a));
        assert_eq!(&**slot.key(), "a.example");
        let again = r.slot(fa, || unreachable!("known keys are not named again"));
        assert!(Arc::ptr_eq(&slot, &again));
        assert!(Arc::ptr_eq(&slot, &r.find("a.example").unwrap()));
        assert_eq!(r.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_registry_forgets_idle_keys_first() {
        let r = Registry::new(PacingConfig::new().max_keys(1));
        let held = r.slot(1, || Arc::from("held"));
        held.hold(r.core().now_nanos() + 1_000_000_000, 0);
        drop(held);
        // The only slot is held: the least used is forgotten anyway.
        r.slot(2, || Arc::from("new"));
        assert_eq!(r.len(), 1);
        assert!(r.find("new").is_some());
        // An idle slot goes first.
        r.slot(3, || Arc::from("newer"));
        assert_eq!(r.len(), 1);
        assert!(r.removals() >= 2);
    }
}
