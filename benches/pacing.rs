//! What pacing adds to a call whose key is not held, against the bare
//! upstream, on a single-thread tokio runtime with an upstream that answers
//! at once (the response dropped unread).
//!
//! Variants: the default key (authority, credential, model) with a short and
//! a 171-byte credential; a key by host; a rate that never has to wait;
//! and a response carrying OpenAI's rate-limit headers with requests left.
//!
//! `cargo bench --bench pacing` prints criterion's report, then one Markdown
//! table: the median time per call and the difference from the bare
//! upstream.

use std::convert::Infallible;
use std::future::{ready, Ready};
use std::hint::black_box;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::Criterion;
use http::{header, Request, Response};
use http_body_util::Full;
use tokio::runtime::Runtime;
use tower::{Layer, Service, ServiceExt};
use tower_http_resilience::key::{BreakerKey, ByAuthority};
use tower_http_resilience::pacing::{PacingConfig, PacingLayer};

const SAMPLE_SIZE: usize = 30;

/// An upstream that answers 200 at once, with or without OpenAI's
/// rate-limit headers (requests left).
#[derive(Clone, Copy)]
struct Upstream {
    rate_headers: bool,
}

impl<B> Service<Request<B>> for Upstream {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _req: Request<B>) -> Self::Future {
        let mut res = Response::builder().header(header::CONTENT_TYPE, "application/json");
        if self.rate_headers {
            res = res
                .header("x-ratelimit-limit-requests", "500")
                .header("x-ratelimit-remaining-requests", "499")
                .header("x-ratelimit-reset-requests", "120ms")
                .header("x-ratelimit-limit-tokens", "30000")
                .header("x-ratelimit-remaining-tokens", "29950")
                .header("x-ratelimit-reset-tokens", "100ms");
        }
        ready(Ok(res.body(Full::new(Bytes::from_static(b"{}"))).unwrap()))
    }
}

/// A chat request as an API client sends it; `long` uses a credential of
/// an OpenAI project key's length, with the model in the extensions.
fn request(long: bool) -> Request<Full<Bytes>> {
    let credential = if long {
        format!("Bearer sk-proj-{}", "Ab3dE5gH".repeat(20))
    } else {
        String::from("Bearer sk-bench-0000000000000000")
    };
    let mut req = Request::post("http://api.example.test/v1/chat/completions")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, credential)
        .body(Full::new(Bytes::from_static(
            b"{\"model\":\"gpt-4o-mini\"}",
        )))
        .unwrap();
    if long {
        req.extensions_mut().insert(BreakerKey::new("gpt-4o-mini"));
    }
    req
}

fn run<S, B>(
    c: &mut Criterion,
    rt: &Runtime,
    rows: &mut Vec<(&'static str, f64)>,
    name: &'static str,
    long: bool,
    mut svc: S,
) where
    S: Service<Request<Full<Bytes>>, Response = Response<B>> + 'static,
    S::Error: std::fmt::Debug,
{
    // Requests are built outside the timed loop: only the service is timed.
    let mut per_sample = Vec::new();
    c.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let reqs: Vec<_> = (0..iters).map(|_| request(long)).collect();
            let elapsed = rt.block_on(async {
                let start = Instant::now();
                for req in reqs {
                    let svc = svc.ready().await.unwrap();
                    black_box(svc.call(req).await.unwrap());
                }
                start.elapsed()
            });
            per_sample.push(elapsed.as_nanos() as f64 / iters as f64);
            elapsed
        });
    });
    let mut samples = per_sample.split_off(per_sample.len().saturating_sub(SAMPLE_SIZE));
    if samples.is_empty() {
        return;
    }
    samples.sort_by(f64::total_cmp);
    rows.push((name, samples[samples.len() / 2]));
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut c = Criterion::default()
        .sample_size(SAMPLE_SIZE)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .configure_from_args();
    let mut rows = Vec::new();
    let plain = Upstream {
        rate_headers: false,
    };
    let headers = Upstream { rate_headers: true };
    // Enter the runtime: the layers read tokio's clock when they are made.
    let _guard = rt.enter();

    run(&mut c, &rt, &mut rows, "bare", false, plain);
    run(
        &mut c,
        &rt,
        &mut rows,
        "pacing, default key",
        false,
        PacingLayer::new().layer(plain),
    );
    run(
        &mut c,
        &rt,
        &mut rows,
        "bare (long credential, model)",
        true,
        plain,
    );
    run(
        &mut c,
        &rt,
        &mut rows,
        "pacing, default key (long credential, model)",
        true,
        PacingLayer::new().layer(plain),
    );
    run(
        &mut c,
        &rt,
        &mut rows,
        "pacing, key by host",
        false,
        PacingLayer::new().key(ByAuthority).layer(plain),
    );
    run(
        &mut c,
        &rt,
        &mut rows,
        "pacing, default key, rpm 10^9",
        false,
        PacingLayer::with_config(PacingConfig::new().rpm(1_000_000_000)).layer(plain),
    );
    run(
        &mut c,
        &rt,
        &mut rows,
        "bare (rate-limit headers)",
        false,
        headers,
    );
    run(
        &mut c,
        &rt,
        &mut rows,
        "pacing, default key (rate-limit headers)",
        false,
        PacingLayer::new().layer(headers),
    );
    c.final_summary();

    println!();
    println!("median ns per call (difference from the bare upstream above it)");
    println!();
    println!("| variant | ns | + ns |");
    println!("|---|---:|---:|");
    let mut bare = 0.0;
    for (name, ns) in rows {
        if name.starts_with("bare") {
            bare = ns;
            println!("| {name} | {ns:.0} | |");
        } else {
            println!("| {name} | {ns:.0} | {:+.0} |", ns - bare);
        }
    }
}
