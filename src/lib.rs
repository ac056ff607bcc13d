//! Tower middleware for flaky HTTP and gRPC upstreams.
//!
//! `tower-http-resilience` gives any `tower::Service<http::Request<B>>` (an
//! axum `Router`, a hyper client, a tonic `Channel`) one canonical error model
//! and the layers that make calls survive a flaky upstream.
//!
//! | module | what it does |
//! |---|---|
//! | [`error`] | [`ApiError`] and [`ErrorKind`]: the canonical envelope, read from any upstream dialect, rendered as JSON, gRPC status or an SSE event |
//! | [`base_uri`] | [`BaseUri`]: an upstream's base URI and the path-safe join of a caller's path onto it (prefix and query kept, `..` and encoded separators refused) |
//! | [`deadline`] | [`Deadline`](deadline::Deadline): the one deadline of a call, shared through request extensions |
//! | [`hint`] | [`ServerHints`](hint::ServerHints): `retry-after`, `retry-after-ms`, `x-should-retry`, rate-limit resets, gRPC pushback |
//! | [`retry`] | [`RetryLayer`]: backoff with jitter, server hints, one deadline, a shared budget, request bodies replayed without `Clone` |
//! | [`collect`] | [`CollectBodyLayer`]: request bodies read whole before the call, under a size limit, a deadline and a memory budget shared by every call |
//! | [`circuit_breaker`] | [`CircuitBreakerLayer`]: breakers per key (host, model, header) over a rolling window, with slow-call detection, bounded half-open probes and a lock-free hot path; streams are judged when they end |
//! | [`normalize`] | [`NormalizeLayer`] for servers (every failure leaves as the envelope) and [`NormalizeClientLayer`] for clients (every failure arrives as an [`ApiError`]) |
//! | [`timeout`] | [`TimeoutLayer`]: a total timeout over headers *and* body for ordinary calls; first-byte, idle and total clocks for streams (SSE, gRPC), chosen per call; [`HeadersTimeoutLayer`] for one attempt |
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
// Internal helpers serve several features; with some features off they idle.
#![cfg_attr(not(feature = "full"), allow(dead_code, unused_imports))]
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

pub mod base_uri;
pub(crate) mod body;
#[cfg(feature = "circuit-breaker")]
pub mod circuit_breaker;
#[cfg(feature = "collect")]
pub mod collect;
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

pub use base_uri::BaseUri;
pub use error::{ApiError, BoxError, ErrorKind, TimeoutPhase};

#[cfg(feature = "circuit-breaker")]
pub use circuit_breaker::{CircuitBreaker, CircuitBreakerLayer};
#[cfg(feature = "collect")]
pub use collect::CollectBodyLayer;
#[cfg(feature = "normalize")]
pub use normalize::{NormalizeClientLayer, NormalizeLayer};
#[cfg(feature = "retry")]
pub use retry::{Retry, RetryLayer};
#[cfg(feature = "stack")]
pub use stack::{ResilienceConfig, ResilienceLayer, ResilienceServiceBuilderExt};
#[cfg(feature = "timeout")]
pub use timeout::{HeadersTimeoutLayer, TimeoutLayer};
