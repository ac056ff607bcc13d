//! A hyper-util client calling an OpenAI-compatible API through the standard
//! client stack: normalize → total timeout → retry → circuit breaker →
//! attempt timeout.
//!
//! ```text
//! cargo run --example client                      # against the gateway's embedded simulator
//! OPENAI_BASE_URL=https://api.openai.com OPENAI_API_KEY=sk-… cargo run --example client
//! ```
//!
//! It sends a few chat completions (one per simulated failure mode, one
//! streaming) and prints what a program gets: a response, or an `ApiError`
//! with its kind, code, retry hint and the number of attempts made.

#[path = "gateway/sim.rs"]
mod sim;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::{ServiceBuilder, ServiceExt};
use tower_http_resilience::circuit_breaker::BreakerKey;
use tower_http_resilience::retry::Attempts;
use tower_http_resilience::stack::StackBody;
use tower_http_resilience::ResilienceConfig;

#[tokio::main]
async fn main() {
    let (base, key) = match std::env::var("OPENAI_BASE_URL") {
        Ok(base) => (base, std::env::var("OPENAI_API_KEY").unwrap_or_default()),
        Err(_) => {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(async move {
                axum::serve(listener, sim::router("sim", sim::Mix::Daily)).await
            });
            println!("calling the embedded simulator at http://{addr}");
            (format!("http://{addr}"), String::new())
        }
    };

    // The client is built for the body type the stack hands it.
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.enforce_http(false);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    let client = Client::builder(TokioExecutor::new()).build::<_, StackBody<Full<Bytes>>>(https);

    let layer = ResilienceConfig::default()
        .max_retries(2)
        .build()
        .expect("valid settings");
    let client = ServiceBuilder::new().layer(layer).service(client);

    for (model, stream) in [
        ("gpt-4o-mini", false),
        ("gpt-4o-mini", true),
        ("sim-quota", false),
        ("sim-overloaded", false),
        ("sim-badkey", false),
    ] {
        let body = format!(
            r#"{{"model":"{model}","stream":{stream},"messages":[{{"role":"user","content":"Say hello."}}]}}"#
        );
        let mut req = Request::post(format!("{base}/v1/chat/completions"))
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {key}"))
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        // One breaker per model.
        req.extensions_mut().insert(BreakerKey::new(model));

        print!("{model}{}: ", if stream { " (stream)" } else { "" });
        match client.clone().oneshot(req).await {
            Ok(res) => {
                let attempts = Attempts::of(res.extensions()).get();
                let status = res.status();
                match res.into_body().collect().await {
                    Ok(body) => println!(
                        "{status} after {attempts} attempt(s), {} bytes",
                        body.to_bytes().len()
                    ),
                    // A stream that fails midway fails its body with an ApiError.
                    Err(err) => println!("{status}, then the body failed: {err}"),
                }
            }
            Err(err) => {
                let attempts = Attempts::of(err.extensions()).get();
                println!(
                    "{:?} {} (retryable: {}, retry after: {:?}) after {attempts} attempt(s): {}",
                    err.kind(),
                    err.code(),
                    err.is_retryable(),
                    err.retry_after(),
                    err.message()
                );
            }
        }
    }
}
