//! The answers of [`CollectBody`](super::CollectBody) when a body cannot be
//! read: each an [`ApiError`] the canonical envelope renders.

use std::time::Duration;

use http::StatusCode;

use crate::error::fmt_duration;
use crate::{ApiError, BoxError, ErrorKind};

/// How long a caller told the budget is full is asked to wait.
pub(crate) const OVERLOADED_RETRY_AFTER: Duration = Duration::from_secs(1);

/// 413: the body is, or says it is, larger than the limit.
pub(crate) fn too_large(limit: usize) -> ApiError {
    ApiError::new(ErrorKind::InvalidRequest)
        .with_status(StatusCode::PAYLOAD_TOO_LARGE)
        .with_code("request_too_large")
        .with_message(format!(
            "the request body is larger than {}",
            fmt_size(limit)
        ))
}

/// 408: the body did not arrive in time.
pub(crate) fn too_slow(allowed: Duration) -> ApiError {
    ApiError::new(ErrorKind::Timeout)
        .with_status(StatusCode::REQUEST_TIMEOUT)
        .with_message(format!(
            "the request body was not complete within {}",
            fmt_duration(allowed)
        ))
}

/// 503 `overloaded`: no room in the budget before the deadline.
pub(crate) fn overloaded() -> ApiError {
    ApiError::new(ErrorKind::Unavailable)
        .with_code("overloaded")
        .with_retry_after(OVERLOADED_RETRY_AFTER)
        .with_message("too many request bodies are held in memory; try again shortly")
}

/// 400: the body failed while it was read (a broken chunk, a client that
/// hung up).
pub(crate) fn unreadable(source: BoxError) -> ApiError {
    ApiError::new(ErrorKind::InvalidRequest)
        .with_message("the request body could not be read")
        .with_source(source)
}

/// A size the way the gateway's flags write it: `512KiB`, `32MiB`, or bytes.
pub(crate) fn fmt_size(bytes: usize) -> String {
    const UNITS: [(usize, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for (unit, name) in UNITS {
        if bytes >= unit && bytes % unit == 0 {
            return format!("{}{name}", bytes / unit);
        }
    }
    format!("{bytes} bytes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_flags() {
        assert_eq!(fmt_size(32 << 20), "32MiB");
        assert_eq!(fmt_size(512 << 10), "512KiB");
        assert_eq!(fmt_size(2 << 30), "2GiB");
        assert_eq!(fmt_size(1000), "1000 bytes");
        assert_eq!(fmt_size(0), "0 bytes");
    }

    #[test]
    fn the_answers() {
        let e = too_large(1 << 20);
        assert_eq!((e.status().as_u16(), e.code()), (413, "request_too_large"));
        assert_eq!(e.message(), "the request body is larger than 1MiB");
        let e = too_slow(Duration::from_secs(60));
        assert_eq!(
            (e.status().as_u16(), e.error_type()),
            (408, "timeout_error")
        );
        assert_eq!(e.message(), "the request body was not complete within 1m");
        let e = overloaded();
        assert_eq!((e.status().as_u16(), e.code()), (503, "overloaded"));
        assert_eq!(e.retry_after(), Some(OVERLOADED_RETRY_AFTER));
        let e = unreadable("reset".into());
        assert_eq!((e.status().as_u16(), e.code()), (400, "invalid_value"));
    }
}
