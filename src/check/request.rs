//! Reading a request body once, field by field, into a verdict: the first
//! [`Issue`] in table order, or what the request asks for ([`inspect`]).

use serde::de::{DeserializeSeed, MapAccess};

use super::config::Config;
use super::count::{Bounds, Count, Exact, REPLY};
use super::endpoint::Endpoint;
use super::issue::Issue;
use super::messages::Messages;
use super::messages::MessagesShape;
use super::prompt::PromptShape;
use super::scalar::Scalar;
use super::shape::{next_key, skip_value, Any, Shape};
use super::PromptTokens;

/// The keys the checks read; any other key is skipped unread.
const KEYS: &[&str] = &[
    "model",
    "messages",
    "prompt",
    "input",
    "temperature",
    "top_p",
    "presence_penalty",
    "frequency_penalty",
    "n",
    "max_tokens",
    "max_completion_tokens",
    "stream",
];
/// The index of `key` in [`KEYS`].
fn key_index(key: &str) -> Option<usize> {
    Some(match key {
        "model" => MODEL,
        "messages" => MESSAGES,
        "prompt" => PROMPT,
        "input" => INPUT,
        "temperature" => 4,
        "top_p" => 5,
        "presence_penalty" => 6,
        "frequency_penalty" => 7,
        "n" => 8,
        "max_tokens" => MAX_TOKENS,
        "max_completion_tokens" => MAX_COMPLETION_TOKENS,
        "stream" => 11,
        _ => return None,
    })
}

const MODEL: usize = 0;
const MESSAGES: usize = 1;
const PROMPT: usize = 2;
const INPUT: usize = 3;
/// Where the ranged fields start in [`KEYS`]; they are [`RULES`] in order.
const RANGED: usize = 4;

/// What a ranged field must be.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Rule {
    Number(f64, f64),
    Whole(i128, i128),
    Bool,
}

const MAX_TOKENS: usize = 9;
const MAX_COMPLETION_TOKENS: usize = 10;

/// The ranged fields (`KEYS[RANGED..]`), in the order the checks report
/// them: what each must be, said for people.
const RULES: [(Rule, &str); 8] = [
    (Rule::Number(0.0, 2.0), "a number between 0 and 2"),
    (Rule::Number(0.0, 1.0), "a number between 0 and 1"),
    (Rule::Number(-2.0, 2.0), "a number between -2 and 2"),
    (Rule::Number(-2.0, 2.0), "a number between -2 and 2"),
    (Rule::Whole(1, 128), "an integer between 1 and 128"),
    (Rule::Whole(1, i128::MAX), "an integer of at least 1"),
    (Rule::Whole(1, i128::MAX), "an integer of at least 1"),
    (Rule::Bool, "a boolean"),
];

impl Endpoint {
    /// Whether key `k` of [`KEYS`] is checked on this endpoint; the others
    /// are unknown fields here, and pass unread.
    fn reads(self, k: usize) -> bool {
        match self {
            Endpoint::Chat => k != PROMPT && k != INPUT,
            Endpoint::Completions => !matches!(k, MESSAGES | INPUT | MAX_COMPLETION_TOKENS),
            Endpoint::Embeddings => k == MODEL || k == INPUT,
        }
    }

    /// The field the prompt is in.
    fn prompt_param(self) -> &'static str {
        match self {
            Endpoint::Chat => "messages",
            Endpoint::Completions => "prompt",
            Endpoint::Embeddings => "input",
        }
    }

    /// The rule of ranged key `k`, and what it says.
    fn rule(self, k: usize) -> (Rule, &'static str) {
        if k == MAX_TOKENS && self.allows_zero_max_tokens() {
            return (Rule::Whole(0, i128::MAX), "an integer of at least 0");
        }
        RULES[k - RANGED]
    }
}

/// The fields read from a body (the last value of a key given twice).
struct Fields<'de, C> {
    model: Option<Scalar<'de>>,
    messages: Option<Messages<C>>,
    prompt: Option<C>,
    /// Bit `i` set: the last value of ranged field `i` breaks its rule.
    broken: u8,
    /// The last valid `max_tokens` and `max_completion_tokens`.
    limits: [Option<u64>; 2],
}

impl<C> Fields<'_, C> {
    /// Judges the value of ranged key `k` now, so that only the verdict is
    /// kept.
    fn judge(&mut self, endpoint: Endpoint, k: usize, value: &Scalar<'_>) {
        let ok = match (endpoint.rule(k).0, value) {
            (_, Scalar::Null) => true,
            (Rule::Number(lo, hi), v) => v.number().is_some_and(|n| (lo..=hi).contains(&n)),
            (Rule::Whole(lo, hi), v) => v.whole().is_some_and(|n| (lo..=hi).contains(&n)),
            (Rule::Bool, v) => matches!(v, Scalar::Bool(_)),
        };
        let bit = 1 << (k - RANGED);
        if ok {
            self.broken &= !bit;
        } else {
            self.broken |= bit;
        }
        if let MAX_TOKENS | MAX_COMPLETION_TOKENS = k {
            let limit = value.whole().filter(|_| ok);
            self.limits[k - MAX_TOKENS] = limit.map(|n| u64::try_from(n).unwrap_or(u64::MAX));
        }
    }
}

struct TopShape<C> {
    endpoint: Endpoint,
    zero: C,
}

impl<'de, C: Count> Shape<'de> for TopShape<C> {
    /// `None` when the body is not an object.
    type Value = Option<Fields<'de, C>>;

    fn other(self) -> Self::Value {
        None
    }

    fn map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut f = Fields {
            model: None,
            messages: None,
            prompt: None,
            broken: 0,
            limits: [None; 2],
        };
        while let Some(key) = next_key(&mut map, key_index)? {
            match key.filter(|&k| self.endpoint.reads(k)) {
                Some(MODEL) => f.model = Some(map.next_value()?),
                Some(MESSAGES) => {
                    f.messages = Some(map.next_value_seed(Any(MessagesShape(self.zero)))?)
                }
                Some(PROMPT | INPUT) => {
                    f.prompt = Some(map.next_value_seed(Any(PromptShape(self.zero)))?)
                }
                Some(k) => {
                    let value: Scalar<'de> = map.next_value()?;
                    f.judge(self.endpoint, k, &value);
                }
                None => skip_value(&mut map)?,
            }
        }
        Ok(Some(f))
    }
}

/// What a valid request asks for.
struct Verdict<'f, C> {
    model: Option<&'f str>,
    prompt: C,
    output: u64,
}

fn parse<C: Count>(body: &str, endpoint: Endpoint, zero: C) -> Result<Fields<'_, C>, Issue> {
    let mut de = serde_json::Deserializer::from_str(body);
    let fields = Any(TopShape { endpoint, zero })
        .deserialize(&mut de)
        .and_then(|f| de.end().map(|()| f))
        .map_err(|_| Issue::InvalidJson)?;
    fields.ok_or(Issue::InvalidJson)
}

impl<'de, C: Count> Fields<'de, C> {
    /// The first issue in table order, or what the request asks for.
    fn verdict(&self, endpoint: Endpoint, path: &str, zero: C) -> Result<Verdict<'_, C>, Issue> {
        let model = match &self.model {
            None | Some(Scalar::Null) if Endpoint::model_in_path(path) => None,
            None | Some(Scalar::Null) => return Err(Issue::MissingModel),
            Some(Scalar::Str(m)) if !m.is_empty() => Some(m.as_ref()),
            Some(_) => return Err(Issue::InvalidModel),
        };
        let prompt = match (endpoint, self.messages) {
            (Endpoint::Chat, None | Some(Messages::Null)) => return Err(Issue::MissingMessages),
            (Endpoint::Chat, Some(Messages::NotArray | Messages::Array { len: 0, .. })) => {
                return Err(Issue::InvalidMessages)
            }
            (
                Endpoint::Chat,
                Some(Messages::Array {
                    bad_role: Some(index),
                    ..
                }),
            ) => return Err(Issue::Role { index }),
            (Endpoint::Chat, Some(Messages::Array { mut tally, .. })) => {
                tally.framing("", REPLY);
                tally
            }
            _ => self.prompt.unwrap_or(zero),
        };
        if self.broken != 0 {
            let k = RANGED + self.broken.trailing_zeros() as usize;
            let (_, expected) = endpoint.rule(k);
            return Err(Issue::Field {
                name: KEYS[k],
                expected,
            });
        }
        let output = match self.limits {
            [Some(a), Some(b)] => a.min(b),
            [a, b] => a.or(b).unwrap_or(0),
        };
        Ok(Verdict {
            model,
            prompt,
            output,
        })
    }
}

/// Checks a request body against the rules, counting its prompt, and
/// against the context window of its model when one is configured.
///
/// The body is parsed once; a second time only when the model's tokenizer
/// is exact and the bounds of the first pass cannot decide.
pub(crate) fn inspect(
    body: &[u8],
    endpoint: Endpoint,
    path: &str,
    config: &Config,
) -> Result<PromptTokens, Issue> {
    // JSON is UTF-8: checked once for the whole body, not string by string.
    let body = std::str::from_utf8(body).map_err(|_| Issue::InvalidJson)?;
    let zero = Bounds::default();
    let fields = parse(body, endpoint, zero)?;
    let verdict = fields.verdict(endpoint, path, zero)?;
    let (bounds, output) = (verdict.prompt, verdict.output);
    let mut tokens = PromptTokens::new(bounds.lower, output);
    let Some(window) = verdict.model.and_then(|m| config.window(m)) else {
        return Ok(tokens);
    };
    let tokenizer = window.tokenizer();
    let sure_to_fit = bounds.upper.saturating_add(output) <= window.tokens();
    if tokenizer.is_exact() && tokens.fits(window) && !sure_to_fit {
        let zero = Exact::new(tokenizer);
        let exact = parse(body, endpoint, zero)?
            .verdict(endpoint, path, zero)?
            .prompt;
        tokens = tokens.with_exact(tokenizer, exact.tokens);
    }
    if tokens.fits(window) {
        Ok(tokens)
    } else {
        Err(Issue::ContextLength {
            param: endpoint.prompt_param(),
            exact: tokens.exact().is_some(),
            prompt: tokens.prompt(tokenizer),
            output,
            window: window.tokens(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_rules_line_up() {
        assert_eq!(KEYS.len(), RANGED + RULES.len());
        assert!(RULES.len() <= 8, "one bit per ranged field");
        for (i, k) in KEYS.iter().enumerate() {
            assert_eq!(key_index(k), Some(i));
        }
        assert_eq!(key_index("models"), None);
        assert_eq!(KEYS[MAX_TOKENS], "max_tokens");
        assert_eq!(KEYS[MAX_COMPLETION_TOKENS], "max_completion_tokens");
        assert_eq!(RULES[KEYS.len() - 1 - RANGED].0, Rule::Bool);
    }

    fn check(body: &str) -> Result<PromptTokens, Issue> {
        inspect(
            body.as_bytes(),
            Endpoint::Chat,
            "/v1/chat/completions",
            &Config::default(),
        )
    }

    #[test]
    fn the_last_of_a_repeated_key_wins() {
        let ok = r#"{"model":"m","model":"m2","messages":[{"role":"user","content":"a b"}],
                    "temperature":5,"temperature":1}"#;
        let tokens = check(ok).unwrap();
        assert_eq!(tokens.estimate(), 2);
        let twice = r#"{"model":"m","messages":[{"role":"user","content":"a b c d"}],
                       "messages":[{"role":"user","content":"a"}]}"#;
        assert_eq!(check(twice).unwrap().estimate(), 1, "counted once");
    }

    #[test]
    fn output_is_the_smaller_of_two_limits() {
        let b = r#"{"model":"m","messages":[{"role":"user","content":"x"}],
                   "max_tokens":50,"max_completion_tokens":20}"#;
        assert_eq!(check(b).unwrap().output(), 20);
    }

    #[test]
    fn completions_count_the_largest_prompt() {
        let c = |b: &str| {
            inspect(
                b.as_bytes(),
                Endpoint::Completions,
                "/v1/completions",
                &Config::default(),
            )
        };
        assert_eq!(
            c(r#"{"model":"m","prompt":["a","a b c"]}"#)
                .unwrap()
                .estimate(),
            3
        );
        assert_eq!(
            c(r#"{"model":"m","prompt":[1,2,3,4]}"#).unwrap().estimate(),
            4
        );
        assert_eq!(
            c(r#"{"model":"m","prompt":[[1,2],[1,2,3]]}"#)
                .unwrap()
                .estimate(),
            3
        );
        assert_eq!(c(r#"{"model":"m","max_tokens":0}"#).unwrap().output(), 0);
        assert!(c(r#"{"model":"m","max_tokens":-1}"#).is_err());
    }
}
