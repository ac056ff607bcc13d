//! Bounded body reading shared by the layers: peek at the start of a body
//! without losing it, and replay what was read.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use http::HeaderMap;
use http_body::Body;
#[cfg(any(feature = "retry", feature = "timeout", feature = "check"))]
use http_body::{Frame, SizeHint};
use pin_project_lite::pin_project;

/// How a peek ended, and what a peeked body yields after the bytes read.
// Normalization only tells the ends apart; the payloads serve the layers
// that hand a peeked body on.
#[cfg_attr(
    not(any(feature = "retry", feature = "timeout", feature = "check")),
    allow(dead_code)
)]
pub(crate) enum PeekEnd<B: Body> {
    /// The body ended; its trailers, if it had any.
    Finished(Option<HeaderMap>),
    /// The cap was reached; the rest of the body is still to be read.
    More(Pin<Box<B>>),
    /// The body failed while being read.
    Failed(B::Error),
}

/// The start of a body, and how the read ended.
pub(crate) struct Peeked<B: Body> {
    /// Everything read (at least `cap` bytes when the read stopped at the cap,
    /// since the last frame may go past it).
    pub(crate) data: Bytes,
    pub(crate) end: PeekEnd<B>,
}

#[cfg(any(feature = "retry", feature = "timeout", feature = "check"))]
impl<B: Body> Peeked<B> {
    /// The body again, whole: what was read, then the rest.
    pub(crate) fn into_body(self) -> PeekedBody<B> {
        PeekedBody {
            prefix: Some(self.data).filter(|d| !d.is_empty()),
            rest: self.end,
        }
    }
}

impl<B: Body> fmt::Debug for Peeked<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Peeked")
            .field("len", &self.data.len())
            .finish()
    }
}

/// The bytes read from the start of a body, in one piece when asked. The
/// first chunk is kept as it is, so a body of one frame is not copied.
#[derive(Default)]
pub(crate) struct Gathered {
    first: Option<Bytes>,
    rest: BytesMut,
}

impl Gathered {
    /// Adds the next chunk read.
    pub(crate) fn push(&mut self, chunk: Bytes) {
        if self.first.is_none() && self.rest.is_empty() {
            self.first = Some(chunk);
        } else {
            self.rest.extend_from_slice(&chunk);
        }
    }

    /// The bytes gathered so far.
    pub(crate) fn len(&self) -> usize {
        self.first.as_ref().map_or(0, Bytes::len) + self.rest.len()
    }

    /// Everything gathered, in one piece; leaves nothing behind.
    pub(crate) fn take(&mut self) -> Bytes {
        match self.first.take() {
            Some(first) if self.rest.is_empty() => first,
            Some(first) => {
                let mut all = BytesMut::with_capacity(first.len() + self.rest.len());
                all.extend_from_slice(&first);
                all.extend_from_slice(&self.rest);
                self.rest.clear();
                all.freeze()
            }
            None => std::mem::take(&mut self.rest).freeze(),
        }
    }
}

pin_project! {
    /// Reads a body until it ends or `cap` bytes have been read.
    ///
    /// The body is boxed so that it can be handed back after being polled
    /// (peeking only happens on error paths, where one allocation is fine).
    pub(crate) struct Peek<B> {
        body: Option<Pin<Box<B>>>,
        cap: usize,
        gathered: Gathered,
    }
}

impl<B> Peek<B> {
    #[cfg_attr(feature = "check", allow(dead_code))]
    pub(crate) fn new(body: B, cap: usize) -> Self {
        Peek {
            body: Some(Box::pin(body)),
            cap,
            gathered: Gathered::default(),
        }
    }
}

impl<B> Peek<B> {
    fn take_data(self: Pin<&mut Self>) -> Bytes {
        self.project().gathered.take()
    }

    fn len(&self) -> usize {
        self.gathered.len()
    }
}

#[cfg(feature = "retry")]
impl<B> Peek<B> {
    /// Stops reading now (a deadline passed, say): what was read so far, and
    /// the rest of the body, still unread.
    pub(crate) fn stop(mut self: Pin<&mut Self>) -> Peeked<B>
    where
        B: Body,
    {
        let body = self.as_mut().project().body.take();
        let data = self.take_data();
        let end = match body {
            Some(b) => PeekEnd::More(b),
            None => PeekEnd::Finished(None),
        };
        Peeked { data, end }
    }
}

impl<B: Body> Future for Peek<B> {
    type Output = Peeked<B>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            if self.len() >= self.cap {
                let body = self.as_mut().project().body.take();
                let data = self.as_mut().take_data();
                let end = match body {
                    Some(b) => PeekEnd::More(b),
                    None => PeekEnd::Finished(None),
                };
                return Poll::Ready(Peeked { data, end });
            }
            let this = self.as_mut().project();
            let Some(body) = this.body.as_mut() else {
                return Poll::Ready(Peeked {
                    data: self.as_mut().take_data(),
                    end: PeekEnd::Finished(None),
                });
            };
            let end = match ready!(body.as_mut().poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(mut data) => {
                        this.gathered.push(data.copy_to_bytes(data.remaining()));
                        continue;
                    }
                    Err(frame) => PeekEnd::Finished(frame.into_trailers().ok()),
                },
                Some(Err(e)) => PeekEnd::Failed(e),
                None => PeekEnd::Finished(None),
            };
            *this.body = None;
            let data = self.as_mut().take_data();
            return Poll::Ready(Peeked { data, end });
        }
    }
}

#[cfg(any(feature = "retry", feature = "timeout", feature = "check"))]
pin_project! {
    /// A body whose start was peeked: the peeked bytes, then the rest of the
    /// original body, its trailers or its error.
    pub(crate) struct PeekedBody<B: Body> {
        prefix: Option<Bytes>,
        // What follows the prefix; `Finished(None)` once all of it was
        // yielded.
        rest: PeekEnd<B>,
    }
}

#[cfg(any(feature = "retry", feature = "timeout", feature = "check"))]
impl<B: Body> fmt::Debug for PeekedBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeekedBody")
            .field("prefix_len", &self.prefix.as_ref().map(Bytes::len))
            .finish()
    }
}

#[cfg(any(feature = "retry", feature = "timeout", feature = "check"))]
impl<B> Body for PeekedBody<B>
where
    B: Body,
    B::Data: Into<Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.project();
        if let Some(prefix) = this.prefix.take() {
            return Poll::Ready(Some(Ok(Frame::data(prefix))));
        }
        match this.rest {
            PeekEnd::More(inner) => inner
                .as_mut()
                .poll_frame(cx)
                .map(|f| f.map(|r| r.map(|frame| frame.map_data(Into::into)))),
            PeekEnd::Finished(trailers) => {
                Poll::Ready(trailers.take().map(|t| Ok(Frame::trailers(t))))
            }
            PeekEnd::Failed(_) => {
                let PeekEnd::Failed(e) = std::mem::replace(this.rest, PeekEnd::Finished(None))
                else {
                    unreachable!("matched above")
                };
                Poll::Ready(Some(Err(e)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.prefix.is_none()
            && match &self.rest {
                PeekEnd::More(inner) => inner.is_end_stream(),
                PeekEnd::Finished(trailers) => trailers.is_none(),
                PeekEnd::Failed(_) => false,
            }
    }

    fn size_hint(&self) -> SizeHint {
        let prefix = self.prefix.as_ref().map_or(0, |p| p.len() as u64);
        let rest = match &self.rest {
            PeekEnd::More(inner) => inner.size_hint(),
            _ => SizeHint::with_exact(0),
        };
        hint_plus(rest, prefix)
    }
}

/// `hint` for a body that yields `bytes` more bytes first.
#[cfg(any(feature = "retry", feature = "timeout", feature = "check"))]
pub(crate) fn hint_plus(mut hint: SizeHint, bytes: u64) -> SizeHint {
    let lower = hint.lower().saturating_add(bytes);
    if let Some(upper) = hint.upper() {
        hint.set_upper(upper.saturating_add(bytes));
    }
    hint.set_lower(lower);
    hint
}

#[cfg(any(feature = "retry", feature = "timeout", feature = "check"))]
pin_project! {
    /// A body that is either passed on as it is or was peeked: the shape of
    /// the bodies layers hand on after they may have read the start of one
    /// (the retry layer's response body, the timeout layer's request body).
    #[project = MaybePeekedProj]
    pub(crate) enum MaybePeeked<B: Body> {
        Plain { #[pin] body: B },
        Peeked { #[pin] body: PeekedBody<B> },
    }
}

#[cfg(any(feature = "timeout", feature = "check"))]
impl<B: Body> MaybePeeked<B> {
    pub(crate) fn is_peeked(&self) -> bool {
        matches!(self, MaybePeeked::Peeked { .. })
    }
}

#[cfg(any(feature = "retry", feature = "timeout", feature = "check"))]
impl<B> Body for MaybePeeked<B>
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
        match self.project() {
            MaybePeekedProj::Plain { body } => body
                .poll_frame(cx)
                .map(|f| f.map(|r| r.map(|frame| frame.map_data(Into::into)))),
            MaybePeekedProj::Peeked { body } => body.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            MaybePeeked::Plain { body } => body.is_end_stream(),
            MaybePeeked::Peeked { body } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            MaybePeeked::Plain { body } => body.size_hint(),
            MaybePeeked::Peeked { body } => body.size_hint(),
        }
    }
}

#[cfg(all(test, feature = "retry"))]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full, StreamBody};

    fn chunks(parts: &[&'static str]) -> impl Body<Data = Bytes, Error = std::convert::Infallible> {
        let frames: Vec<Result<Frame<Bytes>, std::convert::Infallible>> = parts
            .iter()
            .map(|p| Ok(Frame::data(Bytes::from_static(p.as_bytes()))))
            .collect();
        StreamBody::new(futures_util::stream::iter(frames))
    }

    #[tokio::test]
    async fn short_body_is_read_whole_and_replayed() {
        let peeked = Peek::new(chunks(&["ab", "cd"]), 10).await;
        assert_eq!(&peeked.data[..], b"abcd");
        assert!(matches!(peeked.end, PeekEnd::Finished(None)));
        let body = peeked.into_body();
        assert!(!body.is_end_stream());
        assert_eq!(body.collect().await.unwrap().to_bytes(), "abcd");
    }

    #[tokio::test]
    async fn long_body_stops_at_the_cap_and_loses_nothing() {
        let peeked = Peek::new(chunks(&["abc", "def", "ghi", "jkl"]), 5).await;
        assert_eq!(&peeked.data[..], b"abcdef");
        assert!(matches!(peeked.end, PeekEnd::More(_)));
        assert_eq!(
            peeked.into_body().collect().await.unwrap().to_bytes(),
            "abcdefghijkl"
        );
    }

    #[tokio::test]
    async fn size_hint_is_kept() {
        let peeked = Peek::new(Full::new(Bytes::from_static(b"hello")), 2).await;
        let body = peeked.into_body();
        assert_eq!(body.size_hint().exact(), Some(5));
        let peeked = Peek::new(Full::new(Bytes::from_static(b"")), 2).await;
        let body = peeked.into_body();
        assert!(body.is_end_stream());
        assert_eq!(body.size_hint().exact(), Some(0));
    }

    proptest::proptest! {
        #[test]
        fn any_chunking_is_replayed_exactly(
            chunks in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40), 0..12),
            cap in 0usize..200,
        ) {
            let all: Vec<u8> = chunks.concat();
            let frames: Vec<Result<Frame<Bytes>, std::convert::Infallible>> =
                chunks.into_iter().map(|c| Ok(Frame::data(Bytes::from(c)))).collect();
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            rt.block_on(async {
                let peeked = Peek::new(StreamBody::new(futures_util::stream::iter(frames)), cap).await;
                proptest::prop_assert!(peeked.data.len() >= cap.min(all.len()));
                proptest::prop_assert_eq!(&peeked.data[..], &all[..peeked.data.len()]);
                let replayed = peeked.into_body().collect().await.unwrap().to_bytes();
                proptest::prop_assert_eq!(&replayed[..], &all[..]);
                Ok(())
            })?;
        }
    }

    #[tokio::test]
    async fn a_stopped_peek_hands_back_what_was_read_and_the_rest() {
        use futures_util::StreamExt;
        let frames = futures_util::stream::iter(vec![Ok::<_, std::convert::Infallible>(
            Frame::data(Bytes::from_static(b"ab")),
        )])
        .chain(futures_util::stream::pending());
        let mut peek = std::pin::pin!(Peek::new(StreamBody::new(frames), 100));
        let pending =
            std::future::poll_fn(|cx| Poll::Ready(peek.as_mut().poll(cx).is_pending())).await;
        assert!(pending, "the body stalls after its first chunk");
        let peeked = peek.as_mut().stop();
        assert_eq!(&peeked.data[..], b"ab");
        assert!(matches!(peeked.end, PeekEnd::More(_)));
        let mut body = peeked.into_body();
        let first = body.frame().await.unwrap().unwrap();
        assert_eq!(first.into_data().unwrap(), "ab");
        assert!(!body.is_end_stream(), "the rest is still to come");
    }

    #[tokio::test]
    async fn trailers_survive() {
        let mut t = HeaderMap::new();
        t.insert("grpc-status", "14".parse().unwrap());
        let frames: Vec<Result<Frame<Bytes>, std::convert::Infallible>> = vec![
            Ok(Frame::data(Bytes::from_static(b"x"))),
            Ok(Frame::trailers(t)),
        ];
        let peeked = Peek::new(StreamBody::new(futures_util::stream::iter(frames)), 100).await;
        let collected = peeked.into_body().collect().await.unwrap();
        assert_eq!(collected.trailers().unwrap()["grpc-status"], "14");
    }
}
