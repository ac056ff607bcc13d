//! Records the fleet notices one mirror says, for tests that count them.

#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use tower_http_resilience::fleet::FleetNotice;

#[derive(Clone, Default)]
pub struct Notices(Arc<Mutex<Vec<String>>>);

impl Notices {
    /// A hook for `FleetBuilder::on_notice` that records each line.
    pub fn hook(&self) -> impl Fn(&FleetNotice) + Send + Sync + 'static {
        let lines = self.0.clone();
        move |n: &FleetNotice| lines.lock().unwrap().push(n.to_string())
    }

    pub fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }

    /// How many lines start with `prefix`.
    pub fn count(&self, prefix: &str) -> usize {
        self.lines()
            .iter()
            .filter(|l| l.starts_with(prefix))
            .count()
    }
}
