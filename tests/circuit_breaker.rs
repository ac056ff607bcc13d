//! Behaviour of the circuit breaker against scripted upstreams, on a paused
//! clock (except the multi-thread counting test, which never waits).

#![cfg(feature = "circuit-breaker")]

mod support;

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body::{Body as _, Frame};
use http_body_util::{BodyExt, Empty, Full};
use support::{Plan, Upstream};
use tokio::sync::mpsc;
use tokio::time::{advance, Instant};
use tower::{Layer, Service, ServiceExt};
use tower_http_resilience::circuit_breaker::{
    key_fn, BreakerKey, ByExtension, CircuitBreakerConfig, CircuitBreakerLayer, CircuitState,
    Classify, DefaultClassifier, ExtractKeyExt, GlobalKey, KeyDisplay, Observation, Transition,
    TransitionReason, Verdict,
};
use tower_http_resilience::{ApiError, ErrorKind};

/// The request every test sends: no body.
type Req = Request<Empty<Bytes>>;

fn request() -> Req {
    Request::new(Empty::new())
}

fn config() -> CircuitBreakerConfig {
    CircuitBreakerConfig::new()
        .window(Duration::from_secs(10), 10)
        .min_calls(10)
        .failure_ratio(0.5)
        .open_duration(Duration::from_secs(10), Duration::from_secs(60), 0.0)
}

/// Sends one request (with `model` as its breaker key when given) and
/// reads the whole response body; returns the status or the error.
async fn send<S, B>(svc: &mut S, model: Option<&'static str>) -> Result<u16, ApiError>
where
    S: Service<Req, Response = Response<B>, Error = ApiError>,
    B: http_body::Body,
{
    let mut req = request();
    if let Some(m) = model {
        req.extensions_mut().insert(BreakerKey::new(m));
    }
    let res = svc.ready().await?.call(req).await?;
    let status = res.status().as_u16();
    let _ = res.into_body().collect().await;
    Ok(status)
}

fn transitions(layer: &CircuitBreakerLayer<impl Sized, impl Sized>) -> Arc<Mutex<Vec<Transition>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    layer
        .handle()
        .on_transition(move |t| sink.lock().unwrap().push(t.clone()));
    seen
}

/// An inner service that is never ready after its first call.
#[derive(Clone)]
struct Stuck {
    polled: Arc<AtomicUsize>,
    called: Arc<AtomicUsize>,
    ready: Arc<AtomicBool>,
}

impl Service<Request<()>> for Stuck {
    type Response = Response<Empty<Bytes>>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Response<Empty<Bytes>>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.polled.fetch_add(1, Ordering::SeqCst);
        if self.ready.load(Ordering::SeqCst) {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    }

    fn call(&mut self, _: Request<()>) -> Self::Future {
        self.called.fetch_add(1, Ordering::SeqCst);
        std::future::ready(Ok(Response::new(Empty::new())))
    }
}

fn grpc_trailers(code: &'static str) -> Plan {
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", code.parse().unwrap());
    Plan::status(200)
        .chunk(Duration::ZERO, Bytes::from_static(b"\0\0\0\0\0"))
        .trailers(trailers)
}

mod circuit_breaker {
    mod opening;
    mod outcomes;
    mod state;
}
