//! [`Buffer`]: what the attempts of one call share of its request body.

use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use bytes::{Buf, Bytes};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};

use crate::body::hint_plus;
use crate::BoxError;

/// The kept chunks, in order. The first is held inline: a body of one
/// chunk (a `Full` body, the common case) is kept without allocating.
#[derive(Default)]
pub(super) struct Chunks {
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

    pub(super) fn len(&self) -> usize {
        usize::from(self.first.is_some()) + self.rest.len()
    }

    /// Room reserved beyond the inline chunk.
    #[cfg(test)]
    pub(super) fn spilled_capacity(&self) -> usize {
        self.rest.capacity()
    }
}

/// The request body of a call as its attempts share it: the chunks kept so
/// far (up to a cap), the trailers, and the rest of the caller's body.
///
/// One attempt's body holds it at a time.
pub(super) struct Buffer<B> {
    chunks: Chunks,
    /// Bytes in `chunks`.
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

/// Where one attempt's body is in the [`Buffer`].
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Cursor {
    /// Chunks yielded.
    chunks: usize,
    /// Bytes yielded from the kept chunks.
    bytes: usize,
    trailers_sent: bool,
}

impl<B: Body> Buffer<B> {
    /// A buffer over `body`, keeping up to `cap` bytes; one whose size hint
    /// is already over the cap keeps nothing.
    pub(super) fn new(body: B, cap: usize) -> Self {
        let too_big = usize::try_from(body.size_hint().lower()).map_or(true, |l| l > cap);
        Buffer {
            chunks: Chunks::default(),
            len: 0,
            cap,
            trailers: None,
            rest: Some(Box::pin(body)),
            capped: too_big,
            failed: false,
        }
    }
}

impl<B> Buffer<B> {
    /// Whether a later attempt may replay the body.
    pub(super) fn replayable(&self) -> bool {
        !self.capped && !self.failed
    }

    pub(super) fn is_capped(&self) -> bool {
        self.capped
    }

    /// The kept chunk the cursor is at, moving past it; `None` once every
    /// kept chunk was yielded (or none is kept).
    pub(super) fn next_kept(&self, at: &mut Cursor) -> Option<Frame<Bytes>> {
        if self.capped {
            return None;
        }
        let chunk = self.chunks.get(at.chunks)?;
        at.chunks += 1;
        at.bytes += chunk.len();
        Some(Frame::data(chunk.clone()))
    }

    /// Keeps `chunk` (read from the caller's body) unless that goes over the
    /// cap, which drops everything kept.
    fn keep(&mut self, chunk: &Bytes, at: &mut Cursor) {
        if self.capped {
            return;
        }
        if self.len.saturating_add(chunk.len()) > self.cap {
            self.capped = true;
            self.chunks = Chunks::default();
            self.len = 0;
        } else {
            self.len += chunk.len();
            self.chunks.push(chunk.clone());
            at.chunks = self.chunks.len();
            at.bytes = self.len;
        }
    }

    pub(super) fn is_end_stream(&self, at: &Cursor) -> bool
    where
        B: Body,
    {
        let replayed_all = self.capped || at.chunks >= self.chunks.len();
        let trailers_done = at.trailers_sent || self.trailers.is_none();
        replayed_all
            && match &self.rest {
                Some(rest) => rest.is_end_stream(),
                None => trailers_done,
            }
    }

    pub(super) fn size_hint(&self, at: &Cursor) -> SizeHint
    where
        B: Body,
    {
        let buffered = if self.capped {
            0
        } else {
            (self.len - at.bytes) as u64
        };
        let rest = match &self.rest {
            Some(rest) => rest.size_hint(),
            None => SizeHint::with_exact(0),
        };
        hint_plus(rest, buffered)
    }

    /// The caller's body whole, once it was read to its end without going
    /// over the cap or failing (trailers left out): the one chunk kept, or
    /// the chunks joined.
    pub(super) fn whole(&self) -> Option<Bytes> {
        if self.rest.is_some() || !self.replayable() {
            return None;
        }
        match (&self.chunks.first, self.chunks.rest.is_empty()) {
            (None, _) => Some(Bytes::new()),
            (Some(first), true) => Some(first.clone()),
            (Some(first), false) => {
                let mut all = Vec::with_capacity(self.len);
                all.extend_from_slice(first);
                for chunk in &self.chunks.rest {
                    all.extend_from_slice(chunk);
                }
                Some(all.into())
            }
        }
    }

    /// Bytes kept, for `Debug`.
    pub(super) fn kept(&self) -> usize {
        self.len
    }

    /// Whether the caller's body is still being read, for `Debug`.
    pub(super) fn streaming(&self) -> bool {
        self.rest.is_some()
    }

    #[cfg(test)]
    pub(super) fn chunks(&self) -> &Chunks {
        &self.chunks
    }
}

/// What reading the caller's body before the first attempt found.
pub(super) enum ReadNow {
    /// All of it, one chunk within the cap (a `Full` body).
    Whole(Bytes),
    /// It failed (or is larger than its size hint said).
    Failed(BoxError),
    /// Not all of it is there: the first attempt reads on (from what was
    /// read, kept).
    Later,
}

impl<B> Buffer<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    /// Reads the caller's body now, when its size hint says it fits the cap,
    /// without waiting: the whole body when it is all there already.
    pub(super) fn read_now(&mut self) -> ReadNow {
        let fits = |rest: &Pin<Box<B>>| {
            let upper = rest.size_hint().upper();
            upper.is_some_and(|u| u <= self.cap as u64)
        };
        if self.capped || !self.rest.as_ref().is_some_and(fits) {
            return ReadNow::Later;
        }
        let mut scratch = Cursor::default();
        let mut now = Context::from_waker(Waker::noop());
        match self.poll_rest(&mut scratch, &mut now) {
            Poll::Ready(Some(Err(e))) => ReadNow::Failed(e),
            // Kept chunks are dropped at the cap: the first attempt would
            // miss this one.
            Poll::Ready(Some(Ok(_))) if self.capped => {
                self.failed = true;
                ReadNow::Failed("the request body is larger than its size hint".into())
            }
            Poll::Ready(Some(Ok(frame))) => {
                let ended = self.rest.as_ref().is_some_and(|r| r.is_end_stream());
                match &self.chunks.first {
                    Some(first) if frame.is_data() && ended && self.chunks.rest.is_empty() => {
                        ReadNow::Whole(first.clone())
                    }
                    _ => ReadNow::Later,
                }
            }
            Poll::Ready(None) | Poll::Pending => ReadNow::Later,
        }
    }

    /// The next frame after the kept chunks: the trailers once the caller's
    /// body has ended, else the next frame of the caller's body, kept as it
    /// passes.
    pub(super) fn poll_rest(
        &mut self,
        at: &mut Cursor,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let Some(rest) = self.rest.as_mut() else {
            if !at.trailers_sent {
                at.trailers_sent = true;
                if let Some(t) = &self.trailers {
                    return Poll::Ready(Some(Ok(Frame::trailers(t.clone()))));
                }
            }
            return Poll::Ready(None);
        };
        let frame = match rest.as_mut().poll_frame(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(None) => {
                self.rest = None;
                at.trailers_sent = true;
                return Poll::Ready(None);
            }
            Poll::Ready(Some(Err(e))) => {
                self.rest = None;
                self.failed = true;
                return Poll::Ready(Some(Err(e.into())));
            }
            Poll::Ready(Some(Ok(frame))) => frame,
        };
        let frame = match frame.into_data() {
            Ok(mut data) => {
                let chunk = data.copy_to_bytes(data.remaining());
                self.keep(&chunk, at);
                Frame::data(chunk)
            }
            Err(frame) => match frame.into_trailers() {
                Ok(trailers) => {
                    self.trailers = Some(trailers.clone());
                    // Trailers end a body.
                    self.rest = None;
                    at.trailers_sent = true;
                    Frame::trailers(trailers)
                }
                // A frame kind from a future http-body: pass it on (it
                // cannot be kept).
                Err(frame) => frame.map_data(|mut d| d.copy_to_bytes(d.remaining())),
            },
        };
        Poll::Ready(Some(Ok(frame)))
    }
}
