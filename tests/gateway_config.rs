//! The gateway's config file end to end: what it refuses at start (the
//! file, the key and the reason; exit 2), flags winning over it, client
//! keys, two real upstreams on 127.0.0.1 each getting its own credential,
//! routes, the checks, the `[[model]]` windows and the `rpm` pacing.
//!
//! The gateway runs in-process on the test's runtime, its clock paused
//! and held (`support::hold_clock`); the upstreams run on their own
//! threads with a real clock.

mod support;

include!("support/gateway_modules.rs");

#[path = "support/gateway_upstream.rs"]
mod gateway_upstream;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use tower_http_resilience::ResilienceConfig;

use crate::gateway_harness::{start, Options, Running};
use crate::gateway_upstream::Recording;

const KEY_A: &str = "sk-upstream-a-0123456789abcdef";
const CLIENT_KEY: &str = "sk-client-own-9876543210";

/// Writes `text` as a config file of its own; returns its path.
fn config_file(name: &str, text: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("gw-{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// An environment of `vars`.
fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let vars: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k| vars.get(k).cloned()
}

fn parse(flags: &[&str], vars: &[(&str, &str)]) -> Result<args::Parsed, String> {
    args::parse_with(flags.iter().map(|f| f.to_string()), &env(vars))
}

fn chat(gw: SocketAddr, model: &str, headers: &[(&str, &str)]) -> Request<Full<Bytes>> {
    let body = format!(r#"{{"model":"{model}","messages":[{{"role":"user","content":"hi"}}]}}"#);
    post(gw, headers, body)
}

fn post(gw: SocketAddr, headers: &[(&str, &str)], body: String) -> Request<Full<Bytes>> {
    let mut req = Request::post(format!("http://{gw}/v1/chat/completions"))
        .header("content-type", "application/json");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.body(Full::new(Bytes::from(body))).unwrap()
}

/// The gateway of the config file `text`, with the environment `vars`.
async fn gateway(name: &str, text: &str, vars: &[(&str, &str)]) -> Running {
    let path = config_file(name, text);
    let options = Options::from_args(&["--config", path.to_str().unwrap()], &env(vars));
    start(options).await
}

fn header<'a>(parts: &'a http::response::Parts, name: &str) -> Option<&'a str> {
    parts.headers.get(name).map(|v| v.to_str().unwrap())
}

#[test]
fn a_bad_file_is_refused_naming_the_file_the_key_and_the_reason() {
    let up =
        |extra: &str| format!("[[upstream]]\nname = \"a\"\nurl = \"http://a.example\"\n{extra}");
    let two = "[[upstream]]\nname = \"a\"\nurl = \"http://a.example\"\n\
               [[upstream]]\nname = \"b\"\nurl = \"http://b.example\"\n";
    let cases: Vec<(String, &str, &str)> = vec![
        ("bogus = 1".into(), "bogus", "unknown key"),
        ("config = \"x.toml\"".into(), "config", "cannot name another"),
        ("max-retries = 1".into(), "max-retries", "unknown key"),
        ("upstream = \"http://x\"".into(), "upstream", "[[upstream]]"),
        ("timeout = \"soon\"".into(), "timeout", "`soon` is not a duration"),
        ("max_retries = -1".into(), "max_retries", "not a whole number"),
        ("checks = \"maybe\"".into(), "checks", "`on` or `off`"),
        ("log_format = [1]".into(), "log_format", "must be a string, a number or a boolean"),
        ("max_retries = ".into(), "line 1", "string values must be quoted"),
        ("client_keys_env = \"NOPE\"".into(), "client_keys_env", "the variable NOPE is not set"),
        ("client_keys_env = \"EMPTY\"".into(), "client_keys_env", "holds no key"),
        (up("urll = \"x\""), "upstream[0].urll", "unknown key (expected one of name, url"),
        ("[[upstream]]\nname = \"a\"\n".into(), "upstream[0].url", "is missing"),
        ("[[upstream]]\nname = \"a b\"\nurl = \"http://a\"".into(), "upstream[0].name", "not a name"),
        ("[[upstream]]\nname = \"a\"\nurl = \"ftp://a\"".into(), "upstream[0].url", "http:// or https://"),
        (up("api_key_env = \"NOPE\""), "upstream[0].api_key_env", "the variable NOPE is not set"),
        (up("api_key_env = \"BLANK\""), "upstream[0].api_key_env", "the variable BLANK: it is empty"),
        (up("rpm = 0"), "upstream[0].rpm", "must be at least 1"),
        (up("rpm = \"fast\""), "upstream[0].rpm", "invalid type: string \"fast\""),
        (format!("{two}[[upstream]]\nname = \"a\"\nurl = \"http://c\""), "upstream[2].name", "`a` is already the name of upstream[0]"),
        (format!("{two}[[route]]\nmodel = \"m\"\ntargets = [\"a\", \"c:m\"]"), "route[0].targets", "`c:m` names the upstream `c`, which does not exist (upstreams: a, b)"),
        (format!("{two}[[route]]\nmodel = \"m\"\ntargets = []"), "route[0].targets", "names no target"),
        (format!("{two}[[route]]\nmodel = \"m\"\ntargets = [\"a:\"]"), "route[0].targets", "names no model"),
        (format!("{two}[[route]]\nmodel = \"m\"\ntargets = [\"a\"]\n[[route]]\nmodel = \"m\"\ntargets = [\"b\"]"), "route[1].model", "`m` already has route[0]"),
        (format!("{two}[[route]]\nmodel = \"m\"\ntargets = [\"a\"]\nretries = 101"), "route[0].retries", "more than 100"),
        (format!("{two}[[route]]\nmodel = \"m\"\ntarget = [\"a\"]"), "route[0].target", "unknown key"),
        ("[[model]]\nname = \"m\"\ncontext_window = 0".into(), "model[0].context_window", "must be at least 1"),
        ("[[model]]\nname = \"m\"\ncontext_window = 8\ntokenizer = \"p50k\"".into(), "model[0].tokenizer", "unknown tokenizer"),
        ("[[model]]\nname = \"m\"\ncontext_window = 8\n[[model]]\nname = \"m\"\ncontext_window = 9".into(), "model[1].name", "already the name"),
        ("[[model]]\nname = \"m\"\ncontext_window = -5".into(), "model[0].context_window", "invalid value"),
    ];
    let vars = [("EMPTY", " , "), ("BLANK", "  ")];
    for (i, (text, key, reason)) in cases.iter().enumerate() {
        let path = config_file(&format!("bad-{i}"), text);
        let shown = path.display().to_string();
        let err = parse(&["--config", &shown], &vars).unwrap_err();
        let want = format!("{shown}: {key}: ");
        assert!(err.starts_with(&want), "{text:?}: {err}");
        assert!(err.contains(reason), "{text:?}: {err}");
    }
    // Without a file, routes may name the simulator's providers only.
    let path = config_file(
        "sim-route",
        "[[route]]\nmodel = \"m\"\ntargets = [\"openai\"]",
    );
    let err = parse(&["--config", path.to_str().unwrap()], &[]).unwrap_err();
    assert!(err.contains("(upstreams: sim, sim-backup)"), "{err}");

    let path = config_file("both", &up(""));
    let err = parse(
        &[
            "--upstream",
            "http://x.example",
            "--config",
            path.to_str().unwrap(),
        ],
        &[],
    )
    .unwrap_err();
    assert!(
        err.contains("--upstream")
            && err.contains("[[upstream]]")
            && err.contains(path.to_str().unwrap()),
        "{err}"
    );
    let err = parse(&["--config", "/nonexistent/gw.toml"], &[]).unwrap_err();
    assert!(
        err.starts_with("cannot read the config file /nonexistent/gw.toml"),
        "{err}"
    );
}

/// The binary refuses a bad file at start: exit 2, one line on stderr.
#[test]
fn the_binary_exits_2_on_a_bad_file() {
    let path = config_file(
        "exit-2",
        "[[upstream]]\nname = \"a\"\nurl = \"http://a.example\"\nrpm = 0\n",
    );
    let out = std::process::Command::new(gateway_harness::example_binary())
        .args([
            "--listen",
            "127.0.0.1:0",
            "--config",
            path.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty(), "nothing listens");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(
        stderr.trim_end(),
        format!(
            "gateway: {}: upstream[0].rpm: must be at least 1",
            path.display()
        )
    );
}

#[test]
fn flags_on_the_command_line_win_over_the_file() {
    let path = config_file(
        "flags",
        "max_retries = 5\ntimeout = \"90s\"\nlog_format = \"json\"\nchecks = false\n\
         listen = \"127.0.0.1:9999\"\nbreaker_failure_ratio = 0.25\nmax_retry_after = \"5s\"\n",
    );
    let path = path.to_str().unwrap();
    let Ok(args::Parsed::Run(file_only)) = parse(&["--config", path], &[]) else {
        panic!("the file alone")
    };
    let s = Duration::from_secs;
    let from_file = ResilienceConfig::default()
        .max_retries(5)
        .total_timeout(s(90))
        .breaker_failure_ratio(0.25)
        .max_retry_after(s(5));
    assert_eq!(file_only.config, from_file);
    assert!(!file_only.checks);
    assert_eq!(file_only.log_format, log::LogFormat::Json);
    assert_eq!(file_only.body_timeout, s(90));

    // Before or after `--config`, a flag wins.
    let flags = [
        "--max-retries",
        "1",
        "--config",
        path,
        "--checks",
        "on",
        "--timeout=30s",
    ];
    let Ok(args::Parsed::Run(a)) = parse(&flags, &[]) else {
        panic!("{flags:?}")
    };
    assert_eq!(
        a.config,
        from_file.max_retries(1).total_timeout(s(30)),
        "the others still from the file"
    );
    assert!(a.checks);
    assert_eq!(a.body_timeout, s(30));
    assert_eq!(a.listen.to_string(), "127.0.0.1:9999");
    assert_eq!(a.log_format, log::LogFormat::Json);
    assert!(args::USAGE.contains("--config FILE") && args::USAGE.contains("--checks on|off"));
}

/// Two upstreams: `a` with its own key and a prefix and query in its URL,
/// `b` passing the client's credential. Each gets what is its own.
#[tokio::test(start_paused = true)]
async fn each_upstream_receives_its_own_credential_and_never_the_clients() {
    let _hold = support::hold_clock();
    let (a, b) = (Recording::spawn("a"), Recording::spawn("b"));
    let text = format!(
        "[[upstream]]\nname = \"a\"\nurl = \"http://{}/openai/v1?api-version=2024-10-21\"\napi_key_env = \"KEY_A\"\n\
         [[upstream]]\nname = \"b\"\nurl = \"http://{}\"\n\
         [[route]]\nmodel = \"gpt-4o\"\ntargets = [\"a\", \"b:gpt-4o-mini\"]\n\
         [[route]]\nmodel = \"small\"\ntargets = [\"b:tiny\", \"a\"]\n\
         [[route]]\nmodel = \"echo-key\"\ntargets = [\"a\"]\n\
         [[route]]\nmodel = \"*\"\ntargets = [\"b\"]\n",
        a.addr, b.addr
    );
    let gw = gateway("two", &text, &[("KEY_A", KEY_A)]).await;
    let client = [
        ("authorization", &*format!("Bearer {CLIENT_KEY}")),
        ("x-api-key", "sk-client-x-0123456789"),
        ("api-key", "sk-client-azure-0123456789"),
    ];

    let (parts, body) = support::send(chat(gw.addr, "gpt-4o", &client)).await;
    assert_eq!(parts.status, 200, "{body:?}");
    assert_eq!(header(&parts, "x-gateway-target"), Some("a:gpt-4o"));
    assert_eq!(header(&parts, "x-gateway-attempts"), Some("1"));
    let seen = a.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].authorization.as_deref(),
        Some(&*format!("Bearer {KEY_A}"))
    );
    assert_eq!(
        (seen[0].x_api_key.as_deref(), seen[0].api_key.as_deref()),
        (None, None)
    );
    assert!(
        !seen[0].all_headers.contains("sk-client"),
        "{}",
        seen[0].all_headers
    );
    assert_eq!(seen[0].model.as_deref(), Some("gpt-4o"));
    assert_eq!(
        seen[0].path_and_query, "/openai/v1/chat/completions?api-version=2024-10-21",
        "the prefix kept, /v1 not doubled, the query added"
    );

    // `b` has no key of its own: the client's pass; the model is renamed.
    let (parts, _) = support::send(chat(gw.addr, "small", &client)).await;
    assert_eq!(parts.status, 200);
    assert_eq!(header(&parts, "x-gateway-target"), Some("b:tiny"));
    let seen = b.seen();
    assert_eq!(
        seen[0].authorization.as_deref(),
        Some(&*format!("Bearer {CLIENT_KEY}"))
    );
    assert_eq!(seen[0].x_api_key.as_deref(), Some("sk-client-x-0123456789"));
    assert_eq!(seen[0].model.as_deref(), Some("tiny"));
    assert_eq!(seen[0].path_and_query, "/v1/chat/completions");

    // Any other model takes the "*" route.
    let (parts, _) = support::send(chat(gw.addr, "other", &client)).await;
    assert_eq!(header(&parts, "x-gateway-target"), Some("b:other"));
    assert_eq!((a.calls(), b.calls()), (1, 2));

    // An upstream that echoes the key it got: the client never sees it.
    let (parts, body) = support::send(chat(gw.addr, "echo-key", &[])).await;
    assert_eq!(parts.status, 401);
    let text = String::from_utf8_lossy(&body);
    assert!(
        !text.contains("sk-upstream") && text.contains("[redacted]"),
        "{text}"
    );
    for (name, value) in &parts.headers {
        assert!(
            !value.to_str().unwrap_or("").contains("sk-upstream"),
            "{name}"
        );
    }
}

/// With `client_keys_env`, a request without one of the keys is answered
/// 401 without any upstream call; the client key never goes upstream or
/// into a log line.
#[tokio::test(start_paused = true)]
async fn client_keys_refuse_a_missing_or_wrong_key_without_an_upstream_call() {
    let _hold = support::hold_clock();
    let a = Recording::spawn("a");
    let text = format!(
        "client_keys_env = \"GW_KEYS\"\n\
         [[upstream]]\nname = \"a\"\nurl = \"http://{}\"\napi_key_env = \"KEY_A\"\n",
        a.addr
    );
    let vars = [
        ("KEY_A", KEY_A),
        ("GW_KEYS", "gw-key-first-0001, gw-key-second-0002"),
    ];
    let mut gw = gateway("client-keys", &text, &vars).await;

    for refused in [
        None,
        Some("Bearer gw-key-first-0002"),
        Some("Bearer gw-key-first-000"),
        Some("Basic gw-key-first-0001"),
    ] {
        let headers: Vec<(&str, &str)> =
            refused.map(|v| ("authorization", v)).into_iter().collect();
        let (parts, body) = support::send(chat(gw.addr, "gpt-4o", &headers)).await;
        assert_eq!(parts.status, StatusCode::UNAUTHORIZED, "{refused:?}");
        let err = support::envelope(&body);
        assert_eq!(err["code"], "invalid_api_key", "{refused:?}");
        assert!(
            !String::from_utf8_lossy(&body).contains("gw-key"),
            "{refused:?}"
        );
    }
    assert_eq!(a.calls(), 0, "nothing reached the upstream");

    let (parts, _) = support::send(chat(
        gw.addr,
        "gpt-4o",
        &[("authorization", "Bearer gw-key-second-0002")],
    ))
    .await;
    assert_eq!(parts.status, 200);
    let seen = a.seen();
    assert_eq!(
        seen[0].authorization.as_deref(),
        Some(&*format!("Bearer {KEY_A}"))
    );
    assert!(!seen[0].all_headers.contains("gw-key"));

    gw.stop();
    let mut lines = Vec::new();
    while let Ok(line) = gw.lines.try_recv() {
        lines.push(line);
    }
    assert_eq!(lines.len(), 5, "{lines:?}");
    assert!(
        lines[..4]
            .iter()
            .all(|l| l.contains(" status=401 code=invalid_api_key ")),
        "{lines:?}"
    );
    assert!(lines.iter().all(|l| !l.contains("gw-key")), "{lines:?}");
}

/// The routing table of the upstreams, routes and models `a` read.
fn routes_of(a: args::Args) -> routes::Routes {
    let args::Upstreams::Given(upstreams) = a.upstreams else {
        panic!("upstreams")
    };
    let upstreams = upstreams.into_iter().map(std::sync::Arc::new).collect();
    routes::Routes::new(upstreams, &a.routes, a.windows)
}

/// The names of `model`'s targets, and what each does as its `Debug`
/// shows it (never a credential).
fn targets_of(routes: &routes::Routes, model: &str) -> (Vec<String>, Vec<String>) {
    let targets = routes.targets_for(Some(model));
    let names = targets.iter().map(|t| t.name().to_owned()).collect();
    (names, targets.iter().map(|t| format!("{t:?}")).collect())
}

/// The README's two-provider file is the example's, and it is read as it
/// says.
#[test]
fn the_example_file_is_the_readmes_and_it_is_read_as_it_says() {
    let text = include_str!("../examples/gateway/gateway.toml");
    assert!(include_str!("../README.md").contains(text));
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/gateway/gateway.toml");
    let vars = [
        ("GATEWAY_KEYS", "gw-one-0123456789,gw-two-0123456789"),
        ("OPENAI_API_KEY", "sk-openai-0123456789"),
        ("OPENROUTER_API_KEY", "sk-or-0123456789"),
    ];
    let Ok(args::Parsed::Run(a)) = parse(&["--config", path], &vars) else {
        panic!("the example file is read")
    };
    assert_eq!(
        a.config,
        ResilienceConfig::default().max_retries(2),
        "max_retries from the file"
    );
    assert!(a.client_keys.is_some() && a.checks);
    let routes = routes_of(*a);
    assert_eq!(routes.upstreams()[0].rpm, Some(500));
    let (names, shown) = targets_of(&routes, "gpt-4o");
    assert_eq!(names, ["openai:gpt-4o", "openrouter:openai/gpt-4o"]);
    assert!(
        shown.iter().all(|t| t.contains("retries: Some(1)")),
        "{shown:?}"
    );
    assert!(shown[0].contains("tokens: 128000"), "{shown:?}");
    assert!(
        shown[1].contains("model: Some(\"openai/gpt-4o\")"),
        "{shown:?}"
    );
    assert!(shown.iter().all(|t| !t.contains("sk-")), "{shown:?}");
    let other: Vec<_> = routes
        .targets_for(Some("o3"))
        .iter()
        .map(|t| t.name().to_owned())
        .collect();
    assert_eq!(other, ["openai:o3"]);
    let shown = routes.describe();
    assert_eq!(
        shown,
        [
            "route: gpt-4o -> openai, openrouter:openai/gpt-4o",
            "route: * (every other model) -> openai"
        ]
    );
}

/// The README's Fallback file is read as it says: two targets for
/// `gpt-4o-mini`, one retry on each, the model renamed at the first `:`
/// only, the window on the second.
#[test]
fn the_readmes_fallback_file_is_read_as_it_says() {
    let readme = include_str!("../README.md");
    let section = &readme[readme.find("## Fallback").expect("a Fallback section")..];
    let start = section.find("```toml\n").expect("a TOML block") + "```toml\n".len();
    let text = &section[start..start + section[start..].find("```").unwrap()];
    let path = config_file("readme-fallback", text);
    let vars = [("OPENAI_API_KEY", "sk-openai-0123456789")];
    let Ok(args::Parsed::Run(a)) = parse(&["--config", path.to_str().unwrap()], &vars) else {
        panic!("the README's fallback file is read")
    };
    let (names, shown) = targets_of(&routes_of(*a), "gpt-4o-mini");
    assert_eq!(names, ["openai:gpt-4o-mini", "ollama:llama3.1:8b"]);
    assert!(
        shown.iter().all(|t| t.contains("retries: Some(1)")),
        "{shown:?}"
    );
    assert!(shown[0].contains("authorization"), "{shown:?}");
    assert!(!shown[1].contains("authorization"), "{shown:?}");
    assert!(
        shown[1].contains("model: Some(\"llama3.1:8b\")"),
        "{shown:?}"
    );
    assert!(shown[1].contains("tokens: 8192"), "{shown:?}");
}
