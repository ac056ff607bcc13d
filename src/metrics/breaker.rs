//! [`BreakerSeries`]: one breaker's `resilience_breaker_state` and
//! `resilience_breaker_transitions_total`, kept current.

use std::sync::{Mutex, OnceLock};

use ::metrics::{Key, Label, SharedString};

use super::record::{count, set};
use super::{BREAKER_STATE, BREAKER_TRANSITIONS_TOTAL};
use crate::circuit_breaker::CircuitState;

/// The keys of one breaker's series, made at its first transition.
#[derive(Debug)]
struct Keys {
    state: Key,
    /// Transitions to closed, open, half-open.
    to: [Key; 3],
}

impl Keys {
    fn new(label: SharedString) -> Self {
        let key = |name: &'static str, to: Option<CircuitState>| {
            let mut labels = vec![Label::new("key", label.clone())];
            labels.extend(to.map(|to| Label::from_static_parts("to", to.as_str())));
            Key::from_parts(name, labels)
        };
        Keys {
            state: key(BREAKER_STATE, None),
            to: [
                CircuitState::Closed,
                CircuitState::Open,
                CircuitState::HalfOpen,
            ]
            .map(|to| key(BREAKER_TRANSITIONS_TOTAL, Some(to))),
        }
    }
}

/// What the gauge shows.
#[derive(Debug, Default)]
struct Shown {
    /// The gauge was set at least once.
    set: bool,
    /// The registry forgot the key: the gauge stays at 0.
    frozen: bool,
}

/// The series of one breaker. The gauge is set under a lock to the state
/// the breaker is in when the lock is held, so that reports of transitions
/// racing each other leave it at the latest state; once the key is
/// forgotten, it is set to 0 and left alone.
#[derive(Debug, Default)]
pub(crate) struct BreakerSeries {
    keys: OnceLock<Keys>,
    shown: Mutex<Shown>,
}

/// The gauge's value for a state.
fn value(state: CircuitState) -> f64 {
    match state {
        CircuitState::Closed => 0.0,
        CircuitState::Open => 1.0,
        CircuitState::HalfOpen => 2.0,
    }
}

impl BreakerSeries {
    /// No transition yet.
    pub(crate) fn new() -> Self {
        BreakerSeries::default()
    }

    /// Records a transition to `to`, and sets the gauge to the breaker's
    /// state `now`. `label` names the key (`None`: the key is not shown,
    /// and only the transitions of every such key are counted together).
    pub(crate) fn transition(
        &self,
        to: CircuitState,
        label: impl FnOnce() -> Option<SharedString>,
        now: impl FnOnce() -> CircuitState,
    ) {
        let keys = self.keys.get_or_init(|| {
            let shown = label();
            let hidden = shown.is_none();
            let keys = Keys::new(shown.unwrap_or_else(|| SharedString::const_str("[redacted]")));
            if hidden {
                // No gauge for a hidden key: every such key shares it.
                self.lock().frozen = true;
            }
            keys
        });
        let index = match to {
            CircuitState::Closed => 0,
            CircuitState::Open => 1,
            CircuitState::HalfOpen => 2,
        };
        count(&keys.to[index]);
        let mut shown = self.lock();
        if !shown.frozen {
            shown.set = true;
            set(&keys.state, value(now()));
        }
    }

    /// The registry forgot the key: the gauge goes to 0 (if it was ever
    /// set) and stays there.
    pub(crate) fn forget(&self) {
        let mut shown = self.lock();
        if shown.set && !shown.frozen {
            if let Some(keys) = self.keys.get() {
                set(&keys.state, 0.0);
            }
        }
        shown.frozen = true;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shown> {
        self.shown.lock().unwrap_or_else(|e| e.into_inner())
    }
}
