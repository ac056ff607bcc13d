use std::time::Duration;

use tower::layer::util::Stack;
use tower::ServiceBuilder;

use super::{ResilienceLayer, ResilienceServerLayer};
use crate::circuit_breaker::CircuitBreakerLayer;
use crate::normalize::{NormalizeClientLayer, NormalizeLayer};
use crate::retry::RetryLayer;
use crate::timeout::{AttemptTimeoutLayer, TimeoutLayer};

/// Adds this crate's layers to a [`ServiceBuilder`] by name.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use tower::ServiceBuilder;
/// use tower_http_resilience::circuit_breaker::CircuitBreakerLayer;
/// use tower_http_resilience::retry::RetryLayer;
/// use tower_http_resilience::stack::{ResilienceServiceBuilderExt, StackBody};
///
/// let client = tower::service_fn(|_req: http::Request<StackBody<String>>| async {
///     Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
/// });
/// let stack = ServiceBuilder::new()
///     .normalize_client()
///     .total_timeout(Duration::from_secs(60))
///     .retry(RetryLayer::new().max_retries(2))
///     .circuit_breaker(CircuitBreakerLayer::new())
///     .attempt_timeout(Duration::from_secs(30))
///     .service(client);
/// # let _ = stack;
/// ```
pub trait ResilienceServiceBuilderExt<L>: sealed::Sealed {
    /// Server normalization ([`NormalizeLayer`]).
    fn normalize(self) -> ServiceBuilder<Stack<NormalizeLayer, L>>;
    /// Client normalization ([`NormalizeClientLayer`]).
    fn normalize_client(self) -> ServiceBuilder<Stack<NormalizeClientLayer, L>>;
    /// The phased timeout ([`TimeoutLayer`]) with this ordinary total and the
    /// default streaming clocks.
    fn total_timeout(self, total: Duration) -> ServiceBuilder<Stack<TimeoutLayer, L>>;
    /// Retry ([`RetryLayer`]).
    fn retry<P>(self, layer: RetryLayer<P>) -> ServiceBuilder<Stack<RetryLayer<P>, L>>;
    /// A circuit breaker ([`CircuitBreakerLayer`]).
    fn circuit_breaker<K, C>(
        self,
        layer: CircuitBreakerLayer<K, C>,
    ) -> ServiceBuilder<Stack<CircuitBreakerLayer<K, C>, L>>;
    /// A per-attempt headers timeout ([`AttemptTimeoutLayer`]).
    fn attempt_timeout(self, timeout: Duration) -> ServiceBuilder<Stack<AttemptTimeoutLayer, L>>;
    /// The whole client stack ([`ResilienceLayer`]).
    fn resilience<K>(
        self,
        layer: ResilienceLayer<K>,
    ) -> ServiceBuilder<Stack<ResilienceLayer<K>, L>>;
    /// The whole server stack ([`ResilienceServerLayer`]).
    fn resilience_server<K>(
        self,
        layer: ResilienceServerLayer<K>,
    ) -> ServiceBuilder<Stack<ResilienceServerLayer<K>, L>>;
}

mod sealed {
    pub trait Sealed {}
    impl<L> Sealed for tower::ServiceBuilder<L> {}
}

impl<L> ResilienceServiceBuilderExt<L> for ServiceBuilder<L> {
    fn normalize(self) -> ServiceBuilder<Stack<NormalizeLayer, L>> {
        self.layer(NormalizeLayer::new())
    }

    fn normalize_client(self) -> ServiceBuilder<Stack<NormalizeClientLayer, L>> {
        self.layer(NormalizeClientLayer::new())
    }

    fn total_timeout(self, total: Duration) -> ServiceBuilder<Stack<TimeoutLayer, L>> {
        self.layer(TimeoutLayer::new().total_timeout(total))
    }

    fn retry<P>(self, layer: RetryLayer<P>) -> ServiceBuilder<Stack<RetryLayer<P>, L>> {
        self.layer(layer)
    }

    fn circuit_breaker<K, C>(
        self,
        layer: CircuitBreakerLayer<K, C>,
    ) -> ServiceBuilder<Stack<CircuitBreakerLayer<K, C>, L>> {
        self.layer(layer)
    }

    fn attempt_timeout(self, timeout: Duration) -> ServiceBuilder<Stack<AttemptTimeoutLayer, L>> {
        self.layer(AttemptTimeoutLayer::new(timeout))
    }

    fn resilience<K>(
        self,
        layer: ResilienceLayer<K>,
    ) -> ServiceBuilder<Stack<ResilienceLayer<K>, L>> {
        self.layer(layer)
    }

    fn resilience_server<K>(
        self,
        layer: ResilienceServerLayer<K>,
    ) -> ServiceBuilder<Stack<ResilienceServerLayer<K>, L>> {
        self.layer(layer)
    }
}
