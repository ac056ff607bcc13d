//! Choosing the breaker of a request: keys.

use std::borrow::Cow;
use std::fmt;

use http::header::{HeaderName, HOST};
use http::Request;

/// Picks the key of a request: calls with the same key share a breaker.
///
/// The key is borrowed from the request where it can be, so that picking it
/// allocates nothing. `None` means the call is not guarded: it goes through
/// whatever the breakers say, and its outcome is not recorded.
///
/// Implemented by [`GlobalKey`] (the default: one breaker for every call),
/// [`ByAuthority`], [`ByHeader`], [`ByExtension`], [`Or`], and by closures
/// `Fn(&Request<B>) -> Option<Cow<'_, str>>`:
///
/// ```
/// use std::borrow::Cow;
/// use tower_http_resilience::circuit_breaker::{CircuitBreakerLayer, ExtractKey};
///
/// fn by_first_path_segment(req: &http::Request<String>) -> Option<Cow<'_, str>> {
///     req.uri().path().split('/').nth(1).map(Cow::Borrowed)
/// }
/// let layer = CircuitBreakerLayer::new().key(by_first_path_segment);
/// # let req = http::Request::builder().uri("/v1/x").body(String::new()).unwrap();
/// # assert_eq!(by_first_path_segment.extract(&req).as_deref(), Some("v1"));
/// ```
pub trait ExtractKey<B> {
    /// The key of `req`, or `None` to let the call through unguarded.
    fn extract<'a>(&self, req: &'a Request<B>) -> Option<Cow<'a, str>>;
}

impl<B, F> ExtractKey<B> for F
where
    F: for<'a> Fn(&'a Request<B>) -> Option<Cow<'a, str>>,
{
    fn extract<'a>(&self, req: &'a Request<B>) -> Option<Cow<'a, str>> {
        self(req)
    }
}

/// Helps a closure that borrows its key from the request be an
/// [`ExtractKey`]: Rust infers the closure's higher-ranked signature only
/// when it is passed where that signature is expected. (A `fn` item needs no
/// help.)
///
/// ```
/// use std::borrow::Cow;
/// use tower_http_resilience::circuit_breaker::{key_fn, CircuitBreakerLayer, ExtractKey};
///
/// let by_tenant = key_fn(|req: &http::Request<()>| {
///     req.headers().get("x-tenant").and_then(|v| v.to_str().ok()).map(Cow::Borrowed)
/// });
/// let req = http::Request::builder().header("x-tenant", "acme").body(()).unwrap();
/// assert_eq!(by_tenant.extract(&req).as_deref(), Some("acme"));
/// let layer = CircuitBreakerLayer::new().key(by_tenant);
/// ```
pub fn key_fn<B, F>(f: F) -> F
where
    F: for<'a> Fn(&'a Request<B>) -> Option<Cow<'a, str>>,
{
    f
}

macro_rules! or_method {
    ($ty:ty) => {
        impl $ty {
            /// Falls back to `other` when this extractor finds no key.
            pub fn or<O>(self, other: O) -> Or<Self, O> {
                Or(self, other)
            }
        }
    };
}

/// One breaker for every call (the key is the empty string).
#[derive(Clone, Copy, Debug, Default)]
pub struct GlobalKey;

impl<B> ExtractKey<B> for GlobalKey {
    fn extract<'a>(&self, _req: &'a Request<B>) -> Option<Cow<'a, str>> {
        Some(Cow::Borrowed(""))
    }
}

/// One breaker per upstream: the key is the request URI's authority
/// (`host:port` as written), or the `Host` header when the URI has none.
/// A request with neither is not guarded.
#[derive(Clone, Copy, Debug, Default)]
pub struct ByAuthority;

or_method!(ByAuthority);

impl<B> ExtractKey<B> for ByAuthority {
    fn extract<'a>(&self, req: &'a Request<B>) -> Option<Cow<'a, str>> {
        if let Some(authority) = req.uri().authority() {
            return Some(Cow::Borrowed(authority.as_str()));
        }
        let host = req.headers().get(HOST)?;
        std::str::from_utf8(host.as_bytes()).ok().map(Cow::Borrowed)
    }
}

/// One breaker per value of a request header (a tenant id, an API key).
/// A request without the header, or with a value that is not UTF-8, is not
/// guarded.
///
/// A header that carries a secret (an API key) makes the key a secret:
/// `tracing` events show keys hashed by default
/// ([`KeyDisplay`](super::KeyDisplay)).
#[derive(Clone, Debug)]
pub struct ByHeader(HeaderName);

or_method!(ByHeader);

impl ByHeader {
    /// Keys by the value of `name`.
    pub fn new(name: HeaderName) -> Self {
        ByHeader(name)
    }
}

impl<B> ExtractKey<B> for ByHeader {
    fn extract<'a>(&self, req: &'a Request<B>) -> Option<Cow<'a, str>> {
        let value = req.headers().get(&self.0)?;
        std::str::from_utf8(value.as_bytes())
            .ok()
            .map(Cow::Borrowed)
    }
}

/// One breaker per [`BreakerKey`] found in the request's extensions, put
/// there by an outer layer or handler (a gateway puts the JSON body's
/// `model` there). A request without one is not guarded; combine with
/// [`or`](ByExtension::or) for a fallback.
#[derive(Clone, Copy, Debug, Default)]
pub struct ByExtension;

or_method!(ByExtension);

impl<B> ExtractKey<B> for ByExtension {
    fn extract<'a>(&self, req: &'a Request<B>) -> Option<Cow<'a, str>> {
        req.extensions()
            .get::<BreakerKey>()
            .map(|k| Cow::Borrowed(k.as_str()))
    }
}

/// The first of two extractors that finds a key.
///
/// ```
/// use tower_http_resilience::circuit_breaker::{BreakerKey, ByAuthority, ByExtension, ExtractKey};
///
/// let key = ByExtension.or(ByAuthority);
/// let mut req = http::Request::builder().uri("http://api.example.com/v1").body(()).unwrap();
/// assert_eq!(key.extract(&req).as_deref(), Some("api.example.com"));
/// req.extensions_mut().insert(BreakerKey::new("gpt-4o"));
/// assert_eq!(key.extract(&req).as_deref(), Some("gpt-4o"));
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Or<A, O>(pub A, pub O);

impl<A, O> Or<A, O> {
    /// Falls back to `other` when neither extractor finds a key.
    pub fn or<P>(self, other: P) -> Or<Self, P> {
        Or(self, other)
    }
}

impl<B, A, O> ExtractKey<B> for Or<A, O>
where
    A: ExtractKey<B>,
    O: ExtractKey<B>,
{
    fn extract<'a>(&self, req: &'a Request<B>) -> Option<Cow<'a, str>> {
        self.0.extract(req).or_else(|| self.1.extract(req))
    }
}

/// A breaker key set on a request by the caller, read by [`ByExtension`].
///
/// ```
/// use tower_http_resilience::circuit_breaker::BreakerKey;
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

    #[test]
    fn helpers_borrow_from_the_request() {
        let mut req = Request::builder()
            .uri("/v1/chat")
            .header(HOST, "api.example.com:8443")
            .header("x-tenant", "acme")
            .body(())
            .unwrap();
        assert!(matches!(GlobalKey.extract(&req), Some(Cow::Borrowed(""))));
        assert_eq!(
            ByAuthority.extract(&req).as_deref(),
            Some("api.example.com:8443")
        );
        let by_tenant = ByHeader::new(HeaderName::from_static("x-tenant"));
        assert!(matches!(
            by_tenant.extract(&req),
            Some(Cow::Borrowed("acme"))
        ));
        assert_eq!(ByExtension.extract(&req), None);
        req.extensions_mut()
            .insert(BreakerKey::new(String::from("m")));
        assert!(matches!(
            ByExtension.extract(&req),
            Some(Cow::Borrowed("m"))
        ));
        let none = ByHeader::new(HeaderName::from_static("x-missing"));
        assert_eq!(none.clone().or(none).extract(&req), None);
        assert_eq!(
            format!("{:?}", BreakerKey::new("sk-secret")),
            "BreakerKey(9 bytes)"
        );
    }
}
