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
use support::{Mode, Upstream};

/// One row: the stack and the allocations it adds in each mode.
struct Row {
    name: &'static str,
    added: Vec<f64>,
}

fn main() {
    let mut rows: Vec<Row> = Vec::new();
    let mut note = |name: &'static str, added: f64| match rows.iter_mut().find(|r| r.name == name) {
        Some(row) => row.added.push(added),
        None => rows.push(Row {
            name,
            added: vec![added],
        }),
    };
    for mode in Mode::ALL {
        let t = Table::new(mode);
        let up = Upstream::ok(mode);

        let timeout = t.added("tower Timeout", support::tower_timeout(up), true);
        let retry = t.added(
            "tower Retry (cloning) → Timeout",
            support::tower_retry_timeout(up, false),
            true,
        );
        let budget = t.added(
            "tower Retry + TpsBudget → Timeout",
            support::tower_retry_timeout(up, true),
            true,
        );
        let http = t.added(
            "tower-http TimeoutLayer",
            support::tower_http_timeout(up),
            true,
        );
        let breaker = t.added("tower-resilience breaker", support::tr_breaker(up), true);
        let tr_retry = t.added("tower-resilience retry", support::tr_retry(up), true);
        let limiter = t.added(
            "tower-resilience time limiter",
            support::tr_time_limiter(up),
            true,
        );
        let stack = t.added(
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
        note("tower `Timeout`", timeout);
        note("tower `Retry` (request-cloning policy) → `Timeout`", retry);
        note("tower `Retry` + `TpsBudget` → `Timeout`", budget);
        note("tower-http `TimeoutLayer`", http);
        note("tower-resilience circuit breaker", breaker);
        note("tower-resilience retry", tr_retry);
        note("tower-resilience time limiter", limiter);
        note("tower-resilience retry → breaker → time limiter", stack);

        note(
            "ours: `NormalizeClientLayer`",
            t.added("normalize", support::normalize(up), true),
        );
        note(
            "ours: `TimeoutLayer` (defaults)",
            t.added("timeout", support::timeout(up), true),
        );
        note(
            "ours: `HeadersTimeoutLayer`",
            t.added("attempt timeout", support::headers_timeout(up), true),
        );
        note(
            "ours: `RetryLayer` (defaults, budget on)",
            t.added("retry", support::retry(up), true),
        );
        note(
            "ours: `CircuitBreakerLayer` (closed, known key)",
            t.added("breaker", support::breaker(up), true),
        );
        note(
            "ours: preset `ResilienceLayer::new()`",
            t.added("preset", support::preset(up), true),
        );
        note(
            "ours: the same stack by hand",
            t.added("by hand", support::hand_built(up), true),
        );
        note(
            "ours: preset, upstream answers 503",
            t.added("preset 503", support::preset_failing(mode), false),
        );
    }
    let open = Table::new(Mode::Dropped).added("preset open", support::preset_open(), false);

    println!();
    println!("| stack | dropped | body read | pending once |");
    println!("|---|---:|---:|---:|");
    for row in &rows {
        let cells: Vec<String> = row
            .added
            .iter()
            .map(|a| {
                let cell = format!("{a:+.2}");
                cell.trim_end_matches('0').trim_end_matches('.').to_owned()
            })
            .collect();
        println!("| {} | {} |", row.name, cells.join(" | "));
    }
    println!("| ours: preset, breaker open | {open:+} | – | – |");
}
