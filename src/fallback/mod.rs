//! Fallback: when one target cannot answer a call, the next one does.
//!
//! A call has an ordered list of [`Target`]s; each is a way to send it —
//! an upstream ([`BaseUri`](crate::BaseUri)), a credential, a model name in
//! the JSON body, a breaker and pacing key, its own retries and context
//! window. [`FallbackLayer`] walks them in the retry layer's attempt loop:
//! the same replay body, deadline, budget, attempt count and commit point
//! serve the retries on one target and the moves to the next.
//!
//! # The targets
//!
//! ```text
//! Target::new(name)                  what the outcome reports (a gateway: "UPSTREAM:MODEL")
//!     .base_uri(BaseUri)             the caller's path and query joined under it (`..` refused)
//!     .bearer(token) / .credential(name, value)
//!                                    the caller's authorization, x-api-key, api-key replaced
//!     .header(name, value) / .remove_header(name)
//!     .model(name)                   the JSON body's top-level "model" renamed, every other byte kept
//!     .key(key)                      the breaker key (and, with authority and credential, the pacing key)
//!     .extension(value)              anything else for the layers inside
//!     .retries(n)                    retries on this target (default: the loop's max_retries)
//!     .context_window(tokens)        (feature check) skipped when the prompt does not fit
//! ```
//!
//! [`Targets`] is the ordered list (one `Arc`); a [`SelectTargets`] gives a
//! call its list — the same list for every call, or a closure
//! `Fn(&Parts) -> Targets` that picks a route from the request. A
//! [`Target`] that sets nothing sends the request as it came; the default,
//! with no list at all, is one such target: a plain retry loop.
//!
//! # What moves a call on
//!
//! | the attempt on a target ended with | next |
//! |---|---|
//! | success (2xx, or a stream whose first event is data) | done |
//! | a failure the retry policy retries (5xx but 501, 529, timeouts, connection errors, 429 with a hint ≤ `max_retry_after`, a stream that ends, fails, stalls or opens with an error event before its first data event) | again on the same target after the backoff, while the target's retries last; then the next target at once |
//! | the target cannot serve this call: an open breaker; pacing that would hold it beyond what the call can wait; 401, 402, 403; 404; 429 `insufficient_quota`; 429 with a hint > `max_retry_after`; 400 `context_length_exceeded`; a prompt over the target model's context window | the next target at once: no backoff, no budget spent |
//! | an invalid request (400 but context length, 405, 413, 415, 422, any other 4xx the policy does not retry) or anything after the commit point | done: the caller gets it |
//!
//! A failure the policy does not retry but that is the target's (a 501, a
//! 5xx whose server said `x-should-retry: false`) moves on too. The start of
//! a 400's or a 429's body is read to tell context length and quota (the
//! caller still gets the body whole). An open breaker's rejection and a
//! pacing refusal were not sent: they do not count as attempts. While
//! another target remains, the loop tells pacing inside not to wait for a
//! held key (the call moves on instead).
//!
//! The call's deadline (an outer [`TimeoutLayer`](crate::TimeoutLayer)'s,
//! or the loop's own) covers the whole chain: no wait crosses it, and no
//! target is started past it. Moving to the next target spends no retry
//! budget; retries on a target do.
//!
//! # Streams commit at their first event
//!
//! A streaming response is held back until its commit point: for an event
//! stream (`text/event-stream`), its first complete event with data; for
//! another stream the request asked for, its first body byte. Before it, a
//! stream that ends, fails, stalls past its first-byte clock (the outer
//! [`TimeoutLayer`](crate::TimeoutLayer)'s `stream_first_byte_timeout`,
//! counted from each attempt's start) or opens with an error event
//! (`data: {"error": …}`) is a failed attempt like any other: retried, or
//! moved on. At the commit point the caller gets the stream byte for byte,
//! what was held back first; after it, the stream is the caller's (a later
//! failure ends it with the normalization layer's last error event). At
//! most 64 KiB are held back: a stream that shows no event by then is
//! committed as it is. Ordinary calls commit at their headers.
//!
//! # When every target failed
//!
//! The caller gets the most telling failure: a rate-limit or quota error
//! (the longest `retry-after`) over an open breaker (the shortest time
//! left) over a generic failure (5xx, timeout, broken stream) over a target
//! that could not serve the call (401–404, context length); of two equals,
//! the later. A failure that leaves after the call made more than one
//! attempt tells its caller not to retry (`x-should-retry: false` from the
//! normalization layers), as the retry layer's do.
//!
//! # What the outcome says
//!
//! The response, or the [`ApiError`](crate::ApiError), carries in its
//! extensions the target that answered or, for a failure, the last target
//! tried ([`Served`]: name and index), and the attempts made on all
//! targets ([`Attempts`](crate::retry::Attempts)).
//!
//! # Where it goes, and the retry layer
//!
//! `FallbackLayer` *is* the attempt loop of [`RetryLayer`](crate::RetryLayer)
//! configured with targets: both build [`Retry`](crate::Retry). Use one of
//! them, in the retry layer's place: inside the total timeout, outside
//! pacing and the circuit breaker (which then key by target). The preset
//! ([`ResilienceLayer::targets`](crate::ResilienceLayer::targets)) puts it
//! there.
//!
//! Stacking both does not multiply attempts: a loop that finds its call
//! already owned by a loop outside makes no retries of its own and counts
//! no attempt twice — it sends each of its targets one attempt, moving on
//! after a failure as above, and leaves the retries and what the caller is
//! told to the outer loop.
//!
//! # Cost
//!
//! Without targets, nothing: the loop is the retry layer's. With targets, a
//! call pays a virtual call to select them (a clone of one `Arc` for a
//! fixed list), the rewrites its target asks for, and the [`Served`]
//! extension on its outcome. A renamed model reads the body whole once per
//! call (up to the replay limit) and copies it once per target.
//!
//! # Example
//!
//! Two providers; the first has lost the model, the second answers under
//! another name, with its own key:
//!
//! ```
//! use bytes::Bytes;
//! use http_body_util::{BodyExt, Full};
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_http_resilience::fallback::{FallbackLayer, Served, Target, Targets};
//! use tower_http_resilience::retry::{Attempts, ReplayBody};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let upstream = tower::service_fn(|req: http::Request<ReplayBody<Full<Bytes>>>| async move {
//!     let (parts, body) = req.into_parts();
//!     let body = body.collect().await?.to_bytes();
//!     let res = match parts.uri.host() {
//!         Some("openai.example") => http::Response::builder().status(404).body(Full::default())?,
//!         _ => {
//!             assert_eq!(parts.headers["authorization"], "Bearer sk-backup");
//!             assert_eq!(body, r#"{"model":"gpt-4o-mini","messages":[]}"#);
//!             http::Response::new(Full::new(Bytes::from("{}")))
//!         }
//!     };
//!     Ok::<_, tower_http_resilience::BoxError>(res)
//! });
//!
//! let targets: Targets = [
//!     Target::new("openai:gpt-4o").base_uri("https://openai.example".parse().unwrap()),
//!     Target::new("backup:gpt-4o-mini")
//!         .base_uri("http://backup.example/v1".parse().unwrap())
//!         .bearer("sk-backup")
//!         .unwrap()
//!         .model("gpt-4o-mini"),
//! ]
//! .into();
//! let client = ServiceBuilder::new()
//!     .layer(FallbackLayer::new(targets))
//!     .service(upstream);
//!
//! let req = http::Request::post("/v1/chat/completions")
//!     .header("authorization", "Bearer sk-caller")
//!     .body(Full::new(Bytes::from(r#"{"model":"gpt-4o","messages":[]}"#)))
//!     .unwrap();
//! let res = client.oneshot(req).await.unwrap();
//! assert_eq!(res.status(), 200);
//! assert_eq!(Served::of(res.extensions()).unwrap().target(), "backup:gpt-4o-mini");
//! assert_eq!(Attempts::of(res.extensions()).get(), 2);
//! # }
//! ```

// Without the feature, the loop uses this module alone.
#![cfg_attr(not(feature = "fallback"), allow(unreachable_pub, dead_code))]

mod layer;
mod rename;
mod served;
pub(crate) mod table;
mod target;
mod targets;
mod telling;
pub(crate) mod walk;

#[cfg(feature = "fallback")]
pub use layer::FallbackLayer;
pub use served::Served;
#[cfg(feature = "fallback")]
pub use target::Target;
#[cfg(feature = "fallback")]
pub use targets::SelectTargets;
pub(crate) use targets::Selector;
pub use targets::Targets;
pub(crate) use telling::tells_more;
pub(crate) use walk::{NextBody, Walk};
