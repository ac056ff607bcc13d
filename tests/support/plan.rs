//! [`Plan`]: one planned outcome of a call to the scripted upstream.
//!
//! A plan is a response (status, headers, and a body that is whole, chunked
//! over time, fed by the test or made by a closure, ending cleanly, stalling
//! or failing), an error of the service (a reset), a call that never
//! answers, or a plan the test sends later.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{self, BoxStream, StreamExt};
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use tokio::sync::{mpsc, oneshot};
use tower_http_resilience::BoxError;

/// The response body of the scripted upstream.
pub type UpBody = UnsyncBoxBody<Bytes, BoxError>;

type MakeError = Arc<dyn Fn() -> BoxError + Send + Sync>;
/// A value a plan hands out once (a plan is `Clone`; a channel is not).
type Once<T> = Arc<Mutex<Option<T>>>;

fn take<T>(once: &Once<T>, what: &str) -> T {
    once.lock()
        .unwrap()
        .take()
        .unwrap_or_else(|| panic!("{what} answers one call only"))
}

/// One planned outcome of a call.
#[derive(Clone)]
pub struct Plan {
    outcome: Outcome,
    /// How long to wait, after reading the request body, before answering.
    after: Duration,
    /// How many bytes of the request body to read before answering.
    read: usize,
}

#[derive(Clone)]
enum Outcome {
    Respond {
        status: StatusCode,
        headers: HeaderMap,
        body: BodyPlan,
    },
    Fail(MakeError),
    Hang,
    Deferred(Once<oneshot::Receiver<Plan>>),
}

#[derive(Clone)]
enum BodyPlan {
    Whole(Bytes),
    Steps(Vec<Step>, End),
    Once(Once<UpBody>),
    Made(Arc<dyn Fn() -> UpBody + Send + Sync>),
}

#[derive(Clone)]
enum Step {
    Data(Duration, Bytes),
    Trailers(HeaderMap),
}

#[derive(Clone)]
enum End {
    Finish,
    Stall,
    Fail(MakeError),
}

impl std::fmt::Debug for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let outcome = match &self.outcome {
            Outcome::Respond { status, .. } => format!("respond {status}"),
            Outcome::Fail(_) => "fail".to_owned(),
            Outcome::Hang => "hang".to_owned(),
            Outcome::Deferred(_) => "deferred".to_owned(),
        };
        f.debug_struct("Plan")
            .field("outcome", &outcome)
            .field("after", &self.after)
            .finish_non_exhaustive()
    }
}

impl Plan {
    fn respond(status: StatusCode) -> Self {
        Plan {
            outcome: Outcome::Respond {
                status,
                headers: HeaderMap::new(),
                body: BodyPlan::Whole(Bytes::new()),
            },
            after: Duration::ZERO,
            read: usize::MAX,
        }
    }

    fn outcome(outcome: Outcome) -> Self {
        Plan {
            outcome,
            ..Plan::respond(StatusCode::OK)
        }
    }

    /// A response with this status and an empty body.
    pub fn status(status: u16) -> Self {
        Plan::respond(StatusCode::from_u16(status).expect("a valid status"))
    }

    /// A JSON response: this status, `content-type: application/json`, this body.
    pub fn json(status: u16, body: impl Into<Bytes>) -> Self {
        Plan::status(status)
            .header("content-type", "application/json")
            .body(body)
    }

    /// A 200 event stream: `content-type: text/event-stream` and one chunk
    /// per event, all ready at once (add more with [`chunk`](Self::chunk)).
    pub fn sse(events: &[&str]) -> Self {
        events.iter().fold(
            Plan::status(200)
                .header("content-type", "text/event-stream")
                .streamed(),
            |plan, e| plan.chunk(Duration::ZERO, Bytes::copy_from_slice(e.as_bytes())),
        )
    }

    /// A gRPC trailers-only answer: 200, `content-type: application/grpc`
    /// and this `grpc-status` in the headers.
    pub fn grpc(code: &str) -> Self {
        Plan::status(200)
            .header("content-type", "application/grpc")
            .header("grpc-status", code)
    }

    /// The service fails with the error `make` returns.
    pub fn fail(make: impl Fn() -> BoxError + Send + Sync + 'static) -> Self {
        Plan::outcome(Outcome::Fail(Arc::new(make)))
    }

    /// The service fails with an `io::Error` of this kind.
    pub fn error(kind: io::ErrorKind) -> Self {
        Plan::fail(move || io::Error::new(kind, "upstream failed").into())
    }

    /// The connection is reset before any response.
    pub fn reset() -> Self {
        Plan::error(io::ErrorKind::ConnectionReset)
    }

    /// The call never answers (until it is dropped: see
    /// [`Upstream::cancelled`](super::Upstream::cancelled)).
    pub fn hang() -> Self {
        Plan::outcome(Outcome::Hang)
    }

    /// A plan the test sends later: the call waits for it (a dropped sender
    /// answers 500).
    pub fn deferred() -> (oneshot::Sender<Plan>, Self) {
        let (tx, rx) = oneshot::channel();
        let plan = Plan::outcome(Outcome::Deferred(Arc::new(Mutex::new(Some(rx)))));
        (tx, plan)
    }

    fn respond_mut(&mut self) -> (&mut HeaderMap, &mut BodyPlan) {
        match &mut self.outcome {
            Outcome::Respond { headers, body, .. } => (headers, body),
            _ => panic!("only a response has headers and a body"),
        }
    }

    /// Adds a response header.
    pub fn header(mut self, name: impl AsRef<str>, value: impl AsRef<str>) -> Self {
        let name = HeaderName::from_bytes(name.as_ref().as_bytes()).expect("a header name");
        let value = HeaderValue::from_str(value.as_ref()).expect("a header value");
        self.respond_mut().0.append(name, value);
        self
    }

    /// The whole response body, ready at once.
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        *self.respond_mut().1 = BodyPlan::Whole(body.into());
        self
    }

    /// Sends the body as a stream of chunks (one, or none for an empty
    /// body) that does not know its length or its end in advance.
    pub fn streamed(mut self) -> Self {
        self.steps();
        self
    }

    fn steps(&mut self) -> (&mut Vec<Step>, &mut End) {
        let body = self.respond_mut().1;
        if let BodyPlan::Whole(whole) = body {
            let first = std::mem::take(whole);
            let steps = if first.is_empty() {
                vec![]
            } else {
                vec![Step::Data(Duration::ZERO, first)]
            };
            *body = BodyPlan::Steps(steps, End::Finish);
        }
        match body {
            BodyPlan::Steps(steps, end) => (steps, end),
            _ => panic!("chunks go with a whole or chunked body only"),
        }
    }

    /// Adds a body chunk, sent this long after the previous one (or after
    /// the headers).
    pub fn chunk(mut self, after: Duration, data: impl Into<Bytes>) -> Self {
        self.steps().0.push(Step::Data(after, data.into()));
        self
    }

    /// Ends the body with these trailers.
    pub fn trailers(mut self, trailers: HeaderMap) -> Self {
        self.steps().0.push(Step::Trailers(trailers));
        self
    }

    /// After its chunks, the body falls silent forever.
    pub fn then_stall(mut self) -> Self {
        *self.steps().1 = End::Stall;
        self
    }

    /// After its chunks, the body fails with the error `make` returns.
    pub fn then_fail(mut self, make: impl Fn() -> BoxError + Send + Sync + 'static) -> Self {
        *self.steps().1 = End::Fail(Arc::new(make));
        self
    }

    /// After its chunks, the connection is reset.
    pub fn then_reset(self) -> Self {
        self.then_fail(|| io::Error::new(io::ErrorKind::ConnectionReset, "reset").into())
    }

    /// This body, for one call.
    pub fn body_once<B>(mut self, body: B) -> Self
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let body = body.map_err(Into::into).boxed_unsync();
        *self.respond_mut().1 = BodyPlan::Once(Arc::new(Mutex::new(Some(body))));
        self
    }

    /// A body of the frames the test sends on the channel (an error as a
    /// transport would report it), for one call.
    pub fn fed_by(self, frames: mpsc::Receiver<Result<Frame<Bytes>, io::Error>>) -> Self {
        let frames = stream::unfold(frames, |mut rx| async move {
            rx.recv().await.map(|frame| (frame, rx))
        });
        self.body_once(StreamBody::new(frames))
    }

    /// A body `make` builds anew for every call answered by this plan.
    pub fn body_with(mut self, make: impl Fn() -> UpBody + Send + Sync + 'static) -> Self {
        *self.respond_mut().1 = BodyPlan::Made(Arc::new(make));
        self
    }

    /// Waits this long (after reading the request body) before answering.
    pub fn after(mut self, delay: Duration) -> Self {
        self.after = delay;
        self
    }

    /// Reads only this many bytes of the request body before answering.
    pub fn reading(mut self, bytes: usize) -> Self {
        self.read = bytes;
        self
    }

    pub(super) fn read_limit(&self) -> usize {
        self.read
    }
}

impl BodyPlan {
    fn into_body(self) -> UpBody {
        match self {
            BodyPlan::Whole(bytes) => Full::new(bytes).map_err(|e| match e {}).boxed_unsync(),
            BodyPlan::Steps(steps, end) => chunked(steps, end),
            BodyPlan::Once(body) => take(&body, "a body given once"),
            BodyPlan::Made(make) => make(),
        }
    }
}

fn chunked(steps: Vec<Step>, end: End) -> UpBody {
    let frames = stream::iter(steps).then(|step| async move {
        match step {
            Step::Data(after, data) => {
                if !after.is_zero() {
                    tokio::time::sleep(after).await;
                }
                Ok(Frame::data(data))
            }
            Step::Trailers(trailers) => Ok(Frame::trailers(trailers)),
        }
    });
    let end: BoxStream<'static, Result<Frame<Bytes>, BoxError>> = match end {
        End::Finish => stream::empty().boxed(),
        End::Stall => stream::pending().boxed(),
        End::Fail(make) => stream::once(async move { Err(make()) }).boxed(),
    };
    StreamBody::new(frames.chain(end)).boxed_unsync()
}

pub(super) fn answer(
    plan: Plan,
) -> Pin<Box<dyn Future<Output = Result<Response<UpBody>, BoxError>> + Send>> {
    Box::pin(async move {
        if !plan.after.is_zero() {
            tokio::time::sleep(plan.after).await;
        }
        match plan.outcome {
            Outcome::Respond {
                status,
                headers,
                body,
            } => {
                let mut res = Response::new(body.into_body());
                *res.status_mut() = status;
                *res.headers_mut() = headers;
                Ok(res)
            }
            Outcome::Fail(make) => Err(make()),
            Outcome::Hang => std::future::pending().await,
            Outcome::Deferred(rx) => {
                let rx = take(&rx, "a deferred plan");
                answer(rx.await.unwrap_or_else(|_| Plan::status(500))).await
            }
        }
    })
}
