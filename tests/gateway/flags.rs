use crate::*;

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
