//! Fallback across two providers, through the standard stack.
//!
//! An in-process pair of upstreams (no network): `primary` serves the model
//! as asked, `backup` serves it under another name with its own key. Each
//! call tells `primary` how to fail (a scenario header); each line shows
//! which target answered, after how many attempts and how long, and what
//! the caller got.
//!
//! ```text
//! cargo run --example fallback
//! ```

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};
use tower_http_resilience::fallback::{Served, Target, Targets};
use tower_http_resilience::retry::{Attempts, Backoff, Jitter};
use tower_http_resilience::stack::StackBody;
use tower_http_resilience::{ApiError, ResilienceConfig};

/// Two providers behind one service, told apart by host.
#[derive(Clone, Default)]
struct Providers {
    primary_calls: Arc<AtomicU32>,
}

impl Service<Request<StackBody<Full<Bytes>>>> for Providers {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<StackBody<Full<Bytes>>>) -> Self::Future {
        let primary = req.uri().host() == Some("primary.example");
        if primary {
            self.primary_calls.fetch_add(1, Ordering::Relaxed);
        }
        let scenario = req.headers()["x-scenario"].to_str().unwrap().to_owned();
        let key = match req.headers()["authorization"].to_str().unwrap() {
            "Bearer sk-backup-key" => "backup's",
            _ => "the caller's",
        };
        Box::pin(async move {
            let body = req.into_body().collect().await.unwrap().to_bytes();
            tokio::time::sleep(Duration::from_millis(30)).await;
            let res = match (primary, scenario.as_str()) {
                (true, "503") | (_, "down") => json(
                    503,
                    r#"{"error":{"message":"overloaded","type":"server_error"}}"#,
                ),
                (true, "404") => json(
                    404,
                    r#"{"error":{"message":"no such model","code":"model_not_found"}}"#,
                ),
                (true, "error event") => sse(
                    "data: {\"error\":{\"message\":\"overloaded\",\"type\":\"server_error\"}}\n\n",
                ),
                (false, "error event") => sse(
                    "data: {\"choices\":[{\"delta\":{\"content\":\"Hello\"}}]}\n\ndata: [DONE]\n\n",
                ),
                (provider, _) => {
                    let who = if provider { "primary" } else { "backup" };
                    let body = String::from_utf8_lossy(&body);
                    json(
                        200,
                        &format!(r#"{{"from":"{who}","key":"{key}","request":{body}}}"#),
                    )
                }
            };
            Ok(res)
        })
    }
}

fn json(status: u16, body: &str) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap()
}

fn sse(body: &'static str) -> Response<Full<Bytes>> {
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap()
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let targets: Targets = [
        Target::new("primary:gpt-4o")
            .base_uri("https://primary.example".parse().unwrap())
            .key("primary:gpt-4o"),
        Target::new("backup:gpt-4o-mini")
            .base_uri("http://backup.example/v1".parse().unwrap())
            .bearer("sk-backup-key")
            .unwrap()
            .model("gpt-4o-mini")
            .key("backup:gpt-4o-mini")
            .retries(0),
    ]
    .into();
    let layer = ResilienceConfig::default()
        .max_retries(2)
        .build()
        .unwrap()
        .map_retry(|r| {
            r.backoff(Backoff::constant(Duration::from_millis(200)))
                .jitter(Jitter::none())
        })
        .targets(targets);
    let providers = Providers::default();
    let client = layer.layer(providers.clone());

    for scenario in ["ok", "503", "404", "error event", "down"] {
        let before = providers.primary_calls.load(Ordering::Relaxed);
        let req = Request::post("http://gateway.local/v1/chat/completions")
            .header("content-type", "application/json")
            .header("authorization", "Bearer sk-caller")
            .header("x-scenario", scenario)
            .header("accept", "text/event-stream")
            .body(Full::new(Bytes::from_static(
                br#"{"model":"gpt-4o","messages":[{"role":"user","content":"Hi"}]}"#,
            )))
            .unwrap();
        let start = Instant::now();
        let outcome = client.clone().oneshot(req).await;
        let took = start.elapsed().as_millis();
        let primary = providers.primary_calls.load(Ordering::Relaxed) - before;
        println!("primary {scenario:<12} ({primary} call(s) to primary, {took} ms)");
        match outcome {
            Ok(res) => {
                let served = Served::of(res.extensions()).unwrap().target().to_owned();
                let attempts = Attempts::of(res.extensions()).get();
                let body = res.into_body().collect().await.unwrap().to_bytes();
                let body = String::from_utf8_lossy(&body);
                println!(
                    "  {served}, {attempts} attempt(s): {}",
                    body.replace('\n', "\\n")
                );
            }
            Err(err) => print_error(&err),
        }
    }
}

fn print_error(err: &ApiError) {
    let served = Served::of(err.extensions()).unwrap().target();
    let attempts = Attempts::of(err.extensions()).get();
    println!(
        "  failed on {served} after {attempts} attempt(s): {} {} (retry it: {})",
        err.status().as_u16(),
        err.code(),
        err.is_retryable()
    );
}
