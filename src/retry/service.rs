//! [`Retry`]: the retry service.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Request, Response};
use http_body::Body;
use tower_service::Service;

use super::future::ResponseFuture;
use super::layer::Config;
use super::replay::ReplayBody;
use super::{RetryBody, RetryBudget, RetryLayer, RetryPolicy};
use crate::deadline::Deadline;
use crate::{ApiError, BoxError};

/// Retries calls to the inner service; made by [`RetryLayer`].
///
/// See the [module docs](super) for the semantics.
pub struct Retry<S, P = super::DefaultPolicy> {
    inner: S,
    settings: Arc<Settings<P>>,
}

/// What the services of one layer share.
pub(crate) struct Settings<P> {
    pub(crate) config: Config,
    pub(crate) policy: P,
    pub(crate) budget: Arc<RetryBudget>,
}

impl<S, P> Retry<S, P> {
    /// Wraps `inner` with the configuration (and the budget) of `layer`.
    pub fn new(inner: S, layer: RetryLayer<P>) -> Self {
        Retry {
            inner,
            settings: Arc::new(Settings {
                config: layer.config,
                policy: layer.policy,
                budget: layer.budget,
            }),
        }
    }

    /// The default layer ([`RetryLayer::new`]).
    pub fn layer() -> RetryLayer {
        RetryLayer::new()
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
        &self.settings.budget
    }
}

impl<S, P, B, ResBody> Service<Request<B>> for Retry<S, P>
where
    S: Service<Request<ReplayBody<B>>, Response = Response<ResBody>> + Clone,
    S::Error: Into<BoxError>,
    B: Body,
    ResBody: Body,
    ResBody::Data: Into<Bytes>,
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
        let mut service = std::mem::replace(&mut self.inner, clone);
        let settings = self.settings.clone();
        let config = &settings.config;
        settings.budget.deposit();

        let (mut parts, body) = req.into_parts();
        let deadline = match config.deadline {
            Some(timeout) => Some(Deadline::after(timeout).set_earliest(&mut parts.extensions)),
            None => Deadline::get(&parts.extensions),
        };
        if let Some(name) = &config.attempt_header {
            parts
                .headers
                .insert(name.clone(), HeaderValue::from_static("0"));
        }
        let (body, replay) = ReplayBody::first(body, config.max_replay_body);
        let template = parts.clone();
        let future = service.call(Request::from_parts(parts, body));
        ResponseFuture::new(future, service, settings, template, replay, deadline)
    }
}

impl<S: Clone, P> Clone for Retry<S, P> {
    fn clone(&self) -> Self {
        Retry {
            inner: self.inner.clone(),
            settings: self.settings.clone(),
        }
    }
}

impl<S: fmt::Debug, P: fmt::Debug> fmt::Debug for Retry<S, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Retry")
            .field("inner", &self.inner)
            .field("config", &self.settings.config)
            .field("policy", &self.settings.policy)
            .field("budget", &self.settings.budget)
            .finish()
    }
}
