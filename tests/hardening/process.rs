//! The example binary as a process: signals, exit codes, peak memory.
//!
//! Each test runs on its own runtime with the real clock; every wait is
//! bounded in real time, none is waited out.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http_body::Frame;
use http_body_util::{BodyExt, Full, StreamBody};

use super::raw::bounded;
use super::upstream::{spawn_upstream, Upstream};
use crate::{gateway_harness, support};

/// The gateway binary, running; killed if the test fails.
struct Gateway {
    child: Option<Child>,
    pid: u32,
    addr: SocketAddr,
    /// Its stdout lines after the first.
    lines: mpsc::Receiver<String>,
}

impl Gateway {
    fn start(up: &Upstream, flags: &[&str]) -> Gateway {
        let mut child = Command::new(gateway_harness::example_binary())
            .args(["--listen", "127.0.0.1:0", "--upstream"])
            .arg(format!("http://{}", up.addr))
            .args(flags)
            .stdout(Stdio::piped())
            .spawn()
            .expect("the example binary starts");
        // Read stdout on a thread, so that the gateway never blocks on it.
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let first = lines.recv_timeout(Duration::from_secs(60)).unwrap();
        let addr = first
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("{first}"))
            .parse()
            .unwrap();
        Gateway {
            pid: child.id(),
            child: Some(child),
            addr,
            lines,
        }
    }

    /// Waits for a stdout line that starts with `prefix`.
    fn wait_for_line(&self, prefix: &str) -> String {
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(60))
                .unwrap_or_else(|_| panic!("no line starting with {prefix:?}"));
            if line.starts_with(prefix) {
                return line;
            }
        }
    }

    fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits (bounded) for the process to exit; its exit code.
    fn exit_code(&mut self) -> Option<i32> {
        let mut child = self.child.take().expect("waited once");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait().map(|s| s.code()));
        });
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(code) => code.unwrap(),
            Err(_) => {
                let _ = Command::new("kill")
                    .args(["-KILL", &self.pid.to_string()])
                    .status();
                panic!("the gateway did not exit within 60 s");
            }
        }
    }

    /// The peak resident memory of the process, in bytes (Linux).
    fn peak_rss(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn stream_request(gw: SocketAddr) -> http::Request<Full<Bytes>> {
    http::Request::get(format!("http://{gw}/sse/gated"))
        .header("accept", "text/event-stream")
        .body(Full::new(Bytes::new()))
        .unwrap()
}

/// Opens `n` streams, each past its first event.
async fn open_streams(gw: SocketAddr, n: usize) -> Vec<hyper::body::Incoming> {
    let mut bodies = Vec::new();
    for _ in 0..n {
        let res = bounded(support::client().request(stream_request(gw)))
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let mut body = res.into_body();
        let first = bounded(body.frame()).await.unwrap().unwrap();
        assert_eq!(first.into_data().unwrap(), "data: {\"n\":1}\n\n");
        bodies.push(body);
    }
    bodies
}

#[test]
fn sigterm_lets_five_streams_finish_and_exits_0() {
    let n = 5;
    let up = spawn_upstream();
    let mut gw = Gateway::start(&up, &[]);
    runtime().block_on(async {
        let bodies = open_streams(gw.addr, n).await;
        gw.terminate();
        gw.wait_for_line("shutting down");
        assert!(
            std::net::TcpStream::connect(gw.addr).is_err(),
            "no new connections once shutting down"
        );
        up.release();
        for body in bodies {
            let rest = bounded(body.collect()).await.unwrap().to_bytes();
            assert_eq!(rest, "data: [DONE]\n\n", "the stream finished");
        }
    });
    assert_eq!(gw.wait_for_line("stopped"), "stopped: every call finished");
    assert_eq!(gw.exit_code(), Some(0));
}

#[test]
fn after_the_grace_a_stream_is_ended_and_the_process_exits_0() {
    let up = spawn_upstream();
    let mut gw = Gateway::start(&up, &["--shutdown-grace", "200ms"]);
    runtime().block_on(async {
        let mut bodies = open_streams(gw.addr, 1).await;
        gw.terminate();
        let rest = bounded(bodies.remove(0).collect())
            .await
            .unwrap()
            .to_bytes();
        let text = std::str::from_utf8(&rest).unwrap();
        let json = text
            .strip_prefix("data: ")
            .and_then(|t| t.strip_suffix("\n\n"))
            .unwrap_or_else(|| panic!("one last event: {text:?}"));
        let err = support::envelope(json.as_bytes());
        assert_eq!(err["type"], "service_unavailable");
    });
    assert_eq!(
        gw.wait_for_line("stopped"),
        "stopped: the calls still running were ended"
    );
    assert_eq!(gw.exit_code(), Some(0));
    up.release();
}

/// A body of `len` bytes made of one shared 64 KiB chunk: the client
/// holds no copy of it.
fn large_body(len: usize) -> http_body_util::combinators::BoxBody<Bytes, std::io::Error> {
    let chunk = Bytes::from(vec![b'a'; 64 * 1024]);
    let frames = futures_util::stream::iter(0..len / chunk.len())
        .map(move |_| Ok::<_, std::io::Error>(Frame::data(chunk.clone())));
    BodyExt::boxed(StreamBody::new(frames))
}

#[test]
fn bodies_under_a_budget_keep_peak_memory_bounded() {
    const BODIES: usize = 24;
    const LEN: usize = 31 << 20;
    let up = spawn_upstream();
    let gw = Gateway::start(
        &up,
        &["--max-buffered-bodies", "128MiB", "--timeout", "300s"],
    );
    runtime().block_on(async {
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http();
        let calls = (0..BODIES).map(|_| {
            let req = http::Request::post(format!("http://{}/upload", gw.addr))
                .header("content-length", LEN)
                .body(large_body(LEN))
                .unwrap();
            let client = client.clone();
            tokio::spawn(async move {
                let res = client.request(req).await.unwrap();
                let status = res.status();
                let body = res.into_body().collect().await.unwrap().to_bytes();
                (status, body)
            })
        });
        let results = bounded(futures_util::future::join_all(calls)).await;
        for result in results {
            let (status, body) = result.unwrap();
            assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
            assert_eq!(body, format!("{{\"bytes\":{LEN}}}"));
        }
    });
    assert_eq!(up.uploaded(), (BODIES * LEN) as u64);
    if let Some(peak) = gw.peak_rss() {
        assert!(
            peak < 400_000_000,
            "peak RSS {} MB for {BODIES} × 31 MiB under a 128 MiB budget",
            peak / 1_000_000
        );
    }
}

#[test]
fn the_example_prints_its_version_and_names_an_unknown_flag() {
    let bin = gateway_harness::example_binary();
    let out = Command::new(&bin).arg("--version").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("gateway {}\n", env!("CARGO_PKG_VERSION"))
    );
    let out = Command::new(&bin).arg("--bogus").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("unknown flag --bogus"), "{stderr}");
}
