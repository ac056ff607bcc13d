//! Per-frame cost of the body clocks: a 1000-event Server-Sent-Events
//! response drained through each stack, every frame ready at once (the
//! clocks are only looked at when a frame has to be waited for, so this is
//! the cost of passing frames through the body wrappers).
//!
//! ```text
//! cargo bench --bench frames
//! ```
//!
//! Prints ns per frame: the time to drain the body, less the bare drain,
//! divided by the number of frames. The normalization is measured twice:
//! called without a credential (the stream passes unread) and with a bearer
//! credential (every event is read, error events masked).

use std::convert::Infallible;
use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use criterion::Criterion;
use http::{Request, Response};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full, StreamBody};
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_http_resilience::{NormalizeLayer, ResilienceLayer, TimeoutLayer};

const FRAMES: usize = 1000;
const EVENT: &[u8] = b"data: {\"choices\":[{\"delta\":{\"content\":\"token\"}}]}\n\n";

type Events = StreamBody<
    futures_util::stream::Iter<
        std::iter::Map<std::ops::Range<usize>, fn(usize) -> Result<Frame<Bytes>, Infallible>>,
    >,
>;

fn event(_: usize) -> Result<Frame<Bytes>, Infallible> {
    Ok(Frame::data(Bytes::from_static(EVENT)))
}

/// An upstream that answers every request with the event stream.
fn upstream<B>(
) -> impl Service<Request<B>, Response = Response<Events>, Error = Infallible, Future: Send> + Clone
{
    tower::service_fn(|_req: Request<B>| async {
        let frames: fn(usize) -> Result<Frame<Bytes>, Infallible> = event;
        let body = StreamBody::new(futures_util::stream::iter((0..FRAMES).map(frames)));
        Ok::<_, Infallible>(
            Response::builder()
                .header("content-type", "text/event-stream")
                .body(body)
                .unwrap(),
        )
    })
}

/// A streaming request, with a bearer credential when `bearer`: then the
/// normalization reads the stream event by event for error events to mask.
fn request(bearer: bool) -> Request<Full<Bytes>> {
    let mut req = Request::post("http://api.example.test/v1/chat/completions")
        .header("accept", "text/event-stream");
    if bearer {
        req = req.header(
            "authorization",
            "Bearer sk-proj-Q1w2E3r4T5y6U7i8O9p0A1s2D3f4",
        );
    }
    req.body(Full::new(Bytes::from_static(
        b"{\"model\":\"m\",\"stream\":true}",
    )))
    .unwrap()
}

/// Calls once and drains the body frame by frame; returns the frame count.
async fn drain<S, ResB>(svc: S, bearer: bool) -> usize
where
    S: Service<Request<Full<Bytes>>, Response = Response<ResB>>,
    S::Error: std::fmt::Debug,
    ResB: Body,
    ResB::Error: std::fmt::Debug,
{
    let res = svc.oneshot(request(bearer)).await.unwrap();
    let mut body = std::pin::pin!(res.into_body());
    let mut n = 0;
    while let Some(frame) = body.frame().await {
        black_box(frame.unwrap());
        n += 1;
    }
    n
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut c = Criterion::default().configure_from_args();
    let mut g = c.benchmark_group("frames");
    g.sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));

    let mut medians: Vec<(&str, f64)> = Vec::new();
    let mut run = |name: &'static str,
                   g: &mut criterion::BenchmarkGroup<'_, _>,
                   f: &mut dyn FnMut() -> usize| {
        assert_eq!(f(), FRAMES, "{name}: every frame arrives");
        let mut times = Vec::new();
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let start = std::time::Instant::now();
                for _ in 0..iters {
                    black_box(f());
                }
                let elapsed = start.elapsed();
                times.push(elapsed.as_nanos() as f64 / iters as f64);
                elapsed
            })
        });
        times.sort_by(|a, b| a.partial_cmp(b).unwrap());
        medians.push((name, times[times.len() / 2]));
    };

    run("bare", &mut g, &mut || {
        rt.block_on(drain(upstream(), false))
    });
    run("tower-http ResponseBodyTimeoutLayer", &mut g, &mut || {
        let svc = ServiceBuilder::new()
            .layer(tower_http::timeout::ResponseBodyTimeoutLayer::new(
                Duration::from_secs(60),
            ))
            .service(upstream());
        rt.block_on(drain(svc, false))
    });
    run("ours: TimeoutLayer (streaming clocks)", &mut g, &mut || {
        let svc = ServiceBuilder::new()
            .layer(TimeoutLayer::new())
            .service(upstream());
        rt.block_on(drain(svc, false))
    });
    run("ours: preset ResilienceLayer::new()", &mut g, &mut || {
        let svc = ServiceBuilder::new()
            .layer(ResilienceLayer::new())
            .service(upstream());
        rt.block_on(drain(svc, false))
    });
    for (name, bearer) in [
        ("ours: NormalizeLayer", false),
        ("ours: NormalizeLayer, bearer credential", true),
    ] {
        run(name, &mut g, &mut || {
            let svc = ServiceBuilder::new()
                .layer(NormalizeLayer::new())
                .service(upstream());
            rt.block_on(drain(svc, bearer))
        });
    }
    g.finish();

    let bare = medians[0].1;
    println!("\nns per frame over the bare drain ({FRAMES} ready frames, median of samples)\n");
    println!("| stack | ns per call | ns per frame over bare |");
    println!("|---|---:|---:|");
    for (name, ns) in &medians {
        println!("| {name} | {ns:.0} | {:+.1} |", (ns - bare) / FRAMES as f64);
    }
}
