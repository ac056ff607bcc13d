use std::fmt;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::classify::{Classify, DefaultClassifier, Observation, Verdict};
use super::guard::Guard;

pin_project! {
    /// A response body that tells its breaker how the call ended.
    ///
    /// The outcome is recorded when the body ends: a success, unless the
    /// trailers carry a failing status (gRPC) or the body fails while
    /// being read (a failure). A body dropped before its end is not
    /// recorded at all. Frames, `is_end_stream` and `size_hint` pass
    /// through unchanged.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use http_body_util::{BodyExt, StreamBody};
    /// use http_body::Frame;
    /// use tower::{Layer, Service, ServiceExt};
    /// use tower_http_resilience::circuit_breaker::{CircuitBreakerBody, CircuitBreakerLayer};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// // A stream that breaks after its first chunk.
    /// let upstream = tower::service_fn(|_req: http::Request<()>| async {
    ///     let frames = vec![
    ///         Ok(Frame::data(Bytes::from("data: {}\n\n"))),
    ///         Err(std::io::Error::from(std::io::ErrorKind::ConnectionReset)),
    ///     ];
    ///     let body = StreamBody::new(futures_util::stream::iter(frames));
    ///     Ok::<_, std::convert::Infallible>(http::Response::new(body))
    /// });
    /// let layer = CircuitBreakerLayer::new();
    /// let handle = layer.handle();
    /// let mut client = layer.layer(upstream);
    /// let res = client.ready().await.unwrap().call(http::Request::new(())).await.unwrap();
    /// let body: CircuitBreakerBody<_> = res.into_body();
    /// assert!(body.collect().await.is_err());
    /// assert_eq!(handle.snapshot("").unwrap().failures(), 1);
    /// # }
    /// ```
    pub struct CircuitBreakerBody<B, C = DefaultClassifier> {
        #[pin]
        inner: B,
        guard: Option<Guard>,
        classifier: C,
    }
}

impl<B, C> CircuitBreakerBody<B, C> {
    pub(crate) fn new(inner: B, guard: Option<Guard>, classifier: C) -> Self {
        CircuitBreakerBody {
            inner,
            guard,
            classifier,
        }
    }

    /// The wrapped body.
    pub fn get_ref(&self) -> &B {
        &self.inner
    }

    /// The wrapped body. Its outcome is no longer recorded.
    pub fn into_inner(self) -> B {
        self.inner
    }
}

impl<B: fmt::Debug, C> fmt::Debug for CircuitBreakerBody<B, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakerBody")
            .field("inner", &self.inner)
            .field("recording", &self.guard.is_some())
            .finish()
    }
}

impl<B, C> Body for CircuitBreakerBody<B, C>
where
    B: Body,
    C: Classify,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        let frame = ready!(this.inner.as_mut().poll_frame(cx));
        if this.guard.is_some() {
            let verdict = match &frame {
                Some(Ok(frame)) => match frame.trailers_ref() {
                    Some(trailers) => {
                        Some(this.classifier.classify(Observation::Trailers(trailers)))
                    }
                    None if this.inner.is_end_stream() => Some(Verdict::Success),
                    None => None,
                },
                Some(Err(_)) => Some(Verdict::Failure),
                None => Some(Verdict::Success),
            };
            if let Some(verdict) = verdict {
                if let Some(guard) = this.guard.take() {
                    guard.record(verdict);
                }
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
