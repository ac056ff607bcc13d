//! The credentials of one call: the values of the request's credential
//! headers and the secrets configured on the layer, removed from what the
//! caller gets back.
//!
//! Values are kept as [fingerprints](crate::error::fingerprint) (a length,
//! the first four bytes and a 64-bit hash), not as copies: taking them from
//! a request allocates nothing, whatever backs the request's bytes.

use std::fmt;
use std::sync::Arc;

use http::header::{HeaderName, AUTHORIZATION};
use http::HeaderMap;

use crate::error::fingerprint::Fingerprint;
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
#[derive(Clone)]
pub(crate) struct Secrets {
    /// The first [`INLINE`] fingerprints; the first `len` are in use.
    inline: [Fingerprint; INLINE],
    len: usize,
    /// Those past [`INLINE`] (a request with many credential headers).
    more: Vec<Fingerprint>,
    configured: Configured,
}

impl Secrets {
    /// The secrets of a request with `headers`, sent through a layer
    /// configured with `configured`.
    pub(crate) fn capture(headers: &HeaderMap, configured: &Configured) -> Self {
        let mut secrets = Secrets {
            inline: [Fingerprint::EMPTY; INLINE],
            len: 0,
            more: Vec::new(),
            configured: configured.clone(),
        };
        for name in &CREDENTIAL_HEADERS {
            for value in headers.get_all(name) {
                fingerprints(
                    value.as_bytes(),
                    &mut |f| match secrets.inline.get_mut(secrets.len) {
                        Some(slot) => {
                            *slot = f;
                            secrets.len += 1;
                        }
                        None => secrets.more.push(f),
                    },
                );
            }
        }
        secrets
    }

    /// Whether there is nothing to remove.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0 && self.configured.0.is_none()
    }

    /// Removes the secrets from every header value (and, with `shapes`, the
    /// usual shapes of keys, for the headers of an error).
    pub(crate) fn scrub_headers(&self, headers: &mut HeaderMap, shapes: bool) {
        if self.is_empty() && !shapes {
            return;
        }
        // A value shorter than every secret cannot hold one (shapes are at
        // least 8 bytes long too).
        let mut shortest = usize::MAX;
        self.each(&mut |n| shortest = shortest.min(n.len()));
        let shortest = shortest.min(if shapes { MIN_SECRET } else { usize::MAX });
        for value in headers.values_mut() {
            if value.len() < shortest {
                continue;
            }
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
        self.inline[..self.len].iter().for_each(|n| f(*n));
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

/// The fingerprints of a credential: every token in it (a run of the
/// characters of keys and base64: letters, digits, `-._~+/=`; the key after
/// `Bearer `) of at least [`MIN_SECRET`] bytes, or, when it has none, the
/// value whole (without surrounding white space). Removing its tokens
/// removes every copy of the whole value too.
fn fingerprints(value: &[u8], f: &mut dyn FnMut(Fingerprint)) {
    let whole = value.trim_ascii();
    if whole.len() < MIN_SECRET {
        return;
    }
    let mut any = false;
    let mut start = 0;
    for end in 0..=whole.len() {
        if end < whole.len() && is_token_byte(whole[end]) {
            continue;
        }
        if end - start >= MIN_SECRET {
            f(Fingerprint::of(&whole[start..end]));
            any = true;
        }
        start = end + 1;
    }
    if !any {
        f(Fingerprint::of(whole));
    }
}

/// The bytes of a token: letters, digits and `-._~+/=`, by table.
const TOKEN: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/' | b'=');
        i += 1;
    }
    t
};

fn is_token_byte(b: u8) -> bool {
    TOKEN[usize::from(b)]
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
            "dXNlcjpwYXNzd29yZA==",
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
    fn a_value_without_a_long_token_is_kept_whole() {
        let mut h = HeaderMap::new();
        h.insert("x-api-key", " ab:cd ef-gh ".parse().unwrap());
        let s = Secrets::capture(&h, &Configured::none());
        assert_eq!(all(&s), [Fingerprint::of(b"ab:cd ef-gh")]);
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
        for i in 0..6 {
            h.append(
                "x-api-key",
                format!("Key k-{i}-0123456789").parse().unwrap(),
            );
        }
        let want: Vec<_> = (0..6)
            .map(|i| Fingerprint::of(format!("k-{i}-0123456789").as_bytes()))
            .collect();
        assert_eq!(all(&Secrets::capture(&h, &Configured::none())), want);
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
