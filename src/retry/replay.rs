//! [`ReplayBody`]: the request body of each attempt, replayed without
//! `Clone`.

use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};

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
pub struct ReplayBody<B> {
    /// The buffer and the rest of the body, while this body holds them.
    state: Option<State<B>>,
    /// Where the state goes back when this body is dropped; `None` for an
    /// empty body.
    shared: Option<Arc<Shared<B>>>,
    /// Chunks of `state.chunks` this body has yielded.
    pos: usize,
    /// Bytes of `state.chunks` this body has yielded.
    pos_bytes: usize,
    trailers_sent: bool,
}

pub(crate) struct Shared<B> {
    state: Mutex<Option<State<B>>>,
}

/// The kept chunks, in order. The first is held inline: a body of one
/// chunk (a `Full` body, the common case) is kept without allocating.
#[derive(Default)]
struct Chunks {
    first: Option<Bytes>,
    rest: Vec<Bytes>,
}

impl Chunks {
    fn get(&self, i: usize) -> Option<&Bytes> {
        match i {
            0 => self.first.as_ref(),
            _ => self.rest.get(i - 1),
        }
    }

    fn push(&mut self, chunk: Bytes) {
        match self.first {
            None => self.first = Some(chunk),
            Some(_) => self.rest.push(chunk),
        }
    }

    fn len(&self) -> usize {
        usize::from(self.first.is_some()) + self.rest.len()
    }
}

struct State<B> {
    chunks: Chunks,
    len: usize,
    cap: usize,
    trailers: Option<HeaderMap>,
    /// The caller's body, while it has not ended.
    rest: Option<Pin<Box<B>>>,
    /// More than `cap` bytes passed; `chunks` was dropped.
    capped: bool,
    /// The caller's body failed.
    failed: bool,
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
        let too_big = usize::try_from(body.size_hint().lower()).map_or(true, |l| l > cap);
        let shared = Arc::new(Shared {
            state: Mutex::new(None),
        });
        let body = ReplayBody {
            state: Some(State {
                chunks: Chunks::default(),
                len: 0,
                cap,
                trailers: None,
                rest: Some(Box::pin(body)),
                capped: too_big,
                failed: false,
            }),
            shared: Some(shared.clone()),
            pos: 0,
            pos_bytes: 0,
            trailers_sent: false,
        };
        (
            body,
            Replay {
                shared: Some(shared),
            },
        )
    }
}

impl<B> ReplayBody<B> {
    fn empty() -> Self {
        ReplayBody {
            state: None,
            shared: None,
            pos: 0,
            pos_bytes: 0,
            trailers_sent: false,
        }
    }

    /// Whether this attempt's body is over the cap (and the call will not be
    /// retried).
    pub fn is_capped(&self) -> bool {
        self.state.as_ref().is_some_and(|s| s.capped)
    }
}

impl<B> Replay<B> {
    /// Whether a later attempt may be sent: `Some(false)` when the body went
    /// over the cap or failed, `None` while an earlier attempt still holds
    /// the body.
    pub(crate) fn replayable(&self) -> Option<bool> {
        match &self.shared {
            None => Some(true),
            Some(shared) => shared.lock().as_ref().map(State::replayable),
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
        let state = slot.take();
        drop(slot);
        Some(ReplayBody {
            state,
            shared: Some(shared.clone()),
            pos: 0,
            pos_bytes: 0,
            trailers_sent: false,
        })
    }
}

impl<B> Shared<B> {
    fn lock(&self) -> MutexGuard<'_, Option<State<B>>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<B> State<B> {
    fn replayable(&self) -> bool {
        !self.capped && !self.failed
    }
}

impl<B> Drop for ReplayBody<B> {
    fn drop(&mut self) {
        if let (Some(state), Some(shared)) = (self.state.take(), &self.shared) {
            *shared.lock() = Some(state);
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
        let this = self.get_mut();
        let Some(state) = this.state.as_mut() else {
            // An empty body.
            return Poll::Ready(None);
        };
        // First what earlier attempts read.
        if !state.capped {
            if let Some(chunk) = state.chunks.get(this.pos) {
                this.pos += 1;
                this.pos_bytes += chunk.len();
                return Poll::Ready(Some(Ok(Frame::data(chunk.clone()))));
            }
        }
        let Some(rest) = state.rest.as_mut() else {
            if !this.trailers_sent {
                this.trailers_sent = true;
                if let Some(t) = &state.trailers {
                    return Poll::Ready(Some(Ok(Frame::trailers(t.clone()))));
                }
            }
            return Poll::Ready(None);
        };
        // Then the rest of the caller's body, kept as it passes.
        match rest.as_mut().poll_frame(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                state.rest = None;
                this.trailers_sent = true;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => {
                state.rest = None;
                state.failed = true;
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Ready(Some(Ok(frame))) => {
                let frame = match frame.into_data() {
                    Ok(mut data) => {
                        let chunk = data.copy_to_bytes(data.remaining());
                        if !state.capped {
                            if state.len.saturating_add(chunk.len()) > state.cap {
                                state.capped = true;
                                state.chunks = Chunks::default();
                                state.len = 0;
                            } else {
                                state.len += chunk.len();
                                state.chunks.push(chunk.clone());
                                this.pos = state.chunks.len();
                                this.pos_bytes = state.len;
                            }
                        }
                        Frame::data(chunk)
                    }
                    Err(frame) => match frame.into_trailers() {
                        Ok(trailers) => {
                            state.trailers = Some(trailers.clone());
                            // Trailers end a body.
                            state.rest = None;
                            this.trailers_sent = true;
                            Frame::trailers(trailers)
                        }
                        // A frame kind from a future http-body: pass it on
                        // (it cannot be kept).
                        Err(frame) => frame.map_data(|mut d| d.copy_to_bytes(d.remaining())),
                    },
                };
                Poll::Ready(Some(Ok(frame)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        let Some(state) = &self.state else {
            return true;
        };
        let replayed_all = state.capped || self.pos >= state.chunks.len();
        let trailers_done = self.trailers_sent || state.trailers.is_none();
        replayed_all
            && match &state.rest {
                Some(rest) => rest.is_end_stream(),
                None => trailers_done,
            }
    }

    fn size_hint(&self) -> SizeHint {
        let Some(state) = &self.state else {
            return SizeHint::with_exact(0);
        };
        let buffered = if state.capped {
            0
        } else {
            (state.len - self.pos_bytes) as u64
        };
        let mut hint = match &state.rest {
            Some(rest) => rest.size_hint(),
            None => SizeHint::with_exact(0),
        };
        let lower = hint.lower().saturating_add(buffered);
        if let Some(upper) = hint.upper() {
            hint.set_upper(upper.saturating_add(buffered));
        }
        hint.set_lower(lower);
        hint
    }
}

impl<B> fmt::Debug for ReplayBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("ReplayBody");
        match &self.state {
            Some(s) => d
                .field("buffered", &s.len)
                .field("replayed", &self.pos_bytes)
                .field("capped", &s.capped)
                .field("streaming", &s.rest.is_some()),
            None if self.shared.is_none() => d.field("empty", &true),
            None => d.field("released", &true),
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
            let state = replay.shared.as_ref().unwrap().lock();
            let chunks = &state.as_ref().unwrap().chunks;
            assert_eq!((chunks.len(), chunks.rest.capacity()), (1, 0));
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
