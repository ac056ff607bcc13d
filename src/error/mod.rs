//! The canonical error model: [`ApiError`], [`ErrorKind`], and how errors are
//! read from upstreams and rendered for callers.
//!
//! Every failure, whatever produced it, becomes an [`ApiError`] of one
//! [`ErrorKind`]. An error is read from:
//!
//! - an upstream HTTP error response: [`ApiError::from_upstream`] (status,
//!   headers, a bounded prefix of the body, in any of the common dialects);
//! - a gRPC status in headers or trailers: [`ApiError::from_grpc_headers`];
//! - any Rust error, by walking its `source()` chain: [`ApiError::from_error`];
//!
//! and rendered as:
//!
//! - an HTTP response with the JSON envelope: [`ApiError::to_response`];
//! - a gRPC trailers-only response: [`ApiError::to_grpc_response`];
//! - the last event of an SSE stream: [`ApiError::to_sse_event`].
//!
//! # Example
//!
//! ```
//! use tower_http_resilience::{ApiError, ErrorKind};
//!
//! // Some upstreams put the HTTP status in `code` and the category in `type`.
//! let body = br#"{"error":{"message":"API key is frozen","type":"api_key_frozen","code":"403"}}"#;
//! let err = ApiError::from_upstream(http::StatusCode::FORBIDDEN, &http::HeaderMap::new(), body);
//! assert_eq!(err.kind(), ErrorKind::PermissionDenied);
//! assert_eq!(err.code(), "api_key_frozen");
//!
//! let res = err.to_response::<bytes::Bytes>();
//! assert_eq!(res.status(), 403);
//! assert_eq!(
//!     res.body().as_ref(),
//!     br#"{"error":{"message":"API key is frozen","type":"permission_error","param":null,"code":"api_key_frozen"}}"#
//! );
//! ```

mod api_error;
mod classify;
mod decoded;
mod dialect;
pub(crate) mod fingerprint;
pub(crate) mod grpc;
mod kind;
mod phase;
mod read;
pub(crate) mod redact;
pub(crate) mod render;
mod shapes;
mod source;
mod status;

#[cfg(feature = "normalize")]
pub(crate) use api_error::is_valid_request_id;
pub use api_error::{ApiError, MAX_MESSAGE_LEN};
pub use kind::ErrorKind;
#[cfg(any(feature = "stack", feature = "pacing", feature = "collect"))]
pub(crate) use phase::fmt_duration;
pub use phase::TimeoutPhase;
pub use read::DEFAULT_BODY_CAP;
pub use redact::REDACTED;
pub use render::X_REQUEST_ID;
pub use source::BoxError;
