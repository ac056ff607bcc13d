//! Reading an upstream error response (status, headers, a bounded body
//! prefix) into an [`ApiError`].

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use serde_json::Value;

use super::{api_error::default_message, grpc, ApiError, ErrorKind};
use crate::hint::ServerHints;

/// How many bytes of an upstream error body are read by default (8 KiB).
///
/// Enough for every provider's error envelope; a longer body is read up to
/// this many bytes and the rest is discarded.
pub const DEFAULT_BODY_CAP: usize = 8 * 1024;

/// The longest plain-text body kept as a message.
const MAX_TEXT_MESSAGE: usize = 512;

/// What a body said, in any dialect.
#[derive(Debug, Default)]
struct Said {
    message: Option<String>,
    ty: Option<String>,
    code: Option<String>,
    param: Option<String>,
}

impl ApiError {
    /// Reads an upstream error response: its status, headers and the first
    /// bytes of its body (the caller bounds `body`; [`DEFAULT_BODY_CAP`] is
    /// the crate's default).
    ///
    /// The status decides the kind, then the body's `type`, `code` and
    /// `message` refine it: a 429 whose code is `insufficient_quota` is
    /// [`ErrorKind::QuotaExhausted`]; a 4xx that speaks of balance or billing
    /// is [`ErrorKind::InsufficientBalance`] (status 402); a code or type the
    /// kind knows is kept as the code; a numeric code (Token360 puts the
    /// status there) is ignored in favour of `type`. The dialects read are the
    /// OpenAI envelope (with or without `type`/`param`, `code` as a string or
    /// number, or `error` as a bare string), Anthropic's
    /// `{"type":"error","error":{…}}`, Google's array-wrapped envelope,
    /// `{"message": …}`, FastAPI's `{"detail": …}`, plain text and an empty
    /// body. HTML bodies and bodies that are cut short get the kind's generic
    /// message. Server hints come from the headers.
    ///
    /// The status of the result is the kind's canonical status, except for
    /// kinds that cover several statuses ([`ErrorKind::InvalidRequest`] keeps
    /// `405`, `409`, `413`, `422`…; [`ErrorKind::Internal`] keeps `501`…).
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
    let (kind, status_out, mut code) = classify(status, &said);
    let mut param = said.param;
    if kind == ErrorKind::InvalidRequest && code.is_none() {
        // Framework rejections say what is wrong only in words (axum, serde).
        let message = said.message.as_deref().unwrap_or("");
        if let Some(field) = missing_field(message) {
            code = Some("missing_required_field".to_owned());
            param = param.or(Some(field));
        } else if speaks_of_bad_json(message) {
            code = Some("invalid_json".to_owned());
        }
    }
    let mut err = ApiError::new(kind)
        .with_status(status_out)
        .with_hints(hints);
    if let Some(code) = code {
        err = err.with_code(code);
    }
    if let Some(m) = said.message.filter(|m| !m.trim().is_empty()) {
        err = err.with_message(m);
    } else {
        err = err.with_message(default_message(kind));
    }
    if let Some(p) = param {
        err = err.with_param(p);
    }
    err.set_upstream(status, body.filter(|b| !b.is_empty()));
    err
}

/// Decides kind, status and code from what the body said.
fn classify(status: StatusCode, said: &Said) -> (ErrorKind, StatusCode, Option<String>) {
    let mut kind = ErrorKind::from_status(status);
    // Candidates for the code: a non-numeric `code`, then `type`.
    let code = said
        .code
        .as_deref()
        .map(normalize_token)
        .filter(|c| !c.is_empty() && !c.bytes().all(|b| b.is_ascii_digit()));
    let ty = said.ty.as_deref().map(normalize_token);
    let candidates = [code.as_deref(), ty.as_deref()];
    let said_any = |names: &[&str]| candidates.iter().flatten().any(|c| names.contains(c));
    let message = said.message.as_deref().unwrap_or("").to_lowercase();

    if status.is_client_error() {
        if said_any(&[
            "insufficient_balance",
            "billing_error",
            "insufficient_credits",
            "payment_required",
        ]) || (status == StatusCode::FORBIDDEN && speaks_of_balance(&message))
        {
            kind = ErrorKind::InsufficientBalance;
        } else if status == StatusCode::TOO_MANY_REQUESTS
            && said_any(&["insufficient_quota", "quota_exceeded"])
        {
            kind = ErrorKind::QuotaExhausted;
        } else if matches!(kind, ErrorKind::InvalidRequest)
            && (said_any(&["context_length_exceeded"])
                || message.contains("context length")
                || message.contains("context_length_exceeded")
                || message.contains("maximum context"))
        {
            kind = ErrorKind::ContextLengthExceeded;
        }
    }

    // A known code of another kind with the same status names that kind
    // (503 `circuit_open`, 429 `insufficient_quota`, 400
    // `context_length_exceeded`, …).
    // The code is looked at before the type.
    for c in candidates.iter().flatten() {
        if kind.known_codes().contains(c) {
            break;
        }
        if let Some(k) = ErrorKind::ALL
            .iter()
            .find(|k| k.status() == kind.status() && k.known_codes().contains(c))
        {
            kind = *k;
            break;
        }
    }

    let status_out = match kind {
        // These kinds cover several statuses; keep the one sent.
        ErrorKind::InvalidRequest | ErrorKind::Internal => status,
        ErrorKind::Timeout if status == StatusCode::REQUEST_TIMEOUT => status,
        _ => kind.status(),
    };

    let known = kind.known_codes();
    let mut out = candidates
        .iter()
        .flatten()
        .find_map(|c| known.iter().find(|k| *k == c).map(|k| (*k).to_owned()));
    if out.is_none() {
        out = match kind {
            ErrorKind::Unavailable
                if status.as_u16() == 529 || said_any(&["overloaded", "overloaded_error"]) =>
            {
                Some("overloaded".to_owned())
            }
            ErrorKind::NotFound
                if message.contains("model") || said.param.as_deref() == Some("model") =>
            {
                Some("model_not_found".to_owned())
            }
            ErrorKind::InvalidRequest => match status.as_u16() {
                405 => Some("method_not_allowed".to_owned()),
                409 => Some("conflict".to_owned()),
                413 => Some("request_too_large".to_owned()),
                415 => Some("unsupported_media_type".to_owned()),
                _ => None,
            },
            _ => None,
        };
    }
    (kind, status_out, out)
}

/// `missing field `model`` (serde) → `model`.
fn missing_field(message: &str) -> Option<String> {
    let rest = &message[message.find("missing field `")? + "missing field `".len()..];
    let field = &rest[..rest.find('`')?];
    let ok = !field.is_empty()
        && field.len() <= 64
        && field
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.');
    ok.then(|| field.to_owned())
}

fn speaks_of_bad_json(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("json")
        && (m.contains("parse") || m.contains("syntax") || m.contains("invalid json"))
}

fn speaks_of_balance(message: &str) -> bool {
    ["balance", "billing", "credit", "余额", "欠费"]
        .iter()
        .any(|w| message.contains(w))
}

fn normalize_token(s: &str) -> String {
    s.trim().to_ascii_lowercase()
}

/// Reads what a body says, whatever its dialect.
fn read_body(headers: &HeaderMap, body: &[u8]) -> Said {
    let trimmed = trim(body);
    if trimmed.is_empty() {
        return Said::default();
    }
    if matches!(trimmed[0], b'{' | b'[') {
        if let Ok(v) = serde_json::from_slice::<Value>(trimmed) {
            return read_json(&v);
        }
        // JSON cut short or malformed: the status decides alone.
        return Said::default();
    }
    let is_html = headers
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|ct| ct.as_bytes().starts_with(b"text/html"))
        || trimmed[0] == b'<';
    if is_html {
        return Said::default();
    }
    // Plain text: the first line, if it is text.
    match std::str::from_utf8(trimmed) {
        Ok(text) => {
            let line = text.lines().next().unwrap_or("").trim();
            if line.is_empty() || line.chars().any(|c| c.is_control() && c != '\t') {
                return Said::default();
            }
            Said {
                message: Some(crate::util::truncate(line, MAX_TEXT_MESSAGE).to_owned()),
                ..Said::default()
            }
        }
        Err(_) => Said::default(),
    }
}

fn read_json(v: &Value) -> Said {
    // Google wraps the envelope in an array.
    let v = match v {
        Value::Array(items) => match items.first() {
            Some(first) => first,
            None => return Said::default(),
        },
        other => other,
    };
    let Value::Object(top) = v else {
        return Said::default();
    };
    match top.get("error") {
        Some(Value::Object(err)) => Said {
            message: string(err.get("message").or_else(|| err.get("msg"))),
            ty: string(err.get("type")).or_else(|| string(err.get("status"))),
            code: string(err.get("code")),
            param: string(err.get("param")),
        },
        Some(Value::String(message)) => Said {
            message: Some(message.clone()),
            ty: string(top.get("type")).filter(|t| t != "error"),
            code: string(top.get("code")),
            param: string(top.get("param")),
        },
        _ => {
            let mut said = Said {
                message: string(top.get("message")),
                ty: string(top.get("type")).filter(|t| t != "error"),
                code: string(top.get("code")),
                param: string(top.get("param")),
            };
            match top.get("detail") {
                Some(Value::String(d)) if said.message.is_none() => said.message = Some(d.clone()),
                // FastAPI validation errors: a list of {loc, msg, type}.
                Some(Value::Array(items)) if said.message.is_none() => {
                    if let Some(Value::Object(first)) = items.first() {
                        said.message = string(first.get("msg"));
                        if said.param.is_none() {
                            said.param = first
                                .get("loc")
                                .and_then(Value::as_array)
                                .and_then(|loc| loc.last())
                                .and_then(|l| string(Some(l)));
                        }
                    }
                }
                _ => {}
            }
            said
        }
    }
}

/// A JSON string or number as a string; anything else is absent.
fn string(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn trim(mut s: &[u8]) -> &[u8] {
    // A UTF-8 byte-order mark counts as white space here.
    if let Some(rest) = s.strip_prefix(b"\xEF\xBB\xBF") {
        s = rest;
    }
    let start = s
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &s[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

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
