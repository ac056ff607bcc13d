//! The response body that runs the body clocks, and the request body the
//! inner service receives.

use std::fmt;
use std::future::Future as _;
use std::io::IoSlice;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::time::{sleep_until, Instant, Sleep};

use super::detect::SseLines;
use crate::body::{MaybePeeked, PeekedBody};
use crate::deadline::CutSignal;
use crate::{ApiError, BoxError, TimeoutPhase};

/// Which body clock runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Clock {
    /// Ordinary call: only the total.
    Total,
    /// Streaming call before its first data: first byte and total.
    FirstByte,
    /// Streaming call after its first data: idle and total.
    Idle,
    /// A clock ran out; the body is over.
    Expired,
}

/// The body clocks of one response, fixed when its headers arrive.
///
/// Kept small (it lives in every response body): lengths are nanoseconds
/// from the start of the call, which is the one instant stored.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BodyClocks {
    start: Instant,
    total: u64,
    first_byte: u64,
    idle: u64,
    /// When the last activity was seen, in nanoseconds since `start`.
    last_activity: u64,
    clock: Clock,
    /// Set when SSE comment lines do not count as activity.
    comments: Option<SseLines>,
}

impl BodyClocks {
    /// The clock of an ordinary call: the whole body must arrive within
    /// `total` of `start`.
    pub(crate) fn ordinary(start: Instant, total: Duration) -> Self {
        BodyClocks {
            start,
            total: nanos(total),
            first_byte: 0,
            idle: 0,
            last_activity: 0,
            clock: Clock::Total,
            comments: None,
        }
    }

    /// The clocks of a streaming call that started at `start`: first data
    /// within `first_byte`, then no gap longer than `idle`, all within
    /// `total`. With `comments_are_activity` off, a frame of only SSE comment
    /// lines neither counts as the first byte nor resets the idle clock.
    pub(crate) fn streaming(
        start: Instant,
        first_byte: Duration,
        idle: Duration,
        total: Duration,
        comments_are_activity: bool,
    ) -> Self {
        BodyClocks {
            start,
            total: nanos(total),
            first_byte: nanos(first_byte),
            idle: nanos(idle),
            last_activity: 0,
            clock: Clock::FirstByte,
            comments: (!comments_are_activity).then(SseLines::new),
        }
    }

    /// When the running clock runs out, which phase that is, and its length.
    fn next_expiry(&self) -> (Instant, TimeoutPhase, Duration) {
        let (at, phase, len) = match self.clock {
            Clock::FirstByte => (self.first_byte, TimeoutPhase::FirstByte, self.first_byte),
            Clock::Idle => (
                self.last_activity.saturating_add(self.idle),
                TimeoutPhase::Idle,
                self.idle,
            ),
            Clock::Total | Clock::Expired => (self.total, TimeoutPhase::Total, self.total),
        };
        let (at, phase, len) = if at < self.total {
            (at, phase, len)
        } else {
            (self.total, TimeoutPhase::Total, self.total)
        };
        (
            checked_add(self.start, Duration::from_nanos(at)),
            phase,
            Duration::from_nanos(len),
        )
    }

    /// Notes a data frame: the first byte of a stream, or activity.
    fn on_data<D: Buf>(&mut self, data: &D) {
        if !matches!(self.clock, Clock::FirstByte | Clock::Idle) || !data.has_remaining() {
            return;
        }
        if let Some(lines) = &mut self.comments {
            if only_comments(lines, data) {
                return;
            }
        }
        self.clock = Clock::Idle;
        self.last_activity = nanos(Instant::now().saturating_duration_since(self.start));
    }
}

pub(crate) use crate::util::{instant_after as checked_add, saturating_nanos as nanos};

fn only_comments<D: Buf>(lines: &mut SseLines, data: &D) -> bool {
    let chunk = data.chunk();
    if chunk.len() == data.remaining() {
        return lines.feed(chunk);
    }
    let mut slices = [IoSlice::new(&[]); 32];
    let n = data.chunks_vectored(&mut slices);
    let seen: usize = slices[..n].iter().map(|s| s.len()).sum();
    let mut comments = true;
    for s in &slices[..n] {
        // Every piece is fed so the line state stays right.
        comments &= lines.feed(s);
    }
    // More pieces than looked at: count the frame as activity.
    comments && seen == data.remaining()
}

pin_project! {
    /// A response body that runs the body clocks of a
    /// [`Timeout`](super::Timeout) call.
    ///
    /// An ordinary call's body must end before the call's total timeout; a
    /// streaming call's body must send its first data before the first-byte
    /// timeout, never be silent longer than the idle timeout, and end before
    /// the streaming total. When a clock runs out the body yields one error,
    /// an [`ApiError`] of kind [`Timeout`](crate::ErrorKind::Timeout) whose
    /// [`timeout_phase`](ApiError::timeout_phase) names the clock (boxed as a
    /// [`BoxError`]), and then ends.
    ///
    /// The timer is one `tokio::time::Sleep` stored inline: it is created
    /// only when the body first has to wait, and activity moves the idle
    /// deadline without touching it (the timer is re-armed in place when it
    /// fires early). Frames that are ready are passed on without looking at
    /// a clock. [`is_end_stream`](Body::is_end_stream) and
    /// [`size_hint`](Body::size_hint) are those of the inner body, so a
    /// `Content-Length` body stays one.
    pub struct TimeoutBody<B> {
        #[pin]
        inner: B,
        #[pin]
        sleep: Option<Sleep>,
        clocks: BodyClocks,
        // Set when this body's clock cuts the call short (see `CutSignal`).
        cut: Option<CutSignal>,
    }
}

impl<B> TimeoutBody<B> {
    pub(crate) fn new(inner: B, clocks: BodyClocks, cut: Option<CutSignal>) -> Self {
        TimeoutBody {
            inner,
            sleep: None,
            clocks,
            cut,
        }
    }

    /// A reference to the inner body.
    pub fn get_ref(&self) -> &B {
        &self.inner
    }

    /// The inner body.
    pub fn into_inner(self) -> B {
        self.inner
    }
}

impl<B> fmt::Debug for TimeoutBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (at, phase, _) = self.clocks.next_expiry();
        f.debug_struct("TimeoutBody")
            .field("clock", &phase)
            .field("expires_at", &at)
            .field("expired", &(self.clocks.clock == Clock::Expired))
            .finish()
    }
}

impl<B> Body for TimeoutBody<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, BoxError>>> {
        let mut this = self.project();
        if this.clocks.clock == Clock::Expired {
            return Poll::Ready(None);
        }
        match this.inner.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.clocks.on_data(data);
                }
                return Poll::Ready(Some(Ok(frame)));
            }
            Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => {}
        }
        loop {
            let (at, phase, len) = this.clocks.next_expiry();
            let sleep = match this.sleep.as_mut().as_pin_mut() {
                Some(sleep) => sleep,
                None => {
                    this.sleep.set(Some(sleep_until(at)));
                    this.sleep
                        .as_mut()
                        .as_pin_mut()
                        .expect("the timer was just set")
                }
            };
            let mut sleep = sleep;
            if sleep.deadline() > at {
                sleep.as_mut().reset(at);
            }
            ready!(sleep.as_mut().poll(cx));
            if sleep.deadline() >= at {
                this.clocks.clock = Clock::Expired;
                if let Some(cut) = this.cut.as_ref() {
                    cut.mark();
                }
                let err = ApiError::timeout(phase, len);
                tracing::debug!(phase = phase.as_str(), after = ?len, "response body timed out");
                return Poll::Ready(Some(Err(Box::new(err))));
            }
            // Activity moved the deadline since the timer was armed.
            sleep.reset(at);
        }
    }

    fn is_end_stream(&self) -> bool {
        self.clocks.clock == Clock::Expired || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        if self.clocks.clock == Clock::Expired {
            SizeHint::with_exact(0)
        } else {
            self.inner.size_hint()
        }
    }
}

pin_project! {
    /// The request body a [`Timeout`](super::Timeout) service hands its inner
    /// service: the caller's body, unchanged, or — when the start of a JSON
    /// body was read to look for `"stream": true` — the bytes read followed
    /// by the rest of the body, so the inner service receives the same bytes
    /// either way.
    ///
    /// [`is_end_stream`](Body::is_end_stream) and
    /// [`size_hint`](Body::size_hint) are forwarded (a body with a known
    /// length keeps it), and so are trailers and errors.
    pub struct RequestBody<B: Body> {
        #[pin]
        kind: MaybePeeked<B>,
    }
}

impl<B: Body> RequestBody<B> {
    /// The caller's body, unchanged: what the inner service receives when
    /// the body was not peeked. Useful to build requests for a service that
    /// sits both behind [`Timeout`](super::Timeout) and elsewhere.
    pub fn new(body: B) -> Self {
        RequestBody {
            kind: MaybePeeked::Plain { body },
        }
    }

    pub(crate) fn peeked(body: PeekedBody<B>) -> Self {
        RequestBody {
            kind: MaybePeeked::Peeked { body },
        }
    }

    /// Whether the start of the body was read to look for `"stream": true`.
    pub fn was_peeked(&self) -> bool {
        self.kind.is_peeked()
    }
}

impl<B: Body> fmt::Debug for RequestBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            MaybePeeked::Plain { .. } => f.debug_struct("RequestBody").finish_non_exhaustive(),
            MaybePeeked::Peeked { body } => {
                f.debug_struct("RequestBody").field("peeked", body).finish()
            }
        }
    }
}

impl<B> Body for RequestBody<B>
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
