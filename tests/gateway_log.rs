//! The gateway's JSON log (`--log-format json`): one object per line,
//! written when the response body has ended, with the call's real outcome,
//! attempts and latency.
//!
//! The gateway runs in-process on the test's paused and held clock (only
//! `tokio::time::advance` moves it), in front of the scripted upstream on
//! its own thread.

mod support;

include!("support/gateway_modules.rs");

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use support::{Plan, Upstream};
use tokio::time::advance;
use tower_http_resilience::ResilienceConfig;

const SEC: Duration = Duration::from_secs(1);

fn chat(gw: SocketAddr, model: &str, id: &str, stream: bool) -> Request<Full<Bytes>> {
    let body = format!(
        r#"{{"model":"{model}","messages":[{{"role":"user","content":"hi"}}],"stream":{stream}}}"#
    );
    Request::post(format!("http://{gw}/v1/chat/completions"))
        .header("content-type", "application/json")
        .header("x-request-id", id)
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

/// Starts the gateway, logging JSON, in front of `upstream`.
async fn start(config: ResilienceConfig, upstream: &Upstream) -> gateway_harness::Running {
    let served = upstream.clone();
    let addr = support::spawn_server(move || served);
    let mut options = gateway_harness::Options::new(format!("http://{addr}"));
    options.config = config;
    options.format = log::LogFormat::Json;
    gateway_harness::start(options).await
}

/// The next log line, parsed: it must be there already.
fn line(gw: &mut gateway_harness::Running) -> serde_json::Value {
    let line = gw
        .lines
        .try_recv()
        .expect("a line per call, written by now");
    assert!(!line.contains('\n'), "{line}");
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
}

/// The fields every call's line has, but `ts` and `latency_ms`.
fn fields(v: &serde_json::Value) -> serde_json::Value {
    let mut v = v.clone();
    let object = v.as_object_mut().unwrap();
    let ts = object.remove("ts").unwrap();
    assert!(ts.as_str().unwrap().ends_with('Z'), "RFC 3339: {ts}");
    object.remove("latency_ms").unwrap().as_u64().unwrap();
    // Nothing in these tests is held back by pacing.
    assert_eq!(object.remove("held_ms"), Some(serde_json::Value::Null));
    v
}

async fn until_calls(upstream: &Upstream, n: usize) {
    while upstream.calls() < n {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn each_call_has_one_line_with_its_real_outcome() {
    let _hold = support::hold_clock();
    let upstream = Upstream::script([
        Plan::json(200, "{}"),
        Plan::status(503),
        Plan::status(503),
        Plan::json(200, "{}"),
        Plan::hang(),
        Plan::hang(),
        Plan::json(200, "{}"),
    ]);
    let config = ResilienceConfig::default().attempt_timeout(2 * SEC);
    let mut gw = start(config, &upstream).await;

    let (parts, _) = support::send(chat(gw.addr, "gpt-4o", "req-ok", false)).await;
    assert_eq!(parts.status, 200);
    let ok = line(&mut gw);
    assert_eq!(
        fields(&ok),
        serde_json::json!({
            "request_id": "req-ok", "method": "POST", "path": "/v1/chat/completions",
            "model": "gpt-4o", "target": "default:gpt-4o", "status": 200, "code": null,
            "attempts": 1, "streaming": false,
        })
    );

    let (parts, _) = support::send(chat(gw.addr, "gpt-4o", "req-retried", false)).await;
    assert_eq!(parts.status, 200);
    let retried = line(&mut gw);
    assert_eq!(
        (
            &retried["request_id"],
            &retried["status"],
            &retried["code"],
            &retried["attempts"]
        ),
        (
            &"req-retried".into(),
            &200.into(),
            &serde_json::Value::Null,
            &3.into()
        )
    );

    // Two attempts that never answer, each cut by the attempt timeout, and
    // a third that succeeds: one line, every attempt, the whole time.
    let call = tokio::spawn(support::send(chat(gw.addr, "slow", "req-slow", false)));
    until_calls(&upstream, 5).await;
    advance(2 * SEC).await;
    until_calls(&upstream, 6).await;
    advance(2 * SEC).await;
    until_calls(&upstream, 7).await;
    let (parts, _) = call.await.unwrap();
    assert_eq!(parts.status, 200, "the third attempt answered");
    let timed = line(&mut gw);
    assert_eq!(
        (
            &timed["model"],
            &timed["status"],
            &timed["code"],
            &timed["attempts"]
        ),
        (
            &"slow".into(),
            &200.into(),
            &serde_json::Value::Null,
            &3.into()
        )
    );
    assert!(timed["latency_ms"].as_u64().unwrap() >= 4_000, "{timed}");
    assert!(gw.lines.try_recv().is_err(), "one line per call");
}

#[tokio::test(start_paused = true)]
async fn a_timeout_is_logged_with_its_code_and_every_attempt() {
    let _hold = support::hold_clock();
    let upstream = Upstream::always(Plan::hang());
    let config = ResilienceConfig::default()
        .attempt_timeout(2 * SEC)
        .max_retries(1);
    let mut gw = start(config, &upstream).await;
    let call = tokio::spawn(support::send(chat(gw.addr, "slow", "req-timeout", false)));
    until_calls(&upstream, 1).await;
    advance(2 * SEC).await;
    until_calls(&upstream, 2).await;
    advance(2 * SEC).await;
    let (parts, body) = call.await.unwrap();
    assert_eq!(parts.status, 504);
    assert_eq!(support::envelope(&body)["code"], "timeout");
    let v = line(&mut gw);
    assert_eq!(
        fields(&v),
        serde_json::json!({
            "request_id": "req-timeout", "method": "POST", "path": "/v1/chat/completions",
            "model": "slow", "target": "default:slow", "status": 504, "code": "timeout",
            "attempts": 2, "streaming": false,
        })
    );
    assert!(v["latency_ms"].as_u64().unwrap() >= 4_000, "{v}");
}

#[tokio::test(start_paused = true)]
async fn a_stream_is_logged_when_it_ends_whole_or_cut_by_the_idle_clock() {
    let _hold = support::hold_clock();
    let (events, fed) = tokio::sync::mpsc::channel(4);
    let upstream = Upstream::script([
        Plan::status(200)
            .header("content-type", "text/event-stream")
            .fed_by(fed),
        Plan::sse(&["data: 1\n\n"]).then_stall(),
    ]);
    let event = |e: &'static str| Ok(http_body::Frame::data(Bytes::from_static(e.as_bytes())));
    let config = ResilienceConfig::default().stream_idle_timeout(20 * SEC);
    let mut gw = start(config, &upstream).await;

    // A whole stream: its line waits for its end, and its latency covers it.
    let res = tokio::spawn(support::client().request(chat(gw.addr, "gpt-4o", "req-stream", true)));
    events.send(event("data: 1\n\n")).await.unwrap();
    let res = res.await.unwrap().unwrap();
    let mut body = res.into_body();
    assert_eq!(
        body.frame().await.unwrap().unwrap().into_data().unwrap(),
        "data: 1\n\n"
    );
    advance(5 * SEC).await;
    assert!(gw.lines.try_recv().is_err(), "nothing before the end");
    events.send(event("data: [DONE]\n\n")).await.unwrap();
    drop(events);
    let rest = body.collect().await.unwrap().to_bytes();
    assert_eq!(rest, "data: [DONE]\n\n");
    let v = line(&mut gw);
    assert_eq!(
        (&v["request_id"], &v["status"], &v["code"], &v["streaming"]),
        (
            &"req-stream".into(),
            &200.into(),
            &serde_json::Value::Null,
            &true.into()
        )
    );
    assert_eq!(v["latency_ms"], 5_000, "the whole stream: {v}");

    // A stream that stalls: the idle clock ends it with an error event.
    let res = support::client()
        .request(chat(gw.addr, "sim-stall", "req-stall", true))
        .await
        .unwrap();
    let mut body = res.into_body();
    body.frame().await.unwrap().unwrap();
    advance(20 * SEC).await;
    let rest = body.collect().await.unwrap().to_bytes();
    assert!(rest.starts_with(b"data: {\"error\""), "{rest:?}");
    let v = line(&mut gw);
    assert_eq!(
        fields(&v),
        serde_json::json!({
            "request_id": "req-stall", "method": "POST", "path": "/v1/chat/completions",
            "model": "sim-stall", "target": "default:sim-stall", "status": 200,
            "code": "timeout", "attempts": 1, "streaming": true,
        })
    );
    assert!(v["latency_ms"].as_u64().unwrap() >= 20_000, "{v}");
}

#[tokio::test(start_paused = true)]
async fn a_credential_sent_as_the_model_is_neither_logged_nor_sent_back_in_a_header() {
    let _hold = support::hold_clock();
    let key = "sk-proj-abcDEF1234567890xyz";
    let upstream = Upstream::script([Plan::json(200, "{}"), Plan::status(404)]);
    let mut gw = start(ResilienceConfig::default(), &upstream).await;
    for (model, status) in [(key.to_owned(), 200), (format!("api_key={key}"), 404)] {
        let mut req = chat(gw.addr, &model, "req-key", false);
        let bearer = format!("Bearer {key}").parse().unwrap();
        req.headers_mut().insert("authorization", bearer);
        let (parts, body) = support::send(req).await;
        assert_eq!(parts.status, status);
        for (name, value) in &parts.headers {
            let value = value.to_str().unwrap();
            assert!(!value.contains("abcDEF"), "{name}: {value}");
        }
        assert!(!String::from_utf8_lossy(&body).contains("abcDEF"));
        let logged = line(&mut gw);
        assert!(!logged.to_string().contains("abcDEF"), "{logged}");
        assert_eq!(logged["model"], "[redacted]");
    }
    // The upstream got the body as the client wrote it.
    assert_eq!(upstream.received()[0].json()["model"], key);
}
