//! What a [`RetryPolicy`](super::RetryPolicy) sees of an attempt
//! ([`Outcome`]) and what it answers ([`Decision`]).

use std::fmt;

use http::{HeaderMap, StatusCode};

use crate::error::grpc;
use crate::hint::ServerHints;
use crate::ApiError;

/// What a [`RetryPolicy`](super::RetryPolicy) answers for one attempt's outcome.
///
/// ```
/// use tower_http_resilience::retry::{Decision, Outcome, RetryLayer};
///
/// // Retry a 429 unless the start of its body says the quota is gone.
/// let layer = RetryLayer::new().policy(|o: &Outcome<'_>| {
///     match (o.status().map(|s| s.as_u16()), o.body()) {
///         (Some(429), None) => Decision::ReadBody,
///         (Some(429), Some(body)) if !body.windows(5).any(|w| w == b"quota") => Decision::Retry,
///         _ => Decision::DoNotRetry,
///     }
/// });
/// # let _ = layer;
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Try again (subject to the retry limit, the server's hint, the
    /// deadline, the budget and the request body being replayable).
    Retry,
    /// Hand this outcome to the caller.
    DoNotRetry,
    /// Read a bounded prefix of the response body (at most the layer's
    /// [`peek_limit`](super::RetryLayer::peek_limit), within its
    /// [`peek_timeout`](super::RetryLayer::peek_timeout)), then ask again with
    /// [`Outcome::body`] set. The body reaches the caller whole either way.
    /// For an error outcome, or asked again after the body was read, it
    /// counts as [`DoNotRetry`](Decision::DoNotRetry).
    ReadBody,
}

/// The outcome of one attempt, as a [`RetryPolicy`](super::RetryPolicy)
/// sees it: an upstream response's head (and, after
/// [`Decision::ReadBody`], the start of its body), or an error.
///
/// ```
/// use http::{HeaderMap, StatusCode};
/// use tower_http_resilience::retry::Outcome;
///
/// let headers = HeaderMap::new();
/// let o = Outcome::response(2, StatusCode::TOO_MANY_REQUESTS, &headers, Some(b"{}"));
/// assert_eq!(o.attempt(), 2);
/// assert_eq!(o.status(), Some(StatusCode::TOO_MANY_REQUESTS));
/// assert_eq!(o.body(), Some(&b"{}"[..]));
/// assert!(o.as_error().is_none());
/// ```
#[derive(Clone, Copy)]
pub struct Outcome<'a> {
    attempt: u32,
    kind: OutcomeKind<'a>,
}

#[derive(Clone, Copy)]
enum OutcomeKind<'a> {
    Response {
        status: StatusCode,
        headers: &'a HeaderMap,
        body: Option<&'a [u8]>,
    },
    Error(&'a ApiError),
}

impl<'a> Outcome<'a> {
    /// The outcome of attempt `attempt` that answered with a response.
    pub fn response(
        attempt: u32,
        status: StatusCode,
        headers: &'a HeaderMap,
        body: Option<&'a [u8]>,
    ) -> Self {
        Outcome {
            attempt,
            kind: OutcomeKind::Response {
                status,
                headers,
                body,
            },
        }
    }

    /// The outcome of attempt `attempt` that failed with `error`.
    pub fn error(attempt: u32, error: &'a ApiError) -> Self {
        Outcome {
            attempt,
            kind: OutcomeKind::Error(error),
        }
    }

    /// Which attempt this was: 1 for the first.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The response status, when the attempt got a response.
    pub fn status(&self) -> Option<StatusCode> {
        match self.kind {
            OutcomeKind::Response { status, .. } => Some(status),
            OutcomeKind::Error(_) => None,
        }
    }

    /// The response headers, when the attempt got a response.
    pub fn headers(&self) -> Option<&'a HeaderMap> {
        match self.kind {
            OutcomeKind::Response { headers, .. } => Some(headers),
            OutcomeKind::Error(_) => None,
        }
    }

    /// The start of the response body (at most the layer's peek limit), once
    /// the policy asked for it with [`Decision::ReadBody`].
    pub fn body(&self) -> Option<&'a [u8]> {
        match self.kind {
            OutcomeKind::Response { body, .. } => body,
            OutcomeKind::Error(_) => None,
        }
    }

    /// The error, when the attempt failed without a response (a connection
    /// error, an attempt timeout, a breaker's rejection…).
    pub fn as_error(&self) -> Option<&'a ApiError> {
        match self.kind {
            OutcomeKind::Error(e) => Some(e),
            OutcomeKind::Response { .. } => None,
        }
    }

    /// The `grpc-status` of a gRPC trailers-only response, when it is there
    /// and well formed.
    pub fn grpc_status(&self) -> Option<i32> {
        self.headers().and_then(grpc::status_code)
    }

    /// What the server said about retrying: the response's hint headers, or
    /// the hints the error carries.
    pub fn hints(&self) -> ServerHints {
        match self.kind {
            OutcomeKind::Response { headers, .. } => ServerHints::from_headers(headers),
            OutcomeKind::Error(e) => e.hints(),
        }
    }
}

impl fmt::Debug for Outcome<'_> {
    // Headers and bodies may hold secrets; show only what decides.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Outcome");
        d.field("attempt", &self.attempt);
        match self.kind {
            OutcomeKind::Response { status, body, .. } => {
                d.field("status", &status);
                if let Some(code) = self.grpc_status() {
                    d.field("grpc_status", &code);
                }
                d.field("body_len", &body.map(<[u8]>::len));
            }
            OutcomeKind::Error(e) => {
                d.field("error", &e.kind()).field("code", &e.code());
            }
        }
        d.finish()
    }
}
