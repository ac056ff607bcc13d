//! Error normalization end to end, in one program.
//!
//! Starts an axum server whose routes fail the ways real services do (a
//! provider-style 429, a panic, a bad JSON body, an unknown route, a handler
//! error), with `NormalizeLayer` in front, then calls each route twice:
//! with a plain HTTP client, to show the canonical envelope on the wire, and
//! with `NormalizeClientLayer` around the client, to show the `ApiError` a
//! program gets.
//!
//! ```text
//! cargo run --example normalize
//! ```

use std::time::Duration;

use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::{ServiceBuilder, ServiceExt};
use tower_http_resilience::{ApiError, NormalizeClientLayer, NormalizeLayer};

async fn panics() -> &'static str {
    panic!("a bug in a handler")
}

fn app() -> Router {
    Router::new()
        // An upstream-style rate limit whose `code` is the status as a string.
        .route(
            "/v1/chat/completions",
            post(|Json(_body): Json<serde_json::Value>| async {
                (
                    StatusCode::TOO_MANY_REQUESTS,
                    [("retry-after", "2")],
                    r#"{"error":{"message":"Rate limit exceeded. Please slow down your requests","type":"rate_limit_error","code":"429"}}"#,
                )
            }),
        )
        .route("/v1/panic", get(panics))
        .route(
            "/v1/overloaded",
            get(|| async {
                ApiError::circuit_open(Duration::from_secs(12)).to_response::<axum::body::Body>()
            }),
        )
        .layer(NormalizeLayer::new())
}

#[tokio::main]
async fn main() {
    // The layer reports panics and unknown errors through `tracing`; show them
    // there instead of the default panic printout.
    tracing_subscriber::fmt()
        .with_target(false)
        .without_time()
        .init();
    std::panic::set_hook(Box::new(|_| {}));

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    println!("listening on http://{addr}");
    tokio::spawn(async move { axum::serve(listener, app()).await.unwrap() });

    let plain: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let normalized = ServiceBuilder::new()
        .layer(NormalizeClientLayer::new())
        .service(plain.clone());

    let calls: [(&str, &str, Option<&'static str>); 5] = [
        (
            "POST",
            "/v1/chat/completions",
            Some(r#"{"model":"gpt-4o","messages":[]}"#),
        ),
        ("POST", "/v1/chat/completions", Some("{not json")),
        ("GET", "/v1/panic", None),
        ("GET", "/v1/overloaded", None),
        ("GET", "/v1/no-such-route", None),
    ];
    for (method, path, body) in calls {
        let build = || {
            Request::builder()
                .method(method)
                .uri(format!("http://{addr}{path}"))
                .header("content-type", "application/json")
                .header("x-request-id", "example-1")
                .body(Full::new(Bytes::from_static(body.unwrap_or("").as_bytes())))
                .unwrap()
        };
        println!("\n{method} {path}");

        let res = plain.request(build()).await.unwrap();
        let status = res.status();
        let retry_after = res.headers().get("retry-after").cloned();
        let wire = res.into_body().collect().await.unwrap().to_bytes();
        print!("  on the wire: {status}");
        if let Some(r) = retry_after {
            print!(" retry-after: {}", r.to_str().unwrap());
        }
        println!(" {}", String::from_utf8_lossy(&wire));

        match normalized.clone().oneshot(build()).await {
            Ok(res) => println!("  as a client sees it: success {}", res.status()),
            Err(err) => println!(
                "  as a client sees it: {:?}, code {}, retryable {}, retry after {:?}",
                err.kind(),
                err.code(),
                err.is_retryable(),
                err.retry_after()
            ),
        }
    }
}
