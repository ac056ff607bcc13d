//! The gateway example end to end: its own code (`examples/gateway/`) runs
//! in-process on 127.0.0.1 in front of a scripted axum upstream (its own
//! thread and runtime), called by a hyper client.
//!
//! The test runtime's clock is paused and held (`support::hold_clock`): it
//! moves only by `tokio::time::advance`, so stalls are exact and nothing
//! sleeps for real. Retries use a zero backoff so that they need no time.

mod support;

include!("support/gateway_modules.rs");

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use axum::Router;
use bytes::Bytes;
use futures_util::StreamExt;
use http::{Request, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, Full, StreamBody};
use tokio::time::advance;
use tower_http_resilience::ResilienceConfig;

/// What the upstream does with one request for a model.
#[derive(Clone)]
enum Plan {
    Respond(u16, Vec<(String, String)>, Bytes),
    /// Server-Sent Events; with `stall`, silence after the last one.
    Sse(Vec<&'static str>, bool),
    /// A 500 whose 20 MB body is produced 64 KiB at a time.
    Huge,
    /// Never answers.
    Hang,
}

#[derive(Default)]
struct Upstream {
    plans: Mutex<HashMap<String, VecDeque<Plan>>>,
    calls: Mutex<HashMap<String, u32>>,
    /// 64 KiB chunks of `Plan::Huge` bodies produced.
    produced: Arc<AtomicUsize>,
    /// `Plan::Hang` handlers dropped (their caller went away).
    cancelled: Arc<AtomicUsize>,
    cancel_tx: Mutex<Option<tokio::sync::mpsc::UnboundedSender<()>>>,
}

impl Upstream {
    fn plan(&self, model: &str, plans: impl IntoIterator<Item = Plan>) {
        self.plans
            .lock()
            .unwrap()
            .entry(model.to_owned())
            .or_default()
            .extend(plans);
    }

    fn calls(&self, model: &str) -> u32 {
        self.calls.lock().unwrap().get(model).copied().unwrap_or(0)
    }
}

struct DropGuard(
    Arc<AtomicUsize>,
    Option<tokio::sync::mpsc::UnboundedSender<()>>,
);

impl Drop for DropGuard {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
        if let Some(tx) = &self.1 {
            let _ = tx.send(());
        }
    }
}

async fn upstream_handler(State(up): State<Arc<Upstream>>, body: Bytes) -> Response {
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let model = v["model"].as_str().unwrap_or("-").to_owned();
    let n = {
        let mut calls = up.calls.lock().unwrap();
        let n = calls.entry(model.clone()).or_default();
        *n += 1;
        *n
    };
    let plan = up
        .plans
        .lock()
        .unwrap()
        .get_mut(&model)
        .and_then(VecDeque::pop_front);
    match plan {
        None => {
            let body = format!(r#"{{"id":"ok-{model}-{n}","object":"chat.completion"}}"#);
            Response::builder()
                .header("content-type", "application/json")
                .body(Body::from(body))
                .unwrap()
        }
        Some(Plan::Respond(status, headers, body)) => {
            let mut b = Response::builder().status(status);
            for (k, v) in headers {
                b = b.header(k, v);
            }
            b.body(Body::from(body)).unwrap()
        }
        Some(Plan::Sse(events, stall)) => {
            let events = futures_util::stream::iter(events)
                .map(|e| Ok::<_, Infallible>(Frame::data(Bytes::from_static(e.as_bytes()))));
            let body = if stall {
                Body::new(StreamBody::new(
                    events.chain(futures_util::stream::pending()),
                ))
            } else {
                Body::new(StreamBody::new(events))
            };
            Response::builder()
                .header("content-type", "text/event-stream")
                .body(body)
                .unwrap()
        }
        Some(Plan::Huge) => {
            let produced = up.produced.clone();
            let chunks = futures_util::stream::iter(0..320).map(move |_| {
                produced.fetch_add(1, Ordering::SeqCst);
                Ok::<_, Infallible>(Frame::data(Bytes::from(vec![b'e'; 64 * 1024])))
            });
            Response::builder()
                .status(500)
                .header("content-type", "text/plain")
                .body(Body::new(StreamBody::new(chunks)))
                .unwrap()
        }
        Some(Plan::Hang) => {
            let _guard = DropGuard(up.cancelled.clone(), up.cancel_tx.lock().unwrap().clone());
            futures_util::future::pending::<()>().await;
            unreachable!()
        }
    }
}

fn spawn_upstream() -> (SocketAddr, Arc<Upstream>) {
    let up = Arc::new(Upstream::default());
    let state = up.clone();
    let addr =
        support::spawn_server(move || Router::new().fallback(upstream_handler).with_state(state));
    (addr, up)
}

/// The gateway's defaults, with retries that wait no time.
fn config() -> ResilienceConfig {
    ResilienceConfig::default()
}

/// Starts the gateway (on the test's runtime) in front of `upstream`.
async fn gateway(config: ResilienceConfig, upstream: SocketAddr) -> SocketAddr {
    let mut options = gateway_harness::Options::new(format!("http://{upstream}"));
    options.config = config;
    gateway_harness::start(options).await.addr
}

fn chat(gw: SocketAddr, model: &str, stream: bool) -> Request<Full<Bytes>> {
    let body = format!(
        r#"{{"model":"{model}","messages":[{{"role":"user","content":"hi"}}],"stream":{stream}}}"#
    );
    Request::post(format!("http://{gw}/v1/chat/completions"))
        .header("content-type", "application/json")
        .header("authorization", "Bearer sk-test-key-0000000000")
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

mod gateway {
    mod bodies;
    mod calls;
    mod flags;
}
