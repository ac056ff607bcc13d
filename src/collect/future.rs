//! The response future of [`CollectBody`](super::CollectBody).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{request, HeaderMap, Request};
use http_body::Body;
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tower_service::Service;

use super::budget::{Budget, Hold, Waiting};
use super::error;
use super::CollectedBody;
use crate::util::arm;
use crate::{ApiError, BoxError};

/// What a call needs once its body is in.
pub(crate) struct Collecting<S> {
    pub(crate) service: S,
    pub(crate) parts: request::Parts,
    pub(crate) budget: Budget,
    pub(crate) limit: usize,
    /// The size the body announced, if it did.
    pub(crate) exact: Option<usize>,
    /// The time the body was given, for the message when it is late.
    pub(crate) allowed: Duration,
}

/// A call reading its body, with room held in the budget.
struct Reading<S> {
    collecting: Collecting<S>,
    hold: Hold,
    // The first chunk is kept as is, so a body of one chunk is not copied.
    first: Option<Bytes>,
    rest: BytesMut,
    len: usize,
    trailers: Option<HeaderMap>,
}

/// What reading did.
enum Step {
    /// The body waits for the client.
    Pending,
    /// The body has ended.
    Done,
    /// The call is answered with this.
    Failed(ApiError),
}

impl<S> Reading<S> {
    fn new(collecting: Collecting<S>, hold: Hold) -> Self {
        Reading {
            collecting,
            hold,
            first: None,
            rest: BytesMut::new(),
            len: 0,
            trailers: None,
        }
    }

    /// Reads every frame that is ready.
    fn read<B>(&mut self, mut body: Pin<&mut B>, cx: &mut Context<'_>) -> Step
    where
        B: Body,
        B::Data: Into<Bytes>,
        B::Error: Into<BoxError>,
    {
        loop {
            let frame = match body.as_mut().poll_frame(cx) {
                Poll::Pending => return Step::Pending,
                Poll::Ready(None) => return Step::Done,
                Poll::Ready(Some(Err(e))) => return Step::Failed(error::unreadable(e.into())),
                Poll::Ready(Some(Ok(frame))) => frame,
            };
            match frame.into_data() {
                Ok(data) => {
                    if let Err(e) = self.push(data.into()) {
                        return Step::Failed(e);
                    }
                }
                Err(frame) => {
                    if let Ok(trailers) = frame.into_trailers() {
                        self.trailers = Some(trailers);
                    }
                }
            }
            if body.is_end_stream() {
                return Step::Done;
            }
        }
    }

    fn push(&mut self, data: Bytes) -> Result<(), ApiError> {
        let len = self.len + data.len();
        if len > self.collecting.limit {
            return Err(error::too_large(self.collecting.limit));
        }
        if len > self.hold.bytes() {
            // The body is larger than it said: more room, now or never.
            let more = self
                .collecting
                .budget
                .try_hold(len - self.hold.bytes())
                .ok_or_else(error::overloaded)?;
            self.hold.merge(more);
        }
        self.len = len;
        if self.first.is_none() && self.rest.is_empty() {
            self.first = Some(data);
            return Ok(());
        }
        if let Some(first) = self.first.take() {
            // The second chunk: room for the whole body at once when its
            // size is known.
            self.rest
                .reserve(self.collecting.exact.unwrap_or(0).max(len));
            self.rest.extend_from_slice(&first);
        }
        self.rest.extend_from_slice(&data);
        Ok(())
    }

    /// The request with its whole body, and the service to call with it.
    fn into_call(self) -> (S, Request<CollectedBody>) {
        let data = match self.first {
            Some(first) => first,
            None => self.rest.freeze(),
        };
        let body = CollectedBody::new(self.hold.attach(data), self.trailers);
        let Collecting { service, parts, .. } = self.collecting;
        (service, Request::from_parts(parts, body))
    }
}

pin_project! {
    /// The response future of [`CollectBody`](super::CollectBody).
    ///
    /// Waits for room in the budget, reads the body, then calls the inner
    /// service and resolves to its response. Fails with an [`ApiError`]:
    /// 413 for a body over the limit, 408 for one not complete by the
    /// deadline, 503 `overloaded` when no room was free by then, 400 for a
    /// body that broke off; or the inner service's error. The timer is made
    /// only when the call first has to wait.
    pub struct ResponseFuture<F, S, B> {
        #[pin]
        body: B,
        #[pin]
        state: State<F, S>,
        #[pin]
        sleep: Option<Sleep>,
        deadline: Instant,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, S> {
        // Not structurally pinned: each moves out when its step is done.
        Waiting { waiting: Option<(Waiting, Collecting<S>)> },
        Reading { reading: Option<Reading<S>> },
        Calling { #[pin] future: F },
        Failed { error: Option<ApiError> },
    }
}

impl<F, S, B> ResponseFuture<F, S, B> {
    pub(crate) fn calling(body: B, future: F) -> Self {
        Self::with(body, State::Calling { future }, Instant::now())
    }

    pub(crate) fn failed(body: B, error: ApiError) -> Self {
        let error = Some(error);
        Self::with(body, State::Failed { error }, Instant::now())
    }

    pub(crate) fn reading(
        body: B,
        collecting: Collecting<S>,
        hold: Hold,
        deadline: Instant,
    ) -> Self {
        let reading = Some(Reading::new(collecting, hold));
        Self::with(body, State::Reading { reading }, deadline)
    }

    pub(crate) fn waiting(
        body: B,
        collecting: Collecting<S>,
        waiting: Waiting,
        deadline: Instant,
    ) -> Self {
        let waiting = Some((waiting, collecting));
        Self::with(body, State::Waiting { waiting }, deadline)
    }

    fn with(body: B, state: State<F, S>, deadline: Instant) -> Self {
        ResponseFuture {
            body,
            state,
            sleep: None,
            deadline,
        }
    }
}

impl<F, S, B> fmt::Debug for ResponseFuture<F, S, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Waiting { .. } => "waiting for room",
            State::Reading { reading } => match reading {
                Some(r) if r.len > 0 => "reading",
                _ => "waiting for the body",
            },
            State::Calling { .. } => "calling",
            State::Failed { .. } => "failed",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .field("deadline", &self.deadline)
            .finish()
    }
}

impl<F, S, B, T, E> Future for ResponseFuture<F, S, B>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
    S: Service<Request<CollectedBody>, Response = T, Error = E, Future = F>,
    B: Body,
    B::Data: Into<Bytes>,
    B::Error: Into<BoxError>,
{
    type Output = Result<T, ApiError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Calling { future } => {
                    return future.poll(cx).map_err(|e| ApiError::from_error(e.into()))
                }
                StateProj::Failed { error } => {
                    let error = error.take().expect("polled after completion");
                    return Poll::Ready(Err(error));
                }
                StateProj::Waiting { waiting } => {
                    let (wait, _) = waiting.as_mut().expect("waits once");
                    let Poll::Ready(hold) = wait.as_mut().poll(cx) else {
                        break;
                    };
                    let (_, collecting) = waiting.take().expect("checked above");
                    let reading = Some(Reading::new(collecting, hold));
                    this.state.set(State::Reading { reading });
                }
                StateProj::Reading { reading } => {
                    let r = reading.as_mut().expect("reads once");
                    match r.read(this.body.as_mut(), cx) {
                        Step::Pending => break,
                        Step::Failed(e) => this.state.set(State::Failed { error: Some(e) }),
                        Step::Done => {
                            let (mut service, req) =
                                reading.take().expect("checked above").into_call();
                            let future = service.call(req);
                            this.state.set(State::Calling { future });
                        }
                    }
                }
            }
        }

        // The call waits for room or for the client: the deadline runs.
        ready!(arm(this.sleep.as_mut(), *this.deadline).poll(cx));
        let error = match this.state.as_mut().project() {
            StateProj::Waiting { .. } => error::overloaded(),
            StateProj::Reading { reading } => error::too_slow(
                reading
                    .as_ref()
                    .map_or(Duration::ZERO, |r| r.collecting.allowed),
            ),
            _ => unreachable!("only a waiting or reading call runs the deadline"),
        };
        this.state.set(State::Failed { error: None });
        Poll::Ready(Err(error))
    }
}
