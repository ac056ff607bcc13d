//! What the attempt loop does with an attempt's outcome: [`Next`], and the
//! steps that decide it from the response, the error, the start of an error
//! body or the start of a stream.

use std::time::Duration;

use bytes::Bytes;
use http::{response, Request, Response, StatusCode};
use http_body::Body;

use super::body::RetryBody;
use super::call::Call;
use super::hold::Held;
use super::outcome::{Decision, Outcome};
use super::policy::RetryPolicy;
use super::replay::ReplayBody;
use crate::body::Peeked;
use crate::content_type::{response_kind, ResponseKind};
use crate::error::grpc;
use crate::fallback::table::{self, Verdict};
use crate::hint::ServerHints;
use crate::metrics::AttemptResult;
use crate::{ApiError, BoxError, ErrorKind, TimeoutPhase};

/// What one attempt ended with, as the caller would get it.
pub(super) type Last<B> = Result<Response<RetryBody<B>>, ApiError>;

/// What a step decided the loop does next.
pub(super) enum Next<B: Body, Req> {
    /// Hand this outcome to the caller as it is: a success (at its commit
    /// point), or a failure no other attempt may change (an invalid
    /// request).
    Return(Last<B>),
    /// Read the start of the error body, then decide again.
    ReadBody(response::Parts, B),
    /// A stream: hold its start back until its commit point (`true`: an
    /// event stream, whose first event commits).
    Hold(response::Parts, B, bool),
    /// The policy wants the outcome retried on the same target; the server
    /// said this about it.
    Retry(Last<B>, ServerHints),
    /// This target is done with the call: the next one at once, or, when
    /// none is left, the most telling failure to the caller.
    Move(Last<B>),
    /// Send the next attempt.
    Send(Request<ReplayBody<Req>>),
    /// Read the caller's body whole with this body, then prepare the
    /// attempt again (the last outcome kept meanwhile).
    ReadWhole(ReplayBody<Req>, Option<Last<B>>),
    /// No attempt can be sent: the caller gets the most telling of the
    /// failures seen (this one, if any, and the earlier targets').
    GiveUp(Option<Last<B>>),
}

/// How the attempt in flight ended.
pub(super) enum Attempt<T> {
    Answered(T),
    Failed(ApiError),
    /// A stream's headers did not come within its first-byte clock (this
    /// long).
    Stalled(Duration),
}

/// Decides what follows an attempt's outcome: the policy, and the call
/// (which attempt it was, whether another target may serve the call,
/// whether the request asked for a stream), read when an outcome needs it.
pub(super) struct Judge<'a, P, Req> {
    pub(super) policy: &'a P,
    pub(super) call: &'a Call<Req>,
}

impl<P: RetryPolicy, Req> Judge<'_, P, Req> {
    fn attempt(&self) -> u32 {
        self.call.attempts().get()
    }

    fn has_next(&self) -> bool {
        self.call.has_next()
    }

    /// Counts the attempt in flight on its target
    /// (`resilience_attempts_total`; a loop with another inside leaves it
    /// to the inner one, which sends them).
    fn count(&self, result: AttemptResult) {
        if self.call.is_nested() || !self.call.context().has_inner_loop() {
            self.call.series().record(result);
        }
    }

    /// The attempt in flight ended: answered, failed (an open breaker's or
    /// pacing's refusal was not sent: it does not count), or stalled (the
    /// upstream failed it).
    pub(super) fn on_attempt<B: Body>(&self, ended: Attempt<Response<B>>) -> Next<B, Req> {
        let call = self.call;
        match ended {
            Attempt::Answered(res) => self.on_response(res),
            Attempt::Failed(err) => {
                if was_sent(&err) {
                    self.count(AttemptResult::Failure);
                } else {
                    self.count(AttemptResult::NotSent);
                    call.not_sent();
                }
                self.on_error(err)
            }
            Attempt::Stalled(len) => {
                self.count(AttemptResult::Failure);
                call.context().mark_cut();
                self.on_error(stalled(true, len))
            }
        }
    }

    /// The start of a stream was held back: committed, or failed before
    /// its commit point like any failed attempt (`Err`: nothing came
    /// within its first-byte clock, this long). A stream that stalled or
    /// opened with an error event failed its attempt: the layers inside
    /// are told.
    pub(super) fn on_hold<B>(
        &self,
        head: response::Parts,
        held: Result<Held<B>, Duration>,
    ) -> Next<B, Req>
    where
        B: Body,
        B::Error: Into<BoxError>,
    {
        let call = self.call;
        match held {
            Ok(held) => {
                match held {
                    Held::Committed(_) => self.count(AttemptResult::Success),
                    Held::ErrorEvent(_) => {
                        self.count(AttemptResult::Failure);
                        call.context().mark_cut();
                    }
                    Held::Ended | Held::Failed(_) => self.count(AttemptResult::Failure),
                }
                self.on_held(head, held)
            }
            Err(len) => {
                self.count(AttemptResult::Failure);
                call.context().mark_cut();
                self.on_error(stalled(false, len))
            }
        }
    }

    /// An attempt failed without a response.
    pub(super) fn on_error<B: Body>(&self, err: ApiError) -> Next<B, Req> {
        if self.has_next() {
            match table::of_error(&err) {
                Verdict::CannotServe => return Next::Move(Err(err)),
                Verdict::Invalid => return Next::Return(Err(err)),
                Verdict::ReadBody | Verdict::Policy => {}
            }
        }
        // A breaker's rejection would be rejected again.
        let retry = err.kind() != ErrorKind::CircuitOpen
            && self.policy.decide(&Outcome::error(self.attempt(), &err)) == Decision::Retry;
        if retry {
            let hints = err.hints();
            Next::Retry(Err(err), hints)
        } else {
            self.not_retried(Err(err))
        }
    }

    /// An attempt got a response: a success is committed (a stream at its
    /// first event), an error response goes to the table and the policy.
    pub(super) fn on_response<B: Body>(&self, res: Response<B>) -> Next<B, Req> {
        if !is_candidate(&res) {
            if let Some(events) = holds(&res, self.call.context().is_streaming()) {
                let (head, body) = res.into_parts();
                return Next::Hold(head, body, events);
            }
            self.count(AttemptResult::Success);
            return Next::Return(Ok(res.map(RetryBody::plain)));
        }
        self.count(AttemptResult::Failure);
        if self.has_next() {
            match table::of_response(res.status(), res.headers(), None) {
                Verdict::CannotServe => return Next::Move(Ok(res.map(RetryBody::plain))),
                Verdict::Invalid => return Next::Return(Ok(res.map(RetryBody::plain))),
                Verdict::ReadBody => {
                    let (head, body) = res.into_parts();
                    return Next::ReadBody(head, body);
                }
                Verdict::Policy => {}
            }
        }
        let outcome = Outcome::response(self.attempt(), res.status(), res.headers(), None);
        match self.policy.decide(&outcome) {
            Decision::DoNotRetry => self.not_retried(Ok(res.map(RetryBody::plain))),
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
    /// table and the policy decide again, and the response keeps its whole
    /// body.
    pub(super) fn on_peeked<B: Body>(
        &self,
        head: response::Parts,
        peeked: Peeked<B>,
        in_time: bool,
    ) -> Next<B, Req> {
        let verdict = match (self.has_next(), in_time) {
            (true, true) => table::of_response(head.status, &head.headers, Some(&peeked.data)),
            // An error body that does not come in time is the caller's.
            (true, false) => Verdict::Invalid,
            (false, _) => Verdict::Policy,
        };
        let retry = verdict == Verdict::Policy
            && in_time
            && self.policy.decide(&Outcome::response(
                self.attempt(),
                head.status,
                &head.headers,
                Some(&peeked.data),
            )) == Decision::Retry;
        let hints = retry.then(|| ServerHints::from_headers(&head.headers));
        let res = Ok(Response::from_parts(
            head,
            RetryBody::peeked(peeked.into_body()),
        ));
        match (verdict, hints) {
            (Verdict::CannotServe, _) => Next::Move(res),
            (Verdict::Invalid | Verdict::ReadBody, _) => Next::Return(res),
            (Verdict::Policy, Some(hints)) => Next::Retry(res, hints),
            (Verdict::Policy, None) if in_time => self.not_retried(res),
            (Verdict::Policy, None) => Next::Return(res),
        }
    }

    /// What the start of a stream showed.
    fn on_held<B>(&self, head: response::Parts, held: Held<B>) -> Next<B, Req>
    where
        B: Body,
        B::Error: Into<BoxError>,
    {
        let err = match held {
            Held::Committed(body) => {
                return Next::Return(Ok(Response::from_parts(head, RetryBody::peeked(body))));
            }
            Held::ErrorEvent(data) => error_event(&head, &data),
            Held::Ended => ApiError::new(ErrorKind::Upstream)
                .with_message("the upstream's stream ended before its first event"),
            Held::Failed(e) => ApiError::from_error(e.into()),
        };
        self.on_error(err)
    }

    /// The policy does not retry a failure: it stays with the caller when
    /// it is the caller's (a client error), else the next target tries.
    fn not_retried<B: Body>(&self, last: Last<B>) -> Next<B, Req> {
        if self.has_next() && table::is_the_callers(&last) {
            Next::Return(last)
        } else {
            Next::Move(last)
        }
    }
}

/// The failure of a stream whose first event is an error envelope: read as
/// an upstream error (its `type` and `code` decide the kind).
fn error_event(head: &response::Parts, data: &Bytes) -> ApiError {
    ApiError::from_upstream(StatusCode::BAD_GATEWAY, &head.headers, data)
}

/// The failure of a stream that showed nothing within its first-byte
/// clock `len`: before its headers (`headers`), or after them.
fn stalled(headers: bool, len: Duration) -> ApiError {
    let phase = if headers {
        TimeoutPhase::Attempt
    } else {
        TimeoutPhase::FirstByte
    };
    ApiError::timeout(phase, len)
}

/// Whether a failed attempt was sent at all: an open breaker and pacing
/// refuse an attempt before it leaves.
fn was_sent(err: &ApiError) -> bool {
    #[cfg(feature = "pacing")]
    if err
        .extensions()
        .get::<crate::pacing::PacingRefusal>()
        .is_some()
    {
        return false;
    }
    err.kind() != ErrorKind::CircuitOpen
}

/// Whether a committed response is a stream whose start is held back:
/// `Some(true)` for an event stream (committed at its first event),
/// `Some(false)` for another stream the request asked for (committed at
/// its first byte).
fn holds<B: Body>(res: &Response<B>, streaming: bool) -> Option<bool> {
    if !res.status().is_success() {
        return None;
    }
    match response_kind(res.headers()) {
        ResponseKind::EventStream => Some(true),
        _ if streaming && !res.body().is_end_stream() => Some(false),
        _ => None,
    }
}

/// Whether a response may be retried at all: an error status, or a gRPC
/// trailers-only error. Anything else is committed.
pub(super) fn is_candidate<T>(res: &Response<T>) -> bool {
    res.status().as_u16() >= 400
        || grpc::status_code(res.headers()).is_some_and(|c| c != grpc::code::OK)
}
