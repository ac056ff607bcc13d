//! Reading the `prompt` of a completions request or the `input` of an
//! embeddings request: one text, several texts, or token ids
//! ([`PromptShape`]).

use serde::de::{IgnoredAny, MapAccess, SeqAccess};

use super::count::Count;
use super::shape::{Any, Shape};

/// Reads a prompt: a string, an array of strings (several prompts), an
/// array of token ids (one prompt), or an array of arrays of token ids
/// (several). The count is that of the largest prompt: each is served on
/// its own, so each must fit the window.
pub(crate) struct PromptShape<C>(pub(crate) C);

impl<'de, C: Count> Shape<'de> for PromptShape<C> {
    type Value = C;

    fn other(self) -> C {
        self.0
    }

    fn str(self, s: &str) -> C {
        let mut c = self.0;
        c.text(s);
        c
    }

    fn seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<C, A::Error> {
        let zero = self.0;
        let mut largest = zero;
        let mut ids = 0u64;
        while let Some(item) = seq.next_element_seed(Any(ItemShape(zero)))? {
            match item {
                Item::Prompt(c) => largest.max(c),
                Item::Id => ids += 1,
            }
        }
        let mut one = zero;
        one.ids(ids);
        largest.max(one);
        Ok(largest)
    }
}

/// One element of a prompt array.
enum Item<C> {
    /// A prompt of its own: a string, or an array of token ids.
    Prompt(C),
    /// A token id of the one prompt the array is.
    Id,
}

struct ItemShape<C>(C);

impl<'de, C: Count> Shape<'de> for ItemShape<C> {
    type Value = Item<C>;

    fn other(self) -> Item<C> {
        Item::Id
    }

    fn str(self, s: &str) -> Item<C> {
        let mut c = self.0;
        c.text(s);
        Item::Prompt(c)
    }

    fn seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Item<C>, A::Error> {
        let mut n = 0u64;
        while seq.next_element::<IgnoredAny>()?.is_some() {
            n += 1;
        }
        let mut c = self.0;
        c.ids(n);
        Ok(Item::Prompt(c))
    }

    fn map<A: MapAccess<'de>>(self, mut map: A) -> Result<Item<C>, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Item::Prompt(self.0))
    }
}
