//! [`HeldSeries`]: one pacing key's `resilience_held_total`.

use std::sync::{Arc, OnceLock};

use ::metrics::{Key, Label};

use super::record::count;
use super::HELD_TOTAL;

/// The held-calls counter of one pacing key, its key made the first time a
/// call is held.
#[derive(Debug, Default)]
pub(crate) struct HeldSeries(OnceLock<Key>);

impl HeldSeries {
    /// No call held yet.
    pub(crate) fn new() -> Self {
        HeldSeries::default()
    }

    /// Counts one call held back or refused for the key named `name`.
    pub(crate) fn held(&self, name: &Arc<str>) {
        let key = self.0.get_or_init(|| {
            let label = Label::new("key", ::metrics::SharedString::from_shared(name.clone()));
            Key::from_parts(HELD_TOTAL, vec![label])
        });
        count(key);
    }
}
