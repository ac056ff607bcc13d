//! [`Ticket`]: a call's admission by its breaker.

use super::classify::Verdict;

/// The admission of one call: the generation it was admitted under and
/// whether it holds a half-open probe slot.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ticket {
    pub(super) gen: u32,
    pub(super) probe: bool,
}

impl Ticket {
    /// Whether the call holds a half-open probe slot, which must be given
    /// back (recorded) even when the call tells nothing.
    pub(crate) fn is_probe(self) -> bool {
        self.probe
    }

    /// The ticket with the outcome of its call, in one word (an outcome
    /// left pending in the call's context until the call ends).
    pub(crate) fn pack(self, verdict: Verdict, slow: bool) -> u64 {
        let verdict = match verdict {
            Verdict::Success => 0,
            Verdict::Failure => 1,
            Verdict::Ignore => 2,
        };
        (u64::from(self.gen) << 32)
            | (u64::from(slow) << 3)
            | (u64::from(self.probe) << 2)
            | verdict
    }

    /// What [`pack`](Self::pack) packed.
    pub(crate) fn unpack(word: u64) -> (Ticket, Verdict, bool) {
        let verdict = match word & 0b11 {
            0 => Verdict::Success,
            1 => Verdict::Failure,
            _ => Verdict::Ignore,
        };
        let ticket = Ticket {
            gen: (word >> 32) as u32,
            probe: word & 0b100 != 0,
        };
        (ticket, verdict, word & 0b1000 != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for (gen, probe) in [(0, false), (7, true), (u32::MAX, false)] {
            for verdict in [Verdict::Success, Verdict::Failure, Verdict::Ignore] {
                for slow in [false, true] {
                    let t = Ticket { gen, probe };
                    let (back, v, s) = Ticket::unpack(t.pack(verdict, slow));
                    assert_eq!((back.gen, back.probe, v, s), (gen, probe, verdict, slow));
                }
            }
        }
    }
}
