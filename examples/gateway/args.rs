//! The gateway's command line: flags, defaults and durations.

use std::net::SocketAddr;
use std::time::Duration;

use tower_http_resilience::ResilienceConfig;

pub const USAGE: &str = "\
An OpenAI-compatible resilient gateway.

usage: gateway [FLAGS]

  --listen ADDR                    where to listen; port 0 picks one     [127.0.0.1:8080]
  --upstream URL                   a real OpenAI-compatible upstream      [embedded simulator]
  --max-retries N                  retries after the first attempt        [3]
  --timeout D                      non-streaming call, all attempts       [60s]
  --attempt-timeout D              one attempt's response headers         [30s]
  --stream-first-byte-timeout D    streaming: time to the first byte      [60s]
  --stream-idle-timeout D          streaming: longest silence             [60s]
  --stream-timeout D               streaming: total                       [300s]
  --max-retry-after D              longest server-requested wait honoured [60s]
  --breaker-min-calls N            calls in the window before opening     [10]
  --breaker-failure-ratio F        failure ratio that opens a breaker     [0.5]
  --breaker-window D               rolling window                         [30s]
  --breaker-open D                 first open duration                    [30s]
  --help                           this text

Durations: 250ms, 2s, 1.5s, 5m, 1h.";

/// What the command line asked for.
#[derive(Debug)]
pub enum Parsed {
    /// Run the gateway with these settings.
    Run(Box<Args>),
    /// Print [`USAGE`] and exit.
    Help,
}

/// The settings of a run.
#[derive(Debug)]
pub struct Args {
    pub listen: SocketAddr,
    pub upstream: Option<http::Uri>,
    pub config: ResilienceConfig,
}

/// Parses the arguments after the program name. `Err` carries the message
/// for the user.
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Parsed, String> {
    let mut out = Args {
        listen: "127.0.0.1:8080".parse().unwrap(),
        upstream: None,
        config: ResilienceConfig::default(),
    };
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        if arg == "--help" || arg == "-h" {
            return Ok(Parsed::Help);
        }
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        if !flag.starts_with("--") {
            return Err(format!("unexpected argument `{arg}`; see --help"));
        }
        let value = match inline.or_else(|| args.next()) {
            Some(v) => v,
            None => return Err(format!("{flag} needs a value; see --help")),
        };
        let bad = |what: &str| format!("{flag}: `{value}` is not {what}");
        let c = std::mem::take(&mut out.config);
        out.config = match flag.as_str() {
            "--listen" => {
                out.listen = value
                    .parse()
                    .map_err(|_| bad("an address like 127.0.0.1:8080"))?;
                c
            }
            "--upstream" => {
                let uri: http::Uri = value.parse().map_err(|_| bad("a URL"))?;
                if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
                    return Err(bad("an http:// or https:// URL"));
                }
                out.upstream = Some(uri);
                c
            }
            "--max-retries" => c.max_retries(value.parse().map_err(|_| bad("a whole number"))?),
            "--breaker-min-calls" => {
                c.breaker_min_calls(value.parse().map_err(|_| bad("a whole number"))?)
            }
            "--breaker-failure-ratio" => {
                c.breaker_failure_ratio(value.parse().map_err(|_| bad("a number"))?)
            }
            "--timeout" => c.total_timeout(duration(&value).ok_or_else(|| bad("a duration"))?),
            "--attempt-timeout" => {
                c.attempt_timeout(duration(&value).ok_or_else(|| bad("a duration"))?)
            }
            "--stream-first-byte-timeout" => {
                c.stream_first_byte_timeout(duration(&value).ok_or_else(|| bad("a duration"))?)
            }
            "--stream-idle-timeout" => {
                c.stream_idle_timeout(duration(&value).ok_or_else(|| bad("a duration"))?)
            }
            "--stream-timeout" => {
                c.stream_timeout(duration(&value).ok_or_else(|| bad("a duration"))?)
            }
            "--max-retry-after" => {
                c.max_retry_after(duration(&value).ok_or_else(|| bad("a duration"))?)
            }
            "--breaker-window" => {
                c.breaker_window(duration(&value).ok_or_else(|| bad("a duration"))?)
            }
            "--breaker-open" => {
                c.breaker_open_duration(duration(&value).ok_or_else(|| bad("a duration"))?)
            }
            _ => return Err(format!("unknown flag {flag}; see --help")),
        };
    }
    Ok(Parsed::Run(Box::new(out)))
}

/// `250ms`, `2s`, `1.5s`, `5m`, `1h`, or several (`1m30s`).
pub fn duration(s: &str) -> Option<Duration> {
    let mut rest = s.trim();
    if rest.is_empty() {
        return None;
    }
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, tail) = rest.split_at(n);
        let unit = tail
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit);
        let value: f64 = number.parse().ok()?;
        let secs = match unit {
            "ms" => value / 1000.0,
            "s" => value,
            "m" => value * 60.0,
            "h" => value * 3600.0,
            _ => return None,
        };
        total += Duration::try_from_secs_f64(secs).ok()?;
        rest = tail;
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(duration("2s"), Some(Duration::from_secs(2)));
        assert_eq!(duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(duration("10"), None);
        assert_eq!(duration("-1s"), None);
        assert_eq!(duration("1d"), None);
    }
}
