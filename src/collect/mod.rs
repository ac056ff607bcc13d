//! Request bodies read whole before the call: under a size limit, a
//! deadline, and a memory budget shared by every call.
//!
//! A server in front of clients it does not control cannot read request
//! bodies as they come: a body that never ends holds a task forever, and
//! many large ones at once exhaust memory. [`CollectBodyLayer`] reads each
//! body to its end before the inner service is called, and hands it a
//! [`CollectedBody`]: the whole body in one chunk, with an exact size hint,
//! that layers further in (request checks, retry replay) can look at and
//! send again for free.
//!
//! | the body | the answer ([`ApiError`](crate::ApiError), rendered as the envelope) |
//! |---|---|
//! | says it is larger than [`max_request_body`](CollectBodyLayer::max_request_body) (`Content-Length`, its size hint) | 413 `request_too_large`, without reading it |
//! | grows larger while it is read | 413 `request_too_large`, when it does |
//! | is not complete by the deadline (a body that never ends, a `Content-Length` that promises more than is sent) | 408 `timeout_error` |
//! | finds no room in the budget by the deadline | 503 `overloaded`, with `retry-after: 1` |
//! | breaks off (the client hung up, a broken chunk) | 400 `invalid_request_error` |
//! | ends in time | the inner service is called with it |
//!
//! # The clock
//!
//! The deadline is [`timeout`](CollectBodyLayer::timeout) after the call
//! (60 s by default), or the request's
//! [`Deadline`](crate::deadline::Deadline) when a layer outside set an
//! earlier one. It covers the wait for room in the budget and the reading;
//! the inner service's call is not under it.
//!
//! # The budget
//!
//! Every call holds room in the budget
//! ([`max_buffered_bodies`](CollectBodyLayer::max_buffered_bodies), shared
//! by every service of the layer) before it reads: the size its body
//! announced, or the limit when it announced none (then only its real size
//! once it has ended). A call that finds no room waits, behind the calls
//! that waited before it, until room is freed or its deadline passes. The
//! room is given back when the body's memory is: when the inner service,
//! and everything it handed the bytes to (a retry layer's replay, an HTTP
//! client's write queue), has dropped the last of them. An empty body holds
//! nothing and is passed on at once.
//!
//! # Example
//!
//! A body that announces 1 MiB against a 64 KiB limit is refused without
//! being read:
//!
//! ```
//! use bytes::Bytes;
//! use http_body_util::Full;
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_http_resilience::collect::{CollectBodyLayer, CollectedBody};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let service = ServiceBuilder::new()
//!     .layer(CollectBodyLayer::new().max_request_body(64 * 1024))
//!     .service_fn(|req: http::Request<CollectedBody>| async move {
//!         let len = req.body().bytes().len();
//!         Ok::<_, std::convert::Infallible>(http::Response::new(len.to_string()))
//!     });
//!
//! let small = http::Request::new(Full::new(Bytes::from("{\"model\":\"m\"}")));
//! let res = service.clone().oneshot(small).await.unwrap();
//! assert_eq!(res.body(), "13");
//!
//! let large = http::Request::new(Full::new(Bytes::from(vec![0u8; 1 << 20])));
//! let err = service.oneshot(large).await.unwrap_err();
//! assert_eq!(err.status(), 413);
//! assert_eq!(err.code(), "request_too_large");
//! # }
//! ```

mod body;
mod budget;
mod error;
pub mod future;
mod layer;
mod service;
#[cfg(test)]
mod tests;

pub use body::CollectedBody;
pub use layer::{
    CollectBodyLayer, DEFAULT_MAX_BUFFERED_BODIES, DEFAULT_MAX_REQUEST_BODY, DEFAULT_TIMEOUT,
};
pub use service::CollectBody;
