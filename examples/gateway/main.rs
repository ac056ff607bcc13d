//! An OpenAI-compatible resilient gateway: every request is checked, routed
//! to its targets (upstreams and models, tried in order) and forwarded
//! through the standard stack (normalize → total timeout → fallback over
//! the targets → pacing → circuit breaker → attempt timeout), with
//! breakers keyed by target, SSE streamed through chunk by chunk, and
//! every failure answered as the canonical error envelope. It is safe in
//! front of clients it does not control: connections, headers, bodies and
//! memory are bounded, paths cannot leave the upstream's prefix, upstream
//! keys never reach a client, and SIGTERM lets calls finish.
//!
//! ```text
//! cargo run --release --example gateway                    # with the embedded simulated upstreams
//! cargo run --release --example gateway -- --upstream https://api.openai.com
//! cargo run --release --example gateway -- --config gateway.toml
//! cargo run --release --example gateway -- --help
//! ```
//!
//! Without `--upstream` or `[[upstream]]` tables, two embedded providers
//! start (`sim`, `sim-backup`; see `demo.rs`) that fail the way real
//! providers do; the model asked for picks how (see `sim.rs`):
//! `gpt-4o-mini` gets the daily mix, `sim-down` a dead upstream (its
//! breaker opens while other models keep working; its route falls back to
//! `sim-backup`, which answers), `sim-stall` a stream that stalls,
//! `sim-quota`, `sim-overloaded`, `sim-slow`, `sim-reset`, `sim-badkey` one
//! failure each.

mod admin;
mod app;
mod args;
mod auth;
mod body;
mod client;
mod config;
mod conn;
mod demo;
mod fleet;
mod forward;
mod headers;
mod log;
mod routes;
mod server;
mod shutdown;
mod sim;
mod stack;
mod upstream;

use std::process::ExitCode;
use std::sync::Arc;

use tower_http_resilience::circuit_breaker::{CircuitBreakerHandle, KeyDisplay};
use tower_http_resilience::collect::CollectBodyLayer;
use tracing_subscriber::filter::{EnvFilter, LevelFilter};

use crate::args::{Args, Parsed, Upstreams};
use crate::log::Log;
use crate::routes::Routes;
use crate::stack::StackLayer;
use crate::upstream::Upstream;

/// The rest of the command line the gateway suggests to try it.
const TRY: &str = r#"-H 'content-type: application/json' -d '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}'"#;

#[tokio::main]
async fn main() -> ExitCode {
    let args = match args::parse(std::env::args().skip(1)) {
        Ok(Parsed::Run(args)) => args,
        Ok(Parsed::Help) => {
            println!("{}", args::USAGE);
            return ExitCode::SUCCESS;
        }
        Ok(Parsed::Version) => {
            println!("gateway {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("gateway: {message}");
            return ExitCode::from(2);
        }
    };
    let mut filter = EnvFilter::builder()
        .with_default_directive(LevelFilter::WARN.into())
        .from_env_lossy();
    if std::env::var_os("RUST_LOG").is_none() {
        // The fleet's notices are written as plain lines (fleet.rs).
        filter = filter.add_directive(
            "tower_http_resilience::fleet=off"
                .parse()
                .expect("a directive"),
        );
    }
    // Colours only on a terminal: a file or a log collector gets plain text.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(filter)
        .init();
    run(*args).await
}

async fn run(args: Args) -> ExitCode {
    let mirror = match fleet::connect(args.redis.as_deref()) {
        Ok(mirror) => mirror,
        Err(err) => {
            eprintln!("gateway: {err}");
            return ExitCode::from(2);
        }
    };
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(l) => l,
        Err(err) => {
            eprintln!("gateway: cannot listen on {}: {err}", args.listen);
            return ExitCode::from(1);
        }
    };
    let addr = listener
        .local_addr()
        .expect("a bound listener has an address");
    println!("listening on http://{addr}");
    // The admin listener is bound now (its line is the second on stdout)
    // and served once the stack it reports on exists.
    let admin = match args.admin_listen {
        Some(admin) => {
            let Some(listener) = bind_admin(admin).await else {
                return ExitCode::from(1);
            };
            println!(
                "admin on http://{}",
                listener
                    .local_addr()
                    .expect("a bound listener has an address")
            );
            Some(listener)
        }
        None => None,
    };

    let log = Log::stdout(args.log_format);
    let (upstreams, routes) = match args.upstreams {
        Upstreams::Given(upstreams) => (upstreams, args.routes),
        Upstreams::Simulator => (demo::start(&log).await, demo::routes(args.routes)),
    };
    let upstreams: Vec<Arc<Upstream>> = upstreams.into_iter().map(Arc::new).collect();
    let routes = Arc::new(Routes::new(upstreams, &routes, args.windows));
    tell_routes(&routes, &log);
    let secrets = routes
        .upstreams()
        .iter()
        .filter_map(|u| u.credential.as_ref().map(|c| c.key()))
        .chain(args.client_keys.iter().flat_map(|k| k.iter()));
    // Breakers are keyed by target (upstream and model): names, never a
    // credential, so events and metrics show them plain.
    let config = args.config.clone().breaker_key_display(KeyDisplay::Plain);
    // The body is held whole already: every body accepted can be sent
    // again (retries) and renamed (fallback).
    let stack = StackLayer::new(&config, args.pacing, secrets)
        .map_retry(|r| r.max_replay_body(args.max_request_body));
    let stack = fleet::join(stack, mirror);
    watch_breakers(&stack.breaker_handle(), &log);
    if let Some(listener) = admin {
        let admin = admin::Admin::new(admin::install_recorder(), stack.breaker_handle());
        tokio::spawn(admin::serve(listener, admin, args.limits));
    }
    let checks = args.checks.then(|| routes.checks());
    log.notice(format_args!(
        "try: curl -s http://{addr}/v1/chat/completions {TRY}"
    ));

    let drain = shutdown::Drain::default();
    let gateway = app::Gateway::new(app::Setup {
        stack,
        routes,
        checks,
        client_keys: args.client_keys,
        client: client::upstream_client(),
        bodies: CollectBodyLayer::new()
            .max_request_body(args.max_request_body)
            .max_buffered_bodies(args.max_buffered_bodies)
            .timeout(args.body_timeout),
        log: log.clone(),
        drain: drain.clone(),
    });
    let draining = server::serve(listener, gateway, args.limits, shutdown::requested()).await;
    log.notice(format_args!(
        "shutting down: no new connections; calls in flight have {}ms",
        args.shutdown_grace.as_millis()
    ));
    if draining.finish(args.shutdown_grace, &drain).await {
        log.notice("stopped: every call finished");
    } else {
        log.notice("stopped: the calls still running were ended");
    }
    ExitCode::SUCCESS
}

/// Binds the admin listener; `None` (said on stderr) when the address
/// cannot be had.
async fn bind_admin(addr: std::net::SocketAddr) -> Option<tokio::net::TcpListener> {
    match tokio::net::TcpListener::bind(addr).await {
        Ok(listener) => Some(listener),
        Err(err) => {
            eprintln!("gateway: cannot listen on {addr} (--admin-listen): {err}");
            None
        }
    }
}

/// Tells where calls go: each upstream, then each route.
fn tell_routes(routes: &Routes, log: &Log) {
    for u in routes.upstreams() {
        let key = if u.credential.is_some() {
            ", its own key"
        } else {
            ", the client's key"
        };
        let rpm = u.rpm.map(|r| format!(", {r} rpm")).unwrap_or_default();
        log.notice(format_args!("upstream {}: {}{key}{rpm}", u.name, u.base));
    }
    for line in routes.describe() {
        log.notice(line);
    }
}

/// Tells of every breaker transition.
fn watch_breakers(handle: &CircuitBreakerHandle, log: &Log) {
    let log = log.clone();
    handle.on_transition(move |t| {
        let open = t
            .open_duration()
            .map(|d| format!(" for {}ms", d.as_millis()))
            .unwrap_or_default();
        let key = if t.key().is_empty() {
            "(global)"
        } else {
            t.key()
        };
        log.notice(format_args!(
            "breaker {key}: {} -> {} ({}){open}",
            t.from(),
            t.to(),
            t.reason(),
        ));
    });
}
