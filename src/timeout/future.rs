//! The response futures of [`Timeout`](super::Timeout) and
//! [`AttemptTimeout`](super::AttemptTimeout).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{request, Request, Response};
use http_body::Body;
use pin_project_lite::pin_project;

use crate::deadline::CutSignal;
use tokio::time::{sleep_until, Instant, Sleep};
use tower_service::Service;

use super::body::{checked_add, nanos, BodyClocks, RequestBody, TimeoutBody};
use super::detect::stream_requested;
use super::layer::Config;
use super::profile::TimeoutOverride;
use super::service::prepare_request;
use crate::body::Peek;
use crate::content_type::{response_kind, ResponseKind};
use crate::{ApiError, BoxError, TimeoutPhase};

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

/// The clocks of one call, fixed when it starts.
#[derive(Clone, Copy, Debug)]
///
/// Kept small (it lives in every response future): lengths are nanoseconds.
pub(crate) struct CallClocks {
    pub(crate) start: Instant,
    total: u64,
    first_byte: u64,
    idle: u64,
    stream_total: u64,
    comments_are_activity: bool,
    pub(crate) detected: Detected,
}

impl CallClocks {
    pub(crate) fn new(config: &Config, over: Option<&TimeoutOverride>, detected: Detected) -> Self {
        let mut clocks = CallClocks {
            start: Instant::now(),
            total: nanos(config.total),
            first_byte: nanos(config.first_byte),
            idle: nanos(config.idle),
            stream_total: nanos(config.stream_total),
            comments_are_activity: config.comments_are_activity,
            detected,
        };
        if let Some(o) = over {
            let set = |slot: &mut u64, d: Option<Duration>| {
                if let Some(d) = d {
                    *slot = nanos(d);
                }
            };
            set(&mut clocks.total, o.total);
            set(&mut clocks.first_byte, o.first_byte);
            set(&mut clocks.idle, o.idle);
            set(&mut clocks.stream_total, o.stream_total);
        }
        clocks
    }

    /// When the response headers are due, and the error if they are late.
    pub(crate) fn headers_expiry(&self) -> (Instant, TimeoutPhase, Duration) {
        let streaming = if self.first_byte < self.stream_total {
            (TimeoutPhase::Attempt, self.first_byte)
        } else {
            (TimeoutPhase::Total, self.stream_total)
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
        (checked_add(self.start, len), phase, len)
    }

    /// The longest a call may take, for `grpc-timeout`: a gRPC response is
    /// a stream unless the request was marked ordinary.
    pub(crate) fn grpc_ceiling(&self) -> Duration {
        Duration::from_nanos(match self.detected {
            Detected::Ordinary => self.total,
            _ => self.stream_total,
        })
    }

    fn body_clocks(&self, response: &http::HeaderMap) -> BodyClocks {
        let kind = response_kind(response);
        let streaming = match self.detected {
            Detected::Streaming => true,
            Detected::Ordinary => false,
            Detected::Undecided | Detected::Peeking => kind != ResponseKind::Other,
        };
        if streaming {
            BodyClocks::streaming(
                self.start,
                Duration::from_nanos(self.first_byte),
                Duration::from_nanos(self.idle),
                Duration::from_nanos(self.stream_total),
                // Comment lines only mean something in an event stream.
                self.comments_are_activity || kind != ResponseKind::EventStream,
            )
        } else {
            BodyClocks::ordinary(self.start, Duration::from_nanos(self.total))
        }
    }
}

/// A call waiting for its JSON body to be peeked before the inner service is
/// called.
pub(crate) struct Peeking<S, B> {
    pub(crate) peek: Peek<B>,
    pub(crate) service: S,
    pub(crate) parts: request::Parts,
    pub(crate) config: Config,
}

pin_project! {
    /// The response future of [`Timeout`](super::Timeout).
    ///
    /// Resolves to the response with its body wrapped in a
    /// [`TimeoutBody`] that runs the body clocks, or to an [`ApiError`]:
    /// the inner service's error, or a timeout before the headers arrived.
    /// The timer is created only when the call first has to wait.
    pub struct ResponseFuture<F, S, B> {
        #[pin]
        state: State<F, S, B>,
        #[pin]
        sleep: Option<Sleep>,
        clocks: CallClocks,
        // Set when this timeout cuts the call short (see `CutSignal`).
        cut: Option<CutSignal>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, S, B> {
        // Inline, not boxed: one allocation fewer per JSON call. Not
        // structurally pinned (`Peek` boxes the body), so it moves out
        // when the peek is done.
        Peeking { peeking: Option<Peeking<S, B>> },
        Calling { #[pin] future: F },
    }
}

impl<F, S, B> ResponseFuture<F, S, B> {
    pub(crate) fn calling(future: F, clocks: CallClocks, cut: Option<CutSignal>) -> Self {
        ResponseFuture {
            state: State::Calling { future },
            sleep: None,
            clocks,
            cut,
        }
    }

    pub(crate) fn peeking(peeking: Peeking<S, B>, clocks: CallClocks) -> Self {
        ResponseFuture {
            state: State::Peeking {
                peeking: Some(peeking),
            },
            sleep: None,
            clocks,
            cut: None,
        }
    }
}

impl<F, S, B> fmt::Debug for ResponseFuture<F, S, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Peeking { .. } => "peeking",
            State::Calling { .. } => "calling",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .field("clocks", &self.clocks)
            .finish()
    }
}

impl<F, S, B, ResB, E> Future for ResponseFuture<F, S, B>
where
    F: Future<Output = Result<Response<ResB>, E>>,
    E: Into<BoxError>,
    S: Service<Request<RequestBody<B>>, Response = Response<ResB>, Error = E, Future = F>,
    B: Body,
    B::Data: Into<Bytes>,
{
    type Output = Result<Response<TimeoutBody<ResB>>, ApiError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Calling { future } => match future.poll(cx) {
                    Poll::Ready(Ok(res)) => {
                        let (parts, body) = res.into_parts();
                        let body = TimeoutBody::new(
                            body,
                            this.clocks.body_clocks(&parts.headers),
                            this.cut.take(),
                        );
                        return Poll::Ready(Ok(Response::from_parts(parts, body)));
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(ApiError::from_error(e.into()))),
                    Poll::Pending => break,
                },
                StateProj::Peeking { peeking } => {
                    let Some(p) = peeking.as_mut() else {
                        unreachable!("a peeked call is called once")
                    };
                    let Poll::Ready(peeked) = Pin::new(&mut p.peek).poll(cx) else {
                        break;
                    };
                    let Peeking {
                        mut service,
                        parts,
                        config,
                        ..
                    } = peeking.take().expect("checked above");
                    // The last frame read may go past the limit: look no further.
                    let seen = &peeked.data[..peeked.data.len().min(config.peek_limit)];
                    this.clocks.detected = if stream_requested(seen) {
                        Detected::Streaming
                    } else {
                        Detected::Undecided
                    };
                    let mut req =
                        Request::from_parts(parts, RequestBody::peeked(peeked.into_body()));
                    *this.cut = prepare_request(&mut req, this.clocks, &config);
                    let future = service.call(req);
                    this.state.set(State::Calling { future });
                }
            }
        }

        // The call waits: run the headers clock.
        let (at, phase, len) = this.clocks.headers_expiry();
        let mut sleep = match this.sleep.as_mut().as_pin_mut() {
            Some(mut sleep) => {
                // The profile may have been settled by a peek since.
                if sleep.deadline() != at {
                    sleep.as_mut().reset(at);
                }
                sleep
            }
            None => {
                this.sleep.set(Some(sleep_until(at)));
                this.sleep
                    .as_mut()
                    .as_pin_mut()
                    .expect("the timer was just set")
            }
        };
        ready!(sleep.as_mut().poll(cx));
        tracing::debug!(phase = phase.as_str(), after = ?len, "no response headers in time");
        if let Some(cut) = this.cut.as_ref() {
            cut.mark();
        }
        Poll::Ready(Err(ApiError::timeout(phase, len)))
    }
}

pin_project! {
    /// The response future of [`AttemptTimeout`](super::AttemptTimeout):
    /// the inner future, or a [`Headers`](TimeoutPhase::Attempt) timeout.
    ///
    /// The timer is created only when the call first has to wait.
    pub struct AttemptFuture<F> {
        #[pin]
        future: F,
        #[pin]
        sleep: Option<Sleep>,
        deadline: Instant,
        timeout: Duration,
    }
}

impl<F> AttemptFuture<F> {
    pub(crate) fn new(future: F, timeout: Duration) -> Self {
        AttemptFuture {
            future,
            sleep: None,
            deadline: checked_add(Instant::now(), timeout),
            timeout,
        }
    }
}

impl<F> fmt::Debug for AttemptFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AttemptFuture")
            .field("deadline", &self.deadline)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl<F, T, E> Future for AttemptFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, ApiError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        match this.future.poll(cx) {
            Poll::Ready(result) => {
                return Poll::Ready(result.map_err(|e| ApiError::from_error(e.into())))
            }
            Poll::Pending => {}
        }
        if this.sleep.is_none() {
            this.sleep.set(Some(sleep_until(*this.deadline)));
        }
        let sleep = this.sleep.as_pin_mut().expect("the timer was just set");
        ready!(sleep.poll(cx));
        tracing::debug!(after = ?this.timeout, "attempt timed out before its headers");
        Poll::Ready(Err(ApiError::timeout(TimeoutPhase::Attempt, *this.timeout)))
    }
}
