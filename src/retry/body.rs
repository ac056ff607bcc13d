//! [`RetryBody`]: the body of the response the retry layer hands back.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::body::{MaybePeeked, PeekedBody};

pin_project! {
    /// The body of a response handed back by [`Retry`](super::Retry): the
    /// upstream's body, whole.
    ///
    /// When the retry decision read the start of an error body (a 429, to
    /// tell a rate limit from an exhausted quota), the bytes read are played
    /// back first, then the rest of the upstream body follows: the caller
    /// sees exactly what the upstream sent, trailers and errors included.
    ///
    /// ```
    /// use std::convert::Infallible;
    /// use bytes::Bytes;
    /// use http_body_util::{BodyExt, Full};
    /// use tower::{ServiceBuilder, ServiceExt};
    /// use tower_http_resilience::retry::{ReplayBody, RetryLayer};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// const QUOTA: &str = r#"{"error":{"code":"insufficient_quota"}}"#;
    /// let upstream = tower::service_fn(|_req: http::Request<ReplayBody<String>>| async {
    ///     let res = http::Response::builder().status(429).body(Full::new(Bytes::from(QUOTA)));
    ///     Ok::<_, Infallible>(res.unwrap())
    /// });
    /// let client = ServiceBuilder::new().layer(RetryLayer::new()).service(upstream);
    /// let res = client.oneshot(http::Request::new(String::new())).await.unwrap();
    /// // The policy read the start of the body (a quota, not a rate limit:
    /// // not retried); the caller still gets all of it.
    /// assert_eq!(res.status(), 429);
    /// assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), QUOTA);
    /// # }
    /// ```
    pub struct RetryBody<B: Body> {
        #[pin]
        kind: MaybePeeked<B>,
    }
}

impl<B: Body> RetryBody<B> {
    pub(crate) fn plain(body: B) -> Self {
        RetryBody {
            kind: MaybePeeked::Plain { body },
        }
    }

    pub(crate) fn peeked(body: PeekedBody<B>) -> Self {
        RetryBody {
            kind: MaybePeeked::Peeked { body },
        }
    }
}

impl<B> Body for RetryBody<B>
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

impl<B: Body> fmt::Debug for RetryBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            MaybePeeked::Plain { .. } => "plain",
            MaybePeeked::Peeked { .. } => "peeked",
        };
        f.debug_struct("RetryBody").field("kind", &kind).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::Peek;
    use http_body_util::{BodyExt, Full};

    #[tokio::test]
    async fn both_kinds_forward_everything() {
        let plain = RetryBody::plain(Full::new(Bytes::from_static(b"hello")));
        assert_eq!(plain.size_hint().exact(), Some(5));
        assert!(!plain.is_end_stream());
        assert_eq!(plain.collect().await.unwrap().to_bytes(), "hello");

        let peeked = Peek::new(Full::new(Bytes::from_static(b"0123456789")), 4).await;
        let body = RetryBody::peeked(peeked.into_body());
        assert_eq!(body.size_hint().exact(), Some(10));
        assert_eq!(body.collect().await.unwrap().to_bytes(), "0123456789");

        let empty = RetryBody::plain(http_body_util::Empty::<Bytes>::new());
        assert!(empty.is_end_stream());
    }
}
