//! The clock policy of the timeout: which profile a call runs under
//! ([`Detected`]), the clocks of one call ([`CallClocks`]) and those of its
//! response body ([`BodyClocks`]).

use std::io::IoSlice;
use std::time::Duration;

use bytes::Buf;
use http::{HeaderMap, Request};
use http_body::Body;
use tokio::time::Instant;

use super::detect::GRPC_TIMEOUT;
use super::detect::{accepts_event_stream, encode_grpc_timeout, parse_grpc_timeout, SseLines};
use super::layer::TimeoutLayer;
use super::profile::{Profile, TimeoutOverride};
use crate::call::CallContext;
use crate::content_type::{is_grpc, is_json, response_kind, ResponseKind};
use crate::util::{instant_after, saturating_nanos};
use crate::TimeoutPhase;

/// What is known about a call's profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Detected {
    /// The request was marked ordinary: the response does not change it.
    Ordinary,
    /// The request says it is a stream.
    Streaming,
    /// The request says nothing; the response decides.
    Undecided,
    /// The request body is being read to find out.
    Peeking,
}

impl Detected {
    /// What the request says: its [`Profile`] marker, its `Accept` header,
    /// or a JSON body to read.
    pub(crate) fn from_request<B: Body>(req: &Request<B>, layer: &TimeoutLayer) -> Self {
        match req.extensions().get::<Profile>() {
            Some(Profile::Streaming) => Detected::Streaming,
            Some(Profile::Ordinary) => Detected::Ordinary,
            None if accepts_event_stream(req.headers()) => Detected::Streaming,
            None if layer.peek_limit > 0
                && !req.body().is_end_stream()
                && is_json(req.headers()) =>
            {
                Detected::Peeking
            }
            None => Detected::Undecided,
        }
    }
}

/// The clocks of one call, fixed when it starts.
///
/// Kept small (it lives in every response future): lengths are nanoseconds.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CallClocks {
    start: Instant,
    total: u64,
    first_byte: u64,
    idle: u64,
    stream: u64,
    comments_are_activity: bool,
    pub(crate) detected: Detected,
}

impl CallClocks {
    /// The clocks of a call starting now: the layer's, each replaced by the
    /// request's override when it sets one.
    pub(crate) fn new(
        layer: &TimeoutLayer,
        over: Option<&TimeoutOverride>,
        detected: Detected,
    ) -> Self {
        let over = over.copied().unwrap_or_default();
        let pick =
            |layer: Duration, over: Option<Duration>| saturating_nanos(over.unwrap_or(layer));
        CallClocks {
            start: Instant::now(),
            total: pick(layer.total, over.total),
            first_byte: pick(layer.first_byte, over.first_byte),
            idle: pick(layer.idle, over.idle),
            stream: pick(layer.stream, over.stream),
            comments_are_activity: layer.comments_are_activity,
            detected,
        }
    }

    /// When the call started.
    pub(crate) fn start(&self) -> Instant {
        self.start
    }

    /// When the response headers are due, and the error if they are late.
    ///
    /// `in_loop`: an attempt loop inside owns the call and runs a stream's
    /// first-byte clock per attempt; the headers of the call are then due
    /// by the stream's total.
    pub(crate) fn headers_expiry(&self, in_loop: bool) -> (Instant, TimeoutPhase, Duration) {
        let streaming = if self.first_byte < self.stream && !in_loop {
            (TimeoutPhase::Attempt, self.first_byte)
        } else {
            (TimeoutPhase::Total, self.stream)
        };
        let ordinary = (TimeoutPhase::Total, self.total);
        let (phase, len) = match self.detected {
            Detected::Streaming => streaming,
            Detected::Ordinary | Detected::Undecided => ordinary,
            // Not known yet: do not fail before either profile would.
            Detected::Peeking => {
                if streaming.1 > ordinary.1 {
                    streaming
                } else {
                    ordinary
                }
            }
        };
        let len = Duration::from_nanos(len);
        (instant_after(self.start, len), phase, len)
    }

    /// The longest a call may take, for `grpc-timeout`: a gRPC response is
    /// a stream unless the request was marked ordinary.
    fn grpc_ceiling(&self) -> Duration {
        Duration::from_nanos(match self.detected {
            Detected::Ordinary => self.total,
            _ => self.stream,
        })
    }

    /// Tells the request about the clocks once the profile is known: the
    /// call's deadline for the layers inside (in the call's context, made
    /// here when absent), `grpc-timeout` for a gRPC server. Returns the
    /// call's context, which the timeout tells when it cuts the call short.
    ///
    /// Inside an attempt loop (a retry layer outside this one owns the
    /// call), the timeout bounds one attempt: the call's deadline is left
    /// to the layers outside.
    pub(crate) fn publish<B>(
        &self,
        req: &mut Request<B>,
        layer: &TimeoutLayer,
    ) -> Option<CallContext> {
        let mut call = None;
        if layer.publish_deadline {
            let ctx = CallContext::get_or_insert_at(req.extensions_mut(), self.start);
            if !ctx.is_owned() {
                // The call's bound; a stream's first-byte clock beside it,
                // for an attempt loop inside to run per attempt (the
                // context bounds a stream no loop owns by it).
                let (at, _, _) = self.headers_expiry(true);
                ctx.set_deadline_earliest(at);
                let first_byte = Duration::from_nanos(self.first_byte);
                let streaming = self.detected == Detected::Streaming;
                ctx.set_first_byte(first_byte, instant_after(self.start, first_byte), streaming);
            }
            call = Some(ctx.clone());
        }
        if layer.grpc_timeout && is_grpc(req.headers()) {
            let ceiling = self.grpc_ceiling();
            let keep = req
                .headers()
                .get(GRPC_TIMEOUT)
                .and_then(parse_grpc_timeout)
                .is_some_and(|existing| existing <= ceiling);
            if !keep {
                req.headers_mut()
                    .insert(GRPC_TIMEOUT, encode_grpc_timeout(ceiling));
            }
        }
        call
    }

    /// The clocks of the response body, now that its headers say what it is.
    pub(crate) fn body_clocks(&self, response: &HeaderMap) -> BodyClocks {
        let kind = response_kind(response);
        let streaming = match self.detected {
            Detected::Streaming => true,
            Detected::Ordinary => false,
            Detected::Undecided | Detected::Peeking => kind != ResponseKind::Other,
        };
        if !streaming {
            return BodyClocks {
                start: self.start,
                total: self.total,
                first_byte: 0,
                idle: 0,
                last_activity: 0,
                clock: Clock::Total,
                comments: None,
            };
        }
        // Comment lines only mean something in an event stream.
        let comments_are_activity = self.comments_are_activity || kind != ResponseKind::EventStream;
        BodyClocks {
            start: self.start,
            total: self.stream,
            first_byte: self.first_byte,
            idle: self.idle,
            last_activity: 0,
            clock: Clock::FirstByte,
            comments: (!comments_are_activity).then(SseLines::new),
        }
    }
}

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
/// An ordinary call's body must end within the total of the call's start; a
/// streaming call's must send its first data within the first-byte clock,
/// never be silent longer than the idle clock, and end within the
/// stream timeout. Kept small (it lives in every response body): lengths
/// are nanoseconds from the start of the call, the one instant stored.
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
    /// When the running clock runs out, which phase that is, and its length.
    pub(crate) fn next_expiry(&self) -> (Instant, TimeoutPhase, Duration) {
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
            instant_after(self.start, Duration::from_nanos(at)),
            phase,
            Duration::from_nanos(len),
        )
    }

    /// Notes a data frame: the first byte of a stream, or activity.
    pub(crate) fn on_data<D: Buf>(&mut self, data: &D) {
        if !matches!(self.clock, Clock::FirstByte | Clock::Idle) || !data.has_remaining() {
            return;
        }
        if let Some(lines) = &mut self.comments {
            if only_comments(lines, data) {
                return;
            }
        }
        self.clock = Clock::Idle;
        self.last_activity = saturating_nanos(Instant::now().saturating_duration_since(self.start));
    }

    /// Whether a clock ran out (the body is over).
    pub(crate) fn is_expired(&self) -> bool {
        self.clock == Clock::Expired
    }

    /// Records that a clock ran out.
    pub(crate) fn expire(&mut self) {
        self.clock = Clock::Expired;
    }
}

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
