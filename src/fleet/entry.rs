//! One key's deadline, kept by a caller that has its own per-key state.

use std::fmt;
use std::sync::Arc;

use tokio::time::Instant;

use super::key::Kind;
use super::shared::Shared;
use super::table::Slot;

/// One key's entry in a [`FleetMirror`](super::FleetMirror): a hold-back
/// ([`FleetMirror::hold_entry`](super::FleetMirror::hold_entry)) or a
/// breaker's open ([`FleetMirror::breaker_entry`](super::FleetMirror::breaker_entry)).
///
/// A caller that already keeps state per key (a breaker in its registry, a
/// pacing slot) takes the entry once, when it makes that state, and reads it
/// on every call: one atomic load, no hashing, no lock. Entries held this way
/// are the last a full mirror forgets; one it forgot still answers, through
/// the mirror's map.
///
/// ```
/// use std::time::Duration;
/// use tokio::time::Instant;
/// use tower_http_resilience::fleet::{FleetMirror, MemoryStore};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let mirror = FleetMirror::builder("docs").memory(&MemoryStore::new()).unwrap();
/// let entry = mirror.breaker_entry("gpt-4o");
/// assert_eq!(entry.until(), None);
/// let until = Instant::now() + Duration::from_secs(30);
/// mirror.publish_opened("gpt-4o", until);
/// assert_eq!(entry.until(), Some(until));
/// # }
/// ```
#[derive(Clone)]
pub struct FleetEntry {
    slot: Arc<Slot>,
    shared: Arc<Shared>,
    kind: Kind,
}

impl fmt::Debug for FleetEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FleetEntry")
            .field("kind", &self.kind)
            .field("until", &self.until())
            .finish()
    }
}

impl FleetEntry {
    pub(crate) fn new(shared: Arc<Shared>, kind: Kind, key: &str) -> FleetEntry {
        FleetEntry {
            slot: shared.table(kind).slot(key),
            shared,
            kind,
        }
    }

    /// The instant until which the fleet holds the key back (or keeps the
    /// breaker open), if one is known. It may already have passed.
    #[inline]
    pub fn until(&self) -> Option<Instant> {
        let n = self.slot.until();
        if self.slot.evicted() {
            return self.reread();
        }
        (n != 0).then(|| self.shared.instant(n))
    }

    /// How many closes of the key's breaker after a successful probe the
    /// fleet said so far (breaker entries only).
    #[cfg_attr(not(feature = "circuit-breaker"), allow(dead_code))]
    pub(crate) fn closes(&self) -> u64 {
        self.slot.closes()
    }

    #[cold]
    fn reread(&self) -> Option<Instant> {
        let key = self.slot.key()?;
        let n = self.shared.table(self.kind).until(key)?;
        Some(self.shared.instant(n))
    }
}
