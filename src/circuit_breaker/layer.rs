use std::fmt;
use std::sync::Arc;

use tower_layer::Layer;

use super::breaker::Core;
use super::registry::Registry;
use super::{
    CircuitBreaker, CircuitBreakerConfig, CircuitBreakerHandle, Classify, DefaultClassifier,
    GlobalKey,
};

/// The state of a layer's breakers: one `Arc`, shared by every service the
/// layer builds, their clones and the handles.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) core: Arc<Core>,
    pub(crate) registry: Registry,
}

impl Shared {
    pub(crate) fn new(config: CircuitBreakerConfig) -> Arc<Self> {
        let core = Arc::new(Core::new(config));
        Arc::new(Shared {
            registry: Registry::new(core.clone()),
            core,
        })
    }
}

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
/// [`ExtractKey`]: super::ExtractKey
pub struct CircuitBreakerLayer<K = GlobalKey, C = DefaultClassifier> {
    shared: Arc<Shared>,
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
            shared: Shared::new(config),
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
            shared: self.shared,
            key,
            classifier: self.classifier,
        }
    }

    /// Classifies outcomes with `classifier`. The state stays shared.
    pub fn classify<C2: Classify>(self, classifier: C2) -> CircuitBreakerLayer<K, C2> {
        CircuitBreakerLayer {
            shared: self.shared,
            key: self.key,
            classifier,
        }
    }

    /// A handle on this layer's breakers.
    pub fn handle(&self) -> CircuitBreakerHandle {
        CircuitBreakerHandle {
            shared: self.shared.clone(),
        }
    }

    /// The settings.
    pub fn config(&self) -> &CircuitBreakerConfig {
        &self.shared.core.config
    }
}

impl<K: Clone, C: Clone> Clone for CircuitBreakerLayer<K, C> {
    fn clone(&self) -> Self {
        CircuitBreakerLayer {
            shared: self.shared.clone(),
            key: self.key.clone(),
            classifier: self.classifier.clone(),
        }
    }
}

impl<K, C> fmt::Debug for CircuitBreakerLayer<K, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakerLayer")
            .field("config", &self.shared.core.config)
            .field("keys", &self.shared.registry.len())
            .field("key", &std::any::type_name::<K>())
            .field("classifier", &std::any::type_name::<C>())
            .finish()
    }
}

impl<S, K: Clone, C: Clone> Layer<S> for CircuitBreakerLayer<K, C> {
    type Service = CircuitBreaker<S, K, C>;

    fn layer(&self, inner: S) -> Self::Service {
        CircuitBreaker::from_parts(
            inner,
            self.shared.clone(),
            self.key.clone(),
            self.classifier.clone(),
        )
    }
}
