//! The credentials of one call: the values of the request's credential
//! headers and the secrets configured on the layer, removed from what the
//! caller gets back.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{HeaderName, AUTHORIZATION};
use http::{HeaderMap, HeaderValue};

use crate::error::redact::{redact_header, Needles, MIN_SECRET};

/// The request headers whose values are credentials.
const CREDENTIAL_HEADERS: [HeaderName; 3] = [
    AUTHORIZATION,
    HeaderName::from_static("x-api-key"),
    HeaderName::from_static("api-key"),
];

/// Secrets configured on a layer (an upstream key the service adds, say).
///
/// Its `Debug` shows how many there are, never what they are.
#[derive(Clone, Default)]
pub(crate) struct Configured(Option<Arc<[Bytes]>>);

impl Configured {
    /// No secrets.
    pub(crate) const fn none() -> Self {
        Configured(None)
    }

    /// These and `value`.
    pub(crate) fn with(&self, value: &[u8]) -> Self {
        let value = Bytes::copy_from_slice(value.trim_ascii());
        let mut all: Vec<Bytes> = self.0.iter().flat_map(|a| a.iter().cloned()).collect();
        all.push(value);
        Configured(Some(all.into()))
    }

    fn values(&self) -> &[Bytes] {
        self.0.as_deref().unwrap_or(&[])
    }
}

impl fmt::Debug for Configured {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{} secrets, redacted]", self.values().len())
    }
}

/// The secrets of one call: what the request's credential headers held and
/// what the layer was given.
///
/// Capturing them costs nothing for a request without credential headers
/// and a layer without secrets; otherwise one reference count each (a
/// header value shares the request's bytes).
#[derive(Clone, Default)]
pub(crate) struct Secrets {
    /// The first credential header value; nearly every request has one at
    /// most.
    first: Option<HeaderValue>,
    /// Any further ones.
    more: Vec<HeaderValue>,
    configured: Configured,
}

impl Secrets {
    /// The secrets of a request with `headers`, sent through a layer
    /// configured with `configured`.
    pub(crate) fn capture(headers: &HeaderMap, configured: &Configured) -> Self {
        let mut secrets = Secrets {
            first: None,
            more: Vec::new(),
            configured: configured.clone(),
        };
        for name in &CREDENTIAL_HEADERS {
            for value in headers.get_all(name) {
                if secrets.first.is_none() {
                    secrets.first = Some(value.clone());
                } else {
                    secrets.more.push(value.clone());
                }
            }
        }
        secrets
    }

    /// Whether there is nothing to remove.
    pub(crate) fn is_empty(&self) -> bool {
        self.first.is_none() && self.configured.0.is_none()
    }

    /// Removes the secrets from every header value (and, with `shapes`, the
    /// usual shapes of keys, for the headers of an error).
    pub(crate) fn scrub_headers(&self, headers: &mut HeaderMap, shapes: bool) {
        if self.is_empty() && !shapes {
            return;
        }
        for value in headers.values_mut() {
            if let Some(clean) = redact_header(value, self, shapes) {
                *value = clean;
            }
        }
    }

    fn values(&self) -> impl Iterator<Item = &[u8]> {
        self.first
            .iter()
            .chain(&self.more)
            .map(HeaderValue::as_bytes)
            .chain(self.configured.values().iter().map(|b| &b[..]))
    }
}

impl Needles for Secrets {
    /// Every value whole (without surrounding white space), and every token
    /// in it (a run of the characters of keys and base64: letters, digits,
    /// `-._~+/=`) and every dot-separated part of a token, each when it is
    /// at least [`MIN_SECRET`] bytes long.
    fn each(&self, f: &mut dyn FnMut(&[u8])) {
        for value in self.values() {
            let whole = value.trim_ascii();
            if whole.len() >= MIN_SECRET {
                f(whole);
            }
            for token in whole.split(|b| !is_token_byte(*b)) {
                if token.len() >= MIN_SECRET && token.len() < whole.len() {
                    f(token);
                }
                if token.contains(&b'.') {
                    for part in token.split(|b| *b == b'.') {
                        if part.len() >= MIN_SECRET {
                            f(part);
                        }
                    }
                }
            }
        }
    }
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sent = usize::from(self.first.is_some()) + self.more.len();
        f.debug_struct("Secrets")
            .field("sent", &sent)
            .field("configured", &self.configured)
            .finish()
    }
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/' | b'=')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn needles(s: &Secrets) -> Vec<String> {
        let mut out = Vec::new();
        s.each(&mut |n| out.push(String::from_utf8_lossy(n).into_owned()));
        out
    }

    #[test]
    fn every_credential_header_and_its_tokens() {
        let mut h = HeaderMap::new();
        h.insert(
            "authorization",
            "Bearer sk-proj-0123456789".parse().unwrap(),
        );
        h.append(
            "authorization",
            "Basic dXNlcjpwYXNzd29yZA==".parse().unwrap(),
        );
        h.insert("x-api-key", "short".parse().unwrap());
        h.insert(
            "api-key",
            " eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJl "
                .parse()
                .unwrap(),
        );
        h.insert("content-type", "application/json-but-long".parse().unwrap());
        let s = Secrets::capture(&h, &Configured::default().with(b"upstream-key-1"));
        assert_eq!(
            needles(&s),
            [
                "Bearer sk-proj-0123456789",
                "sk-proj-0123456789",
                "Basic dXNlcjpwYXNzd29yZA==",
                "dXNlcjpwYXNzd29yZA==",
                "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJl",
                "eyJhbGciOiJIUzI1NiJ9",
                "eyJzdWIiOiIxMjM0In0",
                "c2lnbmF0dXJl",
                "upstream-key-1",
            ]
        );
        assert!(!format!("{s:?}").contains("sk-proj"));
    }

    #[test]
    fn nothing_to_capture_is_empty() {
        let mut h = HeaderMap::new();
        h.insert("content-type", "application/json".parse().unwrap());
        let s = Secrets::capture(&h, &Configured::default());
        assert!(s.is_empty());
        assert!(needles(&s).is_empty());
    }

    #[test]
    fn headers_are_scrubbed() {
        let mut req = HeaderMap::new();
        req.insert("x-api-key", "k3y-0123456789".parse().unwrap());
        let s = Secrets::capture(&req, &Configured::default());
        let mut res = HeaderMap::new();
        res.insert("x-echo", "key=k3y-0123456789, ok".parse().unwrap());
        res.insert("x-fine", "nothing".parse().unwrap());
        s.scrub_headers(&mut res, false);
        assert_eq!(res["x-echo"], "key=[redacted], ok");
        assert_eq!(res["x-fine"], "nothing");
    }
}
