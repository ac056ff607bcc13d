//! Allocations per request of every stack the overhead bench times — the
//! other crates' (the anchors) and this crate's — as one Markdown table, with
//! the anchors' counts checked against the figures `BENCHMARKS.md` publishes.
//!
//! ```text
//! cargo bench --bench alloc
//! ```
//!
//! A counting global allocator counts the allocations made on the bench's
//! thread, on a current-thread runtime, so every allocation of a call is
//! seen. The counts are deterministic. This crate's own counts are asserted
//! by `tests/alloc.rs`; the anchors' are asserted here, since they belong to
//! other crates and may change with their releases.

#[path = "support/mod.rs"]
mod support;

#[path = "support/allocs.rs"]
mod allocs;

#[path = "../tests/counting_alloc/mod.rs"]
mod counting_alloc;

use allocs::Table;
use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use http_body_util::Full;
use support::{Mode, Upstream};
use tower::Service;

/// The table's rows: each stack and the allocations it adds in each mode.
#[derive(Default)]
struct Rows(Vec<(&'static str, Vec<f64>)>);

impl Rows {
    /// Counts what `svc` adds over the bare upstream and notes it in the
    /// row `name`.
    fn measure<S, B>(&mut self, t: &Table, name: &'static str, svc: S, succeeds: bool) -> f64
    where
        S: Service<Request<Full<Bytes>>, Response = Response<B>>,
        B: Body,
    {
        let added = t.added(name, svc, succeeds);
        match self.0.iter_mut().find(|(n, _)| *n == name) {
            Some((_, row)) => row.push(added),
            None => self.0.push((name, vec![added])),
        }
        added
    }

    fn print(&self) {
        println!();
        println!("| stack | dropped | body read | pending once |");
        println!("|---|---:|---:|---:|");
        for (name, row) in &self.0 {
            let mut cells: Vec<String> = row
                .iter()
                .map(|a| {
                    let cell = format!("{a:+.2}");
                    cell.trim_end_matches('0').trim_end_matches('.').to_owned()
                })
                .collect();
            cells.resize(Mode::ALL.len(), "–".to_owned());
            println!("| {name} | {} |", cells.join(" | "));
        }
    }
}

fn main() {
    let mut rows = Rows::default();
    for mode in Mode::ALL {
        let t = Table::new(mode);
        let up = Upstream::ok(mode);
        let r = &mut rows;

        let timeout = r.measure(&t, "tower `Timeout`", support::tower_timeout(up), true);
        let retry = r.measure(
            &t,
            "tower `Retry` (request-cloning policy) → `Timeout`",
            support::tower_retry_timeout(up, false),
            true,
        );
        let budget = r.measure(
            &t,
            "tower `Retry` + `TpsBudget` → `Timeout`",
            support::tower_retry_timeout(up, true),
            true,
        );
        let http = r.measure(
            &t,
            "tower-http `TimeoutLayer`",
            support::tower_http_timeout(up),
            true,
        );
        let breaker = r.measure(
            &t,
            "tower-resilience circuit breaker",
            support::tr_breaker(up),
            true,
        );
        r.measure(&t, "tower-resilience retry", support::tr_retry(up), true);
        r.measure(
            &t,
            "tower-resilience time limiter",
            support::tr_time_limiter(up),
            true,
        );
        let stack = r.measure(
            &t,
            "tower-resilience retry → breaker → time limiter",
            support::tr_stack(up),
            true,
        );
        // The anchors allocate as published, so ours have something to beat.
        assert_eq!(timeout, 0.0, "tower Timeout");
        assert!(
            retry >= 2.0 && budget >= 2.0,
            "tower Retry: {retry} {budget}"
        );
        assert_eq!(http, 0.0, "tower-http TimeoutLayer");
        assert!(breaker >= 3.0, "tower-resilience breaker: {breaker}");
        assert!(stack >= 9.0, "tower-resilience stack: {stack}");

        r.measure(
            &t,
            "ours: `NormalizeClientLayer`",
            support::normalize(up),
            true,
        );
        r.measure(
            &t,
            "ours: `TimeoutLayer` (defaults)",
            support::timeout(up),
            true,
        );
        r.measure(
            &t,
            "ours: `AttemptTimeoutLayer`",
            support::attempt_timeout(up),
            true,
        );
        r.measure(
            &t,
            "ours: `RetryLayer` (defaults, budget on)",
            support::retry(up),
            true,
        );
        r.measure(
            &t,
            "ours: `CircuitBreakerLayer` (closed, known key)",
            support::breaker(up),
            true,
        );
        r.measure(
            &t,
            "ours: preset `ResilienceLayer::new()`",
            support::preset(up),
            true,
        );
        r.measure(
            &t,
            "ours: the same stack by hand",
            support::hand_built(up),
            true,
        );
        r.measure(
            &t,
            "ours: preset, upstream answers 503",
            support::preset_failing(mode),
            false,
        );
    }
    let t = Table::new(Mode::Dropped);
    rows.measure(
        &t,
        "ours: preset, breaker open",
        support::preset_open(),
        false,
    );
    rows.print();
}
