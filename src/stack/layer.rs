use tower_layer::Layer;

use super::ResilienceConfig;
use crate::circuit_breaker::key::Or;
use crate::circuit_breaker::{
    ByAuthority, ByExtension, CircuitBreaker, CircuitBreakerHandle, CircuitBreakerLayer,
    DefaultClassifier, ExtractKeyExt, GlobalKey,
};
use crate::fallback::{SelectTargets, Selector};
use crate::normalize::{Normalize, NormalizeClient, NormalizeClientLayer, NormalizeLayer};
use crate::pacing::{Pacing, PacingHandle, PacingLayer};
use crate::retry::{Retry, RetryBudget, RetryLayer};
use crate::timeout::{AttemptTimeout, AttemptTimeoutLayer, Timeout, TimeoutLayer};

/// The stack's default breaker key: the [`BreakerKey`] a caller put in the
/// request's extensions (a gateway puts the JSON body's `model` there), else
/// the upstream's authority (`host:port`), else one breaker for all calls.
///
/// ```
/// use tower::{Layer, ServiceExt};
/// use tower_http_resilience::circuit_breaker::BreakerKey;
/// use tower_http_resilience::stack::StackBody;
/// use tower_http_resilience::ResilienceLayer;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// let layer = ResilienceLayer::new(); // keyed by `DefaultKey`
/// let breakers = layer.breaker_handle();
/// let client = layer.layer(tower::service_fn(|_req: http::Request<StackBody<String>>| async {
///     Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
/// }));
/// let request = || http::Request::get("https://api.example.com/v1/models").body(String::new());
///
/// client.clone().oneshot(request().unwrap()).await.unwrap();
/// assert!(breakers.state("api.example.com").is_some());
/// let mut req = request().unwrap();
/// req.extensions_mut().insert(BreakerKey::new("gpt-4o"));
/// client.oneshot(req).await.unwrap();
/// assert!(breakers.state("gpt-4o").is_some());
/// # }
/// ```
///
/// [`BreakerKey`]: crate::circuit_breaker::BreakerKey
pub type DefaultKey = Or<Or<ByExtension, ByAuthority>, GlobalKey>;

/// The layers between normalization and the inner service:
/// total timeout → retry (the attempt loop, with its targets) → pacing →
/// circuit breaker → attempt timeout.
///
/// ```
/// use tower_http_resilience::stack::{Resilient, ServerStack};
/// use tower_http_resilience::Normalize;
///
/// // The server stack is server normalization around these layers.
/// fn is_the_server_stack<S>(stack: ServerStack<S>) -> Normalize<Resilient<S>> {
///     stack
/// }
/// ```
pub type Resilient<S, K = DefaultKey> =
    Timeout<Retry<Pacing<CircuitBreaker<AttemptTimeout<S>, K, DefaultClassifier>>>>;

/// The client stack a [`ResilienceLayer`] builds around a service `S`.
///
/// A type to name the stack in a struct field:
///
/// ```
/// use bytes::Bytes;
/// use http_body_util::Full;
/// use hyper_util::client::legacy::{connect::HttpConnector, Client};
/// use hyper_util::rt::TokioExecutor;
/// use tower::Layer;
/// use tower_http_resilience::stack::{ClientStack, StackBody};
/// use tower_http_resilience::ResilienceLayer;
///
/// struct Api {
///     client: ClientStack<Client<HttpConnector, StackBody<Full<Bytes>>>>,
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let client = Client::builder(TokioExecutor::new()).build_http();
/// let api = Api { client: ResilienceLayer::new().layer(client) };
/// # let _ = api.client;
/// # }
/// ```
pub type ClientStack<S, K = DefaultKey> = NormalizeClient<Resilient<S, K>>;

/// The server stack a [`ResilienceServerLayer`] builds around a service `S`.
///
/// ```
/// use std::convert::Infallible;
/// use tower::Layer;
/// use tower_http_resilience::stack::{ServerStack, StackBody};
/// use tower_http_resilience::ResilienceLayer;
///
/// type Forward = tower::util::BoxCloneService<
///     http::Request<StackBody<String>>,
///     http::Response<String>,
///     Infallible,
/// >;
/// let forward: Forward = tower::util::BoxCloneService::new(tower::service_fn(
///     |_req: http::Request<StackBody<String>>| async {
///         Ok::<_, Infallible>(http::Response::new(String::from("ok")))
///     },
/// ));
/// let gateway: ServerStack<Forward> = ResilienceLayer::new().server().layer(forward);
/// # let _ = gateway;
/// ```
pub type ServerStack<S, K = DefaultKey> = Normalize<Resilient<S, K>>;

/// The standard client stack, in the recommended order:
/// client normalization → total timeout → retry (the attempt loop, walking
/// the call's targets) → pacing → circuit breaker → attempt timeout → the
/// service.
///
/// Built from a [`ResilienceConfig`] (checked when built). Its error type is
/// [`ApiError`](crate::ApiError). The breaker state, the pacing state and
/// the retry budget live in this layer: every service it builds, and every
/// clone of them, shares them (one `Arc` each). Breakers are keyed by
/// [`DefaultKey`] (the caller's
/// [`BreakerKey`](crate::circuit_breaker::BreakerKey), else the host);
/// [`key`](Self::key) chooses another key. Pacing is keyed by
/// [`ByCredential`](crate::pacing::ByCredential) (host, credential and
/// breaker key). A call has one target, the service, unless
/// [`targets`](Self::targets) gives it a list to fall back along.
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
    timeout: TimeoutLayer,
    retry: RetryLayer,
    pacing: PacingLayer,
    breaker: CircuitBreakerLayer<K>,
    attempt: AttemptTimeoutLayer,
}

impl ResilienceConfig {
    /// Checks the settings and builds the client stack's layer.
    ///
    /// The checks: every duration is above zero; `attempt_timeout` ≤
    /// `total_timeout`; `stream_first_byte_timeout` and `stream_idle_timeout`
    /// ≤ `stream_timeout`; `breaker_window` ≥ `attempt_timeout` (a window
    /// shorter than one attempt forgets failures before it can count
    /// them); `breaker_failure_ratio` in (0, 1]; `breaker_min_calls` ≥ 1;
    /// `max_retries` ≤ 100.
    ///
    /// ```
    /// use tower_http_resilience::stack::ResilienceConfig;
    ///
    /// let layer = ResilienceConfig::default().max_retries(2).build();
    /// assert!(layer.is_ok());
    /// let err = ResilienceConfig::default().breaker_failure_ratio(1.5).build().unwrap_err();
    /// assert_eq!(err.to_string(), "invalid breaker_failure_ratio: 1.5 is not in (0, 1]");
    /// ```
    pub fn build(self) -> Result<ResilienceLayer, super::ConfigError> {
        self.check()?;
        Ok(ResilienceLayer::from_config(&self))
    }
}

impl ResilienceLayer {
    /// The stack with the default settings
    /// ([`ResilienceConfig::default`]).
    ///
    /// ```
    /// use tower_http_resilience::ResilienceLayer;
    ///
    /// let layer = ResilienceLayer::new();
    /// # let _ = layer;
    /// ```
    pub fn new() -> Self {
        ResilienceConfig::default()
            .build()
            .expect("the defaults are consistent")
    }

    fn from_config(config: &ResilienceConfig) -> Self {
        ResilienceLayer {
            timeout: config.timeout_layer(),
            retry: config.retry_layer(),
            pacing: PacingLayer::with_config(config.pacing_config()),
            breaker: CircuitBreakerLayer::with_config(config.breaker_config())
                .key(ByExtension.or(ByAuthority).or(GlobalKey)),
            attempt: config.attempt_layer(),
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
    ///
    /// ```
    /// use http::HeaderName;
    /// use tower_http_resilience::circuit_breaker::ByHeader;
    /// use tower_http_resilience::ResilienceLayer;
    ///
    /// // One breaker per tenant.
    /// let layer = ResilienceLayer::new().key(ByHeader::new(HeaderName::from_static("x-tenant")));
    /// # let _ = layer;
    /// ```
    pub fn key<K2>(self, key: K2) -> ResilienceLayer<K2> {
        ResilienceLayer {
            timeout: self.timeout,
            retry: self.retry,
            pacing: self.pacing,
            breaker: self.breaker.key(key),
            attempt: self.attempt,
        }
    }

    /// Adjusts the timeout layer the config built (SSE comment handling,
    /// `grpc-timeout`, the body peek limit, …).
    ///
    /// ```
    /// use tower_http_resilience::ResilienceLayer;
    ///
    /// let layer = ResilienceLayer::new().map_timeout(|t| t.set_grpc_timeout(true));
    /// # let _ = layer;
    /// ```
    pub fn map_timeout(mut self, f: impl FnOnce(TimeoutLayer) -> TimeoutLayer) -> Self {
        self.timeout = f(self.timeout);
        self
    }

    /// Adjusts the retry layer the config built (backoff, jitter, budget,
    /// attempt header, …).
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_http_resilience::retry::{Backoff, Jitter};
    /// use tower_http_resilience::ResilienceLayer;
    ///
    /// let layer = ResilienceLayer::new().map_retry(|r| {
    ///     r.backoff(Backoff::exponential(Duration::from_secs(1), Duration::from_secs(60)))
    ///         .jitter(Jitter::full())
    /// });
    /// # let _ = layer;
    /// ```
    pub fn map_retry(mut self, f: impl FnOnce(RetryLayer) -> RetryLayer) -> Self {
        self.retry = f(self.retry);
        self
    }

    /// Shares the stack's state with the other replicas of a fleet through
    /// `mirror`: the breakers' opens, closes and half-open probe (see
    /// [`CircuitBreakerLayer::fleet`]). Off the hot path: a call reads the
    /// mirror's entry kept beside its breaker and never waits for the
    /// store.
    ///
    /// ```
    /// use tower_http_resilience::fleet::{FleetMirror, MemoryStore};
    /// use tower_http_resilience::ResilienceLayer;
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let mirror = FleetMirror::builder("gateway").memory(&MemoryStore::new()).unwrap();
    /// let layer = ResilienceLayer::new().fleet(mirror);
    /// # let _ = layer;
    /// # }
    /// ```
    #[cfg(feature = "fleet")]
    pub fn fleet(mut self, mirror: crate::fleet::FleetMirror) -> Self {
        self.pacing = self.pacing.fleet(mirror.clone());
        self.breaker = self.breaker.fleet(mirror);
        self
    }

    /// Walks the targets `targets` chooses for each call (the default: one
    /// target, the service, rewritten in nothing): retried on a target
    /// while its retries last, moved to the next at once when it cannot
    /// serve the call. Each target's key keys its breaker and pacing. See
    /// [`fallback`](crate::fallback).
    ///
    /// ```
    /// use tower_http_resilience::fallback::{Target, Targets};
    /// use tower_http_resilience::ResilienceLayer;
    ///
    /// let targets: Targets = [
    ///     Target::new("openai:gpt-4o").base_uri("https://api.openai.com".parse().unwrap()).key("openai:gpt-4o"),
    ///     Target::new("backup:gpt-4o").base_uri("http://127.0.0.1:9000/v1".parse().unwrap()).key("backup:gpt-4o"),
    /// ]
    /// .into();
    /// let layer = ResilienceLayer::new().targets(targets);
    /// # let _ = layer;
    /// ```
    pub fn targets(mut self, targets: impl SelectTargets) -> Self {
        self.retry = self.retry.targets(Selector::new(targets));
        self
    }

    /// The handle of pacing: what is held back, per key.
    ///
    /// ```
    /// use tower_http_resilience::ResilienceLayer;
    ///
    /// let layer = ResilienceLayer::new();
    /// assert!(layer.pacing_handle().holds().is_empty());
    /// ```
    pub fn pacing_handle(&self) -> PacingHandle {
        self.pacing.handle()
    }

    /// The handle of the breakers: read each key's state and counts, watch
    /// transitions, force or reset breakers.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_http_resilience::circuit_breaker::CircuitState;
    /// use tower_http_resilience::ResilienceLayer;
    ///
    /// let layer = ResilienceLayer::new();
    /// let breakers = layer.breaker_handle();
    /// breakers.force_open("api.example.com", Duration::from_secs(60));
    /// assert_eq!(breakers.state("api.example.com"), Some(CircuitState::Open));
    /// ```
    pub fn breaker_handle(&self) -> CircuitBreakerHandle {
        self.breaker.handle()
    }

    /// The retry budget shared by every service of this layer.
    ///
    /// ```
    /// use tower_http_resilience::ResilienceLayer;
    ///
    /// let layer = ResilienceLayer::new();
    /// let server = layer.clone().server();
    /// // The server flavour shares the client flavour's budget.
    /// assert!(std::sync::Arc::ptr_eq(layer.retry_budget(), server.get_ref().retry_budget()));
    /// ```
    pub fn retry_budget(&self) -> &std::sync::Arc<RetryBudget> {
        &self.retry.budget
    }

    /// The server flavour of the same stack, sharing its breakers and
    /// budget: server normalization outermost, so every failure leaves as the
    /// canonical envelope and the service's error type is `Infallible`.
    ///
    /// ```
    /// use tower_http_resilience::ResilienceLayer;
    ///
    /// let server = ResilienceLayer::new().server();
    /// # let _ = server;
    /// ```
    pub fn server(self) -> ResilienceServerLayer<K> {
        ResilienceServerLayer { inner: self }
    }

    fn resilient<S>(&self, service: S) -> Resilient<S, K>
    where
        K: Clone,
    {
        let service = self.attempt.layer(service);
        let service = self.breaker.layer(service);
        let service = self.pacing.layer(service);
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
/// total timeout → retry → pacing → circuit breaker → attempt timeout → the
/// service.
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
    ///
    /// ```
    /// use tower_http_resilience::ResilienceLayer;
    ///
    /// let server = ResilienceLayer::new().server();
    /// let breakers = server.get_ref().breaker_handle();
    /// # let _ = breakers;
    /// ```
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
