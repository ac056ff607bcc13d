//! What every breaker of a layer shares: the settings, the clock and the
//! transition callbacks.

use std::fmt;
use std::sync::Arc;

use tokio::time::Instant;

use super::config::CircuitBreakerConfig;
use super::state::Transition;
use crate::util::{saturating_nanos, Listeners};

/// A transition callback.
pub(crate) type Listener = Arc<dyn Fn(&Transition) + Send + Sync>;

/// What every breaker of a layer shares. Times are nanoseconds since the
/// layer was made, on tokio's clock.
pub(crate) struct Core {
    pub(crate) config: CircuitBreakerConfig,
    bucket_nanos: u64,
    base: Instant,
    listeners: Listeners<dyn Fn(&Transition) + Send + Sync>,
}

impl Core {
    pub(crate) fn new(config: CircuitBreakerConfig) -> Self {
        Core {
            bucket_nanos: config.bucket_nanos(),
            config,
            base: Instant::now(),
            listeners: Listeners::new(),
        }
    }

    /// Nanoseconds from the layer's creation to now.
    pub(crate) fn now_nanos(&self) -> u64 {
        saturating_nanos(Instant::now().saturating_duration_since(self.base))
    }

    /// The window bucket that `nanos` falls in.
    pub(crate) fn epoch(&self, nanos: u64) -> u64 {
        nanos / self.bucket_nanos
    }

    /// The callbacks, copied out so that none runs under the lock.
    pub(crate) fn listeners(&self) -> Vec<Listener> {
        self.listeners.snapshot()
    }

    pub(crate) fn add_listener(&self, listener: Listener) {
        self.listeners.add(listener);
    }
}

impl fmt::Debug for Core {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Core")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}
