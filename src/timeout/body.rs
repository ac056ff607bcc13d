//! The response body that runs the body clocks, and the request body the
//! inner service receives.

use std::fmt;
use std::future::Future as _;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::time::Sleep;

use super::clocks::BodyClocks;
use crate::body::{MaybePeeked, PeekedBody};
use crate::call::CallContext;
use crate::util::arm_no_later;
use crate::{ApiError, BoxError};

pin_project! {
    /// A response body that runs the body clocks of a
    /// [`Timeout`](super::Timeout) call.
    ///
    /// An ordinary call's body must end before the call's total timeout; a
    /// streaming call's body must send its first data before the first-byte
    /// timeout, never be silent longer than the idle timeout, and end before
    /// the stream timeout. When a clock runs out the body yields one error,
    /// an [`ApiError`] of kind [`Timeout`](crate::ErrorKind::Timeout) whose
    /// [`timeout_phase`](ApiError::timeout_phase) names the clock (boxed as a
    /// [`BoxError`]), and then ends.
    ///
    /// The timer is one `tokio::time::Sleep` stored inline: it is created
    /// only when the body first has to wait, and activity moves the idle
    /// deadline without touching it (the timer is re-armed in place when it
    /// fires early). Frames that are ready are passed on without looking at
    /// a clock. [`is_end_stream`](Body::is_end_stream) and
    /// [`size_hint`](Body::size_hint) are those of the inner body, so a
    /// `Content-Length` body stays one.
    ///
    /// ```
    /// use std::{convert::Infallible, time::Duration};
    /// use bytes::Bytes;
    /// use http_body::Frame;
    /// use http_body_util::{BodyExt, StreamBody};
    /// use tower::{Layer, ServiceExt};
    /// use tower_http_resilience::timeout::RequestBody;
    /// use tower_http_resilience::{ApiError, TimeoutLayer, TimeoutPhase};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// // Headers at once, then a body that never ends.
    /// let upstream = tower::service_fn(|_req: http::Request<RequestBody<String>>| async {
    ///     let stalled = futures_util::stream::pending::<Result<Frame<Bytes>, Infallible>>();
    ///     Ok::<_, Infallible>(http::Response::new(StreamBody::new(stalled)))
    /// });
    /// let svc = TimeoutLayer::new().total_timeout(Duration::from_secs(10)).layer(upstream);
    /// let res = svc.oneshot(http::Request::new(String::new())).await.unwrap();
    /// let mut body = std::pin::pin!(res.into_body());
    /// let err = body.frame().await.unwrap().unwrap_err().downcast::<ApiError>().unwrap();
    /// assert_eq!(err.timeout_phase(), Some(TimeoutPhase::Total));
    /// assert!(body.frame().await.is_none(), "and then the body ends");
    /// # }
    /// ```
    pub struct TimeoutBody<B> {
        #[pin]
        inner: B,
        #[pin]
        sleep: Option<Sleep>,
        clocks: BodyClocks,
        // Told when this body's clock cuts the call short.
        call: Option<CallContext>,
    }
}

impl<B> TimeoutBody<B> {
    pub(crate) fn new(inner: B, clocks: BodyClocks, call: Option<CallContext>) -> Self {
        TimeoutBody {
            inner,
            sleep: None,
            clocks,
            call,
        }
    }

    /// A reference to the inner body.
    pub fn get_ref(&self) -> &B {
        &self.inner
    }

    /// The inner body.
    pub fn into_inner(self) -> B {
        self.inner
    }
}

impl<B> fmt::Debug for TimeoutBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (at, phase, _) = self.clocks.next_expiry();
        f.debug_struct("TimeoutBody")
            .field("clock", &phase)
            .field("expires_at", &at)
            .field("expired", &self.clocks.is_expired())
            .finish()
    }
}

impl<B> Body for TimeoutBody<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, BoxError>>> {
        let mut this = self.project();
        if this.clocks.is_expired() {
            return Poll::Ready(None);
        }
        match this.inner.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.clocks.on_data(data);
                }
                return Poll::Ready(Some(Ok(frame)));
            }
            Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => {}
        }
        loop {
            let (at, phase, len) = this.clocks.next_expiry();
            // Activity moves the deadline later without touching the timer.
            let mut sleep = arm_no_later(this.sleep.as_mut(), at);
            ready!(sleep.as_mut().poll(cx));
            if sleep.deadline() >= at {
                this.clocks.expire();
                if let Some(call) = this.call.as_ref() {
                    call.mark_cut();
                }
                let err = ApiError::timeout(phase, len);
                tracing::debug!(phase = phase.as_str(), after = ?len, "response body timed out");
                crate::metrics::timed_out(phase);
                return Poll::Ready(Some(Err(Box::new(err))));
            }
            // The timer fired early: activity moved the deadline since it
            // was armed.
            sleep.reset(at);
        }
    }

    fn is_end_stream(&self) -> bool {
        self.clocks.is_expired() || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        if self.clocks.is_expired() {
            SizeHint::with_exact(0)
        } else {
            self.inner.size_hint()
        }
    }
}

pin_project! {
    /// The request body a [`Timeout`](super::Timeout) service hands its inner
    /// service: the caller's body, unchanged, or — when the start of a JSON
    /// body was read to look for `"stream": true` — the bytes read followed
    /// by the rest of the body, so the inner service receives the same bytes
    /// either way.
    ///
    /// [`is_end_stream`](Body::is_end_stream) and
    /// [`size_hint`](Body::size_hint) are forwarded (a body with a known
    /// length keeps it), and so are trailers and errors.
    ///
    /// ```
    /// use http_body::Body;
    /// use tower_http_resilience::timeout::RequestBody;
    ///
    /// let body = RequestBody::new(String::from("{}"));
    /// assert!(!body.was_peeked());
    /// assert_eq!(body.size_hint().exact(), Some(2));
    /// ```
    pub struct RequestBody<B: Body> {
        #[pin]
        kind: MaybePeeked<B>,
    }
}

impl<B: Body> RequestBody<B> {
    /// The caller's body, unchanged: what the inner service receives when
    /// the body was not peeked. Useful to build requests for a service that
    /// sits both behind [`Timeout`](super::Timeout) and elsewhere.
    pub fn new(body: B) -> Self {
        RequestBody {
            kind: MaybePeeked::Plain { body },
        }
    }

    pub(crate) fn peeked(body: PeekedBody<B>) -> Self {
        RequestBody {
            kind: MaybePeeked::Peeked { body },
        }
    }

    /// Whether the start of the body was read to look for `"stream": true`.
    pub fn was_peeked(&self) -> bool {
        self.kind.is_peeked()
    }
}

impl<B: Body> fmt::Debug for RequestBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            MaybePeeked::Plain { .. } => f.debug_struct("RequestBody").finish_non_exhaustive(),
            MaybePeeked::Peeked { body } => {
                f.debug_struct("RequestBody").field("peeked", body).finish()
            }
        }
    }
}

impl<B> Body for RequestBody<B>
where
    B: Body,
    B::Data: Into<Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        self.project().kind.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.kind.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.kind.size_hint()
    }
}
