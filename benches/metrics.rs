//! The cost of the `metrics` feature: the preset per request with the
//! feature's recording points and a no-op recorder installed, against the
//! same preset built without the feature. One binary is one build, so the
//! comparison is two runs:
//!
//! ```text
//! cargo bench --bench metrics                                                   # metrics on
//! cargo bench --bench metrics --no-default-features --features full,hyper-util  # metrics off
//! ```
//!
//! Each prints, for the bare upstream and the preset (body read to the end,
//! single-thread runtime), the fastest of 300 rounds of 1 000 requests, the
//! rounds of both interleaved: the minimum is what a request costs when
//! nothing else runs on the machine, and it is stable on a busy one.

#[path = "support/mod.rs"]
mod support;

use std::hint::black_box;
use std::time::Instant;

use support::{call, Mode, Upstream};

const ROUNDS: usize = 300;
const PER_ROUND: u32 = 1_000;

fn main() {
    #[cfg(feature = "metrics")]
    metrics::set_global_recorder(metrics::NoopRecorder).expect("the first recorder");
    let feature = if cfg!(feature = "metrics") {
        "on"
    } else {
        "off"
    };
    let rt = support::current_thread();
    let mode = Mode::Body;
    let mut bare = Upstream::ok(mode);
    let mut preset = support::preset(Upstream::ok(mode));
    let (mut fastest_bare, mut fastest_preset) = (f64::MAX, f64::MAX);
    rt.block_on(async {
        for _ in 0..ROUNDS {
            let start = Instant::now();
            for _ in 0..PER_ROUND {
                black_box(call(&mut bare, mode).await);
            }
            let ns = start.elapsed().as_nanos() as f64 / f64::from(PER_ROUND);
            fastest_bare = fastest_bare.min(ns);
            let start = Instant::now();
            for _ in 0..PER_ROUND {
                assert!(call(&mut preset, mode).await);
            }
            let ns = start.elapsed().as_nanos() as f64 / f64::from(PER_ROUND);
            fastest_preset = fastest_preset.min(ns);
        }
    });
    println!(
        "metrics {feature}: bare {fastest_bare:.0} ns, preset {fastest_preset:.0} ns \
         ({:+.0}) per request, body read",
        fastest_preset - fastest_bare
    );
}
