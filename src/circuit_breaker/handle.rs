//! Reading and steering a layer's breakers from outside the call path.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::config::MAX_DURATION;
use super::registry::Registry;
use super::state::{BreakerSnapshot, CircuitState, Transition, TransitionReason};

/// A handle on the breakers of one [`CircuitBreakerLayer`]: read each key's
/// state and counts, observe transitions, force a breaker open or closed,
/// and forget keys.
///
/// Every service the layer builds, every clone of them and every handle
/// share the same state.
///
/// ```
/// use std::time::Duration;
/// use tower_http_resilience::circuit_breaker::{CircuitBreakerLayer, CircuitState};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// let layer = CircuitBreakerLayer::new();
/// let handle = layer.handle();
/// handle.on_transition(|t| println!("{} is now {}", t.key(), t.to()));
///
/// handle.force_open("gpt-4o", Duration::from_secs(30));
/// assert_eq!(handle.state("gpt-4o"), Some(CircuitState::Open));
/// handle.force_closed("gpt-4o");
/// assert_eq!(handle.state("gpt-4o"), Some(CircuitState::Closed));
/// # }
/// ```
///
/// [`CircuitBreakerLayer`]: super::CircuitBreakerLayer
#[derive(Clone)]
pub struct CircuitBreakerHandle {
    registry: Arc<Registry>,
}

impl fmt::Debug for CircuitBreakerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakerHandle")
            .field("keys", &self.len())
            .finish()
    }
}

impl CircuitBreakerHandle {
    pub(crate) fn new(registry: Arc<Registry>) -> Self {
        CircuitBreakerHandle { registry }
    }

    /// The state of `key`'s breaker, if the key is known.
    pub fn state(&self, key: &str) -> Option<CircuitState> {
        self.snapshot(key).map(|s| s.state)
    }

    /// The state and counts of `key`'s breaker, if the key is known.
    pub fn snapshot(&self, key: &str) -> Option<BreakerSnapshot> {
        self.registry.get(key).map(|b| b.snapshot())
    }

    /// The state and counts of every known key (in no particular order).
    pub fn snapshots(&self) -> Vec<BreakerSnapshot> {
        self.registry.all().iter().map(|b| b.snapshot()).collect()
    }

    /// The number of keys the layer holds a breaker for.
    pub fn len(&self) -> usize {
        self.registry.len()
    }

    /// Whether no key is known yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Calls `callback` on every state change of every breaker of the
    /// layer, after the change, outside any lock (the callback may use the
    /// handle). Callbacks run on the thread that caused the change: keep
    /// them short.
    pub fn on_transition<F>(&self, callback: F)
    where
        F: Fn(&Transition) + Send + Sync + 'static,
    {
        self.registry.core().add_listener(Arc::new(callback));
    }

    /// Opens `key`'s breaker for `duration` (clamped to 1 ms ..= one year),
    /// whatever its state; after that it turns half-open as usual. An
    /// unknown key is added.
    pub fn force_open(&self, key: &str, duration: Duration) {
        let duration = duration.clamp(Duration::from_millis(1), MAX_DURATION);
        self.registry.entry(key).force_open(duration);
    }

    /// Closes `key`'s breaker and empties its window, whatever its state.
    /// Does nothing for an unknown key.
    pub fn force_closed(&self, key: &str) {
        if let Some(b) = self.registry.get(key) {
            b.force_closed(TransitionReason::Forced);
        }
    }

    /// Forgets `key`'s breaker: the next call with this key starts a fresh,
    /// closed one. Returns whether the key was known.
    pub fn reset(&self, key: &str) -> bool {
        match self.registry.remove(key) {
            Some(b) => {
                b.force_closed(TransitionReason::Reset);
                true
            }
            None => false,
        }
    }

    /// Forgets every breaker.
    pub fn reset_all(&self) {
        for b in self.registry.clear() {
            b.force_closed(TransitionReason::Reset);
        }
    }

    /// Forgets the breakers idle for longer than the idle timeout (this
    /// also happens on its own as new keys arrive). Returns how many were
    /// forgotten.
    pub fn evict_idle(&self) -> usize {
        self.registry.evict_idle()
    }
}
