//! The vocabulary of breakers: states, transitions and what a breaker reports.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// The state of one breaker.
///
/// ```
/// use tower_http_resilience::circuit_breaker::CircuitState;
///
/// assert_eq!(CircuitState::HalfOpen.to_string(), "half-open");
/// assert_eq!(CircuitState::Open.as_str(), "open");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CircuitState {
    /// Calls go through; results are counted in the rolling window.
    Closed,
    /// Calls fail fast with `circuit_open` until the open duration is up.
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
///
/// ```
/// use tower_http_resilience::circuit_breaker::TransitionReason;
///
/// assert_eq!(TransitionReason::FailureRatio.to_string(), "failure ratio");
/// assert_eq!(TransitionReason::OpenElapsed.as_str(), "open duration elapsed");
/// ```
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
    /// The open duration is up: probes may go through.
    OpenElapsed,
    /// Enough half-open probes succeeded.
    ProbesSucceeded,
    /// [`CircuitBreakerHandle::force_open`] or
    /// [`CircuitBreakerHandle::force_closed`].
    ///
    /// [`CircuitBreakerHandle::force_open`]: super::CircuitBreakerHandle::force_open
    /// [`CircuitBreakerHandle::force_closed`]: super::CircuitBreakerHandle::force_closed
    Forced,
    /// [`CircuitBreakerHandle::reset`] or [`CircuitBreakerHandle::reset_all`]
    /// forgot the breaker.
    ///
    /// [`CircuitBreakerHandle::reset`]: super::CircuitBreakerHandle::reset
    /// [`CircuitBreakerHandle::reset_all`]: super::CircuitBreakerHandle::reset_all
    Reset,
    /// Another replica of the fleet opened the breaker of this key
    /// ([`CircuitBreakerLayer::fleet`](super::CircuitBreakerLayer::fleet)):
    /// it stays open for the time the fleet's open has left.
    #[cfg(feature = "fleet")]
    Fleet,
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
            TransitionReason::OpenElapsed => "open duration elapsed",
            TransitionReason::ProbesSucceeded => "probes succeeded",
            TransitionReason::Forced => "forced",
            TransitionReason::Reset => "reset",
            #[cfg(feature = "fleet")]
            TransitionReason::Fleet => "fleet",
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
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use std::time::Duration;
/// use tower_http_resilience::circuit_breaker::{CircuitBreakerLayer, CircuitState, TransitionReason};
///
/// let handle = CircuitBreakerLayer::new().handle();
/// let seen = Arc::new(Mutex::new(Vec::new()));
/// let log = seen.clone();
/// handle.on_transition(move |t| log.lock().unwrap().push(t.clone()));
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
/// handle.force_open("gpt-4o", Duration::from_secs(5));
/// # });
/// let t = seen.lock().unwrap()[0].clone();
/// assert_eq!((t.key(), t.from(), t.to()), ("gpt-4o", CircuitState::Closed, CircuitState::Open));
/// assert_eq!(t.reason(), TransitionReason::Forced);
/// assert_eq!(t.open_duration(), Some(Duration::from_secs(5)));
/// ```
///
/// [`CircuitBreakerHandle::on_transition`]: super::CircuitBreakerHandle::on_transition
#[derive(Clone, Debug)]
pub struct Transition {
    pub(crate) key: Arc<str>,
    pub(crate) from: CircuitState,
    pub(crate) to: CircuitState,
    pub(crate) reason: TransitionReason,
    pub(crate) open_duration: Option<Duration>,
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
    pub fn open_duration(&self) -> Option<Duration> {
        self.open_duration
    }
}

/// The state and counts of one breaker at one instant, as
/// [`CircuitBreakerHandle::snapshot`] reads them.
///
/// ```
/// use tower_http_resilience::circuit_breaker::{CircuitBreakerLayer, CircuitState};
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
/// let handle = CircuitBreakerLayer::new().handle();
/// handle.force_open("gpt-4o", std::time::Duration::from_secs(30));
/// let snap = handle.snapshot("gpt-4o").unwrap();
/// assert_eq!(snap.state(), CircuitState::Open);
/// assert_eq!(snap.open_remaining(), Some(std::time::Duration::from_secs(30)));
/// assert_eq!((snap.calls(), snap.failures(), snap.trips()), (0, 0, 0));
/// # });
/// ```
///
/// [`CircuitBreakerHandle::snapshot`]: super::CircuitBreakerHandle::snapshot
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

    /// Trips since the breaker was last closed (what the open duration
    /// doubles with).
    pub fn trips(&self) -> u32 {
        self.trips
    }

    /// Probes in flight, in the half-open state.
    pub fn probes_in_flight(&self) -> u32 {
        self.probes_in_flight
    }
}
