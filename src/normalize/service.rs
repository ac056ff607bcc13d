use std::convert::Infallible;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use tower_service::Service;

use super::body::NormalizeBody;
use super::client_body::NormalizeClientBody;
use super::future::{ClientResponseFuture, ResponseFuture};
use super::rewrite::{from_inner_error, from_panic, Call};
use super::secrets::{Configured, Secrets};
use crate::content_type::is_grpc;
use crate::error::redact::NO_NEEDLES;
use crate::error::X_REQUEST_ID;
use crate::{ApiError, BoxError};

/// Answers every failure of the inner service in the canonical form.
///
/// Made by [`NormalizeLayer`](super::NormalizeLayer); see the [module
/// docs](super) for what it does.
#[derive(Clone, Debug)]
pub struct Normalize<S> {
    inner: S,
    body_cap: usize,
    secrets: Configured,
    // An error from the inner service's `poll_ready`, answered by the next call.
    not_ready: Option<ApiError>,
}

impl<S> Normalize<S> {
    pub(crate) fn new(inner: S, body_cap: usize, secrets: Configured) -> Self {
        Normalize {
            inner,
            body_cap,
            secrets,
            not_ready: None,
        }
    }

    /// A reference to the inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// A mutable reference to the inner service.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for Normalize<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    S::Error: Into<BoxError>,
    ResB: Body,
    ResB::Data: Into<Bytes>,
    ResB::Error: Into<BoxError>,
{
    type Response = Response<NormalizeBody<ResB>>;
    type Error = Infallible;
    type Future = ResponseFuture<S::Future, ResB>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        if self.not_ready.is_some() {
            return Poll::Ready(Ok(()));
        }
        match self.inner.poll_ready(cx) {
            Poll::Ready(Ok(())) => Poll::Ready(Ok(())),
            Poll::Ready(Err(e)) => {
                // The error is the answer to the call that follows.
                self.not_ready = Some(from_inner_error(e.into(), NO_NEEDLES));
                Poll::Ready(Ok(()))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        let call = Call {
            grpc: is_grpc(req.headers()),
            request_id: req
                .headers()
                .get(X_REQUEST_ID)
                .filter(|v| crate::error::is_valid_request_id(v.as_bytes()))
                .cloned(),
            body_cap: self.body_cap,
            secrets: Secrets::capture(req.headers(), &self.secrets),
        };
        if let Some(err) = self.not_ready.take() {
            return ResponseFuture::failed(err, call);
        }
        match catch_unwind(AssertUnwindSafe(|| self.inner.call(req))) {
            Ok(future) => ResponseFuture::called(future, call),
            Err(panic) => {
                let err = from_panic(panic, &call.secrets);
                ResponseFuture::failed(err, call)
            }
        }
    }
}

/// Turns every failure of the inner client into an [`ApiError`].
///
/// Made by [`NormalizeClientLayer`](super::NormalizeClientLayer); see the
/// [module docs](super) for what it does.
#[derive(Clone, Debug)]
pub struct NormalizeClient<S> {
    inner: S,
    body_cap: usize,
    secrets: Configured,
}

impl<S> NormalizeClient<S> {
    pub(crate) fn new(inner: S, body_cap: usize, secrets: Configured) -> Self {
        NormalizeClient {
            inner,
            body_cap,
            secrets,
        }
    }

    /// A reference to the inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// A mutable reference to the inner service.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for NormalizeClient<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    S::Error: Into<BoxError>,
    ResB: Body,
{
    type Response = Response<NormalizeClientBody<ResB>>;
    type Error = ApiError;
    type Future = ClientResponseFuture<S::Future, ResB>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ApiError>> {
        self.inner
            .poll_ready(cx)
            .map_err(|e| ApiError::from_error(e.into()))
    }

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        let request_id = req.headers().get(X_REQUEST_ID).cloned();
        let secrets = Secrets::capture(req.headers(), &self.secrets);
        ClientResponseFuture::new(self.inner.call(req), request_id, self.body_cap, secrets)
    }
}
