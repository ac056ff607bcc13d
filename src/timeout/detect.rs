//! Telling a streaming call from an ordinary one, and small wire formats:
//! `Accept` / `Content-Type` checks, the bounded `"stream": true` scan, SSE
//! comment lines and the `grpc-timeout` header.

use std::time::Duration;

use http::header::ACCEPT;
use http::{HeaderMap, HeaderValue};

use crate::json::{key_is, members};

/// The `grpc-timeout` request header.
pub(crate) const GRPC_TIMEOUT: &str = "grpc-timeout";

/// Whether an `Accept` header of the request names `text/event-stream`.
pub(crate) fn accepts_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get_all(ACCEPT)
        .iter()
        .any(|v| contains_ignore_ascii_case(v.as_bytes(), b"text/event-stream"))
}

fn contains_ignore_ascii_case(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.len() >= needle.len()
        && haystack
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle))
}

/// Whether the top-level JSON object in `json` has `"stream": true`.
///
/// `json` may be cut anywhere (it is the start of a body, read up to a cap):
/// the scan looks at the top-level keys it can see and stops at the first
/// byte that does not fit, so a key past the cut, or after malformed JSON, is
/// not seen. Nested objects, arrays and strings are skipped without
/// recursion, so the cost is one pass over the bytes whatever their shape.
/// When the key appears more than once, the last value seen wins (as in
/// `serde_json`). Keys written with escapes (`"str\u0065am"`) are decoded.
pub(crate) fn stream_requested(json: &[u8]) -> bool {
    // Without a backslash a key can spell `stream` only as the eight bytes
    // `"stream"`: a body holding neither cannot ask for a stream, and the
    // scan (the costlier pass) is skipped.
    if !json.contains(&b'\\') && !holds_quoted_stream(json) {
        return false;
    }
    scan_for_stream(json)
}

/// Whether `json` holds the eight bytes `"stream"` (a Horspool search: it
/// looks at about one byte in eight).
fn holds_quoted_stream(json: &[u8]) -> bool {
    const NEEDLE: &[u8; 8] = b"\"stream\"";
    let mut end = NEEDLE.len() - 1;
    while let Some(&c) = json.get(end) {
        if c == b'"' && json[end + 1 - NEEDLE.len()..=end] == *NEEDLE {
            return true;
        }
        // How far the window may move so that `c` meets its last place in
        // the needle (not counting the needle's last byte).
        end += match c {
            b'"' => 7,
            b's' => 6,
            b't' => 5,
            b'r' => 4,
            b'e' => 3,
            b'a' => 2,
            b'm' => 1,
            _ => 8,
        };
    }
    false
}

/// The full scan behind [`stream_requested`]: the last top-level
/// `stream` key seen decides.
fn scan_for_stream(json: &[u8]) -> bool {
    let mut found = false;
    for m in members(json) {
        if key_is(&json[m.key], "stream") {
            found = &json[m.value] == b"true";
        }
    }
    found
}

/// Tracks SSE lines across data frames to tell frames that hold only comment
/// lines (`: keep-alive`) from frames that carry events.
///
/// Lines end at `\n`, `\r` or `\r\n`; a line whose first byte is `:` is a
/// comment. A line may be split across frames.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SseLines {
    at_line_start: bool,
    // Whether the current (or, at a line start, the last) line is a comment.
    comment: bool,
}

impl SseLines {
    pub(crate) const fn new() -> Self {
        SseLines {
            at_line_start: true,
            comment: false,
        }
    }

    /// Feeds the next piece of the body; returns whether it holds only
    /// comment lines (or line ends that close a comment line). An empty
    /// piece is not a comment.
    pub(crate) fn feed(&mut self, chunk: &[u8]) -> bool {
        if chunk.is_empty() {
            return false;
        }
        let was_comment = self.comment;
        let mut content = false;
        let mut saw_comment = false;
        for &b in chunk {
            if b == b'\n' || b == b'\r' {
                self.at_line_start = true;
                continue;
            }
            if self.at_line_start {
                self.at_line_start = false;
                self.comment = b == b':';
            }
            if self.comment {
                saw_comment = true;
            } else {
                content = true;
            }
        }
        !content && (saw_comment || was_comment)
    }
}

/// Encodes a `grpc-timeout` value: at most eight digits and a unit, rounded
/// up so the server's deadline is never before the client's.
pub(crate) fn encode_grpc_timeout(d: Duration) -> HeaderValue {
    const UNITS: [(u128, char); 6] = [
        (1, 'n'),
        (1_000, 'u'),
        (1_000_000, 'm'),
        (1_000_000_000, 'S'),
        (60_000_000_000, 'M'),
        (3_600_000_000_000, 'H'),
    ];
    let nanos = d.as_nanos();
    for (unit, c) in UNITS {
        let v = nanos.div_ceil(unit);
        if v < 100_000_000 {
            return HeaderValue::from_str(&format!("{v}{c}"))
                .expect("digits and a unit are a valid header value");
        }
    }
    HeaderValue::from_static("99999999H")
}

/// Parses a `grpc-timeout` value; `None` when malformed.
pub(crate) fn parse_grpc_timeout(v: &HeaderValue) -> Option<Duration> {
    let b = v.as_bytes();
    let (&unit, digits) = b.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn headers(name: &'static str, value: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_static(value));
        h
    }

    #[test]
    fn accept_headers() {
        assert!(accepts_event_stream(&headers(
            "accept",
            "application/json, TEXT/EVENT-STREAM"
        )));
        assert!(!accepts_event_stream(&headers(
            "accept",
            "application/json"
        )));
    }

    #[test]
    fn stream_flag_at_the_top_level_only() {
        assert!(stream_requested(br#"{"model":"m","stream":true}"#));
        assert!(stream_requested(br#" { "stream" : true , "x": 1 }"#));
        assert!(!stream_requested(br#"{"stream":false}"#));
        assert!(!stream_requested(br#"{"stream":"true"}"#));
        assert!(!stream_requested(br#"{"stream_options":{"stream":true}}"#));
        assert!(!stream_requested(
            br#"{"messages":[{"content":"\"stream\": true"}]}"#
        ));
        assert!(!stream_requested(br#"[{"stream":true}]"#));
        assert!(stream_requested(
            br#"{"a":{"b":[1,{"c":"}"}]},"stream":true}"#
        ));
        // The last occurrence wins.
        assert!(!stream_requested(br#"{"stream":true,"stream":false}"#));
        // Escaped keys are decoded.
        assert!(stream_requested(br#"{"str\u0065am":true}"#));
        // A cut body: seen up to the cut.
        assert!(stream_requested(br#"{"stream":true"#));
        assert!(stream_requested(
            br#"{"stream":true,"messages":[{"content":"hel"#
        ));
        assert!(!stream_requested(br#"{"messages":[{"content":"hel"#));
        assert!(!stream_requested(br#"{"stream":tr"#));
        assert!(!stream_requested(b""));
        assert!(!stream_requested(b"not json"));
    }

    proptest! {
        // The shortcut never changes the answer of the full scan.
        #[test]
        fn the_shortcut_agrees_with_the_scan(
            parts in proptest::collection::vec(
                proptest::sample::select(vec![
                    "{", "}", "[", "]", ":", ",", " ", "\"", "\\", "stream", "\"stream\"",
                    "str", "eam", "true", "false", "1", "\"m\"", "\\u0065", "\\\"",
                ]),
                0..24,
            )
        ) {
            // (`"stream"` at every offset, overlapping quotes, cut needles.)
            let json = parts.concat();
            prop_assert_eq!(
                holds_quoted_stream(json.as_bytes()),
                json.contains("\"stream\"")
            );
            prop_assert_eq!(
                stream_requested(json.as_bytes()),
                scan_for_stream(json.as_bytes())
            );
        }
    }

    #[test]
    fn sse_comment_frames() {
        let mut s = SseLines::new();
        assert!(s.feed(b": keep-alive\n\n"));
        assert!(!s.feed(b"data: {}\n\n"));
        assert!(s.feed(b":ping\r\n"));
        // A comment split across frames.
        assert!(s.feed(b": keep-"));
        assert!(s.feed(b"alive"));
        assert!(s.feed(b"\n"));
        assert!(s.feed(b"\n"));
        // A data line split across frames.
        assert!(!s.feed(b"da"));
        assert!(!s.feed(b"ta: x"));
        assert!(!s.feed(b"\n\n"));
        assert!(!s.feed(b": c\ndata: x\n\n"));
        assert!(!s.feed(b""));
    }

    #[test]
    fn grpc_timeout_round_trip() {
        let enc = |d| encode_grpc_timeout(d).to_str().unwrap().to_owned();
        assert_eq!(enc(Duration::from_secs(300)), "300000m");
        assert_eq!(enc(Duration::from_millis(1500)), "1500000u");
        assert_eq!(enc(Duration::from_nanos(5)), "5n");
        assert_eq!(enc(Duration::from_secs(100_000_000)), "1666667M");
        assert_eq!(enc(Duration::MAX), "99999999H");
        let p = |s: &'static str| parse_grpc_timeout(&HeaderValue::from_static(s));
        assert_eq!(p("300S"), Some(Duration::from_secs(300)));
        assert_eq!(p("2M"), Some(Duration::from_secs(120)));
        assert_eq!(p("123456789S"), None);
        assert_eq!(p("S"), None);
        assert_eq!(p("5x"), None);
    }

    proptest! {
        #[test]
        fn scan_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = stream_requested(&bytes);
            let mut s = SseLines::new();
            let _ = s.feed(&bytes);
        }

        #[test]
        fn scan_agrees_with_serde_on_complete_objects(
            keys in proptest::collection::vec("[a-z_]{1,8}", 0..6),
            stream in proptest::option::of(any::<bool>()),
            nested in any::<bool>(),
        ) {
            let mut obj = serde_json::Map::new();
            for k in &keys {
                if k != "stream" {
                    let v = if nested { serde_json::json!({"stream": true, "s": "\"stream\":true"}) } else { serde_json::json!(k) };
                    obj.insert(k.clone(), v);
                }
            }
            if let Some(s) = stream {
                obj.insert("stream".into(), serde_json::Value::Bool(s));
            }
            let text = serde_json::to_vec(&serde_json::Value::Object(obj)).unwrap();
            prop_assert_eq!(stream_requested(&text), stream == Some(true));
        }

        #[test]
        fn grpc_timeout_never_shortens(nanos in any::<u64>()) {
            let d = Duration::from_nanos(nanos);
            let back = parse_grpc_timeout(&encode_grpc_timeout(d)).unwrap();
            prop_assert!(back >= d);
        }
    }
}
