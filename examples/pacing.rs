//! Pacing against an upstream that takes 3 calls per second per key.
//!
//! An in-process upstream (no network) answers every success with
//! `x-ratelimit-remaining-requests` and `x-ratelimit-reset-requests`, and a
//! 429 with `retry-after-ms` beyond its limit. Twelve calls go out at once
//! through retry → pacing, then again without pacing; each line shows when
//! a call reached the upstream and how it ended, and the last line how many
//! 429s the upstream sent.
//!
//! ```text
//! cargo run --example pacing --features pacing,retry
//! ```

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};
use tower_http_resilience::pacing::PacingLayer;
use tower_http_resilience::retry::RetryLayer;

const LIMIT: u32 = 3;
const WINDOW: Duration = Duration::from_secs(1);

/// Takes `LIMIT` calls per `WINDOW`, answers 429 beyond.
#[derive(Clone)]
struct Upstream {
    start: Instant,
    window: Arc<Mutex<(u64, u32)>>,
    refused: Arc<AtomicU32>,
}

impl<B> Service<Request<B>> for Upstream {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _req: Request<B>) -> Self::Future {
        let elapsed = self.start.elapsed();
        let index = (elapsed.as_nanos() / WINDOW.as_nanos()) as u64;
        let reset = WINDOW * (index as u32 + 1) - elapsed;
        let mut window = self.window.lock().unwrap();
        if window.0 != index {
            *window = (index, 0);
        }
        window.1 += 1;
        let res = if window.1 <= LIMIT {
            Response::builder()
                .header("x-ratelimit-remaining-requests", LIMIT - window.1)
                .header(
                    "x-ratelimit-reset-requests",
                    format!("{}ms", reset.as_millis() + 1),
                )
                .body(Full::new(Bytes::from_static(b"{}")))
        } else {
            self.refused.fetch_add(1, Ordering::Relaxed);
            Response::builder()
                .status(429)
                .header("retry-after-ms", (reset.as_millis() + 1).to_string())
                .body(Full::new(Bytes::from_static(
                    br#"{"error":{"message":"Rate limit reached","code":"rate_limit_exceeded"}}"#,
                )))
        };
        let res = res.unwrap();
        println!("  {:>5} ms  sent", elapsed.as_millis());
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            Ok(res)
        })
    }
}

fn upstream() -> Upstream {
    Upstream {
        start: Instant::now(),
        window: Arc::default(),
        refused: Arc::default(),
    }
}

async fn twelve_calls<S, B>(client: S)
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: std::fmt::Display + Send,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: std::fmt::Debug,
{
    let calls: Vec<_> = (0..12)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move {
                let req = Request::post("https://api.example.com/v1/chat/completions")
                    .header("authorization", "Bearer sk-example")
                    .body(Full::new(Bytes::from_static(b"{}")))
                    .unwrap();
                match client.oneshot(req).await {
                    Ok(res) => {
                        let status = res.status();
                        res.into_body().collect().await.unwrap();
                        status.to_string()
                    }
                    Err(e) => e.to_string(),
                }
            })
        })
        .collect();
    for call in calls {
        let _ = call.await.unwrap();
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let retry = RetryLayer::new().max_retries(10);

    println!("with pacing:");
    let up = upstream();
    let pacing = PacingLayer::new();
    let handle = pacing.handle();
    handle.on_event(|e| println!("  pacing: {:?} {} ({:?})", e.action(), e.key(), e.wait()));
    twelve_calls(retry.clone().layer(pacing.layer(up.clone()))).await;
    let with = up.refused.load(Ordering::Relaxed);

    println!("without pacing:");
    let up = upstream();
    twelve_calls(retry.layer(up.clone())).await;
    let without = up.refused.load(Ordering::Relaxed);

    println!("429s the upstream sent: {with} with pacing, {without} without");
}
