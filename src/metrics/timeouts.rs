//! `resilience_timeouts_total`, by the clock that ran out.

use ::metrics::{Key, Label};

use super::record::count;
use super::TIMEOUTS_TOTAL;
use crate::TimeoutPhase;

static ATTEMPT: [Label; 1] = [Label::from_static_parts("phase", "attempt")];
static FIRST_BYTE: [Label; 1] = [Label::from_static_parts("phase", "first_byte")];
static IDLE: [Label; 1] = [Label::from_static_parts("phase", "idle")];
static TOTAL: [Label; 1] = [Label::from_static_parts("phase", "total")];
static KEYS: [Key; 4] = [
    Key::from_static_parts(TIMEOUTS_TOTAL, &ATTEMPT),
    Key::from_static_parts(TIMEOUTS_TOTAL, &FIRST_BYTE),
    Key::from_static_parts(TIMEOUTS_TOTAL, &IDLE),
    Key::from_static_parts(TIMEOUTS_TOTAL, &TOTAL),
];

/// Counts a clock of `phase` that ran out.
pub(crate) fn timed_out(phase: TimeoutPhase) {
    let key = match phase {
        TimeoutPhase::Attempt => &KEYS[0],
        TimeoutPhase::FirstByte => &KEYS[1],
        TimeoutPhase::Idle => &KEYS[2],
        TimeoutPhase::Total => &KEYS[3],
    };
    count(key);
}
