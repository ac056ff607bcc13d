//! A call's hold on its breaker, from admission to its recorded outcome.

use std::fmt;
use std::sync::Arc;

use tokio::time::Instant;

use super::breaker::Ticket;
use super::classify::Verdict;
use super::entry::Entry;
use crate::deadline::CutSignal;

/// A call's hold on its breaker: records the outcome once, or, dropped
/// unrecorded, gives back a half-open probe slot (or records a failure when
/// an outer timeout cut the call short).
pub(crate) struct Guard {
    entry: Arc<Entry>,
    /// `None` once the outcome is recorded.
    ticket: Option<Ticket>,
    /// When the call started; read only when slow calls are watched.
    start: Option<Instant>,
    slow: bool,
    /// Set by an outer timeout that cut the call short: dropped unfinished,
    /// the call then failed rather than being abandoned by its caller.
    cut: Option<CutSignal>,
}

impl fmt::Debug for Guard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Guard")
            .field("entry", &self.entry)
            .field("probe", &self.ticket.is_some_and(Ticket::is_probe))
            .field("slow", &self.slow)
            .finish_non_exhaustive()
    }
}

impl Guard {
    /// The hold of a call that `entry` admitted with `ticket`.
    pub(crate) fn new(entry: Arc<Entry>, ticket: Ticket, cut: Option<CutSignal>) -> Self {
        let start = entry.slow_threshold().map(|_| Instant::now());
        Guard {
            entry,
            ticket: Some(ticket),
            start,
            slow: false,
            cut,
        }
    }

    /// Marks the arrival of the response headers (or an error): decides
    /// whether the call was slow.
    pub(crate) fn headers_arrived(&mut self) {
        if let (Some(start), Some(threshold)) = (self.start, self.entry.slow_threshold()) {
            self.slow = start.elapsed() > threshold;
        }
    }

    /// Records the call's outcome.
    pub(crate) fn record(mut self, verdict: Verdict) {
        if let Some(ticket) = self.ticket.take() {
            self.entry.record(ticket, verdict, self.slow);
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let Some(ticket) = self.ticket.take() else {
            return;
        };
        if self.cut.as_ref().is_some_and(CutSignal::is_set) {
            // A timeout outside ended the call (a stalled stream, a hung
            // attempt): the upstream failed it.
            self.entry.record(ticket, Verdict::Failure, self.slow);
        } else if ticket.is_probe() {
            // The caller went away: not counted, the probe slot is freed.
            self.entry.record(ticket, Verdict::Ignore, false);
        }
    }
}
