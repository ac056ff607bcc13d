//! One stack of `benches/support`, called `N` times, for counting what a
//! call costs with a profiler rather than a clock (the counts do not move
//! with the machine's load):
//!
//! ```sh
//! cargo bench --bench instructions --no-run
//! STACK=preset MODE=body N=2000 valgrind --tool=callgrind \
//!     --toggle-collect='*measured*' target/release/deps/instructions-<hash>
//! ```
//!
//! Instructions per call are callgrind's total over `N`; the difference from
//! `STACK=bare` is the stack's. `STACK`: bare, preset, tower-resilience,
//! timeout, tower-timeout, retry, tower-retry, breaker, attempt, pacing,
//! normalize (default preset); `MODE`: dropped, body, pending (default
//! body); `N` (default 2000). `perf record` works the same way.

#[path = "support/mod.rs"]
mod support;

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use http_body_util::Full;
use support::{call, Mode, Upstream};
use tokio::runtime::Runtime;
use tower::Service;

type Req = Request<Full<Bytes>>;

/// Warms the stack up, then makes the counted calls.
fn run<S, B>(rt: &Runtime, mut svc: S, mode: Mode, n: usize)
where
    S: Service<Req, Response = Response<B>>,
    B: Body,
{
    rt.block_on(async {
        for _ in 0..50 {
            assert!(call(&mut svc, mode).await, "the stack answers");
        }
    });
    measured(rt, &mut svc, mode, n);
}

/// The counted calls (the profiler's `--toggle-collect` target).
#[inline(never)]
fn measured<S, B>(rt: &Runtime, svc: &mut S, mode: Mode, n: usize)
where
    S: Service<Req, Response = Response<B>>,
    B: Body,
{
    rt.block_on(async {
        for _ in 0..n {
            std::hint::black_box(call(svc, mode).await);
        }
    });
}

fn main() {
    let var = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
    let n: usize = var("N", "2000").parse().expect("N is a number");
    let mode = match var("MODE", "body").as_str() {
        "dropped" => Mode::Dropped,
        "pending" => Mode::PendingOnce,
        _ => Mode::Body,
    };
    let up = Upstream::ok(mode);
    let rt = &support::current_thread();
    match var("STACK", "preset").as_str() {
        "bare" => run(rt, up, mode, n),
        "preset" => run(rt, support::preset(up), mode, n),
        "tower-resilience" => run(rt, support::tr_stack(up), mode, n),
        "timeout" => run(rt, support::timeout(up), mode, n),
        "tower-timeout" => run(rt, support::tower_timeout(up), mode, n),
        "retry" => run(rt, support::retry(up), mode, n),
        "tower-retry" => run(rt, support::tower_retry_timeout(up, true), mode, n),
        "breaker" => run(rt, support::breaker(up), mode, n),
        "attempt" => run(rt, support::attempt_timeout(up), mode, n),
        "pacing" => run(rt, support::pacing(up), mode, n),
        "normalize" => run(rt, support::normalize(up), mode, n),
        other => panic!("unknown STACK {other}"),
    }
}
