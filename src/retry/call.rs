//! [`Call`]: what the attempt loop keeps of one call between its attempts,
//! and [`Refusal`]: why a retry the policy wanted is not made.

use std::time::Duration;

use http::{request, HeaderValue, Request};
use http_body::Body;
use tokio::time::Instant;

use super::layer::RetryLayer;
use super::replay::{Replay, ReplayBody};
use crate::call::{Attempts, CallContext};
use crate::fallback::{walk, NextBody, Served, Targets, Walk};
use crate::hint::ServerHints;
use crate::metrics::AttemptSeries;
use crate::util::{instant_after, saturating_millis};
use crate::ApiError;

/// One call through the attempt loop: the request head every attempt is
/// built from, the body's replay handle, the call's context (its deadline
/// and the attempts sent, shared with the layers around and inside), and
/// where the call is in its targets.
///
/// The call holds its context open (a breaker inside leaves its outcomes
/// pending) until it is [released](Call::release) or dropped.
pub(crate) struct Call<B> {
    head: request::Parts,
    /// `head` was kept without its one extension, the call's context: it
    /// is put back in every later attempt.
    restore_context: bool,
    replay: Replay<B>,
    context: CallContext,
    /// Whether the call still holds its context open.
    held: bool,
    /// The loop outside owns the call: this one makes no retries.
    nested: bool,
    /// The first attempt of a nested loop is still to be sent.
    first_of_nested: bool,
    /// The last backoff wait (decorrelated jitter grows from it).
    previous_delay: Duration,
    /// Retries made on the current target.
    retries: u32,
    /// The loop made a retry or moved to another target.
    tried_again: bool,
    /// When the call started.
    started: Instant,
    /// When the attempt in flight was sent, if after the first (the first
    /// starts with the call).
    sent_at: Option<Instant>,
    walk: Walk,
}

/// Why an outcome the policy wanted retried is not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The target's retries were made.
    Exhausted,
    /// The request body cannot be sent again.
    NotReplayable,
    /// The server asked for a longer wait than `max_retry_after`.
    HintTooLong,
    /// The next wait would cross the deadline.
    Deadline,
    /// The retry budget is spent.
    Budget,
}

impl Refusal {
    /// Whether the stack refused a retry its caller should not make either:
    /// the budget (the upstream is failing for many calls) or the deadline
    /// (the call's time is spent).
    pub(crate) fn binds_the_caller(self) -> bool {
        matches!(self, Refusal::Deadline | Refusal::Budget)
    }
}

/// The request of the next attempt, or why there is none yet.
// Made once per attempt and matched at once: boxing the request would cost
// an allocation per attempt.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Prepared<B> {
    /// Send it.
    Send(Request<ReplayBody<B>>),
    /// Read the caller's body whole with this body first (a target renames
    /// the model), then prepare again.
    ReadWhole(ReplayBody<B>),
    /// No attempt can be sent: the body cannot be replayed.
    Gone,
    /// No attempt can be sent: the caller gets this error.
    Refused(ApiError),
}

impl<B: Body> Call<B> {
    /// Starts a call: records it in the budget, takes hold of its context
    /// (made here when no outer layer made one), settles its deadline,
    /// chooses its targets, and prepares the first attempt.
    pub(crate) fn start<P>(req: Request<B>, layer: &RetryLayer<P>) -> (Self, Prepared<B>)
    where
        B::Error: Into<crate::BoxError>,
    {
        // One clock read for the call's start (none when a timeout outside
        // is sending the call): the budget, the deadline, and the first
        // attempt's send time the layers inside read.
        let (mut parts, body) = req.into_parts();
        let sending = CallContext::get(&parts.extensions).and_then(|c| c.timing().sending());
        let now = sending.unwrap_or_else(Instant::now);
        layer.budget.deposit_at(now);
        let context = CallContext::get_or_insert_at(&mut parts.extensions, now).clone();
        if let Some(timeout) = layer.deadline {
            context.set_deadline_earliest(instant_after(now, timeout));
        }
        let nested = context.is_owned();
        context.own();
        let targets = layer
            .targets
            .as_ref()
            .map_or_else(Targets::default, |t| t.select(&parts));
        let (body, replay) = ReplayBody::first(body, layer.max_replay_body);
        // A head whose only extension is the call's context is kept
        // without it: cloning a map of one extension costs three
        // allocations on every call, putting the context back costs them
        // only when an attempt is retried.
        let restore_context = parts.extensions.len() == 1;
        let head = if restore_context {
            head_without_extensions(&parts)
        } else {
            parts.clone()
        };
        let mut call = Call {
            head,
            restore_context,
            replay,
            context,
            held: true,
            nested,
            first_of_nested: nested,
            previous_delay: Duration::ZERO,
            retries: 0,
            tried_again: false,
            started: now,
            sent_at: None,
            walk: Walk::new(targets),
        };
        if call.walk.is_plain() {
            // No target to rewrite for: the caller's request goes out.
            call.count(&mut parts, layer);
            return (call, Prepared::Send(Request::from_parts(parts, body)));
        }
        let first = match call.walk.start(&parts.extensions) {
            Err(err) => Prepared::Refused(err),
            Ok(()) if call.walk.renames() => Prepared::ReadWhole(body),
            Ok(()) => match call.walk.rewrite(&mut parts) {
                Ok(()) => {
                    call.count(&mut parts, layer);
                    Prepared::Send(Request::from_parts(parts, body))
                }
                Err(err) => Prepared::Refused(err),
            },
        };
        (call, first)
    }
}

impl<B> Call<B> {
    /// Sends the attempt prepared last (`req`) on `service`: the layers
    /// inside learn when it was sent from the call's context.
    pub(crate) fn send<S, R>(&self, service: &mut S, req: R) -> S::Future
    where
        S: tower_service::Service<R>,
    {
        let at = self.sent_at.unwrap_or(self.started);
        self.context.timing().send(at, || service.call(req))
    }

    /// The attempts sent so far.
    pub(crate) fn attempts(&self) -> Attempts {
        Attempts(self.context.attempts().max(1))
    }

    /// The call's context.
    pub(crate) fn context(&self) -> &CallContext {
        &self.context
    }

    /// Which target the outcome comes from (none for the default target).
    pub(crate) fn served(&self) -> Option<Served> {
        self.walk.served()
    }

    /// Whether a loop outside owns the call.
    pub(crate) fn is_nested(&self) -> bool {
        self.nested
    }

    /// Where the current target's attempts are counted.
    pub(crate) fn series(&self) -> &AttemptSeries {
        self.walk.series()
    }

    /// Whether another target may serve the call after the current one.
    pub(crate) fn has_next(&self) -> bool {
        !self.walk.is_plain() && self.walk.has_next(self.extensions())
    }

    /// The extensions of the caller's request (the context aside).
    fn extensions(&self) -> &http::Extensions {
        &self.head.extensions
    }

    /// Lets go of the call's context: the call is over for this loop.
    pub(crate) fn release(&mut self) {
        if std::mem::take(&mut self.held) {
            self.context.release();
        }
    }

    /// The attempt last counted was refused inside before it was sent (an
    /// open breaker, pacing): it does not count.
    pub(crate) fn not_sent(&self) {
        self.context.uncount_attempt();
    }

    /// The instant by which the error body of an attempt must be read: the
    /// peek timeout from now, or the deadline when that comes first.
    pub(crate) fn peek_until<P>(&self, layer: &RetryLayer<P>) -> Instant {
        let until = instant_after(Instant::now(), layer.peek_timeout);
        match self.context.deadline() {
            Some(deadline) => until.min(deadline),
            None => until,
        }
    }

    /// When the attempt in flight must show its first byte (its first
    /// event, for an event stream), and the first-byte clock's length, when
    /// a timeout published one.
    pub(crate) fn first_byte_by(&self) -> Option<(Instant, Duration)> {
        let (len, first) = self.context.first_byte()?;
        let by = match self.sent_at {
            None => first,
            Some(sent) => instant_after(sent, len),
        };
        Some((by, len))
    }

    /// When the headers of the attempt about to be sent are due, and the
    /// clock's length: a stream's first-byte clock, for a request that asks
    /// for a stream.
    pub(crate) fn headers_clock(&self) -> Option<(Instant, Duration)> {
        if self.context.is_streaming() {
            self.first_byte_by()
        } else {
            None
        }
    }

    /// Whether the caller should be told not to retry a failure: the loop
    /// retried the call or moved it to another target, or a retry was
    /// refused by the budget or the deadline (`refusal`). A loop nested in
    /// another leaves that to the outer one.
    pub(crate) fn spent(&self, refusal: Option<Refusal>) -> bool {
        !self.nested && (self.tried_again || refusal.is_some_and(Refusal::binds_the_caller))
    }

    /// Whether the deadline has passed: no target starts past it.
    pub(crate) fn past_deadline(&self) -> bool {
        self.context.deadline().is_some_and(|d| Instant::now() >= d)
    }

    /// The wait before the next attempt on the current target, or why the
    /// last outcome is final there. Checks the cheap limits first and takes
    /// from the budget last.
    pub(crate) fn plan<P>(
        &mut self,
        layer: &RetryLayer<P>,
        hints: ServerHints,
    ) -> Result<Duration, Refusal> {
        let limit = if self.nested {
            0
        } else {
            self.walk.retries(layer.max_retries)
        };
        if self.retries >= limit {
            tracing::debug!(attempts = self.retries + 1, "retries exhausted");
            return Err(Refusal::Exhausted);
        }
        if self.replay.replayable() == Some(false) {
            tracing::debug!("request body over the replay limit or failed; not retried");
            return Err(Refusal::NotReplayable);
        }
        let delay = match hints.retry_after() {
            Some(hint) if hint > layer.max_retry_after => {
                tracing::debug!(
                    retry_after_ms = saturating_millis(hint),
                    "server asked for a longer wait than max_retry_after; not retried here"
                );
                return Err(Refusal::HintTooLong);
            }
            Some(hint) => hint,
            None => {
                let mut rng = fastrand::Rng::new();
                let previous = self.previous_delay;
                let d = layer
                    .jitter
                    .delay(&layer.backoff, self.retries, previous, &mut rng);
                self.previous_delay = d;
                d
            }
        };
        if let Some(deadline) = self.context.deadline() {
            let crosses = Instant::now()
                .checked_add(delay)
                .is_none_or(|at| at >= deadline);
            if crosses {
                tracing::debug!(
                    delay_ms = saturating_millis(delay),
                    "the next wait would cross the deadline; not retried"
                );
                return Err(Refusal::Deadline);
            }
        }
        if !layer.budget.withdraw() {
            tracing::debug!("retry budget exhausted; not retried");
            return Err(Refusal::Budget);
        }
        self.retries += 1;
        self.tried_again = true;
        Ok(delay)
    }

    /// Moves the call to its next target that can serve it: `Err` when
    /// none is left, with whether one was skipped because the prompt does
    /// not fit its model.
    pub(crate) fn advance(&mut self) -> Result<(), bool> {
        self.walk.advance(&self.head.extensions)?;
        self.tried_again = true;
        self.retries = 0;
        self.previous_delay = Duration::ZERO;
        Ok(())
    }

    /// The request of the next attempt on the current target, which it
    /// counts.
    pub(crate) fn next_request<P>(&mut self, layer: &RetryLayer<P>) -> Prepared<B> {
        let mut head = self.head.clone();
        let body = if self.walk.is_plain() {
            self.replay
                .next_body()
                .map_or(NextBody::Gone, NextBody::Ready)
        } else {
            if let Err(err) = self.walk.rewrite(&mut head) {
                return Prepared::Refused(err);
            }
            self.walk.body(&self.replay, &mut head)
        };
        let body = match body {
            NextBody::Ready(body) => body,
            NextBody::ReadWhole(body) => return Prepared::ReadWhole(body),
            NextBody::Gone => return Prepared::Gone,
            NextBody::TooLarge => return Prepared::Refused(walk::too_large()),
        };
        if self.restore_context {
            head.extensions.insert(self.context.clone());
        }
        self.sent_at = Some(Instant::now());
        self.count(&mut head, layer);
        Prepared::Send(Request::from_parts(head, body))
    }

    /// Counts the attempt about to be sent with `head`: its number in the
    /// attempt header, and whether another target remains after it. The
    /// first attempt of a loop nested in another was counted by that one.
    fn count<P>(&mut self, head: &mut request::Parts, layer: &RetryLayer<P>) {
        let sent = if std::mem::take(&mut self.first_of_nested) {
            self.context.attempts()
        } else {
            self.context.count_attempt()
        };
        if let Some(name) = &layer.attempt_header {
            head.headers
                .insert(name.clone(), HeaderValue::from(sent - 1));
        }
        if !self.walk.is_plain() {
            self.context.set_another_target(self.has_next());
        }
    }
}

impl<B> Drop for Call<B> {
    fn drop(&mut self) {
        // The caller went away before the loop finished.
        self.release();
    }
}

/// A copy of a request head, extensions left out.
fn head_without_extensions(parts: &request::Parts) -> request::Parts {
    let (mut head, ()) = Request::new(()).into_parts();
    head.method = parts.method.clone();
    head.uri = parts.uri.clone();
    head.version = parts.version;
    head.headers = parts.headers.clone();
    head
}
