//! [`Timeout`] and [`AttemptTimeout`]: the timeout services, and the
//! layers that make them.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use tokio::time::Instant;
use tower_layer::Layer;
use tower_service::Service;

use super::body::{RequestBody, TimeoutBody};
use super::clocks::{CallClocks, Detected};
use super::future::{call_peeked, send, AttemptFuture, Peeking, ResponseFuture};
use super::layer::{AttemptTimeoutLayer, TimeoutLayer};
use super::profile::TimeoutOverride;
use crate::body::Peek;
use crate::call::CallContext;
use crate::{ApiError, BoxError};

/// Streaming-aware timeouts over headers and body; made by
/// [`TimeoutLayer`].
///
/// The inner service receives the request with its body wrapped in a
/// [`RequestBody`] (the same bytes; see [`TimeoutLayer::body_peek_limit`]),
/// and must be `Clone`: when the start of a JSON body has to be read before
/// the call, the service made ready by `poll_ready` moves into the response
/// future and a clone takes its place.
///
/// ```
/// use std::convert::Infallible;
/// use http_body_util::BodyExt;
/// use tower::{Layer, ServiceExt};
/// use tower_http_resilience::timeout::RequestBody;
/// use tower_http_resilience::TimeoutLayer;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// let upstream = tower::service_fn(|req: http::Request<RequestBody<String>>| async move {
///     assert!(!req.body().was_peeked()); // not JSON: passed on as it is
///     Ok::<_, Infallible>(http::Response::new(String::from("ok")))
/// });
/// let svc = TimeoutLayer::new().layer(upstream);
/// let res = svc.oneshot(http::Request::new(String::from("hi"))).await.unwrap();
/// assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "ok");
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Timeout<S> {
    inner: S,
    layer: TimeoutLayer,
}

impl<S> Timeout<S> {
    pub(crate) fn new(inner: S, layer: TimeoutLayer) -> Self {
        Timeout { inner, layer }
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

// The layers sit below the services, futures and clocks that read their
// settings, so each makes its service here.
impl<S> Layer<S> for TimeoutLayer {
    type Service = Timeout<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Timeout::new(inner, *self)
    }
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for Timeout<S>
where
    S: Service<Request<RequestBody<ReqB>>, Response = Response<ResB>> + Clone,
    S::Error: Into<BoxError>,
    ReqB: Body,
    ReqB::Data: Into<Bytes>,
    ResB: Body,
    ResB::Error: Into<BoxError>,
{
    type Response = Response<TimeoutBody<ResB>>;
    type Error = ApiError;
    type Future = ResponseFuture<S::Future, S, ReqB>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ApiError>> {
        self.inner
            .poll_ready(cx)
            .map_err(|e| ApiError::from_error(e.into()))
    }

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        let detected = Detected::from_request(&req, &self.layer);
        let over = req.extensions().get::<TimeoutOverride>();
        let clocks = CallClocks::new(&self.layer, over, detected);

        if detected == Detected::Peeking {
            let (parts, body) = req.into_parts();
            let mut peek = Peek::new(body, self.layer.peek_limit);
            // A body whose start is there already (a `Full` body) is read
            // now, and the inner service called at once; the real waker is
            // registered when the future polls a body that was not ready.
            let mut now = Context::from_waker(Waker::noop());
            if let Poll::Ready(peeked) = Pin::new(&mut peek).poll(&mut now) {
                let mut clocks = clocks;
                let sent = clocks.start();
                let (future, call) = call_peeked(
                    &mut self.inner,
                    parts,
                    peeked,
                    &self.layer,
                    &mut clocks,
                    sent,
                );
                return ResponseFuture::calling(future, clocks, call);
            }
            // The call happens after the peek: the ready service goes with
            // the future, a clone stays.
            let clone = self.inner.clone();
            let service = std::mem::replace(&mut self.inner, clone);
            let peeking = Peeking {
                peek,
                service,
                parts,
                layer: self.layer,
            };
            return ResponseFuture::peeking(peeking, clocks);
        }

        let mut req = req.map(RequestBody::new);
        let call = clocks.publish(&mut req, &self.layer);
        let future = send(&mut self.inner, req, call.as_ref(), clocks.start());
        ResponseFuture::calling(future, clocks, call)
    }
}

/// A timeout on the response headers of one attempt; made by
/// [`AttemptTimeoutLayer`].
///
/// The request and the response body pass through unchanged.
///
/// ```
/// use std::{convert::Infallible, time::Duration};
/// use tower::{Layer, ServiceExt};
/// use tower_http_resilience::timeout::AttemptTimeoutLayer;
/// use tower_http_resilience::TimeoutPhase;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// let hung = tower::service_fn(|_req: http::Request<()>| {
///     std::future::pending::<Result<http::Response<()>, Infallible>>()
/// });
/// let svc = AttemptTimeoutLayer::new(Duration::from_secs(30)).layer(hung);
/// let start = tokio::time::Instant::now();
/// let err = svc.oneshot(http::Request::new(())).await.unwrap_err();
/// assert_eq!(err.timeout_phase(), Some(TimeoutPhase::Attempt));
/// assert_eq!(start.elapsed(), Duration::from_secs(30));
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct AttemptTimeout<S> {
    inner: S,
    timeout: Duration,
}

impl<S> AttemptTimeout<S> {
    pub(crate) fn new(inner: S, timeout: Duration) -> Self {
        AttemptTimeout { inner, timeout }
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

impl<S> Layer<S> for AttemptTimeoutLayer {
    type Service = AttemptTimeout<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AttemptTimeout::new(inner, self.timeout)
    }
}

impl<S, B> Service<Request<B>> for AttemptTimeout<S>
where
    S: Service<Request<B>>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = ApiError;
    type Future = AttemptFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ApiError>> {
        self.inner
            .poll_ready(cx)
            .map_err(|e| ApiError::from_error(e.into()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let ext = req.extensions();
        let timeout = ext
            .get::<TimeoutOverride>()
            .and_then(|o| o.attempt)
            .unwrap_or(self.timeout);
        // The layer that sent the attempt (the attempt loop, the total
        // timeout) read the clock already.
        let call = CallContext::get(ext).cloned();
        let sent = call.as_ref().and_then(|c| c.timing().sending());
        let sent = sent.unwrap_or_else(Instant::now);
        AttemptFuture::new(self.inner.call(req), sent, timeout, call)
    }
}
