//! Response futures of the normalization services.

use std::convert::Infallible;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use futures_util::future::{CatchUnwind, FutureExt};
use http::header::HeaderValue;
use http::Response;
use http_body::Body;
use pin_project_lite::pin_project;

use super::body::{reads_events, Mode, NormalizeBody};
use super::client_body::NormalizeClientBody;
use super::rewrite::{
    ensure_request_id, from_inner_error, from_panic, overrule_should_retry, render, rewrite,
    scrub_rendered, set_client_request_id, Call,
};
use super::secrets::Secrets;
use crate::body::{Peek, PeekEnd};
use crate::call::{is_retried_out, retried_out};
use crate::content_type::is_event_stream;
use crate::error::redact::redact_body;
use crate::error::render::{is_error_status, is_rendered};
use crate::metrics::CallMeter;
use crate::{ApiError, BoxError, ErrorKind};

pin_project! {
    /// Response future of [`Normalize`](super::Normalize).
    pub struct ResponseFuture<F, B> {
        #[pin]
        state: State<F, B>,
        call: Call,
        // Recorded when the call's outcome is known (the end of a passed
        // body, for a success).
        meter: Option<CallMeter>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, B> {
        Call { #[pin] future: CatchUnwind<AssertUnwindSafe<F>> },
        Read { #[pin] peek: Peek<B>, parts: Option<http::response::Parts>, rendered: bool },
        Failed { error: Option<ApiError> },
    }
}

impl<F: Future, B> ResponseFuture<F, B> {
    pub(crate) fn called(future: F, call: Call) -> Self {
        ResponseFuture {
            state: State::Call {
                future: AssertUnwindSafe(future).catch_unwind(),
            },
            call,
            meter: Some(CallMeter::start()),
        }
    }
}

impl<F, B> ResponseFuture<F, B> {
    pub(crate) fn failed(error: ApiError, call: Call) -> Self {
        ResponseFuture {
            state: State::Failed { error: Some(error) },
            call,
            meter: Some(CallMeter::start()),
        }
    }
}

impl<F, B> std::fmt::Debug for ResponseFuture<F, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("grpc", &self.call.grpc)
            .finish()
    }
}

/// What to do with a response of the inner service.
enum Next<B> {
    /// Hand it on, its body untouched.
    Pass(Response<NormalizeBody<B>>),
    /// Read the start of its body, then answer.
    Read(ToRead<B>),
}

/// An error response whose body is to be read.
struct ToRead<B> {
    parts: http::response::Parts,
    body: B,
    /// Rendered by this crate: only credentials are removed.
    rendered: bool,
}

/// Decides what a response of the inner service needs. A success passes
/// with its body untouched and its headers without the call's secrets; an
/// error response this crate rendered passes too when there are no secrets
/// (key shapes are gone already); any other error response is read.
fn on_response<B: Body>(
    mut res: Response<B>,
    call: &mut Call,
    meter: &mut Option<CallMeter>,
) -> Next<B> {
    let error = is_error_status(res.status());
    let rendered = error && is_rendered(&res);
    if rendered {
        ensure_request_id(res.headers_mut(), call.request_id.take());
        overrule_should_retry(&mut res);
    }
    if error && !(rendered && call.secrets.is_empty()) {
        let (parts, body) = res.into_parts();
        return Next::Read(ToRead {
            parts,
            body,
            rendered,
        });
    }
    call.secrets.scrub_headers(res.headers_mut(), false);
    call.secrets.scrub_reason(res.extensions_mut(), false);
    let mode = if call.grpc {
        Mode::Grpc
    } else if is_event_stream(res.headers()) {
        Mode::Sse
    } else {
        Mode::Plain
    };
    if reads_events(mode, &call.secrets) {
        // A masked event may change length.
        res.headers_mut().remove(http::header::CONTENT_LENGTH);
    }
    let secrets = call.secrets.clone();
    let meter = if error {
        // An error this crate rendered, passed whole.
        answered(take(meter), &res);
        None
    } else {
        meter.take()
    };
    Next::Pass(res.map(|b| NormalizeBody::inner(b, mode, secrets, meter)))
}

/// Records the call answered with the error response `res`.
pub(crate) fn answered<B>(meter: CallMeter, res: &Response<B>) {
    match res.extensions().get::<ApiError>() {
        Some(err) => meter.error(err),
        None => meter.error(&ApiError::new(ErrorKind::from_status(res.status()))),
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
            let call = this.call;
            let next = match this.state.project() {
                StateProj::Call { future } => match ready!(future.poll(cx)) {
                    Ok(Ok(res)) => match on_response(res, call, this.meter) {
                        Next::Pass(res) => return Poll::Ready(Ok(res)),
                        Next::Read(read) => State::Read {
                            peek: Peek::new(read.body, call.body_cap),
                            parts: Some(read.parts),
                            rendered: read.rendered,
                        },
                    },
                    Ok(Err(err)) => State::Failed {
                        error: Some(from_inner_error(err.into(), &call.secrets)),
                    },
                    Err(panic) => State::Failed {
                        error: Some(from_panic(panic, &call.secrets)),
                    },
                },
                StateProj::Read {
                    peek,
                    parts,
                    rendered,
                } => {
                    let peeked = ready!(peek.poll(cx));
                    let parts = parts.take().expect("polled after completion");
                    let complete = matches!(peeked.end, PeekEnd::Finished(_));
                    // The rest of a long body is dropped here, unread.
                    drop(peeked.end);
                    let res = if *rendered {
                        scrub_rendered(parts, peeked.data, complete, call)
                    } else {
                        rewrite(parts, peeked.data, complete, call)
                    };
                    answered(take(this.meter), &res);
                    return Poll::Ready(Ok(res));
                }
                StateProj::Failed { error } => {
                    let err = error.take().expect("polled after completion");
                    let res = render(err, call);
                    answered(take(this.meter), &res);
                    return Poll::Ready(Ok(res));
                }
            };
            self.as_mut().project().state.set(next);
        }
    }
}

/// The call's meter, taken once: the future answers once.
fn take(meter: &mut Option<CallMeter>) -> CallMeter {
    meter.take().expect("polled after completion")
}

pin_project! {
    /// Response future of [`NormalizeClient`](super::NormalizeClient).
    pub struct ClientResponseFuture<F, B> {
        #[pin]
        state: ClientState<F, B>,
        request_id: Option<HeaderValue>,
        body_cap: usize,
        secrets: Secrets,
        meter: Option<CallMeter>,
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
    pub(crate) fn new(
        future: F,
        request_id: Option<HeaderValue>,
        body_cap: usize,
        secrets: Secrets,
    ) -> Self {
        ClientResponseFuture {
            state: ClientState::Call { future },
            request_id,
            body_cap,
            secrets,
            meter: Some(CallMeter::start()),
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
    type Output = Result<Response<NormalizeClientBody<B>>, ApiError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.as_mut().project();
        let result =
            ready!(this
                .state
                .poll_client(cx, this.request_id, *this.body_cap, this.secrets));
        let meter = take(this.meter);
        Poll::Ready(match result {
            Ok(res) => Ok(res.map(|body| NormalizeClientBody::new(body, meter))),
            Err(err) => {
                meter.error(&err);
                Err(err)
            }
        })
    }
}

impl<F, B, E> ClientState<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Into<BoxError>,
    B: Body,
{
    /// The upstream's success, or its failure as an `ApiError`.
    fn poll_client(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        request_id: &mut Option<HeaderValue>,
        body_cap: usize,
        secrets: &Secrets,
    ) -> Poll<Result<Response<B>, ApiError>> {
        loop {
            let next = match self.as_mut().project() {
                ClientStateProj::Call { future } => match ready!(future.poll(cx)) {
                    Ok(res) if is_error_status(res.status()) => {
                        let (parts, body) = res.into_parts();
                        ClientState::Read {
                            peek: Peek::new(body, body_cap),
                            parts: Some(parts),
                        }
                    }
                    Ok(mut res) => {
                        // A gRPC trailers-only error arrives as HTTP 200.
                        if let Some(mut err) = ApiError::from_grpc_headers(res.headers()) {
                            set_client_request_id(&mut err, res.headers(), request_id.take());
                            err.redact(secrets);
                            let extensions = res.into_parts().0.extensions;
                            return Poll::Ready(Err(with_extensions(err, extensions)));
                        }
                        secrets.scrub_headers(res.headers_mut(), false);
                        secrets.scrub_reason(res.extensions_mut(), false);
                        return Poll::Ready(Ok(res));
                    }
                    Err(err) => {
                        let mut err = ApiError::from_error(err.into());
                        if let Some(id) = request_id.take() {
                            if let Ok(id) = id.to_str() {
                                err.set_request_id_if_absent(|| Some(id.to_owned()));
                            }
                        }
                        err.redact(secrets);
                        return Poll::Ready(Err(err));
                    }
                },
                ClientStateProj::Read { peek, parts } => {
                    let peeked = ready!(peek.poll(cx));
                    let mut parts = parts.take().expect("polled after completion");
                    let complete = matches!(peeked.end, PeekEnd::Finished(_));
                    drop(peeked.end);
                    let data = redact_body(&peeked.data, secrets, complete).unwrap_or(peeked.data);
                    secrets.scrub_headers(&mut parts.headers, true);
                    secrets.scrub_reason(&mut parts.extensions, true);
                    let prefix = &data[..data.len().min(body_cap)];
                    let mut err =
                        ApiError::from_grpc_headers(&parts.headers).unwrap_or_else(|| {
                            ApiError::from_upstream_prefix(
                                parts.status,
                                &parts.headers,
                                prefix,
                                complete,
                            )
                        });
                    set_client_request_id(&mut err, &parts.headers, request_id.take());
                    err.redact(secrets);
                    // What layers below attached to the response (the retry
                    // layer's attempt count) stays with the error.
                    return Poll::Ready(Err(with_extensions(err, parts.extensions)));
                }
            };
            self.set(next);
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
