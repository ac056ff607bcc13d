//! The circuit breaker's hot path under contention: the same breaker (one
//! registry, global key) called from two threads at once (each runs a
//! current-thread tokio runtime, so both are sure to be calling), next to
//! the same calls on one thread.
//!
//! Per-call time is wall time over the calls of one thread (each thread
//! makes `iters` calls, concurrently). The bare upstream is measured the
//! same way, so the breaker's own cost is the difference.
//!
//! `cargo bench --bench contention`

#[path = "support/mod.rs"]
mod support;

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::Criterion;
use http::{Request, Response};
use http_body::Body;
use http_body_util::Full;
use support::{call, Mode, Upstream};
use tower::Service;

const SAMPLE_SIZE: usize = 30;

fn median(mut v: Vec<f64>) -> f64 {
    let keep = v.len().min(SAMPLE_SIZE);
    let mut v = v.split_off(v.len() - keep);
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn one_thread<S, B>(c: &mut Criterion, name: &str, mut svc: S) -> f64
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>>,
    B: Body,
{
    let rt = support::current_thread();
    let mut samples = Vec::new();
    c.bench_function(&format!("1 thread/{name}"), |b| {
        b.iter_custom(|iters| {
            let elapsed = rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(call(&mut svc, Mode::Body).await);
                }
                start.elapsed()
            });
            samples.push(elapsed.as_nanos() as f64 / iters as f64);
            elapsed
        });
    });
    median(samples)
}

fn two_threads<S, B>(c: &mut Criterion, name: &str, svc: S) -> f64
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>> + Clone + Send + 'static,
    B: Body,
{
    let mut samples = Vec::new();
    c.bench_function(&format!("2 threads/{name}"), |b| {
        b.iter_custom(|iters| {
            // Two OS threads, each driving its own clone of the service (the
            // same breaker registry) on a current-thread runtime, released
            // together; the time is the slower thread's.
            let barrier = std::sync::Barrier::new(2);
            let elapsed = std::thread::scope(|scope| {
                let threads: Vec<_> = (0..2)
                    .map(|_| {
                        let mut svc = svc.clone();
                        let barrier = &barrier;
                        scope.spawn(move || {
                            let rt = support::current_thread();
                            barrier.wait();
                            rt.block_on(async {
                                let start = Instant::now();
                                for _ in 0..iters {
                                    black_box(call(&mut svc, Mode::Body).await);
                                }
                                start.elapsed()
                            })
                        })
                    })
                    .collect();
                threads
                    .into_iter()
                    .map(|t| t.join().unwrap())
                    .max()
                    .unwrap()
            });
            samples.push(elapsed.as_nanos() as f64 / iters as f64);
            elapsed
        });
    });
    median(samples)
}

fn main() {
    let mut c = Criterion::default()
        .sample_size(SAMPLE_SIZE)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    let up = Upstream::ok(Mode::Body);
    let bare_1 = one_thread(&mut c, "bare", up);
    let breaker_1 = one_thread(&mut c, "breaker", support::breaker(up));
    let bare_2 = two_threads(&mut c, "bare", up);
    let breaker_2 = two_threads(&mut c, "breaker", support::breaker(up));
    c.final_summary();

    let (one, two) = (breaker_1 - bare_1, breaker_2 - bare_2);
    println!();
    println!("| runtime | bare ns/call | breaker ns/call | breaker's cost |");
    println!("|---|---:|---:|---:|");
    println!("| 1 thread | {bare_1:.0} | {breaker_1:.0} | {one:+.0} |");
    println!("| 2 threads, both calling | {bare_2:.0} | {breaker_2:.0} | {two:+.0} |");
    println!();
    println!(
        "breaker's cost on 2 threads / on 1 thread: {:.2} (target: at most 2)",
        two / one
    );
}
