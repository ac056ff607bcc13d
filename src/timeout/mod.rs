//! Timeouts that know a stream from an ordinary call, and cover the body.
//!
//! tower's `Timeout` stops at the response headers: an upstream that sends
//! its headers and then stalls hangs the caller. [`TimeoutLayer`] bounds the
//! whole call, body included, with clocks chosen per call:
//!
//! ```text
//!             call     headers   first data   chunk      chunk      end
//!              |──────────|──────────|──────────|──────────|─────────|
//! ordinary     |<──────────────── total (60 s) ──────────────────────>|
//! streaming    |<─ first byte (60 s) ─>|<─ idle ─>|<─ idle ─>|<─ idle ─>|   (idle: 60 s)
//!              |<──────────────── stream timeout (300 s) ────────────>|
//! attempt      |<─ attempt (30 s) ─>|       (AttemptTimeoutLayer, per attempt, inside retry)
//! ```
//!
//! | clock | profile | starts | runs until | error before the headers | error in the body |
//! |---|---|---|---|---|---|
//! | total | ordinary | call | body end | [`Total`](crate::TimeoutPhase::Total) | [`Total`](crate::TimeoutPhase::Total) |
//! | first byte | streaming | call | first body data | [`Attempt`](crate::TimeoutPhase::Attempt) | [`FirstByte`](crate::TimeoutPhase::FirstByte) |
//! | idle | streaming | each chunk | next chunk | — | [`Idle`](crate::TimeoutPhase::Idle) |
//! | stream timeout | streaming | call | body end | [`Total`](crate::TimeoutPhase::Total) | [`Total`](crate::TimeoutPhase::Total) |
//! | attempt | any ([`AttemptTimeoutLayer`]) | attempt | headers | [`Attempt`](crate::TimeoutPhase::Attempt) | — |
//!
//! Every clock may be changed for one call with a [`TimeoutOverride`] in the
//! request's extensions.
//!
//! # Which profile
//!
//! A call is **streaming** when the request says so — a [`Profile`] marker in
//! its extensions (which also settles the profile the other way:
//! `Profile::Ordinary` is never streaming), an `Accept` header naming
//! `text/event-stream`, or `"stream": true` at the top level of a JSON body
//! — or, failing that, when the response says so: `content-type:
//! text/event-stream`, or a gRPC response (`application/grpc…`; unary and
//! server-streaming responses look the same on the wire, and the streaming
//! clocks suit both). Otherwise it is **ordinary**.
//!
//! The body is looked at only when the request has a JSON content type and
//! a body: its first 64 KiB at most ([`TimeoutLayer::body_peek_limit`]) are
//! read and scanned (top-level keys only, strings and nested values
//! skipped), then handed to the inner service followed by the rest, so it
//! receives the same bytes, trailers and size hint. A `"stream"` key past
//! the limit is not seen: the call is then ordinary until its response says
//! otherwise. Before the profile is known from the response, the headers
//! are bounded by the ordinary total.
//!
//! # Expiry
//!
//! - Before the response headers: the call fails with an
//!   [`ApiError`](crate::ApiError) of kind [`Timeout`](crate::ErrorKind::Timeout)
//!   (504), whose message and [`timeout_phase`](crate::ApiError::timeout_phase)
//!   name the clock.
//! - After them: the response body ([`TimeoutBody`]) yields one error, that
//!   same kind of `ApiError` boxed as a [`BoxError`](crate::BoxError), and
//!   ends. Behind a server's [`NormalizeLayer`](crate::NormalizeLayer), an
//!   event stream then ends with a last `data: {"error":{…}}` event instead
//!   of a reset.
//!
//! Data that is already available is always delivered: a clock is only
//! looked at when the call has to wait.
//!
//! The instant by which the headers are due is set as the call's
//! [`Deadline`](crate::deadline::Deadline) (the earliest one wins), so a
//! retry layer inside never sleeps past it. It lives in the call's context,
//! which the layer puts in the request's extensions for the layers inside:
//! when a clock cuts the call short, the context tells them, so that a
//! circuit breaker counts the stalled stream as a failure rather than as a
//! body its caller dropped, and the timeout's error carries the
//! [`Attempts`](crate::retry::Attempts) a retry layer inside had sent (and,
//! when it had retried, tells the caller not to retry again). Inside a retry
//! layer, a `TimeoutLayer` bounds each attempt and leaves the call's
//! deadline to the layers outside. Around a retry layer (the attempt loop),
//! a stream's first-byte clock runs per attempt: the loop holds each
//! attempt's stream back until its first event and gives up on it when the
//! clock runs out (counted from the attempt's start), so that another
//! attempt or target can still answer; the call's headers are then due by
//! the stream timeout, which bounds the whole chain. A gRPC request
//! can carry the call's limit in `grpc-timeout`
//! ([`TimeoutLayer::set_grpc_timeout`]).
//!
//! # Cost and cancellation
//!
//! The timers are `tokio::time::Sleep` values stored inline in the future
//! and the body, created only when the call first waits, and re-armed in
//! place: a streaming body notes the time of each chunk and moves its timer
//! only when it fires early, so a frame costs no timer work and no
//! allocation. A total timeout around an [`AttemptTimeoutLayer`] arms no
//! timer of its own while the attempt's timer would wake the call first
//! (the layers share the call's start instant as well, so the clock is read
//! once). Dropping the future, the response or its body drops the timers
//! with them; nothing is spawned.
//!
//! # Example
//!
//! An upstream sends one event and then falls silent; the idle clock ends
//! the stream:
//!
//! ```
//! use std::{convert::Infallible, time::Duration};
//! use bytes::Bytes;
//! use futures_util::StreamExt;
//! use http_body::Frame;
//! use http_body_util::{BodyExt, StreamBody};
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_http_resilience::timeout::RequestBody;
//! use tower_http_resilience::{ApiError, TimeoutLayer, TimeoutPhase};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let upstream = tower::service_fn(|_req: http::Request<RequestBody<String>>| async {
//!     let events = futures_util::stream::iter([Ok::<_, Infallible>(Frame::data(Bytes::from("data: hi\n\n")))])
//!         .chain(futures_util::stream::pending());
//!     let res = http::Response::builder()
//!         .header("content-type", "text/event-stream")
//!         .body(StreamBody::new(events))
//!         .unwrap();
//!     Ok::<_, Infallible>(res)
//! });
//!
//! let client = ServiceBuilder::new()
//!     .layer(TimeoutLayer::new().stream_idle_timeout(Duration::from_secs(20)))
//!     .service(upstream);
//!
//! let res = client.oneshot(http::Request::new(String::new())).await.unwrap();
//! // The body holds its timer inline, so it is pinned to be polled by hand.
//! let mut body = std::pin::pin!(res.into_body());
//! let first = body.frame().await.unwrap().unwrap();
//! assert_eq!(first.into_data().unwrap(), "data: hi\n\n");
//!
//! let silent_since = tokio::time::Instant::now();
//! let err = body.frame().await.unwrap().unwrap_err();
//! let err = err.downcast::<ApiError>().unwrap();
//! assert_eq!(err.timeout_phase(), Some(TimeoutPhase::Idle));
//! assert_eq!(err.status(), 504);
//! assert_eq!(silent_since.elapsed(), Duration::from_secs(20));
//! # }
//! ```
//!
//! In a client stack, the total timeout goes outside the retry layer and the
//! attempt timeout (response headers only) inside it:
//!
//! ```
//! use std::{convert::Infallible, time::Duration};
//! use tower::ServiceBuilder;
//! use tower_http_resilience::timeout::{AttemptTimeoutLayer, RequestBody};
//! use tower_http_resilience::TimeoutLayer;
//!
//! let client = tower::service_fn(|_req: http::Request<RequestBody<String>>| async {
//!     Ok::<_, Infallible>(http::Response::new(String::from("ok")))
//! });
//! let stack = ServiceBuilder::new()
//!     .layer(TimeoutLayer::new())                              // total, body included
//!     // .layer(RetryLayer::…) .layer(CircuitBreakerLayer::…)
//!     .layer(AttemptTimeoutLayer::new(Duration::from_secs(30))) // per attempt
//!     .service(client);
//! # let _ = stack;
//! ```

mod body;
mod clocks;
mod detect;
pub mod future;
mod layer;
mod profile;
mod service;

pub use body::{RequestBody, TimeoutBody};
pub use layer::{
    AttemptTimeoutLayer, TimeoutLayer, DEFAULT_ATTEMPT_TIMEOUT, DEFAULT_BODY_PEEK_LIMIT,
    DEFAULT_STREAM_FIRST_BYTE_TIMEOUT, DEFAULT_STREAM_IDLE_TIMEOUT, DEFAULT_STREAM_TIMEOUT,
    DEFAULT_TOTAL_TIMEOUT,
};
pub use profile::{Profile, TimeoutOverride};
pub use service::{AttemptTimeout, Timeout};
