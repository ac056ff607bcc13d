//! Cost of the request checks: a chat request of 206 bytes and larger ones
//! (4, 16 and 64 KiB of message text), each sent through `CheckLayer` to
//! an upstream that answers at once, less the same call without the layer.
//!
//! ```text
//! cargo bench --bench check
//! cargo bench --bench check --features tokenizer   # adds exact o200k_base counts
//! ```
//!
//! Prints the layer's cost per call and per KiB of body: the body is read
//! (one frame, not copied), parsed field by field, the prompt counted, and
//! the same bytes handed on.

use std::convert::Infallible;
use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::Criterion;
use http::{header, Request, Response};
use http_body_util::Full;
use tower::{Layer, Service};
use tower_http_resilience::check::CheckLayer;

/// A chat request of 206 bytes (the one the crate's other benches send).
const CHAT_206: &str = "{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"system\",\"content\":\"You are a terse assistant.\"},{\"role\":\"user\",\"content\":\"Summarize the plot of Hamlet in a short sentence.\"}],\"temperature\":0.2,\"max_tokens\":128}";

const PROSE: &str = "Rivers rarely run straight for long. Water that meets a small obstacle is pushed to one side, and the faster current on the outside of the bend cuts into the bank while the slower water on the inside drops the sand it was carrying. ";

/// A chat request whose user message is `kib` KiB of English prose.
fn chat_of(kib: usize) -> Bytes {
    let mut text = String::new();
    while text.len() < kib * 1024 {
        text.push_str(PROSE);
    }
    text.truncate(kib * 1024);
    Bytes::from(format!(
        "{{\"model\":\"gpt-4o-mini\",\"messages\":[{{\"role\":\"user\",\"content\":\"{text}\"}}],\"max_tokens\":128}}"
    ))
}

fn request(body: &Bytes) -> Request<Full<Bytes>> {
    Request::post("http://api.example.test/v1/chat/completions")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(body.clone()))
        .unwrap()
}

/// Calls a service whose futures are ready at once, without a runtime.
fn call_now<S, R>(svc: &mut S, req: R) -> S::Response
where
    S: Service<R>,
    S::Error: std::fmt::Debug,
{
    let mut cx = Context::from_waker(std::task::Waker::noop());
    let Poll::Ready(Ok(())) = svc.poll_ready(&mut cx) else {
        panic!("the service is ready")
    };
    match pin!(svc.call(req)).poll(&mut cx) {
        Poll::Ready(res) => res.unwrap(),
        Poll::Pending => panic!("the call completes at once"),
    }
}

fn upstream<B>() -> impl Service<
    Request<B>,
    Response = Response<()>,
    Error = Infallible,
    Future = std::future::Ready<Result<Response<()>, Infallible>>,
> + Clone {
    tower::service_fn(|_req: Request<B>| std::future::ready(Ok(Response::new(()))))
}

fn median_ns(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    f: &mut dyn FnMut(),
) -> Option<f64> {
    let mut times = Vec::new();
    g.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                f();
            }
            let elapsed = start.elapsed();
            times.push(elapsed.as_nanos() as f64 / iters as f64);
            elapsed
        })
    });
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    // Nothing was timed when a filter on the command line left it out.
    times.get(times.len() / 2).copied()
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let mut g = c.benchmark_group("check");
    g.sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));

    let bodies = [
        ("206 B", Bytes::from_static(CHAT_206.as_bytes())),
        ("4 KiB", chat_of(4)),
        ("16 KiB", chat_of(16)),
        ("64 KiB", chat_of(64)),
    ];
    let layers = |body_len: usize| {
        #[allow(unused_mut)]
        let mut layers = vec![
            ("CheckLayer", CheckLayer::new()),
            (
                "CheckLayer, estimated window",
                CheckLayer::new().context_window("gpt-4o-mini", 128_000),
            ),
        ];
        // A window between the estimate and the byte count, so that the
        // prompt is encoded (and fits).
        #[cfg(feature = "tokenizer")]
        layers.push((
            "CheckLayer, o200k_base window (encoded)",
            CheckLayer::new().context_window(
                "gpt-4o-mini",
                tower_http_resilience::check::ContextWindow::new(
                    body_len as u64 / 3 + 128,
                    tower_http_resilience::check::Tokenizer::O200kBase,
                ),
            ),
        ));
        let _ = body_len;
        layers
    };

    let mut rows = Vec::new();
    for (size, body) in &bodies {
        let mut bare = upstream::<Full<Bytes>>();
        let base = median_ns(&mut g, &format!("bare {size}"), &mut || {
            black_box(call_now(&mut bare, request(body)));
        });
        for (name, layer) in layers(body.len()) {
            let mut svc = layer.layer(upstream());
            let ns = median_ns(&mut g, &format!("{name} {size}"), &mut || {
                black_box(call_now(&mut svc, request(body)));
            });
            if let (Some(ns), Some(base)) = (ns, base) {
                rows.push((*size, name, body.len(), ns - base));
            }
        }
    }
    g.finish();

    println!("\nCost of the layer over the bare call (median of samples)\n");
    println!("| body | layer | bytes | ns per call | ns per KiB |");
    println!("|---|---|---:|---:|---:|");
    for (size, name, len, ns) in rows {
        println!(
            "| {size} | {name} | {len} | {ns:.0} | {:.0} |",
            ns / (len as f64 / 1024.0)
        );
    }
}
