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

fn parse_bool(bytes: &[u8]) -> Option<bool> {
    let s = std::str::from_utf8(bytes).ok()?.trim();
    if s.eq_ignore_ascii_case("true") {
        Some(true)
    } else if s.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

/// `retry-after`: delay-seconds (fractional accepted) or an HTTP-date.
fn parse_retry_after(value: &HeaderValue, now: SystemTime) -> Option<Duration> {
    let bytes = value.as_bytes();
    if let Some(d) = parse_decimal(bytes, 1_000_000_000) {
        return Some(d);
    }
    let s = std::str::from_utf8(bytes).ok()?.trim();
    let when = httpdate::parse_http_date(s).ok()?;
    Some(clamp(when.duration_since(now).unwrap_or(Duration::ZERO)))
}

enum Pushback {
    Wait(Duration),
    DoNotRetry,
}

fn parse_pushback(bytes: &[u8]) -> Option<Pushback> {
    let s = std::str::from_utf8(bytes).ok()?.trim();
    if let Some(rest) = s.strip_prefix('-') {
        // Any well-formed negative number means "do not retry".
        return parse_decimal(rest.as_bytes(), 1).map(|_| Pushback::DoNotRetry);
    }
    parse_decimal(s.as_bytes(), 1_000_000).map(Pushback::Wait)
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

fn clamp(d: Duration) -> Duration {
    d.min(MAX_HINT)
}

/// Parses `digits[.digits]` (surrounding white space allowed) where one unit
/// is `nanos_per_unit` nanoseconds. Saturates at [`MAX_HINT`].
pub(crate) fn parse_decimal(bytes: &[u8], nanos_per_unit: u64) -> Option<Duration> {
    let s = trim_ascii(bytes);
    let (nanos, rest) = parse_number(s, nanos_per_unit)?;
    if !rest.is_empty() {
        return None;
    }
    Some(clamp(Duration::from_nanos(nanos)))
}

/// Parses a leading `digits[.digits]` number at the start of `s`, scaled to
/// nanoseconds with `nanos_per_unit`, returning the rest of the input.
fn parse_number(s: &[u8], nanos_per_unit: u64) -> Option<(u64, &[u8])> {
    let int_len = s.iter().take_while(|b| b.is_ascii_digit()).count();
    let (int_part, rest) = s.split_at(int_len);
    let (frac_part, rest) = match rest.strip_prefix(b".") {
        Some(after) => {
            let n = after.iter().take_while(|b| b.is_ascii_digit()).count();
            after.split_at(n)
        }
        None => (&rest[..0], rest),
    };
    if int_part.is_empty() && frac_part.is_empty() {
        return None;
    }
    // Saturating arithmetic in u128: a value past MAX_HINT is clamped later.
    let cap = MAX_HINT.as_nanos();
    let mut int: u128 = 0;
    for &b in int_part {
        int = (int * 10 + u128::from(b - b'0')).min(cap);
    }
    let mut nanos = int.saturating_mul(u128::from(nanos_per_unit)).min(cap);
    let mut scale = u128::from(nanos_per_unit);
    for &b in frac_part.iter().take(18) {
        scale /= 10;
        if scale == 0 {
            break;
        }
        nanos += u128::from(b - b'0') * scale;
    }
    Some((nanos.min(cap) as u64, rest))
}

/// Parses Go-style durations as sent in `x-ratelimit-reset-*`: `1s`, `6m0s`,
/// `1.5s`, `20ms`, `1h2m3s`, `500us`, `1µs`, `10ns`. A plain number is seconds.
pub(crate) fn parse_go_duration(bytes: &[u8]) -> Option<Duration> {
    let mut s = trim_ascii(bytes);
    if s.is_empty() {
        return None;
    }
    if let Some(d) = parse_decimal(s, 1_000_000_000) {
        return Some(d);
    }
    let mut total: u64 = 0;
    while !s.is_empty() {
        // The unit decides the scale, so find it first.
        let num_len = s
            .iter()
            .take_while(|b| b.is_ascii_digit() || **b == b'.')
            .count();
        let unit_start = &s[num_len..];
        let (unit_nanos, unit_len) = if unit_start.starts_with(b"ms") {
            (1_000_000, 2)
        } else if unit_start.starts_with(b"us") {
            (1_000, 2)
        } else if unit_start.starts_with("µs".as_bytes()) {
            (1_000, "µs".len())
        } else if unit_start.starts_with(b"ns") {
            (1, 2)
        } else if unit_start.starts_with(b"h") {
            (3_600_000_000_000, 1)
        } else if unit_start.starts_with(b"m") {
            (60_000_000_000, 1)
        } else if unit_start.starts_with(b"s") {
            (1_000_000_000, 1)
        } else {
            return None;
        };
        let (nanos, rest) = parse_number(&s[..num_len], unit_nanos)?;
        if !rest.is_empty() {
            return None;
        }
        total = total.saturating_add(nanos);
        s = &unit_start[unit_len..];
    }
    Some(clamp(Duration::from_nanos(total)))
}

fn trim_ascii(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if first.is_ascii_whitespace() {
            s = rest;
        } else {
            break;
        }
    }
    while let [rest @ .., last] = s {
        if last.is_ascii_whitespace() {
            s = rest;
        } else {
            break;
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
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
    fn go_durations() {
        let d = |s: &str| parse_go_duration(s.as_bytes());
        assert_eq!(d("1s"), Some(Duration::from_secs(1)));
        assert_eq!(d("6m0s"), Some(Duration::from_secs(360)));
        assert_eq!(d("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(d("20ms"), Some(Duration::from_millis(20)));
        assert_eq!(d("1h2m3.5s"), Some(Duration::from_millis(3_723_500)));
        assert_eq!(d("500us"), Some(Duration::from_micros(500)));
        assert_eq!(d("3µs"), Some(Duration::from_micros(3)));
        assert_eq!(d("7ns"), Some(Duration::from_nanos(7)));
        assert_eq!(d("2"), Some(Duration::from_secs(2)));
        assert_eq!(d("0.25"), Some(Duration::from_millis(250)));
        for bad in ["", "s", "1x", "-1s", "1s2", "1.2.3s", "ms", "m1s"] {
            assert_eq!(d(bad), None, "{bad:?}");
        }
        assert_eq!(d("99999999999999999999h"), Some(MAX_HINT));
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
        fn parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = parse_go_duration(&bytes);
            let _ = parse_decimal(&bytes, 1_000_000_000);
            let _ = parse_pushback(&bytes);
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

        #[test]
        fn decimal_seconds_round_trip(secs in 0u64..10_000_000, millis in 0u32..1000) {
            let s = format!("{secs}.{millis:03}");
            prop_assert_eq!(
                parse_decimal(s.as_bytes(), 1_000_000_000),
                Some(Duration::from_secs(secs) + Duration::from_millis(u64::from(millis)))
            );
        }
    }
}
