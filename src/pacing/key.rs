//! The default pacing key: the scope in which an upstream counts requests.

use std::borrow::Cow;
use std::hash::Hasher;

use http::header::{HeaderName, HeaderValue, AUTHORIZATION, HOST};
use http::request::Parts;

use crate::key::{BreakerKey, ExtractKey};
use crate::util::fnv1a_64;

const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");
const API_KEY: HeaderName = HeaderName::from_static("api-key");

/// One key per upstream, credential and model: the scope in which AI
/// providers count requests and tokens.
///
/// - the upstream is the request URI's authority, or the `Host` header;
/// - the credential is the first of `authorization`, `x-api-key`,
///   `api-key` (OpenAI, Anthropic, Azure);
/// - the model is the [`BreakerKey`] an outer layer put in the request's
///   extensions (a gateway puts the JSON body's `model` there).
///
/// Every request has a key (a missing part is left empty). The credential
/// is never kept: calls are told apart by a seeded hash of the three parts
/// ([`write_key`](ExtractKey::write_key), no allocation), and the key's
/// name ([`extract`](ExtractKey::extract), made once per new key) shows the
/// credential as `key#` and 16 hex digits of a fixed hash, the same on
/// every replica:
///
/// ```
/// use tower_http_resilience::key::{BreakerKey, ExtractKey};
/// use tower_http_resilience::pacing::ByCredential;
///
/// let mut req = http::Request::post("https://api.openai.com/v1/chat/completions")
///     .header("authorization", "Bearer sk-secret")
///     .body(())
///     .unwrap();
/// req.extensions_mut().insert(BreakerKey::new("gpt-4o"));
/// let (parts, ()) = req.into_parts();
/// let name = ByCredential.extract(&parts).unwrap();
/// assert!(name.starts_with("api.openai.com gpt-4o key#"));
/// assert!(!name.contains("secret"));
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct ByCredential;

impl ByCredential {
    fn authority(parts: &Parts) -> &[u8] {
        match parts.uri.authority() {
            Some(authority) => authority.as_str().as_bytes(),
            None => parts.headers.get(HOST).map_or(&[], HeaderValue::as_bytes),
        }
    }

    fn credential(parts: &Parts) -> Option<&HeaderValue> {
        let headers = &parts.headers;
        headers
            .get(AUTHORIZATION)
            .or_else(|| headers.get(X_API_KEY))
            .or_else(|| headers.get(API_KEY))
    }

    fn model(parts: &Parts) -> &str {
        parts
            .extensions
            .get::<BreakerKey>()
            .map_or("", BreakerKey::as_str)
    }
}

impl ExtractKey for ByCredential {
    fn extract<'a>(&self, parts: &'a Parts) -> Option<Cow<'a, str>> {
        let mut name = String::from_utf8_lossy(Self::authority(parts)).into_owned();
        let model = Self::model(parts);
        if !model.is_empty() {
            name.push(' ');
            name.push_str(model);
        }
        if let Some(credential) = Self::credential(parts) {
            let hash = fnv1a_64(credential.as_bytes());
            name.push_str(&format!(" key#{hash:016x}"));
        }
        Some(Cow::Owned(name))
    }

    #[inline]
    fn write_key<H: Hasher>(&self, parts: &Parts, state: &mut H) -> bool {
        // Each part with its length, so that no two keys feed the same.
        for part in [
            Self::authority(parts),
            Self::credential(parts).map_or(&[][..], HeaderValue::as_bytes),
            Self::model(parts).as_bytes(),
        ] {
            state.write_usize(part.len());
            state.write(part);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::{BuildHasher, RandomState};

    fn parts(headers: &[(&str, &str)], model: Option<&'static str>) -> Parts {
        let mut req = http::Request::get("http://up.example/v1");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let mut req = req.body(()).unwrap();
        if let Some(m) = model {
            req.extensions_mut().insert(BreakerKey::new(m));
        }
        req.into_parts().0
    }

    fn fed(seed: &RandomState, parts: &Parts) -> u64 {
        let mut h = seed.build_hasher();
        assert!(ByCredential.write_key(parts, &mut h));
        h.finish()
    }

    #[test]
    fn credentials_and_models_make_keys() {
        let seed = RandomState::new();
        let a = parts(&[("authorization", "Bearer a")], Some("m"));
        let same = parts(
            &[("authorization", "Bearer a"), ("x-api-key", "z")],
            Some("m"),
        );
        let other_key = parts(&[("authorization", "Bearer b")], Some("m"));
        let other_model = parts(&[("authorization", "Bearer a")], Some("n"));
        let by_x_api_key = parts(&[("x-api-key", "Bearer a")], Some("m"));
        let none = parts(&[], None);
        assert_eq!(fed(&seed, &a), fed(&seed, &same));
        assert_ne!(fed(&seed, &a), fed(&seed, &other_key));
        assert_ne!(fed(&seed, &a), fed(&seed, &other_model));
        assert_eq!(
            fed(&seed, &a),
            fed(&seed, &by_x_api_key),
            "the same credential"
        );
        assert_ne!(fed(&seed, &a), fed(&seed, &none));
        let name = ByCredential.extract(&a).unwrap();
        assert_eq!(
            name,
            format!("up.example m key#{:016x}", fnv1a_64(b"Bearer a"))
        );
        assert_eq!(ByCredential.extract(&none).unwrap(), "up.example");
        let api_key = parts(&[("api-key", "azure")], None);
        assert!(ByCredential.extract(&api_key).unwrap().contains("key#"));
    }
}
