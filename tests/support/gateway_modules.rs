// The gateway example's modules, at the crate root of a test that includes
// this file (`include!`): their own `crate::` paths need them there. Parts
// only main.rs uses are dead code to a test.

#[path = "../../examples/gateway/admin.rs"]
#[allow(dead_code)]
mod admin;
#[path = "../../examples/gateway/app.rs"]
#[allow(dead_code)]
mod app;
#[path = "../../examples/gateway/args.rs"]
#[allow(dead_code)]
mod args;
#[path = "../../examples/gateway/auth.rs"]
#[allow(dead_code)]
mod auth;
#[path = "../../examples/gateway/body.rs"]
#[allow(dead_code)]
mod body;
#[path = "../../examples/gateway/client.rs"]
#[allow(dead_code)]
mod client;
#[path = "../../examples/gateway/config.rs"]
#[allow(dead_code)]
mod config;
#[path = "../../examples/gateway/conn.rs"]
#[allow(dead_code)]
mod conn;
#[path = "../../examples/gateway/demo.rs"]
#[allow(dead_code)]
mod demo;
#[path = "../../examples/gateway/forward.rs"]
#[allow(dead_code)]
mod forward;
#[path = "../../examples/gateway/headers.rs"]
#[allow(dead_code)]
mod headers;
#[path = "../../examples/gateway/log.rs"]
#[allow(dead_code)]
mod log;
#[path = "../../examples/gateway/routes.rs"]
#[allow(dead_code)]
mod routes;
#[path = "../../examples/gateway/server.rs"]
#[allow(dead_code)]
mod server;
#[path = "../../examples/gateway/shutdown.rs"]
#[allow(dead_code)]
mod shutdown;
#[path = "../../examples/gateway/sim.rs"]
#[allow(dead_code)]
mod sim;
#[path = "../../examples/gateway/stack.rs"]
#[allow(dead_code)]
mod stack;
#[path = "../../examples/gateway/upstream.rs"]
#[allow(dead_code)]
mod upstream;
#[path = "gateway.rs"]
mod gateway_harness;
