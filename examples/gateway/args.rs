//! The gateway's command line: flags, defaults, durations and sizes, and
//! the config file's keys merged under them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tower_http_resilience::check::ContextWindow;
use tower_http_resilience::collect::{DEFAULT_MAX_BUFFERED_BODIES, DEFAULT_MAX_REQUEST_BODY};
use tower_http_resilience::pacing::PacingConfig;
use tower_http_resilience::{BaseUri, ResilienceConfig};

use crate::auth::ClientKeys;
use crate::config::{ConfigFile, Env, Refusal};
use crate::log::LogFormat;
use crate::routes::{RouteSpec, SIMULATED};
use crate::server::Limits;
use crate::upstream::Upstream;

pub const USAGE: &str = "\
An OpenAI-compatible resilient gateway.

usage: gateway [FLAGS]

  --listen ADDR                    where to listen; port 0 picks one     [127.0.0.1:8080]
  --admin-listen ADDR              serve /healthz, /metrics, /breakers   [off]
  --upstream URL                   a real OpenAI-compatible upstream,
                                   named `default`                        [embedded simulator]
  --config FILE                    a TOML file: [[upstream]], [[route]],
                                   [[model]] tables, client_keys_env, and
                                   any flag by its long name (`-` -> `_`);
                                   flags given here win over it           [none]
  --checks on|off                  answer invalid requests (bad JSON,
                                   model, messages, roles, ranges) and
                                   prompts over a [[model]] context window
                                   with a 400 before any upstream call    [on]
  --max-retries N                  retries after the first attempt        [3]
  --timeout D                      non-streaming call, all attempts;
                                   also the time a request body has       [60s]
  --attempt-timeout D              one attempt's response headers         [30s]
  --stream-first-byte-timeout D    streaming: time to the first byte      [60s]
  --stream-idle-timeout D          streaming: longest silence             [60s]
  --stream-timeout D               streaming: total                       [300s]
  --max-retry-after D              longest server-requested wait honoured [60s]
  --breaker-min-calls N            calls in the window before opening     [10]
  --breaker-failure-ratio F        failure ratio that opens a breaker     [0.5]
  --breaker-window D               rolling window                         [30s]
  --breaker-open D                 first open duration                    [30s]
  --max-connections N              client connections held at once        [1024]
  --header-read-timeout D          time for a request line and headers    [10s]
  --idle-timeout D                 keep-alive connection with no request  [60s]
  --max-request-body SIZE          largest request body                   [32MiB]
  --max-buffered-bodies SIZE       request bodies in memory, all calls    [256MiB]
  --shutdown-grace D               on SIGTERM/SIGINT, time for calls      [30s]
  --log-format text|json           one line per call on stdout            [text]
  --version                        print the version
  --help                           this text

Durations: 250ms, 2s, 1.5s, 5m, 1h. Sizes: 512KiB, 32MiB, 1GiB, or bytes.
RUST_LOG selects tracing output on stderr (default: warn).";

/// The flags that take a value.
const FLAGS: [&str; 23] = [
    "--listen",
    "--admin-listen",
    "--upstream",
    "--config",
    "--checks",
    "--max-retries",
    "--timeout",
    "--attempt-timeout",
    "--stream-first-byte-timeout",
    "--stream-idle-timeout",
    "--stream-timeout",
    "--max-retry-after",
    "--breaker-min-calls",
    "--breaker-failure-ratio",
    "--breaker-window",
    "--breaker-open",
    "--max-connections",
    "--header-read-timeout",
    "--idle-timeout",
    "--max-request-body",
    "--max-buffered-bodies",
    "--shutdown-grace",
    "--log-format",
];

/// What the command line asked for.
#[derive(Debug)]
pub enum Parsed {
    /// Run the gateway.
    Run(Box<Args>),
    /// Print the usage text.
    Help,
    /// Print the version.
    Version,
}

/// Where calls go.
#[derive(Debug)]
pub enum Upstreams {
    /// The embedded simulator's two providers ([`SIMULATED`]).
    Simulator,
    /// `--upstream` (named `default`) or the config file's tables.
    Given(Vec<Upstream>),
}

impl Upstreams {
    /// The names, in order.
    pub fn names(&self) -> Vec<&str> {
        match self {
            Upstreams::Simulator => SIMULATED.to_vec(),
            Upstreams::Given(ups) => ups.iter().map(|u| u.name.as_str()).collect(),
        }
    }
}

/// The gateway's settings.
#[derive(Debug)]
pub struct Args {
    pub listen: SocketAddr,
    /// Where the admin endpoints are served, if anywhere.
    pub admin_listen: Option<SocketAddr>,
    pub upstreams: Upstreams,
    /// The config file's routes (none: every model to every upstream).
    pub routes: Vec<RouteSpec>,
    /// The config file's `[[model]]` context windows.
    pub windows: HashMap<String, ContextWindow>,
    /// The keys clients must send (`client_keys_env`).
    pub client_keys: Option<ClientKeys>,
    /// `--checks`.
    pub checks: bool,
    /// The stack's settings (`--timeout` included).
    pub config: ResilienceConfig,
    /// Pacing's settings: `--max-retry-after` too.
    pub pacing: PacingConfig,
    /// The time a request body has to arrive: `--timeout` too.
    pub body_timeout: Duration,
    pub limits: Limits,
    pub max_request_body: usize,
    pub max_buffered_bodies: usize,
    pub shutdown_grace: Duration,
    pub log_format: LogFormat,
}

impl Default for Args {
    fn default() -> Self {
        let config = ResilienceConfig::default();
        Args {
            listen: "127.0.0.1:8080".parse().expect("a valid address"),
            admin_listen: None,
            upstreams: Upstreams::Simulator,
            routes: Vec::new(),
            windows: HashMap::new(),
            client_keys: None,
            checks: true,
            pacing: PacingConfig::new(),
            body_timeout: Duration::from_secs(60),
            config,
            limits: Limits::default(),
            max_request_body: DEFAULT_MAX_REQUEST_BODY,
            max_buffered_bodies: DEFAULT_MAX_BUFFERED_BODIES,
            shutdown_grace: Duration::from_secs(30),
            log_format: LogFormat::Text,
        }
    }
}

/// Parses the arguments after the program name, reading the process's
/// environment for the config file's variables; `Err` is the message for
/// the user.
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Parsed, String> {
    parse_with(args, &|var| std::env::var(var).ok())
}

/// [`parse`], with the environment `env`.
pub fn parse_with(args: impl IntoIterator<Item = String>, env: Env<'_>) -> Result<Parsed, String> {
    let mut given: Vec<(String, String)> = Vec::new();
    let mut file: Option<PathBuf> = None;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--help" | "-h" => return Ok(Parsed::Help),
            "--version" | "-V" => return Ok(Parsed::Version),
            _ => {}
        }
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        if !flag.starts_with("--") {
            return Err(format!("unexpected argument `{arg}`; see --help"));
        }
        if !FLAGS.contains(&flag.as_str()) {
            return Err(format!("unknown flag {flag}; see --help"));
        }
        let Some(value) = inline.or_else(|| args.next()) else {
            return Err(format!("{flag} needs a value; see --help"));
        };
        if flag == "--config" {
            file = Some(value.into());
        } else {
            given.push((flag, value));
        }
    }
    let mut out = Args::default();
    let file = match file {
        Some(path) => {
            let config = ConfigFile::load(&path)?;
            let shown = path.display().to_string();
            let refused = |r: Refusal| format!("{shown}: {}: {}", r.key, r.reason);
            apply_file_flags(&mut out, &config).map_err(refused)?;
            Some((config, shown))
        }
        None => None,
    };
    for (flag, value) in &given {
        set(&mut out, flag, value).map_err(|reason| format!("{flag}: {reason}"))?;
    }
    if let Some((config, shown)) = file {
        let refused = |r: Refusal| format!("{shown}: {}: {}", r.key, r.reason);
        if !config.upstreams.is_empty() {
            if matches!(out.upstreams, Upstreams::Given(_)) {
                return Err(format!(
                    "--upstream cannot be combined with the [[upstream]] tables of {shown}: \
                     name the upstream in one place"
                ));
            }
            out.upstreams = Upstreams::Given(config.upstreams(env).map_err(refused)?);
        }
        out.routes = config.routes(&out.upstreams.names()).map_err(refused)?;
        out.windows = config.windows().map_err(refused)?;
        out.client_keys = config.client_keys(env).map_err(refused)?;
    }
    out.config
        .check()
        .map_err(|e| format!("{e} (see --help)"))?;
    Ok(Parsed::Run(Box::new(out)))
}

/// Applies the file's top-level keys as the flags of the same name.
fn apply_file_flags(out: &mut Args, config: &ConfigFile) -> Result<(), Refusal> {
    for (key, value) in &config.flags {
        let flag = format!("--{}", key.replace('_', "-"));
        let reason = match key.as_str() {
            "config" => Some("a config file cannot name another"),
            _ if key.contains('-') || !FLAGS.contains(&flag.as_str()) => {
                Some("unknown key (a flag by its long name with `_` for `-`, or a table)")
            }
            _ => None,
        };
        if let Some(reason) = reason {
            return Err(Refusal {
                key: key.clone(),
                reason: reason.to_owned(),
            });
        }
        set(out, &flag, value).map_err(|reason| Refusal {
            key: key.clone(),
            reason,
        })?;
    }
    Ok(())
}

/// Applies one flag of the listener, the upstream or the stack; `Err` is
/// the reason the value is refused.
fn set(out: &mut Args, flag: &str, value: &str) -> Result<(), String> {
    let bad = |what: &str| format!("`{value}` is not {what}");
    let number = || value.parse::<u32>().map_err(|_| bad("a whole number"));
    let dur = || duration(value).ok_or_else(|| bad("a duration"));
    let c = std::mem::take(&mut out.config);
    out.config = match flag {
        "--listen" => {
            out.listen = value
                .parse()
                .map_err(|_| bad("an address like 127.0.0.1:8080"))?;
            c
        }
        "--admin-listen" => {
            let addr = value
                .parse()
                .map_err(|_| bad("an address like 127.0.0.1:9090"))?;
            out.admin_listen = Some(addr);
            c
        }
        "--upstream" => {
            let base = value
                .parse::<BaseUri>()
                .map_err(|e| format!("`{value}`: {e}"))?;
            out.upstreams = Upstreams::Given(vec![Upstream {
                name: "default".to_owned(),
                base,
                credential: None,
                rpm: None,
            }]);
            c
        }
        "--max-retries" => c.max_retries(number()?),
        "--breaker-min-calls" => c.breaker_min_calls(number()?),
        "--breaker-failure-ratio" => {
            c.breaker_failure_ratio(value.parse().map_err(|_| bad("a number"))?)
        }
        "--timeout" => {
            out.body_timeout = dur()?;
            c.total_timeout(out.body_timeout)
        }
        "--attempt-timeout" => c.attempt_timeout(dur()?),
        "--stream-first-byte-timeout" => c.stream_first_byte_timeout(dur()?),
        "--stream-idle-timeout" => c.stream_idle_timeout(dur()?),
        "--stream-timeout" => c.stream_timeout(dur()?),
        "--max-retry-after" => {
            let max = dur()?;
            out.pacing = std::mem::take(&mut out.pacing).max_retry_after(max);
            c.max_retry_after(max)
        }
        "--breaker-window" => c.breaker_window(dur()?),
        "--breaker-open" => c.breaker_open_duration(dur()?),
        _ => {
            set_limit(out, flag, value)?;
            c
        }
    };
    Ok(())
}

/// Applies one flag of the connection, body, shutdown and log settings.
fn set_limit(out: &mut Args, flag: &str, value: &str) -> Result<(), String> {
    let bad = |what: &str| format!("`{value}` is not {what}");
    let positive = || {
        duration(value)
            .filter(|d| !d.is_zero())
            .ok_or_else(|| bad("a duration above zero"))
    };
    let bytes = || size(value).ok_or_else(|| bad("a size like 512KiB or 32MiB"));
    match flag {
        "--max-connections" => {
            out.limits.max_connections = value
                .parse()
                .ok()
                .filter(|&n: &usize| n > 0)
                .ok_or_else(|| bad("a whole number above zero"))?;
        }
        "--header-read-timeout" => out.limits.header_read_timeout = positive()?,
        "--idle-timeout" => out.limits.idle_timeout = positive()?,
        "--max-request-body" => out.max_request_body = bytes()?,
        "--max-buffered-bodies" => {
            out.max_buffered_bodies = Some(bytes()?)
                .filter(|&n| n > 0)
                .ok_or_else(|| bad("above zero"))?;
        }
        "--shutdown-grace" => {
            out.shutdown_grace = duration(value).ok_or_else(|| bad("a duration"))?;
        }
        "--checks" => {
            out.checks = match value {
                "on" | "true" => true,
                "off" | "false" => false,
                _ => return Err(bad("`on` or `off`")),
            };
        }
        "--log-format" => {
            out.log_format = match value {
                "text" => LogFormat::Text,
                "json" => LogFormat::Json,
                _ => return Err(bad("`text` or `json`")),
            };
        }
        _ => unreachable!("{flag} is in FLAGS"),
    }
    Ok(())
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

/// `512KiB`, `32MiB`, `1GiB`, `10MB` (powers of ten), or a number of bytes.
pub fn size(s: &str) -> Option<usize> {
    let s = s.trim();
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(digits);
    let number: usize = number.parse().ok()?;
    let unit: usize = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        _ => return None,
    };
    number.checked_mul(unit)
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

    #[test]
    fn sizes() {
        assert_eq!(size("512KiB"), Some(512 * 1024));
        assert_eq!(size("32MiB"), Some(32 << 20));
        assert_eq!(size("1GiB"), Some(1 << 30));
        assert_eq!(size("10MB"), Some(10_000_000));
        assert_eq!(size("4096"), Some(4096));
        assert_eq!(size("1.5MiB"), None);
        assert_eq!(size("MiB"), None);
        assert_eq!(size("-1KiB"), None);
        assert_eq!(size("99999999999999999999GiB"), None);
    }
}
