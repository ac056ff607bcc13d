//! The gateway's stdout: one line per call, written when its response body
//! has ended, and the gateway's other notices.
//!
//! Text lines carry the fields positionally, then as `key=value`; JSON lines
//! are one object each, with the field names `ts`, `request_id`, `method`,
//! `path`, `model`, `target`, `status`, `code`, `attempts`, `streaming`,
//! `latency_ms`, and `held_ms`: how long pacing held the call back (the
//! time it waited before it was sent, or, for a call answered 429
//! `rate_limit_exceeded` without being sent, the wait it was refused;
//! `null`, `-` in text, when it was not held); notices are
//! `{"ts","msg"}`. No value from a client reaches
//! a line unescaped: in text, every byte that is not printable ASCII (a
//! space, a newline, an ANSI escape) is written as `\xNN` or `\u{…}`.

use std::fmt::Write as _;
use std::io::Write as _;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};

/// The longest path written, in bytes.
const MAX_PATH: usize = 1024;

/// How lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Plain text, one line per call.
    Text,
    /// One JSON object per line.
    Json,
}

/// Where the lines go.
#[derive(Clone, Debug)]
pub struct Log {
    format: LogFormat,
    sink: Sink,
}

#[derive(Clone, Debug)]
#[allow(dead_code)] // `Off` and `Lines` are the tests' choices
enum Sink {
    Off,
    Stdout,
    Lines(mpsc::UnboundedSender<String>),
}

impl Log {
    /// Lines on stdout.
    pub fn stdout(format: LogFormat) -> Self {
        Log {
            format,
            sink: Sink::Stdout,
        }
    }

    /// No lines.
    #[allow(dead_code)] // the tests' choice
    pub fn off() -> Self {
        Log {
            format: LogFormat::Text,
            sink: Sink::Off,
        }
    }

    /// Lines into a channel (for tests).
    #[allow(dead_code)]
    pub fn channel(format: LogFormat) -> (Self, mpsc::UnboundedReceiver<String>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let log = Log {
            format,
            sink: Sink::Lines(tx),
        };
        (log, rx)
    }

    /// A notice: the text as is, or `{"ts","msg"}`.
    pub fn notice(&self, msg: impl std::fmt::Display) {
        let line = match self.format {
            LogFormat::Text => msg.to_string(),
            LogFormat::Json => {
                serde_json::json!({"ts": timestamp(), "msg": msg.to_string()}).to_string()
            }
        };
        self.write(line);
    }

    fn write(&self, mut line: String) {
        match &self.sink {
            Sink::Off => {}
            Sink::Stdout => {
                line.push('\n');
                // One write per line, so that lines never interleave; a
                // closed stdout is not the caller's problem.
                let _ = std::io::stdout().lock().write_all(line.as_bytes());
            }
            Sink::Lines(tx) => {
                let _ = tx.send(line);
            }
        }
    }
}

/// What is known of a call when its response starts.
#[derive(Clone, Debug)]
pub struct Call {
    pub request_id: String,
    pub method: http::Method,
    pub path: String,
    pub model: Option<String>,
    pub target: String,
    pub status: u16,
    pub code: Option<String>,
    pub attempts: u32,
    pub streaming: bool,
    /// How long pacing held the call back, in milliseconds.
    pub held_ms: Option<u64>,
}

/// A call's line, written once: when the body ended ([`finish`]), or, if
/// the body is dropped before, as cut short by the client.
///
/// [`finish`]: PendingLine::finish
#[derive(Debug)]
pub struct PendingLine {
    log: Log,
    call: Call,
    started: Instant,
    written: bool,
}

impl PendingLine {
    pub fn new(log: Log, call: Call, started: Instant) -> Self {
        let written = matches!(log.sink, Sink::Off);
        PendingLine {
            log,
            call,
            started,
            written,
        }
    }

    /// The outcome turned out otherwise than the headers said (an error
    /// event in a stream, a failed body).
    pub fn set_code(&mut self, code: impl Into<String>) {
        self.call.code = Some(code.into());
    }

    /// Writes the line: the body has ended.
    pub fn finish(&mut self) {
        if !self.written {
            self.written = true;
            let line = render(self.log.format, &self.call, self.started.elapsed());
            self.log.write(line);
        }
    }
}

impl Drop for PendingLine {
    fn drop(&mut self) {
        if !self.written {
            self.call.code.get_or_insert_with(|| "client_closed".into());
            self.finish();
        }
    }
}

/// The line for a call that took `latency`.
fn render(format: LogFormat, c: &Call, latency: Duration) -> String {
    let ms = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX);
    let path = cut(&c.path, MAX_PATH);
    match format {
        LogFormat::Json => serde_json::json!({
            "ts": timestamp(),
            "request_id": c.request_id,
            "method": c.method.as_str(),
            "path": path,
            "model": c.model,
            "target": c.target,
            "status": c.status,
            "code": c.code,
            "attempts": c.attempts,
            "streaming": c.streaming,
            "latency_ms": ms,
            "held_ms": c.held_ms,
        })
        .to_string(),
        LogFormat::Text => {
            let mut line = timestamp();
            for value in [&c.request_id, c.method.as_str(), path] {
                line.push(' ');
                escape(value, &mut line);
            }
            let fields = [
                ("model", c.model.as_deref().unwrap_or("-")),
                ("target", &c.target),
                ("status", &c.status.to_string()),
                ("code", c.code.as_deref().unwrap_or("-")),
                ("attempts", &c.attempts.to_string()),
                ("streaming", if c.streaming { "true" } else { "false" }),
                ("latency_ms", &ms.to_string()),
                (
                    "held_ms",
                    &c.held_ms.map_or("-".to_owned(), |h| h.to_string()),
                ),
            ];
            for (key, value) in fields {
                let _ = write!(line, " {key}=");
                escape(value, &mut line);
            }
            line
        }
    }
}

/// Now, in RFC 3339 (UTC, microseconds).
fn timestamp() -> String {
    let mut ts = String::with_capacity(27);
    let _ = SystemTime.format_time(&mut Writer::new(&mut ts));
    ts
}

/// Appends `s` with everything but printable ASCII escaped; `\` itself too.
pub fn escape(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            c if c.is_ascii_graphic() => out.push(c),
            c if c.is_ascii() => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
        }
    }
}

/// The longest prefix of `s` within `max` bytes, on a character boundary.
fn cut(s: &str, max: usize) -> &str {
    let end = (0..=max.min(s.len()))
        .rev()
        .find(|&i| s.is_char_boundary(i))
        .unwrap_or(0);
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call() -> Call {
        Call {
            request_id: "req_1".into(),
            method: http::Method::POST,
            path: "/v1/chat/completions".into(),
            model: Some("evil\nmodel\u{1b}[31m red".into()),
            target: "default:evil".into(),
            status: 200,
            code: None,
            attempts: 2,
            streaming: true,
            held_ms: None,
        }
    }

    #[test]
    fn text_lines_escape_what_a_client_sent() {
        let line = render(LogFormat::Text, &call(), Duration::from_millis(1234));
        assert!(!line.contains('\n') && !line.contains('\u{1b}'), "{line}");
        let (ts, rest) = line.split_once(' ').unwrap();
        assert!(ts.ends_with('Z') && ts.contains('T'), "{ts}");
        assert_eq!(
            rest,
            "req_1 POST /v1/chat/completions model=evil\\x0amodel\\x1b[31m\\x20red \
             target=default:evil status=200 code=- attempts=2 streaming=true latency_ms=1234 held_ms=-"
        );
    }

    #[test]
    fn json_lines_have_the_fields() {
        let line = render(LogFormat::Json, &call(), Duration::from_millis(5));
        assert!(!line.contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        let mut keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
        keys.sort_unstable();
        let mut want = [
            "ts",
            "request_id",
            "method",
            "path",
            "model",
            "target",
            "status",
            "code",
            "attempts",
            "streaming",
            "latency_ms",
            "held_ms",
        ];
        want.sort_unstable();
        assert_eq!(keys, want);
        assert_eq!(v["model"], "evil\nmodel\u{1b}[31m red");
        assert_eq!(
            (v["status"].as_u64(), v["latency_ms"].as_u64()),
            (Some(200), Some(5))
        );
        assert!(v["code"].is_null());
    }

    #[test]
    fn escapes_non_ascii_and_backslashes() {
        let mut out = String::new();
        escape("é\u{202e}a\\b", &mut out);
        assert_eq!(out, "\\u{e9}\\u{202e}a\\\\b");
        assert_eq!((cut("é", 1), cut("éa", 3), cut("ab", 9)), ("", "éa", "ab"));
    }
}
