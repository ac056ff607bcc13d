//! Reading a chat request's `messages`: each message's role checked, its
//! text counted ([`Messages`]).

use std::borrow::Cow;

use serde::de::{MapAccess, SeqAccess};

use super::count::{Count, PER_MESSAGE, PER_NAME};
use super::issue::ROLES;
use super::scalar::Scalar;
use super::shape::{next_key, skip_value, Any, Shape};

/// What `messages` turned out to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Messages<C> {
    Null,
    /// Not an array.
    NotArray,
    /// An array of `len` messages, the first bad one (not an object, or
    /// without a valid role) at `bad_role`, and the count of the others.
    Array {
        len: usize,
        bad_role: Option<usize>,
        tally: C,
    },
}

/// Reads `messages`, counting with copies of `zero`.
pub(crate) struct MessagesShape<C>(pub(crate) C);

impl<'de, C: Count> Shape<'de> for MessagesShape<C> {
    type Value = Messages<C>;

    fn other(self) -> Messages<C> {
        Messages::NotArray
    }

    fn null(self) -> Messages<C> {
        Messages::Null
    }

    fn seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Messages<C>, A::Error> {
        let zero = self.0;
        let mut tally = zero;
        let mut len = 0;
        let mut bad_role = None;
        while let Some(message) = seq.next_element_seed(Any(MessageShape(zero)))? {
            match message {
                Some(t) => tally.add(t),
                None => {
                    bad_role.get_or_insert(len);
                }
            }
            len += 1;
        }
        Ok(Messages::Array {
            len,
            bad_role,
            tally,
        })
    }
}

/// Reads one message: its count, or `None` when it is not an object or its
/// role is not valid.
struct MessageShape<C>(C);

const ROLE: usize = 0;
const CONTENT: usize = 1;
const NAME: usize = 2;
fn message_key(key: &str) -> Option<usize> {
    match key {
        "role" => Some(ROLE),
        "content" => Some(CONTENT),
        "name" => Some(NAME),
        _ => None,
    }
}

impl<'de, C: Count> Shape<'de> for MessageShape<C> {
    type Value = Option<C>;

    fn other(self) -> Option<C> {
        None
    }

    fn map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<C>, A::Error> {
        let zero = self.0;
        let mut role: Option<Cow<'de, str>> = None;
        let mut name: Option<Cow<'de, str>> = None;
        let mut content = zero;
        // A key given twice counts once: the last value wins, as in the
        // upstreams' JSON readers.
        while let Some(key) = next_key(&mut map, message_key)? {
            match key {
                Some(ROLE) => role = string(map.next_value::<Scalar<'de>>()?),
                Some(CONTENT) => content = map.next_value_seed(Any(TextShape::parts(zero)))?,
                Some(NAME) => name = string(map.next_value::<Scalar<'de>>()?),
                _ => skip_value(&mut map)?,
            }
        }
        let Some(role) = role.filter(|r| ROLES.contains(&r.as_ref())) else {
            return Ok(None);
        };
        let mut tally = zero;
        tally.framing(&role, PER_MESSAGE);
        tally.add(content);
        if let Some(name) = name {
            tally.framing(&name, PER_NAME);
        }
        Ok(Some(tally))
    }
}

fn string(value: Scalar<'_>) -> Option<Cow<'_, str>> {
    match value {
        Scalar::Str(s) => Some(s),
        _ => None,
    }
}

/// Reads prompt text: a string, or (for a message's `content`) an array of
/// parts whose `text` is counted. Anything else counts nothing.
pub(crate) struct TextShape<C> {
    zero: C,
    parts: bool,
}

impl<C> TextShape<C> {
    pub(crate) fn text(zero: C) -> Self {
        TextShape { zero, parts: false }
    }

    fn parts(zero: C) -> Self {
        TextShape { zero, parts: true }
    }
}

impl<'de, C: Count> Shape<'de> for TextShape<C> {
    type Value = C;

    fn other(self) -> C {
        self.zero
    }

    fn str(self, s: &str) -> C {
        let mut c = self.zero;
        c.text(s);
        c
    }

    fn seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<C, A::Error> {
        let mut tally = self.zero;
        if self.parts {
            while let Some(part) = seq.next_element_seed(Any(PartShape(self.zero)))? {
                tally.add(part);
            }
        } else {
            while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
        }
        Ok(tally)
    }
}

/// Reads one content part: its `text`, if any.
struct PartShape<C>(C);

impl<'de, C: Count> Shape<'de> for PartShape<C> {
    type Value = C;

    fn other(self) -> C {
        self.0
    }

    fn map<A: MapAccess<'de>>(self, mut map: A) -> Result<C, A::Error> {
        let mut text = self.0;
        while let Some(key) = next_key(&mut map, |k| (k == "text").then_some(0))? {
            match key {
                Some(_) => text = map.next_value_seed(Any(TextShape::text(self.0)))?,
                None => skip_value(&mut map)?,
            }
        }
        Ok(text)
    }
}
