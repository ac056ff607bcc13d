//! What the integration tests share: the scripted upstream, the provider
//! error fixtures, servers and clients on 127.0.0.1, log capture, and for the
//! fleet tests a notice recorder and a real `redis-server`.
//!
//! Every test file includes it with `mod support;`, except `tests/alloc.rs`,
//! which counts the allocations of exactly the stacks `benches/` times and so
//! includes `benches/support` under that name. The allocation tests use
//! upstreams that allocate nothing; the scripted upstream records every call.
#![allow(dead_code, unreachable_pub, unused_imports)]

mod fixtures;
mod logs;
mod net;
#[cfg(feature = "fleet")]
mod notices;
mod plan;
#[cfg(feature = "metrics")]
pub mod prometheus;
#[cfg(feature = "redis")]
mod redis;
#[cfg(all(feature = "fleet", feature = "pacing", feature = "retry"))]
pub mod replicas;
mod upstream;

pub use fixtures::{cases, envelope, Case, Expect};
pub use logs::{capture_logs, Logs};
pub use net::{
    client, hold_clock, send, serve, spawn_grpc_server, spawn_listener, spawn_server, HoldClock,
    HttpService,
};
#[cfg(feature = "fleet")]
pub use notices::Notices;
pub use plan::{Plan, UpBody};
#[cfg(feature = "redis")]
pub use redis::RedisServer;
pub use upstream::{Received, Upstream};
