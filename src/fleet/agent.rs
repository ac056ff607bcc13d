//! The background task of one mirror: pushes queued changes at once, listens
//! to the store's messages, polls every interval as a backstop, and tracks
//! whether the store answers. It never holds a lock across an await, and it
//! ends within one interval after the last handle of its mirror is dropped.

use std::sync::{Arc, Weak};

use futures_util::stream::{BoxStream, StreamExt};
use tokio::sync::Notify;
use tokio::time::{timeout, Instant, MissedTickBehavior};

use super::backend::{BackendError, Update};
use super::shared::Shared;

/// What woke the task.
enum Event {
    Tick,
    Wake,
    Message(Option<Update>),
}

/// Starts the task of `shared` on the current tokio runtime.
pub(crate) fn spawn(shared: &Arc<Shared>) {
    tokio::spawn(run(Arc::downgrade(shared), shared.wake.clone()));
}

async fn run(weak: Weak<Shared>, wake: Arc<Notify>) {
    let every = match weak.upgrade() {
        Some(s) => s.settings.poll_interval,
        None => return,
    };
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut messages: Option<BoxStream<'static, Update>> = None;
    loop {
        let event = {
            let next = async {
                match messages.as_mut() {
                    Some(m) => m.next().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = tick.tick() => Event::Tick,
                _ = wake.notified() => Event::Wake,
                m = next => Event::Message(m),
            }
        };
        let Some(shared) = weak.upgrade() else {
            return;
        };
        match event {
            Event::Tick => {
                if messages.is_none() {
                    messages = subscribe(&shared).await;
                }
                let result = match flush(&shared).await {
                    Ok(()) => sync(&shared).await,
                    Err(e) => Err(e),
                };
                settle(&shared, result);
                shared.sweep();
            }
            Event::Wake => {
                let result = flush(&shared).await;
                if result.is_err() {
                    settle(&shared, result);
                }
            }
            Event::Message(Some(Update::Resync)) => {
                let result = sync(&shared).await;
                settle(&shared, result);
            }
            Event::Message(Some(update)) => shared.apply(update, Instant::now()),
            // The connection ended: listen again at the next tick, which polls.
            Event::Message(None) => messages = None,
        }
    }
}

fn settle(shared: &Shared, result: Result<(), BackendError>) {
    match result {
        Ok(()) => shared.health.up(),
        Err(e) => shared.health.down(&e.0),
    }
}

fn timed_out(shared: &Shared) -> BackendError {
    BackendError(format!(
        "no answer within {:?}",
        shared.settings.call_timeout
    ))
}

/// Subscribes to the store's messages; `None` when that fails (the next tick
/// tries again).
async fn subscribe(shared: &Shared) -> Option<BoxStream<'static, Update>> {
    match timeout(shared.settings.call_timeout, shared.backend.subscribe()).await {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(e)) => {
            tracing::debug!(target: "tower_http_resilience::fleet", "subscribe failed: {e}");
            None
        }
        Err(_) => None,
    }
}

/// Pushes every queued change, in turn; on the first failure puts it and the
/// rest back for the next tick.
async fn flush(shared: &Shared) -> Result<(), BackendError> {
    let mut queued = shared.drain().into_iter();
    while let Some(((kind, digest), pending)) = queued.next() {
        let Some(change) = shared.change(kind, digest, pending) else {
            continue;
        };
        let push = shared.backend.push(change, &shared.settings.replica);
        let answer = timeout(shared.settings.call_timeout, push).await;
        match answer {
            Ok(Ok(update)) => shared.apply(update, Instant::now()),
            Ok(Err(e)) => {
                shared.requeue(std::iter::once(((kind, digest), pending)).chain(queued));
                return Err(e);
            }
            Err(_) => {
                shared.requeue(std::iter::once(((kind, digest), pending)).chain(queued));
                return Err(timed_out(shared));
            }
        }
    }
    Ok(())
}

/// Reads every live entry from the store.
async fn sync(shared: &Shared) -> Result<(), BackendError> {
    let limit = shared.settings.max_keys.saturating_mul(2);
    match timeout(shared.settings.call_timeout, shared.backend.poll(limit)).await {
        Ok(Ok(snap)) => {
            shared.apply_snapshot(&snap, Instant::now());
            Ok(())
        }
        Ok(Err(e)) => Err(e),
        Err(_) => Err(timed_out(shared)),
    }
}
