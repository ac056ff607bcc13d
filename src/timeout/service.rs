use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use tower_service::Service;

use super::body::{RequestBody, TimeoutBody};
use super::detect::{accepts_event_stream, encode_grpc_timeout, parse_grpc_timeout, GRPC_TIMEOUT};
use super::future::{AttemptFuture, CallClocks, Detected, Peeking, ResponseFuture};
use super::layer::Config;
use super::profile::{Profile, TimeoutOverride};
use crate::body::Peek;
use crate::content_type::{is_grpc, is_json};
use crate::deadline::{CutSignal, Deadline};
use crate::{ApiError, BoxError};

/// Streaming-aware timeouts over headers and body; made by
/// [`TimeoutLayer`](super::TimeoutLayer).
///
/// The inner service receives the request with its body wrapped in a
/// [`RequestBody`] (the same bytes; see [`TimeoutLayer::body_peek_limit`](super::TimeoutLayer::body_peek_limit)),
/// and must be `Clone`: when the start of a JSON body has to be read before
/// the call, the service made ready by `poll_ready` moves into the response
/// future and a clone takes its place.
#[derive(Clone, Debug)]
pub struct Timeout<S> {
    inner: S,
    config: Config,
}

impl<S> Timeout<S> {
    pub(crate) fn new(inner: S, config: Config) -> Self {
        Timeout { inner, config }
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
        let detected = match req.extensions().get::<Profile>() {
            Some(Profile::Streaming) => Detected::Streaming,
            Some(Profile::Ordinary) => Detected::Ordinary,
            None if accepts_event_stream(req.headers()) => Detected::Streaming,
            None if self.config.peek_limit > 0
                && !req.body().is_end_stream()
                && is_json(req.headers()) =>
            {
                Detected::Peeking
            }
            None => Detected::Undecided,
        };
        let clocks = CallClocks::new(
            &self.config,
            req.extensions().get::<TimeoutOverride>(),
            detected,
        );

        if detected == Detected::Peeking {
            // The call happens after the peek: the ready service goes with
            // the future, a clone stays.
            let clone = self.inner.clone();
            let service = std::mem::replace(&mut self.inner, clone);
            let (parts, body) = req.into_parts();
            let peeking = Peeking {
                peek: Peek::new(body, self.config.peek_limit),
                service,
                parts,
                config: self.config,
            };
            return ResponseFuture::peeking(peeking, clocks);
        }

        let mut req = req.map(RequestBody::new);
        let cut = prepare_request(&mut req, &clocks, &self.config);
        ResponseFuture::calling(self.inner.call(req), clocks, cut)
    }
}

/// Publishes the deadline and sets `grpc-timeout`, once the profile is
/// known.
///
/// Returns the signal the published deadline carries, which the timeout
/// sets when it cuts the call short (see [`CutSignal`]).
pub(crate) fn prepare_request<B>(
    req: &mut Request<B>,
    clocks: &CallClocks,
    config: &Config,
) -> Option<CutSignal> {
    let mut cut = None;
    if config.publish_deadline {
        let (at, _, _) = clocks.headers_expiry();
        let in_force = Deadline::at(at)
            .with_cut_signal(CutSignal::default())
            .set_earliest(req.extensions_mut());
        cut = in_force.cut_signal().cloned();
    }
    if config.grpc_timeout && is_grpc(req.headers()) {
        let ceiling = clocks.grpc_ceiling();
        let keep = req
            .headers()
            .get(GRPC_TIMEOUT)
            .and_then(parse_grpc_timeout)
            .is_some_and(|existing| existing <= ceiling);
        if !keep {
            req.headers_mut()
                .insert(GRPC_TIMEOUT, encode_grpc_timeout(ceiling));
        }
    }
    cut
}

/// A timeout on the response headers of one attempt; made by
/// [`AttemptTimeoutLayer`](super::AttemptTimeoutLayer).
///
/// The request and the response body pass through unchanged.
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
        let timeout = req
            .extensions()
            .get::<TimeoutOverride>()
            .and_then(|o| o.headers)
            .unwrap_or(self.timeout);
        AttemptFuture::new(self.inner.call(req), timeout)
    }
}
