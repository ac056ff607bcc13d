//! The table of a failed attempt when another target remains: whether the
//! target cannot serve the call (next target at once), whether the request
//! is invalid (back to the caller), or whether the retry policy decides.

use http::{HeaderMap, StatusCode};

use crate::retry::says_quota;
use crate::{ApiError, ErrorKind};

/// What the table says of a failed attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// This target cannot serve the call: the next target, at once, with
    /// no backoff and no budget spent.
    CannotServe,
    /// The start of the body tells (a 400's context length, a 429's quota).
    ReadBody,
    /// An invalid request: the caller gets it; no other target is tried.
    Invalid,
    /// The retry policy decides: retried on this target while its retries
    /// last, then the next target.
    Policy,
}

/// The verdict on an error response (`body`: its start, once read).
pub(crate) fn of_response(status: StatusCode, headers: &HeaderMap, body: Option<&[u8]>) -> Verdict {
    match (status.as_u16(), body) {
        (401..=404, _) => Verdict::CannotServe,
        (400 | 429, None) => Verdict::ReadBody,
        (400, Some(body)) if says_context_length(headers, body) => Verdict::CannotServe,
        (400 | 405 | 413 | 415 | 422, _) => Verdict::Invalid,
        (429, Some(body)) if says_quota(headers, body) => Verdict::CannotServe,
        _ => Verdict::Policy,
    }
}

/// The verdict on an attempt that failed without a response.
pub(crate) fn of_error(err: &ApiError) -> Verdict {
    #[cfg(feature = "pacing")]
    if err
        .extensions()
        .get::<crate::pacing::PacingRefusal>()
        .is_some()
    {
        return Verdict::CannotServe;
    }
    match err.kind() {
        ErrorKind::CircuitOpen
        | ErrorKind::Authentication
        | ErrorKind::InsufficientBalance
        | ErrorKind::PermissionDenied
        | ErrorKind::NotFound
        | ErrorKind::QuotaExhausted
        | ErrorKind::ContextLengthExceeded => Verdict::CannotServe,
        ErrorKind::InvalidRequest => Verdict::Invalid,
        _ => Verdict::Policy,
    }
}

/// After the policy declined to retry a failure: whether it stays with
/// the caller (a client error) rather than moving to the next target (the
/// target failed it: a 5xx the policy does not retry, a 429 the server said
/// not to retry, a timeout).
pub(crate) fn is_the_callers<T>(outcome: &Result<http::Response<T>, ApiError>) -> bool {
    match outcome {
        Ok(res) => {
            let status = res.status();
            status.is_client_error() && status != StatusCode::TOO_MANY_REQUESTS
        }
        Err(err) => err.kind() == ErrorKind::InvalidRequest,
    }
}

/// Whether the start of a 400's body says the prompt is over the model's
/// context (a long body may be cut at the peek limit: its code still says
/// so).
fn says_context_length(headers: &HeaderMap, body: &[u8]) -> bool {
    const CODE: &[u8] = b"context_length_exceeded";
    let kind = ApiError::from_upstream(StatusCode::BAD_REQUEST, headers, body).kind();
    kind == ErrorKind::ContextLengthExceeded || body.windows(CODE.len()).any(|w| w == CODE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(status: u16, body: Option<&str>) -> Verdict {
        let status = StatusCode::from_u16(status).unwrap();
        of_response(status, &HeaderMap::new(), body.map(str::as_bytes))
    }

    #[test]
    fn every_row() {
        for s in [401, 402, 403, 404] {
            assert_eq!(verdict(s, None), Verdict::CannotServe, "{s}");
        }
        assert_eq!(verdict(400, None), Verdict::ReadBody);
        let long = r#"{"error":{"message":"too long","type":"invalid_request_error","code":"context_length_exceeded"}}"#;
        assert_eq!(verdict(400, Some(long)), Verdict::CannotServe);
        assert_eq!(
            verdict(400, Some(r#"{"error":{"message":"bad"}}"#)),
            Verdict::Invalid
        );
        for s in [405, 413, 415, 422] {
            assert_eq!(verdict(s, None), Verdict::Invalid, "{s}");
        }
        assert_eq!(verdict(429, None), Verdict::ReadBody);
        let quota = r#"{"error":{"type":"insufficient_quota","code":"insufficient_quota"}}"#;
        assert_eq!(verdict(429, Some(quota)), Verdict::CannotServe);
        assert_eq!(verdict(429, Some("{}")), Verdict::Policy);
        for s in [500, 502, 503, 504, 529, 408, 409] {
            assert_eq!(verdict(s, None), Verdict::Policy, "{s}");
        }
        assert_eq!(
            of_error(&ApiError::circuit_open(std::time::Duration::from_secs(3))),
            Verdict::CannotServe
        );
        assert_eq!(
            of_error(&ApiError::new(ErrorKind::InvalidRequest)),
            Verdict::Invalid
        );
        assert_eq!(
            of_error(&ApiError::new(ErrorKind::Upstream)),
            Verdict::Policy
        );
    }
}
