//! [`ClientKeys`]: the keys a client must present when the gateway holds
//! the upstreams' keys (`client_keys_env`).
//!
//! A request is let in when its `authorization` header is `Bearer KEY`
//! (the scheme in any case) and `KEY` is one of the configured keys. The
//! comparison is `subtle`'s constant-time equality, against every key,
//! without stopping at the first that matches: the time it takes tells
//! nothing of where a guess first differs from a key, only whether its
//! length is the length of one. Anything else is answered 401
//! `invalid_api_key` before the body is read and before any upstream is
//! called. The keys are never logged or shown (`Debug` shows their number).

use std::fmt;

use http::header::AUTHORIZATION;
use http::HeaderMap;
use subtle::{Choice, ConstantTimeEq};
use tower_http_resilience::{ApiError, ErrorKind};

/// The keys clients may use.
#[derive(Clone)]
pub struct ClientKeys {
    keys: Vec<Box<[u8]>>,
}

impl ClientKeys {
    /// The keys of a comma-separated list (spaces around each key are
    /// trimmed, empty entries skipped); `None` when it holds none.
    pub fn from_list(list: &str) -> Option<Self> {
        let keys: Vec<Box<[u8]>> = list
            .split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .map(|k| k.as_bytes().into())
            .collect();
        (!keys.is_empty()).then_some(ClientKeys { keys })
    }

    /// Each key, to be masked wherever it could be echoed.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        self.keys.iter().map(|k| &k[..])
    }

    /// Whether the request carries `authorization: Bearer KEY` with one of
    /// the keys.
    pub fn admits(&self, headers: &HeaderMap) -> bool {
        let Some(token) = headers
            .get(AUTHORIZATION)
            .and_then(|v| bearer_token(v.as_bytes()))
        else {
            return false;
        };
        self.contains(token)
    }

    /// Whether `token` is one of the keys, in time that depends only on
    /// the keys' number and lengths and on the token's length.
    fn contains(&self, token: &[u8]) -> bool {
        let mut found = Choice::from(0);
        for key in &self.keys {
            found |= key.ct_eq(token);
        }
        found.into()
    }

    /// The answer to a request without a valid key.
    pub fn refusal() -> ApiError {
        ApiError::new(ErrorKind::Authentication)
            .with_code("invalid_api_key")
            .with_message(
                "this gateway needs a key: send `authorization: Bearer KEY` with a key it was given",
            )
    }
}

impl fmt::Debug for ClientKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClientKeys([{} keys])", self.keys.len())
    }
}

/// The token of `Bearer TOKEN` (the scheme in any case, one or more
/// spaces after it); `None` for another scheme or an empty token.
fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    const SCHEME: &[u8] = b"bearer ";
    if value.len() <= SCHEME.len() || !value[..SCHEME.len()].eq_ignore_ascii_case(SCHEME) {
        return None;
    }
    let token = value[SCHEME.len()..].trim_ascii();
    (!token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(auth: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(a) = auth {
            h.insert(AUTHORIZATION, a.parse().unwrap());
        }
        h
    }

    #[test]
    fn only_a_listed_key_is_admitted() {
        let keys = ClientKeys::from_list(" gw-key-one , ,gw-key-two,").unwrap();
        assert_eq!(format!("{keys:?}"), "ClientKeys([2 keys])");
        for ok in [
            "Bearer gw-key-one",
            "bearer gw-key-two",
            "BEARER   gw-key-one ",
        ] {
            assert!(keys.admits(&headers(Some(ok))), "{ok}");
        }
        for refused in [
            None,
            Some("Bearer gw-key-on"),
            Some("Bearer gw-key-one2"),
            Some("Bearer gw-key-onf"),
            Some("Bearer "),
            Some("Basic gw-key-one"),
            Some("gw-key-one"),
            Some("Bearer gw-key-one,gw-key-two"),
        ] {
            assert!(!keys.admits(&headers(refused)), "{refused:?}");
        }
        assert!(ClientKeys::from_list(" , ").is_none());
        assert!(ClientKeys::from_list("").is_none());
    }

    #[test]
    fn every_key_and_every_byte_position_is_compared() {
        let keys = ClientKeys::from_list("aaaaaaaa,bbbbbbbb,abcdefgh").unwrap();
        assert!(keys.contains(b"abcdefgh"));
        assert!(keys.contains(b"bbbbbbbb"));
        // A difference in any one position is a refusal.
        for i in 0..8 {
            let mut guess = *b"abcdefgh";
            guess[i] ^= 1;
            assert!(!keys.contains(&guess), "position {i}");
        }
        assert!(!keys.contains(b""));
        assert!(!keys.contains(b"abcdefghi"));
    }
}
