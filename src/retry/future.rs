//! [`ResponseFuture`]: one call through the attempt loop, all its attempts
//! on all its targets.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tower_service::Service;

use super::call::{Call, Prepared};
use super::decide::{Attempt, Judge, Last, Next};
use super::hold::{Held, Hold};
use super::layer::RetryLayer;
use super::policy::RetryPolicy;
use super::replay::ReplayBody;
use super::state::{State, StateProj};
use super::step::{Best, Step};
use crate::body::{Peek, Peeked};
use crate::util::arm;
use crate::{ApiError, BoxError};

pin_project! {
    /// The future of a call through [`Retry`](super::Retry) (made by a
    /// [`RetryLayer`] or a [`FallbackLayer`](crate::fallback::FallbackLayer)):
    /// attempts, waits between them, moves between targets, and the outcome
    /// handed back.
    ///
    /// Dropping it stops the call: no further attempt is sent.
    pub struct ResponseFuture<S, B, P, ResBody>
    where
        S: Service<Request<ReplayBody<B>>, Response = Response<ResBody>>,
        ResBody: Body,
    {
        #[pin]
        state: State<S::Future, ResBody, B>,
        // The one timer of the call (backoff waits, the error-body read,
        // a stream's first-byte clock), made on first use and reset in
        // place after that.
        #[pin]
        sleep: Option<Sleep>,
        service: S,
        layer: Arc<RetryLayer<P>>,
        call: Call<B>,
        // The most telling failure of the targets the call left behind.
        best: Best<ResBody>,
    }
}

impl<S, B, P, ResBody> ResponseFuture<S, B, P, ResBody>
where
    S: Service<Request<ReplayBody<B>>, Response = Response<ResBody>>,
    ResBody: Body,
{
    /// The future of `call`, started on `service` (ready) with `first`.
    pub(crate) fn new(
        first: Prepared<B>,
        mut service: S,
        layer: Arc<RetryLayer<P>>,
        call: Call<B>,
    ) -> Self {
        let state = match first {
            Prepared::Send(req) => {
                let by = call.headers_clock();
                State::Called {
                    future: call.send(&mut service, req),
                    by,
                }
            }
            Prepared::ReadWhole(body) => State::Reading {
                body: Box::new(body),
                last: None,
            },
            Prepared::Refused(err) => State::Refused { error: Some(err) },
            Prepared::Gone => unreachable!("the first attempt of a call has the caller's body"),
        };
        ResponseFuture {
            state,
            sleep: None,
            service,
            layer,
            call,
            best: None,
        }
    }
}

impl<S, B, P, ResBody> Future for ResponseFuture<S, B, P, ResBody>
where
    S: Service<Request<ReplayBody<B>>, Response = Response<ResBody>>,
    S::Error: Into<BoxError>,
    B: Body,
    B::Error: Into<BoxError>,
    ResBody: Body,
    ResBody::Data: Into<Bytes>,
    ResBody::Error: Into<BoxError>,
    P: RetryPolicy,
{
    type Output = Last<ResBody>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let judge = Judge {
                policy: &this.layer.policy,
                call: this.call,
            };
            let next = match this.state.as_mut().project() {
                StateProj::Called { future, by } => {
                    let ended = ready!(poll_attempt(future, *by, this.sleep.as_mut(), cx));
                    judge.on_attempt(ended)
                }
                StateProj::Peeking { head, peek } => {
                    let (peeked, in_time) = ready!(poll_peek(peek, this.sleep.as_mut(), cx));
                    let head = head.take().expect("the head is kept while peeking");
                    judge.on_peeked(head, peeked, in_time)
                }
                StateProj::Holding { head, hold, by } => {
                    let held = ready!(poll_hold(hold, *by, this.sleep.as_mut(), cx));
                    let head = head.take().expect("the head is kept while holding");
                    judge.on_hold(head, held)
                }
                StateProj::Waiting { last } => {
                    if let Some(sleep) = this.sleep.as_mut().as_pin_mut() {
                        ready!(sleep.poll(cx));
                    }
                    let last = last.take();
                    this.state.set(State::Ready { last });
                    continue;
                }
                StateProj::Ready { last } => match ready!(this.service.poll_ready(cx)) {
                    Ok(()) => next_attempt(this.call, this.layer, last),
                    Err(e) => Next::Return(Err(ApiError::from_error(e.into()))),
                },
                StateProj::Reading { body, last } => match ready!(read_whole(body, cx)) {
                    Ok(()) => {
                        let last = last.take();
                        this.state.set(State::Ready { last });
                        continue;
                    }
                    Err(e) => Next::Return(Err(ApiError::from_error(e))),
                },
                StateProj::Refused { error } => {
                    Next::Return(Err(error.take().expect("refused once")))
                }
                StateProj::Done => panic!("ResponseFuture polled after completion"),
            };
            let step = Step {
                state: this.state.as_mut(),
                sleep: this.sleep.as_mut(),
                service: this.service,
                call: this.call,
                layer: this.layer,
                best: this.best,
            };
            if let Some(output) = step.follow(next) {
                return Poll::Ready(output);
            }
        }
    }
}

/// Polls the attempt in flight against a stream's first-byte clock.
fn poll_attempt<F, T, E>(
    future: Pin<&mut F>,
    by: Option<(Instant, Duration)>,
    sleep: Pin<&mut Option<Sleep>>,
    cx: &mut Context<'_>,
) -> Poll<Attempt<T>>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    if let Poll::Ready(result) = future.poll(cx) {
        return Poll::Ready(match result {
            Ok(res) => Attempt::Answered(res),
            Err(e) => Attempt::Failed(ApiError::from_error(e.into())),
        });
    }
    let Some((by, len)) = by else {
        return Poll::Pending;
    };
    ready!(arm(sleep, by).poll(cx));
    tracing::debug!("no response headers within the stream's first-byte clock");
    Poll::Ready(Attempt::Stalled(len))
}

/// Reads the start of an error body against the call's timer: what was
/// read, and whether the read finished in time.
fn poll_peek<B: Body>(
    peek: &mut Peek<B>,
    sleep: Pin<&mut Option<Sleep>>,
    cx: &mut Context<'_>,
) -> Poll<(Peeked<B>, bool)> {
    let mut peek = Pin::new(peek);
    if let Poll::Ready(peeked) = peek.as_mut().poll(cx) {
        return Poll::Ready((peeked, true));
    }
    let fired = sleep.as_pin_mut().is_some_and(|s| s.poll(cx).is_ready());
    if !fired {
        return Poll::Pending;
    }
    tracing::debug!("the error body did not arrive in time; not retried");
    Poll::Ready((peek.stop(), false))
}

/// Reads the start of a stream until its commit point; `Err` with the
/// clock's length when nothing came by `by`.
fn poll_hold<B>(
    hold: &mut Hold<B>,
    by: Option<(Instant, Duration)>,
    sleep: Pin<&mut Option<Sleep>>,
    cx: &mut Context<'_>,
) -> Poll<Result<Held<B>, Duration>>
where
    B: Body,
    B::Data: Into<Bytes>,
{
    if let Poll::Ready(held) = hold.poll(cx) {
        return Poll::Ready(Ok(held));
    }
    let Some((by, len)) = by else {
        return Poll::Pending;
    };
    ready!(arm(sleep, by).poll(cx));
    tracing::debug!("no first event within the stream's first-byte clock");
    Poll::Ready(Err(len))
}

/// Reads the caller's body to its end (keeping it for the attempts).
fn read_whole<B>(body: &mut ReplayBody<B>, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    loop {
        match ready!(Pin::new(&mut *body).poll_frame(cx)) {
            Some(Ok(_)) => {}
            Some(Err(e)) => return Poll::Ready(Err(e)),
            None => return Poll::Ready(Ok(())),
        }
    }
}

/// The service is ready for the next attempt: its request, or the most
/// telling outcome when no attempt can be sent.
fn next_attempt<B: Body, Req, P>(
    call: &mut Call<Req>,
    layer: &RetryLayer<P>,
    last: &mut Option<Last<B>>,
) -> Next<B, Req> {
    match call.next_request(layer) {
        Prepared::Send(req) => {
            // The previous outcome is dropped only now, when the next
            // attempt is certain.
            drop(last.take());
            Next::Send(req)
        }
        Prepared::ReadWhole(body) => Next::ReadWhole(body, last.take()),
        Prepared::Refused(err) => Next::Return(Err(err)),
        Prepared::Gone => {
            tracing::debug!(
                "the request body is over the replay limit, failed, or still held by the \
                 previous attempt; not retried"
            );
            Next::GiveUp(last.take())
        }
    }
}

impl<S, B, P, ResBody> fmt::Debug for ResponseFuture<S, B, P, ResBody>
where
    S: Service<Request<ReplayBody<B>>, Response = Response<ResBody>>,
    ResBody: Body,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Called { .. } => "called",
            State::Peeking { .. } => "reading error body",
            State::Holding { .. } => "holding a stream's start",
            State::Waiting { .. } => "waiting",
            State::Ready { .. } => "waiting for readiness",
            State::Reading { .. } => "reading the request body",
            State::Refused { .. } => "refused",
            State::Done => "done",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .field("attempts", &self.call.attempts().get())
            .finish()
    }
}
