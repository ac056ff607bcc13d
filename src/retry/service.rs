//! [`Retry`]: the retry service, and the [`RetryLayer`] that makes it.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use tower_layer::Layer;
use tower_service::Service;

use super::body::RetryBody;
use super::budget::RetryBudget;
use super::call::Call;
use super::future::ResponseFuture;
use super::layer::RetryLayer;
use super::policy::{DefaultPolicy, RetryPolicy};
use super::replay::ReplayBody;
use crate::{ApiError, BoxError};

/// Retries calls to the inner service; made by [`RetryLayer`].
///
/// See the [module docs](super) for the semantics.
///
/// ```
/// use std::sync::Arc;
/// use tower::Layer;
/// use tower_http_resilience::retry::RetryLayer;
///
/// let layer = RetryLayer::new();
/// let (a, b) = (layer.layer("upstream a"), layer.layer("upstream b"));
/// // Every service of one layer draws on the layer's budget.
/// assert!(Arc::ptr_eq(a.budget(), b.budget()));
/// assert_eq!(*a.get_ref(), "upstream a");
/// ```
pub struct Retry<S, P = DefaultPolicy> {
    inner: S,
    layer: Arc<RetryLayer<P>>,
}

impl<S, P> Retry<S, P> {
    pub(crate) fn new(inner: S, layer: RetryLayer<P>) -> Self {
        Retry {
            inner,
            layer: Arc::new(layer),
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

    /// The inner service, unwrapped.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// The budget this service draws on.
    pub fn budget(&self) -> &Arc<RetryBudget> {
        &self.layer.budget
    }
}

// Here rather than next to the layer: the layer is the settings every part
// of the retry reads, so it sits below them all.
impl<S, P: Clone> Layer<S> for RetryLayer<P> {
    type Service = Retry<S, P>;

    fn layer(&self, inner: S) -> Self::Service {
        Retry::new(inner, self.clone())
    }
}

impl<S, P, B, ResBody> Service<Request<B>> for Retry<S, P>
where
    S: Service<Request<ReplayBody<B>>, Response = Response<ResBody>> + Clone,
    S::Error: Into<BoxError>,
    B: Body,
    B::Error: Into<BoxError>,
    ResBody: Body,
    ResBody::Data: Into<Bytes>,
    ResBody::Error: Into<BoxError>,
    P: RetryPolicy,
{
    type Response = Response<RetryBody<ResBody>>;
    type Error = ApiError;
    type Future = ResponseFuture<S, B, P, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ApiError>> {
        self.inner
            .poll_ready(cx)
            .map_err(|e| ApiError::from_error(e.into()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // The service that was made ready is the one called; later attempts
        // wait for it to be ready again.
        let clone = self.inner.clone();
        let service = std::mem::replace(&mut self.inner, clone);
        let (call, first) = Call::start(req, &self.layer);
        ResponseFuture::new(first, service, self.layer.clone(), call)
    }
}

impl<S: Clone, P> Clone for Retry<S, P> {
    fn clone(&self) -> Self {
        Retry {
            inner: self.inner.clone(),
            layer: self.layer.clone(),
        }
    }
}

impl<S: fmt::Debug, P: fmt::Debug> fmt::Debug for Retry<S, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Retry")
            .field("inner", &self.inner)
            .field("layer", &self.layer)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use bytes::Bytes;
    use http::{Request, Response, StatusCode};
    use http_body_util::Full;
    use tower::{Layer, ServiceExt};

    use crate::deadline::Deadline;
    use crate::retry::{Backoff, Jitter, ReplayBody, RetryLayer};

    #[derive(Clone, Debug, PartialEq)]
    struct Marker(u32);

    /// What each attempt saw: its deadline, its marker, its number of
    /// extensions. The first two attempts fail with 503.
    async fn attempts(
        layer: RetryLayer,
        req: Request<Full<Bytes>>,
    ) -> Vec<(Option<Deadline>, Option<Marker>, usize)> {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let upstream = tower::service_fn({
            let seen = seen.clone();
            move |req: Request<ReplayBody<Full<Bytes>>>| {
                let mut seen = seen.lock().unwrap();
                let ext = req.extensions();
                seen.push((Deadline::get(ext), ext.get::<Marker>().cloned(), ext.len()));
                let status = if seen.len() < 3 {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::OK
                };
                let res = Response::builder()
                    .status(status)
                    .body(Full::new(Bytes::new()));
                std::future::ready(res)
            }
        });
        let layer = layer
            .max_retries(3)
            .backoff(Backoff::constant(Duration::from_millis(10)))
            .jitter(Jitter::none());
        let res = layer.layer(upstream).oneshot(req).await.unwrap();
        assert_eq!(res.status(), 200);
        let seen = seen.lock().unwrap().clone();
        seen
    }

    fn request() -> Request<Full<Bytes>> {
        Request::post("http://upstream/x")
            .body(Full::new(Bytes::from_static(b"{}")))
            .unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn every_attempt_sees_the_same_extensions() {
        let outer = Deadline::after(Duration::from_secs(60));

        // The call's context alone, with the deadline (kept aside, put back
        // on each retry).
        let mut req = request();
        outer.set_earliest(req.extensions_mut());
        let seen = attempts(RetryLayer::new(), req).await;
        assert_eq!(seen, vec![(Some(outer), None, 1); 3]);

        // The context and another extension.
        let mut req = request();
        outer.set_earliest(req.extensions_mut());
        req.extensions_mut().insert(Marker(7));
        let seen = attempts(RetryLayer::new(), req).await;
        assert_eq!(seen, vec![(Some(outer), Some(Marker(7)), 2); 3]);

        // Another extension alone: the layer adds the context.
        let mut req = request();
        req.extensions_mut().insert(Marker(7));
        let seen = attempts(RetryLayer::new(), req).await;
        assert_eq!(seen, vec![(None, Some(Marker(7)), 2); 3]);

        // No extension, and the layer's own deadline.
        let own = Deadline::after(Duration::from_secs(30));
        let seen = attempts(
            RetryLayer::new().deadline(Duration::from_secs(30)),
            request(),
        )
        .await;
        assert_eq!(seen, vec![(Some(own), None, 1); 3]);

        // An outer deadline later than the layer's: the earlier is in force.
        let own = Deadline::after(Duration::from_secs(30));
        let mut req = request();
        outer.set_earliest(req.extensions_mut());
        let seen = attempts(RetryLayer::new().deadline(Duration::from_secs(30)), req).await;
        assert_eq!(seen, vec![(Some(own), None, 1); 3]);

        // Nothing at all: the context alone.
        let seen = attempts(RetryLayer::new(), request()).await;
        assert_eq!(seen, vec![(None, None, 1); 3]);
    }
}
