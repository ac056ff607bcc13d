//! Parsers of the hint headers' values. None of them panics, on any bytes.

use std::time::{Duration, SystemTime};

use http::HeaderValue;

use super::MAX_HINT;

/// `true` or `false`, in any case, surrounding white space allowed.
pub(super) fn parse_bool(bytes: &[u8]) -> Option<bool> {
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
pub(super) fn parse_retry_after(value: &HeaderValue, now: SystemTime) -> Option<Duration> {
    let bytes = value.as_bytes();
    if let Some(d) = parse_decimal(bytes, 1_000_000_000) {
        return Some(d);
    }
    let s = std::str::from_utf8(bytes).ok()?.trim();
    let when = httpdate::parse_http_date(s).ok()?;
    Some(clamp(when.duration_since(now).unwrap_or(Duration::ZERO)))
}

/// What `grpc-retry-pushback-ms` says.
pub(super) enum Pushback {
    /// Wait this long.
    Wait(Duration),
    /// A negative value: do not retry.
    DoNotRetry,
}

/// `grpc-retry-pushback-ms`: milliseconds, or any negative number.
pub(super) fn parse_pushback(bytes: &[u8]) -> Option<Pushback> {
    let s = std::str::from_utf8(bytes).ok()?.trim();
    if let Some(rest) = s.strip_prefix('-') {
        // Any well-formed negative number means "do not retry".
        return parse_decimal(rest.as_bytes(), 1).map(|_| Pushback::DoNotRetry);
    }
    parse_decimal(s.as_bytes(), 1_000_000).map(Pushback::Wait)
}

/// A wait no longer than [`MAX_HINT`].
fn clamp(d: Duration) -> Duration {
    d.min(MAX_HINT)
}

/// Parses `digits[.digits]` (surrounding white space allowed) where one unit
/// is `nanos_per_unit` nanoseconds. Saturates at [`MAX_HINT`].
pub(super) fn parse_decimal(bytes: &[u8], nanos_per_unit: u64) -> Option<Duration> {
    let s = bytes.trim_ascii();
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
pub(super) fn parse_go_duration(bytes: &[u8]) -> Option<Duration> {
    let mut s = bytes.trim_ascii();
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

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

    proptest! {
        #[test]
        fn parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = parse_go_duration(&bytes);
            let _ = parse_decimal(&bytes, 1_000_000_000);
            let _ = parse_pushback(&bytes);
            let _ = parse_bool(&bytes);
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
