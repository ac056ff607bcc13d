//! The one deadline of a call, shared between layers through request
//! extensions.
//!
//! An outer layer that bounds the whole call (the total timeout) sets a
//! [`Deadline`] in the request's extensions with [`Deadline::set_earliest`];
//! inner layers read it with [`Deadline::get`] so that they never start work
//! that cannot finish in time. The retry layer, for one, never sleeps past
//! it: when the next wait would cross the deadline, the last error comes
//! back at once.
//!
//! When several layers set a deadline, the earliest one is kept. The
//! deadline lives in the call's context, which every attempt of the call
//! shares: a deadline is read with one extension lookup and set without
//! copying anything per attempt.
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

use std::time::Duration;

use tokio::time::Instant;

use crate::call::CallContext;
use crate::util::instant_after;

/// The instant by which a call must be finished, on tokio's clock.
///
/// A plain value: it is stored in, and read from, the call's context in the
/// request's extensions ([`set_earliest`](Deadline::set_earliest),
/// [`get`](Deadline::get)).
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
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Deadline {
    at: Instant,
}

impl Deadline {
    /// A deadline at `instant`.
    pub const fn at(instant: Instant) -> Self {
        Deadline { at: instant }
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

    /// The deadline in force for the request whose `extensions` these are,
    /// if a layer set one.
    pub fn get(extensions: &http::Extensions) -> Option<Self> {
        CallContext::get(extensions)?.deadline().map(Deadline::at)
    }

    /// Sets this deadline for the request whose `extensions` these are,
    /// unless an earlier one is already set; returns the deadline now in
    /// force.
    pub fn set_earliest(self, extensions: &mut http::Extensions) -> Self {
        let call = CallContext::get_or_insert(extensions);
        Deadline::at(call.set_deadline_earliest(self.at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_earliest_wins() {
        let mut ext = http::Extensions::new();
        assert_eq!(Deadline::get(&ext), None);
        Deadline::after(Duration::from_secs(60)).set_earliest(&mut ext);
        let inner = Deadline::after(Duration::from_secs(30)).set_earliest(&mut ext);
        assert_eq!(inner.remaining(), Duration::from_secs(30));
        // A later one changes nothing.
        Deadline::after(Duration::from_secs(90)).set_earliest(&mut ext);
        assert_eq!(Deadline::get(&ext), Some(inner));
        // One extension holds it all.
        assert_eq!(ext.len(), 1);
    }
}
