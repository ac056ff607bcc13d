//! Reading and steering a pacing layer's state from outside the call path.

use std::fmt;
use std::sync::Arc;

use tokio::time::Instant;

use super::config::MAX_HOLD;
use super::registry::Registry;
use super::state::{Hold, PacingEvent};
use crate::util::instant_after;

/// A handle on the state of one [`PacingLayer`](super::PacingLayer): what
/// is held and for how long (for an admin endpoint), a callback on every
/// hold learnt and every call held or refused (for logs and metrics), and
/// holds set from outside (a hold another replica learnt).
///
/// Every service the layer builds, every clone of them and every handle
/// share the same state. Keys are named as the layer's key extractor names
/// them ([`ByCredential`](super::ByCredential): authority, model and a hash
/// of the credential).
///
/// ```
/// use std::time::Duration;
/// use tower::{Layer, Service, ServiceExt};
/// use tower_http_resilience::key::ByAuthority;
/// use tower_http_resilience::pacing::PacingLayer;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// let layer = PacingLayer::new().key(ByAuthority);
/// let handle = layer.handle();
/// let upstream = tower::service_fn(|_req: http::Request<String>| async {
///     let res = http::Response::builder()
///         .header("x-ratelimit-remaining-requests", "0")
///         .header("x-ratelimit-reset-requests", "2s")
///         .body(String::new())
///         .unwrap();
///     Ok::<_, std::convert::Infallible>(res)
/// });
/// let mut paced = layer.layer(upstream);
/// let req = http::Request::get("http://api.example.com/v1").body(String::new()).unwrap();
/// paced.ready().await.unwrap().call(req).await.unwrap();
///
/// let holds = handle.holds();
/// assert_eq!(holds[0].key(), "api.example.com");
/// assert_eq!(holds[0].remaining(), Duration::from_secs(2));
/// assert_eq!(handle.held_until("api.example.com"), Some(holds[0].until()));
/// # }
/// ```
#[derive(Clone)]
pub struct PacingHandle {
    registry: Arc<Registry>,
}

impl fmt::Debug for PacingHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PacingHandle")
            .field("keys", &self.len())
            .finish()
    }
}

impl PacingHandle {
    pub(crate) fn new(registry: Arc<Registry>) -> Self {
        PacingHandle { registry }
    }

    /// The instant until which `key` is held, if it is held now. Walks the
    /// keys: meant for reading from outside the call path.
    pub fn held_until(&self, key: &str) -> Option<Instant> {
        let slot = self.registry.find(key)?;
        let core = self.registry.core();
        let until = slot.held_until();
        (until > core.now_nanos()).then(|| core.instant(until))
    }

    /// Every key held now, with the instant its hold ends (in no
    /// particular order).
    pub fn holds(&self) -> Vec<Hold> {
        let core = self.registry.core();
        let now = core.now_nanos();
        self.registry
            .all()
            .iter()
            .filter(|slot| slot.held_until() > now)
            .map(|slot| Hold {
                key: slot.key().clone(),
                until: core.instant(slot.held_until()),
            })
            .collect()
    }

    /// Holds `key` until `until` (at most five minutes from now), unless it
    /// is held longer already: holds only ever grow. Only a key the layer
    /// has seen can be held; returns whether the hold grew.
    pub fn hold(&self, key: &str, until: Instant) -> bool {
        let Some(slot) = self.registry.find(key) else {
            return false;
        };
        let core = self.registry.core();
        let now = core.now_nanos();
        let until = until.min(instant_after(Instant::now(), MAX_HOLD));
        slot.hold(core.nanos_at(until), now)
    }

    /// Calls `callback` on every hold learnt (or set with
    /// [`hold`](PacingHandle::hold)) and every call held or refused,
    /// outside any lock. Callbacks run on the task that caused the event:
    /// keep them short.
    pub fn on_event<F>(&self, callback: F)
    where
        F: Fn(&PacingEvent) + Send + Sync + 'static,
    {
        self.registry.core().add_listener(Arc::new(callback));
    }

    /// The number of keys the layer keeps state for.
    pub fn len(&self) -> usize {
        self.registry.len()
    }

    /// Whether no key is known yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most keys the layer keeps (its
    /// [`max_keys`](super::PacingConfig::max_keys), rounded down to a
    /// whole number per shard).
    pub fn capacity(&self) -> usize {
        self.registry.capacity()
    }

    /// Forgets every key: their holds and their rates start afresh.
    pub fn reset_all(&self) {
        self.registry.clear();
    }
}
