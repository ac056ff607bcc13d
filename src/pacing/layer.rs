use std::fmt;
use std::sync::Arc;

use tower_layer::Layer;

use super::config::PacingConfig;
use super::handle::PacingHandle;
use super::key::ByCredential;
use super::registry::Registry;
use super::service::Pacing;

/// Applies [`Pacing`] to a service: calls to a key the upstream said it
/// will refuse are held back (or refused without being sent), and each key
/// keeps to its rate.
///
/// **This layer holds live state**: one `Arc` of holds and rates per key,
/// made when the layer is made and shared by every service it builds, every
/// clone of the layer and every [`PacingHandle`]. Two layers made apart
/// share nothing. `K` picks each request's key
/// ([`ExtractKey`](crate::key::ExtractKey)); the default is
/// [`ByCredential`] (authority, credential, model).
///
/// ```
/// use std::time::Duration;
/// use tower::ServiceBuilder;
/// use tower_http_resilience::pacing::{PacingConfig, PacingLayer};
///
/// let layer = PacingLayer::with_config(PacingConfig::new().rpm(60));
/// let handle = layer.handle();
/// let service = ServiceBuilder::new().layer(layer).service(tower::service_fn(
///     |_req: http::Request<String>| async {
///         Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
///     },
/// ));
/// # let _ = (service, handle);
/// ```
#[derive(Clone)]
pub struct PacingLayer<K = ByCredential> {
    registry: Arc<Registry>,
    key: K,
}

impl PacingLayer {
    /// A layer with the default settings ([`PacingConfig`]) and the
    /// default key ([`ByCredential`]).
    pub fn new() -> Self {
        Self::with_config(PacingConfig::default())
    }

    /// A layer with `config` and the default key.
    pub fn with_config(config: PacingConfig) -> Self {
        PacingLayer {
            registry: Arc::new(Registry::new(config)),
            key: ByCredential,
        }
    }
}

impl Default for PacingLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<K> PacingLayer<K> {
    /// Picks each request's key with `key` (the state stays the layer's).
    pub fn key<K2>(self, key: K2) -> PacingLayer<K2> {
        PacingLayer {
            registry: self.registry,
            key,
        }
    }

    /// A handle on the layer's state.
    pub fn handle(&self) -> PacingHandle {
        PacingHandle::new(self.registry.clone())
    }
}

impl<K> fmt::Debug for PacingLayer<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PacingLayer")
            .field("registry", &self.registry)
            .field("key", &std::any::type_name::<K>())
            .finish()
    }
}

impl<S, K: Clone> Layer<S> for PacingLayer<K> {
    type Service = Pacing<S, K>;

    fn layer(&self, inner: S) -> Self::Service {
        Pacing::new(inner, self.registry.clone(), self.key.clone())
    }
}
