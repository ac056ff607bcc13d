//! The request body the inner service receives: [`CheckBody`].

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::body::{MaybePeeked, PeekEnd, Peeked};

pin_project! {
    /// The body of a request that went through
    /// [`CheckLayer`](super::CheckLayer): the caller's body untouched when
    /// the request was not checked, or the bytes the checks read (the same
    /// `Bytes`, not a copy) followed by the body's trailers, if any.
    ///
    /// [`is_end_stream`](Body::is_end_stream) and
    /// [`size_hint`](Body::size_hint) are forwarded; a checked body has an
    /// exact size.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use http_body::Body;
    /// use http_body_util::Full;
    /// use tower_http_resilience::check::CheckBody;
    ///
    /// let body = CheckBody::new(Full::new(Bytes::from_static(b"{}")));
    /// assert!(!body.was_checked());
    /// assert_eq!(body.size_hint().exact(), Some(2));
    /// ```
    pub struct CheckBody<B: Body> {
        #[pin]
        kind: MaybePeeked<B>,
    }
}

impl<B: Body> CheckBody<B> {
    /// The caller's body, unchanged: what the inner service receives for a
    /// request that is not checked. Useful to build requests for a service
    /// that sits both behind [`Check`](super::Check) and elsewhere.
    pub fn new(body: B) -> Self {
        CheckBody {
            kind: MaybePeeked::Plain { body },
        }
    }

    /// A body that was read whole: `data`, then `trailers`.
    pub(crate) fn read(data: Bytes, trailers: Option<HeaderMap>) -> Self {
        let peeked = Peeked::<B> {
            data,
            end: PeekEnd::Finished(trailers),
        };
        CheckBody {
            kind: MaybePeeked::Peeked {
                body: peeked.into_body(),
            },
        }
    }

    /// Whether the body was read by the checks.
    pub fn was_checked(&self) -> bool {
        self.kind.is_peeked()
    }
}

impl<B: Body> fmt::Debug for CheckBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CheckBody")
            .field("checked", &self.was_checked())
            .finish()
    }
}

impl<B> Body for CheckBody<B>
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

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Empty, Full};

    #[tokio::test]
    async fn a_read_body_is_its_bytes_then_its_trailers() {
        let mut t = HeaderMap::new();
        t.insert("x-t", "1".parse().unwrap());
        let body = CheckBody::<Empty<Bytes>>::read(Bytes::from_static(b"{}"), Some(t));
        assert!(body.was_checked());
        assert_eq!(body.size_hint().exact(), Some(2));
        let collected = body.collect().await.unwrap();
        assert_eq!(collected.trailers().unwrap()["x-t"], "1");
        assert_eq!(collected.to_bytes(), "{}");

        let empty = CheckBody::<Empty<Bytes>>::read(Bytes::new(), None);
        assert!(empty.is_end_stream());
        let plain = CheckBody::new(Full::new(Bytes::from_static(b"abc")));
        assert!(!plain.was_checked());
        assert_eq!(plain.size_hint().exact(), Some(3));
    }
}
