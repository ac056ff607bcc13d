//! Request checks in front of an upstream, in one program.
//!
//! Starts an axum server that plays an OpenAI-compatible upstream (it
//! answers with what it received and counts its calls), with `CheckLayer`
//! in front of it and `NormalizeLayer` around both, then sends it valid
//! and invalid requests. The invalid ones are answered by the layer with
//! the canonical envelope; only the valid ones reach the upstream, byte for
//! byte, with the prompt's token count in their extensions.
//!
//! ```text
//! cargo run --example check
//! cargo run --example check --features tokenizer   # exact o200k_base counts
//! ```

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::extract::Request as AxumRequest;
use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::ServiceBuilder;
use tower_http_resilience::check::{CheckLayer, ContextWindow, PromptTokens, Tokenizer};
use tower_http_resilience::NormalizeLayer;

/// The context windows the layer knows: requests for other models are
/// checked too, but not against a window.
fn checks() -> CheckLayer {
    #[cfg(feature = "tokenizer")]
    let mini = ContextWindow::new(128_000, Tokenizer::O200kBase);
    #[cfg(not(feature = "tokenizer"))]
    let mini = ContextWindow::new(128_000, Tokenizer::Estimate);
    CheckLayer::new()
        .context_window("gpt-4o-mini", mini)
        .context_window("tiny-model", 1000)
}

fn app(calls: Arc<AtomicUsize>) -> Router {
    let upstream = move |req: AxumRequest| {
        let calls = calls.clone();
        async move {
            calls.fetch_add(1, Ordering::SeqCst);
            let tokens = req.extensions().get::<PromptTokens>().copied();
            let body = req.into_body().collect().await.unwrap().to_bytes();
            format!(
                "upstream got {} bytes, prompt of at least {} tokens, output {}\n",
                body.len(),
                tokens.map_or(0, |t| t.estimate()),
                tokens.map_or(0, |t| t.output()),
            )
        }
    };
    Router::new()
        .route("/v1/chat/completions", post(upstream))
        .layer(
            ServiceBuilder::new()
                .layer(NormalizeLayer::new())
                .layer(checks()),
        )
}

#[tokio::main]
async fn main() {
    let calls = Arc::new(AtomicUsize::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = axum::serve(listener, app(calls.clone()));
    tokio::spawn(async move { server.await });
    println!("upstream with checks on http://{addr}\n");

    let long_prompt = "The quick brown fox jumps over the lazy dog. ".repeat(150);
    let cases: Vec<(&str, String)> = vec![
        (
            "a valid request with a vendor field",
            r#"{"model":"gpt-4o-mini","messages":[{"role":"developer","content":"Be brief."},{"role":"user","content":"Hello!"}],"temperature":0,"max_tokens":64,"x_vendor_field":true}"#.into(),
        ),
        ("a body that is not JSON", "{\"model\": \"gpt-4o-mini\",".into()),
        (
            "no model",
            r#"{"messages":[{"role":"user","content":"Hello!"}]}"#.into(),
        ),
        (
            "a role that does not exist",
            r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hi"},{"role":"robot","content":"Beep"}]}"#.into(),
        ),
        (
            "temperature out of range",
            r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hi"}],"temperature":3}"#.into(),
        ),
        (
            "a 6.6 KB prompt for a 1000-token model",
            serde_json::json!({"model": "tiny-model", "messages": [{"role": "user", "content": long_prompt}]})
                .to_string(),
        ),
        (
            "the same prompt for a model with a large window",
            serde_json::json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": long_prompt}]})
                .to_string(),
        ),
    ];

    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    for (what, body) in cases {
        let req = Request::post(format!("http://{addr}/v1/chat/completions"))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        let res = client.request(req).await.unwrap();
        let status = res.status();
        let body = res.into_body().collect().await.unwrap().to_bytes();
        println!(
            "{what}:\n  {status} {}",
            String::from_utf8_lossy(&body).trim_end()
        );
    }
    println!(
        "\ncalls that reached the upstream: {}",
        calls.load(Ordering::SeqCst)
    );
}
