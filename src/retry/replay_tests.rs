//! Unit tests of [`ReplayBody`](super::ReplayBody) and its replay handle.

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
async fn a_body_that_is_all_there_is_kept_whole_without_a_buffer() {
    let (first, replay) = ReplayBody::first(Full::new(Bytes::from_static(b"{}")), 1024);
    assert!(matches!(replay.kept, Kept::Whole(_)), "no shared buffer");
    assert_eq!(replay.whole().unwrap(), "{}");
    assert_eq!(first.size_hint().exact(), Some(2));
    assert_eq!(collect(first).await.0, "{}");
    for _ in 0..2 {
        assert_eq!(replay.replayable(), Some(true));
        let again = replay.next_body().unwrap();
        assert_eq!(again.size_hint().exact(), Some(2));
        assert_eq!(collect(again).await.0, "{}");
    }
    // Over the cap: sent once, not kept.
    let (first, replay) = ReplayBody::first(Full::new(Bytes::from_static(b"{}")), 1);
    assert!(first.is_capped());
    assert_eq!(collect(first).await.0, "{}");
    assert!(replay.next_body().is_none());
}

#[tokio::test]
async fn a_one_chunk_body_is_kept_inline_and_replayed() {
    // One chunk, but no size hint: read as it passes.
    let (first, replay) = ReplayBody::first(stream(vec![data("{}")]), 1024);
    assert_eq!(collect(first).await.0, "{}");
    {
        let Kept::Shared(shared) = &replay.kept else {
            panic!("kept in the shared buffer");
        };
        let buffer = shared.lock();
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

/// A body with a size hint whose frames are there at once: what the
/// first attempt reads before the call is not lost.
struct Ready {
    frames: std::collections::VecDeque<Result<Frame<Bytes>, std::io::Error>>,
    /// The size hint when set, else the bytes left.
    hint: Option<u64>,
}

impl Body for Ready {
    type Data = Bytes;
    type Error = std::io::Error;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        Poll::Ready(self.frames.pop_front())
    }
    fn is_end_stream(&self) -> bool {
        self.frames.is_empty()
    }
    fn size_hint(&self) -> SizeHint {
        let left = self
            .frames
            .iter()
            .filter_map(|f| f.as_ref().ok()?.data_ref());
        SizeHint::with_exact(self.hint.unwrap_or(left.map(|d| d.len() as u64).sum()))
    }
}

fn ready(frames: Frames, hint: Option<u64>) -> Ready {
    Ready {
        frames: frames.into(),
        hint,
    }
}

#[tokio::test]
async fn a_body_read_before_the_first_attempt_loses_nothing() {
    // Two chunks: the first read early, both sent and replayed.
    let (first, replay) = ReplayBody::first(ready(vec![data("ab"), data("c")], None), 1024);
    assert!(!first.is_end_stream());
    assert_eq!(first.size_hint().exact(), Some(3));
    assert_eq!(collect(first).await.0, "abc");
    assert_eq!(collect(replay.next_body().unwrap()).await.0, "abc");

    // Trailers alone.
    let mut t = HeaderMap::new();
    t.insert("x-sum", "abc".parse().unwrap());
    let (first, replay) = ReplayBody::first(ready(vec![Ok(Frame::trailers(t))], None), 1024);
    assert_eq!(collect(first).await.1.unwrap()["x-sum"], "abc");
    assert_eq!(
        collect(replay.next_body().unwrap()).await.1.unwrap()["x-sum"],
        "abc"
    );

    // An error: the first attempt gets it; nothing is replayed.
    let (first, replay) = ReplayBody::first(
        ready(vec![Err(std::io::Error::other("reset"))], Some(3)),
        1024,
    );
    assert!(first.collect().await.is_err());
    assert_eq!(replay.replayable(), Some(false));
    assert!(replay.next_body().is_none());

    // A first frame larger than the size hint: an error, not a loss.
    let (first, replay) = ReplayBody::first(ready(vec![data("abcdef")], Some(3)), 4);
    assert!(first.collect().await.is_err());
    assert_eq!(replay.replayable(), Some(false));
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
