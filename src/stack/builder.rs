use std::time::Duration;

use tower::layer::util::Stack;
use tower::ServiceBuilder;

use crate::circuit_breaker::{CircuitBreakerConfig, CircuitBreakerLayer};
use crate::normalize::{NormalizeClientLayer, NormalizeLayer};
use crate::retry::RetryLayer;
use crate::timeout::{AttemptTimeoutLayer, TimeoutLayer};

/// Adds this crate's layers to a [`ServiceBuilder`], each from its main
/// setting.
///
/// No method shares a name with a method of `ServiceBuilder` (an inherent
/// method, such as tower's `retry(policy)`, would win over a trait method of
/// the same name) or of tower-http's `ServiceBuilderExt`, so both extensions
/// can be in scope at once. A layer configured beyond its main setting is
/// added with [`ServiceBuilder::layer`]; [`ResilienceLayer`](super::ResilienceLayer)
/// builds the whole stack from one checked config.
///
/// # Example
///
/// A client that retries twice, behind one breaker, with a total and a
/// per-attempt timeout:
///
/// ```
/// use std::time::Duration;
/// use tower::{ServiceBuilder, ServiceExt};
/// use tower_http_resilience::circuit_breaker::CircuitBreakerConfig;
/// use tower_http_resilience::stack::{ResilienceServiceBuilderExt, StackBody};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// let upstream = tower::service_fn(|_req: http::Request<StackBody<String>>| async {
///     Ok::<_, std::convert::Infallible>(http::Response::new(String::from("{}")))
/// });
/// let client = ServiceBuilder::new()
///     .normalize_client()
///     .total_timeout(Duration::from_secs(60))
///     .retry_with_backoff(2)
///     .circuit_breaker(CircuitBreakerConfig::default())
///     .attempt_timeout(Duration::from_secs(30))
///     .service(upstream);
///
/// let res = client.oneshot(http::Request::new(String::from("{}"))).await.unwrap();
/// assert_eq!(res.status(), 200);
/// # }
/// ```
pub trait ResilienceServiceBuilderExt<L>: sealed::Sealed {
    /// Server normalization ([`NormalizeLayer`]): every failure leaves as
    /// the canonical envelope.
    ///
    /// ```
    /// use tower::ServiceBuilder;
    /// use tower_http_resilience::stack::ResilienceServiceBuilderExt;
    ///
    /// let builder = ServiceBuilder::new().normalize();
    /// # let _ = builder;
    /// ```
    fn normalize(self) -> ServiceBuilder<Stack<NormalizeLayer, L>>;

    /// Client normalization ([`NormalizeClientLayer`]): every failure
    /// arrives as an [`ApiError`](crate::ApiError).
    ///
    /// ```
    /// use tower::ServiceBuilder;
    /// use tower_http_resilience::stack::ResilienceServiceBuilderExt;
    ///
    /// let builder = ServiceBuilder::new().normalize_client();
    /// # let _ = builder;
    /// ```
    fn normalize_client(self) -> ServiceBuilder<Stack<NormalizeClientLayer, L>>;

    /// The streaming-aware timeout ([`TimeoutLayer`]) with this total for an
    /// ordinary call (headers and body, every attempt) and the default
    /// streaming clocks.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower::ServiceBuilder;
    /// use tower_http_resilience::stack::ResilienceServiceBuilderExt;
    ///
    /// let builder = ServiceBuilder::new().total_timeout(Duration::from_secs(60));
    /// # let _ = builder;
    /// ```
    fn total_timeout(self, total: Duration) -> ServiceBuilder<Stack<TimeoutLayer, L>>;

    /// Retry with backoff ([`RetryLayer`]): at most `max_retries` retries
    /// after the first attempt, the other settings at their defaults.
    ///
    /// ```
    /// use tower::ServiceBuilder;
    /// use tower_http_resilience::stack::ResilienceServiceBuilderExt;
    ///
    /// let builder = ServiceBuilder::new().retry_with_backoff(3);
    /// # let _ = builder;
    /// ```
    fn retry_with_backoff(self, max_retries: u32) -> ServiceBuilder<Stack<RetryLayer, L>>;

    /// One circuit breaker for every call ([`CircuitBreakerLayer`]) with
    /// these settings; its handle is reached through the service
    /// ([`CircuitBreaker::handle`](crate::circuit_breaker::CircuitBreaker::handle)).
    ///
    /// ```
    /// use tower::ServiceBuilder;
    /// use tower_http_resilience::circuit_breaker::CircuitBreakerConfig;
    /// use tower_http_resilience::stack::ResilienceServiceBuilderExt;
    ///
    /// let builder = ServiceBuilder::new().circuit_breaker(CircuitBreakerConfig::default().min_calls(20));
    /// # let _ = builder;
    /// ```
    fn circuit_breaker(
        self,
        config: CircuitBreakerConfig,
    ) -> ServiceBuilder<Stack<CircuitBreakerLayer, L>>;

    /// A timeout on one attempt's response headers ([`AttemptTimeoutLayer`]),
    /// for use inside the retry.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower::ServiceBuilder;
    /// use tower_http_resilience::stack::ResilienceServiceBuilderExt;
    ///
    /// let builder = ServiceBuilder::new().attempt_timeout(Duration::from_secs(30));
    /// # let _ = builder;
    /// ```
    fn attempt_timeout(self, timeout: Duration) -> ServiceBuilder<Stack<AttemptTimeoutLayer, L>>;
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

    fn retry_with_backoff(self, max_retries: u32) -> ServiceBuilder<Stack<RetryLayer, L>> {
        self.layer(RetryLayer::new().max_retries(max_retries))
    }

    fn circuit_breaker(
        self,
        config: CircuitBreakerConfig,
    ) -> ServiceBuilder<Stack<CircuitBreakerLayer, L>> {
        self.layer(CircuitBreakerLayer::with_config(config))
    }

    fn attempt_timeout(self, timeout: Duration) -> ServiceBuilder<Stack<AttemptTimeoutLayer, L>> {
        self.layer(AttemptTimeoutLayer::new(timeout))
    }
}
