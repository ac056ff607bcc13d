//! Whether the shared store can be reached, and the one line said when that
//! changes.

use std::fmt;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

/// A change in whether a [`FleetMirror`](super::FleetMirror) reaches its
/// shared store. Each is said once per change, never once per failed call.
///
/// `Display` gives the exact line to write on stderr:
///
/// ```
/// use tower_http_resilience::fleet::FleetNotice;
///
/// let down = FleetNotice::Unavailable("connection refused".into());
/// assert_eq!(down.to_string(), "fleet state unavailable: connection refused");
/// assert_eq!(FleetNotice::Restored.to_string(), "fleet state restored");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FleetNotice {
    /// The store failed or did not answer in time; the replica goes on with
    /// its local state. The reason never holds a credential.
    Unavailable(String),
    /// The store answers again; the mirror has caught up with it.
    Restored,
}

impl fmt::Display for FleetNotice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FleetNotice::Unavailable(reason) => write!(f, "fleet state unavailable: {reason}"),
            FleetNotice::Restored => f.write_str("fleet state restored"),
        }
    }
}

pub(crate) type NoticeHook = Arc<dyn Fn(&FleetNotice) + Send + Sync>;

const UNKNOWN: u8 = 0;
const UP: u8 = 1;
const DOWN: u8 = 2;

/// Tracks reachability and says each change once: as a `tracing` event
/// (target `tower_http_resilience::fleet`) and to the hook, if any.
pub(crate) struct Health {
    state: AtomicU8,
    hook: Option<NoticeHook>,
}

impl fmt::Debug for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Health")
            .field("available", &self.available())
            .finish()
    }
}

impl Health {
    pub(crate) fn new(hook: Option<NoticeHook>) -> Health {
        Health {
            state: AtomicU8::new(UNKNOWN),
            hook,
        }
    }

    /// True once the store answered and until it fails.
    pub(crate) fn available(&self) -> bool {
        self.state.load(Ordering::Acquire) == UP
    }

    /// The store answered.
    pub(crate) fn up(&self) {
        if self.state.swap(UP, Ordering::AcqRel) == DOWN {
            self.say(&FleetNotice::Restored);
        }
    }

    /// The store failed.
    pub(crate) fn down(&self, reason: &str) {
        if self.state.swap(DOWN, Ordering::AcqRel) != DOWN {
            self.say(&FleetNotice::Unavailable(reason.to_owned()));
        }
    }

    fn say(&self, notice: &FleetNotice) {
        match notice {
            FleetNotice::Unavailable(_) => {
                tracing::warn!(target: "tower_http_resilience::fleet", "{notice}");
            }
            FleetNotice::Restored => {
                tracing::info!(target: "tower_http_resilience::fleet", "{notice}");
            }
        }
        if let Some(hook) = &self.hook {
            hook(notice);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn each_change_is_said_once() {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let h = Health::new(Some(Arc::new(move |n: &FleetNotice| {
            sink.lock().unwrap().push(n.to_string())
        })));
        assert!(!h.available());
        h.up();
        assert!(h.available());
        h.down("timed out");
        h.down("timed out");
        h.down("refused");
        assert!(!h.available());
        h.up();
        h.up();
        assert_eq!(
            *lines.lock().unwrap(),
            ["fleet state unavailable: timed out", "fleet state restored"]
        );
    }

    #[test]
    fn down_from_the_start_is_said() {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let h = Health::new(Some(Arc::new(move |n: &FleetNotice| {
            sink.lock().unwrap().push(n.to_string())
        })));
        h.down("refused");
        assert_eq!(lines.lock().unwrap().len(), 1);
    }
}
