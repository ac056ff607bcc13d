//! [`CollectBodyLayer`]: the limits and the shared budget.

use std::time::Duration;

use tower_layer::Layer;

use super::budget::Budget;
use super::service::{CollectBody, Config};

/// The largest request body accepted by default: 32 MiB (a chat request
/// with a few images).
pub const DEFAULT_MAX_REQUEST_BODY: usize = 32 * 1024 * 1024;

/// The request-body bytes held in memory at once by default, across all
/// calls: 256 MiB.
pub const DEFAULT_MAX_BUFFERED_BODIES: usize = 256 * 1024 * 1024;

/// The time a request body has to arrive by default: 60 s.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Reads each request body whole before calling the inner service: under a
/// size limit, a deadline, and a memory budget shared by every call.
///
/// See the [module docs](super) for the semantics. The defaults:
///
/// | setting | default |
/// |---|---|
/// | [`max_request_body`](Self::max_request_body) | [32 MiB](DEFAULT_MAX_REQUEST_BODY) |
/// | [`max_buffered_bodies`](Self::max_buffered_bodies) | [256 MiB](DEFAULT_MAX_BUFFERED_BODIES) |
/// | [`timeout`](Self::timeout) | [60 s](DEFAULT_TIMEOUT) |
///
/// The layer holds live state: its budget. Every service it makes, and
/// every clone of those, draws on the same budget; a layer cloned shares it
/// too.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use tower::ServiceBuilder;
/// use tower_http_resilience::collect::{CollectBodyLayer, CollectedBody};
///
/// let layer = CollectBodyLayer::new()
///     .max_request_body(512 * 1024)
///     .max_buffered_bodies(64 * 1024 * 1024)
///     .timeout(Duration::from_secs(30));
/// let service = ServiceBuilder::new()
///     .layer(layer.clone())
///     .service_fn(|req: http::Request<CollectedBody>| async move {
///         Ok::<_, std::convert::Infallible>(http::Response::new(req.into_body()))
///     });
/// assert_eq!(layer.buffered_bodies(), 0);
/// # let _ = service;
/// ```
#[derive(Clone, Debug)]
pub struct CollectBodyLayer {
    pub(crate) config: Config,
    pub(crate) budget: Budget,
}

impl CollectBodyLayer {
    /// A layer with the defaults above and a budget of its own.
    pub fn new() -> Self {
        CollectBodyLayer {
            config: Config {
                max_request_body: DEFAULT_MAX_REQUEST_BODY,
                timeout: DEFAULT_TIMEOUT,
            },
            budget: Budget::new(DEFAULT_MAX_BUFFERED_BODIES),
        }
    }

    /// Sets the largest request body, in bytes.
    ///
    /// A body that says it is larger (`Content-Length`, or its size hint) is
    /// answered 413 without being read; one that grows larger while it is
    /// read is answered 413 when it does. Bodies are limited to 4 GiB and to
    /// the budget, whichever is smaller.
    pub fn max_request_body(mut self, bytes: usize) -> Self {
        self.config.max_request_body = bytes;
        self
    }

    /// Sets the request-body bytes held in memory at once, across all calls,
    /// with a new budget that every service made from this layer shares.
    pub fn max_buffered_bodies(mut self, bytes: usize) -> Self {
        self.budget = Budget::new(bytes);
        self
    }

    /// Sets the time a request body has to arrive, from the call; a
    /// [`Deadline`](crate::deadline::Deadline) in the request's extensions
    /// shortens it.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.config.timeout = timeout;
        self
    }

    /// The request-body bytes held in memory right now by the calls of this
    /// layer's services.
    pub fn buffered_bodies(&self) -> usize {
        self.budget.held()
    }
}

impl Default for CollectBodyLayer {
    fn default() -> Self {
        CollectBodyLayer::new()
    }
}

impl<S> Layer<S> for CollectBodyLayer {
    type Service = CollectBody<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CollectBody::new(inner, self.config, self.budget.clone())
    }
}
