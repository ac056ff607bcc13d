//! Server hints: what an upstream says about retrying and waiting.
//!
//! Upstreams say whether and when to retry in several headers. [`ServerHints`]
//! reads them all from a [`HeaderMap`], in this order of precedence (the first
//! one present and well formed wins):
//!
//! | header | form | meaning |
//! |---|---|---|
//! | `x-should-retry` | `true` / `false` | retry or not, whatever the status says |
//! | `retry-after-ms` | milliseconds, may be fractional | wait this long |
//! | `retry-after` | seconds (may be fractional) or an HTTP-date | wait this long / until then (a past date is zero) |
//! | `x-ratelimit-reset-requests`, `x-ratelimit-reset-tokens` | `1s`, `6m0s`, `1.5s`, `20ms`, or plain seconds | wait until the exhausted limit resets |
//! | `grpc-retry-pushback-ms` | milliseconds; negative means "do not retry" | wait this long |
//!
//! Of the two `x-ratelimit-reset-*` headers, those whose matching
//! `x-ratelimit-remaining-*` header is `0` or absent are considered, and the
//! longer wait is taken, so that the retry lands after the limit that was hit
//! has reset.
//!
//! Parsing never panics. A value that is not well formed is ignored (as if the
//! header were absent); a negative wait is ignored, except for gRPC pushback
//! where it means "do not retry"; a wait longer than [`MAX_HINT`] is clamped to
//! it, which is longer than any sensible retry cap, so it reads as "do not
//! retry here".
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use http::HeaderMap;
//! use tower_http_resilience::hint::ServerHints;
//!
//! let mut headers = HeaderMap::new();
//! headers.insert("retry-after", "1.5".parse().unwrap());
//! headers.insert("x-ratelimit-reset-requests", "6m0s".parse().unwrap());
//!
//! let hints = ServerHints::from_headers(&headers);
//! // `retry-after` comes before the rate-limit reset headers.
//! assert_eq!(hints.retry_after(), Some(Duration::from_millis(1500)));
//! assert_eq!(hints.should_retry(), None);
//! ```

use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderValue};

mod parse;

use parse::{
    parse_bool, parse_decimal, parse_go_duration, parse_pushback, parse_retry_after, Pushback,
};

/// The longest wait a hint can carry; longer values are clamped to this (one year).
pub const MAX_HINT: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// What an upstream's headers say about retrying: whether, and after how long.
///
/// See the [module docs](crate::hint) for the headers read and their precedence.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServerHints {
    should_retry: Option<bool>,
    retry_after: Option<Duration>,
}

impl ServerHints {
    /// Hints that say nothing.
    pub const fn none() -> Self {
        ServerHints {
            should_retry: None,
            retry_after: None,
        }
    }

    /// Hints with an explicit decision and wait.
    pub const fn new(should_retry: Option<bool>, retry_after: Option<Duration>) -> Self {
        ServerHints {
            should_retry,
            retry_after,
        }
    }

    /// Reads the hints in `headers`, taking the current wall-clock time for
    /// `retry-after` dates.
    pub fn from_headers(headers: &HeaderMap) -> Self {
        Self::from_headers_at(headers, SystemTime::now())
    }

    /// Reads the hints in `headers`, measuring `retry-after` dates from `now`.
    pub fn from_headers_at(headers: &HeaderMap, now: SystemTime) -> Self {
        let mut should_retry = headers
            .get("x-should-retry")
            .and_then(|v| parse_bool(v.as_bytes()));

        let retry_after = if let Some(d) = headers
            .get("retry-after-ms")
            .and_then(|v| parse_decimal(v.as_bytes(), 1_000_000))
        {
            Some(d)
        } else if let Some(d) = headers
            .get("retry-after")
            .and_then(|v| parse_retry_after(v, now))
        {
            Some(d)
        } else if let Some(d) = rate_limit_reset(headers) {
            Some(d)
        } else {
            match headers
                .get("grpc-retry-pushback-ms")
                .and_then(|v| parse_pushback(v.as_bytes()))
            {
                Some(Pushback::Wait(d)) => Some(d),
                Some(Pushback::DoNotRetry) => {
                    should_retry.get_or_insert(false);
                    None
                }
                None => None,
            }
        };

        ServerHints {
            should_retry,
            retry_after,
        }
    }

    /// The server's explicit retry decision (`x-should-retry`, or a negative
    /// gRPC pushback), if it gave one.
    pub const fn should_retry(&self) -> Option<bool> {
        self.should_retry
    }

    /// How long the server asked the caller to wait, if it said.
    pub const fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// Whether the hints say nothing at all.
    pub const fn is_empty(&self) -> bool {
        self.should_retry.is_none() && self.retry_after.is_none()
    }
}

fn rate_limit_reset(headers: &HeaderMap) -> Option<Duration> {
    longest_reset(headers, |remaining| remaining.is_none_or(|n| n == Some(0)))
}

/// The longest `x-ratelimit-reset-*` wait among the limits whose
/// `x-ratelimit-remaining-*` header says `0` (an absent or malformed one
/// does not count): the instant until which the next call will be refused,
/// whatever the status of the response that said so.
#[cfg(feature = "pacing")]
pub(crate) fn exhausted_reset(headers: &HeaderMap) -> Option<Duration> {
    longest_reset(headers, |remaining| remaining == Some(Some(0)))
}

/// The longest reset among the limits that `exhausted` picks, given each
/// limit's remaining count (`None`: no header; `Some(None)`: malformed).
fn longest_reset(
    headers: &HeaderMap,
    exhausted: impl Fn(Option<Option<u64>>) -> bool,
) -> Option<Duration> {
    let mut longest: Option<Duration> = None;
    for (remaining, reset) in rate_limits(headers) {
        let remaining = remaining.map(|v| {
            std::str::from_utf8(v.as_bytes())
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
        });
        if !exhausted(remaining) {
            continue;
        }
        if let Some(d) = reset.and_then(|v| parse_go_duration(v.as_bytes())) {
            longest = Some(longest.map_or(d, |l| l.max(d)));
        }
    }
    longest
}

/// The first `x-ratelimit-remaining-*` and `x-ratelimit-reset-*` values
/// of the requests limit, then of the tokens limit, found in one pass over
/// the headers: looking each name up would hash it, four times.
fn rate_limits(headers: &HeaderMap) -> [(Option<&HeaderValue>, Option<&HeaderValue>); 2] {
    let mut found = [(None, None); 2];
    for (name, value) in headers {
        let slot = match name.as_str() {
            "x-ratelimit-remaining-requests" => &mut found[0].0,
            "x-ratelimit-reset-requests" => &mut found[0].1,
            "x-ratelimit-remaining-tokens" => &mut found[1].0,
            "x-ratelimit-reset-tokens" => &mut found[1].1,
            _ => continue,
        };
        slot.get_or_insert(value);
    }
    found
}
#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use proptest::prelude::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn after(pairs: &[(&'static str, &str)]) -> Option<Duration> {
        ServerHints::from_headers_at(&headers(pairs), SystemTime::UNIX_EPOCH).retry_after()
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(after(&[("retry-after", "2")]), Some(Duration::from_secs(2)));
        assert_eq!(
            after(&[("retry-after", " 7 ")]),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            after(&[("retry-after", "1.5")]),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(after(&[("retry-after", "0")]), Some(Duration::ZERO));
        assert_eq!(after(&[("retry-after", "-1")]), None);
        assert_eq!(after(&[("retry-after", "abc")]), None);
        assert_eq!(after(&[("retry-after", "1e3")]), None);
        assert_eq!(after(&[("retry-after", "NaN")]), None);
        assert_eq!(after(&[("retry-after", "")]), None);
        assert_eq!(after(&[("retry-after", ".")]), None);
        assert_eq!(
            after(&[("retry-after", "99999999999999999999999999")]),
            Some(MAX_HINT)
        );
    }

    #[test]
    fn retry_after_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480); // 2015-10-21 07:28:00 GMT
        let h = headers(&[("retry-after", "Wed, 21 Oct 2015 07:28:30 GMT")]);
        assert_eq!(
            ServerHints::from_headers_at(&h, now).retry_after(),
            Some(Duration::from_secs(30))
        );
        let past = headers(&[("retry-after", "Wed, 21 Oct 2015 07:00:00 GMT")]);
        assert_eq!(
            ServerHints::from_headers_at(&past, now).retry_after(),
            Some(Duration::ZERO)
        );
        let far = headers(&[("retry-after", "Fri, 31 Dec 9999 23:59:59 GMT")]);
        assert_eq!(
            ServerHints::from_headers_at(&far, now).retry_after(),
            Some(MAX_HINT)
        );
    }

    #[test]
    fn precedence() {
        let all = [
            ("retry-after-ms", "250"),
            ("retry-after", "3"),
            ("x-ratelimit-reset-requests", "9s"),
            ("grpc-retry-pushback-ms", "1000"),
        ];
        assert_eq!(after(&all), Some(Duration::from_millis(250)));
        assert_eq!(after(&all[1..]), Some(Duration::from_secs(3)));
        assert_eq!(after(&all[2..]), Some(Duration::from_secs(9)));
        assert_eq!(after(&all[3..]), Some(Duration::from_secs(1)));
        // A malformed header falls through to the next one.
        assert_eq!(
            after(&[("retry-after-ms", "soon"), ("retry-after", "4")]),
            Some(Duration::from_secs(4))
        );
        assert_eq!(
            after(&[("retry-after-ms", "12.5")]),
            Some(Duration::from_micros(12_500))
        );
    }

    #[test]
    fn should_retry() {
        let h = |v| ServerHints::from_headers(&headers(&[("x-should-retry", v)])).should_retry();
        assert_eq!(h("true"), Some(true));
        assert_eq!(h("FALSE"), Some(false));
        assert_eq!(h("maybe"), None);
    }

    #[test]
    fn grpc_pushback() {
        let h = ServerHints::from_headers(&headers(&[("grpc-retry-pushback-ms", "-1")]));
        assert_eq!(h.should_retry(), Some(false));
        assert_eq!(h.retry_after(), None);
        let h = ServerHints::from_headers(&headers(&[
            ("grpc-retry-pushback-ms", "-5"),
            ("x-should-retry", "true"),
        ]));
        assert_eq!(h.should_retry(), Some(true), "x-should-retry comes first");
        assert_eq!(after(&[("grpc-retry-pushback-ms", "x")]), None);
    }

    #[test]
    fn rate_limit_reset_uses_the_exhausted_limit() {
        let both = [
            ("x-ratelimit-reset-requests", "1s"),
            ("x-ratelimit-reset-tokens", "6m0s"),
        ];
        assert_eq!(
            after(&both),
            Some(Duration::from_secs(360)),
            "no remaining headers: the longer"
        );
        let tokens_left = [
            ("x-ratelimit-reset-requests", "1s"),
            ("x-ratelimit-remaining-requests", "0"),
            ("x-ratelimit-reset-tokens", "6m0s"),
            ("x-ratelimit-remaining-tokens", "1200"),
        ];
        assert_eq!(after(&tokens_left), Some(Duration::from_secs(1)));
        let none_exhausted = [
            ("x-ratelimit-reset-requests", "1s"),
            ("x-ratelimit-remaining-requests", "5"),
        ];
        assert_eq!(after(&none_exhausted), None);
    }

    proptest! {
        #[test]
        fn hints_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(v) = HeaderValue::from_bytes(&bytes) {
                let mut h = HeaderMap::new();
                for name in ["retry-after", "retry-after-ms", "x-should-retry",
                             "x-ratelimit-reset-requests", "x-ratelimit-reset-tokens",
                             "x-ratelimit-remaining-tokens", "grpc-retry-pushback-ms"] {
                    h.insert(name, v.clone());
                }
                let hints = ServerHints::from_headers(&h);
                if let Some(d) = hints.retry_after() {
                    prop_assert!(d <= MAX_HINT);
                }
            }
        }
    }
}
