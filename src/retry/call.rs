//! [`Call`]: what the retry future keeps of one call between its attempts,
//! and [`Refusal`]: why a retry the policy wanted is not made.

use std::time::Duration;

use http::{request, HeaderValue, Request};
use http_body::Body;
use tokio::time::Instant;

use super::layer::RetryLayer;
use super::replay::{Replay, ReplayBody};
use crate::call::{Attempts, CallContext};
use crate::hint::ServerHints;
use crate::util::{instant_after, saturating_millis};

/// One call through the retry layer: the request head every attempt is
/// built from, the body's replay handle, and the call's context (its
/// deadline and the attempts sent, shared with the layers around and
/// inside).
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
    /// The last backoff wait (decorrelated jitter grows from it).
    previous_delay: Duration,
}

/// Why an outcome the policy wanted retried is not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// `max_retries` retries were made.
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

impl<B: Body> Call<B> {
    /// Starts a call: records it in the budget, takes hold of its context
    /// (made here when no outer layer made one), settles its deadline, and
    /// returns the request of the first attempt with what later attempts
    /// are built from.
    pub(crate) fn start<P>(
        req: Request<B>,
        layer: &RetryLayer<P>,
    ) -> (Self, Request<ReplayBody<B>>) {
        layer.budget.deposit();
        let (mut parts, body) = req.into_parts();
        let context = CallContext::get_or_insert(&mut parts.extensions).clone();
        if let Some(timeout) = layer.deadline {
            context.set_deadline_earliest(instant_after(Instant::now(), timeout));
        }
        context.own();
        context.count_attempt();
        if let Some(name) = &layer.attempt_header {
            parts
                .headers
                .insert(name.clone(), HeaderValue::from_static("0"));
        }
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
        let call = Call {
            head,
            restore_context,
            replay,
            context,
            held: true,
            previous_delay: Duration::ZERO,
        };
        (call, Request::from_parts(parts, body))
    }
}

impl<B> Call<B> {
    /// The attempts sent so far.
    pub(crate) fn attempts(&self) -> Attempts {
        Attempts(self.context.attempts().max(1))
    }

    /// Lets go of the call's context: the call is over for this loop.
    pub(crate) fn release(&mut self) {
        if std::mem::take(&mut self.held) {
            self.context.release();
        }
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

    /// The wait before the next attempt, or why the last outcome is final.
    /// Checks the cheap limits first and takes from the budget last.
    pub(crate) fn plan<P>(
        &mut self,
        layer: &RetryLayer<P>,
        hints: ServerHints,
    ) -> Result<Duration, Refusal> {
        let retries = self.attempts().retries();
        if retries >= layer.max_retries {
            tracing::debug!(attempts = retries + 1, "retries exhausted");
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
                    .delay(&layer.backoff, retries, previous, &mut rng);
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
        Ok(delay)
    }

    /// The request of the next attempt, which it counts; `None` when the
    /// body cannot be replayed (over the cap, failed, or still held by the
    /// previous attempt).
    pub(crate) fn next_request<P>(
        &mut self,
        layer: &RetryLayer<P>,
    ) -> Option<Request<ReplayBody<B>>> {
        let body = self.replay.next_body()?;
        let mut req = Request::from_parts(self.head.clone(), body);
        if self.restore_context {
            req.extensions_mut().insert(self.context.clone());
        }
        let sent = self.context.count_attempt();
        if let Some(name) = &layer.attempt_header {
            req.headers_mut()
                .insert(name.clone(), HeaderValue::from(sent - 1));
        }
        Some(req)
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
