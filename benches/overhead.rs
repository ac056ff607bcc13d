//! Time per request through each of our layers, the anchors (tower,
//! tower-http, tower-resilience) and the preset, on a single-thread tokio
//! runtime, with an upstream that answers at once.
//!
//! Three modes: the response dropped, its body read to the end, and an
//! upstream that is pending once before answering. The preset also with a
//! fallback route of two targets, the first healthy. Then the failure
//! paths: a 503 from the upstream, and an open breaker rejecting.
//!
//! `cargo bench --bench overhead` prints criterion's report for every
//! variant, then one Markdown table: the median time per request and the
//! difference from the bare upstream in the same mode.

#[path = "support/mod.rs"]
mod support;

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion};
use http::{Request, Response};
use http_body::Body;
use http_body_util::Full;
use support::{call, Mode, Upstream};
use tokio::runtime::Runtime;
use tower::Service;

const SAMPLE_SIZE: usize = 30;
const PRESET: &str = "ours: preset (ResilienceLayer::new())";
const TR_STACK: &str = "tower-resilience retry → breaker → time limiter";

/// One row of the final table.
struct Row {
    name: &'static str,
    /// Median ns per request, by mode (`None`: not measured in that mode).
    ns: [Option<f64>; 3],
}

struct Bench<'a> {
    rt: &'a Runtime,
    rows: Vec<Row>,
}

impl Bench<'_> {
    fn run<S, B>(
        &mut self,
        group: &mut BenchmarkGroup<'_, WallTime>,
        mode: Mode,
        name: &'static str,
        mut svc: S,
        succeeds: bool,
    ) where
        S: Service<Request<Full<Bytes>>, Response = Response<B>>,
        B: Body,
    {
        // The stack is what it claims to be: calls succeed, or fail as meant.
        for _ in 0..3 {
            assert_eq!(
                self.rt.block_on(call(&mut svc, mode)),
                succeeds,
                "{name} ({})",
                mode.name()
            );
        }
        let rt = self.rt;
        let mut per_sample = Vec::new();
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let elapsed = rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        black_box(call(&mut svc, mode).await);
                    }
                    start.elapsed()
                });
                per_sample.push(elapsed.as_nanos() as f64 / iters as f64);
                elapsed
            });
        });
        // Criterion warms up first, then takes one call per sample.
        let keep = per_sample.len().min(SAMPLE_SIZE);
        let mut samples = per_sample.split_off(per_sample.len() - keep);
        if samples.is_empty() {
            return; // filtered out
        }
        samples.sort_by(f64::total_cmp);
        let median = samples[samples.len() / 2];
        let column = Mode::ALL.iter().position(|m| *m == mode).unwrap();
        match self.rows.iter_mut().find(|r| r.name == name) {
            Some(row) => row.ns[column] = Some(median),
            None => {
                let mut ns = [None; 3];
                ns[column] = Some(median);
                self.rows.push(Row { name, ns });
            }
        }
    }

    fn print_table(&self) {
        let Some(bare) = self.rows.iter().find(|r| r.name == "bare") else {
            return;
        };
        println!();
        println!("median ns per request (difference from bare in the same mode)");
        println!();
        print!("| stack |");
        for mode in Mode::ALL {
            print!(" {} |", mode.name());
        }
        println!();
        println!("|---|---:|---:|---:|");
        for row in &self.rows {
            print!("| {} |", row.name);
            for (ns, base) in row.ns.iter().zip(bare.ns) {
                match (ns, base) {
                    (Some(ns), Some(base)) if row.name != "bare" => {
                        print!(" {ns:.0} ({:+.0}) |", ns - base)
                    }
                    (Some(ns), _) => print!(" {ns:.0} |"),
                    (None, _) => print!(" – |"),
                }
            }
            println!();
        }
        self.print_ratio();
    }

    /// The last line: the preset's median over tower-resilience's stack's,
    /// body-read mode, so the comparison is one number.
    fn print_ratio(&self) {
        let body = Mode::ALL.iter().position(|m| *m == Mode::Body).unwrap();
        let median = |name: &str| {
            self.rows
                .iter()
                .find(|r| r.name == name)
                .and_then(|r| r.ns[body])
        };
        if let (Some(ours), Some(theirs)) = (median(PRESET), median(TR_STACK)) {
            println!();
            println!("preset/tower-resilience ratio: {:.2}", ours / theirs);
        }
    }
}

fn overhead(c: &mut Criterion, bench: &mut Bench<'_>) {
    for mode in Mode::ALL {
        let id = match mode {
            Mode::Dropped => "dropped",
            Mode::Body => "body",
            Mode::PendingOnce => "pending_once",
        };
        let mut g = c.benchmark_group(id);
        g.sample_size(SAMPLE_SIZE)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2));
        let up = Upstream::ok(mode);

        bench.run(&mut g, mode, "bare", up, true);
        // Anchors.
        bench.run(
            &mut g,
            mode,
            "tower Timeout",
            support::tower_timeout(up),
            true,
        );
        bench.run(
            &mut g,
            mode,
            "tower Retry (cloning) → Timeout",
            support::tower_retry_timeout(up, false),
            true,
        );
        bench.run(
            &mut g,
            mode,
            "tower Retry + TpsBudget → Timeout",
            support::tower_retry_timeout(up, true),
            true,
        );
        bench.run(
            &mut g,
            mode,
            "tower-http TimeoutLayer",
            support::tower_http_timeout(up),
            true,
        );
        bench.run(
            &mut g,
            mode,
            "tower-resilience breaker",
            support::tr_breaker(up),
            true,
        );
        bench.run(
            &mut g,
            mode,
            "tower-resilience retry",
            support::tr_retry(up),
            true,
        );
        bench.run(
            &mut g,
            mode,
            "tower-resilience time limiter",
            support::tr_time_limiter(up),
            true,
        );
        bench.run(&mut g, mode, TR_STACK, support::tr_stack(up), true);
        // Ours, alone.
        bench.run(
            &mut g,
            mode,
            "ours: NormalizeClientLayer",
            support::normalize(up),
            true,
        );
        bench.run(
            &mut g,
            mode,
            "ours: TimeoutLayer",
            support::timeout(up),
            true,
        );
        bench.run(
            &mut g,
            mode,
            "ours: AttemptTimeoutLayer",
            support::attempt_timeout(up),
            true,
        );
        bench.run(&mut g, mode, "ours: RetryLayer", support::retry(up), true);
        bench.run(
            &mut g,
            mode,
            "ours: CircuitBreakerLayer",
            support::breaker(up),
            true,
        );
        bench.run(&mut g, mode, "ours: PacingLayer", support::pacing(up), true);
        // The preset.
        bench.run(&mut g, mode, PRESET, support::preset(up), true);
        bench.run(
            &mut g,
            mode,
            "ours: the same stack by hand, global breaker",
            support::hand_built(up),
            true,
        );
        bench.run(
            &mut g,
            mode,
            "ours: preset, 2 targets, first healthy (named only)",
            support::preset_two_targets(up, false),
            true,
        );
        bench.run(
            &mut g,
            mode,
            "ours: preset, 2 targets, first healthy (base URI, key, credential)",
            support::preset_two_targets(up, true),
            true,
        );
        // Failure paths.
        bench.run(
            &mut g,
            mode,
            "ours: preset, upstream 503",
            support::preset_failing(mode),
            false,
        );
        if mode == Mode::Dropped {
            bench.run(
                &mut g,
                mode,
                "ours: preset, breaker open",
                support::preset_open(),
                false,
            );
        }
        g.finish();
    }
}

fn main() {
    let rt = support::current_thread();
    let mut c = Criterion::default().configure_from_args();
    let mut bench = Bench {
        rt: &rt,
        rows: Vec::new(),
    };
    overhead(&mut c, &mut bench);
    c.final_summary();
    bench.print_table();
}
