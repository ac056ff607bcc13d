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
