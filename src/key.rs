//! Keys: which shared state a request belongs to.
//!
//! An [`ExtractKey`] reads a key from the request's head (method, URI,
//! headers, extensions); calls with the same key share a circuit breaker
//! or a pacing state. [`ExtractKeyExt::or`] chains extractors: the first
//! that finds a key wins.
//!
//! ```
//! use std::borrow::Cow;
//! use http::request::Parts;
//! use tower_http_resilience::key::{
//!     key_fn, BreakerKey, ByAuthority, ByExtension, ExtractKey, ExtractKeyExt,
//! };
//!
//! // The model an outer layer put in the extensions, else a tenant header,
//! // else the host.
//! let key = ByExtension
//!     .or(key_fn(|parts: &Parts| {
//!         let tenant = parts.headers.get("x-tenant")?.to_str().ok()?;
//!         Some(Cow::Borrowed(tenant))
//!     }))
//!     .or(ByAuthority);
//!
//! let (mut parts, ()) = http::Request::get("http://api.example.com/v1").body(()).unwrap().into_parts();
//! assert_eq!(key.extract(&parts).as_deref(), Some("api.example.com"));
//! parts.headers.insert("x-tenant", "acme".parse().unwrap());
//! assert_eq!(key.extract(&parts).as_deref(), Some("acme"));
//! parts.extensions.insert(BreakerKey::new("gpt-4o"));
//! assert_eq!(key.extract(&parts).as_deref(), Some("gpt-4o"));
//! ```

use std::borrow::Cow;
use std::fmt;
use std::hash::Hasher;

use http::header::{HeaderName, HOST};
use http::request::Parts;

/// Picks the key of a request from its head: calls with the same key share
/// a breaker (or a pacing state).
///
/// The key is borrowed from the request where it can be, so that picking it
/// allocates nothing. `None` means the call is not guarded: it goes through
/// whatever the breakers say, and its outcome is not recorded.
///
/// Implemented by [`GlobalKey`] (the default: one breaker for every call),
/// [`ByAuthority`], [`ByHeader`], [`ByExtension`], their
/// [`or`](ExtractKeyExt::or) combinations, and functions and closures
/// `Fn(&Parts) -> Option<Cow<'_, str>>` (a closure that borrows its key
/// goes through [`key_fn`]):
///
/// ```
/// use std::borrow::Cow;
/// use http::request::Parts;
/// use tower_http_resilience::circuit_breaker::{CircuitBreakerLayer, ExtractKey};
///
/// fn by_first_path_segment(parts: &Parts) -> Option<Cow<'_, str>> {
///     parts.uri.path().split('/').nth(1).map(Cow::Borrowed)
/// }
/// let layer = CircuitBreakerLayer::new().key(by_first_path_segment);
/// # let (parts, ()) = http::Request::get("/v1/x").body(()).unwrap().into_parts();
/// # assert_eq!(by_first_path_segment.extract(&parts).as_deref(), Some("v1"));
/// ```
pub trait ExtractKey {
    /// The key of the request whose head is `parts`, or `None` to let the
    /// call through unguarded.
    fn extract<'a>(&self, parts: &'a Parts) -> Option<Cow<'a, str>>;

    /// Feeds the key of `parts` to `state` without building it, and
    /// returns whether there is one (nothing is fed when there is not).
    ///
    /// Requests with equal keys feed equal input. The default feeds the
    /// bytes of [`extract`](ExtractKey::extract)'s key; an extractor whose
    /// key is made rather than borrowed (joined from several parts, or a
    /// hash of a secret) feeds the parts instead, so that a layer that only
    /// needs to tell keys apart (pacing) allocates nothing per call.
    ///
    /// ```
    /// use std::hash::{BuildHasher, RandomState};
    /// use tower_http_resilience::key::{ByAuthority, ExtractKey};
    ///
    /// let (parts, ()) = http::Request::get("http://a.example/").body(()).unwrap().into_parts();
    /// let seed = RandomState::new();
    /// let mut fed = seed.build_hasher();
    /// assert!(ByAuthority.write_key(&parts, &mut fed));
    /// let mut by_hand = seed.build_hasher();
    /// std::hash::Hasher::write(&mut by_hand, b"a.example");
    /// assert_eq!(std::hash::Hasher::finish(&fed), std::hash::Hasher::finish(&by_hand));
    /// ```
    fn write_key<H: Hasher>(&self, parts: &Parts, state: &mut H) -> bool {
        match self.extract(parts) {
            Some(key) => {
                state.write(key.as_bytes());
                true
            }
            None => false,
        }
    }
}

impl<F> ExtractKey for F
where
    F: for<'a> Fn(&'a Parts) -> Option<Cow<'a, str>>,
{
    fn extract<'a>(&self, parts: &'a Parts) -> Option<Cow<'a, str>> {
        self(parts)
    }
}

/// Combinators for every [`ExtractKey`], closures included.
///
/// ```
/// use tower_http_resilience::circuit_breaker::{
///     BreakerKey, ByAuthority, ByExtension, CircuitBreakerLayer, ExtractKey, ExtractKeyExt,
///     GlobalKey,
/// };
///
/// // The caller's model, else the host, else one breaker for the rest.
/// let key = ByExtension.or(ByAuthority).or(GlobalKey);
/// let (parts, ()) = http::Request::new(()).into_parts();
/// assert_eq!(key.extract(&parts).as_deref(), Some(""));
/// let layer = CircuitBreakerLayer::new().key(key);
/// ```
pub trait ExtractKeyExt: ExtractKey + Sized {
    /// Falls back to `other` when this extractor finds no key.
    fn or<O: ExtractKey>(self, other: O) -> Or<Self, O> {
        Or {
            first: self,
            second: other,
        }
    }
}

impl<K: ExtractKey> ExtractKeyExt for K {}

/// Makes a closure that borrows its key from the request an
/// [`ExtractKey`]: Rust infers a closure's higher-ranked signature only
/// where that signature is expected. (A `fn` item, or a closure passed
/// straight to a function that expects the signature, needs no help.)
///
/// ```
/// use std::borrow::Cow;
/// use http::request::Parts;
/// use tower_http_resilience::circuit_breaker::{key_fn, CircuitBreakerLayer, ExtractKey};
///
/// let by_tenant = key_fn(|parts: &Parts| {
///     parts.headers.get("x-tenant").and_then(|v| v.to_str().ok()).map(Cow::Borrowed)
/// });
/// let (parts, ()) = http::Request::builder().header("x-tenant", "acme").body(()).unwrap().into_parts();
/// assert_eq!(by_tenant.extract(&parts).as_deref(), Some("acme"));
/// let layer = CircuitBreakerLayer::new().key(by_tenant);
/// ```
pub fn key_fn<F>(f: F) -> F
where
    F: for<'a> Fn(&'a Parts) -> Option<Cow<'a, str>>,
{
    f
}

/// One breaker for every call (the key is the empty string).
///
/// ```
/// use tower_http_resilience::key::{ExtractKey, GlobalKey};
///
/// let (parts, ()) = http::Request::new(()).into_parts();
/// assert_eq!(GlobalKey.extract(&parts).as_deref(), Some(""));
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct GlobalKey;

impl ExtractKey for GlobalKey {
    fn extract<'a>(&self, _parts: &'a Parts) -> Option<Cow<'a, str>> {
        Some(Cow::Borrowed(""))
    }
}

/// One breaker per upstream: the key is the request URI's authority
/// (`host:port` as written), or the `Host` header when the URI has none.
/// A request with neither is not guarded.
///
/// ```
/// use tower_http_resilience::key::{ByAuthority, ExtractKey};
///
/// let (parts, ()) = http::Request::get("https://api.example.com/v1").body(()).unwrap().into_parts();
/// assert_eq!(ByAuthority.extract(&parts).as_deref(), Some("api.example.com"));
/// let (parts, ()) = http::Request::get("/v1").header("host", "localhost:8080").body(()).unwrap().into_parts();
/// assert_eq!(ByAuthority.extract(&parts).as_deref(), Some("localhost:8080"));
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct ByAuthority;

impl ExtractKey for ByAuthority {
    fn extract<'a>(&self, parts: &'a Parts) -> Option<Cow<'a, str>> {
        if let Some(authority) = parts.uri.authority() {
            return Some(Cow::Borrowed(authority.as_str()));
        }
        let host = parts.headers.get(HOST)?;
        std::str::from_utf8(host.as_bytes()).ok().map(Cow::Borrowed)
    }
}

/// One breaker per value of a request header (a tenant id, an API key).
/// A request without the header, or with a value that is not UTF-8, is not
/// guarded.
///
/// A header that carries a secret (an API key) makes the key a secret:
/// `tracing` events show keys hashed by default
/// ([`KeyDisplay`](crate::circuit_breaker::KeyDisplay)).
///
/// ```
/// use http::HeaderName;
/// use tower_http_resilience::key::{ByHeader, ExtractKey};
///
/// let by_tenant = ByHeader::new(HeaderName::from_static("x-tenant"));
/// let (parts, ()) = http::Request::builder().header("x-tenant", "acme").body(()).unwrap().into_parts();
/// assert_eq!(by_tenant.extract(&parts).as_deref(), Some("acme"));
/// ```
#[derive(Clone, Debug)]
pub struct ByHeader(HeaderName);

impl ByHeader {
    /// Keys by the value of `name`.
    pub fn new(name: HeaderName) -> Self {
        ByHeader(name)
    }
}

impl ExtractKey for ByHeader {
    fn extract<'a>(&self, parts: &'a Parts) -> Option<Cow<'a, str>> {
        let value = parts.headers.get(&self.0)?;
        std::str::from_utf8(value.as_bytes())
            .ok()
            .map(Cow::Borrowed)
    }
}

/// One breaker per [`BreakerKey`] found in the request's extensions, put
/// there by an outer layer or handler (a gateway puts the JSON body's
/// `model` there). A request without one is not guarded; combine with
/// [`or`](ExtractKeyExt::or) for a fallback.
///
/// ```
/// use tower_http_resilience::key::{BreakerKey, ByExtension, ExtractKey};
///
/// let mut req = http::Request::new(());
/// req.extensions_mut().insert(BreakerKey::new("gpt-4o"));
/// let (parts, ()) = req.into_parts();
/// assert_eq!(ByExtension.extract(&parts).as_deref(), Some("gpt-4o"));
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct ByExtension;

impl ExtractKey for ByExtension {
    fn extract<'a>(&self, parts: &'a Parts) -> Option<Cow<'a, str>> {
        parts
            .extensions
            .get::<BreakerKey>()
            .map(|k| Cow::Borrowed(k.as_str()))
    }
}

/// The first of two extractors that finds a key: what
/// [`ExtractKeyExt::or`] returns.
///
/// ```
/// use tower_http_resilience::key::{ByAuthority, ByExtension, ExtractKeyExt, GlobalKey, Or};
///
/// // A name for a combination, e.g. in a type alias.
/// type ModelOrHost = Or<Or<ByExtension, ByAuthority>, GlobalKey>;
/// let key: ModelOrHost = ByExtension.or(ByAuthority).or(GlobalKey);
/// # let _ = key;
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Or<A, O> {
    first: A,
    second: O,
}

impl<A: ExtractKey, O: ExtractKey> ExtractKey for Or<A, O> {
    fn extract<'a>(&self, parts: &'a Parts) -> Option<Cow<'a, str>> {
        self.first
            .extract(parts)
            .or_else(|| self.second.extract(parts))
    }

    fn write_key<H: Hasher>(&self, parts: &Parts, state: &mut H) -> bool {
        self.first.write_key(parts, state) || self.second.write_key(parts, state)
    }
}

/// A breaker key set on a request by the caller, read by [`ByExtension`].
///
/// ```
/// use tower_http_resilience::key::BreakerKey;
///
/// let mut req = http::Request::new(());
/// req.extensions_mut().insert(BreakerKey::new("claude-sonnet-4"));
/// assert_eq!(req.extensions().get::<BreakerKey>().unwrap().as_str(), "claude-sonnet-4");
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct BreakerKey(Cow<'static, str>);

impl BreakerKey {
    /// A key (a model name, a tenant).
    pub fn new(key: impl Into<Cow<'static, str>>) -> Self {
        BreakerKey(key.into())
    }

    /// The key.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for BreakerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Keys may be secrets: their Debug form does not show them.
        write!(f, "BreakerKey({} bytes)", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Request;

    #[test]
    fn helpers_borrow_from_the_request() {
        let (mut parts, ()) = Request::builder()
            .uri("/v1/chat")
            .header(HOST, "api.example.com:8443")
            .header("x-tenant", "acme")
            .body(())
            .unwrap()
            .into_parts();
        assert!(matches!(GlobalKey.extract(&parts), Some(Cow::Borrowed(""))));
        assert_eq!(
            ByAuthority.extract(&parts).as_deref(),
            Some("api.example.com:8443")
        );
        let by_tenant = ByHeader::new(HeaderName::from_static("x-tenant"));
        assert!(matches!(
            by_tenant.extract(&parts),
            Some(Cow::Borrowed("acme"))
        ));
        assert_eq!(ByExtension.extract(&parts), None);
        parts.extensions.insert(BreakerKey::new(String::from("m")));
        assert!(matches!(
            ByExtension.extract(&parts),
            Some(Cow::Borrowed("m"))
        ));
        let none = ByHeader::new(HeaderName::from_static("x-missing"));
        assert_eq!(none.clone().or(none).extract(&parts), None);
        assert_eq!(
            format!("{:?}", BreakerKey::new("sk-secret")),
            "BreakerKey(9 bytes)"
        );
    }

    #[test]
    fn closures_and_functions_combine() {
        fn first_segment(parts: &Parts) -> Option<Cow<'_, str>> {
            parts.uri.path().split('/').nth(1).map(Cow::Borrowed)
        }
        let owned =
            key_fn(|parts: &Parts| Some(Cow::Owned(parts.method.as_str().to_ascii_lowercase())));
        let (parts, ()) = Request::post("/v1/chat").body(()).unwrap().into_parts();
        assert_eq!(
            first_segment.or(owned).extract(&parts).as_deref(),
            Some("v1")
        );
        let none = key_fn(|_: &Parts| None);
        assert_eq!(none.or(owned).extract(&parts).as_deref(), Some("post"));
        let (parts, ()) = Request::post("/").body(()).unwrap().into_parts();
        assert_eq!(
            ByExtension
                .or(first_segment)
                .or(owned)
                .extract(&parts)
                .as_deref(),
            Some("")
        );
    }
}
