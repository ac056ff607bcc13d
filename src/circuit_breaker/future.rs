//! The response future of [`CircuitBreaker`](super::CircuitBreaker).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use http::Response;
use http_body::Body;
use pin_project_lite::pin_project;
use tower_service::Service;

use super::breaker::{Guard, Outcome};
use super::{CircuitBreakerBody, Classify, Observation, Verdict};
use crate::{ApiError, BoxError};

pin_project! {
    /// The response future of [`CircuitBreaker`](super::CircuitBreaker):
    /// a rejection, or the inner call, whose outcome it records.
    ///
    /// `F` is the inner future, `S` the inner service and `R` the request
    /// (held only while waiting for an inner service that was not ready).
    pub struct ResponseFuture<F, S, R, C> {
        #[pin]
        state: State<F, S, R>,
        guard: Option<Guard>,
        classifier: Option<C>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, S, R> {
        Rejected { error: Option<ApiError> },
        Waiting { service: S, request: Option<R> },
        Called { #[pin] future: F },
    }
}

impl<F, S, R, C> ResponseFuture<F, S, R, C> {
    pub(crate) fn rejected(error: ApiError) -> Self {
        ResponseFuture {
            state: State::Rejected { error: Some(error) },
            guard: None,
            classifier: None,
        }
    }

    pub(crate) fn called(future: F, guard: Option<Guard>, classifier: C) -> Self {
        ResponseFuture {
            state: State::Called { future },
            guard,
            classifier: Some(classifier),
        }
    }

    pub(crate) fn waiting(service: S, request: R, guard: Option<Guard>, classifier: C) -> Self {
        ResponseFuture {
            state: State::Waiting {
                service,
                request: Some(request),
            },
            guard,
            classifier: Some(classifier),
        }
    }
}

impl<F, S, R, C> fmt::Debug for ResponseFuture<F, S, R, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Rejected { .. } => "rejected",
            State::Waiting { .. } => "waiting for the inner service",
            State::Called { .. } => "called",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .field("guard", &self.guard)
            .finish()
    }
}

fn verdict_outcome(v: Verdict) -> Outcome {
    match v {
        Verdict::Success => Outcome::Success,
        Verdict::Failure => Outcome::Failure,
        Verdict::Ignore => Outcome::Ignore,
    }
}

impl<F, S, R, C, B, E> Future for ResponseFuture<F, S, R, C>
where
    F: Future<Output = Result<Response<B>, E>>,
    S: Service<R, Response = Response<B>, Error = E, Future = F>,
    E: Into<BoxError>,
    B: Body,
    C: Classify,
{
    type Output = Result<Response<CircuitBreakerBody<B, C>>, ApiError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let result = match this.state.as_mut().project() {
                StateProj::Rejected { error } => {
                    return Poll::Ready(Err(error
                        .take()
                        .expect("ResponseFuture polled after completion")));
                }
                StateProj::Waiting { service, request } => match ready!(service.poll_ready(cx)) {
                    Ok(()) => {
                        let request = request
                            .take()
                            .expect("ResponseFuture polled after completion");
                        let future = service.call(request);
                        this.state.set(State::Called { future });
                        continue;
                    }
                    Err(e) => Err(e),
                },
                StateProj::Called { future } => ready!(future.poll(cx)),
            };
            let classifier = this
                .classifier
                .take()
                .expect("ResponseFuture polled after completion");
            let mut guard = this.guard.take();
            if let Some(g) = guard.as_mut() {
                g.headers_arrived();
            }
            return Poll::Ready(match result {
                Ok(response) => {
                    if let Some(g) = guard.take() {
                        let verdict = classifier.classify(Observation::Response {
                            status: response.status(),
                            headers: response.headers(),
                        });
                        match verdict {
                            Verdict::Success if !response.body().is_end_stream() => {
                                guard = Some(g);
                            }
                            v => g.finish(verdict_outcome(v)),
                        }
                    }
                    Ok(response.map(|body| CircuitBreakerBody::new(body, guard, classifier)))
                }
                Err(e) => {
                    let error = ApiError::from_error(e.into());
                    if let Some(g) = guard {
                        g.finish(verdict_outcome(
                            classifier.classify(Observation::Error(&error)),
                        ));
                    }
                    Err(error)
                }
            });
        }
    }
}
