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
//! | an error response that already is the envelope | passed through |
//! | a success response | passed through unbuffered, streams untouched |
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
//! # Clients: [`NormalizeClientLayer`]
//!
//! The outermost layer of a client stack. Its error type is
//! [`ApiError`](crate::ApiError): an upstream error response (status ≥ 400, or
//! a gRPC trailers-only error) becomes `Err` with kind, code, message, param,
//! server hints, the upstream's request id and the start of its body; a
//! transport error is mapped by its source chain (a refused connection is 502
//! `connection_error`). Successful responses pass through untouched. The
//! error keeps the extensions of the response it was read from (the retry
//! layer's [`Attempts`](crate::retry::Attempts), say).
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
pub mod future;
mod layer;
mod rewrite;
mod secrets;
mod service;

pub use body::NormalizeBody;
pub use layer::{NormalizeClientLayer, NormalizeLayer};
pub use service::{Normalize, NormalizeClient};
