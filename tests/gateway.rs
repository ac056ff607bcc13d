//! The gateway example end to end: its own code (`examples/gateway/app.rs`)
//! runs in-process on 127.0.0.1 in front of the scripted upstream
//! (`tests/support`, served over HTTP from its own thread and runtime),
//! called by a hyper client.
//!
//! The test runtime's clock is paused and held (`support::hold_clock`): it
//! moves only by `tokio::time::advance`, so stalls are exact and nothing
//! sleeps for real. Retries use a zero backoff so that they need no time.

mod support;

#[path = "../examples/gateway/app.rs"]
mod app;
#[path = "../examples/gateway/args.rs"]
mod args;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http::{Request, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, Full, StreamBody};
use support::{Plan, Upstream};
use tokio::time::advance;
use tower_http_resilience::retry::{Backoff, Jitter};
use tower_http_resilience::{BoxError, ResilienceConfig};

/// Serves the scripted upstream on 127.0.0.1, from its own thread and runtime.
fn spawn_upstream(up: &Upstream) -> SocketAddr {
    let up = up.clone();
    support::spawn_server(move || up)
}

/// The calls the upstream received for `model` (the JSON body's).
fn calls(up: &Upstream, model: &str) -> usize {
    up.received()
        .iter()
        .filter(|r| r.json()["model"] == model)
        .count()
}

/// The gateway's defaults, with retries that wait no time.
fn config() -> ResilienceConfig {
    ResilienceConfig::default()
}

/// Starts the gateway (on the test's runtime) in front of `upstream`.
async fn gateway(config: ResilienceConfig, upstream: SocketAddr) -> SocketAddr {
    let layer = config.build().unwrap().map_retry(|r| {
        r.backoff(Backoff::constant(Duration::ZERO))
            .jitter(Jitter::none())
    });
    let app = app::router(
        layer.server(),
        format!("http://{upstream}").parse().unwrap(),
        app::upstream_client(),
        app::Options::default(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

fn chat(gw: SocketAddr, model: &str, stream: bool) -> Request<Full<Bytes>> {
    let body = format!(
        r#"{{"model":"{model}","messages":[{{"role":"user","content":"hi"}}],"stream":{stream}}}"#
    );
    Request::post(format!("http://{gw}/v1/chat/completions"))
        .header("content-type", "application/json")
        .header("authorization", "Bearer sk-test-key-0000000000")
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn every_fixture_case_leaves_as_the_envelope() {
    let _hold = support::hold_clock();
    let up = Upstream::new();
    let gw = gateway(config().max_retries(0), spawn_upstream(&up)).await;

    for case in support::cases() {
        up.push(case.plan());
        let (parts, body) = support::send(chat(gw, &case.name, false)).await;
        let name = &case.name;
        assert_eq!(parts.status.as_u16(), case.expect.status, "{name}");
        assert_eq!(parts.headers["content-type"], "application/json", "{name}");
        assert!(parts.headers.contains_key("x-request-id"), "{name}");
        let should_retry = if case.expect.retryable {
            "true"
        } else {
            "false"
        };
        assert_eq!(parts.headers["x-should-retry"], should_retry, "{name}");
        assert_eq!(
            parts
                .headers
                .get("retry-after")
                .map(|v| v.to_str().unwrap().parse::<u64>().unwrap()),
            case.expect.retry_after_s,
            "{name}"
        );
        let err = support::envelope(&body);
        assert_eq!(err["type"], case.expect.ty.as_str(), "{name}");
        assert_eq!(err["code"], case.expect.code.as_str(), "{name}");
        assert_eq!(
            err["param"].as_str(),
            case.expect.param.as_deref(),
            "{name}"
        );
        assert_eq!(
            calls(&up, name),
            1,
            "{name}: max_retries 0 means one attempt"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn retries_follow_the_error_table() {
    let _hold = support::hold_clock();
    let up = Upstream::new();
    let gw = gateway(config().max_retries(3), spawn_upstream(&up)).await;

    // Two failures, then a success.
    let third = r#"{"id":"ok-flaky-3","object":"chat.completion"}"#;
    up.extend([Plan::status(503), Plan::status(502), Plan::json(200, third)]);
    let (parts, body) = support::send(chat(gw, "flaky", false)).await;
    assert_eq!(parts.status, StatusCode::OK);
    assert_eq!(body, third, "the third attempt's answer");
    assert_eq!(calls(&up, "flaky"), 3);

    // Always failing: 1 + 3 attempts, then the last failure as the envelope.
    up.push_n(4, Plan::status(500));
    let (parts, body) = support::send(chat(gw, "dead", false)).await;
    assert_eq!(parts.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(support::envelope(&body)["code"], "internal_error");
    assert_eq!(calls(&up, "dead"), 4);

    // Not retried: a client error.
    up.push(Plan::status(400));
    let (parts, _) = support::send(chat(gw, "bad", false)).await;
    assert_eq!(parts.status, StatusCode::BAD_REQUEST);
    assert_eq!(calls(&up, "bad"), 1);
}

#[tokio::test(start_paused = true)]
async fn the_breaker_opens_for_one_model_only() {
    let _hold = support::hold_clock();
    // `sim-down` answers 503 until it recovers; every other model 200.
    let recovered = Arc::new(AtomicBool::new(false));
    let up = Upstream::answering({
        let recovered = recovered.clone();
        move |req| {
            if req.json()["model"] == "sim-down" && !recovered.load(Ordering::SeqCst) {
                Plan::status(503).body("down")
            } else {
                Plan::status(200)
            }
        }
    });
    let gw = gateway(
        config().max_retries(0).breaker_min_calls(2),
        spawn_upstream(&up),
    )
    .await;

    for _ in 0..2 {
        let (parts, body) = support::send(chat(gw, "sim-down", false)).await;
        assert_eq!(parts.status, 503);
        assert_eq!(support::envelope(&body)["code"], "service_unavailable");
    }
    // Open: answered at once, without calling the upstream.
    let (parts, body) = support::send(chat(gw, "sim-down", false)).await;
    assert_eq!(parts.status, 503);
    assert_eq!(support::envelope(&body)["code"], "circuit_open");
    let wait: u64 = parts.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((27..=33).contains(&wait), "30 s ± 10 % jitter, got {wait}");
    assert_eq!(calls(&up, "sim-down"), 2);

    // Another model is untouched.
    let (parts, _) = support::send(chat(gw, "gpt-4o-mini", false)).await;
    assert_eq!(parts.status, 200);

    // After the open time a probe goes through; the upstream recovered.
    recovered.store(true, Ordering::SeqCst);
    advance(Duration::from_secs(wait)).await;
    let (parts, _) = support::send(chat(gw, "sim-down", false)).await;
    assert_eq!(parts.status, 200);
    assert_eq!(calls(&up, "sim-down"), 3);
}

const EVENTS: [&str; 4] = [
    "data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n",
    ": keep-alive\n\n",
    "data: {\"choices\":[{\"delta\":{\"content\":\"lo\"}}]}\n\n",
    "data: [DONE]\n\n",
];

#[tokio::test(start_paused = true)]
async fn sse_passes_through_byte_identical() {
    let _hold = support::hold_clock();
    let up = Upstream::new().first([Plan::sse(&EVENTS)]);
    let gw = gateway(config(), spawn_upstream(&up)).await;

    let (parts, body) = support::send(chat(gw, "gpt-4o-mini", true)).await;
    assert_eq!(parts.status, 200);
    assert_eq!(parts.headers["content-type"], "text/event-stream");
    assert_eq!(body, EVENTS.concat());
}

#[tokio::test(start_paused = true)]
async fn a_stalled_stream_ends_with_an_error_event() {
    let _hold = support::hold_clock();
    let up = Upstream::new().first([Plan::sse(&EVENTS[..2]).then_stall()]);
    let gw = gateway(
        config().stream_idle_timeout(Duration::from_secs(20)),
        spawn_upstream(&up),
    )
    .await;

    let res = support::client()
        .request(chat(gw, "sim-stall", true))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let mut body = res.into_body();
    let mut got = Vec::new();
    while got.len() < EVENTS[0].len() + EVENTS[1].len() {
        let frame = body.frame().await.unwrap().unwrap();
        got.extend_from_slice(&frame.into_data().unwrap());
    }
    assert_eq!(got, EVENTS[..2].concat().as_bytes());

    // Silence for the idle limit: one last event in the envelope, then the end.
    advance(Duration::from_secs(20)).await;
    let rest = body
        .collect()
        .await
        .expect("an event, not a reset")
        .to_bytes();
    let text = std::str::from_utf8(&rest).unwrap();
    let json = text
        .strip_prefix("data: ")
        .and_then(|t| t.strip_suffix("\n\n"))
        .expect(text);
    let err = support::envelope(json.as_bytes());
    assert_eq!(
        (err["type"].as_str(), err["code"].as_str()),
        (Some("timeout_error"), Some("timeout"))
    );
    assert_eq!(err["message"], "stream idle for longer than 20s");
}

#[tokio::test(start_paused = true)]
async fn a_20_mb_error_body_is_answered_without_buffering_it() {
    let _hold = support::hold_clock();
    // A 500 whose 20 MB body is produced 64 KiB at a time, counted.
    let produced = Arc::new(AtomicUsize::new(0));
    let huge = Plan::status(500)
        .header("content-type", "text/plain")
        .body_with({
            let produced = produced.clone();
            move || {
                let produced = produced.clone();
                let chunks = futures_util::stream::iter(0..320).map(move |_| {
                    produced.fetch_add(1, Ordering::SeqCst);
                    Ok::<_, BoxError>(Frame::data(Bytes::from(vec![b'e'; 64 * 1024])))
                });
                StreamBody::new(chunks).boxed_unsync()
            }
        });
    let up = Upstream::new().first([huge]);
    let gw = gateway(config().max_retries(0), spawn_upstream(&up)).await;

    let (parts, body) = support::send(chat(gw, "huge", false)).await;
    assert_eq!(parts.status, 500);
    let err = support::envelope(&body);
    assert_eq!(
        (err["code"].as_str(), err["message"].as_str()),
        (Some("internal_error"), Some("internal error"))
    );
    // The gateway read a few KiB and hung up: the upstream never got to
    // produce all 320 chunks (socket buffers hold a few of them).
    let produced = produced.load(Ordering::SeqCst);
    assert!(produced < 320, "{produced} of 320 chunks produced");
}

/// A client that goes away cancels the upstream call. This test runs on the
/// real clock; the timeout only bounds a failure, it is not waited out.
#[tokio::test]
async fn a_client_that_disconnects_cancels_the_upstream_call() {
    let up = Upstream::always(Plan::hang());
    let gw = gateway(config(), spawn_upstream(&up)).await;

    let call = tokio::spawn(support::client().request(chat(gw, "hang", false)));
    // Wait until the upstream holds the call, then hang up.
    while calls(&up, "hang") == 0 {
        tokio::task::yield_now().await;
    }
    call.abort();
    tokio::time::timeout(Duration::from_secs(10), up.cancellation())
        .await
        .expect("the upstream call was cancelled");
    assert_eq!(up.cancelled(), 1);
    assert_eq!(up.calls(), 1);
}

#[test]
fn the_flags_and_defaults_are_those_of_the_design() {
    let run = |flags: &[&str]| match args::parse(flags.iter().map(|f| f.to_string())) {
        Ok(args::Parsed::Run(a)) => *a,
        other => panic!("{other:?}"),
    };
    let a = run(&[]);
    assert_eq!(a.listen.to_string(), "127.0.0.1:8080");
    assert!(a.upstream.is_none());
    let s = Duration::from_secs;
    let design = ResilienceConfig::default()
        .max_retries(3)
        .total_timeout(s(60))
        .attempt_timeout(s(30))
        .stream_first_byte_timeout(s(60))
        .stream_idle_timeout(s(60))
        .stream_timeout(s(300))
        .max_retry_after(s(60))
        .breaker_min_calls(10)
        .breaker_failure_ratio(0.5)
        .breaker_window(s(30))
        .breaker_open_duration(s(30));
    assert_eq!(a.config, design);

    let flags = [
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        "https://api.example.com",
        "--max-retries",
        "5",
        "--timeout",
        "2m",
        "--attempt-timeout",
        "250ms",
        "--stream-first-byte-timeout",
        "1.5s",
        "--stream-idle-timeout",
        "20s",
        "--stream-timeout=5m",
        "--max-retry-after",
        "10s",
        "--breaker-min-calls",
        "4",
        "--breaker-failure-ratio",
        "0.25",
        "--breaker-window",
        "1m",
        "--breaker-open",
        "45s",
    ];
    let a = run(&flags);
    assert_eq!(a.listen.port(), 0);
    assert_eq!(a.upstream.unwrap().host(), Some("api.example.com"));
    let expected = ResilienceConfig::default()
        .max_retries(5)
        .total_timeout(s(120))
        .attempt_timeout(Duration::from_millis(250))
        .stream_first_byte_timeout(Duration::from_millis(1500))
        .stream_idle_timeout(s(20))
        .stream_timeout(s(300))
        .max_retry_after(s(10))
        .breaker_min_calls(4)
        .breaker_failure_ratio(0.25)
        .breaker_window(s(60))
        .breaker_open_duration(s(45));
    assert_eq!(a.config, expected);

    for flag in flags
        .iter()
        .filter(|f| f.starts_with("--") && !f.contains('='))
    {
        assert!(args::USAGE.contains(flag), "--help names {flag}");
    }
    assert!(args::parse(["--timeout".into(), "soon".into()])
        .unwrap_err()
        .contains("not a duration"));
    assert!(args::parse(["--nope".into(), "1".into()])
        .unwrap_err()
        .contains("unknown flag"));
    assert!(args::parse(["--upstream".into(), "ftp://x".into()]).is_err());
    for help in ["--help", "-h"] {
        assert!(matches!(args::parse([help.into()]), Ok(args::Parsed::Help)));
    }
    assert!(args::USAGE.contains("--help"));
}

/// The example a newcomer runs: its first stdout line is the address, and it
/// answers in the envelope.
#[tokio::test]
async fn the_example_binary_prints_its_address_first() {
    use tokio::io::AsyncBufReadExt;

    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join("gateway");
    let mut child = tokio::process::Command::new(&bin)
        .args(["--listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("{} (built by `cargo test`): {e}", bin.display()));
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next_line().await.unwrap().unwrap();
    let addr = first
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("{first}"));
    let addr: SocketAddr = addr.parse().unwrap();
    assert_ne!(addr.port(), 0);

    // The embedded simulator answers `sim-badkey` with a 401.
    let (parts, body) = support::send(chat(addr, "sim-badkey", false)).await;
    assert_eq!(parts.status, 401);
    let err = support::envelope(&body);
    assert_eq!(
        (err["type"].as_str(), err["code"].as_str()),
        (Some("authentication_error"), Some("invalid_api_key"))
    );
    child.kill().await.unwrap();
}
