//! Reading a message's `content-type`, the same way in every layer.

// The request checks use only the JSON test.
#![cfg_attr(not(any(feature = "normalize", feature = "timeout")), allow(dead_code))]

use http::header::CONTENT_TYPE;
use http::HeaderMap;

/// Whether the content type is `application/grpc` (any `+proto` / `+json`
/// variant), in any case.
pub(crate) fn is_grpc(headers: &HeaderMap) -> bool {
    media_type(headers).is_some_and(is_grpc_media_type)
}

fn is_grpc_media_type(m: &[u8]) -> bool {
    m.len() >= 16
        && m[..16].eq_ignore_ascii_case(b"application/grpc")
        && (m.len() == 16 || m[16] == b'+')
}

/// What a response's content type says about streaming.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ResponseKind {
    EventStream,
    Grpc,
    Other,
}

/// Reads the content type once: an event stream, gRPC, or anything else.
pub(crate) fn response_kind(headers: &HeaderMap) -> ResponseKind {
    match media_type(headers) {
        Some(m) if m.eq_ignore_ascii_case(b"text/event-stream") => ResponseKind::EventStream,
        Some(m) if is_grpc_media_type(m) => ResponseKind::Grpc,
        _ => ResponseKind::Other,
    }
}

/// Whether the content type is JSON: `application/json` or any `…/…+json`.
#[cfg(any(feature = "timeout", feature = "check"))]
pub(crate) fn is_json(headers: &HeaderMap) -> bool {
    media_type(headers).is_some_and(|m| {
        m.eq_ignore_ascii_case(b"application/json")
            || (m.len() > 5 && m[m.len() - 5..].eq_ignore_ascii_case(b"+json") && m.contains(&b'/'))
    })
}

/// The media type of `content-type`, without parameters and white space.
fn media_type(headers: &HeaderMap) -> Option<&[u8]> {
    let v = headers.get(CONTENT_TYPE)?.as_bytes();
    let end = v.iter().position(|&b| b == b';').unwrap_or(v.len());
    Some(v[..end].trim_ascii())
}

/// Whether the content type is `text/event-stream`, in any case.
#[cfg(feature = "normalize")]
pub(crate) fn is_event_stream(headers: &HeaderMap) -> bool {
    response_kind(headers) == ResponseKind::EventStream
}

#[cfg(all(test, feature = "normalize", feature = "timeout"))]
mod tests {
    use super::*;

    fn ct(v: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_TYPE, http::HeaderValue::from_static(v));
        h
    }

    #[test]
    fn media_types() {
        assert_eq!(
            response_kind(&ct("application/grpc+proto")),
            ResponseKind::Grpc
        );
        assert_eq!(response_kind(&ct("application/json")), ResponseKind::Other);
        assert!(is_grpc(&ct("application/grpc")));
        assert!(is_grpc(&ct("Application/GRPC+proto")));
        assert!(!is_grpc(&ct("application/grpcx")));
        assert!(is_event_stream(&ct("text/event-stream")));
        assert!(is_event_stream(&ct("Text/Event-Stream; charset=utf-8")));
        assert!(!is_event_stream(&ct("text/event-streams")));
        assert!(!is_event_stream(&HeaderMap::new()));
        assert!(is_json(&ct("application/json")));
        assert!(is_json(&ct("application/json; charset=utf-8")));
        assert!(is_json(&ct("application/vnd.api+json")));
        assert!(!is_json(&ct("text/plain")));
        assert!(!is_json(&ct("+json")));
    }
}
