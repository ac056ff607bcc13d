//! Tower middleware for flaky HTTP and gRPC upstreams.
//!
//! `tower-http-resilience` gives any `tower::Service<http::Request<B>>` (an
//! axum `Router`, a hyper client, a tonic `Channel`) one canonical error model
//! and the layers that make calls survive a flaky upstream.
//!
//! | module | what it does |
//! |---|---|
//! | [`error`] | [`ApiError`] and [`ErrorKind`]: the canonical envelope, read from any upstream dialect, rendered as JSON, gRPC status or an SSE event |
//! | [`deadline`] | [`Deadline`](deadline::Deadline): the one deadline of a call, shared through request extensions |
//! | [`hint`] | [`ServerHints`](hint::ServerHints): `retry-after`, `retry-after-ms`, `x-should-retry`, rate-limit resets, gRPC pushback |
//! | [`retry`] | [`RetryLayer`]: backoff with jitter, server hints, one deadline, a shared budget, request bodies replayed without `Clone` |
//! | [`circuit_breaker`] | [`CircuitBreakerLayer`]: breakers per key (host, model, header) over a rolling window, with slow-call detection, bounded half-open probes and a lock-free hot path; streams are judged when they end |
//! | [`normalize`] | [`NormalizeLayer`] for servers (every failure leaves as the envelope) and [`NormalizeClientLayer`] for clients (every failure arrives as an [`ApiError`]) |
//! | [`timeout`] | [`TimeoutLayer`]: a total timeout over headers *and* body for ordinary calls; first-byte, idle and total clocks for streams (SSE, gRPC), chosen per call; [`AttemptTimeoutLayer`] for one attempt |
//! | [`stack`] | [`ResilienceLayer`]: normalize → total timeout → retry → circuit breaker → attempt timeout from one checked [`ResilienceConfig`], client and server flavours; [`ResilienceServiceBuilderExt`] |
//!
//! # Example
//!
//! A server whose every failure, from any handler or layer, leaves as the
//! canonical envelope:
//!
//! ```
//! use axum::{routing::post, Router};
//! use tower_http_resilience::NormalizeLayer;
//!
//! let app: Router = Router::new()
//!     .route("/v1/chat/completions", post(|| async { "ok" }))
//!     .layer(NormalizeLayer::new());
//! ```
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

#[cfg(any(feature = "normalize", feature = "retry", feature = "timeout"))]
pub(crate) mod body;
pub(crate) mod call;
#[cfg(feature = "circuit-breaker")]
pub mod circuit_breaker;
#[cfg(any(feature = "normalize", feature = "timeout"))]
pub(crate) mod content_type;
pub mod deadline;
pub mod error;
pub mod hint;
#[cfg(feature = "normalize")]
pub mod normalize;
#[cfg(feature = "retry")]
pub mod retry;
#[cfg(feature = "stack")]
pub mod stack;
#[cfg(feature = "timeout")]
pub mod timeout;
pub(crate) mod util;

pub use error::{ApiError, BoxError, ErrorKind, TimeoutPhase};

#[cfg(feature = "circuit-breaker")]
pub use circuit_breaker::{CircuitBreaker, CircuitBreakerLayer};
#[cfg(feature = "normalize")]
pub use normalize::{NormalizeClientLayer, NormalizeLayer};
#[cfg(feature = "retry")]
pub use retry::{Retry, RetryLayer};
#[cfg(feature = "stack")]
pub use stack::{ResilienceConfig, ResilienceLayer, ResilienceServiceBuilderExt};
#[cfg(feature = "timeout")]
pub use timeout::{AttemptTimeoutLayer, TimeoutLayer};
