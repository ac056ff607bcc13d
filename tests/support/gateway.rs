//! The gateway example in-process, for the tests that include its modules
//! at their crate root (`support/gateway_modules.rs`), and the example
//! binary itself.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tower_http_resilience::collect::CollectBodyLayer;
use tower_http_resilience::pacing::PacingHandle;
use tower_http_resilience::retry::{Backoff, Jitter};
use tower_http_resilience::ResilienceConfig;

use crate::app::{Gateway, Setup};
use crate::args::{Args, Parsed, Upstreams};
use crate::log::{Log, LogFormat};
use crate::routes::Routes;
use crate::server::Limits;
use crate::shutdown::Drain;
use crate::stack::StackLayer;

/// How to start the gateway.
pub struct Options {
    pub config: ResilienceConfig,
    pub limits: Limits,
    pub bodies: CollectBodyLayer,
    pub format: LogFormat,
    /// What the command line and the config file made: upstreams, routes,
    /// models, client keys, checks, pacing (its `config` is `config`).
    pub args: Args,
}

impl Options {
    /// The gateway's defaults in front of `upstream` (a base URL, as
    /// `--upstream`).
    pub fn new(upstream: impl Into<String>) -> Self {
        Options::from_args(&["--upstream", &upstream.into()], &|_| None)
    }

    /// The gateway of the command line `flags` (a `--config` file
    /// included), with the environment `env`.
    pub fn from_args(flags: &[&str], env: &dyn Fn(&str) -> Option<String>) -> Self {
        let args = match crate::args::parse_with(flags.iter().map(|f| f.to_string()), env) {
            Ok(Parsed::Run(args)) => *args,
            other => panic!("{flags:?}: {other:?}"),
        };
        Options {
            config: args.config.clone(),
            limits: Limits::default(),
            bodies: CollectBodyLayer::new(),
            format: LogFormat::Text,
            args,
        }
    }
}

/// A gateway running on the test's runtime.
pub struct Running {
    pub addr: SocketAddr,
    /// Its log lines.
    pub lines: mpsc::UnboundedReceiver<String>,
    /// Its body budget (`buffered_bodies()`).
    pub bodies: CollectBodyLayer,
    /// What its pacing holds.
    pub pacing: PacingHandle,
    pub drain: Drain,
    stop: Option<oneshot::Sender<()>>,
}

impl Running {
    /// Closes the listener; the connections go on.
    pub fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Starts the gateway on 127.0.0.1, retries waiting no time.
pub async fn start(options: Options) -> Running {
    let args = options.args;
    options.config.check().unwrap();
    let (log, lines) = Log::channel(options.format);
    let (upstreams, routes) = match args.upstreams {
        Upstreams::Given(upstreams) => (upstreams, args.routes),
        // The embedded demo, on the test's runtime.
        Upstreams::Simulator => (
            crate::demo::start(&log).await,
            crate::demo::routes(args.routes),
        ),
    };
    let routes = Arc::new(Routes::new(
        upstreams.into_iter().map(Arc::new).collect(),
        &routes,
        args.windows,
    ));
    let secrets = routes
        .upstreams()
        .iter()
        .filter_map(|u| u.credential.as_ref().map(|c| c.key()))
        .chain(args.client_keys.iter().flat_map(|k| k.iter()));
    let stack = StackLayer::new(&options.config, args.pacing, secrets).map_retry(|r| {
        r.backoff(Backoff::constant(Duration::ZERO))
            .jitter(Jitter::none())
            .max_replay_body(args.max_request_body)
    });
    let pacing = stack.pacing_handle();
    let checks = args.checks.then(|| routes.checks());
    let drain = Drain::default();
    let gateway = Gateway::new(Setup {
        stack,
        routes,
        checks,
        client_keys: args.client_keys,
        client: crate::client::upstream_client(),
        bodies: options.bodies.clone(),
        log,
        drain: drain.clone(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let limits = options.limits;
    tokio::spawn(async move {
        // Only `stop` stops it, not a dropped `Running`.
        let stopped = async move {
            if stopped.await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        crate::server::serve(listener, gateway, limits, stopped).await;
    });
    Running {
        addr,
        lines,
        bodies: options.bodies,
        pacing,
        drain,
        stop: Some(stop),
    }
}

/// `f`, or a panic after a minute of real time: a test that waits on a
/// socket fails instead of hanging (a paused clock cannot bound it).
pub async fn bounded<F: std::future::Future>(f: F) -> F::Output {
    const BOUND: Duration = Duration::from_secs(60);
    let (tx, rx) = oneshot::channel::<()>();
    std::thread::spawn(move || {
        std::thread::sleep(BOUND);
        let _ = tx.send(());
    });
    tokio::select! {
        out = f => out,
        _ = rx => panic!("no answer within {BOUND:?} of real time"),
    }
}

/// The example binary, built with the features this test was built with
/// (a no-op when `cargo test` built the examples already).
pub fn example_binary() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let features: Vec<&str> = [
                ("normalize", cfg!(feature = "normalize")),
                ("retry", cfg!(feature = "retry")),
                ("circuit-breaker", cfg!(feature = "circuit-breaker")),
                ("timeout", cfg!(feature = "timeout")),
                ("collect", cfg!(feature = "collect")),
                ("stack", cfg!(feature = "stack")),
                ("full", cfg!(feature = "full")),
                ("hyper", cfg!(feature = "hyper")),
                ("hyper-util", cfg!(feature = "hyper-util")),
                ("tonic", cfg!(feature = "tonic")),
                ("axum", cfg!(feature = "axum")),
                ("metrics", cfg!(feature = "metrics")),
                ("fleet", cfg!(feature = "fleet")),
                ("redis", cfg!(feature = "redis")),
            ]
            .into_iter()
            .filter_map(|(f, on)| on.then_some(f))
            .collect();
            let cargo = std::env::var("CARGO")
                .ok()
                .or(option_env!("CARGO").map(str::to_owned))
                .unwrap_or_else(|| "cargo".to_owned());
            let mut build = std::process::Command::new(cargo);
            build
                .args([
                    "build",
                    "--quiet",
                    "--example",
                    "gateway",
                    "--no-default-features",
                ])
                .arg(format!("--features={}", features.join(",")))
                .current_dir(env!("CARGO_MANIFEST_DIR"));
            // What cargo set for this test's run: build scripts that watch
            // these would see them changed and build again.
            for (key, _) in std::env::vars_os() {
                let key = key.to_string_lossy();
                let set_by_cargo = key.starts_with("CARGO_PKG_")
                    || [
                        "CARGO_MANIFEST_DIR",
                        "CARGO_MANIFEST_PATH",
                        "CARGO_CRATE_NAME",
                        "CARGO_BIN_NAME",
                        "CARGO_PRIMARY_PACKAGE",
                        "CARGO_TARGET_TMPDIR",
                        "CARGO_RUSTC_CURRENT_DIR",
                    ]
                    .contains(&key.as_ref());
                if set_by_cargo {
                    build.env_remove(key.as_ref());
                }
            }
            if !cfg!(debug_assertions) {
                build.arg("--release");
            }
            let status = build.status().expect("cargo runs");
            assert!(status.success(), "cargo build --example gateway");
            // target/<profile>/deps/<test> → target/<profile>/examples/gateway
            let exe = std::env::current_exe().unwrap();
            let profile_dir = exe.parent().unwrap().parent().unwrap();
            profile_dir
                .join("examples")
                .join(format!("gateway{}", std::env::consts::EXE_SUFFIX))
        })
        .clone()
}
