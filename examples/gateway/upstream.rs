//! [`Upstream`]: one upstream the gateway forwards to, and the
//! [`Credential`] it sends there.

use std::fmt;

use http::HeaderValue;
use tower_http_resilience::BaseUri;

/// One upstream: where it is, the key the gateway sends it, its rate.
#[derive(Debug)]
pub struct Upstream {
    /// Letters, digits, `_` and `-`; unique.
    pub name: String,
    pub base: BaseUri,
    /// The credential the gateway sends; without it the client's passes.
    pub credential: Option<Credential>,
    /// The most requests per minute sent per model with this credential.
    pub rpm: Option<u32>,
}

/// An upstream key, as the `authorization` header that carries it
/// (`Bearer KEY`, marked sensitive). `Debug` never shows it.
#[derive(Clone)]
pub struct Credential {
    header: HeaderValue,
}

impl Credential {
    /// The credential of `key`; `Err` says why it cannot be sent.
    pub fn bearer(key: &str) -> Result<Self, &'static str> {
        if key.trim().is_empty() {
            return Err("it is empty");
        }
        let mut header = HeaderValue::try_from(format!("Bearer {}", key.trim()))
            .map_err(|_| "it is not a valid header value")?;
        header.set_sensitive(true);
        Ok(Credential { header })
    }

    /// The `authorization` header's value.
    pub fn header(&self) -> &HeaderValue {
        &self.header
    }

    /// The key, to be masked wherever it could be echoed.
    pub fn key(&self) -> &[u8] {
        &self.header.as_bytes()["Bearer ".len()..]
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Credential([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_show() {
        let c = Credential::bearer(" sk-live-0123456789 ").unwrap();
        assert_eq!(c.header(), "Bearer sk-live-0123456789");
        assert_eq!(c.key(), b"sk-live-0123456789");
        assert!(c.header().is_sensitive());
        let shown = format!(
            "{:?}",
            Upstream {
                name: "a".into(),
                base: "http://a.example".parse().unwrap(),
                credential: Some(c.clone()),
                rpm: None,
            }
        );
        assert!(!shown.contains("sk-live"), "{shown}");
        assert!(Credential::bearer(" ").is_err());
        assert!(Credential::bearer("a\nb").is_err());
    }
}
