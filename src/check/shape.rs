//! Walking JSON without building a tree: a visitor written as a [`Shape`]
//! (only the JSON types it cares about), and object keys read as [`Names`].

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// What to make of each JSON type; anything not handled is skipped and
/// yields [`other`](Shape::other).
pub(crate) trait Shape<'de>: Sized {
    type Value;

    /// The value of a JSON type this shape does not handle.
    fn other(self) -> Self::Value;

    /// `null`.
    fn null(self) -> Self::Value {
        self.other()
    }

    /// A string (unescaped; borrowed from the body or not).
    fn str(self, _s: &str) -> Self::Value {
        self.other()
    }

    /// An array.
    fn seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(self.other())
    }

    /// An object.
    fn map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(self.other())
    }
}

/// A [`Shape`] as a serde seed and visitor of any JSON value.
pub(crate) struct Any<S>(pub(crate) S);

impl<'de, S: Shape<'de>> DeserializeSeed<'de> for Any<S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<S::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de, S: Shape<'de>> Visitor<'de> for Any<S> {
    type Value = S::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<S::Value, E> {
        Ok(self.0.other())
    }

    fn visit_i64<E>(self, _: i64) -> Result<S::Value, E> {
        Ok(self.0.other())
    }

    fn visit_u64<E>(self, _: u64) -> Result<S::Value, E> {
        Ok(self.0.other())
    }

    fn visit_f64<E>(self, _: f64) -> Result<S::Value, E> {
        Ok(self.0.other())
    }

    fn visit_str<E>(self, v: &str) -> Result<S::Value, E> {
        Ok(self.0.str(v))
    }

    fn visit_unit<E>(self) -> Result<S::Value, E> {
        Ok(self.0.null())
    }

    fn visit_none<E>(self) -> Result<S::Value, E> {
        Ok(self.0.null())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<S::Value, A::Error> {
        self.0.seq(seq)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<S::Value, A::Error> {
        self.0.map(map)
    }
}

/// Reads an object key as the number `lookup` gives it (`None` for a key
/// that is not looked for), without allocating.
#[derive(Clone, Copy)]
pub(crate) struct Names(pub(crate) fn(&str) -> Option<usize>);

impl<'de> DeserializeSeed<'de> for Names {
    type Value = Option<usize>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl Visitor<'_> for Names {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok((self.0)(v))
    }
}

/// The key of the next entry of `map`, as the number `lookup` gives it;
/// the outer `None` is the end of the object.
pub(crate) fn next_key<'de, A: MapAccess<'de>>(
    map: &mut A,
    lookup: fn(&str) -> Option<usize>,
) -> Result<Option<Option<usize>>, A::Error> {
    map.next_key_seed(Names(lookup))
}

/// Skips the value of the current entry.
pub(crate) fn skip_value<'de, A: MapAccess<'de>>(map: &mut A) -> Result<(), A::Error> {
    map.next_value::<IgnoredAny>().map(drop)
}
