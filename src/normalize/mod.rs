//! Error normalization: one canonical envelope on the way out of a server, one
//! [`ApiError`](crate::ApiError) on the way back into a client.
//!
//! # Servers: [`NormalizeLayer`]
//!
//! Wraps an axum `Router`, a hyper service or any
//! `Service<http::Request<B>, Response = http::Response<_>>`. The wrapped
//! service never fails (its error type is `Infallible`); instead:
//!
//! | what happens inside | what the caller gets |
//! |---|---|
//! | the service returns `Err(e)` | `e` mapped by its source chain ([`ApiError::from_error`](crate::ApiError::from_error)): a timeout is 504, an open breaker 503 with `retry-after`, …; an error the crate does not know is a generic 500 whose details go only to `tracing` |
//! | `poll_ready` fails | the same, as the answer to the next call |
//! | a handler panics (in `call` or in its future) | 500 `internal_error`; the panic message goes to `tracing` only |
//! | an error response (4xx/5xx) that is not the envelope: axum's rejections (bad JSON, 404 route, 405, 413, 415, 422), other dialects, empty bodies | rewritten as the envelope from its status and a bounded read of its body (see [`ApiError::from_upstream`](crate::ApiError::from_upstream)); other headers (`allow`, `www-authenticate`, …) are kept; a body over the cap is read up to the cap, the rest is dropped unread |
//! | an error response that already is the envelope | passed through, [credentials removed](#what-is-masked) |
//! | an error response this crate rendered (a handler returning [`ApiError`](crate::ApiError), say) | passed through; read whole only when the call has secrets to remove |
//! | a success response | passed through unbuffered, its body untouched; its headers lose the call's secrets |
//! | an error event (`data: {"error":…}`) inside a successful Server-Sent-Events body, when the call has secrets | passed on without them and without key shapes ([see below](#what-is-masked)); the other events byte for byte |
//! | a Server-Sent-Events body that fails after it started | one last event `data: {"error":{…}}`, then the end of the stream |
//! | any failure of a gRPC request (`content-type: application/grpc` or `application/grpc+…`, in any case) | a trailers-only response with `grpc-status`/`grpc-message`; a stream that fails ends with those in its trailers |
//!
//! A response the layer renders carries the [`ApiError`](crate::ApiError) in
//! its extensions, with whatever the layers below attached to the error (the
//! retry layer's attempt count), so that a logging layer outside can read
//! them.
//!
//! Every error response carries `content-type: application/json`, an
//! `x-request-id` (the request's, when it sent a valid one, otherwise a new
//! `req_…` id), and `retry-after` in whole seconds (rounded up) when a wait is
//! known.
//!
//! # What is masked
//!
//! Both layers remove the credentials of each call from what goes back to
//! the caller, replacing each with [`REDACTED`](crate::error::REDACTED)
//! (`[redacted]`):
//!
//! - **which values**: the values of the request's `authorization`,
//!   `x-api-key` and `api-key` headers: every token of 8 or more characters
//!   in them (a run of letters, digits and `-._~+/=`, such as the key after
//!   `Bearer `), which removes every copy of the whole value too, or the
//!   whole value (without surrounding white space) when it has no such
//!   token; and the same of every secret given to
//!   [`NormalizeLayer::secret`] or [`NormalizeClientLayer::secret`] (an
//!   upstream key the service adds). Values shorter than 8 bytes are left
//!   alone: they would mask ordinary words. Matching ignores ASCII case.
//! - **where**: every error response body (a rewritten one, a canonical
//!   envelope passed through, one this crate rendered), every SSE error
//!   event within a successful event stream (an event whose data is
//!   `{"error": …}`, written by the upstream after data events, say), the
//!   last SSE event of a stream that fails, `grpc-message` in headers and
//!   trailers, the headers of every response (success and error), and an
//!   HTTP/1 reason phrase kept from the upstream (dropped when it holds
//!   one). On the client side, every field of the [`ApiError`](crate::ApiError): message, code,
//!   param, request id, upstream body and source.
//! - **in which form**: as written, whatever surrounds it (after `=`, `:`, a
//!   comma, a quote, a newline, inside a JSON string), in any ASCII case,
//!   inside a JSON string whatever its escapes (`\/`, `-`), and
//!   percent-encoded (`%2F`). A JSON body stays valid JSON: only the insides
//!   of its strings change.
//! - **key shapes**: on top of exact values, error text (bodies, messages,
//!   error headers, error events, failed gRPC trailers) loses anything shaped like a key:
//!   `sk-…`/`sk_…` (10 characters or more), `AIza…`, JSON Web Tokens
//!   (`eyJ….….…`) and the token after `Bearer`.
//! - **what is not touched**: success bodies pass byte for byte, streamed as
//!   they come; in an event stream, every event that is not an error event
//!   (the data events, comments) passes byte for byte. An event stream of a
//!   call with secrets is read event by event: the start of an event whose
//!   end has not arrived is held back, up to 64 KiB (past that, the event
//!   passes as it is), its `content-length` is dropped and its size is no
//!   longer known ahead; a stream that fails drops its unfinished event
//!   before the last error event. A call with no secrets (no credential
//!   headers, no configured secret) passes its stream unread. An error body
//!   longer than the reading cap is answered from its status and never sent
//!   on; the start kept on the error loses its last bytes that could begin
//!   a credential.
//!
//! Credentials are kept as fingerprints (a length, the first four bytes and
//! a 64-bit hash), not as copies: taking them allocates nothing, and a
//! request without credential headers costs three header lookups. Two
//! different texts with the same fingerprint only mean an extra
//! `[redacted]`.
//!
//! ```
//! use http_body_util::BodyExt;
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_http_resilience::NormalizeLayer;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! // A careless upstream that echoes the key it was sent, and the gateway's.
//! let upstream = tower::service_fn(|req: http::Request<String>| async move {
//!     let key = req.headers()["api-key"].to_str().unwrap().to_owned();
//!     let res = http::Response::builder()
//!         .status(401)
//!         .header("x-echo", format!("{key},gw-key-0123456789"))
//!         .body(format!("invalid api_key={key}"))
//!         .unwrap();
//!     Ok::<_, std::convert::Infallible>(res)
//! });
//! let svc = ServiceBuilder::new()
//!     .layer(NormalizeLayer::new().secret("gw-key-0123456789"))
//!     .service(upstream);
//!
//! let req = http::Request::builder()
//!     .header("api-key", "4f3c2b1a0e9d8c7b6a5f")
//!     .body(String::new())
//!     .unwrap();
//! let res = svc.oneshot(req).await.unwrap();
//! assert_eq!(res.headers()["x-echo"], "[redacted],[redacted]");
//! let body = res.into_body().collect().await.unwrap().to_bytes();
//! let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
//! assert_eq!(v["error"]["message"], "invalid api_key=[redacted]");
//! # }
//! ```
//!
//! # Clients: [`NormalizeClientLayer`]
//!
//! The outermost layer of a client stack. Its error type is
//! [`ApiError`](crate::ApiError): an upstream error response (status ≥ 400, or
//! a gRPC trailers-only error) becomes `Err` with kind, code, message, param,
//! server hints, the upstream's request id and the start of its body; a
//! transport error is mapped by its source chain (a refused connection is 502
//! `connection_error`). Successful responses pass through with their bodies
//! untouched ([`NormalizeClientBody`] watches for their end, when the call
//! is over). The error keeps the extensions of the response it was read
//! from (the retry layer's [`Attempts`](crate::retry::Attempts), say).
//!
//! # Example
//!
//! ```
//! use axum::{routing::post, Json, Router};
//! use tower::ServiceExt;
//! use tower_http_resilience::NormalizeLayer;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let app = Router::new()
//!     .route("/v1/chat/completions", post(|Json(v): Json<serde_json::Value>| async move { Json(v) }))
//!     .layer(NormalizeLayer::new());
//!
//! // A body that is not JSON: axum rejects it, the layer answers the envelope.
//! let req = http::Request::post("/v1/chat/completions")
//!     .header("content-type", "application/json")
//!     .body(axum::body::Body::from("{not json"))
//!     .unwrap();
//! let res = app.oneshot(req).await.unwrap();
//! assert_eq!(res.status(), 400);
//! assert_eq!(res.headers()["content-type"], "application/json");
//! assert!(res.headers().contains_key("x-request-id"));
//! let body = axum::body::to_bytes(axum::body::Body::new(res.into_body()), 1 << 16).await.unwrap();
//! let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
//! assert_eq!(v["error"]["type"], "invalid_request_error");
//! assert_eq!(v["error"]["code"], "invalid_json");
//! # }
//! ```

mod body;
mod client_body;
mod events;
pub mod future;
mod layer;
mod rewrite;
mod secrets;
mod service;

pub use body::NormalizeBody;
pub use client_body::NormalizeClientBody;
pub use layer::{NormalizeClientLayer, NormalizeLayer};
pub use service::{Normalize, NormalizeClient};
