use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::request::Parts;
use http::{Request, Response};
use tower_service::Service;

use super::body::CircuitBreakerBody;
use super::classify::{Classify, DefaultClassifier};
use super::entry::Entry;
use super::fleet::ProbeAsk;
use super::future::ResponseFuture;
use super::guard::Guard;
use super::handle::CircuitBreakerHandle;
use super::key::{ExtractKey, GlobalKey};
use super::registry::Registry;
use crate::call::CallContext;
use crate::{ApiError, BoxError};

/// Fails calls fast while the upstream of their key is failing.
///
/// Built by [`CircuitBreakerLayer`](super::CircuitBreakerLayer); see the
/// [module docs](super) for the semantics.
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
///
/// ```
/// use http_body_util::BodyExt;
/// use tower::{Layer, Service, ServiceExt};
/// use tower_http_resilience::circuit_breaker::CircuitBreakerLayer;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// let upstream = tower::service_fn(|_req: http::Request<String>| async {
///     Ok::<_, std::convert::Infallible>(http::Response::new(String::from("ok")))
/// });
/// let mut breaker = CircuitBreakerLayer::new().layer(upstream);
/// let res = breaker.ready().await.unwrap().call(http::Request::new(String::new())).await.unwrap();
/// assert_eq!(res.status(), 200);
/// // A success is recorded when its body ends.
/// let handle = breaker.handle();
/// assert_eq!(handle.snapshot("").unwrap().calls(), 0);
/// let body = res.into_body().collect().await.unwrap().to_bytes();
/// assert_eq!(body, "ok");
/// assert_eq!(handle.snapshot("").unwrap().calls(), 1);
/// # }
/// ```
pub struct CircuitBreaker<S, K = GlobalKey, C = DefaultClassifier> {
    inner: S,
    ready: bool,
    registry: Arc<Registry>,
    /// The entry of the last call and the registry's removal count then:
    /// a call with the same key skips the registry.
    last: Option<(Arc<Entry>, u64)>,
    key: K,
    classifier: C,
}

impl<S, K, C> CircuitBreaker<S, K, C> {
    pub(crate) fn new(inner: S, registry: Arc<Registry>, key: K, classifier: C) -> Self {
        CircuitBreaker {
            inner,
            ready: false,
            registry,
            last: None,
            key,
            classifier,
        }
    }

    /// A handle on the breakers this service shares with its layer.
    pub fn handle(&self) -> CircuitBreakerHandle {
        CircuitBreakerHandle::new(self.registry.clone())
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

    /// The entry of `key`: the last call's when the key is the same and the
    /// registry dropped nothing since, else the registry's.
    fn entry(&mut self, key: &str) -> Arc<Entry> {
        let removals = self.registry.removals();
        match &self.last {
            Some((entry, seen)) if *seen == removals && entry.is_exact_key(key) => entry.clone(),
            _ => {
                let entry = self.registry.entry(key);
                self.last = Some((entry.clone(), removals));
                entry
            }
        }
    }

    /// Admits the call of `parts` (`Ok(None)`: the call has no key and is
    /// not guarded), or rejects it with `circuit_open`. A fleet's half-open
    /// probe comes with its question to the fleet.
    fn admit(&mut self, parts: &Parts) -> Result<Option<(Guard, Option<ProbeAsk>)>, ApiError>
    where
        K: ExtractKey,
    {
        let Some(key) = self.key.extract(parts) else {
            return Ok(None);
        };
        let entry = self.entry(&key);
        let (ticket, ask) = entry.admit().map_err(ApiError::circuit_open)?;
        // The call's context says whether this is one attempt of a call an
        // attempt loop owns, and when an outer timeout cut the call short.
        let call = CallContext::get(&parts.extensions);
        Ok(Some((Guard::new(entry, ticket, call), ask)))
    }
}

impl<S: Clone, K: Clone, C: Clone> Clone for CircuitBreaker<S, K, C> {
    fn clone(&self) -> Self {
        CircuitBreaker {
            inner: self.inner.clone(),
            // A clone has not been polled ready.
            ready: false,
            registry: self.registry.clone(),
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
            .field("keys", &self.registry.len())
            .field("key", &std::any::type_name::<K>())
            .field("classifier", &std::any::type_name::<C>())
            .finish()
    }
}

impl<S, K, C, ReqBody, ResBody> Service<Request<ReqBody>> for CircuitBreaker<S, K, C>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    S::Error: Into<BoxError>,
    K: ExtractKey,
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
        let (parts, body) = req.into_parts();
        let (guard, ask) = match self.admit(&parts) {
            Ok(Some((guard, ask))) => (Some(guard), ask),
            Ok(None) => (None, None),
            // The inner service's readiness, if any, is kept for the next
            // call.
            Err(rejected) => return ResponseFuture::rejected(rejected),
        };
        let req = Request::from_parts(parts, body);
        let classifier = self.classifier.clone();
        if let Some(ask) = ask {
            // The inner service goes with the probe, which waits for the
            // fleet's answer; its readiness is asked for again then.
            self.ready = false;
            let clone = self.inner.clone();
            let inner = std::mem::replace(&mut self.inner, clone);
            return ResponseFuture::probing(ask, inner, req, guard, classifier);
        }
        if std::mem::take(&mut self.ready) {
            ResponseFuture::called(self.inner.call(req), guard, classifier)
        } else {
            let clone = self.inner.clone();
            let inner = std::mem::replace(&mut self.inner, clone);
            ResponseFuture::waiting(inner, req, guard, classifier)
        }
    }
}
