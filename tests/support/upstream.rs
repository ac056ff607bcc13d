//! The scripted upstream: a `tower::Service` that answers each call from a
//! list of planned outcomes and records every request it received.
//!
//! ```ignore
//! // Two failures, then 200 for every later call.
//! let up = Upstream::new().first([Plan::status(503), Plan::reset()]);
//! let svc = layer.layer(up.clone());
//! // … call svc …
//! assert_eq!(up.calls(), 3);
//! assert_eq!(up.last().body, "{}");
//! ```
//!
//! Planned calls answer first, in order ([`Upstream::first`],
//! [`Upstream::push`]); a call with no plan left answers by the upstream's
//! rule: 200 with an empty body ([`Upstream::new`]), one plan every time
//! ([`Upstream::always`]; [`Upstream::script`] repeats the last of a list), or a plan chosen from the request, body included
//! ([`Upstream::answering`]).
//!
//! A [`Plan`] is a response (status, headers, and a body that is whole,
//! chunked over time, fed by the test or made by a closure, ending cleanly,
//! stalling or failing), an error of the service (a reset), a call that never
//! answers, or a plan the test sends later. Before answering, the upstream
//! reads the request body (all of it, or as much as the plan says) and waits
//! as long as the plan says. Served over HTTP ([`serve`](super::serve)), an
//! error of the service closes the connection.
//!
//! Time is tokio's: on a paused clock, every wait is exact.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use http::{Extensions, HeaderMap, Method, Request, Response, Uri};
use http_body::{Body, SizeHint};
use http_body_util::BodyExt;
use tokio::sync::Notify;
use tokio::time::Instant;
use tower_http_resilience::BoxError;

use super::plan::{answer, Plan, UpBody};

/// What the upstream received in one call.
#[derive(Clone, Debug)]
pub struct Received {
    /// When the call arrived, from the upstream's creation.
    pub at: Duration,
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
    pub extensions: Extensions,
    /// The request body's size hint when the call arrived.
    pub size_hint: SizeHint,
    /// The request body as far as it was read.
    pub body: Bytes,
    pub trailers: Option<HeaderMap>,
}

impl Received {
    /// A request header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("a text header"))
    }

    /// The request body as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_default()
    }
}

type Rule = Box<dyn Fn(&Received) -> Plan + Send + Sync>;

struct Shared {
    start: Instant,
    planned: Mutex<VecDeque<Plan>>,
    otherwise: Rule,
    received: Mutex<Vec<Received>>,
    cancelled: AtomicUsize,
    cancel: Notify,
}

/// The scripted upstream (see the module docs). Clones share the script and
/// the record.
#[derive(Clone)]
pub struct Upstream(Arc<Shared>);

impl Default for Upstream {
    fn default() -> Self {
        Upstream::new()
    }
}

impl Upstream {
    /// An upstream whose calls with no plan get 200 with an empty body.
    pub fn new() -> Self {
        Upstream::answering(|_| Plan::status(200))
    }

    /// An upstream whose calls with no plan get `plan`.
    pub fn always(plan: Plan) -> Self {
        Upstream::answering(move |_| plan.clone())
    }

    /// An upstream that answers from `plans` in order, the last one
    /// answering every call after it.
    pub fn script(plans: impl IntoIterator<Item = Plan>) -> Self {
        let mut plans: Vec<Plan> = plans.into_iter().collect();
        let last = plans.pop().expect("a script of at least one plan");
        Upstream::always(last).first(plans)
    }

    /// An upstream whose calls with no plan get the plan `rule` chooses for
    /// the request (its whole body read).
    pub fn answering(rule: impl Fn(&Received) -> Plan + Send + Sync + 'static) -> Self {
        Upstream(Arc::new(Shared {
            start: Instant::now(),
            planned: Mutex::default(),
            otherwise: Box::new(rule),
            received: Mutex::default(),
            cancelled: AtomicUsize::new(0),
            cancel: Notify::new(),
        }))
    }

    /// Plans the next calls, in order.
    pub fn first(self, plans: impl IntoIterator<Item = Plan>) -> Self {
        self.extend(plans);
        self
    }

    /// Plans one more call, after those already planned.
    pub fn push(&self, plan: Plan) {
        self.0.planned.lock().unwrap().push_back(plan);
    }

    /// Plans `n` more calls the same way.
    pub fn push_n(&self, n: usize, plan: Plan) {
        self.extend(std::iter::repeat_n(plan, n));
    }

    /// Plans more calls, in order, after those already planned.
    pub fn extend(&self, plans: impl IntoIterator<Item = Plan>) {
        self.0.planned.lock().unwrap().extend(plans);
    }

    /// Drops the plans no call has used yet.
    pub fn clear(&self) {
        self.0.planned.lock().unwrap().clear();
    }

    /// The number of calls so far.
    pub fn calls(&self) -> usize {
        self.0.received.lock().unwrap().len()
    }

    /// Every request received so far, in order.
    pub fn received(&self) -> Vec<Received> {
        self.0.received.lock().unwrap().clone()
    }

    /// The last request received.
    pub fn last(&self) -> Received {
        self.received().pop().expect("the upstream was called")
    }

    /// When each call arrived, from the upstream's creation.
    pub fn times(&self) -> Vec<Duration> {
        self.received().iter().map(|r| r.at).collect()
    }

    /// The request body of each call.
    pub fn bodies(&self) -> Vec<Bytes> {
        self.received().into_iter().map(|r| r.body).collect()
    }

    /// The number of calls dropped before they answered.
    pub fn cancelled(&self) -> usize {
        self.0.cancelled.load(Ordering::SeqCst)
    }

    /// Waits for a call to be dropped before it answered.
    pub async fn cancellation(&self) {
        self.0.cancel.notified().await;
    }

    /// The plan the rule chooses for call `index`.
    fn rule(&self, index: usize) -> Plan {
        let received = self.0.received.lock().unwrap()[index].clone();
        (self.0.otherwise)(&received)
    }
}

impl<B> tower::Service<Request<B>> for Upstream
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Response = Response<UpBody>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<UpBody>, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let (parts, body) = req.into_parts();
        let received = Received {
            size_hint: body.size_hint(),
            at: self.0.start.elapsed(),
            method: parts.method,
            uri: parts.uri,
            headers: parts.headers,
            extensions: parts.extensions,
            body: Bytes::new(),
            trailers: None,
        };
        let planned = self.0.planned.lock().unwrap().pop_front();
        let index = {
            let mut all = self.0.received.lock().unwrap();
            all.push(received);
            all.len() - 1
        };
        let mut call = Call {
            upstream: self.clone(),
            answered: false,
        };
        Box::pin(async move {
            let limit = planned.as_ref().map_or(usize::MAX, Plan::read_limit);
            call.read(index, body, limit).await?;
            let plan = planned.unwrap_or_else(|| call.upstream.rule(index));
            let res = answer(plan).await;
            call.answered();
            res
        })
    }
}

/// One call in flight: counts itself as cancelled if dropped unanswered.
struct Call {
    upstream: Upstream,
    answered: bool,
}

impl Call {
    fn answered(&mut self) {
        self.answered = true;
    }

    /// Reads up to `limit` bytes of the request body into the record; a
    /// body error fails the call.
    async fn read<B>(&mut self, index: usize, body: B, limit: usize) -> Result<(), BoxError>
    where
        B: Body,
        B::Error: Into<BoxError>,
    {
        let mut body = std::pin::pin!(body);
        let mut buf = Vec::new();
        let mut trailers = None;
        let mut result = Ok(());
        while buf.len() < limit {
            match body.frame().await {
                None => break,
                Some(Err(e)) => {
                    result = Err(e.into());
                    break;
                }
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(mut data) => buf.extend_from_slice(&data.copy_to_bytes(data.remaining())),
                    Err(frame) => trailers = frame.into_trailers().ok(),
                },
            }
        }
        {
            let mut all = self.upstream.0.received.lock().unwrap();
            all[index].body = buf.into();
            all[index].trailers = trailers;
        }
        if result.is_err() {
            self.answered();
        }
        result
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        if !self.answered {
            self.upstream.0.cancelled.fetch_add(1, Ordering::SeqCst);
            self.upstream.0.cancel.notify_one();
        }
    }
}
