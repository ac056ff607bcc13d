//! What the integration tests share: the scripted upstream, the provider
//! error fixtures, servers and clients on 127.0.0.1, and log capture.
//!
//! Every test file includes it with `mod support;`.
#![allow(dead_code, unreachable_pub, unused_imports)]

mod fixtures;
mod logs;
mod net;
mod plan;
mod upstream;

pub use fixtures::{cases, envelope, Case, Expect};
pub use logs::{capture_logs, Logs};
pub use net::{client, hold_clock, send, serve, spawn_server, HoldClock};
pub use plan::{Plan, UpBody};
pub use upstream::{Received, Upstream};
