//! Pacing: never send what the upstream said it will refuse.
//!
//! [`PacingLayer`] keeps, per key (by default the upstream's authority, the
//! credential and the model: [`ByCredential`]), the instant until which the
//! upstream said it will refuse calls, and holds the next calls to that key
//! back until then instead of letting each collect its own 429.
//!
//! # What is learnt
//!
//! From every response (and every error) of the inner service:
//!
//! | the upstream answered | the key is held for |
//! |---|---|
//! | 429 with a hint (`retry-after-ms`, `retry-after`, `x-ratelimit-reset-*`, gRPC pushback) whose body does not say `insufficient_quota` | the hint |
//! | any status with `x-ratelimit-remaining-requests: 0` (or `-tokens: 0`) and the matching `x-ratelimit-reset-requests` (or `-tokens`) | the reset |
//! | an error of kind [`RateLimited`](crate::ErrorKind::RateLimited) with `retry-after` | the wait |
//!
//! A hold is at most [five minutes](MAX_HOLD) and only ever grows: a later,
//! shorter hint never shortens it. A 429's body is read as it passes to the
//! caller (its first 4 KiB), and the hold starts when it has shown it is
//! not about an exhausted quota (at its end, or when it is dropped): a
//! quota does not come back by waiting, and the upstream's own error says
//! so better than a hold would. A configured rate
//! ([`rpm`](PacingConfig::rpm), or a request's [`Rpm`]) is kept per key
//! with a GCRA and a small burst, so that no minute ever sends more than
//! the rate.
//!
//! # What a held call does
//!
//! - it **waits** when the wait fits both [`max_retry_after`](PacingConfig::max_retry_after)
//!   (60 s by default, as the retry layer's) and the call's
//!   [`Deadline`](crate::deadline::Deadline);
//! - else it is **refused at once, without being sent**: 429
//!   `rate_limit_exceeded` with `retry-after` = the time left, marked with
//!   [`PacingRefusal`] in the error's extensions;
//! - a request carrying [`RefuseIfHeld`] never waits: a fallback loop sets
//!   it when another target is free, and moves on when it reads the
//!   [`PacingRefusal`].
//!
//! The calls that waited for a hold are released spread over a short
//! [window](PacingConfig::release_window) after it (250 ms by default), in
//! an even spread whatever their number, so that the upstream does not get
//! them all at the instant its limit resets. Calls waiting for the rate
//! are released at their slot. All waits run on tokio's clock (tests pause
//! it). A held call takes no readiness of the inner service while it waits.
//!
//! # Where it goes
//!
//! Inside the retry layer (each attempt is paced: a retry after a 429 waits
//! for its key like any call) and outside the circuit breaker (a held call
//! takes no breaker admission or half-open probe): normalize → total
//! timeout → retry → **pacing** → circuit breaker → attempt timeout →
//! client.
//!
//! # Cost
//!
//! A call whose key is not held, with no rate, costs a hash of its key
//! (no allocation: [`ExtractKey::write_key`](crate::key::ExtractKey::write_key)),
//! a comparison with the key of the service's previous call (or a shared
//! read lock of one of 16 shards), one atomic load, and on the response a
//! look at its status and two headers. Keys live in a bounded registry
//! ([`max_keys`](PacingConfig::max_keys)); a key's name is allocated once,
//! when it first appears, and never holds a credential.
//!
//! [`PacingHandle`] reads what is held (key → instant, for an admin
//! endpoint), takes a callback on every hold learnt and every call held or
//! refused ([`PacingEvent`], for logs and metrics), and sets holds learnt
//! elsewhere. Every hold learnt is also a `tracing` event (target
//! `tower_http_resilience::pacing`) whose key is hashed.
//!
//! # Example
//!
//! A success that says the requests of this minute are used up holds the
//! next calls until the reset; four concurrent calls all succeed, none sent
//! before it:
//!
//! ```
//! use std::convert::Infallible;
//! use std::sync::{Arc, Mutex};
//! use std::time::Duration;
//!
//! use http::{Request, Response};
//! use tokio::time::Instant;
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//! use tower_http_resilience::pacing::PacingLayer;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let start = Instant::now();
//! let sent = Arc::new(Mutex::new(Vec::new()));
//! let upstream = service_fn({
//!     let sent = sent.clone();
//!     move |_req: Request<String>| {
//!         let mut sent = sent.lock().unwrap();
//!         sent.push(start.elapsed());
//!         let mut res = Response::builder();
//!         if sent.len() == 1 {
//!             res = res
//!                 .header("x-ratelimit-remaining-requests", "0")
//!                 .header("x-ratelimit-reset-requests", "2s");
//!         }
//!         std::future::ready(Ok::<_, Infallible>(res.body(String::new()).unwrap()))
//!     }
//! });
//! let client = ServiceBuilder::new().layer(PacingLayer::new()).service(upstream);
//! let call = || {
//!     let req = Request::post("https://api.example.com/v1/chat/completions")
//!         .header("authorization", "Bearer sk-example")
//!         .body(String::new())
//!         .unwrap();
//!     client.clone().oneshot(req)
//! };
//!
//! call().await.unwrap();
//! let calls = (0..4).map(|_| tokio::spawn(call()));
//! for call in calls {
//!     assert_eq!(call.await.unwrap().unwrap().status(), 200);
//! }
//! let sent = sent.lock().unwrap();
//! assert_eq!(sent.len(), 5);
//! assert!(sent[1..].iter().all(|&t| t >= Duration::from_secs(2)));
//! # }
//! ```

mod body;
mod config;
mod core;
mod fleet;
pub mod future;
mod handle;
mod key;
mod layer;
mod learn;
mod rate;
mod registry;
mod service;
mod slot;
mod state;

pub use body::PacingBody;
pub use config::{PacingConfig, DEFAULT_MAX_RETRY_AFTER, MAX_HOLD};
pub use handle::PacingHandle;
pub use key::ByCredential;
pub use layer::PacingLayer;
pub use rate::Rpm;
pub use service::Pacing;
pub use state::{Hold, HoldCause, PacingAction, PacingEvent, PacingRefusal, RefuseIfHeld};
