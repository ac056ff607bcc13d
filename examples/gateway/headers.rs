//! The headers the gateway reads, sets and drops.

use http::header::{self, HeaderName, HeaderValue};
use http::HeaderMap;

/// The request id header, on every response.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// The target that answered (or failed last), on every forwarded call.
pub const X_GATEWAY_TARGET: HeaderName = HeaderName::from_static("x-gateway-target");
/// Every attempt sent, on every forwarded call.
pub const X_GATEWAY_ATTEMPTS: HeaderName = HeaderName::from_static("x-gateway-attempts");

/// The longest request id echoed, in bytes.
const MAX_REQUEST_ID: usize = 128;

/// Headers of one connection, not of the message (RFC 9110 §7.6.1), and
/// the proxy's own, dropped in both directions.
const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHORIZATION,
    header::PROXY_AUTHENTICATE,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// The request's `x-request-id` when it is sane (1 to 128 printable ASCII
/// characters), else a new `req_…` id.
pub fn request_id(headers: &HeaderMap) -> HeaderValue {
    headers
        .get(X_REQUEST_ID)
        .filter(|v| {
            let b = v.as_bytes();
            !b.is_empty() && b.len() <= MAX_REQUEST_ID && b.iter().all(u8::is_ascii_graphic)
        })
        .cloned()
        .unwrap_or_else(|| {
            HeaderValue::try_from(format!("req_{:032x}", fastrand::u128(..)))
                .expect("hex digits make a header value")
        })
}

/// What a model name becomes in the gateway's own names (the log line,
/// `x-gateway-target`, a breaker key, a metric label): `[redacted]` when
/// it holds one of the request's credentials (a token of 8 or more
/// characters of its `authorization`, `x-api-key` or `api-key`, any case)
/// or is shaped like a key (`sk-…`, `sk_…`, `AIza…`, a JWT); else itself.
/// The body sent upstream keeps the name as the client wrote it.
pub fn model_name(model: String, headers: &HeaderMap) -> String {
    let lower = model.to_ascii_lowercase();
    let shaped = ["sk-", "sk_", "aiza", "eyj"]
        .iter()
        .any(|p| lower.starts_with(p) && model.len() >= 20);
    let holds_credential = CREDENTIALS
        .iter()
        .flat_map(|name| headers.get_all(name))
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(|c: char| !is_token_char(c)))
        .filter(|token| token.len() >= 8)
        .any(|token| lower.contains(&token.to_ascii_lowercase()));
    if shaped || holds_credential {
        "[redacted]".to_owned()
    } else {
        model
    }
}

/// The request headers that carry a credential.
const CREDENTIALS: [HeaderName; 3] = [
    header::AUTHORIZATION,
    HeaderName::from_static("x-api-key"),
    HeaderName::from_static("api-key"),
];

/// A character of a credential token: letters, digits and `-._~+/=`.
fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-._~+/=".contains(c)
}

/// Drops the hop-by-hop headers, and every header `Connection` names.
pub fn drop_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in HOP_BY_HOP.iter().chain(&named) {
        headers.remove(name);
    }
}

/// Whether the message is an event stream (`text/event-stream`, any case).
pub fn is_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("text/event-stream"))
}

/// Whether the body is content-encoded (gzip, br, …).
pub fn is_encoded(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_ENCODING)
        .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn drops_hop_by_hop_and_what_connection_names() {
        let mut h = map(&[
            ("connection", "keep-alive, X-Secret"),
            ("connection", "x-other"),
            ("x-secret", "1"),
            ("x-other", "1"),
            ("proxy-authorization", "Basic Zm9v"),
            ("te", "trailers"),
            ("upgrade", "websocket"),
            ("authorization", "Bearer sk-keep"),
            ("content-type", "application/json"),
        ]);
        drop_hop_by_hop(&mut h);
        let mut left: Vec<_> = h.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["authorization", "content-type"]);
    }

    #[test]
    fn model_names_holding_a_credential_are_not_used_as_names() {
        let h = map(&[("authorization", "Bearer sk-proj-abcDEF1234567890xyz")]);
        for model in [
            "sk-proj-abcDEF1234567890xyz",
            "api_key=SK-PROJ-ABCDEF1234567890XYZ",
            "Bearer%20sk-proj-abcDEF1234567890xyz",
        ] {
            assert_eq!(model_name(model.into(), &h), "[redacted]", "{model}");
        }
        let other = map(&[("x-api-key", "0123456789abcdef")]);
        assert_eq!(
            model_name("m-0123456789abcdef".into(), &other),
            "[redacted]"
        );
        assert_eq!(
            model_name("sk-0000000000000000000000".into(), &map(&[])),
            "[redacted]"
        );
        // Ordinary names, and short credential words, stay.
        assert_eq!(model_name("gpt-4o-mini".into(), &h), "gpt-4o-mini");
        let short = map(&[("authorization", "Bearer gpt")]);
        assert_eq!(model_name("gpt-4o".into(), &short), "gpt-4o");
    }

    #[test]
    fn request_ids_are_echoed_only_when_sane() {
        assert_eq!(request_id(&map(&[("x-request-id", "abc-123")])), "abc-123");
        for insane in ["a b", &"x".repeat(129)] {
            let id = request_id(&map(&[("x-request-id", insane)]));
            assert!(id.to_str().unwrap().starts_with("req_"), "{insane}");
        }
        let id = request_id(&HeaderMap::new());
        assert_eq!(id.len(), 36);
    }
}
