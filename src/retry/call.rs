//! [`Call`]: what the retry future keeps of one call between its attempts.

use std::time::Duration;

use http::{request, HeaderValue, Request};
use http_body::Body;
use tokio::time::Instant;

use super::attempts::Attempts;
use super::layer::RetryLayer;
use super::replay::{Replay, ReplayBody};
use crate::deadline::Deadline;
use crate::hint::ServerHints;
use crate::util::{instant_after, saturating_millis};

/// One call through the retry layer: the request head every attempt is
/// built from, the body's replay handle, the deadline, and the attempts so
/// far.
pub(crate) struct Call<B> {
    head: request::Parts,
    /// `head` was kept without its one extension, the deadline: it is put
    /// back in every later attempt.
    restore_deadline: bool,
    replay: Replay<B>,
    deadline: Option<Deadline>,
    /// Attempts sent so far.
    attempts: u32,
    /// The last backoff wait (decorrelated jitter grows from it).
    previous_delay: Duration,
}

impl<B: Body> Call<B> {
    /// Starts a call: records it in the budget, settles its deadline, and
    /// returns the request of the first attempt with what later attempts
    /// are built from.
    pub(crate) fn start<P>(
        req: Request<B>,
        layer: &RetryLayer<P>,
    ) -> (Self, Request<ReplayBody<B>>) {
        layer.budget.deposit();
        let (mut parts, body) = req.into_parts();
        let deadline = match layer.deadline {
            Some(timeout) => Some(Deadline::after(timeout).set_earliest(&mut parts.extensions)),
            None => Deadline::get(&parts.extensions),
        };
        if let Some(name) = &layer.attempt_header {
            parts
                .headers
                .insert(name.clone(), HeaderValue::from_static("0"));
        }
        let (body, replay) = ReplayBody::first(body, layer.max_replay_body);
        // A head whose only extension is the deadline (an outer total
        // timeout published it) is kept without it: cloning a map of one
        // extension costs three allocations on every call, putting the
        // deadline back costs them only when an attempt is retried.
        let restore_deadline = parts.extensions.len() == 1
            && deadline.is_some()
            && Deadline::get(&parts.extensions) == deadline;
        let head = if restore_deadline {
            head_without_extensions(&parts)
        } else {
            parts.clone()
        };
        let call = Call {
            head,
            restore_deadline,
            replay,
            deadline,
            attempts: 1,
            previous_delay: Duration::ZERO,
        };
        (call, Request::from_parts(parts, body))
    }
}

impl<B> Call<B> {
    /// The attempts sent so far.
    pub(crate) fn attempts(&self) -> Attempts {
        Attempts(self.attempts)
    }

    /// The instant by which the error body of an attempt must be read: the
    /// peek timeout from now, or the deadline when that comes first.
    pub(crate) fn peek_until<P>(&self, layer: &RetryLayer<P>) -> Instant {
        let until = instant_after(Instant::now(), layer.peek_timeout);
        match &self.deadline {
            Some(deadline) => until.min(deadline.instant()),
            None => until,
        }
    }

    /// The wait before the next attempt, or `None` when the last outcome is
    /// final. Checks the cheap limits first and takes from the budget last.
    pub(crate) fn plan<P>(
        &mut self,
        layer: &RetryLayer<P>,
        hints: ServerHints,
    ) -> Option<Duration> {
        let retries = self.attempts - 1;
        if retries >= layer.max_retries {
            tracing::debug!(attempts = self.attempts, "retries exhausted");
            return None;
        }
        if self.replay.replayable() == Some(false) {
            tracing::debug!("request body over the replay limit or failed; not retried");
            return None;
        }
        let delay = match hints.retry_after() {
            Some(hint) if hint > layer.max_retry_after => {
                tracing::debug!(
                    retry_after_ms = saturating_millis(hint),
                    "server asked for a longer wait than max_retry_after; not retried here"
                );
                return None;
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
        if let Some(deadline) = &self.deadline {
            let crosses = Instant::now()
                .checked_add(delay)
                .is_none_or(|at| at >= deadline.instant());
            if crosses {
                tracing::debug!(
                    delay_ms = saturating_millis(delay),
                    "the next wait would cross the deadline; not retried"
                );
                return None;
            }
        }
        if !layer.budget.withdraw() {
            tracing::debug!("retry budget exhausted; not retried");
            return None;
        }
        Some(delay)
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
        if let (true, Some(deadline)) = (self.restore_deadline, &self.deadline) {
            req.extensions_mut().insert(deadline.clone());
        }
        if let Some(name) = &layer.attempt_header {
            req.headers_mut()
                .insert(name.clone(), HeaderValue::from(self.attempts));
        }
        self.attempts += 1;
        Some(req)
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
