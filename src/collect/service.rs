//! [`CollectBody`]: the service.

use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body::Body;
use tokio::time::Instant;
use tower_service::Service;

use super::budget::{Budget, MAX_HOLD};
use super::error;
use super::future::{Collecting, ResponseFuture};
use super::CollectedBody;
use crate::deadline::Deadline;
use crate::util::instant_after;
use crate::{ApiError, BoxError};

/// The settings of a [`CollectBodyLayer`](super::CollectBodyLayer).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Config {
    pub(crate) max_request_body: usize,
    pub(crate) timeout: Duration,
}

/// Reads each request body whole, then calls the inner service with a
/// [`CollectedBody`]; made by [`CollectBodyLayer`](super::CollectBodyLayer).
///
/// The inner service must be `Clone`: the service made ready by
/// `poll_ready` moves into the response future, which calls it once the
/// body is in, and a clone takes its place.
#[derive(Clone, Debug)]
pub struct CollectBody<S> {
    inner: S,
    config: Config,
    budget: Budget,
}

impl<S> CollectBody<S> {
    pub(crate) fn new(inner: S, config: Config, budget: Budget) -> Self {
        CollectBody {
            inner,
            config,
            budget,
        }
    }

    /// A reference to the inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// A mutable reference to the inner service.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// The largest body accepted: the setting, within what one call may
    /// hold and what the whole budget holds.
    fn limit(&self) -> usize {
        self.config
            .max_request_body
            .min(MAX_HOLD)
            .min(self.budget.capacity())
    }
}

impl<S, B> Service<Request<B>> for CollectBody<S>
where
    S: Service<Request<CollectedBody>> + Clone,
    S::Error: Into<BoxError>,
    B: Body,
    B::Data: Into<Bytes>,
    B::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = ApiError;
    type Future = ResponseFuture<S::Future, S, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ApiError>> {
        self.inner
            .poll_ready(cx)
            .map_err(|e| ApiError::from_error(e.into()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let (parts, body) = req.into_parts();
        if body.is_end_stream() {
            let req = Request::from_parts(parts, CollectedBody::default());
            return ResponseFuture::calling(body, self.inner.call(req));
        }

        let limit = self.limit();
        let hint = body.size_hint();
        if usize::try_from(hint.lower()).map_or(true, |lower| lower > limit) {
            return ResponseFuture::failed(body, error::too_large(limit));
        }
        // A body that says how large it is holds that much; one that does
        // not holds the limit while it is read, then only its size.
        let exact = hint.exact().and_then(|n| usize::try_from(n).ok());
        let want = hint
            .upper()
            .and_then(|n| usize::try_from(n).ok())
            .map_or(limit, |upper| upper.min(limit));

        let now = Instant::now();
        let mut deadline = instant_after(now, self.config.timeout);
        if let Some(outer) = Deadline::get(&parts.extensions) {
            deadline = deadline.min(outer.instant());
        }
        let clone = self.inner.clone();
        let collecting = Collecting {
            service: std::mem::replace(&mut self.inner, clone),
            parts,
            budget: self.budget.clone(),
            limit,
            exact,
            allowed: deadline.saturating_duration_since(now),
        };
        match self.budget.try_hold(want) {
            Some(hold) => ResponseFuture::reading(body, collecting, hold, deadline),
            None => {
                let waiting = self.budget.wait_for(want);
                ResponseFuture::waiting(body, collecting, waiting, deadline)
            }
        }
    }
}
