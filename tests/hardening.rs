//! The gateway in front of hostile clients and careless upstreams.
//!
//! Most tests run the gateway's own code in-process on 127.0.0.1, on the
//! test's paused and held clock (`support::hold_clock`: only
//! `tokio::time::advance` moves it), in front of an upstream on its own
//! thread; raw TCP clients send exactly the bytes an attacker would. Each
//! wait on a socket is bounded in real time (`bounded`), so a regression
//! fails instead of hanging. The tests of the process as a whole (SIGTERM,
//! peak memory) spawn the example binary.

mod support;

include!("support/gateway_modules.rs");

mod hardening {
    mod bodies;
    mod connections;
    mod process;
    mod raw;
    mod requests;
    mod responses;
    mod upstream;
}
