//! Answering a failure in the canonical form: an error response of the inner
//! service rewritten, an error rendered, credentials removed.

use std::any::Any;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{HeaderMap, Response, StatusCode};

use super::body::NormalizeBody;
use super::secrets::Secrets;
use crate::call::{is_retried_out, retried_out};
use crate::error::redact::{redact_body, redact_str, Needles};
use crate::error::render::{X_REQUEST_ID, X_SHOULD_RETRY};
use crate::{ApiError, BoxError, ErrorKind};

/// What a response future knows about the call it answers.
#[derive(Debug)]
pub(crate) struct Call {
    pub(crate) grpc: bool,
    pub(crate) request_id: Option<HeaderValue>,
    pub(crate) body_cap: usize,
    pub(crate) secrets: Secrets,
}

/// An error the inner service returned: mapped, and logged (without
/// credentials) when it is not one the crate knows; its details stay off the
/// wire.
pub(crate) fn from_inner_error(err: BoxError, needles: &dyn Needles) -> ApiError {
    if !ApiError::is_recognised(&*err) {
        let text = err.to_string();
        let text = redact_str(&text, needles).unwrap_or(text);
        tracing::error!(error = %text, "unhandled error answered as 500");
    }
    ApiError::from_error(err)
}

/// A panic of the inner service: logged (without credentials), answered as
/// a generic 500.
pub(crate) fn from_panic(panic: Box<dyn Any + Send>, needles: &dyn Needles) -> ApiError {
    let detail = panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)");
    let clean = redact_str(detail, needles);
    let detail = clean.as_deref().unwrap_or(detail);
    tracing::error!(panic = detail, "handler panicked; answered as 500");
    ApiError::new(ErrorKind::Internal)
}

/// A new request id: `req_` and 32 hex digits.
pub(crate) fn generate_request_id() -> String {
    format!("req_{:032x}", fastrand::u128(..))
}

fn new_request_id_header() -> HeaderValue {
    HeaderValue::from_str(&generate_request_id()).expect("hex is ASCII")
}

/// Makes sure an error response carries an `x-request-id`.
pub(crate) fn ensure_request_id(headers: &mut HeaderMap, ours: Option<HeaderValue>) {
    if !headers.contains_key(X_REQUEST_ID) {
        headers.insert(X_REQUEST_ID, ours.unwrap_or_else(new_request_id_header));
    }
}

fn set_request_id(err: &mut ApiError, from_request: Option<HeaderValue>) {
    let id = from_request
        .and_then(|v| v.to_str().ok().map(str::to_owned))
        .unwrap_or_else(generate_request_id);
    err.replace_request_id(id);
}

/// Renders an error the layer or the inner service produced.
pub(crate) fn render<B>(mut err: ApiError, call: &mut Call) -> Response<NormalizeBody<B>> {
    set_request_id(&mut err, call.request_id.take());
    err.redact(&call.secrets);
    let mut res = if call.grpc {
        err.to_grpc_response::<Bytes>()
    } else {
        err.to_response::<Bytes>()
    };
    res.extensions_mut().extend(err.extensions().clone());
    res.extensions_mut().insert(err);
    res.map(NormalizeBody::full)
}

/// Headers of the original error response that do not survive a rewrite.
const DROPPED: [header::HeaderName; 5] = [
    header::CONTENT_TYPE,
    header::CONTENT_LENGTH,
    header::CONTENT_ENCODING,
    header::TRANSFER_ENCODING,
    header::ETAG,
];

/// Says `x-should-retry: false` on an error response this crate rendered
/// when the stack already retried the call.
pub(crate) fn overrule_should_retry<B>(res: &mut Response<B>) {
    if is_retried_out(res.extensions()) {
        let no = HeaderValue::from_static("false");
        res.headers_mut().insert(X_SHOULD_RETRY, no);
    }
}

/// An error response this crate rendered (inside, or in a handler), read
/// whole: passed on without the call's credentials.
pub(crate) fn scrub_rendered<B>(
    mut parts: http::response::Parts,
    data: Bytes,
    complete: bool,
    call: &mut Call,
) -> Response<NormalizeBody<B>> {
    if !complete {
        // Longer than the cap: answered from its status alone.
        return rewrite(parts, data, complete, call);
    }
    let data = redact_body(&data, &call.secrets, true).unwrap_or(data);
    parts.headers.remove(header::CONTENT_LENGTH);
    if is_retried_out(&parts.extensions) {
        parts
            .headers
            .insert(X_SHOULD_RETRY, HeaderValue::from_static("false"));
    }
    call.secrets.scrub_headers(&mut parts.headers, true);
    call.secrets.scrub_reason(&mut parts.extensions, true);
    if let Some(err) = parts.extensions.get_mut::<ApiError>() {
        err.redact(&call.secrets);
    }
    Response::from_parts(parts, NormalizeBody::full(data))
}

/// Answers an error response of the inner service in the canonical form,
/// without the call's credentials.
pub(crate) fn rewrite<B>(
    mut parts: http::response::Parts,
    data: Bytes,
    complete: bool,
    call: &mut Call,
) -> Response<NormalizeBody<B>> {
    let data = redact_body(&data, &call.secrets, complete).unwrap_or(data);
    call.secrets.scrub_headers(&mut parts.headers, true);
    call.secrets.scrub_reason(&mut parts.extensions, true);
    if let Some(read) = (complete && !call.grpc)
        .then(|| canonical(parts.status, &parts.headers, &data))
        .flatten()
    {
        return pass_canonical(parts, data, read, call.request_id.take());
    }
    let prefix = &data[..data.len().min(call.body_cap)];
    let mut err = ApiError::from_upstream_prefix(parts.status, &parts.headers, prefix, complete);
    if is_retried_out(&parts.extensions) {
        err = retried_out(err);
    }
    let id = call
        .request_id
        .take()
        .or_else(|| parts.headers.get(X_REQUEST_ID).cloned());
    set_request_id(&mut err, id);
    err.redact(&call.secrets);
    let rendered = if call.grpc {
        err.to_grpc_response::<Bytes>()
    } else {
        err.to_response::<Bytes>()
    };
    let (mut new_parts, body) = rendered.into_parts();
    if !call.grpc {
        // Keep what the original said besides its body (`allow` on a 405,
        // `www-authenticate` on a 401, rate-limit headers, …).
        for name in DROPPED {
            parts.headers.remove(name);
        }
        for (name, value) in new_parts.headers.drain() {
            if let Some(name) = name {
                parts.headers.insert(name, value);
            }
        }
        new_parts.headers = parts.headers;
    }
    new_parts.extensions = parts.extensions;
    // The reason phrase hyper kept from the original status would go on the
    // wire next to the new one (`503 <none>` for an upstream 529).
    #[cfg(feature = "hyper")]
    new_parts.extensions.remove::<hyper::ext::ReasonPhrase>();
    new_parts.extensions.insert(err);
    Response::from_parts(new_parts, NormalizeBody::full(body))
}

/// An error body that already is the envelope: passed on (credentials
/// already removed), with a request id and `x-should-retry`.
fn pass_canonical<B>(
    mut parts: http::response::Parts,
    data: Bytes,
    read: ApiError,
    request_id: Option<HeaderValue>,
) -> Response<NormalizeBody<B>> {
    let headers = &mut parts.headers;
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.remove(header::CONTENT_LENGTH);
    let read = if is_retried_out(&parts.extensions) {
        // What the upstream said is overruled: the stack retried it.
        headers.remove(X_SHOULD_RETRY);
        retried_out(read)
    } else {
        read
    };
    if !headers.contains_key(X_SHOULD_RETRY) {
        headers.insert(X_SHOULD_RETRY, read.should_retry_header());
    }
    ensure_request_id(headers, request_id);
    parts.extensions.insert(read);
    Response::from_parts(parts, NormalizeBody::full(data))
}

/// The error a body states when it is already the canonical envelope,
/// consistent with its status: exactly
/// `{"error":{"message","type","param","code"}}`, and a type and code the
/// crate would give that status and body itself.
fn canonical(status: StatusCode, headers: &HeaderMap, data: &[u8]) -> Option<ApiError> {
    let Ok(serde_json::Value::Object(top)) = serde_json::from_slice::<serde_json::Value>(data)
    else {
        return None;
    };
    let Some(serde_json::Value::Object(err)) = top.get("error") else {
        return None;
    };
    let shaped = top.len() == 1
        && err.len() == 4
        && err.get("message").is_some_and(serde_json::Value::is_string)
        && err
            .get("param")
            .is_some_and(|p| p.is_null() || p.is_string());
    let ty = err.get("type").and_then(serde_json::Value::as_str)?;
    let code = err.get("code").and_then(serde_json::Value::as_str)?;
    if !shaped {
        return None;
    }
    let read = ApiError::from_upstream(status, headers, data);
    (read.status() == status && read.error_type() == ty && read.code() == code).then_some(read)
}

/// The upstream's own request id (for support tickets) wins over ours.
pub(crate) fn set_client_request_id(
    err: &mut ApiError,
    headers: &HeaderMap,
    ours: Option<HeaderValue>,
) {
    let theirs = ["x-request-id", "request-id", "x-trace-id", "trace-id"]
        .iter()
        .find_map(|name| headers.get(*name));
    let id = theirs.cloned().or(ours);
    if let Some(id) = id.and_then(|v| v.to_str().ok().map(str::to_owned)) {
        err.set_request_id_if_absent(|| Some(id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_detection() {
        let c = |status: u16, body: &[u8]| {
            canonical(
                StatusCode::from_u16(status).unwrap(),
                &HeaderMap::new(),
                body,
            )
            .is_some()
        };
        let ok = br#"{"error":{"message":"m","type":"rate_limit_error","param":null,"code":"rate_limit_exceeded"}}"#;
        assert!(c(429, ok));
        assert!(!c(500, ok), "type and status disagree");
        assert!(!c(
            429,
            br#"{"error":{"message":"m","type":"whatever","param":null,"code":"x"}}"#
        ));
        assert!(!c(
            500,
            br#"{"error":{"message":"m","type":"api_error","code":"internal_error"}}"#
        ));
        assert!(!c(404, br#"{"detail":"Not Found"}"#));
        assert!(!c(404, b"Not Found"));
    }

    #[test]
    fn request_ids_look_right() {
        let id = generate_request_id();
        assert_eq!(id.len(), 36);
        assert!(id.starts_with("req_"));
        assert_ne!(id, generate_request_id());
    }
}
