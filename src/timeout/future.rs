//! The response futures of [`Timeout`](super::Timeout) and
//! [`AttemptTimeout`](super::AttemptTimeout).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use http::{request, Request, Response};
use http_body::Body;
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tower_service::Service;

use super::body::{RequestBody, TimeoutBody};
use super::clocks::{CallClocks, Detected};
use super::detect::stream_requested;
use super::layer::TimeoutLayer;
use crate::body::{Peek, Peeked};
use crate::call::{retried_out, Attempts, CallContext};
use crate::util::{arm, instant_after};
use crate::{ApiError, BoxError, TimeoutPhase};

/// A call waiting for the start of its JSON body to be read before the
/// inner service is called.
pub(crate) struct Peeking<S, B> {
    pub(crate) peek: Peek<B>,
    pub(crate) service: S,
    pub(crate) parts: request::Parts,
    pub(crate) layer: TimeoutLayer,
}

impl<S, B> Peeking<S, B> {
    /// The start of the body is read: calls the inner service with the
    /// whole body.
    fn call(self, peeked: Peeked<B>, clocks: &mut CallClocks) -> (S::Future, Option<CallContext>)
    where
        S: Service<Request<RequestBody<B>>>,
        B: Body,
    {
        let Peeking {
            mut service,
            parts,
            layer,
            ..
        } = self;
        // Sent now, after the body's start was read.
        call_peeked(&mut service, parts, peeked, &layer, clocks, Instant::now())
    }
}

/// The start of the body is read: settles the profile, tells the request,
/// and calls `service` (ready) with the whole body, at `sent`.
pub(crate) fn call_peeked<S, B>(
    service: &mut S,
    parts: request::Parts,
    peeked: Peeked<B>,
    layer: &TimeoutLayer,
    clocks: &mut CallClocks,
    sent: Instant,
) -> (S::Future, Option<CallContext>)
where
    S: Service<Request<RequestBody<B>>>,
    B: Body,
{
    // The last frame read may go past the limit: look no further.
    let seen = &peeked.data[..peeked.data.len().min(layer.peek_limit)];
    clocks.detected = if stream_requested(seen) {
        Detected::Streaming
    } else {
        Detected::Undecided
    };
    let mut req = Request::from_parts(parts, RequestBody::peeked(peeked.into_body()));
    let call = clocks.publish(&mut req, layer);
    (send(service, req, call.as_ref(), sent), call)
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
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, S, B> {
        // Inline, not boxed: one allocation fewer per JSON call. Not
        // structurally pinned (`Peek` boxes the body), so it moves out
        // when the peek is done.
        Peeking { peeking: Option<Peeking<S, B>> },
        // The inner service was called; `call` is told when this timeout
        // cuts the call short.
        Calling { #[pin] future: F, call: Option<CallContext> },
    }
}

impl<F, S, B> ResponseFuture<F, S, B> {
    pub(crate) fn calling(future: F, clocks: CallClocks, call: Option<CallContext>) -> Self {
        ResponseFuture {
            state: State::Calling { future, call },
            sleep: None,
            clocks,
        }
    }

    pub(crate) fn peeking(peeking: Peeking<S, B>, clocks: CallClocks) -> Self {
        ResponseFuture {
            state: State::Peeking {
                peeking: Some(peeking),
            },
            sleep: None,
            clocks,
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
                StateProj::Calling { future, call } => match poll_watched(future, call, cx) {
                    Poll::Ready(Ok(res)) => {
                        let (parts, body) = res.into_parts();
                        let clocks = this.clocks.body_clocks(&parts.headers);
                        let body = TimeoutBody::new(body, clocks, call.take());
                        return Poll::Ready(Ok(Response::from_parts(parts, body)));
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(ApiError::from_error(e.into()))),
                    Poll::Pending => break,
                },
                StateProj::Peeking { peeking } => {
                    let p = peeking.as_mut().expect("a peeked call is called once");
                    let Poll::Ready(peeked) = Pin::new(&mut p.peek).poll(cx) else {
                        break;
                    };
                    let p = peeking.take().expect("checked above");
                    let (future, call) = p.call(peeked, this.clocks);
                    this.state.set(State::Calling { future, call });
                }
            }
        }

        // The call waits: run the headers clock (the profile may have been
        // settled by a peek since the timer was armed).
        let in_loop = matches!(
            this.state.as_mut().project(),
            StateProj::Calling { call: Some(call), .. } if call.is_owned()
        );
        let (at, phase, len) = this.clocks.headers_expiry(in_loop);
        if this.sleep.is_none() && woken_inside(this.state.as_mut(), at) {
            // A timer inside (the attempt's) wakes this task no later than
            // this one would: this one is armed when the next poll finds
            // none.
            return Poll::Pending;
        }
        ready!(arm(this.sleep.as_mut(), at).poll(cx));
        tracing::debug!(phase = phase.as_str(), after = ?len, "no response headers in time");
        crate::metrics::timed_out(phase);
        let err = ApiError::timeout(phase, len);
        match this.state.project() {
            StateProj::Calling {
                call: Some(call), ..
            } => Poll::Ready(Err(cut_short(call, err))),
            _ => Poll::Ready(Err(err)),
        }
    }
}

/// Calls `service` with `req`, sent at `at`: the layers inside learn the
/// instant from the call's context, if there is one.
pub(crate) fn send<S: Service<R>, R>(
    service: &mut S,
    req: R,
    call: Option<&CallContext>,
    at: Instant,
) -> S::Future {
    match call {
        Some(call) => call.timing().send(at, || service.call(req)),
        None => service.call(req),
    }
}

/// Polls the inner future, noting the timers the layers inside arm for
/// this task.
fn poll_watched<F: Future>(
    future: Pin<&mut F>,
    call: &Option<CallContext>,
    cx: &mut Context<'_>,
) -> Poll<F::Output> {
    if let Some(call) = call {
        call.timing().watch_timers(task_of(cx.waker()));
    }
    future.poll(cx)
}

/// Who a waker wakes: its data and vtable, as numbers.
fn task_of(waker: &Waker) -> [usize; 2] {
    [
        waker.data() as usize,
        std::ptr::from_ref(waker.vtable()) as usize,
    ]
}

/// Whether a layer inside armed, during the poll just made, a timer that
/// wakes this task by `at`.
fn woken_inside<F, S, B>(state: Pin<&mut State<F, S, B>>, at: Instant) -> bool {
    match state.project() {
        StateProj::Calling {
            call: Some(call), ..
        } => call
            .timing()
            .timer_inside()
            .is_some_and(|inside| inside <= at),
        _ => false,
    }
}

/// This timeout cut `call` short with `err`: the layers inside learn it
/// (a breaker counts the attempt in flight as failed), and the error
/// carries the attempts sent so far. When the stack had already retried the
/// call, its caller is told not to retry it again.
fn cut_short(call: &CallContext, err: ApiError) -> ApiError {
    call.mark_cut();
    let sent = call.attempts();
    if sent == 0 {
        // No attempt loop counts this call's attempts.
        return err;
    }
    let mut err = if sent > 1 { retried_out(err) } else { err };
    err.extensions_mut().insert(Attempts(sent));
    err
}

pin_project! {
    /// The response future of [`AttemptTimeout`](super::AttemptTimeout):
    /// the inner future, or an [`Attempt`](TimeoutPhase::Attempt) timeout.
    ///
    /// The timer is created only when the call first has to wait.
    pub struct AttemptFuture<F> {
        #[pin]
        future: F,
        #[pin]
        sleep: Option<Sleep>,
        deadline: Instant,
        timeout: Duration,
        // Tells a total timeout outside when this timer fires first.
        note: TimerNote,
    }
}

/// What an attempt's timer tells the call's context: the instant it fires
/// for the task polling the total timeout outside (which then need not arm
/// its own), forgotten when the attempt ends.
struct TimerNote {
    call: Option<CallContext>,
    noted: bool,
}

impl TimerNote {
    fn note(&mut self, waker: &Waker, at: Instant) {
        if let Some(call) = &self.call {
            call.timing().timer_armed(task_of(waker), at);
            self.noted = true;
        }
    }
}

impl Drop for TimerNote {
    fn drop(&mut self) {
        if let (Some(call), true) = (&self.call, self.noted) {
            call.timing().timer_dropped();
        }
    }
}

impl<F> AttemptFuture<F> {
    /// The future of an attempt sent at `sent`, of the call of `call`.
    pub(crate) fn new(
        future: F,
        sent: Instant,
        timeout: Duration,
        call: Option<CallContext>,
    ) -> Self {
        AttemptFuture {
            future,
            sleep: None,
            deadline: instant_after(sent, timeout),
            timeout,
            note: TimerNote { call, noted: false },
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
        let this = self.project();
        if let Poll::Ready(result) = this.future.poll(cx) {
            return Poll::Ready(result.map_err(|e| ApiError::from_error(e.into())));
        }
        if arm(this.sleep, *this.deadline).poll(cx).is_pending() {
            this.note.note(cx.waker(), *this.deadline);
            return Poll::Pending;
        }
        tracing::debug!(after = ?this.timeout, "attempt timed out before its headers");
        crate::metrics::timed_out(TimeoutPhase::Attempt);
        Poll::Ready(Err(ApiError::timeout(TimeoutPhase::Attempt, *this.timeout)))
    }
}
