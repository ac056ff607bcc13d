use std::fmt;
use std::sync::Arc;

use tower_layer::Layer;

use super::classify::{Classify, DefaultClassifier};
use super::config::CircuitBreakerConfig;
use super::handle::CircuitBreakerHandle;
use super::key::GlobalKey;
use super::registry::Registry;
use super::service::CircuitBreaker;

/// Applies [`CircuitBreaker`] to a service: fail fast while the upstream of
/// a key is failing.
///
/// The layer owns the breakers' state: every service it builds, and every
/// clone of those, shares it (building a second service does not start
/// from scratch). `K` picks each request's key ([`ExtractKey`]), `C`
/// classifies outcomes ([`Classify`]).
///
/// See the [module docs](super) for the semantics.
///
/// ```
/// use std::time::Duration;
/// use tower::ServiceBuilder;
/// use tower_http_resilience::circuit_breaker::{
///     ByAuthority, CircuitBreakerConfig, CircuitBreakerLayer, DefaultClassifier,
/// };
///
/// let layer = CircuitBreakerLayer::with_config(
///     CircuitBreakerConfig::new().open_duration(Duration::from_secs(10), Duration::from_secs(60), 0.1),
/// )
/// .key(ByAuthority)
/// .classifier(DefaultClassifier);
/// let handle = layer.handle();
/// let client = ServiceBuilder::new()
///     .layer(layer)
///     .service_fn(|_req: http::Request<String>| async {
///         Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
///     });
/// assert!(handle.is_empty());
/// # let _ = client;
/// ```
///
/// [`ExtractKey`]: super::ExtractKey
/// [`Classify`]: super::Classify
pub struct CircuitBreakerLayer<K = GlobalKey, C = DefaultClassifier> {
    registry: Arc<Registry>,
    key: K,
    classifier: C,
}

impl CircuitBreakerLayer {
    /// A layer with the default settings ([`CircuitBreakerConfig::default`]),
    /// one breaker for every call, and the default classification.
    pub fn new() -> Self {
        Self::with_config(CircuitBreakerConfig::default())
    }

    /// A layer with `config`, one breaker for every call, and the default
    /// classification.
    pub fn with_config(config: CircuitBreakerConfig) -> Self {
        CircuitBreakerLayer {
            registry: Arc::new(Registry::new(config)),
            key: GlobalKey,
            classifier: DefaultClassifier,
        }
    }
}

impl Default for CircuitBreakerLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<K, C> CircuitBreakerLayer<K, C> {
    /// Picks each request's breaker with `key` (see
    /// [`ExtractKey`](super::ExtractKey)). The state stays shared.
    pub fn key<K2>(self, key: K2) -> CircuitBreakerLayer<K2, C> {
        CircuitBreakerLayer {
            registry: self.registry,
            key,
            classifier: self.classifier,
        }
    }

    /// Classifies outcomes with `classifier` (see
    /// [`Classify`](super::Classify)). The state stays shared.
    pub fn classifier<C2: Classify>(self, classifier: C2) -> CircuitBreakerLayer<K, C2> {
        CircuitBreakerLayer {
            registry: self.registry,
            key: self.key,
            classifier,
        }
    }

    /// Shares this layer's breakers with the other replicas of a fleet,
    /// through `mirror`: an open on one replica opens the breaker of the
    /// same key on the others for the time left, one replica of the fleet
    /// sends the half-open probe, and a successful probe closes the open
    /// it saw (see [`FleetMirror`](crate::fleet::FleetMirror)). The hot
    /// path reads the mirror's entry kept beside each breaker (one atomic
    /// load while the fleet holds nothing for the key) and never waits for
    /// the store; only a half-open probe asks it, within the mirror's lease
    /// timeout, and decides alone when it does not answer.
    ///
    /// The mirror serves the breakers made from then on: call it when the
    /// layer is built. A layer shares one fleet; a second mirror is
    /// ignored.
    ///
    /// ```
    /// use std::convert::Infallible;
    /// use std::time::Duration;
    /// use tower::{Layer, ServiceExt};
    /// use tower_http_resilience::circuit_breaker::CircuitBreakerLayer;
    /// use tower_http_resilience::fleet::{FleetMirror, MemoryStore};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// // Two replicas of one fleet (in one process here; Redis between processes).
    /// let store = MemoryStore::new();
    /// let replica = || {
    ///     let mirror = FleetMirror::builder("docs").memory(&store).unwrap();
    ///     CircuitBreakerLayer::new().fleet(mirror)
    /// };
    /// let (a, b) = (replica(), replica());
    ///
    /// a.handle().force_open("", Duration::from_secs(30));
    /// tokio::time::sleep(Duration::from_millis(10)).await; // the store tells b
    /// let upstream = tower::service_fn(|_req: http::Request<String>| async {
    ///     Ok::<_, Infallible>(http::Response::new(String::new()))
    /// });
    /// let err = b.layer(upstream).oneshot(http::Request::new(String::new())).await.unwrap_err();
    /// assert_eq!(err.code(), "circuit_open");
    /// # }
    /// ```
    #[cfg(feature = "fleet")]
    pub fn fleet(self, mirror: crate::fleet::FleetMirror) -> Self {
        let _ = self.registry.core().fleet.set(mirror);
        self
    }

    /// A handle on this layer's breakers.
    pub fn handle(&self) -> CircuitBreakerHandle {
        CircuitBreakerHandle::new(self.registry.clone())
    }

    /// The settings.
    pub fn config(&self) -> &CircuitBreakerConfig {
        &self.registry.core().config
    }
}

impl<K: Clone, C: Clone> Clone for CircuitBreakerLayer<K, C> {
    fn clone(&self) -> Self {
        CircuitBreakerLayer {
            registry: self.registry.clone(),
            key: self.key.clone(),
            classifier: self.classifier.clone(),
        }
    }
}

impl<K, C> fmt::Debug for CircuitBreakerLayer<K, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakerLayer")
            .field("registry", &self.registry)
            .field("key", &std::any::type_name::<K>())
            .field("classifier", &std::any::type_name::<C>())
            .finish()
    }
}

impl<S, K: Clone, C: Clone> Layer<S> for CircuitBreakerLayer<K, C> {
    type Service = CircuitBreaker<S, K, C>;

    fn layer(&self, inner: S) -> Self::Service {
        CircuitBreaker::new(
            inner,
            self.registry.clone(),
            self.key.clone(),
            self.classifier.clone(),
        )
    }
}
