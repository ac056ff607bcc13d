//! What the integration tests share: the scripted upstream, the provider
//! error fixtures, servers and clients on 127.0.0.1, and log capture.
//!
//! Every test file includes it with `mod support;`, except `tests/alloc.rs`,
//! which counts the allocations of exactly the stacks `benches/` times and so
//! includes `benches/support` under that name. The allocation tests use
//! upstreams that allocate nothing; the scripted upstream records every call.
#![allow(dead_code, unreachable_pub, unused_imports)]

mod fixtures;
mod logs;
mod net;
mod plan;
mod upstream;

pub use fixtures::{cases, envelope, Case, Expect};
pub use logs::{capture_logs, Logs};
pub use net::{client, hold_clock, send, serve, spawn_server, HoldClock, HttpService};
pub use plan::{Plan, UpBody};
pub use upstream::{Received, Upstream};
