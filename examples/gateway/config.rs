//! The config file (`--config FILE`): TOML with upstreams, credentials,
//! routes, models, and any flag by its long name.
//!
//! ```toml
//! max_retries = 3                      # any flag: `--max-retries` → max_retries
//! client_keys_env = "GATEWAY_KEYS"     # comma-separated keys clients must send
//!
//! [[upstream]]
//! name = "openai"                      # letters, digits, '_' and '-'; unique
//! url = "https://api.openai.com"       # scheme://authority[/prefix][?query]
//! api_key_env = "OPENAI_API_KEY"       # sent as `authorization: Bearer …`
//! rpm = 500                            # requests per minute, per model
//!
//! [[route]]
//! model = "gpt-4o"                     # "*": every model no other route names
//! targets = ["openai", "backup:gpt-4o-mini"]
//! retries = 1
//!
//! [[model]]
//! name = "gpt-4o-mini"
//! context_window = 128000
//! tokenizer = "estimate"               # or "o200k_base", "cl100k_base"
//! ```
//!
//! Every mistake is refused at start with the file, the key and the
//! reason: a key that does not exist, a value of the wrong type or out of
//! range, a duplicate name, a route naming an upstream that does not
//! exist, a variable (`api_key_env`, `client_keys_env`) that is not set.

use std::collections::HashMap;
use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use tower_http_resilience::check::{ContextWindow, Tokenizer};
use tower_http_resilience::BaseUri;

use crate::auth::ClientKeys;
use crate::routes::RouteSpec;
use crate::upstream::{Credential, Upstream};

/// Looks an environment variable up (the process's, or a test's).
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// A file's mistake: the key at fault and why.
#[derive(Debug, PartialEq, Eq)]
pub struct Refusal {
    pub key: String,
    pub reason: String,
}

impl Refusal {
    fn new(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Refusal {
            key: key.into(),
            reason: reason.into(),
        }
    }
}

/// A config file as read: its flags, and its tables checked one by one.
#[derive(Debug, Default)]
pub struct ConfigFile {
    /// The top-level keys that are not tables, in the file's order, with
    /// their values as a flag would take them (`"60s"`, `3`, `true`).
    pub flags: Vec<(String, String)>,
    pub client_keys_env: Option<String>,
    pub upstreams: Vec<UpstreamTable>,
    pub routes: Vec<RouteTable>,
    pub models: Vec<ModelTable>,
}

/// An `[[upstream]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTable {
    pub name: String,
    pub url: String,
    pub api_key_env: Option<String>,
    pub rpm: Option<u32>,
}

/// A `[[route]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteTable {
    pub model: String,
    pub targets: Vec<String>,
    pub retries: Option<u32>,
}

/// A `[[model]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelTable {
    pub name: String,
    pub context_window: u64,
    pub tokenizer: Option<String>,
}

impl ConfigFile {
    /// Reads and parses the file at `path`; `Err` is the message for the
    /// user, with the file's name.
    pub fn load(path: &Path) -> Result<Self, String> {
        let shown = path.display();
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the config file {shown}: {e}"))?;
        Self::parse(&text).map_err(|r| format!("{shown}: {}: {}", r.key, r.reason))
    }

    /// Parses a file's text.
    pub fn parse(text: &str) -> Result<Self, Refusal> {
        let table: toml::Table = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map_or(0, |s| text[..s.start].matches('\n').count() + 1);
            Refusal::new(format!("line {line}"), e.message().trim().to_owned())
        })?;
        let mut file = ConfigFile::default();
        for (key, value) in table {
            match key.as_str() {
                "upstream" => file.upstreams = tables(&key, value)?,
                "route" => file.routes = tables(&key, value)?,
                "model" => file.models = tables(&key, value)?,
                "client_keys_env" => file.client_keys_env = Some(string(&key, value)?),
                _ => {
                    let value = scalar(&key, value)?;
                    file.flags.push((key, value));
                }
            }
        }
        Ok(file)
    }

    /// The upstreams, their keys read from the environment.
    pub fn upstreams(&self, env: Env<'_>) -> Result<Vec<Upstream>, Refusal> {
        let mut out: Vec<Upstream> = Vec::with_capacity(self.upstreams.len());
        for (i, t) in self.upstreams.iter().enumerate() {
            let key = |k: &str| format!("upstream[{i}].{k}");
            check_name(&t.name).map_err(|reason| Refusal::new(key("name"), reason))?;
            if let Some(j) = out.iter().position(|u| u.name == t.name) {
                let reason = format!("`{}` is already the name of upstream[{j}]", t.name);
                return Err(Refusal::new(key("name"), reason));
            }
            let base: BaseUri = t
                .url
                .parse()
                .map_err(|e| Refusal::new(key("url"), format!("`{}`: {e}", t.url)))?;
            let credential = match &t.api_key_env {
                None => None,
                Some(var) => {
                    let value =
                        variable(env, var).map_err(|r| Refusal::new(key("api_key_env"), r))?;
                    let credential = Credential::bearer(&value).map_err(|why| {
                        Refusal::new(key("api_key_env"), format!("the variable {var}: {why}"))
                    })?;
                    Some(credential)
                }
            };
            if t.rpm == Some(0) {
                return Err(Refusal::new(key("rpm"), "must be at least 1"));
            }
            out.push(Upstream {
                name: t.name.clone(),
                base,
                credential,
                rpm: t.rpm,
            });
        }
        Ok(out)
    }

    /// The routes, their targets resolved against the names of the
    /// upstreams (in order).
    pub fn routes(&self, upstreams: &[&str]) -> Result<Vec<RouteSpec>, Refusal> {
        let mut out: Vec<RouteSpec> = Vec::with_capacity(self.routes.len());
        for (i, t) in self.routes.iter().enumerate() {
            let key = |k: &str| format!("route[{i}].{k}");
            if t.model.is_empty() {
                return Err(Refusal::new(key("model"), "is empty"));
            }
            if let Some(j) = out.iter().position(|r| r.model == t.model) {
                let reason = format!("`{}` already has route[{j}]", t.model);
                return Err(Refusal::new(key("model"), reason));
            }
            if t.targets.is_empty() {
                return Err(Refusal::new(key("targets"), "names no target"));
            }
            let targets = t
                .targets
                .iter()
                .map(|target| resolve(target, upstreams))
                .collect::<Result<Vec<_>, String>>()
                .map_err(|reason| Refusal::new(key("targets"), reason))?;
            if t.retries.is_some_and(|r| r > 100) {
                return Err(Refusal::new(key("retries"), "is more than 100"));
            }
            out.push(RouteSpec {
                model: t.model.clone(),
                targets,
                retries: t.retries,
            });
        }
        Ok(out)
    }

    /// The context windows, by model name.
    pub fn windows(&self) -> Result<HashMap<String, ContextWindow>, Refusal> {
        let mut out = HashMap::with_capacity(self.models.len());
        for (i, t) in self.models.iter().enumerate() {
            let key = |k: &str| format!("model[{i}].{k}");
            if t.name.is_empty() {
                return Err(Refusal::new(key("name"), "is empty"));
            }
            if out.contains_key(&t.name) {
                let reason = format!("`{}` is already the name of another [[model]]", t.name);
                return Err(Refusal::new(key("name"), reason));
            }
            if t.context_window == 0 {
                return Err(Refusal::new(key("context_window"), "must be at least 1"));
            }
            let tokenizer: Tokenizer = match &t.tokenizer {
                None => Tokenizer::Estimate,
                Some(name) => name
                    .parse()
                    .map_err(|e| Refusal::new(key("tokenizer"), format!("`{name}`: {e}")))?,
            };
            out.insert(
                t.name.clone(),
                ContextWindow::new(t.context_window, tokenizer),
            );
        }
        Ok(out)
    }

    /// The client keys, when `client_keys_env` is set.
    pub fn client_keys(&self, env: Env<'_>) -> Result<Option<ClientKeys>, Refusal> {
        let Some(var) = &self.client_keys_env else {
            return Ok(None);
        };
        let value = variable(env, var).map_err(|r| Refusal::new("client_keys_env", r))?;
        ClientKeys::from_list(&value).map(Some).ok_or_else(|| {
            Refusal::new(
                "client_keys_env",
                format!("the variable {var} holds no key"),
            )
        })
    }
}

/// `UPSTREAM` or `UPSTREAM:MODEL` (split at the first `:`), the upstream
/// by its index in `upstreams`.
fn resolve(target: &str, upstreams: &[&str]) -> Result<(usize, Option<String>), String> {
    let (name, model) = match target.split_once(':') {
        Some((name, model)) => (name, Some(model)),
        None => (target, None),
    };
    if model == Some("") {
        return Err(format!("`{target}` names no model after its `:`"));
    }
    let index = upstreams.iter().position(|u| *u == name).ok_or_else(|| {
        format!(
            "`{target}` names the upstream `{name}`, which does not exist (upstreams: {})",
            upstreams.join(", ")
        )
    })?;
    Ok((index, model.map(str::to_owned)))
}

/// Letters, digits, `_` and `-`, at least one.
fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a name: letters, digits, `_` and `-` only"
        ))
    }
}

/// The value of the variable `var`, which must be set.
fn variable(env: Env<'_>, var: &str) -> Result<String, String> {
    env(var).ok_or_else(|| format!("the variable {var} is not set"))
}

/// An array of tables, each read as a `T`.
fn tables<T: DeserializeOwned>(key: &str, value: toml::Value) -> Result<Vec<T>, Refusal> {
    let toml::Value::Array(items) = value else {
        let reason = match key {
            "upstream" => "must be [[upstream]] tables (the --upstream flag has no key in a file)",
            _ => "must be an array of tables",
        };
        return Err(Refusal::new(key, format!("{reason}: write [[{key}]]")));
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            T::deserialize(item).map_err(|e| {
                let (key, reason) = field_error(&format!("{key}[{i}]"), &e.to_string());
                Refusal::new(key, reason)
            })
        })
        .collect()
}

/// The key and reason of a table's error: `unknown field `x`, expected …`
/// or `… \nin `field``.
fn field_error(table: &str, message: &str) -> (String, String) {
    let (reason, field) = match message.rsplit_once("\nin `") {
        Some((reason, field)) => (reason, Some(field.trim_end().trim_end_matches('`'))),
        None => (message, None),
    };
    if let Some(rest) = reason.strip_prefix("unknown field `") {
        if let Some((field, expected)) = rest.split_once('`') {
            let expected = expected.trim_start_matches(", ").replace('`', "");
            return (
                format!("{table}.{field}"),
                format!("unknown key ({expected})"),
            );
        }
    }
    if let Some(rest) = reason.strip_prefix("missing field `") {
        let field = rest.split('`').next().unwrap_or(rest);
        return (format!("{table}.{field}"), "is missing".to_owned());
    }
    match field {
        Some(field) => (format!("{table}.{field}"), reason.trim().to_owned()),
        None => (table.to_owned(), reason.trim().to_owned()),
    }
}

fn string(key: &str, value: toml::Value) -> Result<String, Refusal> {
    match value {
        toml::Value::String(s) => Ok(s),
        other => Err(Refusal::new(
            key,
            format!("must be a string, not {}", other.type_str()),
        )),
    }
}

/// A flag's value as the command line would give it.
fn scalar(key: &str, value: toml::Value) -> Result<String, Refusal> {
    match value {
        toml::Value::String(s) => Ok(s),
        toml::Value::Integer(n) => Ok(n.to_string()),
        toml::Value::Float(f) => Ok(f.to_string()),
        toml::Value::Boolean(b) => Ok(b.to_string()),
        other => Err(Refusal::new(
            key,
            format!(
                "must be a string, a number or a boolean, not {}",
                other.type_str()
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_errors_name_the_key() {
        let f = |m: &str| field_error("upstream[1]", m);
        assert_eq!(
            f("unknown field `urll`, expected one of `name`, `url`"),
            (
                "upstream[1].urll".into(),
                "unknown key (expected one of name, url)".into()
            )
        );
        assert_eq!(
            f("invalid type: string \"x\", expected u32\nin `rpm`\n"),
            (
                "upstream[1].rpm".into(),
                "invalid type: string \"x\", expected u32".into()
            )
        );
        assert_eq!(
            f("missing field `url`\n"),
            ("upstream[1].url".into(), "is missing".into())
        );
    }

    #[test]
    fn targets_split_at_the_first_colon() {
        let ups = ["ollama", "b"];
        assert_eq!(
            resolve("ollama:llama3:8b", &ups),
            Ok((0, Some("llama3:8b".into())))
        );
        assert_eq!(resolve("b", &ups), Ok((1, None)));
        assert!(resolve("b:", &ups).unwrap_err().contains("names no model"));
        assert!(resolve("c:m", &ups)
            .unwrap_err()
            .contains("`c`, which does not exist"));
    }

    #[test]
    fn names_are_letters_digits_underscores_and_dashes() {
        assert!(check_name("open-ai_2").is_ok());
        for bad in ["", "a b", "a:b", "é", "a.b"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}
