//! An OpenAI-compatible resilient gateway: every request is forwarded to the
//! upstream through the standard stack (normalize → total timeout → retry →
//! circuit breaker → attempt timeout), with breakers keyed by the request's
//! `model`, SSE streamed through chunk by chunk, and every failure answered
//! as the canonical error envelope. It is safe in front of clients it does
//! not control: connections, headers, bodies and memory are bounded, paths
//! cannot leave the upstream's prefix, and SIGTERM lets calls finish.
//!
//! ```text
//! cargo run --release --example gateway                    # with the embedded simulated upstream
//! cargo run --release --example gateway -- --upstream https://api.openai.com
//! cargo run --release --example gateway -- --help
//! ```
//!
//! Without `--upstream`, an embedded upstream starts that fails the way real
//! providers do; the model you ask for picks how (see `sim.rs`): `gpt-4o-mini`
//! gets the daily mix, `sim-down` a dead upstream (its breaker opens while
//! other models keep working), `sim-stall` a stream that stalls, `sim-quota`,
//! `sim-overloaded`, `sim-slow`, `sim-reset`, `sim-badkey` one failure each.

mod app;
mod args;
mod body;
mod client;
mod conn;
mod fleet;
mod forward;
mod headers;
mod log;
mod server;
mod shutdown;
mod sim;

use std::process::ExitCode;

use tower_http_resilience::circuit_breaker::CircuitBreakerHandle;
use tower_http_resilience::collect::CollectBodyLayer;
use tower_http_resilience::BaseUri;
use tracing_subscriber::filter::{EnvFilter, LevelFilter};

use crate::args::{Args, Parsed};
use crate::log::Log;

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
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .init();
    run(*args).await
}

async fn run(args: Args) -> ExitCode {
    let layer = match args.config.clone().build() {
        Ok(layer) => fleet::join(layer, args.redis.as_deref()),
        Err(err) => Err(err.to_string()),
    };
    let layer = match layer {
        Ok(layer) => layer,
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

    let log = Log::stdout(args.log_format);
    let (base, upstream) = match args.upstream {
        Some(base) => {
            log.notice(format_args!("upstream: {base}"));
            (base, "default")
        }
        None => (start_simulator(&log).await, "sim"),
    };
    watch_breakers(&layer.breaker_handle(), &log);
    log.notice(format_args!(
        "try: curl -s http://{addr}/v1/chat/completions {TRY}"
    ));

    let drain = shutdown::Drain::default();
    let gateway = app::Gateway::new(app::Setup {
        stack: layer.server(),
        base,
        upstream: upstream.to_owned(),
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

/// Starts the embedded simulator on a loopback port; returns its base.
async fn start_simulator(log: &Log) -> BaseUri {
    let sim = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port for the simulator");
    let sim_addr = sim.local_addr().expect("a bound listener has an address");
    tokio::spawn(async move { axum::serve(sim, sim::router()).await });
    log.notice(format_args!(
        "upstream: embedded simulator at http://{sim_addr} \
         (models: gpt-4o-mini, sim-down, sim-stall, sim-slow, sim-reset, sim-quota, sim-overloaded, sim-badkey)"
    ));
    format!("http://{sim_addr}")
        .parse()
        .expect("a loopback URL is a base")
}
