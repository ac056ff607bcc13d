//! An OpenAI-compatible resilient gateway: every request is forwarded to the
//! upstream through the standard stack (normalize → total timeout → retry →
//! circuit breaker → attempt timeout), with breakers keyed by the request's
//! `model`, SSE streamed through chunk by chunk, and every failure answered
//! as the canonical error envelope.
//!
//! ```text
//! cargo run --release --example gateway                    # with the embedded simulated upstream
//! cargo run --release --example gateway -- --upstream https://api.openai.com
//! cargo run --release --example gateway -- --help
//! ```
//!
//! Without `--upstream`, an embedded upstream starts that fails the way real
//! providers do; the model a request names picks how (see `sim.rs`): `gpt-4o-mini`
//! gets the daily mix, `sim-down` a dead upstream (its breaker opens while
//! other models keep working), `sim-stall` a stream that stalls, `sim-quota`,
//! `sim-overloaded`, `sim-slow`, `sim-reset`, `sim-badkey` one failure each.

mod app;
mod args;
mod sim;

use std::process::ExitCode;

use args::Parsed;

#[tokio::main]
async fn main() -> ExitCode {
    let args = match args::parse(std::env::args().skip(1)) {
        Ok(Parsed::Run(args)) => *args,
        Ok(Parsed::Help) => {
            println!("{}", args::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("gateway: {message}");
            return ExitCode::from(2);
        }
    };
    let layer = match args.config.clone().build() {
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

    let upstream = match args.upstream {
        Some(uri) => {
            println!("upstream: {uri}");
            uri
        }
        None => {
            let sim = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("a loopback port for the simulator");
            let sim_addr = sim.local_addr().expect("a bound listener has an address");
            tokio::spawn(async move { axum::serve(sim, sim::router()).await });
            println!(
                "upstream: embedded simulator at http://{sim_addr} \
                 (models: gpt-4o-mini, sim-down, sim-stall, sim-slow, sim-reset, sim-quota, sim-overloaded, sim-badkey)"
            );
            format!("http://{sim_addr}").parse().expect("a valid URI")
        }
    };

    let handle = layer.breaker_handle();
    handle.on_transition(|t| {
        let open = t
            .open_duration()
            .map(|d| format!(" for {}ms", d.as_millis()))
            .unwrap_or_default();
        let key = if t.key().is_empty() {
            "(global)"
        } else {
            t.key()
        };
        println!(
            "breaker {key}: {} -> {} ({}){open}",
            t.from(),
            t.to(),
            t.reason()
        );
    });
    println!(
        "try: curl -s http://{addr}/v1/chat/completions -H 'content-type: application/json' \
         -d '{{\"model\":\"gpt-4o-mini\",\"messages\":[{{\"role\":\"user\",\"content\":\"hi\"}}]}}'"
    );

    let app = app::router(
        layer.server(),
        upstream,
        app::upstream_client(),
        app::Options { log_requests: true },
    );
    if let Err(err) = axum::serve(listener, app).await {
        eprintln!("gateway: {err}");
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}
