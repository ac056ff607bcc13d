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

    /// Shares this layer's holds and rates with the other replicas of a
    /// fleet, through `mirror`: a hold one replica learns holds the key
    /// back on every replica (extend-only, for the time the upstream said),
    /// and a rate ([`rpm`](PacingConfig::rpm), [`Rpm`](super::Rpm)) is kept
    /// by the fleet as a whole, as small leases of a rate in the store (see
    /// [`FleetMirror::acquire`](crate::fleet::FleetMirror::acquire)).
    ///
    /// A call reads the later of its key's own hold and the fleet's (one
    /// more atomic load while the fleet holds nothing for the key) and never
    /// waits for the store, except a call with a rate when no leased cell is
    /// left: it asks within the mirror's lease timeout. While the store is
    /// away, each replica keeps its keys' rates on its own, as without a
    /// fleet. Keys reach the store hashed (the default key names hold no
    /// credential in the first place).
    ///
    /// The mirror serves the keys seen from then on: call it when the layer
    /// is built. A layer shares one fleet; a second mirror is ignored.
    ///
    /// ```
    /// use tower_http_resilience::fleet::{FleetMirror, MemoryStore};
    /// use tower_http_resilience::pacing::{PacingConfig, PacingLayer};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// // Every replica of the fleet builds its layer the same way; together
    /// // they send at most 600 requests a minute per key.
    /// let mirror = FleetMirror::builder("gateway").memory(&MemoryStore::new()).unwrap();
    /// let layer = PacingLayer::with_config(PacingConfig::new().rpm(600)).fleet(mirror);
    /// # let _ = layer;
    /// # }
    /// ```
    #[cfg(feature = "fleet")]
    pub fn fleet(self, mirror: crate::fleet::FleetMirror) -> Self {
        let _ = self.registry.core().fleet.set(mirror);
        self
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
