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
//! | `metrics` (feature `metrics`) | the series every layer records through the `metrics` facade (calls, breaker states, timeouts, held calls), their names and labels |
//! | [`key`] | [`ExtractKey`](key::ExtractKey): which breaker or pacing state a request belongs to (host, header, model, credential) |
//! | [`pacing`] | [`PacingLayer`]: never send what the upstream said it will refuse; holds learnt from 429 hints and `x-ratelimit-remaining-*: 0`, a configured rate per key |
//! | [`retry`] | [`RetryLayer`]: backoff with jitter, server hints, one deadline, a shared budget, request bodies replayed without `Clone`; a stream commits at its first event |
//! | [`fallback`] | [`FallbackLayer`]: the same attempt loop over an ordered list of targets (base URI, credential, the JSON body's `model`, breaker key), moving on at once when a target cannot serve |
//! | [`collect`] | [`CollectBodyLayer`]: request bodies read whole before the call, under a size limit, a deadline and a memory budget shared by every call |
//! | [`circuit_breaker`] | [`CircuitBreakerLayer`]: breakers per key (host, model, header) over a rolling window, with slow-call detection, bounded half-open probes and a lock-free hot path; streams are judged when they end |
//! | [`normalize`] | [`NormalizeLayer`] for servers (every failure leaves as the envelope) and [`NormalizeClientLayer`] for clients (every failure arrives as an [`ApiError`]) |
//! | [`timeout`] | [`TimeoutLayer`]: a total timeout over headers *and* body for ordinary calls; first-byte, idle and total clocks for streams (SSE, gRPC), chosen per call; [`AttemptTimeoutLayer`] for one attempt |
//! | [`stack`] | [`ResilienceLayer`]: normalize → total timeout → retry → circuit breaker → attempt timeout from one checked [`ResilienceConfig`], client and server flavours; [`ResilienceServiceBuilderExt`] adds each layer to a `ServiceBuilder` |
//! | [`check`] | [`CheckLayer`]: OpenAI-shaped requests checked before any upstream call (JSON, `model`, `messages`, roles, sampling ranges) and prompts over a model's context window refused, the body read once and forwarded byte for byte |
//! | `fleet` (feature `fleet`) | `FleetMirror`: what replicas learn (hold-backs, breaker trips, rate leases) shared through a local mirror, in memory or in Redis |
//!
//! The crate root re-exports every layer and the service it builds.
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
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod base_uri;
#[cfg(any(
    feature = "normalize",
    feature = "retry",
    feature = "timeout",
    feature = "check"
))]
pub(crate) mod body;
pub(crate) mod call;
#[cfg(feature = "check")]
pub mod check;
#[cfg(feature = "circuit-breaker")]
pub mod circuit_breaker;
#[cfg(feature = "collect")]
pub mod collect;
#[cfg(any(
    feature = "normalize",
    feature = "timeout",
    feature = "check",
    feature = "retry"
))]
pub(crate) mod content_type;
pub mod deadline;
pub mod error;
#[cfg(feature = "fallback")]
pub mod fallback;
// The attempt loop walks targets whether or not they are offered.
#[cfg(all(feature = "retry", not(feature = "fallback")))]
pub(crate) mod fallback;
#[cfg(feature = "fleet")]
pub mod fleet;
pub mod hint;
#[cfg(any(feature = "timeout", feature = "retry", feature = "normalize"))]
pub(crate) mod json;
#[cfg(any(feature = "circuit-breaker", feature = "pacing", feature = "retry"))]
pub mod key;
#[cfg(feature = "metrics")]
pub mod metrics;
#[cfg(not(feature = "metrics"))]
#[path = "metrics/off.rs"]
pub(crate) mod metrics;
#[cfg(feature = "normalize")]
pub mod normalize;
#[cfg(feature = "pacing")]
pub mod pacing;
#[cfg(feature = "retry")]
pub mod retry;
#[cfg(feature = "stack")]
pub mod stack;
#[cfg(feature = "timeout")]
pub mod timeout;
pub(crate) mod util;

pub use base_uri::BaseUri;
pub use error::{ApiError, BoxError, ErrorKind, TimeoutPhase};

#[cfg(feature = "check")]
pub use check::{Check, CheckLayer};
#[cfg(feature = "circuit-breaker")]
pub use circuit_breaker::{CircuitBreaker, CircuitBreakerLayer};
#[cfg(feature = "collect")]
pub use collect::CollectBodyLayer;
#[cfg(feature = "fallback")]
pub use fallback::FallbackLayer;
#[cfg(feature = "fleet")]
pub use fleet::FleetMirror;
#[cfg(feature = "normalize")]
pub use normalize::{Normalize, NormalizeClient, NormalizeClientLayer, NormalizeLayer};
#[cfg(feature = "pacing")]
pub use pacing::{Pacing, PacingLayer};
#[cfg(feature = "retry")]
pub use retry::{Retry, RetryLayer};
#[cfg(feature = "stack")]
pub use stack::{
    ClientStack, ResilienceConfig, ResilienceLayer, ResilienceServerLayer,
    ResilienceServiceBuilderExt, ServerStack,
};
#[cfg(feature = "timeout")]
pub use timeout::{AttemptTimeout, AttemptTimeoutLayer, Timeout, TimeoutLayer};

/// Every snippet of the README, compiled and run as a doctest (the snippets
/// need these features: see the README's install section).
#[cfg(all(doctest, feature = "stack", feature = "axum", feature = "hyper-util"))]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
