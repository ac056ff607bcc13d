//! A real `redis-server` for one test: started on a unix socket in a fresh
//! temporary directory (no TCP port, no persistence), stopped, continued,
//! killed and restarted on the same socket on demand, and killed when
//! dropped, so no server outlives its test, even one that panics.
//!
//! The binary is `$THR_REDIS_SERVER` or `redis-server` on `PATH`. When it is
//! missing a test is skipped with a message on stderr, except with
//! `CI=true`, where a missing server is a failure.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisServer {
    bin: PathBuf,
    dir: PathBuf,
    child: Option<Child>,
}

fn find_binary() -> Option<PathBuf> {
    if let Some(bin) = std::env::var_os("THR_REDIS_SERVER") {
        return Some(PathBuf::from(bin));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("redis-server"))
        .find(|p| p.is_file())
}

impl RedisServer {
    /// A running server, or `None` (with a message) when there is no binary
    /// and `CI` is not `true`.
    pub fn start() -> Option<RedisServer> {
        let Some(bin) = find_binary() else {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("redis-server not found (CI=true needs it: apt-get install redis-server)");
            }
            eprintln!("SKIPPED: redis-server not found; install it to run this test");
            return None;
        };
        // Short: a unix socket path must fit in 108 bytes.
        let dir = std::env::temp_dir().join(format!("thr-redis-{:016x}", fastrand::u64(..)));
        std::fs::create_dir_all(&dir).expect("temporary directory");
        let mut server = RedisServer {
            bin,
            dir,
            child: None,
        };
        server.spawn();
        Some(server)
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("redis.sock")
    }

    pub fn url(&self) -> String {
        format!("redis+unix://{}", self.socket().display())
    }

    fn spawn(&mut self) {
        let _ = std::fs::remove_file(self.socket());
        let child = Command::new(&self.bin)
            .args(["--port", "0", "--unixsocket"])
            .arg(self.socket())
            .args(["--unixsocketperm", "700", "--dir"])
            .arg(&self.dir)
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .args(["--enable-debug-command", "local", "--logfile"])
            .arg(self.dir.join("redis.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self
                .command(&["PING"])
                .is_some_and(|r| r.starts_with("+PONG"))
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let log = std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default();
        panic!("redis-server did not answer PING within 10 s; its log:\n{log}");
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("server running").id()
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.pid().to_string()])
            .status()
            .expect("kill runs")
            .success();
        assert!(ok, "kill {sig} failed");
    }

    /// Freezes the server (SIGSTOP): connections stay open, nothing answers.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// Lets a frozen server go on (SIGCONT).
    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    /// Kills the server (SIGKILL) and waits for it; its data and scripts are
    /// gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts a new server on the same socket.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Runs one command on a fresh connection and returns the raw reply's
    /// first line; `None` when the server cannot be reached.
    pub fn command(&self, args: &[&str]) -> Option<String> {
        let mut s = UnixStream::connect(self.socket()).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        s.write_all(req.as_bytes()).ok()?;
        let mut buf = [0u8; 4096];
        let n = s.read(&mut buf).ok()?;
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        Some(text)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // SIGKILL ends a frozen server too.
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
