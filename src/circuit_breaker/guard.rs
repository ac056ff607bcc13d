//! A call's hold on its breaker, from admission to its recorded outcome.

use std::fmt;
use std::sync::Arc;

use tokio::time::Instant;

use super::classify::Verdict;
use super::entry::Entry;
use super::ticket::Ticket;
use crate::call::{CallContext, Pending, Settle};

/// An attempt's hold on its breaker: records the outcome once, or, dropped
/// unrecorded, gives back a half-open probe slot (or records a failure when
/// an outer timeout cut the call short).
///
/// When an attempt loop owns the call, the outcome of an attempt admitted
/// in the closed state is not recorded at once: it is left pending in the
/// call's context, replacing the previous attempt's, and recorded once when
/// the call ends (the attempts of one call count as one call). A half-open
/// probe is recorded at once: it decides the state.
pub(crate) struct Guard {
    entry: Arc<Entry>,
    /// `None` once the outcome is recorded.
    ticket: Option<Ticket>,
    /// When the attempt started; read only when slow calls are watched.
    start: Option<Instant>,
    slow: bool,
    scope: Scope,
}

/// What the attempt belongs to.
enum Scope {
    /// A call without a context: the attempt is the call.
    Alone,
    /// A call whose context no attempt loop owns: the attempt is the call.
    /// The context says when an outer timeout cut it short: dropped
    /// unfinished, the call then failed rather than being abandoned.
    Call(CallContext),
    /// One attempt (number `attempt`) of a call an attempt loop owns; the
    /// guard holds the call open until the attempt is over.
    Loop(CallContext, u32),
}

impl fmt::Debug for Guard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scope = match self.scope {
            Scope::Alone => "alone",
            Scope::Call(_) => "call",
            Scope::Loop(..) => "attempt of a call",
        };
        f.debug_struct("Guard")
            .field("entry", &self.entry)
            .field("probe", &self.ticket.is_some_and(Ticket::is_probe))
            .field("slow", &self.slow)
            .field("scope", &scope)
            .finish_non_exhaustive()
    }
}

impl Guard {
    /// The hold of an attempt that `entry` admitted with `ticket`, for the
    /// call of `context`, if the call has one.
    pub(crate) fn new(entry: Arc<Entry>, ticket: Ticket, context: Option<&CallContext>) -> Self {
        let start = entry.slow_threshold().map(|_| Instant::now());
        let scope = match context {
            None => Scope::Alone,
            Some(call) if call.is_owned() => {
                call.hold();
                Scope::Loop(call.clone(), call.attempts())
            }
            Some(call) => Scope::Call(call.clone()),
        };
        Guard {
            entry,
            ticket: Some(ticket),
            start,
            slow: false,
            scope,
        }
    }

    /// Marks the arrival of the response headers (or an error): decides
    /// whether the attempt was slow.
    pub(crate) fn headers_arrived(&mut self) {
        if let (Some(start), Some(threshold)) = (self.start, self.entry.slow_threshold()) {
            self.slow = start.elapsed() > threshold;
        }
    }

    /// Records the attempt's outcome.
    pub(crate) fn record(mut self, verdict: Verdict) {
        self.finish(Some(verdict));
    }

    /// The attempt is over, with `verdict` (`None`: it tells nothing).
    fn finish(&mut self, verdict: Option<Verdict>) {
        let Some(ticket) = self.ticket.take() else {
            return;
        };
        let Scope::Loop(call, _) = &self.scope else {
            if let Some(verdict) = verdict {
                self.entry.record(ticket, verdict, self.slow);
            }
            return;
        };
        match verdict {
            Some(verdict) if !ticket.is_probe() => {
                let by: Arc<dyn Settle> = self.entry.clone();
                call.leave(Pending::new(by, ticket.pack(verdict, self.slow)));
                return;
            }
            Some(verdict) => self.entry.record(ticket, verdict, self.slow),
            None => {}
        }
        call.release();
    }

    /// Whether an outer timeout cut this attempt short.
    fn was_cut(&self) -> bool {
        match &self.scope {
            Scope::Alone => false,
            Scope::Call(call) => call.is_cut(0),
            Scope::Loop(call, attempt) => call.is_cut(*attempt),
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let Some(ticket) = self.ticket else {
            return;
        };
        let verdict = if self.was_cut() {
            // A timeout outside ended the attempt (a stalled stream, a hung
            // attempt): the upstream failed it.
            Some(Verdict::Failure)
        } else if ticket.is_probe() {
            // The caller went away: not counted, the probe slot is freed.
            Some(Verdict::Ignore)
        } else {
            None
        };
        self.finish(verdict);
    }
}
