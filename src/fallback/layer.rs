//! [`FallbackLayer`]: the attempt loop with targets.

use tower_layer::Layer;

use super::targets::{SelectTargets, Selector};
use crate::retry::{DefaultPolicy, Retry, RetryLayer};

/// Sends each call to its targets in order: retried on a target while the
/// failure is one to retry and the target's retries last, moved to the
/// next target at once when the target cannot serve the call, and handed
/// back when no target is left, with the most telling failure.
///
/// It is the retry layer's attempt loop given targets: it builds the same
/// [`Retry`] service, and every setting of a [`RetryLayer`] (backoff,
/// budget, deadline, replay limit, policy…) applies, through
/// [`retry`](Self::retry); `max_retries` is the retries on each target
/// that does not set its own. See the [module docs](super) for what moves
/// a call on.
///
/// The targets come from a [`SelectTargets`]: a [`Targets`](super::Targets) list for every
/// call, or a closure that picks them from the request.
///
/// ```
/// use std::time::Duration;
/// use tower_http_resilience::fallback::{FallbackLayer, Target, Targets};
/// use tower_http_resilience::retry::{Backoff, RetryLayer};
///
/// let targets: Targets = [
///     Target::new("openai").base_uri("https://api.openai.com".parse().unwrap()),
///     Target::new("backup").base_uri("http://127.0.0.1:9000/v1".parse().unwrap()).retries(0),
/// ]
/// .into();
/// let layer = FallbackLayer::new(targets).retry(
///     RetryLayer::new()
///         .max_retries(1)
///         .backoff(Backoff::constant(Duration::from_millis(200))),
/// );
/// # let _ = layer;
/// ```
#[derive(Clone, Debug)]
pub struct FallbackLayer<P = DefaultPolicy> {
    retry: RetryLayer<P>,
}

impl FallbackLayer {
    /// A loop over the targets `targets` chooses, with the retry layer's
    /// defaults.
    pub fn new(targets: impl SelectTargets) -> Self {
        FallbackLayer {
            retry: RetryLayer::new().targets(Selector::new(targets)),
        }
    }
}

impl<P> FallbackLayer<P> {
    /// Runs the loop with the settings of `retry` (its `max_retries` for
    /// each target that does not set its own retries); the targets stay.
    pub fn retry<P2>(self, retry: RetryLayer<P2>) -> FallbackLayer<P2> {
        let targets = self.retry.targets.expect("a fallback layer has targets");
        FallbackLayer {
            retry: retry.targets(targets),
        }
    }
}

impl<S, P: Clone> Layer<S> for FallbackLayer<P> {
    type Service = Retry<S, P>;

    fn layer(&self, inner: S) -> Self::Service {
        self.retry.layer(inner)
    }
}
