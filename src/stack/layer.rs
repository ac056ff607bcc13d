use tower_layer::Layer;

use super::ResilienceConfig;
use crate::circuit_breaker::key::Or;
use crate::circuit_breaker::{
    ByAuthority, ByExtension, CircuitBreaker, CircuitBreakerHandle, CircuitBreakerLayer,
    DefaultClassifier, ExtractKeyExt, GlobalKey,
};
use crate::normalize::{Normalize, NormalizeClient, NormalizeClientLayer, NormalizeLayer};
use crate::retry::{Retry, RetryBudget, RetryLayer};
use crate::timeout::{AttemptTimeout, AttemptTimeoutLayer, Timeout, TimeoutLayer};

/// The stack's default breaker key: the [`BreakerKey`] a caller put in the
/// request's extensions (a gateway puts the JSON body's `model` there), else
/// the upstream's authority (`host:port`), else one breaker for all calls.
///
/// [`BreakerKey`]: crate::circuit_breaker::BreakerKey
pub type DefaultKey = Or<Or<ByExtension, ByAuthority>, GlobalKey>;

/// The layers between normalization and the inner service:
/// total timeout → retry → circuit breaker → attempt timeout.
pub type Resilient<S, K = DefaultKey> =
    Timeout<Retry<CircuitBreaker<AttemptTimeout<S>, K, DefaultClassifier>>>;

/// The client stack a [`ResilienceLayer`] builds around a service `S`.
pub type ClientStack<S, K = DefaultKey> = NormalizeClient<Resilient<S, K>>;

/// The server stack a [`ResilienceServerLayer`] builds around a service `S`.
pub type ServerStack<S, K = DefaultKey> = Normalize<Resilient<S, K>>;

/// The standard client stack, in the recommended order:
/// client normalization → total timeout → retry → circuit breaker → attempt
/// timeout → the service.
///
/// Built from a [`ResilienceConfig`] (checked when built). Its error type is
/// [`ApiError`](crate::ApiError). The breaker state and the retry budget
/// live in this layer: every service it builds, and every clone of them,
/// shares them (one `Arc` each). Breakers are keyed by [`DefaultKey`] (the
/// caller's [`BreakerKey`](crate::circuit_breaker::BreakerKey), else the
/// host); [`key`](Self::key) chooses another key.
///
/// The inner service receives `Request<`[`StackBody<B>`](super::StackBody)`>`:
/// a hyper-util client is built for that body type.
///
/// # Example
///
/// ```
/// use bytes::Bytes;
/// use http_body_util::Full;
/// use hyper_util::client::legacy::Client;
/// use hyper_util::rt::TokioExecutor;
/// use tower::ServiceBuilder;
/// use tower_http_resilience::stack::{ResilienceConfig, StackBody};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let client = Client::builder(TokioExecutor::new()).build_http::<StackBody<Full<Bytes>>>();
/// let layer = ResilienceConfig::default().max_retries(2).build().unwrap();
/// let handle = layer.breaker_handle();
/// let client = ServiceBuilder::new().layer(layer).service(client);
/// # let _ = (client, handle);
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct ResilienceLayer<K = DefaultKey> {
    config: ResilienceConfig,
    timeout: TimeoutLayer,
    retry: RetryLayer,
    breaker: CircuitBreakerLayer<K>,
    attempt: AttemptTimeoutLayer,
}

impl ResilienceLayer {
    /// The stack with the default settings.
    pub fn new() -> Self {
        ResilienceConfig::default()
            .build()
            .expect("the defaults are consistent")
    }

    pub(crate) fn from_config(config: ResilienceConfig) -> Self {
        ResilienceLayer {
            timeout: config.timeout_layer(),
            retry: config.retry_layer(),
            breaker: CircuitBreakerLayer::with_config(config.breaker_config())
                .key(ByExtension.or(ByAuthority).or(GlobalKey)),
            attempt: config.attempt_layer(),
            config,
        }
    }
}

impl Default for ResilienceLayer {
    fn default() -> Self {
        ResilienceLayer::new()
    }
}

impl<K> ResilienceLayer<K> {
    /// Chooses the breaker key (see
    /// [`ExtractKey`](crate::circuit_breaker::ExtractKey)): by host, by a
    /// header, one global breaker, a closure.
    pub fn key<K2>(self, key: K2) -> ResilienceLayer<K2> {
        ResilienceLayer {
            config: self.config,
            timeout: self.timeout,
            retry: self.retry,
            breaker: self.breaker.key(key),
            attempt: self.attempt,
        }
    }

    /// Adjusts the timeout layer the config built (SSE comment handling,
    /// `grpc-timeout`, the body peek limit, …).
    pub fn map_timeout(mut self, f: impl FnOnce(TimeoutLayer) -> TimeoutLayer) -> Self {
        self.timeout = f(self.timeout);
        self
    }

    /// Adjusts the retry layer the config built (backoff, jitter, budget,
    /// attempt header, …).
    pub fn map_retry(mut self, f: impl FnOnce(RetryLayer) -> RetryLayer) -> Self {
        self.retry = f(self.retry);
        self
    }

    /// The settings the stack was built from.
    pub fn config(&self) -> &ResilienceConfig {
        &self.config
    }

    /// The handle of the breakers: read each key's state and counts, watch
    /// transitions, force or reset breakers.
    pub fn breaker_handle(&self) -> CircuitBreakerHandle {
        self.breaker.handle()
    }

    /// The retry budget shared by every service of this layer.
    pub fn retry_budget(&self) -> &std::sync::Arc<RetryBudget> {
        &self.retry.budget
    }

    /// The server flavour of the same stack, sharing its breakers and
    /// budget: server normalization outermost, so every failure leaves as the
    /// canonical envelope and the service's error type is `Infallible`.
    pub fn server(self) -> ResilienceServerLayer<K> {
        ResilienceServerLayer { inner: self }
    }

    fn resilient<S>(&self, service: S) -> Resilient<S, K>
    where
        K: Clone,
    {
        let service = self.attempt.layer(service);
        let service = self.breaker.layer(service);
        let service = self.retry.layer(service);
        self.timeout.layer(service)
    }
}

impl<S, K: Clone> Layer<S> for ResilienceLayer<K> {
    type Service = ClientStack<S, K>;

    fn layer(&self, service: S) -> Self::Service {
        NormalizeClientLayer::new().layer(self.resilient(service))
    }
}

/// The standard stack for a server (a gateway, say): server normalization →
/// total timeout → retry → circuit breaker → attempt timeout → the service.
///
/// Made by [`ResilienceLayer::server`]. The wrapped service never fails: every
/// failure becomes the canonical envelope, a gRPC status for gRPC callers, or
/// a last SSE event for a stream that fails after it started.
///
/// # Example
///
/// ```
/// use tower::ServiceBuilder;
/// use tower_http_resilience::stack::{ResilienceConfig, StackBody};
///
/// // A service that forwards to the upstream (here: answers itself).
/// let forward = tower::service_fn(|_req: http::Request<StackBody<String>>| async {
///     Ok::<_, std::convert::Infallible>(http::Response::new(String::from("ok")))
/// });
/// let gateway = ServiceBuilder::new()
///     .layer(ResilienceConfig::default().build().unwrap().server())
///     .service(forward);
/// # let _ = gateway;
/// ```
#[derive(Clone, Debug)]
pub struct ResilienceServerLayer<K = DefaultKey> {
    inner: ResilienceLayer<K>,
}

impl<K> ResilienceServerLayer<K> {
    /// The client-flavour layer this one was made from (for its handle and
    /// budget).
    pub fn get_ref(&self) -> &ResilienceLayer<K> {
        &self.inner
    }
}

impl<S, K: Clone> Layer<S> for ResilienceServerLayer<K> {
    type Service = ServerStack<S, K>;

    fn layer(&self, service: S) -> Self::Service {
        NormalizeLayer::new().layer(self.inner.resilient(service))
    }
}
