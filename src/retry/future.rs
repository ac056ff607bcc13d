//! [`ResponseFuture`]: one call through the retry layer, all its attempts.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http::{response, Request, Response, StatusCode};
use http_body::Body;
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tower_service::Service;

use super::body::RetryBody;
use super::call::{Call, Refusal};
use super::layer::RetryLayer;
use super::outcome::{Decision, Outcome};
use super::policy::RetryPolicy;
use super::replay::ReplayBody;
use crate::body::{Peek, Peeked};
use crate::call::{retried_out, RetriedOut};
use crate::error::grpc;
use crate::hint::ServerHints;
use crate::util::{arm, instant_after, saturating_millis};
use crate::{ApiError, BoxError, ErrorKind};

/// What one attempt ended with, as the caller would get it.
type Last<B> = Result<Response<RetryBody<B>>, ApiError>;

pin_project! {
    /// The future of a call through [`Retry`](super::Retry): attempts,
    /// waits between them, and the outcome handed back.
    ///
    /// Dropping it stops the call: no further attempt is sent.
    pub struct ResponseFuture<S, B, P, ResBody>
    where
        S: Service<Request<ReplayBody<B>>, Response = Response<ResBody>>,
        ResBody: Body,
    {
        #[pin]
        state: State<S::Future, ResBody>,
        // The one timer of the call (backoff waits, the error-body read),
        // made on the first wait and reset in place after that.
        #[pin]
        sleep: Option<Sleep>,
        service: S,
        layer: Arc<RetryLayer<P>>,
        call: Call<B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, ResBody: Body> {
        // An attempt is in flight.
        Called { #[pin] future: F },
        // The policy asked for the start of an error body.
        Peeking { head: Option<response::Parts>, peek: Peek<ResBody> },
        // Waiting before the next attempt, the last outcome kept until the
        // next attempt is sure to go out.
        Waiting { last: Option<Last<ResBody>> },
        // Waiting for the inner service to be ready for the next attempt.
        Ready { last: Option<Last<ResBody>> },
        Done,
    }
}

/// What a step decided the future does next.
enum Next<B: Body, Req> {
    /// Hand this outcome to the caller.
    Return(Last<B>),
    /// Read the start of the error body, then ask the policy again.
    ReadBody(response::Parts, B),
    /// The policy wants the outcome retried; the server said this about it.
    Retry(Last<B>, ServerHints),
    /// Send the next attempt.
    Send(Request<ReplayBody<Req>>),
}

impl<S, B, P, ResBody> ResponseFuture<S, B, P, ResBody>
where
    S: Service<Request<ReplayBody<B>>, Response = Response<ResBody>>,
    ResBody: Body,
{
    /// The future of `call`, whose first attempt `future` is in flight on
    /// `service`.
    pub(crate) fn new(
        future: S::Future,
        service: S,
        layer: Arc<RetryLayer<P>>,
        call: Call<B>,
    ) -> Self {
        ResponseFuture {
            state: State::Called { future },
            sleep: None,
            service,
            layer,
            call,
        }
    }
}

impl<S, B, P, ResBody> Future for ResponseFuture<S, B, P, ResBody>
where
    S: Service<Request<ReplayBody<B>>, Response = Response<ResBody>>,
    S::Error: Into<BoxError>,
    ResBody: Body,
    ResBody::Data: Into<Bytes>,
    P: RetryPolicy,
{
    type Output = Last<ResBody>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let attempt = this.call.attempts().get();
            let policy = &this.layer.policy;
            let next = match this.state.as_mut().project() {
                StateProj::Called { future } => match ready!(future.poll(cx)) {
                    Ok(res) => on_response(policy, attempt, res),
                    Err(e) => on_error(policy, attempt, ApiError::from_error(e.into())),
                },
                StateProj::Peeking { head, peek } => {
                    let (peeked, in_time) = ready!(poll_peek(peek, this.sleep.as_mut(), cx));
                    let head = head
                        .take()
                        .expect("the response head is kept while peeking");
                    on_peeked(policy, attempt, head, peeked, in_time)
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
                StateProj::Done => panic!("ResponseFuture polled after completion"),
            };
            let step = Step {
                state: this.state.as_mut(),
                sleep: this.sleep.as_mut(),
                service: this.service,
                call: this.call,
                layer: this.layer,
            };
            if let Some(output) = step.follow(next) {
                return Poll::Ready(output);
            }
        }
    }
}

/// An attempt failed without a response.
fn on_error<B: Body, Req, P: RetryPolicy>(policy: &P, attempt: u32, err: ApiError) -> Next<B, Req> {
    // A breaker's rejection would be rejected again.
    let retry = err.kind() != ErrorKind::CircuitOpen
        && policy.decide(&Outcome::error(attempt, &err)) == Decision::Retry;
    if retry {
        let hints = err.hints();
        Next::Retry(Err(err), hints)
    } else {
        Next::Return(Err(err))
    }
}

/// An attempt got a response: a success is committed, an error response
/// goes to the policy.
fn on_response<B: Body, Req, P: RetryPolicy>(
    policy: &P,
    attempt: u32,
    res: Response<B>,
) -> Next<B, Req> {
    if !is_candidate(&res) {
        return Next::Return(Ok(res.map(RetryBody::plain)));
    }
    let outcome = Outcome::response(attempt, res.status(), res.headers(), None);
    match policy.decide(&outcome) {
        Decision::DoNotRetry => Next::Return(Ok(res.map(RetryBody::plain))),
        Decision::Retry => {
            let hints = ServerHints::from_headers(res.headers());
            Next::Retry(Ok(res.map(RetryBody::plain)), hints)
        }
        Decision::ReadBody => {
            let (head, body) = res.into_parts();
            Next::ReadBody(head, body)
        }
    }
}

/// The start of an error body was read (or did not come in time): the
/// policy decides again, and the response keeps its whole body.
fn on_peeked<B: Body, Req, P: RetryPolicy>(
    policy: &P,
    attempt: u32,
    head: response::Parts,
    peeked: Peeked<B>,
    in_time: bool,
) -> Next<B, Req> {
    let retry = in_time
        && policy.decide(&Outcome::response(
            attempt,
            head.status,
            &head.headers,
            Some(&peeked.data),
        )) == Decision::Retry;
    let hints = retry.then(|| ServerHints::from_headers(&head.headers));
    let res = Response::from_parts(head, RetryBody::peeked(peeked.into_body()));
    match hints {
        Some(hints) => Next::Retry(Ok(res), hints),
        None => Next::Return(Ok(res)),
    }
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

/// The service is ready for the next attempt: its request, or the last
/// outcome when the body cannot be replayed.
fn next_attempt<B: Body, Req, P>(
    call: &mut Call<Req>,
    layer: &RetryLayer<P>,
    last: &mut Option<Last<B>>,
) -> Next<B, Req> {
    match call.next_request(layer) {
        Some(req) => {
            // The previous outcome is dropped only now, when the next
            // attempt is certain.
            drop(last.take());
            Next::Send(req)
        }
        None => {
            tracing::debug!(
                "the request body is over the replay limit, failed, or still held by the \
                 previous attempt; not retried"
            );
            Next::Return(last.take().expect("a retried outcome is kept"))
        }
    }
}

/// The parts of the future a step's decision changes.
struct Step<'a, S, Req, P, ResBody>
where
    S: Service<Request<ReplayBody<Req>>, Response = Response<ResBody>>,
    ResBody: Body,
{
    state: Pin<&'a mut State<S::Future, ResBody>>,
    sleep: Pin<&'a mut Option<Sleep>>,
    service: &'a mut S,
    call: &'a mut Call<Req>,
    layer: &'a RetryLayer<P>,
}

impl<S, Req, P, ResBody> Step<'_, S, Req, P, ResBody>
where
    S: Service<Request<ReplayBody<Req>>, Response = Response<ResBody>>,
    ResBody: Body,
{
    /// Carries out what a step decided: the outcome for the caller, or the
    /// state the future goes on in.
    fn follow(mut self, next: Next<ResBody, Req>) -> Option<Last<ResBody>> {
        match next {
            Next::Return(last) => Some(self.finish(last, None)),
            Next::ReadBody(head, body) => {
                arm(self.sleep, self.call.peek_until(self.layer));
                let peek = Peek::new(body, self.layer.peek_limit);
                let head = Some(head);
                self.state.set(State::Peeking { head, peek });
                None
            }
            Next::Retry(last, hints) => self.retry(last, hints),
            Next::Send(req) => {
                let future = self.service.call(req);
                self.state.set(State::Called { future });
                None
            }
        }
    }

    /// The policy wants `last` retried: the wait before the next attempt,
    /// or `last` for the caller when a limit says no.
    fn retry(mut self, last: Last<ResBody>, hints: ServerHints) -> Option<Last<ResBody>> {
        let delay = match self.call.plan(self.layer, hints) {
            Ok(delay) => delay,
            Err(refusal) => return Some(self.finish(last, Some(refusal))),
        };
        tracing::info!(
            attempt = self.call.attempts().get() + 1,
            delay_ms = saturating_millis(delay),
            reason = %reason(&last),
            "retrying"
        );
        let last = Some(last);
        if delay.is_zero() {
            self.state.set(State::Ready { last });
        } else {
            arm(self.sleep, instant_after(Instant::now(), delay));
            self.state.set(State::Waiting { last });
        }
        None
    }

    /// Hands `last` to the caller (a retry for it was refused, if
    /// `refusal` says why) with the attempts made, and lets go of the call.
    ///
    /// A failure that leaves after the stack retried the call, or that the
    /// budget or the deadline refused a retry, is marked: its caller is
    /// told not to retry it again, which would multiply the attempts.
    fn finish(&mut self, last: Last<ResBody>, refusal: Option<Refusal>) -> Last<ResBody> {
        self.state.set(State::Done);
        let attempts = self.call.attempts();
        self.call.release();
        let spent = attempts.retries() > 0 || refusal.is_some_and(Refusal::binds_the_caller);
        let last = attempts.record(last);
        match last {
            Ok(mut res) if spent && is_candidate(&res) => {
                res.extensions_mut().insert(RetriedOut);
                Ok(res)
            }
            Err(err) if spent => Err(retried_out(err)),
            last => last,
        }
    }
}

/// Why an attempt is retried, for the tracing event (no secrets: a status
/// or an error code).
enum Reason<'a> {
    Status(StatusCode),
    Grpc(i32),
    Error(&'a str),
}

impl fmt::Display for Reason<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Status(s) => write!(f, "status {}", s.as_u16()),
            Reason::Grpc(c) => write!(f, "grpc-status {c}"),
            Reason::Error(code) => write!(f, "error {code}"),
        }
    }
}

fn reason<T>(outcome: &Result<Response<T>, ApiError>) -> Reason<'_> {
    match outcome {
        Ok(res) => match grpc::status_code(res.headers()) {
            Some(code) if code != grpc::code::OK => Reason::Grpc(code),
            _ => Reason::Status(res.status()),
        },
        Err(e) => Reason::Error(e.code()),
    }
}

/// Whether a response may be retried at all: an error status, or a gRPC
/// trailers-only error. Anything else is committed.
fn is_candidate<T>(res: &Response<T>) -> bool {
    res.status().as_u16() >= 400
        || grpc::status_code(res.headers()).is_some_and(|c| c != grpc::code::OK)
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
            State::Waiting { .. } => "waiting",
            State::Ready { .. } => "waiting for readiness",
            State::Done => "done",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .field("attempts", &self.call.attempts().get())
            .finish()
    }
}
