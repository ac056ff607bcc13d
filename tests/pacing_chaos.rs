//! Chaos for pacing, on tokio's paused clock: an upstream that enforces its
//! own limit per key (a fixed window of 5 calls per 10 s per credential)
//! and answers 429 with `retry-after-ms` = the time left in the window;
//! 4 keys, 8 callers per key, 10 calls per caller, each call through a
//! retry layer that honours hints. The 429s the upstream sends are counted
//! with pacing off, with pacing learning from the 429s, with the upstream
//! also sending `x-ratelimit-remaining-requests`/`-reset-requests` on its
//! successes, and with the rate configured as well.
//!
//! `cargo test --all-features --test pacing_chaos -- --nocapture` prints
//! the table.

#![cfg(all(feature = "pacing", feature = "retry"))]

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use http_body_util::{BodyExt, Full};
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};
use tower_http_resilience::pacing::{PacingConfig, PacingLayer};
use tower_http_resilience::retry::{RetryBudget, RetryLayer};
use tower_http_resilience::BoxError;

const LIMIT: u32 = 5;
const WINDOW: Duration = Duration::from_secs(10);
/// Latencies, 20 to 120 ms, taken in turn.
const LATENCY_MS: [u64; 8] = [20, 95, 45, 120, 70, 30, 105, 55];
const KEYS: usize = 4;
const CALLERS: usize = 8;
const CALLS: usize = 10;

/// What the upstream saw.
#[derive(Debug, Default)]
struct Ledger {
    /// Calls per (key, window index).
    counts: HashMap<(String, u64), u32>,
    ok: u64,
    refused: u64,
}

/// The upstream: `LIMIT` calls per key per fixed `WINDOW`, a 429 with the
/// time left in the window beyond that.
#[derive(Clone)]
struct Limited {
    start: Instant,
    ledger: Arc<Mutex<Ledger>>,
    /// Whether successes say how many calls are left and when they reset.
    remaining_headers: bool,
}

impl<B: Send + 'static> Service<Request<B>> for Limited {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let key = req.headers()["authorization"].to_str().unwrap().to_owned();
        let elapsed = self.start.elapsed();
        let window = (elapsed.as_nanos() / WINDOW.as_nanos()) as u64;
        let left = WINDOW * (window as u32 + 1) - elapsed;
        let mut ledger = self.ledger.lock().unwrap();
        let calls = ledger.ok + ledger.refused;
        let count = ledger.counts.entry((key, window)).or_default();
        *count += 1;
        let latency = Duration::from_millis(LATENCY_MS[calls as usize % LATENCY_MS.len()]);
        let mut res = Response::builder();
        let body: &'static str = if *count <= LIMIT {
            if self.remaining_headers {
                res = res
                    .header(
                        "x-ratelimit-remaining-requests",
                        (LIMIT - *count).to_string(),
                    )
                    .header(
                        "x-ratelimit-reset-requests",
                        format!("{}ms", left.as_millis() + 1),
                    );
            }
            ledger.ok += 1;
            "{}"
        } else {
            ledger.refused += 1;
            res = res
                .status(429)
                .header("retry-after-ms", (left.as_millis() + 1).to_string());
            r#"{"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded"}}"#
        };
        let res = res
            .body(Full::new(Bytes::from_static(body.as_bytes())))
            .unwrap();
        Box::pin(async move {
            tokio::time::sleep(latency).await;
            Ok(res)
        })
    }
}

/// The figures of one run.
#[derive(Debug)]
struct Run {
    refused: u64,
    ok: u64,
    /// The most 429s one key got in one window.
    worst_window: u32,
    windows: u64,
    elapsed: Duration,
    failed_calls: usize,
}

async fn run<S, B>(client: S, upstream: Limited) -> Run
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Into<BoxError> + Send,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let start = Instant::now();
    let mut tasks = Vec::new();
    for key in 0..KEYS {
        for _ in 0..CALLERS {
            let client = client.clone();
            tasks.push(tokio::spawn(async move {
                let mut failed = 0;
                for _ in 0..CALLS {
                    let req = Request::post("https://api.example.com/v1/chat/completions")
                        .header("authorization", format!("Bearer sk-{key}"))
                        .body(Full::new(Bytes::from_static(b"{}")))
                        .unwrap();
                    match client.clone().oneshot(req).await {
                        Ok(res) => {
                            let ok = res.status() == 200;
                            res.into_body().collect().await.map_err(Into::into).unwrap();
                            failed += usize::from(!ok);
                        }
                        Err(_) => failed += 1,
                    }
                }
                failed
            }));
        }
    }
    let mut failed_calls = 0;
    for t in tasks {
        failed_calls += t.await.unwrap();
    }
    let elapsed = start.elapsed();
    let ledger = upstream.ledger.lock().unwrap();
    let worst_window = ledger
        .counts
        .values()
        .map(|&n| n.saturating_sub(LIMIT))
        .max()
        .unwrap_or(0);
    Run {
        refused: ledger.refused,
        ok: ledger.ok,
        worst_window,
        windows: ledger.counts.len() as u64,
        elapsed,
        failed_calls,
    }
}

fn retry() -> RetryLayer {
    RetryLayer::new()
        .max_retries(20)
        .max_retry_after(Duration::from_secs(60))
        .budget(RetryBudget::unlimited())
}

fn upstream(remaining_headers: bool) -> Limited {
    Limited {
        start: Instant::now(),
        ledger: Arc::default(),
        remaining_headers,
    }
}

async fn off(remaining_headers: bool) -> Run {
    let up = upstream(remaining_headers);
    run(retry().layer(up.clone()), up).await
}

async fn on(remaining_headers: bool, config: PacingConfig) -> Run {
    let up = upstream(remaining_headers);
    let paced = PacingLayer::with_config(config).layer(up.clone());
    run(retry().layer(paced), up).await
}

#[tokio::test(start_paused = true)]
async fn pacing_cuts_the_429s_an_upstream_sends() {
    let rpm = LIMIT * 60 / WINDOW.as_secs() as u32;
    let runs = [
        ("off", off(false).await),
        ("off, upstream sends remaining/reset", off(true).await),
        ("on, learnt from 429s", on(false, PacingConfig::new()).await),
        (
            "on, upstream sends remaining/reset",
            on(true, PacingConfig::new()).await,
        ),
        (
            "on, release window 1 s",
            on(
                false,
                PacingConfig::new().release_window(Duration::from_secs(1)),
            )
            .await,
        ),
        (
            "on, rpm = 30 (the upstream's limit)",
            on(false, PacingConfig::new().rpm(rpm)).await,
        ),
    ];
    println!();
    println!(
        "| pacing | 429s sent | 429s per key per window (mean / worst) | successes | virtual time |"
    );
    println!("|---|---:|---:|---:|---:|");
    for (name, r) in &runs {
        println!(
            "| {name} | {} | {:.1} / {} | {} | {:.0} s |",
            r.refused,
            r.refused as f64 / r.windows as f64,
            r.worst_window,
            r.ok,
            r.elapsed.as_secs_f64()
        );
    }
    let total = (KEYS * CALLERS * CALLS) as u64;
    for (name, r) in &runs {
        assert_eq!(r.failed_calls, 0, "{name}: every call succeeds in the end");
        assert_eq!(r.ok, total, "{name}: every call is answered once");
    }
    let [off, off_headers, learnt, headers, spread, rated] = &runs.map(|(_, r)| r);
    // Pacing learns from the first 429 of a window and holds the key; the
    // calls already in flight then, and the burst at the start of each
    // window, still collect theirs.
    assert!(
        learnt.refused * 3 <= off.refused * 2,
        "{learnt:?} vs {off:?}"
    );
    assert!(headers.refused * 2 <= off_headers.refused, "{headers:?}");
    assert!(spread.refused <= learnt.refused, "{spread:?}");
    // A configured rate that matches the upstream's sends no 429 at all.
    assert_eq!(rated.refused, 0, "{rated:?}");
}
