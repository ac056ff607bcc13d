//! Allocations per request added by each layer, the anchors and the preset,
//! on exactly the stacks `benches/overhead.rs` times (shared code in
//! `benches/support`).
//!
//! A counting global allocator (this test binary only) counts the
//! allocations made on the test's thread; everything runs on a
//! current-thread runtime, so every allocation of a call is seen. The counts
//! are deterministic: the targets of issue 7 are asserted where they are
//! met, and where they are not yet, the current count is asserted as a
//! regression guard (marked below).
//!
//! `cargo test --all-features --test alloc -- --nocapture` prints the table.

#![cfg(feature = "stack")]

#[path = "../benches/support/mod.rs"]
mod support;

mod counting_alloc;

use counting_alloc::allocations;

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use http_body_util::Full;
use support::{call, Mode, Upstream};
use tower::Service;

const CALLS: u64 = 200;

/// Allocations per request (request and response included) over `CALLS`
/// calls, after a few warm-up calls (first key, lazily built state).
fn per_request<S, B>(mode: Mode, mut svc: S, succeeds: bool) -> f64
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>>,
    B: Body,
{
    let rt = support::current_thread();
    rt.block_on(async {
        for _ in 0..3 {
            assert_eq!(call(&mut svc, mode).await, succeeds);
        }
        let before = allocations();
        for _ in 0..CALLS {
            assert_eq!(call(&mut svc, mode).await, succeeds);
        }
        (allocations() - before) as f64 / CALLS as f64
    })
}

/// The allocations each variant adds over the bare upstream, by mode.
struct Table {
    mode: Mode,
    bare: f64,
}

impl Table {
    fn new(mode: Mode) -> Self {
        let bare = per_request(mode, Upstream::ok(mode), true);
        println!("[{}] bare: {bare} allocations per request", mode.name());
        Table { mode, bare }
    }

    fn added<S, B>(&self, name: &str, svc: S, succeeds: bool) -> f64
    where
        S: Service<Request<Full<Bytes>>, Response = Response<B>>,
        B: Body,
    {
        let added = per_request(self.mode, svc, succeeds) - self.bare;
        println!("[{}] {name}: {added:+}", self.mode.name());
        added
    }
}

#[test]
fn the_counter_sees_allocations() {
    let before = allocations();
    std::hint::black_box(vec![0u8; 16]);
    assert_eq!(allocations() - before, 1);
}

#[test]
fn the_anchors_allocate_as_published() {
    for mode in Mode::ALL {
        let t = Table::new(mode);
        let up = Upstream::ok(mode);
        assert_eq!(
            t.added("tower Timeout", support::tower_timeout(up), true),
            0.0
        );
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
        let _ = t.added("tower-resilience retry", support::tr_retry(up), true);
        let _ = t.added(
            "tower-resilience time limiter",
            support::tr_time_limiter(up),
            true,
        );
        let stack = t.added(
            "tower-resilience retry → breaker → time limiter",
            support::tr_stack(up),
            true,
        );
        // The figures: they allocate, so ours have something to beat.
        assert!(retry >= 2.0 && budget >= 2.0, "{retry} {budget}");
        assert_eq!(http, 0.0);
        assert!(breaker >= 3.0, "{breaker}");
        assert!(stack >= 9.0, "{stack}");
    }
}

#[test]
fn the_circuit_breaker_allocates_nothing() {
    for mode in Mode::ALL {
        let t = Table::new(mode);
        let up = Upstream::ok(mode);
        // Target met: 0 allocations (closed, known key).
        assert_eq!(
            t.added("ours: CircuitBreakerLayer", support::breaker(up), true),
            0.0
        );
    }
}

#[test]
fn the_timeouts_allocate_no_more_than_today() {
    for mode in Mode::ALL {
        let t = Table::new(mode);
        let up = Upstream::ok(mode);
        assert_eq!(
            t.added(
                "ours: AttemptTimeoutLayer",
                support::attempt_timeout(up),
                true
            ),
            0.0
        );
        // Target: 0. Not met yet: 3 to put the call's context into empty
        // request extensions (http::Extensions boxes a map and the value),
        // 1 for the context itself (one `Arc` per call: the deadline, the
        // attempts sent, the cut the breaker inside reads), 1 to box the
        // JSON body while it is peeked for `"stream"`. Regression guard at
        // the current count.
        let added = t.added("ours: TimeoutLayer", support::timeout(up), true);
        assert!(added <= 5.0, "{added}");
    }
}

#[test]
fn normalization_of_a_success_allocates_nothing() {
    for mode in Mode::ALL {
        let t = Table::new(mode);
        let up = Upstream::ok(mode);
        assert_eq!(
            t.added("ours: NormalizeClientLayer", support::normalize(up), true),
            0.0
        );
    }
}

#[test]
fn retry_allocates_only_to_keep_the_request() {
    for mode in Mode::ALL {
        let t = Table::new(mode);
        let up = Upstream::ok(mode);
        let added = t.added("ours: RetryLayer", support::retry(up), true);
        // What keeping the request for a replay needs: 6 here (the head:
        // header map 2, header values 2; the body: shared state 1, boxed
        // body 1); and, used alone, the call's context that tells a breaker
        // inside which call an attempt belongs to: 4 (the `Arc`, and 3 to
        // put it into empty request extensions; behind a total timeout the
        // timeout's context serves and this costs nothing). A first-attempt
        // success carries no `Attempts`, so nothing else allocates.
        assert!(added <= 10.0, "{added}");
    }
}

#[test]
fn the_preset_allocates_no_more_than_it_does_today() {
    for mode in Mode::ALL {
        let t = Table::new(mode);
        let up = Upstream::ok(mode);
        let added = t.added("ours: preset", support::preset(up), true);
        let _ = t.added(
            "ours: the same stack by hand",
            support::hand_built(up),
            true,
        );
        // Target: at most 3. Not met yet (timeout 5, the call's context
        // included, + retry 6): regression guard at the current count.
        assert!(added <= 11.0, "{added}");
        let failing = t.added(
            "ours: preset, upstream 503",
            support::preset_failing(mode),
            false,
        );
        // The failure path reads the error body and builds an ApiError
        // (message, code, body excerpt, hints): no target, regression guard
        // at the current count.
        assert!(failing <= 33.0, "{failing}");
    }
    let t = Table::new(Mode::Dropped);
    let open = t.added("ours: preset, breaker open", support::preset_open(), false);
    assert!(open <= 15.0, "{open}");
}
