//! The gateway's fallback end to end: a config file with two real
//! upstreams on 127.0.0.1 and routes of two targets each. A target's model
//! (renamed by the route) picks how its upstream answers
//! (`support/gateway_upstream.rs`): `down` 503, `gone` 404, `badkey` 401,
//! `invalid` 400, `sse-error` a stream that opens with an error event,
//! anything else 200. Each case checks what the client gets (status, body,
//! `x-gateway-target`, `x-gateway-attempts`, the log line) and what each
//! upstream received. Last, the embedded demo: `sim-down` answered by
//! `sim-backup`.
//!
//! The gateway runs in-process on the test's runtime, its clock paused
//! and held (`support::hold_clock`), retries waiting no time; the
//! upstreams run on their own threads with a real clock.

mod support;

include!("support/gateway_modules.rs");

#[path = "support/gateway_upstream.rs"]
mod gateway_upstream;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;

use crate::gateway_harness::{bounded, start, Options, Running};
use crate::gateway_upstream::Recording;

const KEY_A: &str = "sk-upstream-a-0123456789abcdef";
const KEY_B: &str = "sk-upstream-b-0123456789abcdef";
const CLIENT_KEY: &str = "sk-client-own-9876543210";

/// Upstream `a` (its own key) and `b` (its own key), two retries on each
/// target, and the routes of the cases: each route's first target is `a`
/// with a model that fails as the route's name says.
struct Two {
    gw: Running,
    a: Recording,
    b: Recording,
}

impl Two {
    async fn start(name: &str) -> Two {
        let (a, b) = (Recording::spawn("a"), Recording::spawn("b"));
        let text = format!(
            "max_retries = 2\n\
             [[upstream]]\nname = \"a\"\nurl = \"http://{}/v1\"\napi_key_env = \"KEY_A\"\n\
             [[upstream]]\nname = \"b\"\nurl = \"http://{}\"\napi_key_env = \"KEY_B\"\n\
             [[route]]\nmodel = \"gpt-4o\"\ntargets = [\"a:down\", \"b:gpt-4o-mini\"]\n\
             [[route]]\nmodel = \"lost\"\ntargets = [\"a:gone\", \"b\"]\n\
             [[route]]\nmodel = \"locked\"\ntargets = [\"a:badkey\", \"b\"]\n\
             [[route]]\nmodel = \"wrong\"\ntargets = [\"a:invalid\", \"b\"]\n\
             [[route]]\nmodel = \"streamy\"\ntargets = [\"a:sse-error\", \"b\"]\nretries = 1\n\
             [[route]]\nmodel = \"dead\"\ntargets = [\"a:down\", \"b:down\"]\n\
             [[route]]\nmodel = \"slow\"\ntargets = [\"a:down\", \"b:hang\"]\n\
             [[route]]\nmodel = \"long\"\ntargets = [\"a:small\", \"b\"]\n\
             [[route]]\nmodel = \"longer\"\ntargets = [\"a:small\", \"b:small\"]\n\
             [[model]]\nname = \"small\"\ncontext_window = 1000\n",
            a.addr, b.addr
        );
        let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("gw-fb-{name}.toml"));
        std::fs::write(&path, text).unwrap();
        let vars: HashMap<&str, &str> = HashMap::from([("KEY_A", KEY_A), ("KEY_B", KEY_B)]);
        let env = move |k: &str| vars.get(k).map(|v| v.to_string());
        let options = Options::from_args(&["--config", path.to_str().unwrap()], &env);
        Two {
            gw: start(options).await,
            a,
            b,
        }
    }

    /// Sends a chat completion for `model` with the client's credentials.
    async fn chat(&self, model: &str, stream: bool) -> (http::response::Parts, Bytes) {
        bounded(support::send(chat(self.gw.addr, model, stream))).await
    }

    /// Sends a chat completion for `model` whose prompt is `content`.
    async fn say(&self, model: &str, content: &str) -> (http::response::Parts, Bytes) {
        let body = format!(
            r#"{{"model":"{model}","messages":[{{"role":"user","content":"{content}"}}]}}"#
        );
        let req = Request::post(format!("http://{}/v1/chat/completions", self.gw.addr))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        bounded(support::send(req)).await
    }

    /// Asserts that the one call logged so far has the fields `fields`
    /// (`key=value` pairs, in the line's order).
    fn logged(&mut self, fields: &str) {
        let lines: Vec<String> = std::iter::from_fn(|| self.gw.lines.try_recv().ok())
            .filter(|l| l.contains(" target="))
            .collect();
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].contains(&format!(" {fields} ")),
            "{fields}: {lines:?}"
        );
    }
}

fn chat(gw: SocketAddr, model: &str, stream: bool) -> Request<Full<Bytes>> {
    let body = format!(
        r#"{{"model":"{model}","messages":[{{"role":"user","content":"hi"}}],"stream":{stream}}}"#
    );
    Request::post(format!("http://{gw}/v1/chat/completions"))
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {CLIENT_KEY}"))
        .header("x-api-key", "sk-client-x-0123456789")
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

/// `x-gateway-target` and `x-gateway-attempts`.
fn told(parts: &http::response::Parts) -> (&str, &str) {
    let header = |name| parts.headers[name].to_str().unwrap();
    (header("x-gateway-target"), header("x-gateway-attempts"))
}

fn json(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body).unwrap_or_else(|e| panic!("{e}: {body:?}"))
}

#[tokio::test(start_paused = true)]
async fn five_hundreds_are_retried_then_the_second_upstream_serves_with_its_own_key() {
    let _hold = support::hold_clock();
    let mut two = Two::start("503").await;
    let (parts, body) = two.chat("gpt-4o", false).await;
    assert_eq!(parts.status, 200, "{body:?}");
    assert_eq!(
        json(&body),
        serde_json::json!({"upstream": "b", "model": "gpt-4o-mini"})
    );
    assert_eq!(told(&parts), ("b:gpt-4o-mini", "4"), "three on a, one on b");

    let (a, b) = (two.a.seen(), two.b.seen());
    assert_eq!((a.len(), b.len()), (3, 1));
    for (seen, key) in a
        .iter()
        .map(|s| (s, KEY_A))
        .chain(b.iter().map(|s| (s, KEY_B)))
    {
        assert_eq!(
            seen.authorization.as_deref(),
            Some(&*format!("Bearer {key}"))
        );
        assert_eq!(
            (seen.x_api_key.as_deref(), seen.api_key.as_deref()),
            (None, None)
        );
        assert!(
            !seen.all_headers.contains("sk-client"),
            "{}",
            seen.all_headers
        );
    }
    assert!(a.iter().all(|s| s.model.as_deref() == Some("down")));
    assert_eq!(
        a[0].path_and_query, "/v1/chat/completions",
        "/v1 not doubled"
    );
    assert_eq!(b[0].path_and_query, "/v1/chat/completions");

    two.logged("model=gpt-4o target=b:gpt-4o-mini status=200 code=- attempts=4");
}

#[tokio::test(start_paused = true)]
async fn a_target_that_cannot_serve_gets_exactly_one_attempt() {
    let _hold = support::hold_clock();
    let two = Two::start("cannot").await;
    for (model, first) in [("lost", "a:gone"), ("locked", "a:badkey")] {
        let before = two.a.calls();
        let (parts, body) = two.chat(model, false).await;
        assert_eq!(parts.status, 200, "{model}: {body:?}");
        assert_eq!(json(&body)["upstream"], "b", "{model}");
        assert_eq!(told(&parts), (&*format!("b:{model}"), "2"), "{model}");
        assert_eq!(two.a.calls() - before, 1, "{model}: one attempt on {first}");
    }
    assert_eq!(two.b.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn an_invalid_request_goes_back_and_the_second_upstream_is_never_called() {
    let _hold = support::hold_clock();
    let mut two = Two::start("400").await;
    let (parts, body) = two.chat("wrong", false).await;
    assert_eq!(parts.status, 400);
    let err = support::envelope(&body);
    assert_eq!(err["code"], "invalid_value", "{err}");
    assert_eq!(told(&parts), ("a:invalid", "1"));
    assert_eq!((two.a.calls(), two.b.calls()), (1, 0));
    two.logged("target=a:invalid status=400 code=invalid_value attempts=1");
}

#[tokio::test(start_paused = true)]
async fn a_stream_that_opens_with_an_error_event_is_served_by_the_second_upstream() {
    let _hold = support::hold_clock();
    let mut two = Two::start("sse").await;
    let (parts, body) = two.chat("streamy", true).await;
    assert_eq!(parts.status, 200);
    assert_eq!(parts.headers["content-type"], "text/event-stream");
    assert_eq!(
        body, "data: {\"model\":\"streamy\",\"upstream\":\"b\"}\n\ndata: [DONE]\n\n",
        "b's stream, byte for byte, nothing of a's"
    );
    // The route's one retry on `a`, then `b`.
    assert_eq!(told(&parts), ("b:streamy", "3"));
    assert_eq!((two.a.calls(), two.b.calls()), (2, 1));
    two.logged("target=b:streamy status=200 code=- attempts=3 streaming=true");
}

#[tokio::test(start_paused = true)]
async fn every_target_down_is_one_envelope_that_says_do_not_retry() {
    let _hold = support::hold_clock();
    let mut two = Two::start("dead").await;
    let (parts, body) = two.chat("dead", false).await;
    assert_eq!(parts.status, 503);
    assert_eq!(parts.headers["x-should-retry"], "false");
    let err = support::envelope(&body);
    assert_eq!(err["code"], "service_unavailable", "{err}");
    assert!(!String::from_utf8_lossy(&body).contains("sk-"), "{body:?}");
    assert_eq!(told(&parts), ("b:down", "6"), "the last tried; 3 + 3");
    assert_eq!((two.a.calls(), two.b.calls()), (3, 3));
    two.logged("target=b:down status=503 code=service_unavailable attempts=6");
}

/// The total timeout (60 s) cuts a call that hangs on its second target:
/// the 504 names that target and counts the attempts on both.
#[tokio::test(start_paused = true)]
async fn a_total_timeout_names_the_target_it_cut() {
    let _hold = support::hold_clock();
    let two = Two::start("timeout").await;
    let call = tokio::spawn(support::send(chat(two.gw.addr, "slow", false)));
    // Time moves only when told: until `b` holds the call, in small steps.
    bounded(async {
        while two.b.calls() == 0 {
            tokio::time::advance(std::time::Duration::from_millis(1)).await;
        }
    })
    .await;
    tokio::time::advance(std::time::Duration::from_secs(60)).await;
    let (parts, body) = bounded(call).await.unwrap();
    assert_eq!(parts.status, 504, "{body:?}");
    assert_eq!(support::envelope(&body)["code"], "timeout");
    assert_eq!(told(&parts), ("b:hang", "4"));
    assert_eq!((two.a.calls(), two.b.calls()), (3, 1));
}

/// A ~6 KB prompt does not fit `small`'s 1 000 tokens: with another target
/// left, `a:small` is skipped (never called); with none that fits, the
/// call is answered 400 `context_length_exceeded`, nothing sent.
#[tokio::test(start_paused = true)]
async fn a_prompt_over_a_targets_window_skips_it() {
    let _hold = support::hold_clock();
    let two = Two::start("window").await;
    let long = "The quick brown fox jumps over the lazy dog. ".repeat(135);
    let (parts, body) = two.say("long", &long).await;
    assert_eq!(parts.status, 200, "{body:?}");
    assert_eq!(told(&parts), ("b:long", "1"));
    assert_eq!((two.a.calls(), two.b.calls()), (0, 1));

    let (parts, body) = two.say("longer", &long).await;
    assert_eq!(parts.status, 400);
    let err = support::envelope(&body);
    assert_eq!(
        (&err["code"], &err["param"]),
        (&"context_length_exceeded".into(), &"messages".into())
    );
    assert_eq!(told(&parts).1, "0");
    assert_eq!((two.a.calls(), two.b.calls()), (0, 1));

    // A short prompt fits: `a:small` serves.
    let (parts, _) = two.say("long", "hi").await;
    assert_eq!(told(&parts), ("a:small", "1"));
}

/// `a` takes one call a second (`rpm = 60`): a second call at once is not
/// held for `a`'s turn while `b` is left, it goes to `b` at once.
#[tokio::test(start_paused = true)]
async fn a_held_upstream_sends_the_call_to_the_next_target() {
    let _hold = support::hold_clock();
    let (a, b) = (Recording::spawn("a"), Recording::spawn("b"));
    let text = format!(
        "[[upstream]]\nname = \"a\"\nurl = \"http://{}\"\nrpm = 60\n\
         [[upstream]]\nname = \"b\"\nurl = \"http://{}\"\n\
         [[route]]\nmodel = \"m\"\ntargets = [\"a\", \"b\"]\n",
        a.addr, b.addr
    );
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("gw-fb-rpm.toml");
    std::fs::write(&path, text).unwrap();
    let gw = start(Options::from_args(
        &["--config", path.to_str().unwrap()],
        &|_| None,
    ))
    .await;
    let (parts, _) = bounded(support::send(chat(gw.addr, "m", false))).await;
    assert_eq!(told(&parts), ("a:m", "1"));
    let (parts, _) = bounded(support::send(chat(gw.addr, "m", false))).await;
    assert_eq!(parts.status, 200);
    assert_eq!(told(&parts), ("b:m", "1"), "not held for a's turn");
    assert_eq!((a.calls(), b.calls()), (1, 1));
}

/// The embedded demo (no upstream given): `sim-down` is dead on `sim`, and
/// its route's backup answers as `gpt-4o-mini`.
#[tokio::test(start_paused = true)]
async fn the_demos_dead_model_is_answered_by_its_backup() {
    let _hold = support::hold_clock();
    let options = Options::from_args(&["--max-retries", "0"], &|_| None);
    let gw = start(options).await;
    let (parts, body) = bounded(support::send(chat(gw.addr, "sim-down", false))).await;
    assert_eq!(parts.status, 200, "{body:?}");
    assert_eq!(told(&parts), ("sim-backup:gpt-4o-mini", "2"));
    let answer = json(&body);
    assert_eq!(
        (&answer["system_fingerprint"], &answer["model"]),
        (&"sim-backup".into(), &"gpt-4o-mini".into())
    );
    // Every other model goes to `sim` alone.
    let (parts, _) = bounded(support::send(chat(gw.addr, "sim-badkey", false))).await;
    assert_eq!(parts.status, 401);
    assert_eq!(told(&parts), ("sim:sim-badkey", "1"));
}
