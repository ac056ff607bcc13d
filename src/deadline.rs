//! The one deadline of a call, shared between layers through request
//! extensions.
//!
//! An outer layer that bounds the whole call (the total timeout) puts a
//! [`Deadline`] in the request's extensions; inner layers read it so that they
//! never start work that cannot finish in time. The retry layer, for one,
//! never sleeps past it: when the next wait would cross the deadline, the last
//! error comes back at once.
//!
//! When several layers set a deadline, the earliest one is kept
//! ([`Deadline::set_earliest`]).
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use tower_http_resilience::deadline::Deadline;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let mut req = http::Request::new(());
//! // An outer layer bounds the call to 60 s...
//! Deadline::after(Duration::from_secs(60)).set_earliest(req.extensions_mut());
//! // ...an inner one to 30 s: the earlier deadline is the one in force.
//! let in_force = Deadline::after(Duration::from_secs(30)).set_earliest(req.extensions_mut());
//! assert_eq!(in_force.remaining(), Duration::from_secs(30));
//! assert_eq!(Deadline::get(req.extensions()), Some(in_force));
//! # }
//! ```

use std::cmp::Ordering as CmpOrdering;
use std::hash::{Hash, Hasher};
#[cfg(any(feature = "timeout", feature = "circuit-breaker"))]
use std::sync::{
    atomic::{AtomicBool, Ordering},
    Arc,
};
use std::time::Duration;

use tokio::time::Instant;

use crate::util::instant_after;

/// Shared by every copy of one call's [`Deadline`]: set when the layer that
/// published the deadline cut the call short (a timeout fired), so that the
/// layers inside can tell that cut from a caller who simply went away. The
/// circuit breaker counts a call it sees dropped unfinished as a failure when
/// this is set.
#[cfg(any(feature = "timeout", feature = "circuit-breaker"))]
#[derive(Clone, Debug, Default)]
pub(crate) struct CutSignal(Arc<AtomicBool>);

#[cfg(any(feature = "timeout", feature = "circuit-breaker"))]
impl CutSignal {
    #[cfg(feature = "timeout")]
    pub(crate) fn mark(&self) {
        self.0.store(true, Ordering::Release);
    }

    #[cfg(feature = "circuit-breaker")]
    pub(crate) fn is_set(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// The instant by which a call must be finished, on tokio's clock.
///
/// Compared, ordered and hashed by its instant. A deadline published by the
/// crate's [`TimeoutLayer`](crate::timeout::TimeoutLayer) also tells the
/// layers inside when the timeout cut the call short (the circuit breaker
/// then counts the call as failed rather than abandoned).
///
/// ```
/// use std::time::Duration;
/// use tower_http_resilience::deadline::Deadline;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// let deadline = Deadline::after(Duration::from_secs(30));
/// tokio::time::advance(Duration::from_secs(10)).await;
/// assert_eq!(deadline.remaining(), Duration::from_secs(20));
/// assert!(!deadline.has_passed());
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Deadline {
    at: Instant,
    #[cfg(any(feature = "timeout", feature = "circuit-breaker"))]
    cut: Option<CutSignal>,
}

impl PartialEq for Deadline {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at
    }
}

impl Eq for Deadline {}

impl PartialOrd for Deadline {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}

impl Ord for Deadline {
    fn cmp(&self, other: &Self) -> CmpOrdering {
        self.at.cmp(&other.at)
    }
}

impl Hash for Deadline {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.at.hash(state);
    }
}

impl Deadline {
    /// A deadline at `instant`.
    pub const fn at(instant: Instant) -> Self {
        Deadline {
            at: instant,
            #[cfg(any(feature = "timeout", feature = "circuit-breaker"))]
            cut: None,
        }
    }

    /// A deadline `timeout` from now (tokio's clock, so paused-clock tests see
    /// virtual time). A timeout too large to represent is clamped to about 30
    /// years.
    pub fn after(timeout: Duration) -> Self {
        Deadline::at(instant_after(Instant::now(), timeout))
    }

    /// The instant of the deadline.
    pub fn instant(&self) -> Instant {
        self.at
    }

    /// The time left before the deadline; zero once it has passed.
    pub fn remaining(&self) -> Duration {
        self.at.saturating_duration_since(Instant::now())
    }

    /// Whether the deadline has passed.
    pub fn has_passed(&self) -> bool {
        Instant::now() >= self.at
    }

    /// The deadline in `extensions`, if a layer set one.
    pub fn get(extensions: &http::Extensions) -> Option<Self> {
        extensions.get::<Deadline>().cloned()
    }

    /// Stores this deadline in `extensions` unless an earlier one is already
    /// there; returns the deadline now in force.
    pub fn set_earliest(self, extensions: &mut http::Extensions) -> Self {
        match extensions.get_mut::<Deadline>() {
            Some(existing) if *existing <= self => {
                let mut later = self;
                existing.inherit_signal(&mut later);
                existing.clone()
            }
            Some(existing) => {
                let mut earlier = self;
                earlier.inherit_signal(existing);
                *existing = earlier.clone();
                earlier
            }
            None => {
                extensions.insert(self.clone());
                self
            }
        }
    }

    /// Takes the cut signal of `other` when this deadline carries none.
    #[cfg(any(feature = "timeout", feature = "circuit-breaker"))]
    fn inherit_signal(&mut self, other: &mut Deadline) {
        if self.cut.is_none() {
            self.cut = other.cut.take();
        }
    }

    #[cfg(not(any(feature = "timeout", feature = "circuit-breaker")))]
    fn inherit_signal(&mut self, _: &mut Deadline) {}

    /// This deadline, carrying `signal` for the layers inside.
    #[cfg(feature = "timeout")]
    pub(crate) fn with_cut_signal(mut self, signal: CutSignal) -> Self {
        self.cut = Some(signal);
        self
    }

    /// The signal the publishing layer sets when it cuts the call short.
    #[cfg(any(feature = "timeout", feature = "circuit-breaker"))]
    pub(crate) fn cut_signal(&self) -> Option<&CutSignal> {
        self.cut.as_ref()
    }
}

#[cfg(all(test, feature = "timeout", feature = "circuit-breaker"))]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_earliest_wins_and_the_signal_survives() {
        let mut ext = http::Extensions::new();
        let signal = CutSignal::default();
        Deadline::after(Duration::from_secs(60))
            .with_cut_signal(signal.clone())
            .set_earliest(&mut ext);
        // An earlier deadline without a signal takes over the signal.
        let inner = Deadline::after(Duration::from_secs(30)).set_earliest(&mut ext);
        assert_eq!(inner.remaining(), Duration::from_secs(30));
        let now = Deadline::get(&ext).unwrap();
        assert_eq!(now.remaining(), Duration::from_secs(30));
        signal.mark();
        assert!(now.cut_signal().unwrap().is_set());
        // A later one changes nothing.
        Deadline::after(Duration::from_secs(90)).set_earliest(&mut ext);
        assert_eq!(
            Deadline::get(&ext).unwrap().remaining(),
            Duration::from_secs(30)
        );
    }
}
