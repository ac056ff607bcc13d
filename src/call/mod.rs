//! The call: what the layers of one call share ([`CallContext`], in one
//! allocation), what they leave to be settled when it ends ([`Settle`]), and
//! what its outcome carries ([`Attempts`], [`RetriedOut`]).
//!
//! The outermost layer of the crate that sees a call (the total timeout, or
//! the retry layer when it is used alone) puts one context in the request's
//! extensions; the layers inside find it with one lookup. An attempt's
//! request carries the same context as the call's, so the layers inside an
//! attempt loop know which call an attempt belongs to. Everything in it is
//! updated in place with atomics; only the pending breaker outcomes, written
//! when an attempt fails, sit behind a lock.
//!
//! It carries:
//!
//! - the call's deadline (the earliest any layer set), read by the retry
//!   layer so that no wait crosses it;
//! - the attempts sent, on every target, counted by the attempt loop and
//!   read by the timeout that cuts the call short;
//! - which attempt a timeout cut short, so that a circuit breaker counts an
//!   attempt it sees dropped as failed rather than abandoned;
//! - whether an attempt loop owns the call, the holds that keep the call
//!   open (the loop, the attempt in flight), and the outcomes the layers
//!   inside leave to be settled when the call ends ([`Settle`]).

#[cfg(any(feature = "retry", feature = "timeout"))]
mod attempts;
mod context;
#[cfg(any(feature = "retry", feature = "timeout", feature = "normalize"))]
mod retried_out;
#[cfg(feature = "circuit-breaker")]
mod settle;
mod timing;

#[cfg(any(feature = "retry", feature = "timeout"))]
#[cfg_attr(not(feature = "retry"), allow(unreachable_pub))]
pub use attempts::Attempts;
pub(crate) use context::CallContext;
#[cfg(feature = "normalize")]
pub(crate) use retried_out::is_retried_out;
#[cfg(any(feature = "retry", feature = "timeout", feature = "normalize"))]
pub(crate) use retried_out::retried_out;
#[cfg(feature = "retry")]
pub(crate) use retried_out::RetriedOut;
#[cfg(feature = "circuit-breaker")]
pub(crate) use settle::{Pending, Settle};
