//! [`ReplayBody`]: the request body of each attempt, replayed without
//! `Clone`.

use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use super::buffer::{Buffer, Cursor};
use crate::BoxError;

/// The request body the retry layer sends to the inner service, for every
/// attempt.
///
/// The first attempt streams the caller's body through unchanged while
/// keeping every chunk (and the trailers) it passes, up to the layer's
/// [`max_replay_body`](super::RetryLayer::max_replay_body). A later attempt
/// replays the kept chunks — clones of the same `Bytes`, no copy — and, if
/// the earlier attempt stopped reading early, goes on streaming the rest of
/// the caller's body from where it stopped (keeping that too).
///
/// Once more than the cap has passed, the kept chunks are dropped and the
/// call is not retried; a body whose size hint already says it is larger is
/// never kept at all. A body that fails while being read is not replayed
/// either.
///
/// Only one attempt's body is read at a time: the buffer moves to the body
/// of the next attempt when the previous one is dropped (the inner service
/// has finished with it). A retry whose previous body is still held by the
/// inner service is not sent; the last outcome is returned instead.
///
/// The data type is `Bytes` (a `Bytes` chunk is passed on as is; other
/// buffers are copied into one once) and the error type is [`BoxError`], so
/// `ReplayBody` plugs into hyper-util's client directly and into a tonic
/// `Channel` through `tonic::body::Body::new` (see the
/// [module docs](super#on-a-tonic-channel)). It is `Unpin` whatever the
/// body it wraps.
///
/// ```
/// use bytes::Bytes;
/// use http_body_util::{BodyExt, Full};
/// use tower::{ServiceBuilder, ServiceExt};
/// use tower_http_resilience::retry::{ReplayBody, RetryLayer};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// // The inner service reads a `ReplayBody`: the caller's bytes, as sent.
/// let echo = tower::service_fn(|req: http::Request<ReplayBody<Full<Bytes>>>| async move {
///     let body = req.into_body().collect().await?.to_bytes();
///     Ok::<_, tower_http_resilience::BoxError>(http::Response::new(Full::new(body)))
/// });
/// let client = ServiceBuilder::new().layer(RetryLayer::new()).service(echo);
/// let res = client.oneshot(http::Request::new(Full::new(Bytes::from("ping")))).await.unwrap();
/// assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "ping");
/// # }
/// ```
pub struct ReplayBody<B> {
    kind: Kind<B>,
}

enum Kind<B> {
    /// An empty body.
    Empty,
    /// The caller's body, through the buffer the attempts of the call share.
    Replayed {
        /// The shared buffer, while this body holds it.
        buffer: Option<Buffer<B>>,
        /// Where the buffer goes back when this body is dropped.
        shared: Arc<Shared<B>>,
        cursor: Cursor,
    },
    /// The caller's body rewritten whole for one target (its `model`
    /// renamed): one chunk, then the end.
    Rewritten { data: Option<Bytes> },
}

/// The buffer of a call, between the bodies of its attempts.
pub(crate) struct Shared<B> {
    buffer: Mutex<Option<Buffer<B>>>,
}

/// The retry future's handle on the body of a call.
pub(crate) struct Replay<B> {
    shared: Option<Arc<Shared<B>>>,
}

impl<B: Body> ReplayBody<B> {
    /// The body of the first attempt, and the handle that makes the bodies
    /// of later attempts.
    pub(crate) fn first(body: B, cap: usize) -> (Self, Replay<B>) {
        if body.is_end_stream() {
            return (ReplayBody::empty(), Replay { shared: None });
        }
        let shared = Arc::new(Shared {
            buffer: Mutex::new(None),
        });
        let body = ReplayBody::replayed(Some(Buffer::new(body, cap)), shared.clone());
        let replay = Replay {
            shared: Some(shared),
        };
        (body, replay)
    }
}

impl<B> ReplayBody<B> {
    fn empty() -> Self {
        ReplayBody { kind: Kind::Empty }
    }

    fn replayed(buffer: Option<Buffer<B>>, shared: Arc<Shared<B>>) -> Self {
        ReplayBody {
            kind: Kind::Replayed {
                buffer,
                shared,
                cursor: Cursor::default(),
            },
        }
    }

    /// A body of `data`, whole: the caller's body rewritten for a target.
    pub(crate) fn rewritten(data: Bytes) -> Self {
        ReplayBody {
            kind: Kind::Rewritten { data: Some(data) },
        }
    }

    /// Whether this attempt's body is over the cap (and the call will not be
    /// retried).
    pub fn is_capped(&self) -> bool {
        match &self.kind {
            Kind::Replayed { buffer, .. } => buffer.as_ref().is_some_and(Buffer::is_capped),
            Kind::Empty | Kind::Rewritten { .. } => false,
        }
    }
}

impl<B> Replay<B> {
    /// Whether a later attempt may be sent: `Some(false)` when the body went
    /// over the cap or failed, `None` while an earlier attempt still holds
    /// the body.
    pub(crate) fn replayable(&self) -> Option<bool> {
        match &self.shared {
            None => Some(true),
            Some(shared) => shared.lock().as_ref().map(Buffer::replayable),
        }
    }

    /// The body of the next attempt; `None` when the body cannot be
    /// replayed (over the cap, failed, or still held by an earlier attempt).
    pub(crate) fn next_body(&self) -> Option<ReplayBody<B>> {
        let Some(shared) = &self.shared else {
            return Some(ReplayBody::empty());
        };
        let mut slot = shared.lock();
        if !slot.as_ref()?.replayable() {
            return None;
        }
        let buffer = slot.take();
        drop(slot);
        Some(ReplayBody::replayed(buffer, shared.clone()))
    }

    /// The caller's body whole, once it was read to its end within the
    /// cap (its trailers left out); `None` while it is still to be read,
    /// held by an attempt, over the cap or failed.
    pub(crate) fn whole(&self) -> Option<Bytes> {
        match &self.shared {
            None => Some(Bytes::new()),
            Some(shared) => shared.lock().as_ref()?.whole(),
        }
    }
}

impl<B> Shared<B> {
    fn lock(&self) -> MutexGuard<'_, Option<Buffer<B>>> {
        self.buffer.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<B> Drop for ReplayBody<B> {
    fn drop(&mut self) {
        if let Kind::Replayed { buffer, shared, .. } = &mut self.kind {
            if let Some(buffer) = buffer.take() {
                *shared.lock() = Some(buffer);
            }
        }
    }
}

impl<B> Body for ReplayBody<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match &mut self.get_mut().kind {
            Kind::Empty => Poll::Ready(None),
            Kind::Rewritten { data } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            // An empty body, or one whose buffer was released.
            Kind::Replayed { buffer: None, .. } => Poll::Ready(None),
            Kind::Replayed {
                buffer: Some(buffer),
                cursor,
                ..
            } => {
                // First what earlier attempts read, then the rest.
                match buffer.next_kept(cursor) {
                    Some(frame) => Poll::Ready(Some(Ok(frame))),
                    None => buffer.poll_rest(cursor, cx),
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Empty => true,
            Kind::Rewritten { data } => data.is_none(),
            Kind::Replayed { buffer, cursor, .. } => {
                buffer.as_ref().is_none_or(|b| b.is_end_stream(cursor))
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Replayed {
                buffer: Some(b),
                cursor,
                ..
            } => b.size_hint(cursor),
            Kind::Rewritten { data: Some(d) } => SizeHint::with_exact(d.len() as u64),
            _ => SizeHint::with_exact(0),
        }
    }
}

impl<B> fmt::Debug for ReplayBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("ReplayBody");
        match &self.kind {
            Kind::Replayed {
                buffer: Some(b),
                cursor,
                ..
            } => d
                .field("buffered", &b.kept())
                .field("cursor", cursor)
                .field("capped", &b.is_capped())
                .field("streaming", &b.streaming()),
            Kind::Empty => d.field("empty", &true),
            Kind::Replayed { buffer: None, .. } => d.field("released", &true),
            Kind::Rewritten { data } => d.field("rewritten", &data.as_ref().map(Bytes::len)),
        };
        d.finish()
    }
}

impl<B> fmt::Debug for Replay<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Replay")
            .field("replayable", &self.replayable())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderMap;
    use http_body_util::{BodyExt, Full, StreamBody};
    use std::convert::Infallible;

    type Frames = Vec<Result<Frame<Bytes>, std::io::Error>>;
    type Stream = StreamBody<
        futures_util::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, std::io::Error>>>,
    >;

    fn stream(frames: Frames) -> Stream {
        StreamBody::new(futures_util::stream::iter(frames))
    }

    fn data(s: &'static str) -> Result<Frame<Bytes>, std::io::Error> {
        Ok(Frame::data(Bytes::from_static(s.as_bytes())))
    }

    async fn collect<B: Body<Data = Bytes, Error = BoxError>>(b: B) -> (Bytes, Option<HeaderMap>) {
        let c = b.collect().await.unwrap();
        let t = c.trailers().cloned();
        (c.to_bytes(), t)
    }

    #[tokio::test]
    async fn replays_chunks_and_trailers() {
        let mut t = HeaderMap::new();
        t.insert("x-sum", "abc".parse().unwrap());
        let body = stream(vec![data("hello "), data("world"), Ok(Frame::trailers(t))]);
        let (first, replay) = ReplayBody::first(body, 1024);
        assert_eq!(replay.replayable(), None, "held by the first attempt");
        assert!(replay.next_body().is_none());
        let (bytes, trailers) = collect(first).await;
        assert_eq!(bytes, "hello world");
        assert_eq!(trailers.unwrap()["x-sum"], "abc");
        for _ in 0..3 {
            assert_eq!(replay.replayable(), Some(true));
            let again = replay.next_body().unwrap();
            assert_eq!(again.size_hint().exact(), Some(11));
            assert!(!again.is_end_stream());
            let (bytes, trailers) = collect(again).await;
            assert_eq!(bytes, "hello world");
            assert_eq!(trailers.unwrap()["x-sum"], "abc");
        }
    }

    #[tokio::test]
    async fn a_one_chunk_body_is_kept_inline_and_replayed() {
        let (first, replay) = ReplayBody::first(Full::new(Bytes::from_static(b"{}")), 1024);
        assert_eq!(collect(first).await.0, "{}");
        {
            let buffer = replay.shared.as_ref().unwrap().lock();
            let chunks = buffer.as_ref().unwrap().chunks();
            assert_eq!((chunks.len(), chunks.spilled_capacity()), (1, 0));
        }
        for _ in 0..2 {
            let again = replay.next_body().unwrap();
            assert_eq!(again.size_hint().exact(), Some(2));
            assert_eq!(collect(again).await.0, "{}");
        }
        // A first attempt that stopped after the inline chunk goes on.
        let (mut first, replay) =
            ReplayBody::first(stream(vec![data("a"), data("b"), data("c")]), 1024);
        first.frame().await.unwrap().unwrap();
        drop(first);
        let mut second = replay.next_body().unwrap();
        second.frame().await.unwrap().unwrap();
        second.frame().await.unwrap().unwrap();
        drop(second);
        assert_eq!(collect(replay.next_body().unwrap()).await.0, "abc");
    }

    #[tokio::test]
    async fn a_partly_read_body_goes_on_from_where_it_stopped() {
        let (mut first, replay) =
            ReplayBody::first(stream(vec![data("a"), data("b"), data("c")]), 1024);
        let f = first.frame().await.unwrap().unwrap();
        assert_eq!(f.into_data().unwrap(), "a");
        drop(first);
        let second = replay.next_body().unwrap();
        assert_eq!(collect(second).await.0, "abc");
        let third = replay.next_body().unwrap();
        assert_eq!(collect(third).await.0, "abc");
    }

    #[tokio::test]
    async fn over_the_cap_is_sent_once_and_not_replayed() {
        let (first, replay) =
            ReplayBody::first(stream(vec![data("12345"), data("67890"), data("x")]), 8);
        assert!(!first.is_capped());
        assert_eq!(
            collect(first).await.0,
            "1234567890x",
            "the first attempt gets it all"
        );
        assert_eq!(replay.replayable(), Some(false));
        assert!(replay.next_body().is_none());

        // A size hint over the cap: nothing is kept at all.
        let (first, replay) = ReplayBody::first(Full::new(Bytes::from(vec![7u8; 100])), 99);
        assert!(first.is_capped());
        assert_eq!(first.size_hint().exact(), Some(100));
        assert_eq!(collect(first).await.0.len(), 100);
        assert!(replay.next_body().is_none());
    }

    #[tokio::test]
    async fn a_failed_body_is_not_replayed() {
        let (first, replay) = ReplayBody::first(
            stream(vec![data("a"), Err(std::io::Error::other("reset"))]),
            1024,
        );
        assert!(first.collect().await.is_err());
        assert_eq!(replay.replayable(), Some(false));
    }

    #[tokio::test]
    async fn empty_bodies_need_no_buffer() {
        let (first, replay) = ReplayBody::first(http_body_util::Empty::<Bytes>::new(), 0);
        assert!(first.is_end_stream());
        assert_eq!(first.size_hint().exact(), Some(0));
        assert_eq!(replay.replayable(), Some(true));
        let again = replay.next_body().unwrap();
        assert!(again.is_end_stream());
        assert_eq!(collect(again).await.0, "");
    }

    #[test]
    fn replay_body_is_unpin_send_and_sync_for_any_body() {
        fn check<T: Unpin + Send + Sync>() {}
        struct NotUnpin(std::marker::PhantomPinned);
        impl Body for NotUnpin {
            type Data = Bytes;
            type Error = Infallible;
            fn poll_frame(
                self: Pin<&mut Self>,
                _: &mut Context<'_>,
            ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
                Poll::Ready(None)
            }
        }
        check::<ReplayBody<NotUnpin>>();
        let _ = NotUnpin(std::marker::PhantomPinned);
    }
}
