//! What every breaker of a layer shares: the settings, the clock and the
//! transition callbacks.

use std::fmt;
use std::sync::Arc;
#[cfg(feature = "fleet")]
use std::sync::OnceLock;
use std::time::Duration;

use tokio::time::Instant;

use super::config::CircuitBreakerConfig;
use super::state::Transition;
use crate::util::{instant_after, saturating_nanos, Listeners};

/// A transition callback.
pub(crate) type Listener = Arc<dyn Fn(&Transition) + Send + Sync>;

/// What every breaker of a layer shares. Times are nanoseconds since the
/// layer was made, on tokio's clock.
pub(crate) struct Core {
    pub(crate) config: CircuitBreakerConfig,
    bucket_nanos: u64,
    base: Instant,
    listeners: Listeners<dyn Fn(&Transition) + Send + Sync>,
    /// The fleet the breakers share their opens with, if any.
    #[cfg(feature = "fleet")]
    pub(crate) fleet: OnceLock<crate::fleet::FleetMirror>,
}

impl Core {
    pub(crate) fn new(config: CircuitBreakerConfig) -> Self {
        Core {
            bucket_nanos: config.bucket_nanos(),
            config,
            base: Instant::now(),
            listeners: Listeners::new(),
            #[cfg(feature = "fleet")]
            fleet: OnceLock::new(),
        }
    }

    /// Nanoseconds from the layer's creation to now.
    pub(crate) fn now_nanos(&self) -> u64 {
        self.nanos_at(Instant::now())
    }

    /// Nanoseconds from the layer's creation to `at` (0 before it).
    pub(crate) fn nanos_at(&self, at: Instant) -> u64 {
        saturating_nanos(at.saturating_duration_since(self.base))
    }

    /// The instant `nanos` after the layer's creation.
    #[cfg_attr(not(feature = "fleet"), allow(dead_code))]
    pub(crate) fn instant(&self, nanos: u64) -> Instant {
        instant_after(self.base, Duration::from_nanos(nanos))
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
