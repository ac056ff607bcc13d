//! Requests per second and latency percentiles through a real hyper server
//! and a hyper-util client on 127.0.0.1 (HTTP/1.1, keep-alive), bare client
//! vs the same client under the preset, bounded in time.
//!
//! The server answers a chat-completion POST with a small JSON body. For
//! each concurrency (1 and 8 tasks of sequential calls), bare, preset and
//! (for reference) the bare client under tower's `Timeout` take turns in
//! short slices, in a rotating order, so that a change of load on the
//! machine falls on all three alike: `LOOPBACK_SLICES` slices (16 by
//! default) of `LOOPBACK_SLICE_MS` milliseconds (250) each, 4 s per client
//! and concurrency, about 25 s in all.
//!
//! `cargo bench --bench loopback`

#[path = "support/mod.rs"]
mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, Request, Response};
use http_body::Body;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tower::{Service, ServiceExt};
use tower_http_resilience::stack::StackBody;

const ANSWER: &str = "{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion\",\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"A prince avenges his father.\"},\"finish_reason\":\"stop\"}]}";

async fn serve() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|req: Request<hyper::body::Incoming>| async {
                    let _ = req.into_body().collect().await;
                    let res = Response::builder()
                        .header(header::CONTENT_TYPE, "application/json")
                        .body(Full::new(Bytes::from_static(ANSWER.as_bytes())))
                        .unwrap();
                    Ok::<_, Infallible>(res)
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

fn request(addr: SocketAddr) -> Request<Full<Bytes>> {
    let mut req = support::chat_request();
    *req.uri_mut() = format!("http://{addr}/v1/chat/completions")
        .parse()
        .unwrap();
    req
}

/// Runs `concurrency` loops of sequential calls for `time`; returns every
/// call's latency in microseconds.
async fn drive<S, B>(svc: S, addr: SocketAddr, concurrency: usize, time: Duration) -> Vec<u32>
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: std::fmt::Debug + Send,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: std::fmt::Debug + Send,
{
    let end = Instant::now() + time;
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let mut svc = svc.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(1 << 16);
                while Instant::now() < end {
                    let start = Instant::now();
                    let ready = svc.ready().await.unwrap();
                    let res = ready.call(request(addr)).await.unwrap();
                    assert_eq!(res.status(), 200);
                    res.into_body().collect().await.unwrap();
                    latencies.push(start.elapsed().as_micros() as u32);
                }
                latencies
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    all
}

#[derive(Default)]
struct Stats {
    calls: usize,
    time: Duration,
    latencies: Vec<u32>,
}

impl Stats {
    fn add(&mut self, latencies: Vec<u32>, time: Duration) {
        self.calls += latencies.len();
        self.time += time;
        self.latencies.extend(latencies);
    }

    fn rps(&self) -> f64 {
        self.calls as f64 / self.time.as_secs_f64()
    }

    fn percentile(&mut self, p: f64) -> u32 {
        self.latencies.sort_unstable();
        let i = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        self.latencies[i]
    }
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    // `cargo test --benches` passes `--test`: nothing to measure then.
    if std::env::args().any(|a| a == "--test" || a == "--list") {
        return;
    }
    let slice_len = Duration::from_millis(env("LOOPBACK_SLICE_MS", 250));
    let slices = env("LOOPBACK_SLICES", 16) as usize;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let addr = serve().await;
        let bare = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let inner = Client::builder(TokioExecutor::new()).build_http::<StackBody<Full<Bytes>>>();
        let preset = support::preset_over(inner);
        // A reference: the bare client under tower's `Timeout` alone (one
        // timer per call, nothing else).
        let timed = tower::timeout::Timeout::new(bare.clone(), Duration::from_secs(60));

        println!("| concurrency | client | requests/s | p50 µs | p99 µs |");
        println!("|---:|---|---:|---:|---:|");
        for concurrency in [1, 8] {
            // Warm the connections up.
            drive(bare.clone(), addr, concurrency, Duration::from_millis(200)).await;
            drive(
                preset.clone(),
                addr,
                concurrency,
                Duration::from_millis(200),
            )
            .await;
            drive(timed.clone(), addr, concurrency, Duration::from_millis(200)).await;
            let (mut b, mut p, mut t) = (Stats::default(), Stats::default(), Stats::default());
            // Short slices in a rotating order, so that a change of load on
            // the machine falls on every client alike.
            for slice in 0..slices {
                for turn in 0..3 {
                    let start = Instant::now();
                    match (slice + turn) % 3 {
                        0 => {
                            let l = drive(bare.clone(), addr, concurrency, slice_len).await;
                            b.add(l, start.elapsed());
                        }
                        1 => {
                            let l = drive(preset.clone(), addr, concurrency, slice_len).await;
                            p.add(l, start.elapsed());
                        }
                        _ => {
                            let l = drive(timed.clone(), addr, concurrency, slice_len).await;
                            t.add(l, start.elapsed());
                        }
                    }
                }
            }
            let (bp50, bp99) = (b.percentile(0.5), b.percentile(0.99));
            println!(
                "| {concurrency} | bare | {:.0} | {bp50} | {bp99} |",
                b.rps()
            );
            for (name, s) in [("preset", &mut p), ("tower Timeout (reference)", &mut t)] {
                let (p50, p99) = (s.percentile(0.5), s.percentile(0.99));
                println!(
                    "| {concurrency} | {name} | {:.0} ({:.1}% of bare) | {p50} | {p99} ({:+.1}%) |",
                    s.rps(),
                    100.0 * s.rps() / b.rps(),
                    100.0 * (f64::from(p99) - f64::from(bp99)) / f64::from(bp99)
                );
            }
        }
    });
}
