use std::convert::Infallible;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use tower_service::Service;

use super::body::NormalizeBody;
use super::future::{from_inner_error, ClientResponseFuture, ResponseFuture};
use crate::content_type::is_grpc;
use crate::error::X_REQUEST_ID;
use crate::{ApiError, BoxError, ErrorKind};

/// Answers every failure of the inner service in the canonical form.
///
/// Made by [`NormalizeLayer`](super::NormalizeLayer); see the [module
/// docs](super) for what it does.
#[derive(Clone, Debug)]
pub struct Normalize<S> {
    inner: S,
    body_cap: usize,
    // An error from the inner service's `poll_ready`, answered by the next call.
    not_ready: Option<ApiError>,
}

impl<S> Normalize<S> {
    pub(crate) fn new(inner: S, body_cap: usize) -> Self {
        Normalize {
            inner,
            body_cap,
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
                self.not_ready = Some(from_inner_error(e.into()));
                Poll::Ready(Ok(()))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        let grpc = is_grpc(req.headers());
        let request_id = req
            .headers()
            .get(X_REQUEST_ID)
            .filter(|v| crate::error::is_valid_request_id(v.as_bytes()))
            .cloned();
        if let Some(err) = self.not_ready.take() {
            return ResponseFuture::failed(err, grpc, request_id, self.body_cap);
        }
        match catch_unwind(AssertUnwindSafe(|| self.inner.call(req))) {
            Ok(future) => ResponseFuture::called(future, grpc, request_id, self.body_cap),
            Err(_) => {
                tracing::error!("service panicked in `call`; answered as 500");
                ResponseFuture::failed(
                    ApiError::new(ErrorKind::Internal),
                    grpc,
                    request_id,
                    self.body_cap,
                )
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
}

impl<S> NormalizeClient<S> {
    pub(crate) fn new(inner: S, body_cap: usize) -> Self {
        NormalizeClient { inner, body_cap }
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
    type Response = Response<ResB>;
    type Error = ApiError;
    type Future = ClientResponseFuture<S::Future, ResB>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ApiError>> {
        self.inner
            .poll_ready(cx)
            .map_err(|e| ApiError::from_error(e.into()))
    }

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        let request_id = req.headers().get(X_REQUEST_ID).cloned();
        ClientResponseFuture::new(self.inner.call(req), request_id, self.body_cap)
    }
}
