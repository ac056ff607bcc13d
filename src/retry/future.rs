//! [`ResponseFuture`]: one call through the retry layer, all its attempts.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{request, response, HeaderValue, Request, Response, StatusCode};
use http_body::Body;
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tower_service::Service;

use super::replay::{Replay, ReplayBody};
use super::service::Settings;
use super::{Attempts, Decision, Outcome, RetryBody, RetryPolicy};
use crate::body::Peek;
use crate::deadline::Deadline;
use crate::error::grpc;
use crate::hint::ServerHints;
use crate::{ApiError, BoxError, ErrorKind};

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
        call: Call<B, P>,
        last: Option<Result<Response<RetryBody<ResBody>>, ApiError>>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, ResBody> {
        // An attempt is in flight.
        Called { #[pin] future: F },
        // The policy asked for the start of an error body.
        Peeking { head: Option<response::Parts>, peek: Peek<ResBody> },
        // Waiting before the next attempt.
        Waiting,
        // Waiting for the inner service to be ready for the next attempt.
        Ready,
        Done,
    }
}

/// What the future keeps of the call between attempts.
struct Call<B, P> {
    settings: Arc<Settings<P>>,
    parts: request::Parts,
    /// `parts` was kept without its one extension, the deadline: put it
    /// back in every later attempt.
    restore_deadline: bool,
    replay: Replay<B>,
    deadline: Option<Deadline>,
    /// Attempts sent so far.
    attempts: u32,
    previous_delay: Duration,
}

impl<S, B, P, ResBody> ResponseFuture<S, B, P, ResBody>
where
    S: Service<Request<ReplayBody<B>>, Response = Response<ResBody>>,
    ResBody: Body,
{
    pub(crate) fn new(
        future: S::Future,
        service: S,
        settings: Arc<Settings<P>>,
        parts: request::Parts,
        restore_deadline: bool,
        replay: Replay<B>,
        deadline: Option<Deadline>,
    ) -> Self {
        ResponseFuture {
            state: State::Called { future },
            sleep: None,
            service,
            call: Call {
                settings,
                parts,
                restore_deadline,
                replay,
                deadline,
                attempts: 1,
                previous_delay: Duration::ZERO,
            },
            last: None,
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

fn with_attempts<T>(
    outcome: Result<Response<T>, ApiError>,
    attempts: u32,
) -> Result<Response<T>, ApiError> {
    match outcome {
        Ok(mut res) => {
            // A first-attempt success carries nothing: inserting into empty
            // extensions costs three allocations, on every call.
            // `Attempts::of` reads the absence as one attempt.
            if attempts > 1 {
                res.extensions_mut().insert(Attempts(attempts));
            }
            Ok(res)
        }
        Err(mut err) => {
            err.extensions_mut().insert(Attempts(attempts));
            Err(err)
        }
    }
}

fn far_future() -> Instant {
    Deadline::after(Duration::MAX).instant()
}

impl<B, P> Call<B, P> {
    /// The wait before the next attempt, or `None` when the last outcome is
    /// final. Checks the cheap limits first and takes from the budget last.
    fn plan(&mut self, hints: ServerHints) -> Option<Duration> {
        let config = &self.settings.config;
        let retries = self.attempts - 1;
        if retries >= config.max_retries {
            tracing::debug!(attempts = self.attempts, "retries exhausted");
            return None;
        }
        if self.replay.replayable() == Some(false) {
            tracing::debug!("request body over the replay limit or failed; not retried");
            return None;
        }
        let delay = match hints.retry_after() {
            Some(hint) if hint > config.max_retry_after => {
                tracing::debug!(
                    retry_after_ms = hint.as_millis() as u64,
                    "server asked for a longer wait than max_retry_after; not retried here"
                );
                return None;
            }
            Some(hint) => hint,
            None => {
                let mut rng = fastrand::Rng::new();
                let d =
                    config
                        .jitter
                        .delay(&config.backoff, retries, self.previous_delay, &mut rng);
                self.previous_delay = d;
                d
            }
        };
        if let Some(deadline) = &self.deadline {
            let crosses = Instant::now()
                .checked_add(delay)
                .is_none_or(|at| at >= deadline.instant());
            if crosses {
                tracing::debug!(
                    delay_ms = delay.as_millis() as u64,
                    "the next wait would cross the deadline; not retried"
                );
                return None;
            }
        }
        if !self.settings.budget.withdraw() {
            tracing::debug!("retry budget exhausted; not retried");
            return None;
        }
        Some(delay)
    }

    /// The request of the next attempt (before `attempts` counts it).
    fn request(&self, body: ReplayBody<B>) -> Request<ReplayBody<B>> {
        let mut req = Request::from_parts(self.parts.clone(), body);
        if let (true, Some(deadline)) = (self.restore_deadline, &self.deadline) {
            req.extensions_mut().insert(deadline.clone());
        }
        if let Some(name) = &self.settings.config.attempt_header {
            req.headers_mut()
                .insert(name.clone(), HeaderValue::from(self.attempts));
        }
        req
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
    type Output = Result<Response<RetryBody<ResBody>>, ApiError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            // Each arm either returns, or leaves `retry` set to the hints of
            // an outcome the policy wants retried (now in `last`).
            let hints = match this.state.as_mut().project() {
                StateProj::Called { future } => {
                    let result = ready!(future.poll(cx));
                    let attempt = this.call.attempts;
                    let policy = &this.call.settings.policy;
                    match result {
                        Err(e) => {
                            let err = ApiError::from_error(e.into());
                            // A breaker's rejection would be rejected again.
                            let retry = err.kind() != ErrorKind::CircuitOpen
                                && policy.decide(&Outcome::error(attempt, &err)) == Decision::Retry;
                            let hints = err.hints();
                            if !retry {
                                this.state.set(State::Done);
                                return Poll::Ready(with_attempts(Err(err), attempt));
                            }
                            *this.last = Some(Err(err));
                            hints
                        }
                        Ok(res) => {
                            let decision = if is_candidate(&res) {
                                policy.decide(&Outcome::response(
                                    attempt,
                                    res.status(),
                                    res.headers(),
                                    None,
                                ))
                            } else {
                                Decision::DoNotRetry
                            };
                            match decision {
                                Decision::DoNotRetry => {
                                    this.state.set(State::Done);
                                    let res = res.map(RetryBody::plain);
                                    return Poll::Ready(with_attempts(Ok(res), attempt));
                                }
                                Decision::Retry => {
                                    let hints = ServerHints::from_headers(res.headers());
                                    *this.last = Some(Ok(res.map(RetryBody::plain)));
                                    hints
                                }
                                Decision::ReadBody => {
                                    let config = &this.call.settings.config;
                                    let mut until = Instant::now()
                                        .checked_add(config.peek_timeout)
                                        .unwrap_or_else(far_future);
                                    if let Some(deadline) = &this.call.deadline {
                                        until = until.min(deadline.instant());
                                    }
                                    let (head, body) = res.into_parts();
                                    let peek = Peek::new(body, config.peek_limit);
                                    this.state.set(State::Peeking {
                                        head: Some(head),
                                        peek,
                                    });
                                    crate::util::arm(this.sleep.as_mut(), until);
                                    continue;
                                }
                            }
                        }
                    }
                }
                StateProj::Peeking { head, peek } => {
                    let mut peek = Pin::new(peek);
                    let (peeked, stalled) = match peek.as_mut().poll(cx) {
                        Poll::Ready(peeked) => (peeked, false),
                        Poll::Pending => {
                            let fired = this
                                .sleep
                                .as_mut()
                                .as_pin_mut()
                                .is_some_and(|s| s.poll(cx).is_ready());
                            if !fired {
                                return Poll::Pending;
                            }
                            tracing::debug!("the error body did not arrive in time; not retried");
                            (peek.stop(), true)
                        }
                    };
                    let head = head
                        .take()
                        .expect("the response head is kept while peeking");
                    let attempt = this.call.attempts;
                    let decision = if stalled {
                        Decision::DoNotRetry
                    } else {
                        this.call.settings.policy.decide(&Outcome::response(
                            attempt,
                            head.status,
                            &head.headers,
                            Some(&peeked.data),
                        ))
                    };
                    let hints = ServerHints::from_headers(&head.headers);
                    let res = Response::from_parts(head, RetryBody::peeked(peeked.into_body()));
                    if decision != Decision::Retry {
                        this.state.set(State::Done);
                        return Poll::Ready(with_attempts(Ok(res), attempt));
                    }
                    *this.last = Some(Ok(res));
                    hints
                }
                StateProj::Waiting => {
                    if let Some(sleep) = this.sleep.as_mut().as_pin_mut() {
                        ready!(sleep.poll(cx));
                    }
                    this.state.set(State::Ready);
                    continue;
                }
                StateProj::Ready => {
                    if let Err(e) = ready!(this.service.poll_ready(cx)) {
                        this.state.set(State::Done);
                        let err = ApiError::from_error(e.into());
                        return Poll::Ready(with_attempts(Err(err), this.call.attempts));
                    }
                    let Some(body) = this.call.replay.next_body() else {
                        tracing::debug!(
                            "the request body is over the replay limit, failed, or still held \
                             by the previous attempt; not retried"
                        );
                        this.state.set(State::Done);
                        let last = this.last.take().expect("a retried outcome is kept");
                        return Poll::Ready(with_attempts(last, this.call.attempts));
                    };
                    let req = this.call.request(body);
                    this.call.attempts += 1;
                    // The previous outcome is dropped only now, when the
                    // next attempt is certain.
                    *this.last = None;
                    let future = this.service.call(req);
                    this.state.set(State::Called { future });
                    continue;
                }
                StateProj::Done => panic!("ResponseFuture polled after completion"),
            };

            // The policy wants the last outcome retried: check the limits.
            let Some(delay) = this.call.plan(hints) else {
                this.state.set(State::Done);
                let last = this.last.take().expect("a retried outcome is kept");
                return Poll::Ready(with_attempts(last, this.call.attempts));
            };
            if let Some(last) = this.last.as_ref() {
                tracing::info!(
                    attempt = this.call.attempts + 1,
                    delay_ms = delay.as_millis() as u64,
                    reason = %reason(last),
                    "retrying"
                );
            }
            if delay.is_zero() {
                this.state.set(State::Ready);
            } else {
                let at = Instant::now().checked_add(delay).unwrap_or_else(far_future);
                crate::util::arm(this.sleep.as_mut(), at);
                this.state.set(State::Waiting);
            }
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
            State::Waiting => "waiting",
            State::Ready => "waiting for readiness",
            State::Done => "done",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .field("attempts", &self.call.attempts)
            .finish()
    }
}
