//! What pacing adds to a call whose key is not held, against the bare
//! upstream, on a single-thread tokio runtime with an upstream that answers
//! at once (the response dropped unread).
//!
//! Variants: requests without a key (what the wrapper costs alone); the
//! default key (authority, credential, model) with a short and a 171-byte
//! credential; a key by host; a rate that never has to wait; and a response
//! carrying OpenAI's rate-limit headers with requests left.
//!
//! Each variant is timed against the bare upstream in paired rounds (the
//! bare upstream, then the variant, back to back), and the median of the
//! differences is reported: a shared machine's load changes between
//! rounds, rarely within one. Calls are polled once with a no-op waker (the
//! upstream answers at once), so only the services and their futures are
//! timed, not a runtime.
//!
//! `cargo bench --bench pacing` prints one Markdown table.

use std::convert::Infallible;
use std::future::{ready, Future, Ready};
use std::hint::black_box;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::{header, Request, Response};
use http_body_util::Full;
use tower::{Layer, Service};
use tower_http_resilience::key::{BreakerKey, ByAuthority};
use tower_http_resilience::pacing::{PacingConfig, PacingLayer};

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

/// Nanoseconds per call over `reqs`, each call polled once with a no-op
/// waker (the upstream answers at once), the response dropped.
fn time<S, B>(svc: &mut S, reqs: Vec<Request<Full<Bytes>>>) -> f64
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
{
    let mut cx = Context::from_waker(std::task::Waker::noop());
    let n = reqs.len() as f64;
    let start = Instant::now();
    for req in reqs {
        assert!(svc.poll_ready(&mut cx).is_ready());
        let mut call = std::pin::pin!(svc.call(req));
        match call.as_mut().poll(&mut cx) {
            Poll::Ready(res) => drop(black_box(res.unwrap())),
            Poll::Pending => panic!("the upstream answers at once"),
        }
    }
    start.elapsed().as_nanos() as f64 / n
}

/// The median, over `ROUNDS` rounds, of the difference between `svc` and
/// the bare upstream timed back to back in the same round: the machine's
/// load changes between rounds, rarely within one.
fn paired<S, B>(bare: Upstream, mut svc: S, long: bool) -> (f64, f64)
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
{
    let mut bare = bare;
    let mut base = Vec::with_capacity(ROUNDS);
    let mut diff = Vec::with_capacity(ROUNDS);
    // Warm up: the first call names the key.
    time(&mut svc, (0..1000).map(|_| request(long)).collect());
    for _ in 0..ROUNDS {
        let b = time(&mut bare, (0..BATCH).map(|_| request(long)).collect());
        let v = time(&mut svc, (0..BATCH).map(|_| request(long)).collect());
        base.push(b);
        diff.push(v - b);
    }
    base.sort_by(f64::total_cmp);
    diff.sort_by(f64::total_cmp);
    (base[ROUNDS / 2], diff[ROUNDS / 2])
}

const ROUNDS: usize = 301;
const BATCH: usize = 2_000;

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // The layers read tokio's clock when they are made and when a key is
    // held or rated.
    let _guard = rt.enter();
    let plain = Upstream {
        rate_headers: false,
    };
    let headers = Upstream { rate_headers: true };
    let none = tower_http_resilience::key::key_fn(|_: &http::request::Parts| None);
    let rows = [
        (
            "pacing, requests without a key (the wrapper alone)",
            paired(plain, PacingLayer::new().key(none).layer(plain), false),
        ),
        (
            "pacing, default key",
            paired(plain, PacingLayer::new().layer(plain), false),
        ),
        (
            "pacing, default key (171-byte credential, model)",
            paired(plain, PacingLayer::new().layer(plain), true),
        ),
        (
            "pacing, key by host",
            paired(
                plain,
                PacingLayer::new().key(ByAuthority).layer(plain),
                false,
            ),
        ),
        (
            "pacing, default key, rpm 10^9 (a rate that never waits)",
            paired(
                plain,
                PacingLayer::with_config(PacingConfig::new().rpm(1_000_000_000)).layer(plain),
                false,
            ),
        ),
        (
            "pacing, default key, response with rate-limit headers (requests left)",
            paired(headers, PacingLayer::new().layer(headers), false),
        ),
    ];
    println!("median ns per call, and what pacing adds (median of {ROUNDS} paired rounds of {BATCH} calls)");
    println!();
    println!("| variant | bare ns | + ns |");
    println!("|---|---:|---:|");
    for (name, (bare, added)) in rows {
        println!("| {name} | {bare:.0} | {added:+.1} |");
    }
}
