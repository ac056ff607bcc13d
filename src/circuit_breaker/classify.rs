//! What counts as a failure.

use http::{HeaderMap, StatusCode};

use crate::error::grpc;
use crate::{ApiError, ErrorKind};

/// What a classifier is shown about a call.
///
/// ```
/// use http::{HeaderMap, StatusCode};
/// use tower_http_resilience::circuit_breaker::{Classify, DefaultClassifier, Observation, Verdict};
///
/// let mut trailers = HeaderMap::new();
/// trailers.insert("grpc-status", "14".parse().unwrap()); // UNAVAILABLE
/// assert_eq!(DefaultClassifier.classify(Observation::Trailers(&trailers)), Verdict::Failure);
/// let headers = HeaderMap::new();
/// let ok = Observation::Response { status: StatusCode::OK, headers: &headers };
/// assert_eq!(DefaultClassifier.classify(ok), Verdict::Success);
/// ```
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub enum Observation<'a> {
    /// The response headers arrived.
    Response {
        /// The HTTP status.
        status: StatusCode,
        /// The response headers (a gRPC trailers-only response has its
        /// `grpc-status` here).
        headers: &'a HeaderMap,
    },
    /// The response body ended with trailers (gRPC puts its status here).
    Trailers(&'a HeaderMap),
    /// The inner service failed; its error, converted with
    /// [`ApiError::from_error`].
    Error(&'a ApiError),
}

/// A classifier's verdict on a call: the one outcome vocabulary of the
/// breaker, also for what the breaker decides itself (a body that fails
/// while being read is a `Failure`, one that ends is a `Success`).
///
/// ```
/// use tower_http_resilience::circuit_breaker::{Observation, Verdict};
///
/// // Only 503 says the upstream is unhealthy; 500 says nothing about it.
/// let classify = |obs: Observation<'_>| match obs {
///     Observation::Response { status, .. } if status == 503 => Verdict::Failure,
///     Observation::Response { status, .. } if status == 500 => Verdict::Ignore,
///     _ => Verdict::Success,
/// };
/// let headers = http::HeaderMap::new();
/// let status = http::StatusCode::INTERNAL_SERVER_ERROR;
/// assert_eq!(classify(Observation::Response { status, headers: &headers }), Verdict::Ignore);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// The upstream is healthy as far as this call tells. For
    /// [`Observation::Response`] this means "so far": the call is recorded
    /// when the body ends (a body error or failing trailers still make it a
    /// failure), or not at all if the caller drops the body first.
    Success,
    /// The call failed in a way that says the upstream is unhealthy;
    /// recorded at once.
    Failure,
    /// The call says nothing about the upstream's health: not recorded (a
    /// half-open probe slot is given back).
    Ignore,
}

/// Decides whether a call counts as a success or a failure.
///
/// A body that fails while being read always counts as a failure, and a
/// body that ends without failing trailers as a success; the classifier
/// decides everything else. Implemented by [`DefaultClassifier`] and by
/// closures `Fn(Observation<'_>) -> Verdict`, which can fall back to the
/// default:
///
/// ```
/// use tower_http_resilience::circuit_breaker::{
///     Classify, CircuitBreakerLayer, DefaultClassifier, Observation, Verdict,
/// };
///
/// // Also count 429 as a failure: this upstream only sends it when it is
/// // overloaded.
/// let layer = CircuitBreakerLayer::new().classifier(|obs: Observation<'_>| match obs {
///     Observation::Response { status, .. } if status == 429 => Verdict::Failure,
///     other => DefaultClassifier.classify(other),
/// });
/// ```
pub trait Classify {
    /// The verdict on one observation of a call.
    fn classify(&self, observation: Observation<'_>) -> Verdict;
}

impl<F> Classify for F
where
    F: Fn(Observation<'_>) -> Verdict,
{
    fn classify(&self, observation: Observation<'_>) -> Verdict {
        self(observation)
    }
}

/// The classification of the crate's error table (the "counts against the
/// breaker" column).
///
/// | observation | verdict |
/// |---|---|
/// | status 500, 502, 503, 504, and other 5xx except 501 | failure |
/// | status 501 (not implemented: a property of the request, not of health) | success |
/// | any other status (2xx, 3xx, 4xx, 429) | success |
/// | `grpc-status` `UNKNOWN` (2), `DEADLINE_EXCEEDED` (4), `INTERNAL` (13), `UNAVAILABLE` (14) in the headers or trailers | failure |
/// | any other `grpc-status` | success |
/// | an error whose kind [counts against the breaker](ErrorKind::is_breaker_failure) (connection errors, timeouts, 5xx) | failure |
/// | a `circuit_open` error (from another breaker further in) | ignored |
/// | any other error (the upstream answered: a 4xx, a rate limit) | success |
///
/// ```
/// use std::time::Duration;
/// use http::{HeaderMap, StatusCode};
/// use tower_http_resilience::circuit_breaker::{Classify, DefaultClassifier, Observation, Verdict};
/// use tower_http_resilience::ApiError;
///
/// let headers = HeaderMap::new();
/// let status = |status| Observation::Response { status, headers: &headers };
/// assert_eq!(DefaultClassifier.classify(status(StatusCode::BAD_GATEWAY)), Verdict::Failure);
/// assert_eq!(DefaultClassifier.classify(status(StatusCode::NOT_IMPLEMENTED)), Verdict::Success);
/// assert_eq!(DefaultClassifier.classify(status(StatusCode::TOO_MANY_REQUESTS)), Verdict::Success);
/// let open = ApiError::circuit_open(Duration::from_secs(1));
/// assert_eq!(DefaultClassifier.classify(Observation::Error(&open)), Verdict::Ignore);
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct DefaultClassifier;

impl DefaultClassifier {
    fn grpc(headers: &HeaderMap) -> Verdict {
        match grpc::status_code(headers) {
            Some(
                grpc::code::UNKNOWN
                | grpc::code::DEADLINE_EXCEEDED
                | grpc::code::INTERNAL
                | grpc::code::UNAVAILABLE,
            ) => Verdict::Failure,
            _ => Verdict::Success,
        }
    }
}

impl Classify for DefaultClassifier {
    fn classify(&self, observation: Observation<'_>) -> Verdict {
        match observation {
            Observation::Response { status, headers } => {
                if status.is_server_error() && status != StatusCode::NOT_IMPLEMENTED {
                    Verdict::Failure
                } else {
                    DefaultClassifier::grpc(headers)
                }
            }
            Observation::Trailers(trailers) => DefaultClassifier::grpc(trailers),
            Observation::Error(err) => match err.kind() {
                ErrorKind::CircuitOpen => Verdict::Ignore,
                kind if kind.is_breaker_failure() => Verdict::Failure,
                _ => Verdict::Success,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn status(code: u16) -> Verdict {
        DefaultClassifier.classify(Observation::Response {
            status: StatusCode::from_u16(code).unwrap(),
            headers: &HeaderMap::new(),
        })
    }

    fn grpc_status(code: &'static str) -> Verdict {
        let mut h = HeaderMap::new();
        h.insert("grpc-status", code.parse().unwrap());
        let in_headers = DefaultClassifier.classify(Observation::Response {
            status: StatusCode::OK,
            headers: &h,
        });
        assert_eq!(
            in_headers,
            DefaultClassifier.classify(Observation::Trailers(&h))
        );
        in_headers
    }

    #[test]
    fn statuses() {
        for s in [500, 502, 503, 504, 529, 599] {
            assert_eq!(status(s), Verdict::Failure, "{s}");
        }
        for s in [200, 204, 301, 400, 401, 404, 408, 429, 501] {
            assert_eq!(status(s), Verdict::Success, "{s}");
        }
    }

    #[test]
    fn grpc_codes() {
        for c in ["2", "4", "13", "14"] {
            assert_eq!(grpc_status(c), Verdict::Failure, "{c}");
        }
        for c in ["0", "3", "5", "8", "16", "junk"] {
            assert_eq!(grpc_status(c), Verdict::Success, "{c}");
        }
    }

    #[test]
    fn errors() {
        let v = |e: ApiError| DefaultClassifier.classify(Observation::Error(&e));
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "no");
        assert_eq!(v(ApiError::from_error(Box::new(io))), Verdict::Failure);
        assert_eq!(
            v(ApiError::timeout(
                crate::TimeoutPhase::Attempt,
                Duration::from_secs(1)
            )),
            Verdict::Failure
        );
        assert_eq!(v(ApiError::new(ErrorKind::RateLimited)), Verdict::Success);
        assert_eq!(
            v(ApiError::new(ErrorKind::InvalidRequest)),
            Verdict::Success
        );
        assert_eq!(
            v(ApiError::circuit_open(Duration::from_secs(1))),
            Verdict::Ignore
        );
    }
}
