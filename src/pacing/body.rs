//! The response body of [`Pacing`](super::Pacing): the inner body, which
//! for a 429 is read on its way to learn whether it speaks of a rate limit
//! or of a quota.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Buf;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::learn::QuotaScan;
use super::slot::Slot;

/// A hold that a 429 taught, applied once its body has shown that it is not
/// about an exhausted quota: when the body ends, when the first
/// [`QUOTA_SCAN`](super::learn::QUOTA_SCAN) bytes have passed, or when
/// the body is dropped (a body nobody reads is not known to be about a
/// quota).
pub(crate) struct Watch {
    slot: Option<Arc<Slot>>,
    until: u64,
    scan: QuotaScan,
}

impl Watch {
    pub(crate) fn new(slot: Arc<Slot>, until: u64) -> Self {
        Watch {
            slot: Some(slot),
            until,
            scan: QuotaScan::default(),
        }
    }

    /// Reads a chunk; returns whether the watch is over.
    fn read(&mut self, chunk: &[u8]) -> bool {
        if self.scan.found_in(chunk) {
            self.slot = None;
            return true;
        }
        self.scan.is_done()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            let now = slot.core().now_nanos();
            slot.hold(self.until, now);
        }
    }
}

pin_project! {
    /// The response body of [`Pacing`](super::Pacing): the inner body,
    /// frame for frame.
    ///
    /// ```
    /// use http_body::Body;
    /// use tower::{Layer, Service, ServiceExt};
    /// use tower_http_resilience::pacing::{PacingBody, PacingLayer};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// let upstream = tower::service_fn(|_req: http::Request<String>| async {
    ///     Ok::<_, std::convert::Infallible>(http::Response::new(String::from("ok")))
    /// });
    /// let mut paced = PacingLayer::new().layer(upstream);
    /// let res = paced.ready().await.unwrap().call(http::Request::new(String::new())).await.unwrap();
    /// let body: &PacingBody<String> = res.body();
    /// assert_eq!(body.size_hint().exact(), Some(2));
    /// # }
    /// ```
    pub struct PacingBody<B> {
        #[pin]
        inner: B,
        watch: Option<Watch>,
    }
}

impl<B> PacingBody<B> {
    pub(crate) fn new(inner: B, watch: Option<Watch>) -> Self {
        PacingBody { inner, watch }
    }
}

impl<B> fmt::Debug for PacingBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PacingBody")
            .field("watching", &self.watch.is_some())
            .finish()
    }
}

impl<B: Body> Body for PacingBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        let frame = ready!(this.inner.as_mut().poll_frame(cx));
        if let Some(watch) = this.watch.as_mut() {
            // Over at the code, at the end of the scan, or at the body's
            // end, told by its last frame: a reader that stops there (a
            // peek) must not leave the hold waiting for a drop.
            let over = match &frame {
                Some(Ok(frame)) => {
                    frame.data_ref().is_some_and(|d| watch.read(d.chunk()))
                        || this.inner.is_end_stream()
                }
                _ => true,
            };
            if over {
                *this.watch = None;
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
