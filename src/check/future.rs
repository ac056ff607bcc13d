//! The response future of [`Check`](super::Check).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http::request::Parts;
use http::Request;
use http_body::Body;
use http_body_util::combinators::Collect;
use http_body_util::{BodyExt, Collected, LengthLimitError, Limited};
use pin_project_lite::pin_project;
use tower_service::Service;

use super::config::Config;
use super::endpoint::Endpoint;
use super::issue::{unreadable, Issue};
use super::request::inspect;
use super::CheckBody;
use crate::{ApiError, BoxError};

pin_project! {
    /// The response future of [`Check`](super::Check): the inner call, or
    /// the reading of a body to check first, or a refusal.
    ///
    /// `F` is the inner future, `S` the inner service (held while the body
    /// is read) and `B` the request body.
    pub struct ResponseFuture<F, S, B>
    where
        B: Body,
        B::Error: Into<BoxError>,
    {
        #[pin]
        state: State<F, S, B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, S, B>
    where
        B: Body,
        B::Error: Into<BoxError>,
    {
        Reading {
            #[pin]
            collect: Collect<Limited<B>>,
            pending: Option<Pending<S>>,
        },
        Called {
            #[pin]
            future: F,
        },
        Refused {
            error: Option<ApiError>,
        },
    }
}

/// What a call needs once the body is read.
struct Pending<S> {
    parts: Parts,
    service: S,
    endpoint: Endpoint,
    config: Arc<Config>,
}

impl<F, S, B> ResponseFuture<F, S, B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    pub(crate) fn called(future: F) -> Self {
        ResponseFuture {
            state: State::Called { future },
        }
    }

    pub(crate) fn refused(error: ApiError) -> Self {
        ResponseFuture {
            state: refused(error),
        }
    }

    pub(crate) fn reading(
        req: Request<B>,
        endpoint: Endpoint,
        service: S,
        config: Arc<Config>,
    ) -> Self {
        let (parts, body) = req.into_parts();
        let collect = Limited::new(body, config.max_body).collect();
        ResponseFuture {
            state: State::Reading {
                collect,
                pending: Some(Pending {
                    parts,
                    service,
                    endpoint,
                    config,
                }),
            },
        }
    }
}

fn refused<F, S, B>(error: ApiError) -> State<F, S, B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    tracing::debug!(
        target: "tower_http_resilience::check",
        status = error.status().as_u16(),
        code = error.code(),
        param = error.param(),
        "request refused before the inner service"
    );
    State::Refused { error: Some(error) }
}

impl<S> Pending<S> {
    /// The call to make, or the refusal, once the body is read.
    fn on_body<B>(self, read: Result<Collected<B::Data>, BoxError>) -> State<S::Future, S, B>
    where
        S: Service<Request<CheckBody<B>>>,
        B: Body,
        B::Data: Into<Bytes>,
        B::Error: Into<BoxError>,
    {
        let collected = match read {
            Ok(collected) => collected,
            Err(e) if e.is::<LengthLimitError>() => {
                let cap = self.config.max_body;
                return refused(Issue::TooLarge { cap }.into_error());
            }
            Err(e) => return refused(unreadable(e)),
        };
        let trailers = collected.trailers().cloned();
        // One chunk is handed on as it is; several are joined once.
        let bytes = collected.to_bytes();
        let Pending {
            mut parts,
            mut service,
            endpoint,
            config,
        } = self;
        match inspect(&bytes, endpoint, parts.uri.path(), &config) {
            Err(issue) => refused(issue.into_error()),
            Ok(tokens) => {
                parts.extensions.insert(tokens);
                let req = Request::from_parts(parts, CheckBody::read(bytes, trailers));
                State::Called {
                    future: service.call(req),
                }
            }
        }
    }
}

impl<S, B> Future for ResponseFuture<S::Future, S, B>
where
    S: Service<Request<CheckBody<B>>>,
    S::Error: Into<BoxError>,
    B: Body,
    B::Data: Into<Bytes>,
    B::Error: Into<BoxError>,
{
    type Output = Result<S::Response, ApiError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            match state.as_mut().project() {
                StateProj::Reading { collect, pending } => {
                    let read = ready!(collect.poll(cx));
                    let pending = pending.take().expect("polled after completion");
                    let next = pending.on_body(read);
                    state.set(next);
                }
                StateProj::Called { future } => {
                    return future.poll(cx).map_err(|e| ApiError::from_error(e.into()))
                }
                StateProj::Refused { error } => {
                    let error = error.take().expect("polled after completion");
                    return Poll::Ready(Err(error));
                }
            }
        }
    }
}

impl<F, S, B> fmt::Debug for ResponseFuture<F, S, B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Reading { .. } => "reading the body",
            State::Called { .. } => "called",
            State::Refused { .. } => "refused",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}
