//! Names in the shared store: a validated namespace and a digest of each key,
//! so no key material (an API key, a header value) ever reaches the store.

use std::fmt;

use sha2::{Digest as _, Sha256};

/// What a stored entry is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    /// A key held back until an instant (an upstream's rate limit).
    Hold,
    /// A breaker opened until an instant.
    Open,
}

#[cfg_attr(not(feature = "redis"), allow(dead_code))]
impl Kind {
    /// The one-letter tag in stored members and published messages.
    pub(crate) const fn tag(self) -> char {
        match self {
            Kind::Hold => 'h',
            Kind::Open => 'o',
        }
    }

    pub(crate) fn from_tag(tag: &str) -> Option<Kind> {
        match tag {
            "h" => Some(Kind::Hold),
            "o" => Some(Kind::Open),
            _ => None,
        }
    }
}

/// The first 128 bits of SHA-256 over a domain tag and the key: stable across
/// processes, releases and platforms, and not reversible to the key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Digest([u8; 16]);

impl Digest {
    pub(crate) fn of(key: &str) -> Digest {
        let mut h = Sha256::new();
        h.update(b"tower-http-resilience fleet key\0");
        h.update(key.as_bytes());
        let full = h.finalize();
        let mut out = [0u8; 16];
        out.copy_from_slice(&full[..16]);
        Digest(out)
    }
}

#[cfg_attr(not(feature = "redis"), allow(dead_code))]
impl Digest {
    /// Parses the 32 lower-case hex digits written by `Display`.
    pub(crate) fn parse(hex: &str) -> Option<Digest> {
        let bytes = hex.as_bytes();
        if bytes.len() != 32 {
            return None;
        }
        let mut out = [0u8; 16];
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            let hi = (pair[0] as char).to_digit(16)?;
            let lo = (pair[1] as char).to_digit(16)?;
            out[i] = (hi * 16 + lo) as u8;
        }
        Some(Digest(out))
    }

    /// The member naming this digest's entry of `kind` (`h:<hex>`, `o:<hex>`).
    pub(crate) fn member(self, kind: Kind) -> String {
        format!("{}:{self}", kind.tag())
    }

    /// Reads a member written by [`Digest::member`].
    pub(crate) fn parse_member(member: &str) -> Option<(Kind, Digest)> {
        let (tag, hex) = member.split_once(':')?;
        Some((Kind::from_tag(tag)?, Digest::parse(hex)?))
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

/// Checks a namespace: 1 to 64 bytes of ASCII letters, digits, `-`, `_`, `.`.
pub(crate) fn check_namespace(ns: &str) -> Result<(), String> {
    let ok = !ns.is_empty()
        && ns.len() <= 64
        && ns
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err("a fleet namespace is 1 to 64 ASCII letters, digits, '-', '_' or '.'".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_is_stable_and_round_trips() {
        let d = Digest::of("sk-secret-key");
        // Fixed across releases: replicas of two builds must agree.
        assert_eq!(d.to_string(), Digest::of("sk-secret-key").to_string());
        assert_eq!(d.to_string().len(), 32);
        assert!(!d.to_string().contains("secret"));
        assert_eq!(Digest::parse(&d.to_string()), Some(d));
        assert_ne!(Digest::of("a"), Digest::of("b"));
        assert_eq!(Digest::parse("zz"), None);
        assert_eq!(Digest::parse(&"g".repeat(32)), None);
        assert_eq!(
            Digest::parse_member(&d.member(Kind::Open)),
            Some((Kind::Open, d))
        );
        assert_eq!(Digest::parse_member("x:00"), None);
    }

    #[test]
    fn digest_known_value() {
        // SHA-256("tower-http-resilience fleet key\0" ++ "gpt-4o"), first 16 bytes.
        let d = Digest::of("gpt-4o");
        let again = {
            let mut h = Sha256::new();
            h.update(b"tower-http-resilience fleet key\0gpt-4o");
            h.finalize()
        };
        assert_eq!(&d.0[..], &again[..16]);
    }

    #[test]
    fn namespaces_are_checked() {
        assert!(check_namespace("prod-eu.1_a").is_ok());
        assert!(check_namespace("").is_err());
        assert!(check_namespace("a b").is_err());
        assert!(check_namespace("{x}").is_err());
        assert!(check_namespace(&"a".repeat(65)).is_err());
    }
}
