//! The value of a checked field, read without building a JSON tree:
//! [`Scalar`].

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// A JSON value as far as a check needs it: its type, and its value when it
/// is a scalar. Arrays and objects are skipped, not kept.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Scalar<'de> {
    Null,
    Bool(bool),
    Unsigned(u64),
    Signed(i64),
    Float(f64),
    Str(Cow<'de, str>),
    /// An array or an object.
    Compound,
}

impl Scalar<'_> {
    /// The value as a number, if it is one.
    pub(crate) fn number(&self) -> Option<f64> {
        match *self {
            Scalar::Unsigned(n) => Some(n as f64),
            Scalar::Signed(n) => Some(n as f64),
            Scalar::Float(f) => Some(f),
            _ => None,
        }
    }

    /// The value as a whole number, if it is one (`2` and `2.0` are; the
    /// upstreams read both), saturating outside `i128`.
    pub(crate) fn whole(&self) -> Option<i128> {
        match *self {
            Scalar::Unsigned(n) => Some(i128::from(n)),
            Scalar::Signed(n) => Some(i128::from(n)),
            // `as` saturates; the value is finite and whole here.
            Scalar::Float(f) if f.fract() == 0.0 => Some(f as i128),
            _ => None,
        }
    }
}

impl<'de> Deserialize<'de> for Scalar<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ScalarVisitor)
    }
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Scalar::Null)
    }

    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(Scalar::Null)
    }

    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Scalar::Bool(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Scalar::Unsigned(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Scalar::Signed(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Scalar::Float(v))
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Borrowed(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        // Only a string with escapes gets here.
        Ok(Scalar::Str(Cow::Owned(v.to_owned())))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Scalar::Compound)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Scalar::Compound)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars() {
        let s = |j: &'static str| serde_json::from_str::<Scalar<'static>>(j).unwrap();
        assert_eq!(s("null"), Scalar::Null);
        assert_eq!(s("true"), Scalar::Bool(true));
        assert_eq!(s("2"), Scalar::Unsigned(2));
        assert_eq!(s("-2"), Scalar::Signed(-2));
        assert_eq!(s("0.5"), Scalar::Float(0.5));
        assert_eq!(s(r#""gpt""#), Scalar::Str(Cow::Borrowed("gpt")));
        assert_eq!(s(r#""g\"pt""#), Scalar::Str(Cow::Owned("g\"pt".into())));
        assert_eq!(s(r#"[1,{"a":[2]}]"#), Scalar::Compound);
        assert_eq!(s("2.0").whole(), Some(2));
        assert_eq!(s("2.5").whole(), None);
        assert_eq!(s("1e300").whole(), Some(i128::MAX));
        assert_eq!(s("\"2\"").number(), None);
    }
}
