//! [`RetryLayer`]: the retry layer's settings, shared by the services it
//! makes.

use std::sync::Arc;
use std::time::Duration;

use http::HeaderName;

use super::backoff::{Backoff, Jitter};
use super::budget::RetryBudget;
use super::policy::DefaultPolicy;
use crate::fallback::Selector;

/// The retries after the first attempt by default: 3, so four attempts ride
/// out a short outage.
pub const DEFAULT_MAX_RETRIES: u32 = 3;

/// The longest server-requested wait honoured by default: 60 s.
pub const DEFAULT_MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// The largest request body kept for replay by default: 4 MiB, enough for
/// a chat request with an image.
pub const DEFAULT_MAX_REPLAY_BODY: usize = 4 * 1024 * 1024;

/// Retries failed calls with backoff, honouring server hints, within one
/// deadline and a shared budget, replaying the request body.
///
/// See the [module docs](super) for the semantics. The defaults:
///
/// | setting | default | why |
/// |---|---|---|
/// | [`max_retries`](RetryLayer::max_retries) | 3 | the gateway's default: four attempts ride out a short outage |
/// | [`backoff`](RetryLayer::backoff) | exponential 500 ms → 8 s | the official OpenAI SDK's, which these upstreams expect |
/// | [`jitter`](RetryLayer::jitter) | up to 25% shorter | the same SDK's: spreads retries, never lengthens a wait |
/// | [`max_retry_after`](RetryLayer::max_retry_after) | 60 s | a longer server wait is the caller's to make, not a held connection's |
/// | [`deadline`](RetryLayer::deadline) | none (an outer total timeout's is used) | the call's bound belongs to the caller |
/// | [`budget`](RetryLayer::budget) | 20% of the last 10 s + 10/s | Finagle's and tower's |
/// | [`max_replay_body`](RetryLayer::max_replay_body) | 4 MiB | a chat request with an image fits |
/// | [`peek_limit`](RetryLayer::peek_limit) | 8 KiB ([`DEFAULT_BODY_CAP`](crate::error::DEFAULT_BODY_CAP)) | every provider's error envelope fits |
/// | [`peek_timeout`](RetryLayer::peek_timeout) | 5 s | an error body arrives with its headers; a stalled one is handed back unread |
/// | [`attempt_header`](RetryLayer::attempt_header) | none | opt-in |
///
/// The layer holds its budget in an `Arc`: every service it makes, and
/// every clone of those, draws on the same budget. The services share the
/// layer's settings through one `Arc` too, so a call copies none of them.
///
/// ```
/// use std::time::Duration;
/// use tower_http_resilience::retry::{Backoff, Jitter, RetryLayer};
///
/// let layer = RetryLayer::new()
///     .max_retries(2)
///     .backoff(Backoff::exponential(Duration::from_millis(200), Duration::from_secs(5)))
///     .jitter(Jitter::full())
///     .deadline(Duration::from_secs(30));
/// # let _ = layer;
/// ```
#[derive(Clone, Debug)]
pub struct RetryLayer<P = DefaultPolicy> {
    pub(crate) max_retries: u32,
    pub(crate) backoff: Backoff,
    pub(crate) jitter: Jitter,
    pub(crate) max_retry_after: Duration,
    pub(crate) deadline: Option<Duration>,
    pub(crate) max_replay_body: usize,
    pub(crate) peek_limit: usize,
    pub(crate) peek_timeout: Duration,
    pub(crate) attempt_header: Option<HeaderName>,
    pub(crate) policy: P,
    pub(crate) budget: Arc<RetryBudget>,
    /// The targets of each call (none: the one target the call was sent
    /// to, rewritten in nothing).
    pub(crate) targets: Option<Selector>,
}

impl RetryLayer {
    /// A layer with the defaults above and the [`DefaultPolicy`].
    pub fn new() -> Self {
        RetryLayer {
            max_retries: DEFAULT_MAX_RETRIES,
            backoff: Backoff::default(),
            jitter: Jitter::default(),
            max_retry_after: DEFAULT_MAX_RETRY_AFTER,
            deadline: None,
            max_replay_body: DEFAULT_MAX_REPLAY_BODY,
            peek_limit: crate::error::DEFAULT_BODY_CAP,
            peek_timeout: Duration::from_secs(5),
            attempt_header: None,
            policy: DefaultPolicy::new(),
            budget: Arc::new(RetryBudget::default()),
            targets: None,
        }
    }
}

impl Default for RetryLayer {
    fn default() -> Self {
        RetryLayer::new()
    }
}

impl<P> RetryLayer<P> {
    /// Uses `policy` to decide which outcomes are retried: a
    /// [`DefaultPolicy`] configured differently, a closure
    /// `Fn(&Outcome<'_>) -> Decision`, or any [`RetryPolicy`](super::RetryPolicy).
    pub fn policy<P2>(self, policy: P2) -> RetryLayer<P2> {
        RetryLayer {
            max_retries: self.max_retries,
            backoff: self.backoff,
            jitter: self.jitter,
            max_retry_after: self.max_retry_after,
            deadline: self.deadline,
            max_replay_body: self.max_replay_body,
            peek_limit: self.peek_limit,
            peek_timeout: self.peek_timeout,
            attempt_header: self.attempt_header,
            policy,
            budget: self.budget,
            targets: self.targets,
        }
    }

    /// Walks the targets `targets` chooses for each call.
    pub(crate) fn targets(mut self, targets: Selector) -> Self {
        self.targets = Some(targets);
        self
    }

    /// Sets how many times a call is retried after its first attempt
    /// (default 3; 0 turns retrying off).
    pub fn max_retries(mut self, max_retries: u32) -> Self {
        self.max_retries = max_retries;
        self
    }

    /// Sets how the wait between attempts grows.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Sets how the wait is randomised.
    pub fn jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = jitter;
        self
    }

    /// Sets the longest server-requested wait (`retry-after`,
    /// `retry-after-ms`, `x-ratelimit-reset-*`, gRPC pushback) that is
    /// honoured here (default 60 s). A longer one means "do not retry here":
    /// the outcome is returned at once, with its hint, for the caller to act
    /// on.
    pub fn max_retry_after(mut self, max: Duration) -> Self {
        self.max_retry_after = max;
        self
    }

    /// Sets a deadline for the whole call, counted from the moment it
    /// reaches this layer: no wait crosses it. When the request already
    /// carries an earlier [`Deadline`](crate::deadline::Deadline) (an outer
    /// total timeout put it there), that one is kept; otherwise this one is
    /// put in the request's extensions for the inner layers to see.
    ///
    /// The retry layer does not cut an attempt short; an outer total timeout
    /// does that.
    pub fn deadline(mut self, timeout: Duration) -> Self {
        self.deadline = Some(timeout);
        self
    }

    /// Sets the budget that bounds retries to a fraction of recent requests
    /// ([`RetryBudget::default`] unless set). Pass an `Arc` to share one
    /// budget between several layers; [`RetryBudget::unlimited`] turns the
    /// budget off.
    pub fn budget(mut self, budget: impl Into<Arc<RetryBudget>>) -> Self {
        self.budget = budget.into();
        self
    }

    /// Sets the largest request body kept for replay (default 4 MiB). A
    /// larger body is sent once and the call is not retried.
    pub fn max_replay_body(mut self, bytes: usize) -> Self {
        self.max_replay_body = bytes;
        self
    }

    /// Sets how much of an error body is read when the policy asks for it
    /// (default 8 KiB).
    pub fn peek_limit(mut self, bytes: usize) -> Self {
        self.peek_limit = bytes;
        self
    }

    /// Sets how long reading the start of an error body may take (default
    /// 5 s; the deadline bounds it too). An error body that does not arrive
    /// in time is handed back as it is, not retried.
    pub fn peek_timeout(mut self, timeout: Duration) -> Self {
        self.peek_timeout = timeout;
        self
    }

    /// Sends the number of retries before each attempt (`0`, `1`, `2`…) in
    /// the request header `name` (the OpenAI SDKs send
    /// `x-stainless-retry-count`).
    pub fn attempt_header(mut self, name: HeaderName) -> Self {
        self.attempt_header = Some(name);
        self
    }
}
