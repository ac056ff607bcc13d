//! Rendering an [`ApiError`] as an HTTP response, a gRPC status or an SSE event.

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use http::Response;
use serde::Serialize;

use super::{grpc, ApiError};

/// The header carrying the request id on every error response.
pub const X_REQUEST_ID: &str = "x-request-id";

/// The header telling clients whether to retry, on every error response.
pub(crate) const X_SHOULD_RETRY: &str = "x-should-retry";

/// Marks a response rendered by this crate, so server normalization passes it
/// through without reading its body again.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Rendered;

#[derive(Serialize)]
struct Envelope<'a> {
    error: Body<'a>,
}

#[derive(Serialize)]
struct Body<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    ty: &'a str,
    param: Option<&'a str>,
    code: &'a str,
}

impl ApiError {
    /// The canonical envelope as JSON bytes:
    /// `{"error":{"message":…,"type":…,"param":…,"code":…}}`.
    pub fn to_json(&self) -> Bytes {
        let mut buf = BytesMut::with_capacity(96 + self.message().len()).writer();
        // Serializing plain strings into memory cannot fail.
        let _ = serde_json::to_writer(&mut buf, &self.envelope());
        buf.into_inner().freeze()
    }

    fn envelope(&self) -> Envelope<'_> {
        Envelope {
            error: Body {
                message: self.message(),
                ty: self.error_type(),
                param: self.param(),
                code: self.code(),
            },
        }
    }

    /// The error as an HTTP response: the error's status, the JSON envelope,
    /// `content-type: application/json`, `retry-after` in whole seconds
    /// (rounded up) when a wait is known, `x-should-retry` (`true` or
    /// `false`, from [`is_retryable`](ApiError::is_retryable)), and
    /// `x-request-id` when an id is known.
    ///
    /// Any body type that can be made from [`Bytes`] works: `String` does not,
    /// but `http_body_util::Full<Bytes>`, `axum::body::Body` and
    /// `Bytes` itself do.
    ///
    /// ```
    /// use tower_http_resilience::{ApiError, ErrorKind};
    ///
    /// let res = ApiError::new(ErrorKind::NotFound)
    ///     .with_request_id("req-1")
    ///     .to_response::<bytes::Bytes>();
    /// assert_eq!(res.status(), 404);
    /// assert_eq!(res.headers()["content-type"], "application/json");
    /// assert_eq!(res.headers()["x-request-id"], "req-1");
    /// assert_eq!(res.headers()["x-should-retry"], "false");
    /// ```
    pub fn to_response<B: From<Bytes>>(&self) -> Response<B> {
        let mut res = Response::new(B::from(self.to_json()));
        *res.status_mut() = self.status();
        let headers = res.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(secs) = self.retry_after_secs() {
            headers.insert(RETRY_AFTER, HeaderValue::from(secs));
        }
        headers.insert(X_SHOULD_RETRY, self.should_retry_header());
        if let Some(id) = self.request_id_header() {
            headers.insert(X_REQUEST_ID, id);
        }
        res.extensions_mut().insert(Rendered);
        res
    }

    /// `x-should-retry`: whether a client may try again
    /// ([`is_retryable`](ApiError::is_retryable)). The official OpenAI SDKs
    /// follow it, so a quota error or an open breaker is not retried by them,
    /// and this crate reads it back as a server hint.
    pub(crate) fn should_retry_header(&self) -> HeaderValue {
        HeaderValue::from_static(if self.is_retryable() { "true" } else { "false" })
    }

    /// The gRPC status code the error is answered with (`UNAVAILABLE` for an
    /// open breaker, `DEADLINE_EXCEEDED` for a timeout, …): the code it was
    /// read from, for an error read from a gRPC status, otherwise by its
    /// HTTP status:
    ///
    /// | HTTP status | gRPC code |
    /// |---|---|
    /// | 400 (and other 4xx) | 3 `INVALID_ARGUMENT` |
    /// | 401 | 16 `UNAUTHENTICATED` |
    /// | 402 | 9 `FAILED_PRECONDITION` |
    /// | 403 | 7 `PERMISSION_DENIED` |
    /// | 404 | 5 `NOT_FOUND` |
    /// | 408, 504 | 4 `DEADLINE_EXCEEDED` |
    /// | 429 | 8 `RESOURCE_EXHAUSTED` |
    /// | 500 (and other 5xx) | 13 `INTERNAL` |
    /// | 501 | 12 `UNIMPLEMENTED` |
    /// | 502, 503 | 14 `UNAVAILABLE` |
    pub fn grpc_code(&self) -> i32 {
        self.read_grpc_code()
            .unwrap_or_else(|| grpc::code_for_status(self.status()))
    }

    /// The error as a gRPC trailers-only response: HTTP 200 with
    /// `content-type: application/grpc`, `grpc-status`, a percent-encoded
    /// `grpc-message`, `grpc-retry-pushback-ms` when a wait is known (and
    /// `-1` when the error must not be retried), `x-request-id`, and an empty
    /// body.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_http_resilience::ApiError;
    ///
    /// let res = ApiError::circuit_open(Duration::from_secs(3)).to_grpc_response::<bytes::Bytes>();
    /// assert_eq!(res.status(), 200);
    /// assert_eq!(res.headers()["grpc-status"], "14");
    /// assert_eq!(res.headers()["grpc-retry-pushback-ms"], "3000");
    /// ```
    pub fn to_grpc_response<B: Default>(&self) -> Response<B> {
        let mut res = Response::new(B::default());
        let headers = res.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        headers.insert("grpc-status", HeaderValue::from(self.grpc_code()));
        if let Ok(msg) = HeaderValue::from_str(&grpc::encode_message(self.message())) {
            headers.insert("grpc-message", msg);
        }
        if let Some(wait) = self.retry_after() {
            let ms = crate::util::saturating_millis(wait);
            headers.insert("grpc-retry-pushback-ms", HeaderValue::from(ms));
        } else if !self.is_retryable() {
            headers.insert("grpc-retry-pushback-ms", HeaderValue::from_static("-1"));
        }
        if let Some(id) = self.request_id_header() {
            headers.insert(X_REQUEST_ID, id);
        }
        res.extensions_mut().insert(Rendered);
        res
    }

    /// The error as the last event of a Server-Sent-Events stream:
    /// `data: {"error":{…}}` followed by a blank line.
    ///
    /// ```
    /// use tower_http_resilience::{ApiError, ErrorKind};
    ///
    /// let event = ApiError::new(ErrorKind::Upstream).to_sse_event();
    /// assert!(event.starts_with(b"data: {\"error\":"));
    /// assert!(event.ends_with(b"}\n\n"));
    /// ```
    pub fn to_sse_event(&self) -> Bytes {
        let json = self.to_json();
        let mut buf = BytesMut::with_capacity(json.len() + 8);
        buf.put_slice(b"data: ");
        buf.put_slice(&json);
        buf.put_slice(b"\n\n");
        buf.freeze()
    }

    /// `retry-after` in whole seconds, rounded up.
    pub(crate) fn retry_after_secs(&self) -> Option<u64> {
        let wait = self.retry_after()?;
        Some(wait.as_secs() + u64::from(wait.subsec_nanos() > 0))
    }

    fn request_id_header(&self) -> Option<HeaderValue> {
        self.request_id()
            .and_then(|id| HeaderValue::from_str(id).ok())
    }
}

/// An `ApiError` answers as the canonical envelope (feature `axum`), so
/// handlers can return `Result<_, ApiError>`.
///
/// ```
/// # #[cfg(feature = "axum")] {
/// use axum::{routing::get, Router};
/// use tower_http_resilience::{ApiError, ErrorKind};
///
/// async fn handler() -> Result<&'static str, ApiError> {
///     Err(ApiError::new(ErrorKind::NotFound).with_message("no such model").with_param("model"))
/// }
/// let app: Router = Router::new().route("/", get(handler));
/// # }
/// ```
#[cfg(feature = "axum")]
impl axum_core::response::IntoResponse for ApiError {
    fn into_response(self) -> axum_core::response::Response {
        self.to_response::<axum_core::body::Body>()
    }
}

/// Serializes as the canonical envelope, `{"error":{…}}`.
///
/// ```
/// use tower_http_resilience::{ApiError, ErrorKind};
///
/// let v = serde_json::to_value(ApiError::new(ErrorKind::Timeout)).unwrap();
/// assert_eq!(v["error"]["type"], "timeout_error");
/// ```
impl Serialize for ApiError {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.envelope().serialize(serializer)
    }
}

/// Whether a response was rendered by this crate.
#[cfg(feature = "normalize")]
pub(crate) fn is_rendered<B>(res: &Response<B>) -> bool {
    res.extensions().get::<Rendered>().is_some()
}

/// Whether a status is an error status (4xx or 5xx).
#[cfg(feature = "normalize")]
pub(crate) fn is_error_status(status: http::StatusCode) -> bool {
    status.is_client_error() || status.is_server_error()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{ErrorKind, TimeoutPhase};

    #[test]
    fn envelope_shape() {
        let e = ApiError::new(ErrorKind::ContextLengthExceeded)
            .with_message("too \"long\"")
            .with_param("messages");
        let v: serde_json::Value = serde_json::from_slice(&e.to_json()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"error": {
                "message": "too \"long\"", "type": "invalid_request_error",
                "param": "messages", "code": "context_length_exceeded"}})
        );
    }

    #[test]
    fn retry_after_is_rounded_up() {
        let secs = |d| {
            ApiError::new(ErrorKind::RateLimited)
                .with_retry_after(d)
                .retry_after_secs()
        };
        assert_eq!(secs(Duration::from_millis(1)), Some(1));
        assert_eq!(secs(Duration::from_secs(2)), Some(2));
        assert_eq!(secs(Duration::from_millis(2001)), Some(3));
        assert_eq!(secs(Duration::ZERO), Some(0));
        assert_eq!(ApiError::new(ErrorKind::Internal).retry_after_secs(), None);
    }

    #[test]
    fn grpc_rendering() {
        let res = ApiError::timeout(TimeoutPhase::Total, Duration::from_secs(1))
            .with_request_id("r1")
            .to_grpc_response::<Bytes>();
        assert_eq!(res.headers()["grpc-status"], "4");
        assert_eq!(
            res.headers()["grpc-message"],
            "request did not complete within 1s"
        );
        assert_eq!(res.headers()["content-type"], "application/grpc");
        assert_eq!(res.headers()["x-request-id"], "r1");
        assert!(res.body().is_empty());
        let res = ApiError::new(ErrorKind::Authentication)
            .with_message("余额 100%")
            .to_grpc_response::<Bytes>();
        assert_eq!(res.headers()["grpc-status"], "16");
        assert_eq!(res.headers()["grpc-message"], "%E4%BD%99%E9%A2%9D 100%25");
        assert_eq!(res.headers()["grpc-retry-pushback-ms"], "-1");
    }

    #[test]
    fn sse_event_is_one_event() {
        let ev = ApiError::new(ErrorKind::Timeout)
            .with_message("a\nb")
            .to_sse_event();
        let s = std::str::from_utf8(&ev).unwrap();
        // A newline in the message is escaped by JSON, so the event stays one line.
        assert_eq!(s.matches('\n').count(), 2);
        assert!(s.contains(r#""message":"a\nb""#));
    }
}
