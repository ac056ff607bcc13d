//! A scripted upstream for the stack's inner service: answers from a list
//! of planned outcomes, then from a rule, and counts the attempts it got.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Frame;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use tower::Service;
use tower_http_resilience::stack::StackBody;
use tower_http_resilience::BoxError;

/// One planned answer of the upstream.
#[derive(Clone, Debug)]
pub enum Plan {
    Ok,
    /// An error status, with a small body.
    Status(u16),
    /// An error status with these headers and this body.
    Respond(u16, Vec<(&'static str, &'static str)>, &'static str),
    /// Never answers.
    Hang,
    /// 200 and an event, then the connection breaks.
    StreamThenReset,
}

pub type Body = BoxBody<Bytes, BoxError>;

/// An upstream that answers from a script, then from `otherwise`, and
/// counts the attempts it received.
#[derive(Clone)]
pub struct Upstream {
    script: Arc<Mutex<VecDeque<Plan>>>,
    otherwise: Arc<dyn Fn() -> Plan + Send + Sync>,
    calls: Arc<AtomicUsize>,
}

impl Upstream {
    pub fn new(plans: impl IntoIterator<Item = Plan>, otherwise: Plan) -> Self {
        Upstream::with(plans, move || otherwise.clone())
    }

    pub fn with(
        plans: impl IntoIterator<Item = Plan>,
        otherwise: impl Fn() -> Plan + Send + Sync + 'static,
    ) -> Self {
        Upstream {
            script: Arc::new(Mutex::new(plans.into_iter().collect())),
            otherwise: Arc::new(otherwise),
            calls: Arc::default(),
        }
    }

    /// Each attempt fails with 503 with probability `p`, independently
    /// (a seeded generator: the runs are reproducible).
    pub fn failing(p: f64, seed: u64) -> Self {
        let rng = Mutex::new(fastrand::Rng::with_seed(seed));
        Upstream::with([], move || {
            if rng.lock().unwrap().f64() < p {
                Plan::Status(503)
            } else {
                Plan::Ok
            }
        })
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Service<Request<StackBody<Full<Bytes>>>> for Upstream {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _req: Request<StackBody<Full<Bytes>>>) -> Self::Future {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let next = self.script.lock().unwrap().pop_front();
        let plan = next.unwrap_or_else(|| (self.otherwise)());
        Box::pin(async move {
            let body = match plan {
                Plan::Ok => full("{}"),
                Plan::Status(status) => {
                    let body = r#"{"error":{"message":"down","type":"x","code":"y"}}"#;
                    return Ok(respond(status, &[], body));
                }
                Plan::Respond(status, headers, body) => return Ok(respond(status, &headers, body)),
                Plan::Hang => std::future::pending().await,
                Plan::StreamThenReset => {
                    let frames: Vec<Result<Frame<Bytes>, BoxError>> = vec![
                        Ok(Frame::data(Bytes::from("data: {}\n\n"))),
                        Err("connection reset".into()),
                    ];
                    let mut res =
                        Response::new(StreamBody::new(futures_util::stream::iter(frames)).boxed());
                    res.headers_mut()
                        .insert("content-type", "text/event-stream".parse().unwrap());
                    return Ok(res);
                }
            };
            Ok(Response::new(body))
        })
    }
}

pub fn full(s: &'static str) -> Body {
    Full::new(Bytes::from(s)).map_err(|e| match e {}).boxed()
}

fn respond(
    status: u16,
    headers: &[(&'static str, &'static str)],
    body: &'static str,
) -> Response<Body> {
    let mut res = Response::new(full(body));
    *res.status_mut() = http::StatusCode::from_u16(status).unwrap();
    for (name, value) in headers {
        res.headers_mut().insert(*name, value.parse().unwrap());
    }
    res
}
