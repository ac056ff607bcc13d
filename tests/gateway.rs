//! The gateway example end to end: its own code (`examples/gateway/`) runs
//! in-process on 127.0.0.1 in front of a scripted axum upstream (its own
//! thread and runtime), called by a hyper client.
//!
//! The test runtime's clock is paused and held (`support::hold_clock`): it
//! moves only by `tokio::time::advance`, so stalls are exact and nothing
//! sleeps for real. Retries use a zero backoff so that they need no time.

mod support;

include!("support/gateway_modules.rs");

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use axum::Router;
use bytes::Bytes;
use futures_util::StreamExt;
use http::{Request, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, Full, StreamBody};
use tokio::time::advance;
use tower_http_resilience::ResilienceConfig;

/// What the upstream does with one request for a model.
#[derive(Clone)]
enum Plan {
    Respond(u16, Vec<(String, String)>, Bytes),
    /// Server-Sent Events; with `stall`, silence after the last one.
    Sse(Vec<&'static str>, bool),
    /// A 500 whose 20 MB body is produced 64 KiB at a time.
    Huge,
    /// Never answers.
    Hang,
}

#[derive(Default)]
struct Upstream {
    plans: Mutex<HashMap<String, VecDeque<Plan>>>,
    calls: Mutex<HashMap<String, u32>>,
    /// 64 KiB chunks of `Plan::Huge` bodies produced.
    produced: Arc<AtomicUsize>,
    /// `Plan::Hang` handlers dropped (their caller went away).
    cancelled: Arc<AtomicUsize>,
    cancel_tx: Mutex<Option<tokio::sync::mpsc::UnboundedSender<()>>>,
}

impl Upstream {
    fn plan(&self, model: &str, plans: impl IntoIterator<Item = Plan>) {
        self.plans
            .lock()
            .unwrap()
            .entry(model.to_owned())
            .or_default()
            .extend(plans);
    }

    fn calls(&self, model: &str) -> u32 {
        self.calls.lock().unwrap().get(model).copied().unwrap_or(0)
    }
}

struct DropGuard(
    Arc<AtomicUsize>,
    Option<tokio::sync::mpsc::UnboundedSender<()>>,
);

impl Drop for DropGuard {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
        if let Some(tx) = &self.1 {
            let _ = tx.send(());
        }
    }
}

async fn upstream_handler(State(up): State<Arc<Upstream>>, body: Bytes) -> Response {
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let model = v["model"].as_str().unwrap_or("-").to_owned();
    let n = {
        let mut calls = up.calls.lock().unwrap();
        let n = calls.entry(model.clone()).or_default();
        *n += 1;
        *n
    };
    let plan = up
        .plans
        .lock()
        .unwrap()
        .get_mut(&model)
        .and_then(VecDeque::pop_front);
    match plan {
        None => {
            let body = format!(r#"{{"id":"ok-{model}-{n}","object":"chat.completion"}}"#);
            Response::builder()
                .header("content-type", "application/json")
                .body(Body::from(body))
                .unwrap()
        }
        Some(Plan::Respond(status, headers, body)) => {
            let mut b = Response::builder().status(status);
            for (k, v) in headers {
                b = b.header(k, v);
            }
            b.body(Body::from(body)).unwrap()
        }
        Some(Plan::Sse(events, stall)) => {
            let events = futures_util::stream::iter(events)
                .map(|e| Ok::<_, Infallible>(Frame::data(Bytes::from_static(e.as_bytes()))));
            let body = if stall {
                Body::new(StreamBody::new(
                    events.chain(futures_util::stream::pending()),
                ))
            } else {
                Body::new(StreamBody::new(events))
            };
            Response::builder()
                .header("content-type", "text/event-stream")
                .body(body)
                .unwrap()
        }
        Some(Plan::Huge) => {
            let produced = up.produced.clone();
            let chunks = futures_util::stream::iter(0..320).map(move |_| {
                produced.fetch_add(1, Ordering::SeqCst);
                Ok::<_, Infallible>(Frame::data(Bytes::from(vec![b'e'; 64 * 1024])))
            });
            Response::builder()
                .status(500)
                .header("content-type", "text/plain")
                .body(Body::new(StreamBody::new(chunks)))
                .unwrap()
        }
        Some(Plan::Hang) => {
            let _guard = DropGuard(up.cancelled.clone(), up.cancel_tx.lock().unwrap().clone());
            futures_util::future::pending::<()>().await;
            unreachable!()
        }
    }
}

fn spawn_upstream() -> (SocketAddr, Arc<Upstream>) {
    let up = Arc::new(Upstream::default());
    let state = up.clone();
    let addr =
        support::spawn_server(move || Router::new().fallback(upstream_handler).with_state(state));
    (addr, up)
}

/// The gateway's defaults, with retries that wait no time.
fn config() -> ResilienceConfig {
    ResilienceConfig::default()
}

/// Starts the gateway (on the test's runtime) in front of `upstream`.
async fn gateway(config: ResilienceConfig, upstream: SocketAddr) -> SocketAddr {
    let mut options = gateway_harness::Options::new(format!("http://{upstream}"));
    options.config = config;
    gateway_harness::start(options).await.addr
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
    let (up_addr, up) = spawn_upstream();
    let gw = gateway(config().max_retries(0), up_addr).await;

    for case in support::cases() {
        let headers = case
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        up.plan(
            &case.name,
            [Plan::Respond(
                case.status,
                headers,
                Bytes::from(case.body.clone()),
            )],
        );
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
        assert_eq!(up.calls(name), 1, "{name}: max_retries 0 means one attempt");
    }
}

#[tokio::test(start_paused = true)]
async fn retries_follow_the_error_table() {
    let _hold = support::hold_clock();
    let (up_addr, up) = spawn_upstream();
    let gw = gateway(config().max_retries(3), up_addr).await;
    let fail = |status: u16| Plan::Respond(status, vec![], Bytes::new());

    // Two failures, then the default success.
    up.plan("flaky", [fail(503), fail(502)]);
    let (parts, body) = support::send(chat(gw, "flaky", false)).await;
    assert_eq!(parts.status, StatusCode::OK);
    assert_eq!(
        body, r#"{"id":"ok-flaky-3","object":"chat.completion"}"#,
        "the third attempt's answer"
    );
    assert_eq!(up.calls("flaky"), 3);
    assert_eq!(parts.headers["x-gateway-attempts"], "3");

    // Always failing: 1 + 3 attempts, then the last failure as the envelope,
    // which tells the caller not to retry what the gateway retried.
    up.plan("dead", [fail(500), fail(500), fail(500), fail(500)]);
    let (parts, body) = support::send(chat(gw, "dead", false)).await;
    assert_eq!(parts.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(support::envelope(&body)["code"], "internal_error");
    assert_eq!(up.calls("dead"), 4);
    assert_eq!(parts.headers["x-gateway-attempts"], "4");
    assert_eq!(parts.headers["x-should-retry"], "false");

    // Not retried: a client error.
    up.plan("bad", [fail(400)]);
    let (parts, _) = support::send(chat(gw, "bad", false)).await;
    assert_eq!(parts.status, StatusCode::BAD_REQUEST);
    assert_eq!(up.calls("bad"), 1);
    assert_eq!(parts.headers["x-gateway-attempts"], "1");
}

#[tokio::test(start_paused = true)]
async fn a_total_timeout_reports_every_attempt_sent() {
    let _hold = support::hold_clock();
    let (up_addr, up) = spawn_upstream();
    let gw = gateway(
        config()
            .total_timeout(Duration::from_secs(5))
            .attempt_timeout(Duration::from_secs(5)),
        up_addr,
    )
    .await;
    let fail = Plan::Respond(503, vec![], Bytes::new());
    up.plan("slow", [fail.clone(), fail, Plan::Hang]);

    let res = tokio::spawn(support::send(chat(gw, "slow", false)));
    while up.calls("slow") < 3 {
        tokio::task::yield_now().await;
    }
    advance(Duration::from_secs(5)).await;
    let (parts, body) = res.await.unwrap();
    assert_eq!(parts.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(support::envelope(&body)["code"], "timeout");
    assert_eq!(parts.headers["x-gateway-attempts"], "3");
    assert_eq!(parts.headers["x-should-retry"], "false");
}

#[tokio::test(start_paused = true)]
async fn the_breaker_opens_for_one_model_only() {
    let _hold = support::hold_clock();
    let (up_addr, up) = spawn_upstream();
    let gw = gateway(config().max_retries(0).breaker_min_calls(2), up_addr).await;
    let down = || Plan::Respond(503, vec![], Bytes::from_static(b"down"));
    up.plan("sim-down", [down(), down(), down(), down()]);

    for _ in 0..2 {
        let (parts, body) = support::send(chat(gw, "sim-down", false)).await;
        assert_eq!(parts.status, 503);
        assert_eq!(support::envelope(&body)["code"], "service_unavailable");
    }
    // Open: answered at once, without calling the upstream.
    let (parts, body) = support::send(chat(gw, "sim-down", false)).await;
    assert_eq!(parts.status, 503);
    assert_eq!(support::envelope(&body)["code"], "circuit_open");
    assert_eq!(parts.headers["x-gateway-attempts"], "0", "nothing was sent");
    assert_eq!(parts.headers["x-gateway-target"], "default:sim-down");
    let wait: u64 = parts.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((27..=33).contains(&wait), "30 s ± 10 % jitter, got {wait}");
    assert_eq!(up.calls("sim-down"), 2);

    // Another model is untouched.
    let (parts, _) = support::send(chat(gw, "gpt-4o-mini", false)).await;
    assert_eq!(parts.status, 200);

    // After the open time a probe goes through; the upstream recovered.
    up.plans.lock().unwrap().remove("sim-down");
    advance(Duration::from_secs(wait)).await;
    let (parts, _) = support::send(chat(gw, "sim-down", false)).await;
    assert_eq!(parts.status, 200);
    assert_eq!(up.calls("sim-down"), 3);
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
    let (up_addr, up) = spawn_upstream();
    let gw = gateway(config(), up_addr).await;
    up.plan("gpt-4o-mini", [Plan::Sse(EVENTS.to_vec(), false)]);

    let (parts, body) = support::send(chat(gw, "gpt-4o-mini", true)).await;
    assert_eq!(parts.status, 200);
    assert_eq!(parts.headers["content-type"], "text/event-stream");
    assert_eq!(body, EVENTS.concat());
}

#[tokio::test(start_paused = true)]
async fn a_stalled_stream_ends_with_an_error_event() {
    let _hold = support::hold_clock();
    let (up_addr, up) = spawn_upstream();
    let gw = gateway(
        config().stream_idle_timeout(Duration::from_secs(20)),
        up_addr,
    )
    .await;
    up.plan("sim-stall", [Plan::Sse(EVENTS[..2].to_vec(), true)]);

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
    let (up_addr, up) = spawn_upstream();
    let gw = gateway(config().max_retries(0), up_addr).await;
    up.plan("huge", [Plan::Huge]);

    let (parts, body) = support::send(chat(gw, "huge", false)).await;
    assert_eq!(parts.status, 500);
    let err = support::envelope(&body);
    assert_eq!(
        (err["code"].as_str(), err["message"].as_str()),
        (Some("internal_error"), Some("internal error"))
    );
    // The gateway read a few KiB and hung up: the upstream never got to
    // produce all 320 chunks (socket buffers hold a few of them).
    let produced = up.produced.load(Ordering::SeqCst);
    assert!(produced < 320, "{produced} of 320 chunks produced");
}

/// A client that goes away cancels the upstream call. This test runs on the
/// real clock; the timeout only bounds a failure, it is not waited out.
#[tokio::test]
async fn a_client_that_disconnects_cancels_the_upstream_call() {
    let (up_addr, up) = spawn_upstream();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    *up.cancel_tx.lock().unwrap() = Some(tx);
    let gw = gateway(config(), up_addr).await;
    up.plan("hang", [Plan::Hang]);

    let call = tokio::spawn(support::client().request(chat(gw, "hang", false)));
    // Wait until the upstream holds the call, then hang up.
    while up.calls("hang") == 0 {
        tokio::task::yield_now().await;
    }
    call.abort();
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("the upstream call was cancelled");
    assert_eq!(up.cancelled.load(Ordering::SeqCst), 1);
}

#[test]
fn the_flags_and_defaults_are_those_of_the_design() {
    let run = |flags: &[&str]| match args::parse(flags.iter().map(|f| f.to_string())) {
        Ok(args::Parsed::Run(a)) => a,
        other => panic!("{flags:?}: {other:?}"),
    };
    let a = run(&[]);
    assert_eq!(a.listen.to_string(), "127.0.0.1:8080");
    assert!(matches!(a.upstreams, args::Upstreams::Simulator));
    assert!(a.checks, "checks are on by default");
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
    assert_eq!(a.upstreams.names(), ["default"]);
    let args::Upstreams::Given(ups) = &a.upstreams else {
        panic!("--upstream names one")
    };
    assert_eq!(ups[0].base.to_string(), "https://api.example.com");
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
    let err = |flags: &[&str]| args::parse(flags.iter().map(|f| f.to_string())).unwrap_err();
    assert!(err(&["--timeout", "soon"]).contains("not a duration"));
    assert!(err(&["--upstream", "ftp://x"]).contains("http:// or https://"));
}

/// The example a newcomer runs: its first stdout line is the address, and it
/// answers in the envelope.
#[tokio::test]
async fn the_example_binary_prints_its_address_first() {
    use tokio::io::AsyncBufReadExt;

    let bin = gateway_harness::example_binary();
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
    // Two simulated providers, and the route that falls back, said.
    let mut said = Vec::new();
    while let Some(line) = lines.next_line().await.unwrap() {
        let done = line.starts_with("try: ");
        said.push(line);
        if done {
            break;
        }
    }
    for want in [
        "upstream sim: http://127.0.0.1:",
        "upstream sim-backup: http://127.0.0.1:",
        "route: sim-down -> sim, sim-backup:gpt-4o-mini",
        "route: * (every other model) -> sim",
    ] {
        assert!(said.iter().any(|l| l.starts_with(want)), "{want}: {said:?}");
    }

    // The embedded simulator answers `sim-badkey` with Token360's 401.
    let (parts, body) = support::send(chat(addr, "sim-badkey", false)).await;
    assert_eq!(parts.status, 401);
    let err = support::envelope(&body);
    assert_eq!(
        (err["type"].as_str(), err["code"].as_str()),
        (Some("authentication_error"), Some("invalid_api_key"))
    );
    child.kill().await.unwrap();
}

#[test]
fn the_hardening_flags_and_their_defaults() {
    let parse = |flags: &[&str]| args::parse(flags.iter().map(|f| f.to_string()));
    let Ok(args::Parsed::Run(a)) = parse(&[]) else {
        panic!("no flags run the gateway")
    };
    let s = Duration::from_secs;
    assert_eq!(
        a.limits,
        server::Limits {
            max_connections: 1024,
            header_read_timeout: s(10),
            idle_timeout: s(60),
        }
    );
    assert_eq!(
        (a.max_request_body, a.max_buffered_bodies),
        (32 << 20, 256 << 20)
    );
    assert_eq!((a.shutdown_grace, a.body_timeout), (s(30), s(60)));
    assert_eq!(a.log_format, log::LogFormat::Text);

    let flags = [
        "--max-connections",
        "64",
        "--header-read-timeout",
        "2s",
        "--idle-timeout=30s",
        "--max-request-body",
        "512KiB",
        "--max-buffered-bodies",
        "128MiB",
        "--shutdown-grace",
        "5s",
        "--log-format",
        "json",
        "--timeout",
        "90s",
    ];
    let Ok(args::Parsed::Run(a)) = parse(&flags) else {
        panic!("{flags:?}")
    };
    assert_eq!(a.limits.max_connections, 64);
    assert_eq!(a.limits.header_read_timeout, s(2));
    assert_eq!(a.limits.idle_timeout, s(30));
    assert_eq!(
        (a.max_request_body, a.max_buffered_bodies),
        (512 << 10, 128 << 20)
    );
    assert_eq!(a.shutdown_grace, s(5));
    assert_eq!(a.log_format, log::LogFormat::Json);
    assert_eq!(a.body_timeout, s(90), "a body has the call's total timeout");
    assert_eq!(a.config, ResilienceConfig::default().total_timeout(s(90)));
    for flag in flags
        .iter()
        .filter(|f| f.starts_with("--"))
        .map(|f| f.split('=').next().unwrap())
    {
        assert!(args::USAGE.contains(flag), "--help names {flag}");
    }

    assert!(matches!(parse(&["--version"]), Ok(args::Parsed::Version)));
    assert!(matches!(parse(&["--help"]), Ok(args::Parsed::Help)));
    assert_eq!(
        parse(&["--bogus"]).unwrap_err(),
        "unknown flag --bogus; see --help",
        "named, not taken for a flag that needs a value"
    );
    assert!(parse(&["--bogus=1"])
        .unwrap_err()
        .starts_with("unknown flag --bogus"));
    for (flag, value) in [
        ("--max-request-body", "lots"),
        ("--max-buffered-bodies", "0"),
        ("--max-connections", "0"),
        ("--header-read-timeout", "0s"),
        ("--log-format", "xml"),
    ] {
        assert!(parse(&[flag, value]).is_err(), "{flag} {value}");
    }
}
