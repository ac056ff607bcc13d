//! Removing credentials from error text, bodies and header values.
//!
//! Two things are removed: exact values (the credentials a request carried,
//! configured secrets, known by their [fingerprints](super::fingerprint))
//! wherever they appear, compared without regard to ASCII case, and the
//! usual shapes of keys ([`shapes`](super::shapes)). Each is replaced by
//! [`REDACTED`]. A value is found as it is written, inside a
//! JSON string whatever its escapes (`\/`, `\u002d`), and percent-encoded.
//! A JSON body stays valid JSON: only the insides of its strings change.

use std::ops::Range;

#[cfg(feature = "normalize")]
use bytes::Bytes;
#[cfg(feature = "normalize")]
use http::HeaderValue;

use super::decoded::Decoded;
use super::fingerprint::Fingerprint;
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
#[cfg(feature = "normalize")]
pub(crate) const MIN_SECRET: usize = 8;

/// Exact values to remove.
pub(crate) trait Needles {
    /// Calls `f` with the fingerprint of every value to remove (each at
    /// least [`MIN_SECRET`] bytes long).
    fn each(&self, f: &mut dyn FnMut(Fingerprint));
}

impl<const N: usize> Needles for [Fingerprint; N] {
    fn each(&self, f: &mut dyn FnMut(Fingerprint)) {
        self.iter().for_each(|n| f(*n));
    }
}

/// No exact values: only the shapes of keys are removed.
pub(crate) const NO_NEEDLES: &[Fingerprint; 0] = &[];

/// Whether `hay` holds one of the values, as written.
#[cfg(feature = "normalize")]
pub(crate) fn contains_any(hay: &[u8], needles: &dyn Needles) -> bool {
    let mut found = false;
    needles.each(&mut |n| found = found || n.find(hay).next().is_some());
    found
}

/// The text of an error that held a credential, cleaned; it stands in for
/// that error as a source.
#[cfg(feature = "normalize")]
#[derive(Debug)]
pub(crate) struct RedactedError(pub(crate) String);

#[cfg(feature = "normalize")]
impl std::fmt::Display for RedactedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(feature = "normalize")]
impl std::error::Error for RedactedError {}

/// Whether `raw` holds one of the values (or, with `shapes`, a key shape),
/// as written or percent-encoded.
#[cfg(feature = "normalize")]
pub(crate) fn holds_secret(raw: &[u8], needles: &dyn Needles, shapes: bool) -> bool {
    let mut found = Vec::new();
    scan_view(raw, needles, shapes, &mut found);
    !found.is_empty()
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
/// loses its last bytes that could start a value (as many as the longest
/// value has, less one).
#[cfg(feature = "normalize")]
pub(crate) fn redact_body(data: &[u8], needles: &dyn Needles, complete: bool) -> Option<Bytes> {
    let mut found = Vec::new();
    // Inside JSON strings, escapes decoded.
    for_each_json_string(data, |at| {
        scan(&data[at.clone()], at.start, needles, &mut found)
    });
    // The text as a whole, too, unless it is JSON: there only the insides of
    // strings may change (parsed only when something was found).
    let mut whole = Vec::new();
    scan_view(data, needles, true, &mut whole);
    if !whole.is_empty() && serde_json::from_slice::<serde::de::IgnoredAny>(data).is_err() {
        found.append(&mut whole);
    }
    if !complete {
        found.extend(cut_tail(data, needles));
    }
    (!found.is_empty()).then(|| Bytes::from(apply(data, found)))
}

/// A header value without credentials (and without key shapes when
/// `shapes`); `None` when nothing was removed.
#[cfg(feature = "normalize")]
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

/// What to remove from `hay` as it is: the values and, with `shapes`, the
/// shapes of keys.
fn find_all(hay: &[u8], needles: &dyn Needles, shapes: bool, out: &mut Vec<Range<usize>>) {
    needles.each(&mut |n| out.extend(n.find(hay)));
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
#[cfg(feature = "normalize")]
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
#[cfg(feature = "normalize")]
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

/// The end of a cut-off text that may hold the start of a value: as many
/// bytes as the longest value has, less one (a value is known by its
/// fingerprint only, so its start cannot be told apart).
#[cfg(feature = "normalize")]
fn cut_tail(data: &[u8], needles: &dyn Needles) -> Option<Range<usize>> {
    let mut longest = 0;
    needles.each(&mut |n| longest = longest.max(n.len()));
    let tail = longest.saturating_sub(1).min(data.len());
    (tail > 0).then(|| data.len() - tail..data.len())
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

#[cfg(all(test, feature = "normalize"))]
mod tests {
    use super::*;
    use crate::{ApiError, ErrorKind};
    use http::StatusCode;
    use proptest::prelude::*;

    const KEY: &[u8] = b"sk-proj-AbCdEf0123456789/xyz";

    fn needles() -> [Fingerprint; 1] {
        [Fingerprint::of(KEY)]
    }

    fn body(data: &str) -> String {
        let out = redact_body(data.as_bytes(), &needles(), true);
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
        assert!(redact_body(br#"{"error":{"message":"fine"}}"#, &needles(), true).is_none());
    }

    #[test]
    fn a_body_cut_off_loses_the_start_of_a_value() {
        // As many bytes as the value has, less one, go from the end.
        let cut = format!("{{\"message\":\"{}key sk-proj-AbCd", "x".repeat(40));
        let out = redact_body(cut.as_bytes(), &needles(), false).unwrap();
        let kept = cut.len() - (KEY.len() - 1);
        assert_eq!(out, format!("{}[redacted]", &cut[..kept]));
        assert!(redact_body(b"ends with sk-p", &needles(), true).is_none());
        assert!(redact_body(b"ends with sk-p", NO_NEEDLES, false).is_none());
    }

    #[test]
    fn header_values() {
        let v = HeaderValue::from_static("Bearer sk-proj-AbCdEf0123456789/xyz");
        assert_eq!(
            redact_header(&v, &needles(), false).unwrap(),
            "Bearer [redacted]"
        );
        let v = HeaderValue::from_static("u=sk-proj-AbCdEf0123456789%2fxyz");
        assert_eq!(
            redact_header(&v, &needles(), false).unwrap(),
            "u=[redacted]"
        );
        let v = HeaderValue::from_static("Bearer realm=\"api\"");
        assert!(redact_header(&v, &needles(), true).is_none());
        let v = HeaderValue::from_static("sk-other-0123456789");
        assert!(redact_header(&v, &needles(), false).is_none());
        assert_eq!(redact_header(&v, &needles(), true).unwrap(), REDACTED);
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
        e.redact(&[Fingerprint::of(key)]);
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
            let out = redact_body(text.as_bytes(), &needles(), true).map_or(text.clone().into_bytes(), |b| b.to_vec());
            let out = String::from_utf8_lossy(&out).to_lowercase();
            prop_assert!(!out.contains(&key.to_lowercase()), "{}", out);
            if json {
                prop_assert!(serde_json::from_str::<serde_json::Value>(&out).is_ok());
            }
        }

        #[test]
        fn any_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..200), complete in any::<bool>()) {
            let _ = redact_body(&data, &[Fingerprint::of(KEY), Fingerprint::of(b"%\\u00abcde")], complete);
            let _ = redact_str(&String::from_utf8_lossy(&data), &needles());
        }
    }
}
