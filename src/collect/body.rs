//! [`CollectedBody`]: a request body read to its end, handed to the inner
//! service.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};

/// A request body that was read whole: its bytes in one chunk, then its
/// trailers, if it had any.
///
/// What [`CollectBody`](super::CollectBody) hands to the service inside it.
/// The bytes can be looked at before the body is sent on
/// ([`bytes`](Self::bytes)), the size hint is exact, and cloning the bytes
/// copies nothing. The memory counts against the layer's budget for as long
/// as the bytes, or any clone of them, live.
///
/// # Example
///
/// ```
/// use bytes::Bytes;
/// use http_body::Body;
/// use tower_http_resilience::collect::CollectedBody;
///
/// let body = CollectedBody::from(Bytes::from_static(b"{\"model\":\"m\"}"));
/// assert_eq!(body.bytes().as_ref(), b"{\"model\":\"m\"}");
/// assert_eq!(body.size_hint().exact(), Some(13));
/// ```
#[derive(Debug, Default)]
pub struct CollectedBody {
    data: Bytes,
    trailers: Option<HeaderMap>,
    /// The data was handed on.
    sent: bool,
}

impl CollectedBody {
    pub(crate) fn new(data: Bytes, trailers: Option<HeaderMap>) -> Self {
        CollectedBody {
            data,
            trailers,
            sent: false,
        }
    }

    /// The whole body (empty once it has been read as a body).
    pub fn bytes(&self) -> &Bytes {
        &self.data
    }

    /// The trailers the body ended with, if any (none once they have been
    /// read as a body).
    pub fn trailers(&self) -> Option<&HeaderMap> {
        self.trailers.as_ref()
    }
}

impl From<Bytes> for CollectedBody {
    fn from(data: Bytes) -> Self {
        CollectedBody::new(data, None)
    }
}

impl Body for CollectedBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if !this.sent {
            this.sent = true;
            if !this.data.is_empty() {
                return Poll::Ready(Some(Ok(Frame::data(std::mem::take(&mut this.data)))));
            }
        }
        Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }

    fn is_end_stream(&self) -> bool {
        (self.sent || self.data.is_empty()) && self.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(if self.sent { 0 } else { self.data.len() as u64 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn yields_the_data_then_the_trailers() {
        let mut trailers = HeaderMap::new();
        trailers.insert("x-sum", "1".parse().unwrap());
        let body = CollectedBody::new(Bytes::from_static(b"abc"), Some(trailers.clone()));
        assert!(!body.is_end_stream());
        let got = body.collect().await.unwrap();
        assert_eq!(got.trailers(), Some(&trailers));
        assert_eq!(got.to_bytes(), "abc");
    }

    #[tokio::test]
    async fn an_empty_body_has_ended() {
        let mut body = CollectedBody::default();
        assert!(body.is_end_stream());
        assert_eq!(body.size_hint().exact(), Some(0));
        assert!(body.frame().await.is_none());
    }

    #[tokio::test]
    async fn the_hint_follows_what_was_read() {
        let mut body = CollectedBody::from(Bytes::from_static(b"abcd"));
        assert_eq!(body.size_hint().exact(), Some(4));
        let frame = body.frame().await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), "abcd");
        assert_eq!(body.size_hint().exact(), Some(0));
        assert!(body.is_end_stream());
    }
}
