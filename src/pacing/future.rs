//! The response future of [`Pacing`](super::Pacing).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use http::Response;
use pin_project_lite::pin_project;
use tokio::time::{sleep_until, Sleep};
use tower_service::Service;

use super::body::{PacingBody, Watch};
use super::fleet::Lease;
use super::learn::{lesson, lesson_of_error, Lesson};
use super::rate::{wait_until, Gcra};
use super::slot::{Admission, Slot};
use super::state::{HoldCause, PacingAction, PacingRefusal};
use crate::error::fmt_duration;
use crate::util::{saturating_nanos, Deferred, POLLED_AFTER_READY};
use crate::{ApiError, BoxError, ErrorKind};

pin_project! {
    /// The response future of [`Pacing`](super::Pacing): a refusal, a call
    /// waiting for its key, or the inner call, whose response it reads for
    /// what it says about the next calls.
    ///
    /// `F` is the inner future, `S` the inner service and `R` the request
    /// (held while the call waits for its key or for the inner service).
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower::{Layer, Service, ServiceExt};
    /// use tower_http_resilience::key::ByAuthority;
    /// use tower_http_resilience::pacing::{future::ResponseFuture, PacingLayer, RefuseIfHeld};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// let upstream = tower::service_fn(|_req: http::Request<String>| async {
    ///     Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
    /// });
    /// let layer = PacingLayer::new().key(ByAuthority);
    /// let mut paced = layer.layer(upstream);
    /// let req = || http::Request::get("http://up.example/").body(String::new()).unwrap();
    /// paced.ready().await.unwrap().call(req()).await.unwrap();
    ///
    /// // Another replica learnt that up.example refuses calls for 5 s.
    /// let until = tokio::time::Instant::now() + Duration::from_secs(5);
    /// assert!(layer.handle().hold("up.example", until));
    /// let mut held = req();
    /// held.extensions_mut().insert(RefuseIfHeld);
    /// let future: ResponseFuture<_, _, _> = paced.ready().await.unwrap().call(held);
    /// let err = future.await.unwrap_err();
    /// assert_eq!((err.status().as_u16(), err.code()), (429, "rate_limit_exceeded"));
    /// assert_eq!(err.retry_after(), Some(Duration::from_secs(5)));
    /// # }
    /// ```
    pub struct ResponseFuture<F, S, R> {
        #[pin]
        state: State<F, S, R>,
        slot: Option<Arc<Slot>>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, S, R> {
        Refused { error: Option<ApiError> },
        // The rare states are boxed: inline, they would make every call's
        // future larger.
        Held {
            sleep: Pin<Box<Sleep>>,
            deferred: Option<Box<Deferred<S, R>>>,
            rate: Option<Gcra>,
            latest: u64,
            cause: HoldCause,
        },
        Asking {
            lease: Box<Lease>,
            deferred: Option<Box<Deferred<S, R>>>,
            rate: Option<Gcra>,
            latest: u64,
        },
        Waiting { deferred: Box<Deferred<S, R>> },
        Called { #[pin] future: F },
    }
}

impl<F, S, R> ResponseFuture<F, S, R> {
    pub(crate) fn refused(error: ApiError) -> Self {
        ResponseFuture {
            state: State::Refused { error: Some(error) },
            slot: None,
        }
    }

    pub(crate) fn held(
        service: S,
        request: R,
        slot: Arc<Slot>,
        rate: Option<Gcra>,
        latest: u64,
        at: u64,
        cause: HoldCause,
    ) -> Self {
        ResponseFuture {
            state: State::Held {
                sleep: Box::pin(sleep_until(slot.core().instant(at))),
                deferred: Some(Deferred::boxed(service, Some(request))),
                rate,
                latest,
                cause,
            },
            slot: Some(slot),
        }
    }

    pub(crate) fn asking(
        service: S,
        request: R,
        slot: Arc<Slot>,
        rate: Option<Gcra>,
        latest: u64,
        lease: Lease,
    ) -> Self {
        ResponseFuture {
            state: State::Asking {
                lease: Box::new(lease),
                deferred: Some(Deferred::boxed(service, Some(request))),
                rate,
                latest,
            },
            slot: Some(slot),
        }
    }

    pub(crate) fn waiting(service: S, request: R, slot: Option<Arc<Slot>>) -> Self {
        ResponseFuture {
            state: State::Waiting {
                deferred: Deferred::boxed(service, Some(request)),
            },
            slot,
        }
    }

    pub(crate) fn called(future: F, slot: Option<Arc<Slot>>) -> Self {
        ResponseFuture {
            state: State::Called { future },
            slot,
        }
    }
}

impl<F, S, R> fmt::Debug for ResponseFuture<F, S, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Refused { .. } => "refused",
            State::Held { .. } => "held back",
            State::Asking { .. } => "asking the fleet for the rate",
            State::Waiting { .. } => "waiting for the inner service",
            State::Called { .. } => "called",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

impl<F, S, R, B, E> Future for ResponseFuture<F, S, R>
where
    F: Future<Output = Result<Response<B>, E>>,
    S: Service<R, Response = Response<B>, Error = E, Future = F>,
    E: Into<BoxError>,
{
    type Output = Result<Response<PacingBody<B>>, ApiError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let result = match this.state.as_mut().project() {
                StateProj::Refused { error } => {
                    return Poll::Ready(Err(error.take().expect(POLLED_AFTER_READY)));
                }
                StateProj::Held {
                    sleep,
                    deferred,
                    rate,
                    latest,
                    cause,
                } => {
                    ready!(sleep.as_mut().poll(cx));
                    let slot = this.slot.as_ref().expect("a held call has a slot");
                    let now = slot.core().now_nanos();
                    match readmit(slot, *rate, *latest, *cause, now) {
                        Admission::Wait { at, cause: next } => {
                            slot.tell(PacingAction::Waited, next, at, now);
                            sleep.as_mut().reset(slot.core().instant(at));
                            *cause = next;
                        }
                        other => {
                            let deferred = deferred.take().expect(POLLED_AFTER_READY);
                            let (rate, latest) = (*rate, *latest);
                            let next = next_state(other, slot, deferred, rate, latest, now);
                            this.state.set(next);
                        }
                    }
                    continue;
                }
                StateProj::Asking {
                    lease,
                    deferred,
                    rate,
                    latest,
                } => {
                    let turn = ready!(Pin::new(&mut **lease).poll(cx));
                    let slot = this.slot.as_ref().expect("an asking call has a slot");
                    let now = slot.core().now_nanos();
                    let deferred = deferred.take().expect(POLLED_AFTER_READY);
                    let (rate, latest) = (*rate, *latest);
                    let gcra = rate.expect("a call asks the fleet for a rate");
                    let next = slot.take_turn(turn, gcra, now, latest);
                    let next = next_state(next, slot, deferred, rate, latest, now);
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
            let slot = this.slot.take();
            return Poll::Ready(match result {
                Ok(response) => Ok(on_response(response, slot)),
                Err(e) => Err(on_error(e.into(), slot)),
            });
        }
    }
}

/// Asks again for a call that waited. A call that waited for the key's own
/// rate has its slot: it goes, unless a hold came up meanwhile; one that
/// waited for the fleet's rate asks for a cell again.
fn readmit(slot: &Slot, rate: Option<Gcra>, latest: u64, cause: HoldCause, now: u64) -> Admission {
    if cause == HoldCause::Rate && slot.held_until() <= now && !slot.asks_again() {
        return Admission::Go;
    }
    slot.admit(rate, now, latest)
}

/// The state a call goes on in, as `admission` says.
fn next_state<F, S, R>(
    admission: Admission,
    slot: &Slot,
    deferred: Box<Deferred<S, R>>,
    rate: Option<Gcra>,
    latest: u64,
    now: u64,
) -> State<F, S, R> {
    match admission {
        Admission::Go => State::Waiting { deferred },
        Admission::Wait { at, cause } => {
            slot.tell(PacingAction::Waited, cause, at, now);
            State::Held {
                sleep: Box::pin(sleep_until(slot.core().instant(at))),
                deferred: Some(deferred),
                rate,
                latest,
                cause,
            }
        }
        Admission::Refuse { at, cause } => State::Refused {
            error: Some(refusal(slot, cause, at, now)),
        },
        Admission::Ask(lease) => State::Asking {
            lease: Box::new(lease),
            deferred: Some(deferred),
            rate,
            latest,
        },
    }
}

/// The answer to a call refused at `now`: 429 `rate_limit_exceeded` with
/// `retry-after` = the time left, marked as not sent.
pub(crate) fn refusal(slot: &Slot, cause: HoldCause, at: u64, now: u64) -> ApiError {
    slot.tell(PacingAction::Refused, cause, at, now);
    let wait = wait_until(at, now);
    let message = match cause {
        HoldCause::Upstream => format!(
            "the upstream refuses calls for this key for another {}; not sent",
            fmt_duration(wait)
        ),
        HoldCause::Rate => format!(
            "the configured rate for this key allows the next call in {}; not sent",
            fmt_duration(wait)
        ),
    };
    let mut error = ApiError::new(ErrorKind::RateLimited)
        .with_message(message)
        .with_retry_after(wait);
    error.extensions_mut().insert(PacingRefusal { wait, cause });
    error
}

/// Reads what the response says about the next calls: a hold now, or, for
/// a 429, once its body has shown it is not about a quota.
fn on_response<B>(response: Response<B>, slot: Option<Arc<Slot>>) -> Response<PacingBody<B>> {
    let watch = slot.and_then(|slot| {
        let lesson = lesson(response.status(), response.headers());
        learn(slot, lesson)
    });
    response.map(|body| PacingBody::new(body, watch))
}

fn on_error(error: BoxError, slot: Option<Arc<Slot>>) -> ApiError {
    let error = ApiError::from_error(error);
    if let Some(slot) = slot {
        learn(slot, lesson_of_error(&error));
    }
    error
}

/// Applies a lesson; a hold that waits for the body comes back as a watch.
fn learn(slot: Arc<Slot>, lesson: Lesson) -> Option<Watch> {
    let (hold, watch) = match lesson {
        Lesson::Nothing => return None,
        Lesson::Hold(d) => (d, false),
        Lesson::HoldUnlessQuota(d) => (d, true),
    };
    let now = slot.core().now_nanos();
    let until = now.saturating_add(saturating_nanos(hold));
    if watch {
        return Some(Watch::new(slot, until));
    }
    slot.hold(until, now);
    None
}
