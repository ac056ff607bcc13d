//! [`Target`]: one way to send a call — an upstream, a credential, a
//! model — and how it rewrites the request.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use http::header::{HeaderName, HeaderValue, InvalidHeaderValue, AUTHORIZATION, HOST};
use http::request::Parts;

use crate::base_uri::{BaseUri, UnsafePath};
#[cfg(feature = "check")]
use crate::check::{ContextWindow, PromptTokens};
use crate::key::BreakerKey;
use crate::metrics::AttemptSeries;

/// The request headers that carry a client's credential: a target with its
/// own credential removes them all.
const CREDENTIAL_HEADERS: [HeaderName; 3] = [
    AUTHORIZATION,
    HeaderName::from_static("x-api-key"),
    HeaderName::from_static("api-key"),
];

/// One way to send a call: where (a [`BaseUri`]), with which credential and
/// headers, for which model, under which breaker key, with how many
/// retries.
///
/// Every setting is optional; a target that sets none sends the request as
/// it came. For each attempt on the target, the request is rewritten from
/// the caller's original:
///
/// | setting | the attempt's request |
/// |---|---|
/// | [`base_uri`](Self::base_uri) | the caller's path and query joined under the base ([`BaseUri::join`]: prefix and query kept, `..` and encoded separators refused with 400); the `Host` header removed, so the client sets the base's |
/// | [`credential`](Self::credential), [`bearer`](Self::bearer) | the caller's `authorization`, `x-api-key` and `api-key` removed, the target's set (marked sensitive) |
/// | [`header`](Self::header), [`remove_header`](Self::remove_header) | set (replacing the caller's) or removed |
/// | [`model`](Self::model) | the value of the JSON body's top-level `model` key renamed, every other byte kept; the body is read whole first (up to the loop's replay limit) and `content-length` follows |
/// | [`key`](Self::key) | a [`BreakerKey`] in the extensions: the breaker key, and with the authority and credential the pacing key |
/// | [`extension`](Self::extension) | any other extension for the layers inside (a pacing `Rpm`, a `TimeoutOverride`…) |
///
/// [`retries`](Self::retries) bounds the retries on this target (default:
/// the loop's `max_retries`); `context_window` (feature `check`) skips the
/// target for a request whose `PromptTokens` do not fit.
///
/// The name is what the outcome reports ([`Served`](super::Served)): a
/// gateway names its targets `UPSTREAM:MODEL`.
///
/// ```
/// use tower_http_resilience::fallback::Target;
///
/// let backup = Target::new("backup:gpt-4o-mini")
///     .base_uri("http://127.0.0.1:9000/v1".parse().unwrap())
///     .bearer("sk-backup")
///     .unwrap()
///     .model("gpt-4o-mini")
///     .key("backup:gpt-4o-mini")
///     .retries(1);
/// assert_eq!(backup.name(), "backup:gpt-4o-mini");
/// // Debug never shows a credential.
/// assert!(!format!("{backup:?}").contains("sk-backup"));
/// ```
#[derive(Clone)]
pub struct Target {
    name: Arc<str>,
    base: Option<BaseUri>,
    /// Headers removed from the caller's request, then those set.
    remove: Vec<HeaderName>,
    set: Vec<(HeaderName, HeaderValue)>,
    model: Option<Arc<str>>,
    key: Option<BreakerKey>,
    extensions: Option<http::Extensions>,
    retries: Option<u32>,
    #[cfg(feature = "check")]
    window: Option<ContextWindow>,
    /// `resilience_attempts_total` for this target, labelled once.
    series: AttemptSeries,
}

impl Target {
    /// A target named `name` that rewrites nothing.
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        let name: Arc<str> = name.into();
        Target {
            series: AttemptSeries::new(name.clone()),
            name,
            base: None,
            remove: Vec::new(),
            set: Vec::new(),
            model: None,
            key: None,
            extensions: None,
            retries: None,
            #[cfg(feature = "check")]
            window: None,
        }
    }

    /// Sends the call to `base`: the caller's path and query are joined
    /// under it.
    pub fn base_uri(mut self, base: BaseUri) -> Self {
        self.base = Some(base);
        self
    }

    /// Sends `value` in the credential header `name` (`x-api-key`, say),
    /// after removing the caller's `authorization`, `x-api-key` and
    /// `api-key`. The value is marked sensitive; a normalization layer
    /// outside does not know it, so give it to
    /// [`NormalizeLayer::secret`](crate::NormalizeLayer::secret) too.
    pub fn credential(mut self, name: HeaderName, mut value: HeaderValue) -> Self {
        value.set_sensitive(true);
        for header in CREDENTIAL_HEADERS {
            self = self.remove_header(header);
        }
        self.header(name, value)
    }

    /// Sends `authorization: Bearer <token>` instead of the caller's
    /// credentials (see [`credential`](Self::credential)); an error when
    /// the token cannot be a header value.
    pub fn bearer(self, token: &str) -> Result<Self, InvalidHeaderValue> {
        let value = HeaderValue::try_from(format!("Bearer {token}"))?;
        Ok(self.credential(AUTHORIZATION, value))
    }

    /// Sets the request header `name` to `value`, replacing the caller's.
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.set.retain(|(n, _)| *n != name);
        self.set.push((name, value));
        self
    }

    /// Removes the request header `name` (unless the target sets it).
    pub fn remove_header(mut self, name: HeaderName) -> Self {
        if !self.remove.contains(&name) {
            self.remove.push(name);
        }
        self
    }

    /// Renames the model: the value of the JSON body's top-level `model`
    /// key becomes `model`; every other byte of the body stays. A body that
    /// is not a JSON object with a string `model` is sent as it is.
    pub fn model(mut self, model: impl Into<Arc<str>>) -> Self {
        self.model = Some(model.into());
        self
    }

    /// Puts `key` in the request's extensions as its [`BreakerKey`]: the
    /// key of the breaker (by default) and part of the pacing key.
    pub fn key(mut self, key: impl Into<Cow<'static, str>>) -> Self {
        self.key = Some(BreakerKey::new(key));
        self
    }

    /// Puts `value` in the request's extensions (replacing one of its
    /// type), for a layer inside.
    pub fn extension<T: Clone + Send + Sync + 'static>(mut self, value: T) -> Self {
        self.extensions
            .get_or_insert_with(http::Extensions::new)
            .insert(value);
        self
    }

    /// Sets the retries on this target before the loop moves on (default:
    /// the loop's `max_retries`).
    pub fn retries(mut self, retries: u32) -> Self {
        self.retries = Some(retries);
        self
    }

    /// Sets the context window of the target's model: a request whose
    /// [`PromptTokens`] (published by a [`CheckLayer`](crate::CheckLayer)
    /// outside) do not fit skips this target.
    #[cfg(feature = "check")]
    pub fn context_window(mut self, window: impl Into<ContextWindow>) -> Self {
        self.window = Some(window.into());
        self
    }

    /// The target's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The name, shared.
    pub(crate) fn shared_name(&self) -> &Arc<str> {
        &self.name
    }

    /// The model the body is renamed to, if any.
    pub(crate) fn renamed_model(&self) -> Option<&str> {
        self.model.as_deref()
    }

    /// Where this target's attempts are counted.
    pub(crate) fn series(&self) -> &AttemptSeries {
        &self.series
    }

    /// The retries on this target, if it sets them.
    pub(crate) fn retry_limit(&self) -> Option<u32> {
        self.retries
    }

    /// Whether the call whose request `extensions` these are fits the
    /// target's model.
    pub(crate) fn fits(&self, extensions: &http::Extensions) -> bool {
        #[cfg(feature = "check")]
        if let Some(window) = self.window {
            return extensions
                .get::<PromptTokens>()
                .is_none_or(|tokens| tokens.fits(window));
        }
        let _ = extensions;
        true
    }

    /// Rewrites the head of an attempt's request for this target (the body
    /// is renamed apart); refuses a path that would climb out of the base.
    pub(crate) fn apply(&self, parts: &mut Parts) -> Result<(), UnsafePath> {
        if let Some(base) = &self.base {
            parts.uri = base.join(&parts.uri)?;
            parts.headers.remove(HOST);
        }
        for name in &self.remove {
            parts.headers.remove(name);
        }
        for (name, value) in &self.set {
            parts.headers.insert(name.clone(), value.clone());
        }
        if let Some(key) = &self.key {
            parts.extensions.insert(key.clone());
        }
        if let Some(extensions) = &self.extensions {
            parts.extensions.extend(extensions.clone());
        }
        Ok(())
    }
}

impl fmt::Debug for Target {
    // Header names only: values may be credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Target");
        d.field("name", &self.name)
            .field("base_uri", &self.base.as_ref().map(ToString::to_string))
            .field("remove", &self.remove)
            .field("set", &self.set.iter().map(|(n, _)| n).collect::<Vec<_>>())
            .field("model", &self.model)
            .field("key", &self.key)
            .field("retries", &self.retries);
        #[cfg(feature = "check")]
        d.field("context_window", &self.window);
        d.finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(uri: &str, headers: &[(&str, &str)]) -> Parts {
        let mut req = http::Request::post(uri);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.body(()).unwrap().into_parts().0
    }

    #[test]
    fn a_target_rewrites_where_and_with_what() {
        let target = Target::new("b")
            .base_uri(
                "https://backup.example/openai/v1?api-version=1"
                    .parse()
                    .unwrap(),
            )
            .bearer("sk-target")
            .unwrap()
            .header(
                HeaderName::from_static("x-route"),
                HeaderValue::from_static("b"),
            )
            .remove_header(HeaderName::from_static("x-drop"))
            .key("b:m");
        let mut p = parts(
            "http://gateway.local/v1/chat/completions?x=1",
            &[
                ("host", "gateway.local"),
                ("authorization", "Bearer client"),
                ("x-api-key", "client"),
                ("api-key", "client"),
                ("x-drop", "1"),
                ("x-route", "client"),
                ("accept", "text/event-stream"),
            ],
        );
        target.apply(&mut p).unwrap();
        assert_eq!(
            p.uri,
            "https://backup.example/openai/v1/chat/completions?api-version=1&x=1"
        );
        assert_eq!(p.headers["authorization"], "Bearer sk-target");
        assert!(p.headers["authorization"].is_sensitive());
        for gone in ["host", "x-api-key", "api-key", "x-drop"] {
            assert!(p.headers.get(gone).is_none(), "{gone}");
        }
        assert_eq!(p.headers["x-route"], "b");
        assert_eq!(p.headers["accept"], "text/event-stream");
        assert_eq!(p.extensions.get::<BreakerKey>().unwrap().as_str(), "b:m");

        let mut tricky = parts("/v1/%2e%2e/admin", &[]);
        assert!(target.apply(&mut tricky).is_err());
    }

    #[test]
    fn a_plain_target_changes_nothing() {
        let mut p = parts("http://up/v1/x", &[("authorization", "Bearer client")]);
        Target::new("a").apply(&mut p).unwrap();
        assert_eq!(p.uri, "http://up/v1/x");
        assert_eq!(p.headers["authorization"], "Bearer client");
        assert!(p.extensions.is_empty());
    }

    #[test]
    fn a_bad_token_is_refused() {
        assert!(Target::new("a").bearer("bad\ntoken").is_err());
    }
}
