//! Reading an upstream error response (status, headers, a bounded body
//! prefix) into an [`ApiError`].

use bytes::Bytes;
use http::{HeaderMap, StatusCode};

use super::classify::classify;
use super::dialect::{read_body, Said};
use super::{grpc, ApiError};
use crate::hint::ServerHints;

/// How many bytes of an upstream error body are read by default (8 KiB).
///
/// Enough for every provider's error envelope; a longer body is read up to
/// this many bytes and the rest is discarded.
pub const DEFAULT_BODY_CAP: usize = 8 * 1024;

impl ApiError {
    /// Reads an upstream error response: its status, headers and the first
    /// bytes of its body (the caller bounds `body`; [`DEFAULT_BODY_CAP`] is
    /// the crate's default).
    ///
    /// The status decides the kind, then the body's `type`, `code` and
    /// `message` refine it: a 429 whose code is `insufficient_quota` is
    /// [`ErrorKind::QuotaExhausted`](super::ErrorKind::QuotaExhausted); a 4xx that speaks of balance or billing
    /// is [`ErrorKind::InsufficientBalance`](super::ErrorKind::InsufficientBalance) (status 402); a code or type the
    /// kind knows is kept as the code; a numeric code (some upstreams put the
    /// HTTP status there) is ignored in favour of `type`. The dialects read
    /// are the `{"error":{"message","type","param","code"}}` envelope (with or
    /// without `type`/`param`, `code` as a string or number, or `error` as a
    /// bare string), `{"type":"error","error":{"type","message"}}`, the
    /// envelope wrapped in a one-element array, `{"message": …}`,
    /// `{"detail": …}` (a string, or a list of `{loc, msg}` validation
    /// errors), plain text and an empty body. HTML bodies and bodies that are
    /// cut short get the kind's generic message. Server hints come from the
    /// headers.
    ///
    /// The status of the result is the kind's canonical status, except for
    /// kinds that cover several statuses ([`ErrorKind::InvalidRequest`](super::ErrorKind::InvalidRequest) keeps
    /// `405`, `409`, `413`, `422`…; [`ErrorKind::Internal`](super::ErrorKind::Internal) keeps `501`…).
    ///
    /// ```
    /// use tower_http_resilience::{ApiError, ErrorKind};
    ///
    /// let body = br#"{"error":{"message":"Quota insufficient","type":"insufficient_quota","code":"insufficient_quota"}}"#;
    /// let err = ApiError::from_upstream(http::StatusCode::TOO_MANY_REQUESTS, &http::HeaderMap::new(), body);
    /// assert_eq!(err.kind(), ErrorKind::QuotaExhausted);
    /// assert!(!err.is_retryable());
    /// ```
    pub fn from_upstream(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> ApiError {
        ApiError::from_upstream_prefix(status, headers, body, true)
    }

    /// Like [`ApiError::from_upstream`] for the first bytes of a body that
    /// went on (`complete` is false): the prefix is kept on the error but not
    /// read, since a cut-off body says nothing reliable.
    pub(crate) fn from_upstream_prefix(
        status: StatusCode,
        headers: &HeaderMap,
        body: &[u8],
        complete: bool,
    ) -> ApiError {
        let said = if complete {
            read_body(headers, body)
        } else {
            Said::default()
        };
        let hints = ServerHints::from_headers(headers);
        build(status, said, hints, Some(Bytes::copy_from_slice(body)))
    }

    /// Reads a gRPC status sent in headers (a trailers-only response) or in
    /// trailers; `None` when `grpc-status` is absent, malformed or `0`.
    ///
    /// ```
    /// use tower_http_resilience::{ApiError, ErrorKind};
    ///
    /// let mut trailers = http::HeaderMap::new();
    /// trailers.insert("grpc-status", "14".parse().unwrap());
    /// trailers.insert("grpc-message", "backend%20down".parse().unwrap());
    /// let err = ApiError::from_grpc_headers(&trailers).unwrap();
    /// assert_eq!(err.kind(), ErrorKind::Unavailable);
    /// assert_eq!(err.message(), "backend down");
    /// ```
    pub fn from_grpc_headers(headers: &HeaderMap) -> Option<ApiError> {
        let code = grpc::status_code(headers)?;
        let message = headers
            .get("grpc-message")
            .map(|m| grpc::decode_message(m.as_bytes()))
            .filter(|m| !m.is_empty());
        let mut err = ApiError::from_grpc_code(code, message)?;
        err = err.with_hints(ServerHints::from_headers(headers));
        Some(err)
    }

    /// An error for a gRPC status code and message; `None` for code 0 (`OK`).
    pub fn from_grpc_code(code: i32, message: Option<String>) -> Option<ApiError> {
        let (kind, status) = grpc::kind_for_code(code)?;
        let mut err = ApiError::new(kind).with_status(status);
        if let Some(m) = message {
            err = err.with_message(m);
        }
        if (1..=16).contains(&code) {
            err.set_grpc_code(code);
        }
        Some(err)
    }
}

fn build(status: StatusCode, said: Said, hints: ServerHints, body: Option<Bytes>) -> ApiError {
    let verdict = classify(status, &said);
    let mut err = ApiError::new(verdict.kind)
        .with_status(verdict.status)
        .with_hints(hints);
    if let Some(code) = verdict.code {
        err = err.with_code(code);
    }
    if let Some(m) = said.message.filter(|m| !m.trim().is_empty()) {
        err = err.with_message(m);
    }
    if let Some(p) = verdict.param {
        err = err.with_param(p);
    }
    err.set_upstream(status, body.filter(|b| !b.is_empty()));
    err
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;
    use proptest::prelude::*;
    use serde_json::Value;

    fn read(status: u16, body: &str) -> ApiError {
        ApiError::from_upstream(
            StatusCode::from_u16(status).unwrap(),
            &HeaderMap::new(),
            body.as_bytes(),
        )
    }

    #[test]
    fn dialects() {
        let e = read(
            529,
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        );
        assert_eq!(
            (e.kind(), e.status().as_u16(), e.code()),
            (ErrorKind::Unavailable, 503, "overloaded")
        );
        assert_eq!(e.message(), "Overloaded");

        let e = read(
            400,
            r#"{"message":"bad temperature","param":"temperature"}"#,
        );
        assert_eq!(
            (e.code(), e.param()),
            ("invalid_value", Some("temperature"))
        );
        assert_eq!(e.message(), "bad temperature");

        let e = read(
            422,
            r#"{"detail":[{"loc":["body","messages"],"msg":"field required","type":"value_error.missing"}]}"#,
        );
        assert_eq!(
            (e.status().as_u16(), e.message(), e.param()),
            (422, "field required", Some("messages"))
        );

        let e = read(404, r#"{"detail":"Not Found"}"#);
        assert_eq!(
            (e.kind(), e.code(), e.message()),
            (ErrorKind::NotFound, "not_found", "Not Found")
        );

        let e = read(
            429,
            r#"[{"error":{"code":429,"message":"Resource has been exhausted","status":"RESOURCE_EXHAUSTED"}}]"#,
        );
        assert_eq!(
            (e.kind(), e.code()),
            (ErrorKind::RateLimited, "rate_limit_exceeded")
        );

        let e = read(500, r#"{"error":"something broke"}"#);
        assert_eq!(
            (e.kind(), e.message()),
            (ErrorKind::Internal, "something broke")
        );

        let e = read(
            502,
            "upstream connect error or disconnect/reset before headers\nmore",
        );
        assert_eq!(
            e.message(),
            "upstream connect error or disconnect/reset before headers"
        );

        let e = read(503, "");
        assert_eq!(e.message(), "the service is unavailable");
        assert!(e.upstream_body().is_none());

        let e = read(500, r#"{"error":{"message":"cut sho"#);
        assert_eq!(
            (e.kind(), e.message()),
            (ErrorKind::Internal, "internal error")
        );

        let e = read(405, "");
        assert_eq!((e.status().as_u16(), e.code()), (405, "method_not_allowed"));

        let e = read(
            400,
            r#"{"error":{"message":"This model's maximum context length is 8192 tokens"}}"#,
        );
        assert_eq!(e.kind(), ErrorKind::ContextLengthExceeded);

        let e = read(
            403,
            r#"{"error":{"message":"Your credit balance is too low"}}"#,
        );
        assert_eq!(
            (e.kind(), e.status().as_u16()),
            (ErrorKind::InsufficientBalance, 402)
        );

        let e = read(501, "");
        assert_eq!((e.kind(), e.status().as_u16()), (ErrorKind::Internal, 501));
    }

    #[test]
    fn our_own_envelope_reads_back_as_the_same_kind() {
        for kind in ErrorKind::ALL {
            for code in kind.known_codes() {
                let sent = ApiError::new(kind).with_code(*code);
                let res = sent.to_response::<Bytes>();
                let back = ApiError::from_upstream(res.status(), res.headers(), res.body());
                assert_eq!(
                    (back.kind(), back.code(), back.status()),
                    (kind, *code, sent.status()),
                    "{kind:?} {code}"
                );
            }
        }
    }

    #[test]
    fn framework_rejections() {
        let e = read(422, "Failed to deserialize the JSON body into the target type: missing field `model` at line 1 column 2");
        assert_eq!(
            (e.status().as_u16(), e.code(), e.param()),
            (422, "missing_required_field", Some("model"))
        );
        let e = read(
            400,
            "Failed to parse the request body as JSON: key must be a string at line 1 column 2",
        );
        assert_eq!((e.status().as_u16(), e.code()), (400, "invalid_json"));
        let e = read(
            415,
            "Expected request with `Content-Type: application/json`",
        );
        assert_eq!(e.code(), "unsupported_media_type");
        let e = read(
            413,
            "Failed to buffer the request body: length limit exceeded",
        );
        assert_eq!(e.code(), "request_too_large");
    }

    #[test]
    fn grpc_headers() {
        let mut h = HeaderMap::new();
        assert!(ApiError::from_grpc_headers(&h).is_none());
        h.insert("grpc-status", "0".parse().unwrap());
        assert!(ApiError::from_grpc_headers(&h).is_none());
        h.insert("grpc-status", "8".parse().unwrap());
        h.insert("grpc-retry-pushback-ms", "1500".parse().unwrap());
        let e = ApiError::from_grpc_headers(&h).unwrap();
        assert_eq!(e.kind(), ErrorKind::RateLimited);
        assert_eq!(
            e.retry_after(),
            Some(std::time::Duration::from_millis(1500))
        );
        h.insert("grpc-status", "banana".parse().unwrap());
        assert!(ApiError::from_grpc_headers(&h).is_none());
    }

    proptest! {
        #[test]
        fn any_bytes_give_an_error_of_the_status_family(
            status in 400u16..600,
            body in proptest::collection::vec(any::<u8>(), 0..256),
        ) {
            let e = ApiError::from_upstream(StatusCode::from_u16(status).unwrap(), &HeaderMap::new(), &body);
            prop_assert!(e.status().as_u16() >= 400);
            prop_assert_eq!(e.status().is_server_error(), status >= 500);
            prop_assert!(e.message().len() <= super::super::api_error::MAX_MESSAGE_LEN);
            prop_assert!(serde_json::from_slice::<Value>(&e.to_json()).is_ok());
        }

        #[test]
        fn json_like_garbage_never_panics(s in r#"[\[\]{}":,a-z0-9 ]{0,128}"#) {
            let e = ApiError::from_upstream(StatusCode::BAD_GATEWAY, &HeaderMap::new(), s.as_bytes());
            prop_assert_eq!(e.kind(), ErrorKind::Upstream);
        }
    }
}
