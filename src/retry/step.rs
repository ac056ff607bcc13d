//! [`Step`]: what the attempt loop does once a step decided [`Next`]: wait
//! and retry on the same target, move to the next target, or hand the
//! caller an outcome.

use std::fmt;
use std::pin::Pin;

use http::{Request, Response, StatusCode};
use http_body::Body;
use tokio::time::{Instant, Sleep};
use tower_service::Service;

use super::call::{Call, Refusal};
use super::decide::{is_candidate, Last, Next};
use super::hold::Hold;
use super::layer::RetryLayer;
use super::outcome::Outcome;
use super::replay::ReplayBody;
use super::state::State;
use crate::body::Peek;
use crate::call::{retried_out, RetriedOut};
use crate::error::grpc;
use crate::fallback::{tells_more, Served};
use crate::hint::ServerHints;
use crate::metrics::FallbackSeries;
use crate::util::{arm, instant_after, saturating_millis};
use crate::{ApiError, ErrorKind};

/// The most telling failure of the targets a call left behind (boxed: only
/// a call that moved on has one).
pub(super) type Best<B> = Option<Box<Last<B>>>;

/// The parts of the loop's future a step's decision changes.
pub(super) struct Step<'a, S, Req, P, ResBody>
where
    S: Service<Request<ReplayBody<Req>>, Response = Response<ResBody>>,
    ResBody: Body,
{
    pub(super) state: Pin<&'a mut State<S::Future, ResBody, Req>>,
    pub(super) sleep: Pin<&'a mut Option<Sleep>>,
    pub(super) service: &'a mut S,
    pub(super) call: &'a mut Call<Req>,
    pub(super) layer: &'a RetryLayer<P>,
    pub(super) best: &'a mut Best<ResBody>,
}

impl<S, Req, P, ResBody> Step<'_, S, Req, P, ResBody>
where
    S: Service<Request<ReplayBody<Req>>, Response = Response<ResBody>>,
    ResBody: Body,
{
    /// Carries out what a step decided: the outcome for the caller, or the
    /// state the loop goes on in.
    pub(super) fn follow(mut self, next: Next<ResBody, Req>) -> Option<Last<ResBody>> {
        match next {
            Next::Return(last) => {
                // The earlier targets' failures are not the caller's.
                *self.best = None;
                Some(self.finish(last, None))
            }
            Next::ReadBody(head, body) => {
                arm(self.sleep, self.call.peek_until(self.layer));
                let peek = Peek::new(body, self.layer.peek_limit);
                let head = Some(head);
                self.state.set(State::Peeking { head, peek });
                None
            }
            Next::Hold(head, body, events) => {
                let hold = Hold::new(body, events);
                let by = self.call.first_byte_by();
                let head = Some(head);
                self.state.set(State::Holding { head, hold, by });
                None
            }
            Next::Retry(last, hints) => self.retry(last, hints),
            Next::Move(last) => self.move_on(last, None),
            Next::Send(req) => {
                let by = self.call.headers_clock();
                let future = self.call.send(self.service, req);
                self.state.set(State::Called { future, by });
                None
            }
            Next::ReadWhole(body, last) => {
                let body = Box::new(body);
                self.state.set(State::Reading { body, last });
                None
            }
            Next::GiveUp(last) => Some(self.give_up(last, None)),
        }
    }

    /// The policy wants `last` retried on the same target: the wait before
    /// the next attempt; or, when a limit says no, the next target, or the
    /// caller's outcome.
    fn retry(mut self, last: Last<ResBody>, hints: ServerHints) -> Option<Last<ResBody>> {
        let delay = match self.call.plan(self.layer, hints) {
            Ok(delay) => delay,
            Err(Refusal::NotReplayable) => {
                return Some(self.give_up(Some(last), Some(Refusal::NotReplayable)));
            }
            Err(refusal) if self.call.has_next() => return self.move_on(last, Some(refusal)),
            Err(refusal) => return Some(self.give_up(Some(last), Some(refusal))),
        };
        count_retry(&last, self.call.attempts().get());
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

    /// The current target is done with the call (`refusal`: a limit
    /// stopped its retries): its failure is kept if it tells more than the
    /// earlier targets', and the next target that can serve the call is
    /// tried at once, unless the deadline has passed.
    fn move_on(mut self, last: Last<ResBody>, refusal: Option<Refusal>) -> Option<Last<ResBody>> {
        if self.call.past_deadline() {
            return Some(self.give_up(Some(last), Some(Refusal::Deadline)));
        }
        if !self.call.has_next() {
            return Some(self.give_up(Some(last), refusal));
        }
        tracing::debug!(reason = %reason(&last), "this target cannot serve the call");
        let from = self.call.served().map(|s| s.target().to_owned());
        keep_if_telling(self.best, last);
        if self.call.advance().is_err() {
            return Some(self.give_up(None, refusal));
        }
        if let (Some(from), Some(to)) = (from, self.call.served()) {
            FallbackSeries::new(from, to.target().to_owned()).record();
        }
        tracing::info!(
            attempt = self.call.attempts().get() + 1,
            target = self.call.served().as_ref().map(Served::target),
            "moving to the next target"
        );
        self.state.set(State::Ready { last: None });
        None
    }

    /// No other attempt will be made: the caller gets the most telling of
    /// `last` and the earlier targets' failures.
    fn give_up(&mut self, last: Option<Last<ResBody>>, refusal: Option<Refusal>) -> Last<ResBody> {
        let last = match (self.best.take(), last) {
            (Some(best), Some(last)) if !tells_more(&best, &last) => *best,
            (_, Some(last)) => last,
            (Some(best), None) => *best,
            (None, None) => {
                Err(ApiError::new(ErrorKind::Upstream).with_message("the call could not be sent"))
            }
        };
        self.finish(last, refusal)
    }

    /// Hands `last` to the caller (a retry for it was refused, if `refusal`
    /// says why) with the attempts made and the target tried last, and
    /// lets go of the call.
    ///
    /// A failure that leaves after the stack retried the call or moved it
    /// to another target, or that the budget or the deadline refused a
    /// retry, is marked: its caller is told not to retry it again, which
    /// would multiply the attempts. A loop nested in another leaves that to
    /// the outer one.
    fn finish(&mut self, last: Last<ResBody>, refusal: Option<Refusal>) -> Last<ResBody> {
        self.state.set(State::Done);
        let attempts = self.call.attempts();
        let served = self.call.served();
        self.call.release();
        let spent = self.call.spent(refusal);
        let mut last = attempts.record(last);
        if let Some(served) = served {
            match &mut last {
                Ok(res) => res.extensions_mut().insert(served),
                Err(err) => err.extensions_mut().insert(served),
            };
        }
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

/// Counts the retry of `last`, the outcome of attempt `attempt`, by its
/// reason (`resilience_retries_total`).
fn count_retry<B: Body>(last: &Last<B>, attempt: u32) {
    let outcome = match last {
        Ok(res) => Outcome::response(attempt, res.status(), res.headers(), None),
        Err(err) => Outcome::error(attempt, err),
    };
    crate::metrics::retried(&outcome);
}

/// Keeps `last` as the call's most telling failure if it tells more than
/// the one kept.
fn keep_if_telling<B: Body>(best: &mut Best<B>, last: Last<B>) {
    let replace = match best.as_deref() {
        None => true,
        Some(kept) => tells_more(kept, &last),
    };
    if replace {
        *best = Some(Box::new(last));
    }
}

/// Why an attempt is retried or left, for the tracing event (no secrets: a
/// status or an error code).
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
