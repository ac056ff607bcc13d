use crate::*;

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
