//! The vocabulary of pacing: why a call is held, what the layer tells its
//! callbacks, the mark on a refusal, and the request's "do not wait".

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

/// Why a call is held back.
///
/// ```
/// use tower_http_resilience::pacing::HoldCause;
///
/// assert_eq!(HoldCause::Upstream.to_string(), "upstream");
/// assert_eq!(HoldCause::Rate.as_str(), "rate");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HoldCause {
    /// The upstream said it will refuse calls for this key until an
    /// instant (a 429 with a hint, or `x-ratelimit-remaining-*: 0` with
    /// its reset).
    Upstream,
    /// The configured rate for this key has no slot free yet.
    Rate,
}

impl HoldCause {
    /// A short lower-case name: `upstream`, `rate`.
    pub const fn as_str(self) -> &'static str {
        match self {
            HoldCause::Upstream => "upstream",
            HoldCause::Rate => "rate",
        }
    }
}

impl fmt::Display for HoldCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What happened, in a [`PacingEvent`].
///
/// ```
/// use tower_http_resilience::pacing::{PacingAction, PacingLayer};
///
/// let layer = PacingLayer::new();
/// layer.handle().on_event(|event| match event.action() {
///     PacingAction::Learnt => println!("{} held for {:?}", event.key(), event.wait()),
///     _ => {}
/// });
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PacingAction {
    /// A response taught a longer hold for the key (until
    /// [`PacingEvent::until`]).
    Learnt,
    /// A call waited for its key before being sent.
    Waited,
    /// A call was answered 429 without being sent: its wait did not fit
    /// (`max_retry_after`, its deadline, or [`RefuseIfHeld`]).
    Refused,
}

/// What a [`PacingHandle::on_event`](super::PacingHandle::on_event)
/// callback is told: a hold learnt, a call that waited, a call refused.
///
/// ```
/// use tower_http_resilience::pacing::{PacingAction, PacingLayer};
///
/// let layer = PacingLayer::new();
/// layer.handle().on_event(|event| {
///     if event.action() == PacingAction::Refused {
///         eprintln!("{} refused for {:?} ({})", event.key(), event.wait(), event.cause());
///     }
/// });
/// ```
#[derive(Clone, Debug)]
pub struct PacingEvent {
    pub(crate) key: Arc<str>,
    pub(crate) action: PacingAction,
    pub(crate) cause: HoldCause,
    pub(crate) wait: Duration,
    pub(crate) until: Instant,
}

impl PacingEvent {
    /// The key, as the layer's key extractor names it (never a credential:
    /// the default key shows a hash of it).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// What happened.
    pub fn action(&self) -> PacingAction {
        self.action
    }

    /// Why the key is held: always [`HoldCause::Upstream`] for
    /// [`PacingAction::Learnt`].
    pub fn cause(&self) -> HoldCause {
        self.cause
    }

    /// The time from the event to the end of the hold (learnt), to the
    /// call's release (waited) or the time left that was refused.
    pub fn wait(&self) -> Duration {
        self.wait
    }

    /// The instant the hold ends (learnt), the call is released (waited),
    /// or the refused call could have gone out (refused).
    pub fn until(&self) -> Instant {
        self.until
    }
}

/// The mark on the error of a call that pacing answered without sending it
/// (429 `rate_limit_exceeded`, `retry-after` = the time left): found in
/// [`ApiError::extensions`](crate::ApiError::extensions). A fallback loop
/// reads it to move to the next target at once: this target was not tried.
///
/// ```
/// use std::time::Duration;
/// use tower_http_resilience::pacing::{HoldCause, PacingRefusal};
/// use tower_http_resilience::ApiError;
///
/// fn not_sent(err: &ApiError) -> Option<Duration> {
///     err.extensions().get::<PacingRefusal>().map(|r| r.wait())
/// }
/// # let err = ApiError::new(tower_http_resilience::ErrorKind::RateLimited);
/// # assert_eq!(not_sent(&err), None);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacingRefusal {
    pub(crate) wait: Duration,
    pub(crate) cause: HoldCause,
}

impl PacingRefusal {
    /// The time left before the key takes calls again.
    pub fn wait(&self) -> Duration {
        self.wait
    }

    /// Why the key is held.
    pub fn cause(&self) -> HoldCause {
        self.cause
    }
}

/// A request extension that tells pacing not to wait: a call whose key is
/// held is refused at once (marked [`PacingRefusal`]), however short the
/// wait. A fallback loop sets it on an attempt when another target is free,
/// so that the call moves on instead of waiting here.
///
/// ```
/// use tower_http_resilience::pacing::RefuseIfHeld;
///
/// let mut req = http::Request::new(());
/// req.extensions_mut().insert(RefuseIfHeld);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RefuseIfHeld;

/// One held key, as [`PacingHandle::holds`](super::PacingHandle::holds)
/// reports it.
///
/// ```
/// use tower_http_resilience::pacing::{Hold, PacingHandle};
///
/// /// The body of an admin endpoint: key and milliseconds left.
/// fn held(handle: &PacingHandle) -> Vec<(String, u128)> {
///     let holds: Vec<Hold> = handle.holds();
///     holds.iter().map(|h| (h.key().to_owned(), h.remaining().as_millis())).collect()
/// }
/// # let layer = tower_http_resilience::pacing::PacingLayer::new();
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap()
/// #     .block_on(async { assert!(held(&layer.handle()).is_empty()) });
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hold {
    pub(crate) key: Arc<str>,
    pub(crate) until: Instant,
}

impl Hold {
    /// The key (never a credential: the default key shows a hash of it).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The instant until which the key is held.
    pub fn until(&self) -> Instant {
        self.until
    }

    /// The time left, zero once the hold has ended.
    pub fn remaining(&self) -> Duration {
        self.until.saturating_duration_since(Instant::now())
    }
}
