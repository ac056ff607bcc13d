//! Retry with backoff and jitter, server hints, one deadline, a shared
//! budget, and request bodies replayed without `Clone`.
//!
//! [`RetryLayer`] wraps any service of `http::Request<B>` (a hyper-util
//! client, a tonic `Channel`, an axum `Router`), for any body `B`: neither
//! the request nor the body needs to be `Clone`.
//!
//! # What is retried
//!
//! After each attempt the [`RetryPolicy`] decides; the default
//! ([`DefaultPolicy`]) follows the crate's error table: 408, 409, 429 (a
//! rate limit, not an exhausted quota: the first bytes of the body are read
//! to tell), 500, 502, 503, 504, 529, connection errors, attempt timeouts and
//! gRPC `UNAVAILABLE` are retried; 400, 401, 402, 403, 404, 422 are not; a
//! server's `x-should-retry` overrides. Two rules hold whatever the policy
//! says:
//!
//! - **The commit point.** A response with a status below 400 is handed
//!   back as it is: once a success reaches the caller, the call is never
//!   sent again. An ordinary response commits at its headers; a stream at
//!   its first event: an event stream (`text/event-stream`) is held back
//!   until its first complete event with data, another stream the request
//!   asked for (see [`timeout`](crate::timeout)) until its first byte — at
//!   most 64 KiB, and at most the first-byte clock of an outer
//!   [`TimeoutLayer`](crate::TimeoutLayer), counted from the attempt's
//!   start. Before that, a stream that ends, fails, stalls or opens with an
//!   error event (`data: {"error": …}`) is a failed attempt, shown to the
//!   policy like an error; after it, the stream is the caller's, byte for
//!   byte. (A gRPC trailers-only error, status 200 with `grpc-status` in the
//!   headers, is shown to the policy; a gRPC status in trailers comes after
//!   the commit point.)
//! - **An open breaker.** A rejection of kind
//!   [`CircuitOpen`](crate::ErrorKind::CircuitOpen) is not retried: the
//!   same breaker would reject the retry, so it is returned at once (or the
//!   call's next target is tried), and charged neither to the budget nor,
//!   never sent, to the attempts.
//!
//! # When, and whether, the next attempt goes out
//!
//! A retry the policy wants is sent only if all of these hold, checked in
//! this order:
//!
//! 1. fewer than [`max_retries`](RetryLayer::max_retries) retries were made;
//! 2. the request body can be replayed (see below);
//! 3. the wait is known: the server's hint (`retry-after-ms`, `retry-after`
//!    in seconds or as an HTTP-date, `x-ratelimit-reset-*`,
//!    `grpc-retry-pushback-ms`; see [`ServerHints`](crate::hint::ServerHints))
//!    is the wait, not shortened by jitter; a hint above
//!    [`max_retry_after`](RetryLayer::max_retry_after) means "not here" and
//!    the outcome comes back at once, carrying its hint. Without a hint the
//!    wait is the [`Backoff`] with its [`Jitter`];
//! 4. the wait ends before the call's deadline: the earliest of the
//!    [`Deadline`](crate::deadline::Deadline) an outer total timeout set for
//!    the request and the layer's own
//!    [`deadline`](RetryLayer::deadline). No wait crosses it; when the next
//!    one would, the last outcome comes back now;
//! 5. the [`RetryBudget`], shared by every service and clone of the layer,
//!    allows one more retry.
//!
//! Otherwise the caller gets the **last outcome as it was**: the last
//! response, intact (a body that was peeked is played back whole), or the
//! last error. Turning an error response into an [`ApiError`](crate::ApiError)
//! is the client normalization layer's job, outside this one.
//!
//! # What the caller is told
//!
//! A failure that leaves after the layer retried the call (or moved it to
//! another target) at least once, or whose retry the budget or the deadline
//! refused, tells its caller not to
//! retry it again: a caller that retries too (the official OpenAI SDKs retry
//! twice by default) would multiply the attempts the upstream sees and the
//! time the call takes. Such an error's
//! [`is_retryable`](crate::ApiError::is_retryable) is `false`, and the
//! normalization layers answer it with `x-should-retry: false`; a
//! `retry-after` it carries stays, so the caller knows when to come back.
//! A failure the policy does not retry (a 400, say), or one whose server
//! asked on the first attempt for a longer wait than
//! [`max_retry_after`](RetryLayer::max_retry_after), is left as it is.
//!
//! Waits run on tokio's clock (tests pause it). Every retry emits a
//! `tracing` event at `INFO` with the attempt number, the wait and the
//! reason (a status or an error code: never headers, URIs or bodies). The
//! number of attempts made is in the [`Attempts`] extension of the error, or
//! of the response when it took more than one ([`Attempts::of`] reads an
//! unmarked response as one attempt). Dropping the response future stops
//! the call: no further attempt is sent.
//!
//! # Targets
//!
//! The loop walks the call's targets: by default one, the inner service as
//! the request reaches it. A [`FallbackLayer`](crate::fallback::FallbackLayer)
//! is this loop with a list of targets (another upstream, credential or
//! model each): a target that cannot serve the call is left at once, and
//! `max_retries` is the retries on each. A retry layer inside another
//! attempt loop makes no retries of its own, so stacking the two does not
//! multiply attempts. See [`fallback`](crate::fallback).
//!
//! # One call, many attempts
//!
//! Every attempt's request carries the call's context in its extensions
//! (one `Arc`, made by an outer [`TimeoutLayer`](crate::TimeoutLayer) or
//! here): its [`Deadline`](crate::deadline::Deadline), the attempts sent,
//! and what the layers inside leave to be settled when the call ends. A
//! [`CircuitBreakerLayer`](crate::CircuitBreakerLayer) inside counts the
//! attempts of one call as one call; an outer total timeout that cuts the
//! call short knows how many attempts were sent.
//!
//! # Request bodies
//!
//! The first attempt streams the caller's body to the inner service while
//! keeping its chunks, up to [`max_replay_body`](RetryLayer::max_replay_body)
//! (4 MiB by default); later attempts replay them as clones of the same
//! `Bytes` ([`ReplayBody`]). A body over the cap is sent once and the call is
//! not retried. The request's method, URI, version, headers and extensions
//! are copied for each attempt. The inner service therefore sees
//! `Request<ReplayBody<B>>`; the response body is [`RetryBody`].
//!
//! # Example
//!
//! An upstream that fails twice with 503, then answers:
//!
//! ```
//! use std::sync::atomic::{AtomicU32, Ordering};
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! use bytes::Bytes;
//! use http::{Request, Response, StatusCode};
//! use http_body_util::{BodyExt, Full};
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//! use tower_http_resilience::retry::{Attempts, Backoff, Jitter, ReplayBody, RetryLayer};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let calls = Arc::new(AtomicU32::new(0));
//! let upstream = service_fn({
//!     let calls = calls.clone();
//!     move |req: Request<ReplayBody<Full<Bytes>>>| {
//!         let n = calls.fetch_add(1, Ordering::SeqCst);
//!         async move {
//!             let body = req.into_body().collect().await?.to_bytes();
//!             assert_eq!(body, "{\"model\":\"m\"}"); // the same body every time
//!             let status = if n < 2 { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK };
//!             Ok::<_, tower_http_resilience::BoxError>(
//!                 Response::builder().status(status).body(Full::new(Bytes::from("done")))?,
//!             )
//!         }
//!     }
//! });
//!
//! let client = ServiceBuilder::new()
//!     .layer(
//!         RetryLayer::new()
//!             .max_retries(3)
//!             .backoff(Backoff::exponential(Duration::from_millis(100), Duration::from_secs(2)))
//!             .jitter(Jitter::none())
//!             .deadline(Duration::from_secs(30)),
//!     )
//!     .service(upstream);
//!
//! let start = tokio::time::Instant::now();
//! let req = Request::post("http://upstream/v1/chat/completions")
//!     .body(Full::new(Bytes::from("{\"model\":\"m\"}")))
//!     .unwrap();
//! let res = client.oneshot(req).await.unwrap();
//!
//! assert_eq!(res.status(), StatusCode::OK);
//! assert_eq!(res.extensions().get::<Attempts>().unwrap().get(), 3);
//! assert_eq!(start.elapsed(), Duration::from_millis(100 + 200));
//! assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "done");
//! # }
//! ```
//!
//! # On a hyper client
//!
//! hyper-util's client takes the body type it sends as a parameter: build it
//! for `ReplayBody<B>`.
//!
//! ```no_run
//! use bytes::Bytes;
//! use http_body_util::{BodyExt, Full};
//! use hyper_util::client::legacy::Client;
//! use hyper_util::rt::TokioExecutor;
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_http_resilience::retry::{ReplayBody, RetryLayer};
//!
//! # async fn run() -> Result<(), tower_http_resilience::BoxError> {
//! let client = Client::builder(TokioExecutor::new()).build_http::<ReplayBody<Full<Bytes>>>();
//! let client = ServiceBuilder::new().layer(RetryLayer::new()).service(client);
//!
//! let req = http::Request::post("http://127.0.0.1:8080/v1/chat/completions")
//!     .header("content-type", "application/json")
//!     .body(Full::new(Bytes::from(r#"{"model":"gpt-4o-mini","messages":[]}"#)))?;
//! let res = client.oneshot(req).await?;
//! let body = res.into_body().collect().await?.to_bytes();
//! # let _ = body; Ok(()) }
//! ```
//!
//! # On a tonic channel
//!
//! A tonic `Channel` sends `tonic::body::Body`: map the request body with
//! `tonic::body::Body::new` between the retry layer and the channel. The
//! stack then is a `GrpcService` that tonic's generated clients accept.
//!
//! ```no_run
//! use http::Request;
//! use tonic::transport::Channel;
//! use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};
//! use tower::ServiceBuilder;
//! use tower_http_resilience::retry::{ReplayBody, RetryLayer};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let channel = Channel::from_static("http://127.0.0.1:50051").connect_lazy();
//! let channel = ServiceBuilder::new()
//!     .layer(RetryLayer::new())
//!     .map_request(|req: Request<ReplayBody<tonic::body::Body>>| req.map(tonic::body::Body::new))
//!     .service(channel);
//!
//! let mut client = HealthClient::new(channel);
//! let reply = client.check(HealthCheckRequest { service: String::new() }).await?;
//! # let _ = reply; Ok(()) }
//! ```

mod backoff;
mod body;
mod budget;
mod buffer;
mod call;
mod decide;
pub mod future;
mod hold;
mod layer;
mod outcome;
mod policy;
mod replay;
mod service;
mod sse;
mod state;
mod step;

pub use crate::call::Attempts;
pub use backoff::{Backoff, Jitter};
pub use body::RetryBody;
pub use budget::RetryBudget;
pub use layer::{
    RetryLayer, DEFAULT_MAX_REPLAY_BODY, DEFAULT_MAX_RETRIES, DEFAULT_MAX_RETRY_AFTER,
};
pub use outcome::{Decision, Outcome};
pub(crate) use policy::says_quota;
pub use policy::{DefaultPolicy, RetryPolicy};
pub(crate) use replay::Replay;
pub use replay::ReplayBody;
pub use service::Retry;
