//! The retry decision: [`RetryPolicy`] and its default, [`DefaultPolicy`].

use std::fmt;

use http::StatusCode;

use super::outcome::{Decision, Outcome};
use crate::error::grpc;
use crate::hint::ServerHints;
use crate::{ApiError, ErrorKind, TimeoutPhase};

/// Decides whether an attempt's outcome is retried.
///
/// Implemented by [`DefaultPolicy`] and by every
/// `Fn(&Outcome<'_>) -> Decision` closure. Whatever the policy says, the
/// retry layer never retries
///
/// - a response with a status below 400 (once a success's headers are
///   handed back, the call is committed; a streaming response is never
///   re-requested), except a gRPC trailers-only response whose
///   `grpc-status` is not `0`, which is shown to the policy;
/// - an open circuit breaker's rejection ([`ErrorKind::CircuitOpen`]): it
///   would be rejected again by the same breaker, and it spends no budget.
///
/// ```
/// use http::StatusCode;
/// use tower_http_resilience::retry::{Decision, Outcome, RetryLayer};
///
/// // Retry only 503s.
/// let layer = RetryLayer::new().policy(|o: &Outcome<'_>| {
///     if o.status() == Some(StatusCode::SERVICE_UNAVAILABLE) {
///         Decision::Retry
///     } else {
///         Decision::DoNotRetry
///     }
/// });
/// # let _ = layer;
/// ```
pub trait RetryPolicy {
    /// The decision for one attempt's outcome.
    fn decide(&self, outcome: &Outcome<'_>) -> Decision;
}

impl<F> RetryPolicy for F
where
    F: Fn(&Outcome<'_>) -> Decision,
{
    fn decide(&self, outcome: &Outcome<'_>) -> Decision {
        self(outcome)
    }
}

/// The default retry decision:
///
/// | outcome | retried |
/// |---|---|
/// | `x-should-retry: true` / `false` on an error response or error | yes / no, whatever follows |
/// | 408, 409, 429 (rate limit), 500, 502, 503, 504, 529 | yes |
/// | 429 whose body says `insufficient_quota` (the body is peeked to tell; a body cut at the peek limit is searched for the code) | no |
/// | 400, 401, 402, 403, 404, 422 and every other status | no |
/// | gRPC trailers-only `UNAVAILABLE` (14) | yes |
/// | other gRPC codes | no |
/// | connection errors, attempt (headers) timeouts, 5xx-like errors ([`ErrorKind::is_retryable`]) | yes |
/// | total timeouts, breaker rejections, client-error kinds | no |
///
/// Both sets are configurable: [`retry_status`](DefaultPolicy::retry_status),
/// [`no_retry_status`](DefaultPolicy::no_retry_status),
/// [`grpc_codes`](DefaultPolicy::grpc_codes).
///
/// **409 Conflict is retried**, as the official OpenAI and Anthropic SDKs
/// do: these APIs answer 409 for lock timeouts and concurrent use of one
/// resource, which clear on their own; a 409 means the request was not
/// applied, so sending it again is safe; and a lasting conflict fails again
/// quickly, bounded by the retry limit and the budget. A server that means
/// "never" can say `x-should-retry: false`; a user who wants 409 final uses
/// `.no_retry_status(StatusCode::CONFLICT)`.
///
/// ```
/// use http::{HeaderMap, StatusCode};
/// use tower_http_resilience::retry::{Decision, DefaultPolicy, Outcome, RetryPolicy};
///
/// let policy = DefaultPolicy::new().no_retry_status(StatusCode::CONFLICT);
/// let h = HeaderMap::new();
/// let decide = |s: u16| policy.decide(&Outcome::response(1, StatusCode::from_u16(s).unwrap(), &h, None));
/// assert_eq!(decide(503), Decision::Retry);
/// assert_eq!(decide(409), Decision::DoNotRetry);
/// assert_eq!(decide(400), Decision::DoNotRetry);
/// assert_eq!(decide(429), Decision::ReadBody); // rate limit or quota? the body tells
/// ```
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct DefaultPolicy {
    /// Bit `n` set: status `100 + n` is retried (covers 100..=999).
    statuses: [u64; 15],
    /// Bit `n` set: gRPC code `n` is retried.
    grpc: u32,
}

impl DefaultPolicy {
    /// The statuses retried by default.
    pub const DEFAULT_STATUSES: [u16; 8] = [408, 409, 429, 500, 502, 503, 504, 529];

    /// The policy of the table above.
    pub fn new() -> Self {
        let mut p = DefaultPolicy {
            statuses: [0; 15],
            grpc: 1 << grpc::code::UNAVAILABLE,
        };
        for s in Self::DEFAULT_STATUSES {
            p.set(s, true);
        }
        p
    }

    /// Also retries `status` (a status below 400 is ignored: successes are
    /// never retried).
    pub fn retry_status(mut self, status: StatusCode) -> Self {
        if status.as_u16() >= 400 {
            self.set(status.as_u16(), true);
        }
        self
    }

    /// Never retries `status` (unless the server says `x-should-retry: true`).
    pub fn no_retry_status(mut self, status: StatusCode) -> Self {
        self.set(status.as_u16(), false);
        self
    }

    /// Retries exactly these gRPC codes of trailers-only responses (default:
    /// `UNAVAILABLE`, 14; add `RESOURCE_EXHAUSTED`, 8, to retry gRPC rate
    /// limits). Codes outside 1..=16 are ignored.
    pub fn grpc_codes(mut self, codes: impl IntoIterator<Item = i32>) -> Self {
        self.grpc = 0;
        for c in codes {
            if (1..=16).contains(&c) {
                self.grpc |= 1 << c;
            }
        }
        self
    }

    /// Whether `status` is in the retried set.
    pub fn retries_status(&self, status: StatusCode) -> bool {
        let i = usize::from(status.as_u16() - 100);
        self.statuses[i / 64] & (1 << (i % 64)) != 0
    }

    /// Whether the gRPC `code` is in the retried set.
    pub fn retries_grpc_code(&self, code: i32) -> bool {
        (1..=16).contains(&code) && self.grpc & (1 << code) != 0
    }

    fn set(&mut self, status: u16, on: bool) {
        let i = usize::from(status.clamp(100, 999) - 100);
        if on {
            self.statuses[i / 64] |= 1 << (i % 64);
        } else {
            self.statuses[i / 64] &= !(1 << (i % 64));
        }
    }

    fn decide_error(&self, err: &ApiError) -> Decision {
        if err.kind() == ErrorKind::CircuitOpen || err.timeout_phase() == Some(TimeoutPhase::Total)
        {
            return Decision::DoNotRetry;
        }
        yes_if(err.is_retryable())
    }
}

impl RetryPolicy for DefaultPolicy {
    fn decide(&self, outcome: &Outcome<'_>) -> Decision {
        if let Some(err) = outcome.as_error() {
            return self.decide_error(err);
        }
        let (Some(status), Some(headers)) = (outcome.status(), outcome.headers()) else {
            return Decision::DoNotRetry;
        };
        let body = outcome.body();
        if let Some(code) = grpc::status_code(headers).filter(|c| *c != grpc::code::OK) {
            return match ServerHints::from_headers(headers).should_retry() {
                Some(explicit) => yes_if(explicit),
                None => yes_if(self.retries_grpc_code(code)),
            };
        }
        if status.as_u16() < 400 {
            return Decision::DoNotRetry;
        }
        if let Some(explicit) = ServerHints::from_headers(headers).should_retry() {
            return yes_if(explicit);
        }
        if !self.retries_status(status) {
            return Decision::DoNotRetry;
        }
        if status == StatusCode::TOO_MANY_REQUESTS {
            return match body {
                None => Decision::ReadBody,
                Some(body) => yes_if(!says_quota(headers, body)),
            };
        }
        Decision::Retry
    }
}

/// Whether the start of a 429's body says the quota is exhausted (a long
/// body is cut at the peek limit and may not parse: its code still says
/// quota).
pub(crate) fn says_quota(headers: &http::HeaderMap, body: &[u8]) -> bool {
    const QUOTA: &[u8] = b"insufficient_quota";
    let kind = ApiError::from_upstream(StatusCode::TOO_MANY_REQUESTS, headers, body).kind();
    kind == ErrorKind::QuotaExhausted || body.windows(QUOTA.len()).any(|w| w == QUOTA)
}

fn yes_if(retry: bool) -> Decision {
    if retry {
        Decision::Retry
    } else {
        Decision::DoNotRetry
    }
}

impl Default for DefaultPolicy {
    fn default() -> Self {
        DefaultPolicy::new()
    }
}

impl fmt::Debug for DefaultPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let statuses: Vec<u16> = (400..=999)
            .filter(|s| self.retries_status(StatusCode::from_u16(*s).unwrap_or(StatusCode::OK)))
            .collect();
        let codes: Vec<i32> = (1..=16).filter(|c| self.retries_grpc_code(*c)).collect();
        f.debug_struct("DefaultPolicy")
            .field("statuses", &statuses)
            .field("grpc_codes", &codes)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderMap;
    use std::time::Duration;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    fn decide(status: u16, h: &HeaderMap, body: Option<&[u8]>) -> Decision {
        let status = StatusCode::from_u16(status).unwrap();
        DefaultPolicy::new().decide(&Outcome::response(1, status, h, body))
    }

    #[test]
    fn statuses() {
        let h = HeaderMap::new();
        for s in [408, 409, 500, 502, 503, 504, 529] {
            assert_eq!(decide(s, &h, None), Decision::Retry, "{s}");
        }
        for s in [
            200, 201, 204, 301, 304, 400, 401, 402, 403, 404, 405, 413, 422, 501, 505,
        ] {
            assert_eq!(decide(s, &h, None), Decision::DoNotRetry, "{s}");
        }
    }

    #[test]
    fn rate_limit_or_quota() {
        let h = HeaderMap::new();
        assert_eq!(decide(429, &h, None), Decision::ReadBody);
        assert_eq!(decide(429, &h, Some(b"")), Decision::Retry);
        let limit = br#"{"error":{"message":"Rate limit exceeded","type":"rate_limit_error"}}"#;
        assert_eq!(decide(429, &h, Some(limit)), Decision::Retry);
        let quota = br#"{"error":{"message":"Quota insufficient","type":"insufficient_quota","code":"insufficient_quota"}}"#;
        assert_eq!(decide(429, &h, Some(quota)), Decision::DoNotRetry);
        let cut = &quota[..quota.len() - 10];
        assert_eq!(
            decide(429, &h, Some(cut)),
            Decision::DoNotRetry,
            "cut short at the peek limit"
        );
    }

    #[test]
    fn should_retry_header_overrides() {
        assert_eq!(
            decide(400, &headers(&[("x-should-retry", "true")]), None),
            Decision::Retry
        );
        assert_eq!(
            decide(503, &headers(&[("x-should-retry", "false")]), None),
            Decision::DoNotRetry
        );
        assert_eq!(
            decide(429, &headers(&[("x-should-retry", "true")]), None),
            Decision::Retry
        );
        assert_eq!(
            decide(200, &headers(&[("x-should-retry", "true")]), None),
            Decision::DoNotRetry,
            "a success is never retried"
        );
    }

    #[test]
    fn grpc_trailers_only() {
        let unavailable = headers(&[("grpc-status", "14")]);
        assert_eq!(decide(200, &unavailable, None), Decision::Retry);
        let exhausted = headers(&[("grpc-status", "8")]);
        assert_eq!(decide(200, &exhausted, None), Decision::DoNotRetry);
        let p = DefaultPolicy::new().grpc_codes([14, 8, 99, -1]);
        assert_eq!(
            p.decide(&Outcome::response(1, StatusCode::OK, &exhausted, None)),
            Decision::Retry
        );
        assert_eq!(
            decide(200, &headers(&[("grpc-status", "0")]), None),
            Decision::DoNotRetry
        );
        let pushback = headers(&[("grpc-status", "14"), ("grpc-retry-pushback-ms", "-1")]);
        assert_eq!(decide(200, &pushback, None), Decision::DoNotRetry);
    }

    #[test]
    fn errors() {
        let d = |e: ApiError| DefaultPolicy::new().decide(&Outcome::error(2, &e));
        assert_eq!(
            d(ApiError::new(ErrorKind::Upstream).with_code("connection_error")),
            Decision::Retry
        );
        assert_eq!(
            d(ApiError::timeout(
                TimeoutPhase::Attempt,
                Duration::from_secs(1)
            )),
            Decision::Retry
        );
        assert_eq!(
            d(ApiError::timeout(
                TimeoutPhase::Total,
                Duration::from_secs(1)
            )),
            Decision::DoNotRetry
        );
        assert_eq!(
            d(ApiError::circuit_open(Duration::from_secs(1))),
            Decision::DoNotRetry
        );
        assert_eq!(
            d(ApiError::new(ErrorKind::Authentication)),
            Decision::DoNotRetry
        );
        let told =
            ApiError::new(ErrorKind::Unavailable).with_hints(ServerHints::new(Some(false), None));
        assert_eq!(d(told), Decision::DoNotRetry);
    }

    #[test]
    fn configurable_sets() {
        let p = DefaultPolicy::new()
            .retry_status(StatusCode::from_u16(522).unwrap())
            .retry_status(StatusCode::OK)
            .no_retry_status(StatusCode::CONFLICT);
        assert!(p.retries_status(StatusCode::from_u16(522).unwrap()));
        assert!(!p.retries_status(StatusCode::OK));
        assert!(!p.retries_status(StatusCode::CONFLICT));
        assert!(!p.retries_status(StatusCode::from_u16(599).unwrap()));
        let dbg = format!("{p:?}");
        assert!(dbg.contains("522") && !dbg.contains("409"), "{dbg}");
        // The extremes of the status range work.
        let top = StatusCode::from_u16(999).unwrap();
        let p = p.retry_status(top).no_retry_status(StatusCode::CONTINUE);
        assert!(p.retries_status(top));
        assert!(!p.retries_status(StatusCode::CONTINUE));
    }
}
