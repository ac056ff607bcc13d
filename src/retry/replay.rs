//! [`ReplayBody`]: the request body of each attempt, replayed without
//! `Clone`.

use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use super::buffer::{Buffer, Cursor, ReadNow};
use crate::BoxError;

/// The request body the retry layer sends to the inner service, for every
/// attempt.
///
/// The first attempt streams the caller's body through unchanged while
/// keeping every chunk (and the trailers) it passes, up to the layer's
/// [`max_replay_body`](super::RetryLayer::max_replay_body). A later attempt
/// replays the kept chunks — clones of the same `Bytes`, no copy — and, if
/// the earlier attempt stopped reading early, goes on streaming the rest of
/// the caller's body from where it stopped (keeping that too). A body that
/// is all there already (a `Full` body) within the cap is taken whole
/// before the first attempt, and every attempt sends the same bytes.
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
        /// The shared buffer, while this body holds it (boxed: a request
        /// body moves through every layer, and few bodies need a buffer).
        buffer: Option<Box<Buffer<B>>>,
        /// Where the buffer goes back when this body is dropped.
        shared: Arc<Shared<B>>,
        cursor: Cursor,
    },
    /// The caller's body whole (read before the first attempt, or
    /// rewritten for one target: its `model` renamed): one chunk, then the
    /// end.
    Rewritten { data: Option<Bytes> },
    /// The caller's body failed before the first attempt read it: the
    /// error, then the end.
    Failed { error: Option<BoxError> },
}

/// The buffer of a call, between the bodies of its attempts.
pub(crate) struct Shared<B> {
    buffer: Mutex<Option<Box<Buffer<B>>>>,
}

/// The retry future's handle on the body of a call.
pub(crate) struct Replay<B> {
    kept: Kept<B>,
}

/// What the attempts of a call replay.
enum Kept<B> {
    /// An empty body.
    Nothing,
    /// The whole body, read before the first attempt: no buffer to share.
    Whole(Bytes),
    /// A body that failed before the first attempt: nothing to replay.
    Failed,
    /// The buffer the attempts hand on to each other.
    Shared(Arc<Shared<B>>),
}

impl<B: Body> ReplayBody<B> {
    /// The body of the first attempt, and the handle that makes the bodies
    /// of later attempts.
    ///
    /// A body that is all there already (a `Full` body) within the cap is
    /// read now and kept as one chunk: no buffer shared between attempts.
    pub(crate) fn first(body: B, cap: usize) -> (Self, Replay<B>)
    where
        B::Error: Into<BoxError>,
    {
        if body.is_end_stream() {
            return (ReplayBody::empty(), Replay::of(Kept::Nothing));
        }
        let mut buffer = Buffer::new(body, cap);
        match buffer.read_now() {
            ReadNow::Whole(data) => {
                let body = ReplayBody::rewritten(data.clone());
                return (body, Replay::of(Kept::Whole(data)));
            }
            ReadNow::Failed(error) => {
                let body = ReplayBody {
                    kind: Kind::Failed { error: Some(error) },
                };
                return (body, Replay::of(Kept::Failed));
            }
            ReadNow::Later => {}
        }
        let shared = Arc::new(Shared {
            buffer: Mutex::new(None),
        });
        let body = ReplayBody::replayed(Some(Box::new(buffer)), shared.clone());
        (body, Replay::of(Kept::Shared(shared)))
    }
}

impl<B> ReplayBody<B> {
    fn empty() -> Self {
        ReplayBody { kind: Kind::Empty }
    }

    fn replayed(buffer: Option<Box<Buffer<B>>>, shared: Arc<Shared<B>>) -> Self {
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
            Kind::Replayed { buffer, .. } => buffer.as_deref().is_some_and(Buffer::is_capped),
            Kind::Empty | Kind::Rewritten { .. } | Kind::Failed { .. } => false,
        }
    }
}

impl<B> Replay<B> {
    fn of(kept: Kept<B>) -> Self {
        Replay { kept }
    }

    /// Whether a later attempt may be sent: `Some(false)` when the body went
    /// over the cap or failed, `None` while an earlier attempt still holds
    /// the body.
    pub(crate) fn replayable(&self) -> Option<bool> {
        match &self.kept {
            Kept::Nothing | Kept::Whole(_) => Some(true),
            Kept::Failed => Some(false),
            Kept::Shared(shared) => shared.lock().as_deref().map(Buffer::replayable),
        }
    }

    /// The body of the next attempt; `None` when the body cannot be
    /// replayed (over the cap, failed, or still held by an earlier attempt).
    pub(crate) fn next_body(&self) -> Option<ReplayBody<B>> {
        let shared = match &self.kept {
            Kept::Nothing => return Some(ReplayBody::empty()),
            Kept::Whole(data) => return Some(ReplayBody::rewritten(data.clone())),
            Kept::Failed => return None,
            Kept::Shared(shared) => shared,
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
        match &self.kept {
            Kept::Nothing => Some(Bytes::new()),
            Kept::Whole(data) => Some(data.clone()),
            Kept::Failed => None,
            Kept::Shared(shared) => shared.lock().as_ref()?.whole(),
        }
    }
}

impl<B> Shared<B> {
    fn lock(&self) -> MutexGuard<'_, Option<Box<Buffer<B>>>> {
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
            Kind::Failed { error } => Poll::Ready(error.take().map(Err)),
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
            Kind::Failed { error } => error.is_none(),
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
            Kind::Rewritten { data } => d.field("whole", &data.as_ref().map(Bytes::len)),
            Kind::Failed { .. } => d.field("failed", &true),
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
#[path = "replay_tests.rs"]
mod tests;
