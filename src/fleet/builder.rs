//! Building a mirror: its namespace, timing, bounds and notice hook, then
//! its store.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::backend::Backend;
use super::key::check_namespace;
use super::memory::MemoryStore;
use super::mirror::FleetMirror;
use super::notice::{FleetNotice, Health, NoticeHook};
use super::shared::{Settings, Shared};

/// A mirror that could not be built: a bad namespace or store address, or no
/// tokio runtime to run its background task on.
///
/// ```
/// use tower_http_resilience::fleet::{FleetMirror, MemoryStore};
///
/// // Outside a tokio runtime there is nothing to run the background task on.
/// let err = FleetMirror::builder("docs").memory(&MemoryStore::new()).unwrap_err();
/// assert_eq!(err.to_string(), "a fleet mirror must be built inside a tokio runtime");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FleetError {
    message: String,
}

impl FleetError {
    pub(crate) fn new(message: impl Into<String>) -> FleetError {
        FleetError {
            message: message.into(),
        }
    }
}

impl fmt::Display for FleetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for FleetError {}

/// Settings of a [`FleetMirror`], then its store.
///
/// ```
/// use std::time::Duration;
/// use tower_http_resilience::fleet::{FleetMirror, MemoryStore};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let mirror = FleetMirror::builder("prod-eu")
///     .poll_interval(Duration::from_millis(250))
///     .max_keys(50_000)
///     .on_notice(|notice| eprintln!("{notice}"))
///     .memory(&MemoryStore::new())
///     .unwrap();
/// # let _ = mirror;
/// # }
/// ```
#[derive(Clone)]
pub struct FleetBuilder {
    namespace: String,
    poll_interval: Duration,
    call_timeout: Duration,
    lease_timeout: Duration,
    max_keys: usize,
    on_notice: Option<NoticeHook>,
}

impl fmt::Debug for FleetBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FleetBuilder")
            .field("namespace", &self.namespace)
            .field("poll_interval", &self.poll_interval)
            .field("call_timeout", &self.call_timeout)
            .field("lease_timeout", &self.lease_timeout)
            .field("max_keys", &self.max_keys)
            .field("on_notice", &self.on_notice.is_some())
            .finish()
    }
}

impl FleetMirror {
    /// Settings for a mirror of the fleet named `namespace` (1 to 64 ASCII
    /// letters, digits, `-`, `_`, `.`): replicas share state exactly when
    /// they share a store and a namespace.
    pub fn builder(namespace: &str) -> FleetBuilder {
        FleetBuilder {
            namespace: namespace.to_owned(),
            poll_interval: Duration::from_millis(500),
            call_timeout: Duration::from_millis(250),
            lease_timeout: Duration::from_millis(20),
            max_keys: 10_000,
            on_notice: None,
        }
    }
}

impl FleetBuilder {
    /// How often the mirror reads every live entry from the store (default
    /// 500 ms, at least 10 ms). Changes normally arrive as messages at once;
    /// the poll bounds how late one can be when a message is lost, and how
    /// soon the mirror catches up after an outage.
    pub fn poll_interval(self, poll_interval: Duration) -> FleetBuilder {
        FleetBuilder {
            poll_interval: poll_interval.max(Duration::from_millis(10)),
            ..self
        }
    }

    /// The longest the background task waits for one answer of the store
    /// before it counts the store as unavailable (default 250 ms).
    pub fn call_timeout(self, call_timeout: Duration) -> FleetBuilder {
        FleetBuilder {
            call_timeout: call_timeout.max(Duration::from_millis(1)),
            ..self
        }
    }

    /// The longest a call waits for a rate lease or a probe lease (default
    /// 20 ms); after it, the answer is `Unavailable` and the caller decides
    /// locally.
    pub fn lease_timeout(self, lease_timeout: Duration) -> FleetBuilder {
        FleetBuilder {
            lease_timeout: lease_timeout.max(Duration::from_millis(1)),
            ..self
        }
    }

    /// Keys the mirror remembers per table (default 10 000); a new key at a
    /// full table drops keys without a deadline first, oldest first.
    pub fn max_keys(self, max_keys: usize) -> FleetBuilder {
        FleetBuilder {
            max_keys: max_keys.max(1),
            ..self
        }
    }

    /// Called once each time the store becomes unavailable or is restored
    /// (the same notices also go out as `tracing` events with target
    /// `tower_http_resilience::fleet`). A gateway writes them on stderr.
    pub fn on_notice<F>(self, on_notice: F) -> FleetBuilder
    where
        F: Fn(&FleetNotice) + Send + Sync + 'static,
    {
        FleetBuilder {
            on_notice: Some(Arc::new(on_notice)),
            ..self
        }
    }

    /// A mirror on a store in this process's memory, shared with every other
    /// mirror of the same namespace on `store`. Starts its background task on
    /// the current tokio runtime.
    pub fn memory(self, store: &MemoryStore) -> Result<FleetMirror, FleetError> {
        check_namespace(&self.namespace).map_err(FleetError::new)?;
        let backend = Arc::new(store.backend(&self.namespace));
        self.start(backend)
    }

    #[cfg(feature = "redis")]
    pub(crate) fn namespace(&self) -> &str {
        &self.namespace
    }

    #[cfg(feature = "redis")]
    pub(crate) fn call_timeout_value(&self) -> Duration {
        self.call_timeout
    }

    pub(crate) fn start(self, backend: Arc<dyn Backend>) -> Result<FleetMirror, FleetError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(FleetError::new(
                "a fleet mirror must be built inside a tokio runtime",
            ));
        }
        let settings = Settings {
            poll_interval: self.poll_interval,
            call_timeout: self.call_timeout,
            lease_timeout: self.lease_timeout,
            max_keys: self.max_keys,
            replica: format!("{:016x}", fastrand::u64(..)),
        };
        let shared = Arc::new(Shared::new(backend, Health::new(self.on_notice), settings));
        super::agent::spawn(&shared);
        Ok(FleetMirror { shared })
    }
}
