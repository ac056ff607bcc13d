//! The most telling failure when every target failed.

use std::cmp::Ordering;
use std::time::Duration;

use http::{Response, StatusCode};

use crate::hint::ServerHints;
use crate::{ApiError, ErrorKind};

/// How telling a failure is: its class, then a wait that breaks ties.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    /// The target cannot serve this call (401, 402, 403, 404, context
    /// length): says little about when the call would succeed.
    CannotServe,
    /// A generic failure (5xx, a timeout, a broken stream).
    Failed,
    /// An open breaker: the shortest time left is the most telling.
    Open(Duration),
    /// A rate limit or an exhausted quota: the longest `retry-after` is
    /// the most telling.
    Limited(Duration),
}

impl Class {
    fn of<T>(outcome: &Result<Response<T>, ApiError>) -> Class {
        match outcome {
            Ok(res) => {
                let wait = || ServerHints::from_headers(res.headers()).retry_after();
                match res.status() {
                    StatusCode::TOO_MANY_REQUESTS => Class::Limited(wait().unwrap_or_default()),
                    s if s.is_client_error() => Class::CannotServe,
                    _ => Class::Failed,
                }
            }
            Err(err) => {
                let wait = err.retry_after().unwrap_or_default();
                match err.kind() {
                    ErrorKind::RateLimited | ErrorKind::QuotaExhausted => Class::Limited(wait),
                    ErrorKind::CircuitOpen => Class::Open(wait),
                    k if k.status().is_client_error() => Class::CannotServe,
                    _ => Class::Failed,
                }
            }
        }
    }

    /// Whether `later` (a failure seen after `self`) tells more: a higher
    /// class, or the same class and a better wait, or an equal one (the
    /// latest wins a tie).
    fn yields_to(self, later: Class) -> bool {
        match (self, later) {
            (Class::Limited(a), Class::Limited(b)) => b >= a,
            (Class::Open(a), Class::Open(b)) => b <= a,
            (a, b) => b.rank().cmp(&a.rank()) != Ordering::Less,
        }
    }

    fn rank(self) -> u8 {
        match self {
            Class::CannotServe => 0,
            Class::Failed => 1,
            Class::Open(_) => 2,
            Class::Limited(_) => 3,
        }
    }
}

/// Whether the failure `later` tells the caller more than `earlier`: a
/// rate-limit or quota error (the longest `retry-after`) over an open
/// breaker (the shortest time left) over a generic failure over a target
/// that cannot serve the call; the later of two equals.
pub(crate) fn tells_more<T, U>(
    earlier: &Result<Response<T>, ApiError>,
    later: &Result<Response<U>, ApiError>,
) -> bool {
    Class::of(earlier).yields_to(Class::of(later))
}

#[cfg(test)]
mod tests {
    use super::*;

    type Outcome = Result<Response<()>, ApiError>;

    fn status(s: u16, retry_after: Option<&str>) -> Outcome {
        let mut res = Response::builder().status(s);
        if let Some(r) = retry_after {
            res = res.header("retry-after", r);
        }
        Ok(res.body(()).unwrap())
    }

    fn open(secs: u64) -> Outcome {
        Err(ApiError::circuit_open(Duration::from_secs(secs)))
    }

    #[test]
    fn the_ranking() {
        // A rate limit over a 5xx, whichever comes first.
        assert!(tells_more(&status(503, None), &status(429, Some("5"))));
        assert!(!tells_more(&status(429, Some("5")), &status(503, None)));
        // The longest retry-after among rate limits.
        assert!(tells_more(&status(429, Some("5")), &status(429, Some("9"))));
        assert!(!tells_more(
            &status(429, Some("9")),
            &status(429, Some("5"))
        ));
        // The shortest time left among open breakers.
        assert!(tells_more(&open(30), &open(10)));
        assert!(!tells_more(&open(10), &open(30)));
        // An open breaker over a 5xx; a 5xx over a 404.
        assert!(tells_more(&status(502, None), &open(30)));
        assert!(tells_more(&status(404, None), &status(502, None)));
        assert!(!tells_more(&status(502, None), &status(404, None)));
        // The later of two equals.
        assert!(tells_more(&status(502, None), &status(503, None)));
        let quota: Outcome = Err(ApiError::new(ErrorKind::QuotaExhausted));
        assert!(tells_more(&open(1), &quota));
    }
}
