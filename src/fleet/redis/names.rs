//! The stored names of one namespace, and the messages published on its
//! channel.

use crate::fleet::backend::Update;
use crate::fleet::key::{Digest, Kind};

/// The schema version in every stored name; a change of meaning bumps it, so
/// replicas of two releases never read each other's values.
const VERSION: &str = "v1";

/// The stored names of one namespace. Every name carries the namespace as a
/// hash tag (`{ns}`), so one namespace lives in one Redis Cluster slot and
/// every script touches keys of one slot only.
#[derive(Clone, Debug)]
pub(super) struct Names {
    prefix: String,
}

impl Names {
    pub(super) fn new(ns: &str) -> Names {
        Names {
            prefix: format!("thr:{VERSION}:{{{ns}}}"),
        }
    }

    /// The sorted set of every live hold and open, scored by its deadline.
    pub(super) fn state(&self) -> String {
        format!("{}:state", self.prefix)
    }

    /// The fleet-wide half-open probe lease of one breaker.
    pub(super) fn probe(&self, d: Digest) -> String {
        format!("{}:probe:{d}", self.prefix)
    }

    /// The theoretical arrival time of one rate.
    pub(super) fn rate(&self, d: Digest) -> String {
        format!("{}:rate:{d}", self.prefix)
    }

    /// The channel where every change is published.
    pub(super) fn channel(&self) -> String {
        format!("{}:events", self.prefix)
    }
}

/// Parses a published message: `h|o <digest> <until_ms> <now_ms>` or
/// `c <digest> <token>`.
pub(super) fn parse_message(text: &str) -> Option<Update> {
    let mut parts = text.split(' ');
    let tag = parts.next()?;
    let digest = Digest::parse(parts.next()?)?;
    let a: u64 = parts.next()?.parse().ok()?;
    if tag == "c" {
        return parts
            .next()
            .is_none()
            .then_some(Update::Closed { digest, token: a });
    }
    let kind = Kind::from_tag(tag)?;
    let now_ms: u64 = parts.next()?.parse().ok()?;
    parts.next().is_none().then_some(Update::Until {
        kind,
        digest,
        until_ms: a,
        now_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_version_and_namespace() {
        let n = Names::new("prod");
        assert_eq!(n.state(), "thr:v1:{prod}:state");
        assert_eq!(n.channel(), "thr:v1:{prod}:events");
        let d = Digest::of("k");
        assert_eq!(n.probe(d), format!("thr:v1:{{prod}}:probe:{d}"));
        assert_eq!(n.rate(d), format!("thr:v1:{{prod}}:rate:{d}"));
    }

    #[test]
    fn messages_parse() {
        let d = Digest::of("k");
        assert_eq!(
            parse_message(&format!("o {d} 2000 1500")),
            Some(Update::Until {
                kind: Kind::Open,
                digest: d,
                until_ms: 2000,
                now_ms: 1500
            })
        );
        assert_eq!(
            parse_message(&format!("c {d} 2000")),
            Some(Update::Closed {
                digest: d,
                token: 2000
            })
        );
        for bad in [
            "",
            "h",
            "x 00 1 2",
            &format!("h {d} 1"),
            &format!("h {d} 1 2 3"),
        ] {
            assert_eq!(parse_message(bad), None, "{bad:?}");
        }
    }
}
