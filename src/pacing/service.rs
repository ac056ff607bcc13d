use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::request::Parts;
use http::{Request, Response};
use tower_service::Service;

use super::body::PacingBody;
use super::future::{refusal, ResponseFuture};
use super::handle::PacingHandle;
use super::key::ByCredential;
use super::rate::rate_of;
use super::registry::Registry;
use super::slot::{Admission, Slot};
use super::state::{PacingAction, RefuseIfHeld};
use crate::call::CallContext;
use crate::deadline::Deadline;
use crate::key::ExtractKey;
use crate::util::saturating_nanos;
use crate::{ApiError, BoxError};

/// Holds back calls to a key that the upstream said it will refuse, and
/// keeps each key to its rate.
///
/// Built by [`PacingLayer`](super::PacingLayer); see the
/// [module docs](super) for the semantics.
///
/// # Readiness
///
/// `poll_ready` polls the inner service once and reports ready either way
/// (like tower's `load_shed`): a call that is held or refused must not wait
/// for the inner service first. A call let through while the inner service
/// was not ready, or that waits for its key, takes a clone of the inner
/// service with it and waits for its readiness in the response future.
///
/// # Key lookup
///
/// Each service remembers the slot of its last call: a call with the same
/// key skips the registry (one hash of the key, one comparison).
///
/// ```
/// use tower::{Layer, Service, ServiceExt};
/// use tower_http_resilience::pacing::PacingLayer;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// let upstream = tower::service_fn(|_req: http::Request<String>| async {
///     Ok::<_, std::convert::Infallible>(http::Response::new(String::from("ok")))
/// });
/// let mut paced = PacingLayer::new().layer(upstream);
/// let res = paced.ready().await.unwrap().call(http::Request::new(String::new())).await.unwrap();
/// assert_eq!(res.status(), 200);
/// assert!(paced.handle().holds().is_empty());
/// # }
/// ```
pub struct Pacing<S, K = ByCredential> {
    inner: S,
    ready: bool,
    registry: Arc<Registry>,
    /// The slot of the last call and the registry's removal count then.
    last: Option<(Arc<Slot>, u64)>,
    key: K,
}

impl<S, K> Pacing<S, K> {
    pub(crate) fn new(inner: S, registry: Arc<Registry>, key: K) -> Self {
        Pacing {
            inner,
            ready: false,
            registry,
            last: None,
            key,
        }
    }

    /// A handle on the state this service shares with its layer.
    pub fn handle(&self) -> PacingHandle {
        PacingHandle::new(self.registry.clone())
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

    /// The slot of the key whose fingerprint is `fingerprint`: the last
    /// call's when it is the same key and the registry forgot nothing
    /// since, else the registry's.
    fn slot(&mut self, fingerprint: u64, parts: &Parts) -> Arc<Slot>
    where
        K: ExtractKey,
    {
        let removals = self.registry.removals();
        match &self.last {
            Some((slot, seen)) if *seen == removals && slot.fingerprint() == fingerprint => {
                slot.clone()
            }
            _ => {
                let key = &self.key;
                let slot = self
                    .registry
                    .slot(fingerprint, || Registry::name(key, parts));
                self.last = Some((slot.clone(), removals));
                slot
            }
        }
    }
}

/// The latest instant (nanoseconds) a call that arrived at `now` may be
/// sent: within `max_retry_after`, before its deadline, and now at the
/// latest when the request says not to wait ([`RefuseIfHeld`], or an
/// attempt loop with another target left for the call).
fn latest(registry: &Registry, parts: &Parts, now: u64) -> u64 {
    let call = CallContext::get(&parts.extensions);
    if parts.extensions.get::<RefuseIfHeld>().is_some()
        || call.is_some_and(CallContext::another_target_remains)
    {
        return now;
    }
    let core = registry.core();
    let latest = now.saturating_add(saturating_nanos(core.config.max_retry_after));
    match call.and_then(CallContext::deadline).map(Deadline::at) {
        // A call that would leave at its deadline has no time left.
        Some(deadline) => latest.min(core.nanos_at(deadline.instant()).saturating_sub(1)),
        None => latest,
    }
}

impl<S: Clone, K: Clone> Clone for Pacing<S, K> {
    fn clone(&self) -> Self {
        Pacing {
            inner: self.inner.clone(),
            // A clone has not been polled ready.
            ready: false,
            registry: self.registry.clone(),
            last: None,
            key: self.key.clone(),
        }
    }
}

impl<S: fmt::Debug, K> fmt::Debug for Pacing<S, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pacing")
            .field("inner", &self.inner)
            .field("ready", &self.ready)
            .field("registry", &self.registry)
            .field("key", &std::any::type_name::<K>())
            .finish()
    }
}

impl<S, K, ReqBody, ResBody> Service<Request<ReqBody>> for Pacing<S, K>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    S::Error: Into<BoxError>,
    K: ExtractKey,
{
    type Response = Response<PacingBody<ResBody>>;
    type Error = ApiError;
    type Future = ResponseFuture<S::Future, S, Request<ReqBody>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if !self.ready {
            match self.inner.poll_ready(cx) {
                Poll::Ready(Ok(())) => self.ready = true,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(ApiError::from_error(e.into()))),
                // Ready anyway: a held call must not wait for it.
                Poll::Pending => {}
            }
        }
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let (parts, body) = req.into_parts();
        let Some(fingerprint) = self.registry.fingerprint(&self.key, &parts) else {
            return self.send(Request::from_parts(parts, body), None);
        };
        let slot = self.slot(fingerprint, &parts);
        let core = self.registry.core();
        let rate = rate_of(&parts.extensions, core.rate);
        // The common case: a key never held, no rate. No clock read.
        if rate.is_none() && slot.held_until() == 0 {
            return self.send(Request::from_parts(parts, body), Some(slot));
        }
        let now = core.now_nanos();
        let latest = latest(&self.registry, &parts, now);
        match slot.admit(rate, now, latest) {
            Admission::Go => self.send(Request::from_parts(parts, body), Some(slot)),
            Admission::Wait { at, cause } => {
                slot.count_held();
                slot.tell(PacingAction::Waited, cause, at, now);
                // The inner service's readiness is kept for the next call.
                let service = self.inner.clone();
                let req = Request::from_parts(parts, body);
                ResponseFuture::held(service, req, slot, rate, latest, at, cause)
            }
            Admission::Refuse { at, cause } => {
                slot.count_held();
                ResponseFuture::refused(refusal(&slot, cause, at, now))
            }
            Admission::Ask(lease) => {
                let service = self.inner.clone();
                let req = Request::from_parts(parts, body);
                ResponseFuture::asking(service, req, slot, rate, latest, lease)
            }
        }
    }
}

impl<S, K> Pacing<S, K> {
    /// Sends `req` now: on the service polled ready, or on a clone that the
    /// future polls ready.
    fn send<ReqBody, ResBody>(
        &mut self,
        req: Request<ReqBody>,
        slot: Option<Arc<Slot>>,
    ) -> ResponseFuture<S::Future, S, Request<ReqBody>>
    where
        S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    {
        if std::mem::take(&mut self.ready) {
            ResponseFuture::called(self.inner.call(req), slot)
        } else {
            let clone = self.inner.clone();
            let inner = std::mem::replace(&mut self.inner, clone);
            ResponseFuture::waiting(inner, req, slot)
        }
    }
}
