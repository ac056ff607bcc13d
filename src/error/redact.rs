//! Removing credentials from error text, bodies and header values.
//!
//! Two things are removed: exact values (the credentials a request carried,
//! configured secrets) wherever they appear, compared without regard to
//! ASCII case, and the usual shapes of keys ([`shapes`](super::shapes)). Each
//! is replaced by [`REDACTED`]. A value is found as it is written, inside a
//! JSON string whatever its escapes (`\/`, `\u002d`), and percent-encoded.
//! A JSON body stays valid JSON: only the insides of its strings change.

use std::ops::Range;

use bytes::Bytes;
use http::HeaderValue;

use super::decoded::Decoded;
use super::shapes;

/// The text that replaces a removed credential: `[redacted]`.
///
/// ```
/// use tower_http_resilience::{error::REDACTED, ApiError, ErrorKind};
///
/// let err = ApiError::new(ErrorKind::Authentication)
///     .with_message("Incorrect API key provided: sk-proj-0123456789abcdef");
/// assert_eq!(err.message(), format!("Incorrect API key provided: {REDACTED}"));
/// ```
pub const REDACTED: &str = "[redacted]";

/// The shortest value, or token of a value, that is removed: shorter ones
/// would remove ordinary words.
pub(crate) const MIN_SECRET: usize = 8;

/// How many bytes of a secret's start are removed from the end of a body
/// that was cut off at least.
const MIN_CUT_SECRET: usize = 4;

/// Exact values to remove.
pub(crate) trait Needles {
    /// Calls `f` with every value to remove (each at least [`MIN_SECRET`]
    /// bytes long).
    fn each(&self, f: &mut dyn FnMut(&[u8]));
}

impl<const N: usize> Needles for [&[u8]; N] {
    fn each(&self, f: &mut dyn FnMut(&[u8])) {
        for n in self {
            f(n);
        }
    }
}

/// No exact values: only the shapes of keys are removed.
pub(crate) const NO_NEEDLES: &[&[u8]; 0] = &[];

/// Whether `hay` holds one of the values, as written.
pub(crate) fn contains_any(hay: &[u8], needles: &dyn Needles) -> bool {
    let mut found = false;
    needles.each(&mut |n| found = found || find(hay, n).next().is_some());
    found
}

/// `text` without credentials; `None` when nothing was removed.
pub(crate) fn redact_str(text: &str, needles: &dyn Needles) -> Option<String> {
    let mut found = Vec::new();
    scan_view(text.as_bytes(), needles, true, &mut found);
    if found.is_empty() {
        return None;
    }
    let out = apply(text.as_bytes(), found);
    Some(String::from_utf8_lossy(&out).into_owned())
}

/// A body without credentials (JSON, text, or the start of either); `None`
/// when nothing was removed. A body that was cut off (`complete` false) also
/// loses a start of a value at its very end.
pub(crate) fn redact_body(data: &[u8], needles: &dyn Needles, complete: bool) -> Option<Bytes> {
    let mut found = Vec::new();
    // Inside JSON strings, escapes decoded.
    for_each_json_string(data, |at| {
        scan(&data[at.clone()], at.start, needles, &mut found)
    });
    if serde_json::from_slice::<serde::de::IgnoredAny>(data).is_err() {
        // Not JSON (or cut short): the text as a whole, too.
        scan_view(data, needles, true, &mut found);
    }
    if !complete {
        found.extend(cut_secret(data, needles));
    }
    (!found.is_empty()).then(|| Bytes::from(apply(data, found)))
}

/// A header value without credentials (and without key shapes when
/// `shapes`); `None` when nothing was removed.
pub(crate) fn redact_header(
    value: &HeaderValue,
    needles: &dyn Needles,
    shapes: bool,
) -> Option<HeaderValue> {
    let raw = value.as_bytes();
    let maybe =
        contains_any(raw, needles) || raw.contains(&b'%') || (shapes && shapes::may_contain(raw));
    if !maybe {
        return None;
    }
    let mut found = Vec::new();
    scan_view(raw, needles, shapes, &mut found);
    if found.is_empty() {
        return None;
    }
    // Only visible ASCII replaces the ranges, so this cannot fail; if it
    // did, nothing of the value would be kept.
    Some(HeaderValue::from_bytes(&apply(raw, found)).unwrap_or(HeaderValue::from_static(REDACTED)))
}

/// Every occurrence of `needle` in `hay`, without regard to ASCII case.
fn find<'a>(hay: &'a [u8], needle: &'a [u8]) -> impl Iterator<Item = Range<usize>> + 'a {
    let n = needle.len();
    let first = needle.first().map(u8::to_ascii_lowercase);
    let last_start = hay.len().checked_sub(n).filter(|_| n > 0);
    (0..last_start.map_or(0, |l| l + 1))
        .filter(move |&i| {
            Some(hay[i].to_ascii_lowercase()) == first && hay[i..i + n].eq_ignore_ascii_case(needle)
        })
        .map(move |i| i..i + n)
}

/// What to remove from `hay` as it is: the values and, with `shapes`, the
/// shapes of keys.
fn find_all(hay: &[u8], needles: &dyn Needles, shapes: bool, out: &mut Vec<Range<usize>>) {
    needles.each(&mut |n| out.extend(find(hay, n)));
    if shapes && shapes::may_contain(hay) {
        shapes::find(hay, out);
    }
}

/// What to remove from `hay`, as it is and percent-decoded.
fn scan_view(hay: &[u8], needles: &dyn Needles, shapes: bool, out: &mut Vec<Range<usize>>) {
    find_all(hay, needles, shapes, out);
    if hay.contains(&b'%') {
        let decoded = Decoded::percent(hay);
        let mut found = Vec::new();
        find_all(&decoded.bytes, needles, shapes, &mut found);
        out.extend(found.into_iter().map(|r| decoded.source(r)));
    }
}

/// What to remove from the inside of a JSON string at `base`, its escapes
/// decoded.
fn scan(raw: &[u8], base: usize, needles: &dyn Needles, out: &mut Vec<Range<usize>>) {
    let mut found = Vec::new();
    if raw.contains(&b'\\') {
        let decoded = Decoded::json(raw);
        scan_view(&decoded.bytes, needles, true, &mut found);
        for r in &mut found {
            *r = decoded.source(r.clone());
        }
    } else {
        scan_view(raw, needles, true, &mut found);
    }
    out.extend(found.into_iter().map(|r| r.start + base..r.end + base));
}

/// Calls `f` with the range of the inside of every string of a JSON text;
/// a string cut off by the end of the text runs to the end.
fn for_each_json_string(data: &[u8], mut f: impl FnMut(Range<usize>)) {
    let mut i = 0;
    while i < data.len() {
        if data[i] != b'"' {
            i += 1;
            continue;
        }
        let start = i + 1;
        let mut j = start;
        while j < data.len() && data[j] != b'"' {
            j += if data[j] == b'\\' { 2 } else { 1 };
        }
        let end = j.min(data.len());
        f(start..end);
        i = end + 1;
    }
}

/// The range of the end of a cut-off text that starts a value.
fn cut_secret(data: &[u8], needles: &dyn Needles) -> Option<Range<usize>> {
    let mut longest = 0;
    needles.each(&mut |n| {
        for k in (MIN_CUT_SECRET..n.len()).rev() {
            if k > longest
                && data.len() >= k
                && data[data.len() - k..].eq_ignore_ascii_case(&n[..k])
            {
                longest = k;
                break;
            }
        }
    });
    (longest > 0).then(|| data.len() - longest..data.len())
}

/// `raw` with every range replaced by [`REDACTED`] (ranges that overlap or
/// touch become one).
fn apply(raw: &[u8], mut ranges: Vec<Range<usize>>) -> Vec<u8> {
    ranges.sort_by_key(|r| r.start);
    let mut out = Vec::with_capacity(raw.len() + REDACTED.len());
    let mut at = 0;
    let mut iter = ranges.into_iter().peekable();
    while let Some(mut r) = iter.next() {
        while let Some(next) = iter.next_if(|n| n.start <= r.end) {
            r.end = r.end.max(next.end);
        }
        let start = r.start.max(at);
        out.extend_from_slice(&raw[at..start]);
        out.extend_from_slice(REDACTED.as_bytes());
        at = at.max(r.end.min(raw.len()));
    }
    out.extend_from_slice(&raw[at..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ApiError, ErrorKind};
    use http::StatusCode;
    use proptest::prelude::*;

    const KEY: &[u8] = b"sk-proj-AbCdEf0123456789/xyz";

    fn body(data: &str) -> String {
        let out = redact_body(data.as_bytes(), &[KEY], true);
        String::from_utf8(out.map_or_else(|| data.as_bytes().to_vec(), |b| b.to_vec())).unwrap()
    }

    #[test]
    fn values_are_found_in_every_form() {
        let key = std::str::from_utf8(KEY).unwrap();
        for (sent, want) in [
            (
                format!("api_key={key}&x=1"),
                "api_key=[redacted]&x=1".to_owned(),
            ),
            (format!("a,{key},b"), "a,[redacted],b".to_owned()),
            (
                format!("line\n{key}\nmore"),
                "line\n[redacted]\nmore".to_owned(),
            ),
            (
                format!("key:{}", key.to_uppercase()),
                "key:[redacted]".to_owned(),
            ),
            (key.replace('/', "%2F"), "[redacted]".to_owned()),
        ] {
            assert_eq!(body(&sent), want, "{sent:?}");
        }
    }

    #[test]
    fn json_stays_json_and_escapes_are_seen_through() {
        let escaped = r#"{"error":{"message":"bad key sk\u002dproj-AbCdEf0123456789\/xyz!","type":"x"},"n":1}"#;
        let out = body(escaped);
        assert_eq!(
            out,
            r#"{"error":{"message":"bad key [redacted]!","type":"x"},"n":1}"#
        );
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["n"], 1);
        // Untouched JSON is not copied.
        assert!(redact_body(br#"{"error":{"message":"fine"}}"#, &[KEY], true).is_none());
    }

    #[test]
    fn a_body_cut_off_loses_the_start_of_a_value() {
        let cut = b"{\"message\":\"key sk-proj-AbCd";
        let out = redact_body(cut, &[KEY], false).unwrap();
        assert_eq!(&out[..], b"{\"message\":\"key [redacted]");
        assert!(redact_body(b"ends with sk-", &[KEY], false).is_none());
        assert!(redact_body(b"ends with sk-p", &[KEY], true).is_none());
    }

    #[test]
    fn header_values() {
        let v = HeaderValue::from_static("Bearer sk-proj-AbCdEf0123456789/xyz");
        assert_eq!(
            redact_header(&v, &[KEY], false).unwrap(),
            "Bearer [redacted]"
        );
        let v = HeaderValue::from_static("u=sk-proj-AbCdEf0123456789%2fxyz");
        assert_eq!(redact_header(&v, &[KEY], false).unwrap(), "u=[redacted]");
        let v = HeaderValue::from_static("Bearer realm=\"api\"");
        assert!(redact_header(&v, &[KEY], true).is_none());
        let v = HeaderValue::from_static("sk-other-0123456789");
        assert!(redact_header(&v, &[KEY], false).is_none());
        assert_eq!(redact_header(&v, &[KEY], true).unwrap(), REDACTED);
    }

    #[test]
    fn shapes_are_removed_without_values() {
        assert_eq!(
            redact_str(
                "key sk-live-0123456789, jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig",
                NO_NEEDLES
            )
            .unwrap(),
            "key [redacted], jwt [redacted]"
        );
        assert!(redact_str("nothing here", NO_NEEDLES).is_none());
    }

    #[test]
    fn redact_reaches_every_field_shown() {
        let key: &[u8] = b"0123456789abcdef";
        let mut e = ApiError::new(ErrorKind::Authentication)
            .with_message("key 0123456789ABCDEF rejected")
            .with_param("x0123456789abcdef")
            .with_code("bad_0123456789abcdef")
            .with_request_id("id-0123456789abcdef");
        e.set_upstream(
            StatusCode::UNAUTHORIZED,
            Some(Bytes::from_static(b"{\"k\":\"0123456789abcdef\"}")),
        );
        e.redact(&[key]);
        assert_eq!(e.message(), "key [redacted] rejected");
        assert_eq!(e.param(), Some("x[redacted]"));
        assert_eq!(e.code(), "bad_[redacted]");
        assert_eq!(e.request_id(), Some("id-[redacted]"));
        assert_eq!(&e.upstream_body().unwrap()[..], b"{\"k\":\"[redacted]\"}");
    }

    proptest! {
        #[test]
        fn a_value_placed_anywhere_never_survives(
            before in "[ -~\\n]{0,40}",
            after in "[ -~\\n]{0,40}",
            json in any::<bool>(),
            upper in any::<bool>(),
        ) {
            let key = std::str::from_utf8(KEY).unwrap();
            let key = if upper { key.to_uppercase() } else { key.to_owned() };
            let text = if json {
                serde_json::to_string(&serde_json::json!({"error": {"message": format!("{before}{key}{after}")}})).unwrap()
            } else {
                format!("{before}{key}{after}")
            };
            let out = redact_body(text.as_bytes(), &[KEY], true).map_or(text.clone().into_bytes(), |b| b.to_vec());
            let out = String::from_utf8_lossy(&out).to_lowercase();
            prop_assert!(!out.contains(&key.to_lowercase()), "{}", out);
            if json {
                prop_assert!(serde_json::from_str::<serde_json::Value>(&out).is_ok());
            }
        }

        #[test]
        fn any_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..200), complete in any::<bool>()) {
            let _ = redact_body(&data, &[KEY, b"%\\u00"], complete);
            let _ = redact_str(&String::from_utf8_lossy(&data), &[KEY]);
        }
    }
}
