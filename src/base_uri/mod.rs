//! [`BaseUri`]: where an upstream is reached, and the path-safe join of a
//! caller's request path onto it.
//!
//! A proxy builds the upstream URI from a configured base and the path the
//! caller sent. Appending the raw path is unsafe: `..` segments, written
//! plainly or percent-encoded, and encoded slashes climb out of the base's
//! path prefix once a server in between decodes them. [`BaseUri::join`]
//! refuses such paths ([`UnsafePath`]) and keeps everything the base says:
//!
//! - the scheme and authority always come from the base: an absolute-form
//!   request target or a `Host` header never choose where the call goes;
//! - the base's path is a prefix of every path; when it ends in a version
//!   segment (`/v1`) and the request path starts with the same one, it is
//!   not repeated (`…/v1` + `/v1/models` is `…/v1/models`);
//! - the base's query is added to every request (Azure's `api-version`); a
//!   request parameter of the same name is dropped, so the base's wins;
//! - user information in the base (`user:password@`) is never sent and
//!   never shown: [`Display`](std::fmt::Display) leaves it out.
//!
//! A path is refused when it does not start with `/`, when a segment is
//! `.` or `..` once percent-decoded (`%2e`, `%2E`; path parameters after
//! `;` ignored), or when it holds an encoded slash or backslash (`%2f`,
//! `%5c`, any case), a backslash, a NUL (`%00`), or a doubly encoded one of
//! these (`%252e`).
//!
//! # Example
//!
//! ```
//! use tower_http_resilience::BaseUri;
//!
//! let base: BaseUri = "https://user:secret@example.openai.azure.com/openai/v1?api-version=2024-10-21"
//!     .parse()
//!     .unwrap();
//! assert_eq!(
//!     base.to_string(),
//!     "https://example.openai.azure.com/openai/v1?api-version=2024-10-21"
//! );
//!
//! let uri = base.join(&"/v1/chat/completions".parse().unwrap()).unwrap();
//! assert_eq!(
//!     uri,
//!     "https://example.openai.azure.com/openai/v1/chat/completions?api-version=2024-10-21"
//! );
//!
//! let err = base.join(&"/v1/%2e%2e/other-tenant".parse().unwrap()).unwrap_err();
//! assert_eq!(err.to_string(), "the request path is not allowed: it has a `.` or `..` segment");
//! ```

use std::fmt;
use std::str::FromStr;

use http::uri::{Authority, Scheme};
use http::Uri;

mod path;

pub use path::UnsafePath;

use path::{check, Reason};

/// The base URI of an upstream: scheme, authority, an optional path prefix
/// and an optional query.
///
/// See the [module docs](self) for how a request path is joined onto it.
///
/// # Example
///
/// ```
/// use tower_http_resilience::BaseUri;
///
/// let base: BaseUri = "http://127.0.0.1:9000/api/".parse().unwrap();
/// let uri = base.join(&"/v1/models?limit=5".parse().unwrap()).unwrap();
/// assert_eq!(uri, "http://127.0.0.1:9000/api/v1/models?limit=5");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BaseUri {
    scheme: Scheme,
    /// Host and port, without user information.
    authority: Authority,
    /// The path without its trailing `/`: empty for the root.
    prefix: String,
    query: Option<String>,
}

impl BaseUri {
    /// The upstream URI for a request: the base's scheme, authority and
    /// prefix, the request's path, the base's query and the request's.
    ///
    /// Only the request's path and query are read; its scheme and authority,
    /// if it has them, are ignored.
    pub fn join(&self, request: &Uri) -> Result<Uri, UnsafePath> {
        let path = request.path();
        check(path).map_err(|reason| UnsafePath { reason })?;
        let path = self.without_repeated_version(path);

        let mut pq = String::with_capacity(self.prefix.len() + path.len() + 16);
        pq.push_str(&self.prefix);
        pq.push_str(path);
        if pq.is_empty() {
            pq.push('/');
        }
        let base_params = || self.query.iter().flat_map(|q| params(q));
        let request_params = request
            .query()
            .into_iter()
            .flat_map(params)
            .filter(|p| !base_params().any(|b| name(b) == name(p)));
        for (i, param) in base_params().chain(request_params).enumerate() {
            pq.push(if i == 0 { '?' } else { '&' });
            pq.push_str(param);
        }
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(pq)
            .build()
            .map_err(|_| UnsafePath {
                reason: Reason::Malformed,
            })
    }

    /// `path` without its first segment when the prefix ends with that same
    /// version segment (`v1`, `v2`, …).
    fn without_repeated_version<'a>(&self, path: &'a str) -> &'a str {
        let Some((_, last)) = self.prefix.rsplit_once('/') else {
            return path;
        };
        let is_version = last.len() > 1
            && last.starts_with('v')
            && last[1..].bytes().all(|b| b.is_ascii_digit());
        if !is_version {
            return path;
        }
        match path[1..].split_once('/') {
            Some((first, _)) if first == last => &path[1 + first.len()..],
            None if &path[1..] == last => "",
            _ => path,
        }
    }
}

impl TryFrom<Uri> for BaseUri {
    type Error = InvalidBaseUri;

    fn try_from(uri: Uri) -> Result<Self, InvalidBaseUri> {
        let scheme = match uri.scheme() {
            Some(s) if *s == Scheme::HTTP || *s == Scheme::HTTPS => s.clone(),
            _ => return Err(InvalidBaseUri("it needs http:// or https://")),
        };
        let authority = uri.authority().ok_or(InvalidBaseUri("it has no host"))?;
        let host_port = authority
            .as_str()
            .rsplit_once('@')
            .map_or(authority.as_str(), |(_, hp)| hp);
        let authority = host_port
            .parse::<Authority>()
            .ok()
            .filter(|a| !a.host().is_empty())
            .ok_or(InvalidBaseUri("it has no host"))?;
        let prefix = uri.path().trim_end_matches('/').to_owned();
        check(if prefix.is_empty() { "/" } else { &prefix })
            .map_err(|_| InvalidBaseUri("its path has `.`, `..` or encoded separators"))?;
        let query = uri.query().filter(|q| !q.is_empty()).map(str::to_owned);
        Ok(BaseUri {
            scheme,
            authority,
            prefix,
            query,
        })
    }
}

impl FromStr for BaseUri {
    type Err = InvalidBaseUri;

    fn from_str(s: &str) -> Result<Self, InvalidBaseUri> {
        let uri: Uri = s.parse().map_err(|_| InvalidBaseUri("it is not a URL"))?;
        BaseUri::try_from(uri)
    }
}

impl fmt::Display for BaseUri {
    /// The base without user information.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}{}", self.scheme, self.authority, self.prefix)?;
        if let Some(q) = &self.query {
            write!(f, "?{q}")?;
        }
        Ok(())
    }
}

/// The parameters of a query, empty ones left out.
fn params(query: &str) -> impl Iterator<Item = &str> {
    query.split('&').filter(|p| !p.is_empty())
}

/// A parameter's name, as written.
fn name(param: &str) -> &str {
    param.split_once('=').map_or(param, |(n, _)| n)
}

/// A string that cannot be a [`BaseUri`]: not an `http://` or `https://`
/// URL with a host, or with an unsafe path.
///
/// # Example
///
/// ```
/// use tower_http_resilience::BaseUri;
///
/// let err = "ftp://example.com".parse::<BaseUri>().unwrap_err();
/// assert_eq!(err.to_string(), "not an upstream URL: it needs http:// or https://");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidBaseUri(&'static str);

impl fmt::Display for InvalidBaseUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "not an upstream URL: {}", self.0)
    }
}

impl std::error::Error for InvalidBaseUri {}

#[cfg(test)]
mod tests {
    use super::*;

    fn join(base: &str, path: &str) -> Result<String, Reason> {
        let base: BaseUri = base.parse().unwrap();
        base.join(&path.parse().unwrap())
            .map(|u| u.to_string())
            .map_err(|e| e.reason)
    }

    #[test]
    fn keeps_the_prefix_and_the_query() {
        let azure = "https://x.openai.azure.com/openai/deployments/d?api-version=2024-10-21";
        assert_eq!(
            join(azure, "/chat/completions?stream=true").unwrap(),
            "https://x.openai.azure.com/openai/deployments/d/chat/completions?api-version=2024-10-21&stream=true"
        );
        // The base's parameter wins over the caller's.
        assert_eq!(
            join(azure, "/chat?api-version=1999&x=1").unwrap(),
            "https://x.openai.azure.com/openai/deployments/d/chat?api-version=2024-10-21&x=1"
        );
        assert_eq!(join("http://h:9", "/").unwrap(), "http://h:9/");
        assert_eq!(join("http://h:9/api/", "/").unwrap(), "http://h:9/api/");
        assert_eq!(join("http://h/api", "/x?").unwrap(), "http://h/api/x");
    }

    #[test]
    fn a_version_prefix_is_not_doubled() {
        let base = "https://api.example.com/v1";
        assert_eq!(
            join(base, "/v1/chat/completions").unwrap(),
            "https://api.example.com/v1/chat/completions"
        );
        assert_eq!(join(base, "/v1").unwrap(), "https://api.example.com/v1");
        assert_eq!(
            join(base, "/models").unwrap(),
            "https://api.example.com/v1/models"
        );
        assert_eq!(
            join(base, "/v1beta/x").unwrap(),
            "https://api.example.com/v1/v1beta/x"
        );
        assert_eq!(
            join("https://h/openai", "/openai/x").unwrap(),
            "https://h/openai/openai/x",
            "only version segments"
        );
    }

    #[test]
    fn the_request_never_chooses_the_host() {
        assert_eq!(
            join("http://up:1/p", "http://evil.example/v1/x?q=1").unwrap(),
            "http://up:1/p/v1/x?q=1"
        );
    }

    #[test]
    fn user_information_is_never_shown_or_sent() {
        let base: BaseUri = "https://u:hunter2@h:8443/x".parse().unwrap();
        assert_eq!(base.to_string(), "https://h:8443/x");
        let uri = base.join(&"/y".parse().unwrap()).unwrap();
        assert!(!uri.to_string().contains("hunter2"));
    }

    #[test]
    fn bases_that_are_not_upstreams() {
        for bad in [
            "ftp://h",
            "/just/a/path",
            "http://",
            "http://h/a/../b",
            "not a url",
        ] {
            assert!(bad.parse::<BaseUri>().is_err(), "{bad}");
        }
        let ipv6: BaseUri = "http://[::1]:8080".parse().unwrap();
        assert_eq!(ipv6.to_string(), "http://[::1]:8080");
    }

    proptest::proptest! {
        /// Whatever the path, a joined URI stays under the prefix and has no
        /// dot segment, plain or encoded.
        #[test]
        fn a_joined_path_stays_under_the_prefix(path in "/[a-zA-Z0-9./%;\\\\_-]{0,40}") {
            let base: BaseUri = "http://h/p".parse().unwrap();
            let Ok(request) = path.parse::<Uri>() else { return Ok(()) };
            if let Ok(uri) = base.join(&request) {
                let decoded = uri.path().replace("%2e", ".").replace("%2E", ".");
                proptest::prop_assert!(decoded.starts_with("/p/") || decoded == "/p");
                proptest::prop_assert!(decoded.split('/').all(|s| s != "." && s != ".."));
            }
        }
    }
}
