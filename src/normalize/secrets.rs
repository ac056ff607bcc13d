//! The credentials of one call: the values of the request's credential
//! headers and the secrets configured on the layer, removed from what the
//! caller gets back.
//!
//! Values are kept as fingerprints (a length and a 64-bit hash), never as
//! bytes: neither the layer nor a call holds a copy of a credential, and
//! taking them from a request allocates nothing.

use std::fmt;
use std::sync::Arc;

use http::header::{HeaderName, AUTHORIZATION};
use http::HeaderMap;

use crate::error::fingerprint::{Fingerprint, Prefix};
use crate::error::redact::{redact_header, Needles, MIN_SECRET};

/// The request headers whose values are credentials.
const CREDENTIAL_HEADERS: [HeaderName; 3] = [
    AUTHORIZATION,
    HeaderName::from_static("x-api-key"),
    HeaderName::from_static("api-key"),
];

/// How many fingerprints a call keeps without allocating: a value and its
/// token for two credential headers.
const INLINE: usize = 4;

/// Secrets configured on a layer (an upstream key the service adds, say).
#[derive(Clone, Default)]
pub(crate) struct Configured(Option<Arc<[Fingerprint]>>);

impl Configured {
    /// No secrets.
    pub(crate) const fn none() -> Self {
        Configured(None)
    }

    /// These and `value`.
    pub(crate) fn with(&self, value: &[u8]) -> Self {
        let mut all: Vec<Fingerprint> = self.fingerprints().to_vec();
        fingerprints(value, &mut |f| all.push(f));
        Configured(Some(all.into()))
    }

    fn fingerprints(&self) -> &[Fingerprint] {
        self.0.as_deref().unwrap_or(&[])
    }
}

impl fmt::Debug for Configured {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{} fingerprints]", self.fingerprints().len())
    }
}

/// The secrets of one call: what the request's credential headers held and
/// what the layer was given.
#[derive(Clone, Default)]
pub(crate) struct Secrets {
    inline: [Option<Fingerprint>; INLINE],
    /// Those past [`INLINE`] (a request with many credential headers).
    more: Vec<Fingerprint>,
    configured: Configured,
}

impl Secrets {
    /// The secrets of a request with `headers`, sent through a layer
    /// configured with `configured`.
    pub(crate) fn capture(headers: &HeaderMap, configured: &Configured) -> Self {
        let mut secrets = Secrets {
            inline: [None; INLINE],
            more: Vec::new(),
            configured: configured.clone(),
        };
        let mut n = 0;
        for name in &CREDENTIAL_HEADERS {
            for value in headers.get_all(name) {
                fingerprints(value.as_bytes(), &mut |f| {
                    match secrets.inline.get_mut(n) {
                        Some(slot) => *slot = Some(f),
                        None => secrets.more.push(f),
                    }
                    n += 1;
                });
            }
        }
        secrets
    }

    /// Whether there is nothing to remove.
    pub(crate) fn is_empty(&self) -> bool {
        self.inline[0].is_none() && self.configured.0.is_none()
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
}

impl Secrets {
    /// Drops a reason phrase kept from the upstream's status line (HTTP/1)
    /// when it holds a secret (or, with `shapes`, a key shape): the status
    /// then goes out with its canonical reason.
    pub(crate) fn scrub_reason(&self, extensions: &mut http::Extensions, shapes: bool) {
        #[cfg(feature = "hyper")]
        if !self.is_empty() || shapes {
            let holds = extensions
                .get::<hyper::ext::ReasonPhrase>()
                .is_some_and(|r| crate::error::redact::holds_secret(r.as_bytes(), self, shapes));
            if holds {
                extensions.remove::<hyper::ext::ReasonPhrase>();
            }
        }
        #[cfg(not(feature = "hyper"))]
        let _ = (extensions, shapes);
    }
}

impl Needles for Secrets {
    fn each(&self, f: &mut dyn FnMut(Fingerprint)) {
        self.inline.iter().flatten().for_each(|n| f(*n));
        self.more.iter().for_each(|n| f(*n));
        self.configured.fingerprints().iter().for_each(|n| f(*n));
    }
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut n = 0;
        self.each(&mut |_| n += 1);
        write!(f, "Secrets([{n} fingerprints])")
    }
}

/// The fingerprints of a credential: the value whole (without surrounding
/// white space) and every token in it (a run of the characters of keys and
/// base64: letters, digits, `-._~+/=`; the key after `Bearer `), each when
/// it is at least [`MIN_SECRET`] bytes long. One pass over the value.
fn fingerprints(value: &[u8], f: &mut dyn FnMut(Fingerprint)) {
    let whole = value.trim_ascii();
    // A token as long as the value is the value itself, given once.
    let mut token_ends = |start: Prefix, end: &Prefix| {
        let part = end.since(&start);
        if part.len() >= MIN_SECRET && part.len() < whole.len() {
            f(part);
        }
    };
    let mut prefix = Prefix::default();
    let mut token: Option<Prefix> = None;
    for &b in whole {
        if is_token_byte(b) {
            token.get_or_insert(prefix);
        } else if let Some(start) = token.take() {
            token_ends(start, &prefix);
        }
        prefix.push(b);
    }
    if let Some(start) = token {
        token_ends(start, &prefix);
    }
    if whole.len() >= MIN_SECRET {
        f(prefix.since(&Prefix::default()));
    }
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/' | b'=')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(s: &Secrets) -> Vec<Fingerprint> {
        let mut out = Vec::new();
        s.each(&mut |n| out.push(n));
        out
    }

    #[test]
    fn every_credential_header_and_its_tokens() {
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJl";
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
        h.insert("api-key", format!(" {jwt} ").parse().unwrap());
        h.insert("content-type", "application/json-but-long".parse().unwrap());
        let s = Secrets::capture(&h, &Configured::default().with(b"upstream-key-1"));
        let want: Vec<Fingerprint> = [
            "sk-proj-0123456789",
            "Bearer sk-proj-0123456789",
            "dXNlcjpwYXNzd29yZA==",
            "Basic dXNlcjpwYXNzd29yZA==",
            jwt,
            "upstream-key-1",
        ]
        .iter()
        .map(|v| Fingerprint::of(v.as_bytes()))
        .collect();
        assert_eq!(all(&s), want);
        assert!(!format!("{s:?}").contains("sk-proj"));
        assert!(!s.is_empty());
    }

    #[test]
    fn nothing_to_capture_is_empty() {
        let mut h = HeaderMap::new();
        h.insert("content-type", "application/json".parse().unwrap());
        let s = Secrets::capture(&h, &Configured::default());
        assert!(s.is_empty());
        assert!(all(&s).is_empty());
    }

    #[test]
    fn many_credentials_are_all_kept() {
        let mut h = HeaderMap::new();
        for i in 0..5 {
            h.append(
                "x-api-key",
                format!("Key k-{i}-0123456789").parse().unwrap(),
            );
        }
        assert_eq!(all(&Secrets::capture(&h, &Configured::none())).len(), 10);
    }

    #[test]
    fn headers_are_scrubbed() {
        let mut req = HeaderMap::new();
        req.insert("x-api-key", "k3y-0123456789".parse().unwrap());
        let s = Secrets::capture(&req, &Configured::default());
        let mut res = HeaderMap::new();
        res.insert("x-echo", "key=K3Y-0123456789, ok".parse().unwrap());
        res.insert("x-fine", "nothing".parse().unwrap());
        s.scrub_headers(&mut res, false);
        assert_eq!(res["x-echo"], "key=[redacted], ok");
        assert_eq!(res["x-fine"], "nothing");
    }
}
