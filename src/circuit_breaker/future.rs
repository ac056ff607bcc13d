//! The response future of [`CircuitBreaker`](super::CircuitBreaker).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use http::Response;
use http_body::Body;
use pin_project_lite::pin_project;
use tower_service::Service;

use super::body::CircuitBreakerBody;
use super::classify::{Classify, Observation, Verdict};
use super::fleet::ProbeAsk;
use super::guard::Guard;
use crate::util::{Deferred, POLLED_AFTER_READY};
use crate::{ApiError, BoxError};

pin_project! {
    /// The response future of [`CircuitBreaker`](super::CircuitBreaker):
    /// a rejection, or the inner call, whose outcome it records.
    ///
    /// `F` is the inner future, `S` the inner service and `R` the request
    /// (held only while waiting for an inner service that was not ready).
    ///
    /// ```
    /// use tower::{Layer, Service};
    /// use tower_http_resilience::circuit_breaker::{future::ResponseFuture, CircuitBreakerLayer};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// let upstream = tower::service_fn(|_req: http::Request<String>| async {
    ///     Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
    /// });
    /// let layer = CircuitBreakerLayer::new();
    /// layer.handle().force_open("", std::time::Duration::from_secs(5));
    /// let mut breaker = layer.layer(upstream);
    /// // Ready at once, even while open: the future fails fast.
    /// std::future::poll_fn(|cx| breaker.poll_ready(cx)).await.unwrap();
    /// let future: ResponseFuture<_, _, _, _> = breaker.call(http::Request::new(String::new()));
    /// assert_eq!(future.await.unwrap_err().code(), "circuit_open");
    /// # }
    /// ```
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
        Probing { ask: ProbeAsk, deferred: Option<Box<Deferred<S, R>>> },
        Waiting { deferred: Box<Deferred<S, R>> },
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

    pub(crate) fn probing(
        ask: ProbeAsk,
        service: S,
        request: R,
        guard: Option<Guard>,
        classifier: C,
    ) -> Self {
        ResponseFuture {
            state: State::Probing {
                ask,
                deferred: Some(Deferred::boxed(service, Some(request))),
            },
            guard,
            classifier: Some(classifier),
        }
    }

    pub(crate) fn waiting(service: S, request: R, guard: Option<Guard>, classifier: C) -> Self {
        ResponseFuture {
            state: State::Waiting {
                deferred: Deferred::boxed(service, Some(request)),
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
            State::Probing { .. } => "asking the fleet for its probe",
            State::Waiting { .. } => "waiting for the inner service",
            State::Called { .. } => "called",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .field("guard", &self.guard)
            .finish()
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
                    return Poll::Ready(Err(error.take().expect(POLLED_AFTER_READY)));
                }
                StateProj::Probing { ask, deferred } => {
                    let next = match ready!(Pin::new(ask).poll(cx)) {
                        Ok(()) => State::Waiting {
                            deferred: deferred.take().expect(POLLED_AFTER_READY),
                        },
                        Err(wait) => {
                            // Another replica probes: the slot goes back.
                            if let Some(guard) = this.guard.take() {
                                guard.record(Verdict::Ignore);
                            }
                            let error = Some(ApiError::circuit_open(wait));
                            State::Rejected { error }
                        }
                    };
                    this.state.set(next);
                    continue;
                }
                StateProj::Waiting { deferred } => match ready!(deferred.poll_call(cx)) {
                    Ok(future) => {
                        this.state.set(State::Called { future });
                        continue;
                    }
                    Err(e) => Err(e),
                },
                StateProj::Called { future } => ready!(future.poll(cx)),
            };
            let classifier = this.classifier.take().expect(POLLED_AFTER_READY);
            let mut guard = this.guard.take();
            if let Some(g) = guard.as_mut() {
                g.headers_arrived();
            }
            return Poll::Ready(match result {
                Ok(response) => Ok(on_response(response, guard, classifier)),
                Err(e) => Err(on_error(e.into(), guard, &classifier)),
            });
        }
    }
}

/// Judges the response headers: a failure is recorded at once; a success is
/// recorded when the body ends, unless it already has.
fn on_response<B: Body, C: Classify>(
    response: Response<B>,
    guard: Option<Guard>,
    classifier: C,
) -> Response<CircuitBreakerBody<B, C>> {
    let guard = guard.and_then(|guard| {
        let verdict = classifier.classify(Observation::Response {
            status: response.status(),
            headers: response.headers(),
        });
        if verdict == Verdict::Success && !response.body().is_end_stream() {
            return Some(guard);
        }
        guard.record(verdict);
        None
    });
    response.map(|body| CircuitBreakerBody::new(body, guard, classifier))
}

/// Judges an error of the inner service, as an [`ApiError`].
fn on_error<C: Classify>(error: BoxError, guard: Option<Guard>, classifier: &C) -> ApiError {
    let error = ApiError::from_error(error);
    if let Some(guard) = guard {
        guard.record(classifier.classify(Observation::Error(&error)));
    }
    error
}
