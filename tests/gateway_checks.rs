//! What the gateway answers itself, before any upstream call: invalid
//! requests (the checks, on by default), prompts over a `[[model]]`
//! context window, and calls held back by an upstream's `rpm`, each seen
//! in the log line.
//!
//! The gateway runs in-process on the test's runtime, its clock paused
//! and held (`support::hold_clock`); the upstream runs on its own thread
//! with a real clock and records what reached it.

mod support;

include!("support/gateway_modules.rs");

#[path = "support/gateway_upstream.rs"]
mod gateway_upstream;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use tower_http_resilience::pacing::PacingAction;

use crate::gateway_harness::{bounded, start, Options, Running};
use crate::gateway_upstream::Recording;

/// The gateway of the config file `text` (named `name`).
async fn gateway(name: &str, text: &str) -> Running {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("gw-checks-{name}.toml"));
    std::fs::write(&path, text).unwrap();
    start(Options::from_args(
        &["--config", path.to_str().unwrap()],
        &|_| None,
    ))
    .await
}

fn post(gw: SocketAddr, body: impl Into<String>) -> Request<Full<Bytes>> {
    Request::post(format!("http://{gw}/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.into())))
        .unwrap()
}

fn chat(gw: SocketAddr, model: &str, content: &str) -> Request<Full<Bytes>> {
    let body =
        serde_json::json!({"model": model, "messages": [{"role": "user", "content": content}]});
    post(gw, body.to_string())
}

fn header<'a>(parts: &'a http::response::Parts, name: &str) -> Option<&'a str> {
    parts.headers.get(name).map(|v| v.to_str().unwrap())
}

/// The log lines written so far.
fn lines(gw: &mut Running) -> Vec<String> {
    std::iter::from_fn(|| gw.lines.try_recv().ok()).collect()
}

const INVALID: [(&str, &str, Option<&str>); 4] = [
    (
        r#"{"model":"m","messages":[{"role":"robot","content":"hi"}]}"#,
        "invalid_value",
        Some("messages[0].role"),
    ),
    (
        r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":3}"#,
        "invalid_value",
        Some("temperature"),
    ),
    (
        r#"{"messages":[{"role":"user","content":"hi"}]}"#,
        "missing_required_field",
        Some("model"),
    ),
    ("{not json", "invalid_json", None),
];

#[tokio::test(start_paused = true)]
async fn the_checks_refuse_an_invalid_request_without_an_upstream_call() {
    let _hold = support::hold_clock();
    let up = Recording::spawn("a");
    let upstream = format!("[[upstream]]\nname = \"a\"\nurl = \"http://{}\"\n", up.addr);
    let mut gw = gateway("on", &upstream).await;

    for (body, code, param) in INVALID {
        let (parts, res) = support::send(post(gw.addr, body)).await;
        assert_eq!(parts.status, 400, "{body}");
        let err = support::envelope(&res);
        assert_eq!(
            (err["code"].as_str(), err["param"].as_str()),
            (Some(code), param),
            "{body}"
        );
        assert_eq!(header(&parts, "x-gateway-attempts"), Some("0"), "{body}");
    }
    assert_eq!(up.calls(), 0, "no invalid request reached the upstream");
    // Valid requests, vendor fields included, pass as they came.
    let valid = r#"{"model":"m","messages":[{"role":"developer","content":"x"},{"role":"tool","content":"y","tool_call_id":"t"}],"temperature":2,"x_vendor":{"a":1}}"#;
    let (parts, _) = support::send(post(gw.addr, valid)).await;
    assert_eq!(parts.status, 200);
    assert_eq!(up.calls(), 1);
    let logged = lines(&mut gw);
    assert!(
        logged[0].contains(" status=400 code=invalid_value attempts=0 "),
        "{logged:?}"
    );

    // `checks = false`: the upstream decides.
    let off = gateway("off", &format!("checks = false\n{upstream}")).await;
    for (body, _, _) in INVALID {
        let (parts, _) = support::send(post(off.addr, body)).await;
        assert_eq!(parts.status, 200, "{body}");
    }
    assert_eq!(up.calls(), 1 + INVALID.len());
}

/// A `[[model]]` window, for the model as sent upstream (after a route's
/// rename too): a ~6 KB prompt does not fit 1 000 tokens, a 200-character
/// one does.
#[tokio::test(start_paused = true)]
async fn a_model_window_refuses_an_over_long_prompt() {
    let _hold = support::hold_clock();
    let up = Recording::spawn("a");
    let text = format!(
        "[[upstream]]\nname = \"a\"\nurl = \"http://{}\"\n\
         [[route]]\nmodel = \"alias\"\ntargets = [\"a:small\"]\n\
         [[model]]\nname = \"small\"\ncontext_window = 1000\n",
        up.addr
    );
    let gw = gateway("window", &text).await;
    let long = "The quick brown fox jumps over the lazy dog. ".repeat(135);
    assert!((6000..6200).contains(&long.len()));
    let short = "x".repeat(200);

    for model in ["small", "alias"] {
        let (parts, body) = support::send(chat(gw.addr, model, &long)).await;
        assert_eq!(parts.status, 400, "{model}");
        let err = support::envelope(&body);
        assert_eq!(err["code"], "context_length_exceeded", "{model}");
        assert_eq!(err["param"], "messages", "{model}");
        assert_eq!(header(&parts, "x-gateway-target"), Some("a:small"));
    }
    assert_eq!(up.calls(), 0);
    // Another model has no window: sent.
    let (parts, _) = support::send(chat(gw.addr, "large", &long)).await;
    assert_eq!(parts.status, 200);
    for model in ["small", "alias"] {
        let (parts, _) = support::send(chat(gw.addr, model, &short)).await;
        assert_eq!(parts.status, 200, "{model}");
    }
    let models: Vec<_> = up.seen().into_iter().map(|s| s.model.unwrap()).collect();
    assert_eq!(models, ["large", "small", "small"]);
}

/// `rpm = 60` (one call a second, no burst beyond one) with a
/// `max_retry_after` of 1 s: a second call waits its second, a third, whose
/// turn is 2 s away, is answered 429 at once, unsent. The log line says
/// how long each was held.
#[tokio::test(start_paused = true)]
async fn an_upstreams_rpm_holds_calls_back() {
    let _hold = support::hold_clock();
    let up = Recording::spawn("a");
    let text = format!(
        "max_retry_after = \"1s\"\n\
         [[upstream]]\nname = \"a\"\nurl = \"http://{}\"\nrpm = 60\n",
        up.addr
    );
    let mut gw = gateway("rpm", &text).await;
    let (events_tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    gw.pacing.on_event(move |e| {
        let _ = events_tx.send(e.action());
    });

    let (parts, _) = support::send(chat(gw.addr, "m", "hi")).await;
    assert_eq!(parts.status, 200);
    let second = tokio::spawn(support::send(chat(gw.addr, "m", "hi")));
    assert_eq!(bounded(events.recv()).await, Some(PacingAction::Waited));
    assert_eq!(up.calls(), 1, "the second call waits for its turn");

    let (parts, body) = support::send(chat(gw.addr, "m", "hi")).await;
    assert_eq!(parts.status, 429);
    assert_eq!(support::envelope(&body)["code"], "rate_limit_exceeded");
    assert_eq!(header(&parts, "retry-after"), Some("2"));
    assert_eq!(header(&parts, "x-gateway-attempts"), Some("0"));
    assert_eq!(header(&parts, "x-gateway-target"), Some("a:m"));
    assert_eq!(up.calls(), 1, "the third call was not sent");

    tokio::time::advance(Duration::from_secs(1)).await;
    let (parts, _) = bounded(second).await.unwrap();
    assert_eq!(parts.status, 200);
    assert_eq!(up.calls(), 2);

    let logged = lines(&mut gw);
    assert_eq!(logged.len(), 3, "{logged:?}");
    assert!(logged[0].ends_with(" held_ms=-"), "{logged:?}");
    assert!(
        logged[1].contains(" status=429 code=rate_limit_exceeded attempts=0 ")
            && logged[1].ends_with(" held_ms=2000"),
        "{logged:?}"
    );
    assert!(
        logged[2].contains(" status=200 code=- attempts=1 ")
            && logged[2].ends_with(" held_ms=1000"),
        "{logged:?}"
    );
}
