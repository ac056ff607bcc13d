//! What every key of a pacing layer shares: the settings, the clock and the
//! event callbacks.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::config::PacingConfig;
use super::rate::Gcra;
use super::state::{PacingAction, PacingEvent};
use crate::util::{fnv1a, instant_after, saturating_millis, saturating_nanos, Listeners};

/// An event callback.
pub(crate) type Listener = Arc<dyn Fn(&PacingEvent) + Send + Sync>;

/// What every key of a layer shares. Times are nanoseconds since the layer
/// was made, on tokio's clock; 0 never names a hold (a hold at the very
/// instant the layer was made has ended before any call can see it).
pub(crate) struct Core {
    pub(crate) config: PacingConfig,
    /// The layer's rate, if it has one.
    pub(crate) rate: Option<Gcra>,
    base: Instant,
    listeners: Listeners<dyn Fn(&PacingEvent) + Send + Sync>,
    /// The fleet the keys share their holds and rates with, if any.
    #[cfg(feature = "fleet")]
    pub(crate) fleet: std::sync::OnceLock<crate::fleet::FleetMirror>,
}

impl Core {
    pub(crate) fn new(config: PacingConfig) -> Self {
        Core {
            rate: config.rpm.and_then(Gcra::per_minute),
            config,
            base: Instant::now(),
            listeners: Listeners::new(),
            #[cfg(feature = "fleet")]
            fleet: std::sync::OnceLock::new(),
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
    pub(crate) fn instant(&self, nanos: u64) -> Instant {
        instant_after(self.base, Duration::from_nanos(nanos))
    }

    /// Tells the callbacks, outside any lock, and writes a `tracing` event
    /// (the key as a hash: a key may be a secret).
    pub(crate) fn emit(&self, event: PacingEvent) {
        let key = format_args!("key#{:08x}", fnv1a(event.key.as_bytes()));
        let wait_ms = saturating_millis(event.wait);
        let cause = event.cause;
        match event.action {
            PacingAction::Learnt => tracing::info!(
                target: "tower_http_resilience::pacing",
                key = %key, hold_ms = wait_ms,
                "the upstream refuses calls for this key: holding them back"
            ),
            PacingAction::Waited => tracing::debug!(
                target: "tower_http_resilience::pacing",
                key = %key, wait_ms, cause = %cause,
                "call held back"
            ),
            PacingAction::Refused => tracing::debug!(
                target: "tower_http_resilience::pacing",
                key = %key, wait_ms, cause = %cause,
                "call refused, not sent"
            ),
        }
        for listener in self.listeners.snapshot() {
            listener(&event);
        }
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
