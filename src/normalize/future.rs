//! Response futures of the normalization services.

use std::any::Any;
use std::convert::Infallible;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use futures_util::future::{CatchUnwind, FutureExt};
use http::header::{self, HeaderValue};
use http::{HeaderMap, Response};
use http_body::Body;
use pin_project_lite::pin_project;

use super::body::{Mode, NormalizeBody};
use crate::body::{Peek, PeekEnd};
use crate::call::{is_retried_out, retried_out};
use crate::content_type::is_event_stream;
use crate::error::render::{is_error_status, is_rendered, X_REQUEST_ID, X_SHOULD_RETRY};
use crate::{ApiError, BoxError};

pin_project! {
    /// Response future of [`Normalize`](super::Normalize).
    pub struct ResponseFuture<F, B> {
        #[pin]
        state: State<F, B>,
        grpc: bool,
        request_id: Option<HeaderValue>,
        body_cap: usize,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, B> {
        Call { #[pin] future: CatchUnwind<AssertUnwindSafe<F>> },
        Read { #[pin] peek: Peek<B>, parts: Option<http::response::Parts> },
        Failed { error: Option<ApiError> },
    }
}

impl<F: Future, B> ResponseFuture<F, B> {
    pub(crate) fn called(
        future: F,
        grpc: bool,
        request_id: Option<HeaderValue>,
        body_cap: usize,
    ) -> Self {
        ResponseFuture {
            state: State::Call {
                future: AssertUnwindSafe(future).catch_unwind(),
            },
            grpc,
            request_id,
            body_cap,
        }
    }
}

impl<F, B> ResponseFuture<F, B> {
    pub(crate) fn failed(
        error: ApiError,
        grpc: bool,
        request_id: Option<HeaderValue>,
        body_cap: usize,
    ) -> Self {
        ResponseFuture {
            state: State::Failed { error: Some(error) },
            grpc,
            request_id,
            body_cap,
        }
    }
}

impl<F, B> std::fmt::Debug for ResponseFuture<F, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("grpc", &self.grpc)
            .finish()
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Into<BoxError>,
    B: Body,
    B::Data: Into<Bytes>,
    B::Error: Into<BoxError>,
{
    type Output = Result<Response<NormalizeBody<B>>, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let this = self.as_mut().project();
            let next = match this.state.project() {
                StateProj::Call { future } => match ready!(future.poll(cx)) {
                    Ok(Ok(mut res)) => {
                        let error_status = is_error_status(res.status());
                        if error_status
                            && is_rendered(&res)
                            && !res.headers().contains_key(X_REQUEST_ID)
                        {
                            let id = this.request_id.take().unwrap_or_else(new_request_id_header);
                            res.headers_mut().insert(X_REQUEST_ID, id);
                        }
                        if !error_status || is_rendered(&res) {
                            if error_status && is_retried_out(res.extensions()) {
                                let no = HeaderValue::from_static("false");
                                res.headers_mut().insert(X_SHOULD_RETRY, no);
                            }
                            let mode = if *this.grpc {
                                Mode::Grpc
                            } else if is_event_stream(res.headers()) {
                                Mode::Sse
                            } else {
                                Mode::Plain
                            };
                            return Poll::Ready(Ok(res.map(|b| NormalizeBody::inner(b, mode))));
                        }
                        let (parts, body) = res.into_parts();
                        State::Read {
                            peek: Peek::new(body, *this.body_cap),
                            parts: Some(parts),
                        }
                    }
                    Ok(Err(err)) => State::Failed {
                        error: Some(from_inner_error(err.into())),
                    },
                    Err(panic) => State::Failed {
                        error: Some(from_panic(panic)),
                    },
                },
                StateProj::Read { peek, parts } => {
                    let peeked = ready!(peek.poll(cx));
                    let parts = parts.take().expect("polled after completion");
                    let complete = matches!(peeked.end, PeekEnd::Finished(_));
                    // The rest of a long body is dropped here, unread.
                    drop(peeked.end);
                    let res = rewrite(
                        parts,
                        peeked.data,
                        complete,
                        *this.grpc,
                        this.request_id.take(),
                        *this.body_cap,
                    );
                    return Poll::Ready(Ok(res));
                }
                StateProj::Failed { error } => {
                    let mut err = error.take().expect("polled after completion");
                    set_request_id(&mut err, this.request_id.take());
                    let mut res = if *this.grpc {
                        err.to_grpc_response::<Bytes>()
                    } else {
                        err.to_response::<Bytes>()
                    };
                    keep_error(&mut res, err);
                    return Poll::Ready(Ok(res.map(NormalizeBody::full)));
                }
            };
            self.as_mut().project().state.set(next);
        }
    }
}

/// An error the inner service returned: mapped, and logged when it is not one
/// the crate knows (its details stay off the wire).
pub(crate) fn from_inner_error(err: BoxError) -> ApiError {
    let recognised = ApiError::is_recognised(&*err);
    if !recognised {
        tracing::error!(error = %err, "unhandled error answered as 500");
    }
    ApiError::from_error(err)
}

fn from_panic(panic: Box<dyn Any + Send>) -> ApiError {
    let detail = panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)");
    tracing::error!(panic = detail, "handler panicked; answered as 500");
    ApiError::new(crate::ErrorKind::Internal)
}

fn set_request_id(err: &mut ApiError, from_request: Option<HeaderValue>) {
    let id = from_request
        .and_then(|v| v.to_str().ok().map(str::to_owned))
        .unwrap_or_else(generate_request_id);
    err.replace_request_id(id);
}

/// A new request id: `req_` and 32 hex digits.
pub(crate) fn generate_request_id() -> String {
    format!("req_{:032x}", fastrand::u128(..))
}

fn new_request_id_header() -> HeaderValue {
    HeaderValue::from_str(&generate_request_id()).expect("hex is ASCII")
}

/// Headers of the original error response that do not survive a rewrite.
const DROPPED: [header::HeaderName; 5] = [
    header::CONTENT_TYPE,
    header::CONTENT_LENGTH,
    header::CONTENT_ENCODING,
    header::TRANSFER_ENCODING,
    header::ETAG,
];

/// Answers an error response of the inner service in the canonical form.
fn rewrite<B>(
    mut parts: http::response::Parts,
    data: Bytes,
    complete: bool,
    grpc: bool,
    request_id: Option<HeaderValue>,
    cap: usize,
) -> Response<NormalizeBody<B>> {
    if let Some(read) = (complete && !grpc)
        .then(|| canonical(parts.status, &parts.headers, &data))
        .flatten()
    {
        // Already the envelope: pass it on, with a request id.
        parts.headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        let read = if is_retried_out(&parts.extensions) {
            // What the upstream said is overruled: the stack retried it.
            parts.headers.remove(X_SHOULD_RETRY);
            retried_out(read)
        } else {
            read
        };
        if !parts.headers.contains_key(X_SHOULD_RETRY) {
            parts
                .headers
                .insert(X_SHOULD_RETRY, read.should_retry_header());
        }
        parts.extensions.insert(read);
        if !parts.headers.contains_key(X_REQUEST_ID) {
            let id = request_id.unwrap_or_else(new_request_id_header);
            parts.headers.insert(X_REQUEST_ID, id);
        }
        return Response::from_parts(parts, NormalizeBody::full(data));
    }
    let prefix = &data[..data.len().min(cap)];
    let mut err = ApiError::from_upstream_prefix(parts.status, &parts.headers, prefix, complete);
    if is_retried_out(&parts.extensions) {
        err = retried_out(err);
    }
    let id = request_id.or_else(|| parts.headers.get(X_REQUEST_ID).cloned());
    set_request_id(&mut err, id);
    let rendered = if grpc {
        err.to_grpc_response::<Bytes>()
    } else {
        err.to_response::<Bytes>()
    };
    let (mut new_parts, body) = rendered.into_parts();
    if !grpc {
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

/// A rendered response keeps the error (for logging layers outside) and
/// what layers attached to it (the retry layer's attempt count, say).
fn keep_error<B>(res: &mut Response<B>, err: ApiError) {
    res.extensions_mut().extend(err.extensions().clone());
    res.extensions_mut().insert(err);
}

/// The error a body states when it is already the canonical envelope,
/// consistent with its status: exactly
/// `{"error":{"message","type","param","code"}}`, and a type and code the
/// crate would give that status and body itself.
fn canonical(status: http::StatusCode, headers: &HeaderMap, data: &[u8]) -> Option<ApiError> {
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

pin_project! {
    /// Response future of [`NormalizeClient`](super::NormalizeClient).
    pub struct ClientResponseFuture<F, B> {
        #[pin]
        state: ClientState<F, B>,
        request_id: Option<HeaderValue>,
        body_cap: usize,
    }
}

pin_project! {
    #[project = ClientStateProj]
    enum ClientState<F, B> {
        Call { #[pin] future: F },
        Read { #[pin] peek: Peek<B>, parts: Option<http::response::Parts> },
    }
}

impl<F, B> ClientResponseFuture<F, B> {
    pub(crate) fn new(future: F, request_id: Option<HeaderValue>, body_cap: usize) -> Self {
        ClientResponseFuture {
            state: ClientState::Call { future },
            request_id,
            body_cap,
        }
    }
}

impl<F, B> std::fmt::Debug for ClientResponseFuture<F, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientResponseFuture").finish()
    }
}

impl<F, B, E> Future for ClientResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Into<BoxError>,
    B: Body,
{
    type Output = Result<Response<B>, ApiError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let this = self.as_mut().project();
            let next = match this.state.project() {
                ClientStateProj::Call { future } => match ready!(future.poll(cx)) {
                    Ok(res) if is_error_status(res.status()) => {
                        let (parts, body) = res.into_parts();
                        ClientState::Read {
                            peek: Peek::new(body, *this.body_cap),
                            parts: Some(parts),
                        }
                    }
                    Ok(res) => {
                        // A gRPC trailers-only error arrives as HTTP 200.
                        if let Some(mut err) = ApiError::from_grpc_headers(res.headers()) {
                            set_client_request_id(&mut err, res.headers(), this.request_id.take());
                            let extensions = res.into_parts().0.extensions;
                            return Poll::Ready(Err(with_extensions(err, extensions)));
                        }
                        return Poll::Ready(Ok(res));
                    }
                    Err(err) => {
                        let mut err = ApiError::from_error(err.into());
                        if let Some(id) = this.request_id.take() {
                            if let Ok(id) = id.to_str() {
                                err.set_request_id_if_absent(|| Some(id.to_owned()));
                            }
                        }
                        return Poll::Ready(Err(err));
                    }
                },
                ClientStateProj::Read { peek, parts } => {
                    let peeked = ready!(peek.poll(cx));
                    let parts = parts.take().expect("polled after completion");
                    let complete = matches!(peeked.end, PeekEnd::Finished(_));
                    drop(peeked.end);
                    let prefix = &peeked.data[..peeked.data.len().min(*this.body_cap)];
                    let mut err =
                        ApiError::from_grpc_headers(&parts.headers).unwrap_or_else(|| {
                            ApiError::from_upstream_prefix(
                                parts.status,
                                &parts.headers,
                                prefix,
                                complete,
                            )
                        });
                    set_client_request_id(&mut err, &parts.headers, this.request_id.take());
                    return Poll::Ready(Err(with_extensions(err, parts.extensions)));
                }
            };
            self.as_mut().project().state.set(next);
        }
    }
}

/// `err` read from an error response, keeping what layers below attached
/// to the response (the retry layer's attempt count), and telling its
/// caller not to retry what the stack already retried.
fn with_extensions(mut err: ApiError, extensions: http::Extensions) -> ApiError {
    let retried = is_retried_out(&extensions);
    err.extensions_mut().extend(extensions);
    if retried {
        retried_out(err)
    } else {
        err
    }
}

/// The upstream's own request id (for support tickets) wins over ours.
fn set_client_request_id(err: &mut ApiError, headers: &HeaderMap, ours: Option<HeaderValue>) {
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
                http::StatusCode::from_u16(status).unwrap(),
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
