//! [`NormalizeClientBody`]: a client's response body, watched to its end.

use std::fmt;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::metrics::CallMeter;
use crate::BoxError;

pin_project! {
    /// The response body of [`NormalizeClient`](super::NormalizeClient): the
    /// upstream's body, frame for frame, whose end tells how the call ended
    /// (the call's metrics are recorded then: a stream that fails after
    /// its headers is a failed call). Errors are passed on boxed, as they
    /// came; `is_end_stream` and `size_hint` are the inner body's.
    ///
    /// ```
    /// use http_body_util::BodyExt;
    /// use tower::{ServiceBuilder, ServiceExt};
    /// use tower_http_resilience::normalize::NormalizeClientBody;
    /// use tower_http_resilience::NormalizeClientLayer;
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let upstream = tower::service_fn(|_req: http::Request<String>| async {
    ///     Ok::<_, std::convert::Infallible>(http::Response::new(String::from("ok")))
    /// });
    /// let client = ServiceBuilder::new().layer(NormalizeClientLayer::new()).service(upstream);
    /// let res = client.oneshot(http::Request::new(String::new())).await.unwrap();
    /// let body: NormalizeClientBody<String> = res.into_body();
    /// assert_eq!(body.collect().await.unwrap().to_bytes(), "ok");
    /// # }
    /// ```
    pub struct NormalizeClientBody<B> {
        #[pin]
        inner: B,
        // Recorded when the body ends (`None`: recorded).
        meter: Option<CallMeter>,
    }
}

impl<B: Body> NormalizeClientBody<B> {
    pub(crate) fn new(inner: B, meter: CallMeter) -> Self {
        // A body already at its end may never be polled: the call is over.
        let meter = if inner.is_end_stream() {
            meter.success();
            None
        } else {
            Some(meter)
        };
        NormalizeClientBody { inner, meter }
    }
}

impl<B> NormalizeClientBody<B> {
    /// A reference to the upstream's body.
    pub fn get_ref(&self) -> &B {
        &self.inner
    }

    /// The upstream's body. Its end is no longer watched: the call is
    /// recorded as ended by its caller now.
    pub fn into_inner(self) -> B {
        self.inner
    }
}

impl<B: fmt::Debug> fmt::Debug for NormalizeClientBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NormalizeClientBody")
            .field("inner", &self.inner)
            .finish()
    }
}

impl<B> Body for NormalizeClientBody<B>
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
        let frame = ready!(this.inner.as_mut().poll_frame(cx));
        let Some(meter) = this.meter.take() else {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        };
        match frame {
            Some(Ok(frame)) => {
                match frame.trailers_ref() {
                    Some(trailers) => meter.trailers(trailers),
                    None if this.inner.is_end_stream() => meter.success(),
                    None => *this.meter = Some(meter),
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(e)) => {
                let e: BoxError = e.into();
                meter.body_error(&*e);
                Poll::Ready(Some(Err(e)))
            }
            None => {
                meter.success();
                Poll::Ready(None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
