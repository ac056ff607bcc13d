//! [`Check`]: the service that checks requests before calling its inner
//! service.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::Request;
use http_body::Body;
use tower_service::Service;

use super::config::Config;
use super::endpoint::Endpoint;
use super::future::ResponseFuture;
use super::issue::Issue;
use super::CheckBody;
use crate::{ApiError, BoxError};

/// Checks requests before calling the inner service; made by
/// [`CheckLayer`](super::CheckLayer).
///
/// The inner service receives the request with its body wrapped in a
/// [`CheckBody`] (the same bytes), and must be `Clone`: a checked request's
/// body is read before the call, so the service made ready by `poll_ready`
/// moves into the response future and a clone takes its place.
///
/// # Example
///
/// ```
/// use std::convert::Infallible;
///
/// use bytes::Bytes;
/// use http::{Request, Response};
/// use http_body_util::Full;
/// use tower::{service_fn, Layer, ServiceExt};
/// use tower_http_resilience::check::{CheckBody, CheckLayer};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let upstream = service_fn(|_: Request<CheckBody<Full<Bytes>>>| async {
///     Ok::<_, Infallible>(Response::new(()))
/// });
/// let svc = CheckLayer::new().layer(upstream);
/// let req = Request::post("/v1/embeddings")
///     .body(Full::new(Bytes::from_static(br#"{"input":"hello"}"#)))
///     .unwrap();
/// let err = svc.oneshot(req).await.unwrap_err();
/// assert_eq!((err.code(), err.param()), ("missing_required_field", Some("model")));
/// # }
/// ```
#[derive(Clone)]
pub struct Check<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S> Check<S> {
    pub(crate) fn from_parts(inner: S, config: Arc<Config>) -> Self {
        Check { inner, config }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: fmt::Debug> fmt::Debug for Check<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Check")
            .field("inner", &self.inner)
            .field("max_body", &self.config.max_body)
            .field("context_windows", &self.config.windows.len())
            .finish()
    }
}

impl<S, B> Service<Request<B>> for Check<S>
where
    S: Service<Request<CheckBody<B>>> + Clone,
    S::Error: Into<BoxError>,
    B: Body,
    B::Data: Into<Bytes>,
    B::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = ApiError;
    type Future = ResponseFuture<S::Future, S, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ApiError>> {
        self.inner
            .poll_ready(cx)
            .map_err(|e| ApiError::from_error(e.into()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let Some(endpoint) = Endpoint::of(&req) else {
            return ResponseFuture::called(self.inner.call(req.map(CheckBody::new)));
        };
        let cap = self.config.max_body;
        if req.body().size_hint().lower() > cap as u64 {
            return ResponseFuture::refused(Issue::TooLarge { cap }.into_error());
        }
        // The call happens after the body is read: the ready service goes
        // with the future, a clone stays.
        let clone = self.inner.clone();
        let service = std::mem::replace(&mut self.inner, clone);
        ResponseFuture::reading(req, endpoint, service, self.config.clone())
    }
}
