//! Allocations per request, counted by the counting allocator of the binary
//! that includes this file (`tests/alloc.rs`, `benches/alloc.rs`; both
//! declare `mod counting_alloc` and `mod support` at their root).

#![allow(dead_code, unreachable_pub)]

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use http_body_util::Full;
use tower::Service;

use crate::counting_alloc::allocations;
use crate::support::{self, call, Mode, Upstream};

/// Calls counted per variant.
const CALLS: u64 = 200;

/// Allocations per request (request and response included) over `CALLS`
/// calls, after a few warm-up calls (first key, lazily built state).
pub fn per_request<S, B>(mode: Mode, mut svc: S, succeeds: bool) -> f64
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

/// The allocations each variant adds over the bare upstream, in one mode.
pub struct Table {
    mode: Mode,
    bare: f64,
}

impl Table {
    /// Measures the bare upstream in `mode`.
    pub fn new(mode: Mode) -> Self {
        let bare = per_request(mode, Upstream::ok(mode), true);
        println!("[{}] bare: {bare} allocations per request", mode.name());
        Table { mode, bare }
    }

    /// The allocations `svc` adds per request over the bare upstream.
    pub fn added<S, B>(&self, name: &str, svc: S, succeeds: bool) -> f64
    where
        S: Service<Request<Full<Bytes>>, Response = Response<B>>,
        B: Body,
    {
        let added = per_request(self.mode, svc, succeeds) - self.bare;
        println!("[{}] {name}: {added:+}", self.mode.name());
        added
    }
}
