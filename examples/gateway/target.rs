//! [`RouteTarget`]: one way to send a call (an upstream, the model sent
//! there), and how it rewrites a request for it ([`RouteTarget::apply`]).

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{HeaderName, AUTHORIZATION};
use serde::de::{DeserializeSeed, MapAccess, Visitor};
use serde_json::value::RawValue;
use tower_http_resilience::check::ContextWindow;
use tower_http_resilience::circuit_breaker::BreakerKey;
use tower_http_resilience::collect::CollectedBody;
use tower_http_resilience::pacing::Rpm;
use tower_http_resilience::ApiError;

use crate::upstream::Upstream;

/// The headers that carry a client's credential: removed when the gateway
/// sends an upstream's own.
const CLIENT_CREDENTIALS: [HeaderName; 3] = [
    AUTHORIZATION,
    HeaderName::from_static("x-api-key"),
    HeaderName::from_static("api-key"),
];

/// One way to send a call: an upstream, the model sent there, its retries
/// and the model's context window. What a fallback across targets needs
/// of each one:
///
/// - the URI base: `upstream.base` (the client's path joined onto it);
/// - the headers: with `upstream.credential`, the client's
///   `authorization`, `x-api-key` and `api-key` are removed and
///   `authorization` is set to it; without it they pass;
/// - the JSON body's `model` replaced by `rename`, when set;
/// - the breaker key: `name`; the pacing key: the upstream's authority,
///   the credential sent and `name` (pacing's `ByCredential` with `name`
///   as the `BreakerKey`), at the rate `upstream.rpm`;
/// - `retries` on this target before the next one;
/// - `context_window`: a prompt that does not fit skips this target.
#[derive(Clone, Debug)]
pub struct RouteTarget {
    /// `UPSTREAM:MODEL`, or `UPSTREAM` for a call that names no model: in
    /// `x-gateway-target`, the log line and the breaker key.
    pub name: Arc<str>,
    pub upstream: Arc<Upstream>,
    /// The model sent when it differs from the one asked for.
    pub rename: Option<Arc<str>>,
    /// Retries on this target before moving on (`None`: the gateway's
    /// `max_retries`).
    pub retries: Option<u32>,
    /// The context window of the model sent, when one is configured. With
    /// one target, the checks apply it (they see the model as sent); a
    /// fallback reads it to skip a target the prompt does not fit.
    #[allow(dead_code)]
    pub context_window: Option<ContextWindow>,
}

impl RouteTarget {
    /// Makes the request one for this target: its URI joined onto the
    /// upstream's base (the client's path and query kept; refused when
    /// unsafe), the upstream's credential in place of the client's, the
    /// breaker key and the rate in its extensions, and the body's `model`
    /// renamed. A renamed body is a new buffer (the original's trailers are
    /// not sent on).
    pub fn apply(
        &self,
        parts: &mut http::request::Parts,
        body: CollectedBody,
    ) -> Result<CollectedBody, ApiError> {
        parts.uri = self.upstream.base.join(&parts.uri)?;
        if let Some(credential) = &self.upstream.credential {
            for name in &CLIENT_CREDENTIALS {
                parts.headers.remove(name);
            }
            parts
                .headers
                .insert(AUTHORIZATION, credential.header().clone());
        }
        parts
            .extensions
            .insert(BreakerKey::new(self.name.to_string()));
        if let Some(rpm) = self.upstream.rpm {
            parts.extensions.insert(Rpm(rpm));
        }
        Ok(match &self.rename {
            Some(model) => match with_model(body.bytes(), model) {
                Some(renamed) => CollectedBody::from(Bytes::from(renamed)),
                None => body,
            },
            None => body,
        })
    }
}

/// `body` with the value of every top-level `model` key replaced by the
/// JSON string `model`, everything else byte for byte; `None` when the
/// body is not a JSON object with a `model`.
fn with_model(body: &[u8], model: &str) -> Option<Vec<u8>> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let spans = ModelSpans { body }.deserialize(&mut de).ok()?;
    de.end().ok()?;
    if spans.is_empty() {
        return None;
    }
    let value = serde_json::to_string(model).expect("a string serializes");
    let mut out = Vec::with_capacity(body.len() + value.len());
    let mut at = 0;
    for span in spans {
        out.extend_from_slice(&body[at..span.start]);
        out.extend_from_slice(value.as_bytes());
        at = span.end;
    }
    out.extend_from_slice(&body[at..]);
    Some(out)
}

/// Where the values of a JSON object's `model` keys are in `body`.
struct ModelSpans<'a> {
    body: &'a [u8],
}

impl<'de> DeserializeSeed<'de> for ModelSpans<'de> {
    type Value = Vec<Range<usize>>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ModelSpans<'de> {
    type Value = Vec<Range<usize>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut spans = Vec::new();
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            let value: &'de RawValue = map.next_value()?;
            if key == "model" {
                // The raw value borrows from the body: its place in it.
                let start = value.get().as_ptr() as usize - self.body.as_ptr() as usize;
                spans.push(start..start + value.get().len());
            }
        }
        Ok(spans)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_model_is_renamed_and_nothing_else_changes() {
        let body = br#"{ "messages":[{"role":"user","content":"\"model\": x"}],
            "model" : "gpt-4o", "n":1e400, "x":{"model":"inner"} }"#;
        let renamed = with_model(body, "backup/\"m\"").unwrap();
        assert_eq!(
            String::from_utf8(renamed).unwrap(),
            r#"{ "messages":[{"role":"user","content":"\"model\": x"}],
            "model" : "backup/\"m\"", "n":1e400, "x":{"model":"inner"} }"#
        );
        // Every copy of a duplicated key, as upstreams read the last.
        assert_eq!(
            with_model(br#"{"model":"a","model":null}"#, "b").unwrap(),
            br#"{"model":"b","model":"b"}"#
        );
        assert_eq!(with_model(br#"{"messages":[]}"#, "b"), None);
        assert_eq!(with_model(b"[1]", "b"), None);
        assert_eq!(with_model(br#"{"model":"a"} x"#, "b"), None);
        assert_eq!(with_model(b"", "b"), None);
    }
}
