//! Responses: the log line at the end of the body, the shutdown cut, a
//! compressed event stream.

use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::advance;

use super::raw::{bounded, get, raw, read_response};
use super::upstream::spawn_upstream;
use crate::gateway_harness::start;
use crate::log;
use crate::support;

#[tokio::test(start_paused = true)]
async fn the_log_line_is_written_when_the_body_ends_and_escapes_the_client() {
    let _hold = support::hold_clock();
    let up = spawn_upstream();
    let mut opts = up.options();
    opts.format = log::LogFormat::Json;
    let mut gw = start(opts).await;

    // A stream lasting 20 s of (virtual) time.
    let model = "evil\\nmodel\\u001b[31m";
    let body = format!(r#"{{"model":"{model}","stream":true}}"#);
    let req = format!(
        "POST /sse/gated HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut s = bounded(TcpStream::connect(gw.addr)).await.unwrap();
    s.write_all(req.as_bytes()).await.unwrap();
    up.wait_for_calls(1).await;
    advance(Duration::from_secs(20)).await;
    assert!(
        gw.lines.try_recv().is_err(),
        "nothing logged before the end"
    );
    up.release();
    let res = bounded(read_response(&mut s)).await;
    assert!(res.text().ends_with("data: [DONE]\n\n"));

    let line = bounded(gw.lines.recv()).await.unwrap();
    assert!(!line.contains('\n') && !line.contains('\u{1b}'), "{line}");
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["model"], "evil\nmodel\u{1b}[31m");
    assert_eq!(
        (v["status"].as_u64(), v["streaming"].as_bool()),
        (Some(200), Some(true))
    );
    assert!(v["latency_ms"].as_u64().unwrap() >= 20_000, "{line}");
    assert_eq!(v["target"], "default:evil\nmodel\u{1b}[31m");
    assert_eq!(v["path"], "/sse/gated");
}

#[tokio::test(start_paused = true)]
async fn at_the_end_of_the_grace_a_stream_ends_with_a_last_error_event() {
    let _hold = support::hold_clock();
    let up = spawn_upstream();
    let gw = start(up.options()).await;
    let mut s = bounded(TcpStream::connect(gw.addr)).await.unwrap();
    s.write_all(b"GET /sse/gated HTTP/1.1\r\nhost: gw\r\naccept: text/event-stream\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    up.wait_for_calls(1).await;
    gw.drain.fire();
    let res = bounded(read_response(&mut s)).await;
    let text = res.text();
    let last = text.rsplit("\n\n").nth(1).unwrap();
    let err = support::envelope(last.strip_prefix("data: ").unwrap().as_bytes());
    assert_eq!(err["type"], "service_unavailable");
    assert!(!text.contains("[DONE]"));
    up.release();
}

#[tokio::test(start_paused = true)]
async fn a_compressed_event_stream_is_refused_rather_than_corrupted() {
    let _hold = support::hold_clock();
    let up = spawn_upstream();
    let mut opts = up.options();
    opts.config = opts.config.max_retries(0);
    let gw = start(opts).await;
    let res = raw(gw.addr, &get("/sse/gzip")).await;
    assert_eq!(res.status, Some(502));
    assert_eq!(res.header("content-encoding"), None);
    assert_eq!(support::envelope(&res.body)["type"], "upstream_error");
}
