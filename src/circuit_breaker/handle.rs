//! Reading and steering a layer's breakers from outside the call path.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::layer::Shared;

/// The state of one breaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CircuitState {
    /// Calls go through; results are counted in the rolling window.
    Closed,
    /// Calls fail fast with `circuit_open` until the open time is up.
    Open,
    /// A bounded number of probe calls go through; the others fail fast.
    HalfOpen,
}

impl CircuitState {
    /// `closed`, `open` or `half-open`.
    pub const fn as_str(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::Open => "open",
            CircuitState::HalfOpen => "half-open",
        }
    }
}

impl fmt::Display for CircuitState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a breaker changed state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TransitionReason {
    /// The failure ratio of the window reached the threshold.
    FailureRatio,
    /// Too many failures in a row.
    ConsecutiveFailures,
    /// The slow-call ratio of the window reached the threshold.
    SlowCallRatio,
    /// A half-open probe failed.
    ProbeFailed,
    /// A half-open probe was slow.
    ProbeSlow,
    /// The open time is up: probes may go through.
    OpenElapsed,
    /// Enough half-open probes succeeded.
    ProbesSucceeded,
    /// [`CircuitBreakerHandle::force_open`] or
    /// [`CircuitBreakerHandle::force_closed`].
    Forced,
    /// [`CircuitBreakerHandle::reset`] or [`CircuitBreakerHandle::reset_all`]
    /// forgot the breaker.
    Reset,
}

impl TransitionReason {
    /// A short lower-case name, as written in `tracing` events.
    pub const fn as_str(self) -> &'static str {
        match self {
            TransitionReason::FailureRatio => "failure ratio",
            TransitionReason::ConsecutiveFailures => "consecutive failures",
            TransitionReason::SlowCallRatio => "slow-call ratio",
            TransitionReason::ProbeFailed => "probe failed",
            TransitionReason::ProbeSlow => "probe slow",
            TransitionReason::OpenElapsed => "open time elapsed",
            TransitionReason::ProbesSucceeded => "probes succeeded",
            TransitionReason::Forced => "forced",
            TransitionReason::Reset => "reset",
        }
    }
}

impl fmt::Display for TransitionReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A state change of one breaker, as given to
/// [`CircuitBreakerHandle::on_transition`] callbacks.
#[derive(Clone, Debug)]
pub struct Transition {
    pub(crate) key: Arc<str>,
    pub(crate) from: CircuitState,
    pub(crate) to: CircuitState,
    pub(crate) reason: TransitionReason,
    pub(crate) open_for: Option<Duration>,
}

impl Transition {
    /// The breaker's key (its first 256 bytes). Callbacks see the real key,
    /// whatever [`KeyDisplay`](super::KeyDisplay) says.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The state before.
    pub fn from(&self) -> CircuitState {
        self.from
    }

    /// The state after.
    pub fn to(&self) -> CircuitState {
        self.to
    }

    /// Why.
    pub fn reason(&self) -> TransitionReason {
        self.reason
    }

    /// How long the breaker stays open, for a transition to
    /// [`CircuitState::Open`].
    pub fn open_for(&self) -> Option<Duration> {
        self.open_for
    }
}

/// The state and counts of one breaker at one instant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BreakerSnapshot {
    pub(crate) key: Arc<str>,
    pub(crate) state: CircuitState,
    pub(crate) calls: u64,
    pub(crate) failures: u64,
    pub(crate) slow_calls: u64,
    pub(crate) consecutive_failures: u32,
    pub(crate) open_remaining: Option<Duration>,
    pub(crate) trips: u32,
    pub(crate) probes_in_flight: u32,
}

impl BreakerSnapshot {
    /// The breaker's key (its first 256 bytes).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The state.
    pub fn state(&self) -> CircuitState {
        self.state
    }

    /// Calls recorded in the rolling window (closed state only: the window
    /// starts empty each time the breaker closes).
    pub fn calls(&self) -> u64 {
        self.calls
    }

    /// Failures recorded in the rolling window.
    pub fn failures(&self) -> u64 {
        self.failures
    }

    /// Slow calls recorded in the rolling window.
    pub fn slow_calls(&self) -> u64 {
        self.slow_calls
    }

    /// Failures in a row, up to now.
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    /// How long an open breaker stays open; `None` when it is not open.
    pub fn open_remaining(&self) -> Option<Duration> {
        self.open_remaining
    }

    /// Trips since the breaker was last closed (what the open time doubles
    /// with).
    pub fn trips(&self) -> u32 {
        self.trips
    }

    /// Probes in flight, in the half-open state.
    pub fn probes_in_flight(&self) -> u32 {
        self.probes_in_flight
    }
}

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
    pub(crate) shared: Arc<Shared>,
}

impl fmt::Debug for CircuitBreakerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakerHandle")
            .field("keys", &self.len())
            .finish()
    }
}

impl CircuitBreakerHandle {
    /// The state of `key`'s breaker, if the key is known.
    pub fn state(&self, key: &str) -> Option<CircuitState> {
        self.snapshot(key).map(|s| s.state)
    }

    /// The state and counts of `key`'s breaker, if the key is known.
    pub fn snapshot(&self, key: &str) -> Option<BreakerSnapshot> {
        self.shared.registry.get(key).map(|b| b.snapshot())
    }

    /// The state and counts of every known key (in no particular order).
    pub fn snapshots(&self) -> Vec<BreakerSnapshot> {
        self.shared
            .registry
            .all()
            .iter()
            .map(|b| b.snapshot())
            .collect()
    }

    /// The number of keys the layer holds a breaker for.
    pub fn len(&self) -> usize {
        self.shared.registry.len()
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
        self.shared
            .core
            .listeners
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(Arc::new(callback));
    }

    /// Opens `key`'s breaker for `duration` (clamped to 1 ms ..= one year),
    /// whatever its state; after that it turns half-open as usual. An
    /// unknown key is added.
    pub fn force_open(&self, key: &str, duration: Duration) {
        let duration = duration.clamp(Duration::from_millis(1), super::config::MAX_DURATION);
        self.shared.registry.get_or_insert(key).force_open(duration);
    }

    /// Closes `key`'s breaker and empties its window, whatever its state.
    /// Does nothing for an unknown key.
    pub fn force_closed(&self, key: &str) {
        if let Some(b) = self.shared.registry.get(key) {
            b.force_closed(super::TransitionReason::Forced);
        }
    }

    /// Forgets `key`'s breaker: the next call with this key starts a fresh,
    /// closed one. Returns whether the key was known.
    pub fn reset(&self, key: &str) -> bool {
        match self.shared.registry.remove(key) {
            Some(b) => {
                b.force_closed(TransitionReason::Reset);
                true
            }
            None => false,
        }
    }

    /// Forgets every breaker.
    pub fn reset_all(&self) {
        for b in self.shared.registry.clear() {
            b.force_closed(TransitionReason::Reset);
        }
    }

    /// Forgets the breakers idle for longer than the idle timeout (this
    /// also happens on its own as new keys arrive). Returns how many were
    /// forgotten.
    pub fn evict_idle(&self) -> usize {
        self.shared.registry.evict_idle()
    }
}
