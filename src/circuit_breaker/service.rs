use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

use super::breaker::{Breaker, Guard};
use super::future::ResponseFuture;
use super::layer::Shared;
use super::{
    CircuitBreakerBody, CircuitBreakerHandle, CircuitBreakerLayer, Classify, DefaultClassifier,
    ExtractKey, GlobalKey,
};
use crate::deadline::Deadline;
use crate::{ApiError, BoxError};

/// Fails calls fast while the upstream of their key is failing.
///
/// Built by [`CircuitBreakerLayer`]; see the [module docs](super) for the
/// semantics.
///
/// # Readiness
///
/// `poll_ready` polls the inner service once; if the inner service is not
/// ready, it still reports ready (like tower's `load_shed`), so that a
/// call whose breaker is open is rejected at once instead of waiting for
/// an inner service that may never become ready. A call that is let
/// through while the inner service was not ready takes the inner service
/// with it (a clone is left in its place) and waits for its readiness in
/// the response future.
///
/// # Key lookup
///
/// Each service remembers the breaker of its last call: a call with the same
/// key (the usual case for a global breaker, or a connection that keeps
/// calling one model) skips hashing the key and the registry. That breaker
/// counts as in use, so it is not evicted as idle while the service holds
/// it; when the registry drops it anyway (full, or
/// [`reset`](super::CircuitBreakerHandle::reset)), the service notices and
/// looks the key up again.
pub struct CircuitBreaker<S, K = GlobalKey, C = DefaultClassifier> {
    inner: S,
    ready: bool,
    shared: Arc<Shared>,
    /// The breaker of the last call and the registry's removal count then:
    /// a call with the same key skips the registry.
    last: Option<(Arc<Breaker>, u64)>,
    key: K,
    classifier: C,
}

impl<S> CircuitBreaker<S> {
    /// Wraps `inner` with a breaker of the default settings. Prefer
    /// [`CircuitBreakerLayer`], whose state is shared by every service it
    /// builds.
    pub fn new(inner: S) -> Self {
        CircuitBreakerLayer::new().layer_service(inner)
    }

    /// A [`CircuitBreakerLayer`] with the default settings.
    pub fn layer() -> CircuitBreakerLayer {
        CircuitBreakerLayer::new()
    }
}

impl<K: Clone, C: Clone> CircuitBreakerLayer<K, C> {
    fn layer_service<S>(&self, inner: S) -> CircuitBreaker<S, K, C> {
        tower_layer::Layer::layer(self, inner)
    }
}

impl<S, K, C> CircuitBreaker<S, K, C> {
    pub(crate) fn from_parts(inner: S, shared: Arc<Shared>, key: K, classifier: C) -> Self {
        CircuitBreaker {
            inner,
            ready: false,
            shared,
            last: None,
            key,
            classifier,
        }
    }

    /// A handle on the breakers this service shares with its layer.
    pub fn handle(&self) -> CircuitBreakerHandle {
        CircuitBreakerHandle {
            shared: self.shared.clone(),
        }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone, K: Clone, C: Clone> Clone for CircuitBreaker<S, K, C> {
    fn clone(&self) -> Self {
        CircuitBreaker {
            inner: self.inner.clone(),
            // A clone has not been polled ready.
            ready: false,
            shared: self.shared.clone(),
            last: None,
            key: self.key.clone(),
            classifier: self.classifier.clone(),
        }
    }
}

impl<S: fmt::Debug, K, C> fmt::Debug for CircuitBreaker<S, K, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("inner", &self.inner)
            .field("ready", &self.ready)
            .field("keys", &self.shared.registry.len())
            .field("key", &std::any::type_name::<K>())
            .field("classifier", &std::any::type_name::<C>())
            .finish()
    }
}

impl<S, K, C, ReqBody, ResBody> Service<Request<ReqBody>> for CircuitBreaker<S, K, C>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    S::Error: Into<BoxError>,
    K: ExtractKey<ReqBody>,
    C: Classify + Clone,
    ResBody: http_body::Body,
{
    type Response = Response<CircuitBreakerBody<ResBody, C>>;
    type Error = ApiError;
    type Future = ResponseFuture<S::Future, S, Request<ReqBody>, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if !self.ready {
            match self.inner.poll_ready(cx) {
                Poll::Ready(Ok(())) => self.ready = true,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(ApiError::from_error(e.into()))),
                // Ready anyway: an open breaker must not wait for it.
                Poll::Pending => {}
            }
        }
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let guard = match self.key.extract(&req) {
            None => None,
            Some(key) => {
                let registry = &self.shared.registry;
                let removals = registry.removals();
                let breaker = match &self.last {
                    Some((b, seen)) if *seen == removals && b.is_exact_key(&key) => b.clone(),
                    _ => {
                        let b = match registry.get(&key) {
                            Some(b) => b,
                            None => registry.get_or_insert(&key),
                        };
                        self.last = Some((b.clone(), removals));
                        b
                    }
                };
                match breaker.admit() {
                    Ok(ticket) => {
                        // An outer timeout that cuts the call short says so
                        // through the deadline it published.
                        let cut = req
                            .extensions()
                            .get::<Deadline>()
                            .and_then(|d| d.cut_signal().cloned());
                        Some(Guard::new(breaker, ticket, cut))
                    }
                    // The inner service's readiness, if any, is kept for the
                    // next call.
                    Err(open_for) => {
                        return ResponseFuture::rejected(ApiError::circuit_open(open_for))
                    }
                }
            }
        };
        let classifier = self.classifier.clone();
        if std::mem::take(&mut self.ready) {
            ResponseFuture::called(self.inner.call(req), guard, classifier)
        } else {
            let clone = self.inner.clone();
            let inner = std::mem::replace(&mut self.inner, clone);
            ResponseFuture::waiting(inner, req, guard, classifier)
        }
    }
}
