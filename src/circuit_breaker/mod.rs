//! Circuit breakers per key over a rolling window: stop calling an upstream
//! (or one model of it) while it is failing, and fail fast instead.
//!
//! # States
//!
//! - **Closed**: calls go through and their outcomes are counted in a
//!   rolling window. The breaker opens when, with at least
//!   [`min_calls`](CircuitBreakerConfig::min_calls) calls in the window, the
//!   failure ratio reaches [`failure_ratio`](CircuitBreakerConfig::failure_ratio);
//!   optionally also after [`consecutive_failures`](CircuitBreakerConfig::consecutive_failures)
//!   in a row, or when the ratio of [slow calls](CircuitBreakerConfig::slow_calls)
//!   reaches its threshold.
//! - **Open**: calls fail at once with an [`ApiError`](crate::ApiError) of
//!   kind [`CircuitOpen`](crate::ErrorKind::CircuitOpen) (503, code
//!   `circuit_open`, `retry-after` = the time left open), without waiting
//!   for the inner service's readiness and without calling it. The retry
//!   layer does not retry that kind. Each trip from half-open doubles the
//!   [open duration](CircuitBreakerConfig::open_duration), up to a cap,
//!   with jitter.
//! - **Half-open**: once the open duration is up, at most
//!   [`half_open_probes`](CircuitBreakerConfig::half_open_probes) calls go
//!   through at once as probes; the other calls fail fast (`retry-after: 1`).
//!   Enough probe successes close the breaker (with an empty window); one
//!   probe failure opens it again, for longer.
//!
//! The window is a ring of time buckets on tokio's clock
//! (`tokio::time::Instant`), so old results expire bucket by bucket and
//! tests run with a paused clock. No timer runs: an open breaker turns
//! half-open on the first call (or handle read) after its open duration.
//!
//! # What counts as a failure
//!
//! The breaker sees the whole exchange, not only the response headers
//! ([`DefaultClassifier`] has the table):
//!
//! - a 5xx response (except 501), a gRPC `UNAVAILABLE`, `INTERNAL`,
//!   `DEADLINE_EXCEEDED` or `UNKNOWN` status in the headers (trailers-only)
//!   *or in the trailers*, a connection error or a timeout of an inner layer
//!   are failures; 4xx and 429 are not;
//! - a response that looks fine is recorded when its body **ends**: a body
//!   that fails while streaming (an upstream reset, an idle timeout) counts
//!   as a failure then, and a body the caller drops before its end is not
//!   counted at all (its half-open probe slot, if any, is given back). A
//!   body already at its end with the headers is recorded at once;
//! - a call that an outer [`TimeoutLayer`](crate::TimeoutLayer) cuts short
//!   (a stream stalled past its idle clock, a body or an attempt past the
//!   total) is a failure, although the breaker only sees it dropped: the
//!   call's context, which the timeout put in the request's extensions,
//!   tells it the drop was a timeout, not a caller who went away;
//! - a call is slow when its response headers (or its error) took longer
//!   than the threshold: the time to the headers is measured, not to the
//!   end of the body, so long streams are not slow by nature.
//!
//! Classification is pluggable ([`Classify`]; closures work).
//!
//! # What a call is: the attempts of one call count once
//!
//! Inside a [`RetryLayer`](crate::RetryLayer), the breaker sees every
//! attempt of a call, and counts the call once in its window: as a failure
//! if the call finally failed, as a success if a retry rescued it. Each
//! attempt's outcome is left pending in the call's context (which the retry
//! layer puts in every attempt's request), replacing the previous one's,
//! and recorded when the call ends: when the retry layer returned (or was
//! dropped) and the last attempt's body ended. So:
//!
//! - a call whose first two attempts fail with 503 and whose third
//!   succeeds is one success; one whose four attempts time out is one
//!   failure;
//! - an attempt's outcome still drives what happens next: a failed
//!   attempt is retried, a slow one is judged on its own time to headers;
//! - a half-open probe is judged by its own attempt, at once: a probe that
//!   fails opens the breaker again before the call's next attempt (which an
//!   open breaker rejects), one that succeeds closes it;
//! - a rejection by an open breaker records nothing; an attempt whose
//!   caller went away records nothing (a failure, if a timeout cut it),
//!   and the call's earlier finished attempt is still counted.
//!
//! Without a retry layer outside, an attempt is a call, counted as it ends.
//!
//! Polly and resilience4j count every attempt that reaches the breaker.
//! This breaker departs from them on purpose: it measures the upstream,
//! not how often one call was retried. Counted per attempt, an upstream
//! failing 60 % of attempts at random, whose calls retries mostly rescue
//! (87 % of calls succeed within four attempts), opens the breaker and
//! fails every call for the open duration; so do three slow calls of one
//! client whose four attempts each time out (twelve failures). Counted per call, it opens when
//! half the calls fail after their retries, which is what the callers see;
//! a dead upstream still opens it after
//! [`min_calls`](CircuitBreakerConfig::min_calls) calls, and fails fast
//! from then on.
//!
//! # Keys
//!
//! Each request's breaker is chosen by a key read from the request's head
//! ([`ExtractKey`]): [`GlobalKey`] (the default), [`ByAuthority`],
//! [`ByHeader`], [`ByExtension`] (a [`BreakerKey`] an outer layer put in the
//! extensions, e.g. the JSON body's `model`), functions and closures
//! ([`key_fn`]), chained with [`ExtractKeyExt::or`]. Breakers live in a
//! bounded registry ([`max_keys`](CircuitBreakerConfig::max_keys),
//! [`idle_timeout`](CircuitBreakerConfig::idle_timeout)), so that unbounded
//! key cardinality cannot grow memory without bound. A key is allocated
//! once, when it first appears.
//!
//! # Cost
//!
//! In the closed state a call for a known key costs a comparison with the
//! key of the service's previous call (or, when it differs, one SipHash of
//! the key and a shared read lock of one of 16 shards), an atomic reference
//! count, one atomic load to be admitted, one clock read and one
//! compare-and-swap to be recorded: no mutex, no allocation. State changes
//! take a per-key mutex.
//!
//! # Shared state
//!
//! The state is one `Arc` per layer, shared by every service the layer
//! builds and every clone; [`CircuitBreakerHandle`] reads it (state and
//! counts per key), observes transitions, forces breakers open or closed
//! and forgets keys. Every transition is a `tracing` event (target
//! `tower_http_resilience::circuit_breaker`; opening is a warning, the rest
//! info) whose key is written as [`KeyDisplay`] says: hashed by default,
//! since a key may be an API key.
//!
//! # Where it goes
//!
//! In a client stack: normalize → total timeout → retry → **circuit
//! breaker** → attempt timeout → client. Inside the retry layer, each call
//! is counted once and an open breaker's rejection is not retried; outside
//! the attempt timeout, the breaker sees its timeouts as failed attempts.
//!
//! # Example
//!
//! A gateway's client stack with one breaker per model (falling back to one
//! per upstream host when the request names no model):
//!
//! ```
//! use std::convert::Infallible;
//! use std::time::Duration;
//!
//! use bytes::Bytes;
//! use http::{Request, Response, StatusCode};
//! use http_body_util::Full;
//! use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
//! use tower_http_resilience::circuit_breaker::{
//!     BreakerKey, ByAuthority, ByExtension, CircuitBreakerConfig, CircuitBreakerLayer,
//!     CircuitState, ExtractKeyExt, KeyDisplay,
//! };
//! use tower_http_resilience::ErrorKind;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let layer = CircuitBreakerLayer::with_config(
//!     CircuitBreakerConfig::new()
//!         .window(Duration::from_secs(30), 10)
//!         .min_calls(4)
//!         .failure_ratio(0.5)
//!         .open_duration(Duration::from_secs(30), Duration::from_secs(300), 0.1)
//!         // Model names are safe to log.
//!         .key_display(KeyDisplay::Plain),
//! )
//! .key(ByExtension.or(ByAuthority));
//! let handle = layer.handle();
//!
//! // An upstream whose "flaky-model" is down.
//! let upstream = service_fn(|req: Request<Full<Bytes>>| async move {
//!     let down = req.extensions().get::<BreakerKey>().unwrap().as_str() == "flaky-model";
//!     let status = if down { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK };
//!     let res = Response::builder().status(status).body(Full::new(Bytes::new())).unwrap();
//!     Ok::<_, Infallible>(res)
//! });
//! let mut client = ServiceBuilder::new().layer(layer).service(upstream);
//!
//! let request = |model: &'static str| {
//!     let mut req = Request::new(Full::new(Bytes::new()));
//!     req.extensions_mut().insert(BreakerKey::new(model));
//!     req
//! };
//! for _ in 0..4 {
//!     let res = client.ready().await.unwrap().call(request("flaky-model")).await.unwrap();
//!     assert_eq!(res.status(), 503);
//! }
//! assert_eq!(handle.state("flaky-model"), Some(CircuitState::Open));
//!
//! // The next call to that model fails fast, without reaching the upstream…
//! let err = client.ready().await.unwrap().call(request("flaky-model")).await.unwrap_err();
//! assert_eq!(err.kind(), ErrorKind::CircuitOpen);
//! assert_eq!(err.code(), "circuit_open");
//! assert!(err.retry_after().unwrap() <= Duration::from_secs(33));
//!
//! // …while the other models are untouched.
//! let res = client.ready().await.unwrap().call(request("good-model")).await.unwrap();
//! assert_eq!(res.status(), 200);
//! # }
//! ```

mod body;
mod breaker;
mod classify;
mod config;
mod core;
mod entry;
mod fleet;
pub mod future;
mod guard;
mod handle;
mod layer;
mod registry;
mod service;
mod state;
mod ticket;
mod window;

pub use crate::key;
pub use crate::key::{
    key_fn, BreakerKey, ByAuthority, ByExtension, ByHeader, ExtractKey, ExtractKeyExt, GlobalKey,
};
pub use body::CircuitBreakerBody;
pub use classify::{Classify, DefaultClassifier, Observation, Verdict};
pub use config::{CircuitBreakerConfig, KeyDisplay};
pub use handle::CircuitBreakerHandle;
pub use layer::CircuitBreakerLayer;
pub use service::CircuitBreaker;
pub use state::{BreakerSnapshot, CircuitState, Transition, TransitionReason};
