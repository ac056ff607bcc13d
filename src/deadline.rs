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
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let mut req = http::Request::new(());
//! Deadline::after(Duration::from_secs(60)).set_earliest(req.extensions_mut());
//! Deadline::after(Duration::from_secs(5)).set_earliest(req.extensions_mut());
//! Deadline::after(Duration::from_secs(30)).set_earliest(req.extensions_mut());
//!
//! let deadline = Deadline::get(req.extensions()).unwrap();
//! assert!(deadline.remaining() <= Duration::from_secs(5));
//! # }
//! ```

use std::time::Duration;

use tokio::time::Instant;

/// The instant by which a call must be finished, on tokio's clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Deadline(Instant);

impl Deadline {
    /// A deadline at `instant`.
    pub const fn at(instant: Instant) -> Self {
        Deadline(instant)
    }

    /// A deadline `timeout` from now (tokio's clock, so paused-clock tests see
    /// virtual time). A timeout too large to represent is clamped to about 30
    /// years.
    pub fn after(timeout: Duration) -> Self {
        let now = Instant::now();
        let at = now
            .checked_add(timeout)
            .unwrap_or_else(|| now + Duration::from_secs(30 * 365 * 24 * 60 * 60));
        Deadline(at)
    }

    /// The instant of the deadline.
    pub const fn instant(self) -> Instant {
        self.0
    }

    /// The time left before the deadline; zero once it has passed.
    pub fn remaining(self) -> Duration {
        self.0.saturating_duration_since(Instant::now())
    }

    /// Whether the deadline has passed.
    pub fn has_passed(self) -> bool {
        Instant::now() >= self.0
    }

    /// The deadline in `extensions`, if a layer set one.
    pub fn get(extensions: &http::Extensions) -> Option<Self> {
        extensions.get::<Deadline>().copied()
    }

    /// Stores this deadline in `extensions` unless an earlier one is already
    /// there; returns the deadline now in force.
    pub fn set_earliest(self, extensions: &mut http::Extensions) -> Self {
        match extensions.get::<Deadline>() {
            Some(existing) if *existing <= self => *existing,
            _ => {
                extensions.insert(self);
                self
            }
        }
    }
}
