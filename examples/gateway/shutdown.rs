//! Shutting down: the operating system's request (SIGTERM, SIGINT), and the
//! signal that ends the responses still running when the grace is over.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;
use tokio::sync::futures::OwnedNotified;
use tokio::sync::Notify;

/// Ends every response still running, once fired; shared by all of them.
#[derive(Clone, Debug, Default)]
pub struct Drain {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    fired: AtomicBool,
    notify: Arc<Notify>,
}

impl Drain {
    /// Tells every response to end now.
    pub fn fire(&self) {
        self.inner.fired.store(true, Ordering::Release);
        self.inner.notify.notify_waiters();
    }

    /// A future that resolves when the drain fires.
    pub fn fired(&self) -> Fired {
        Fired {
            notified: self.inner.notify.clone().notified_owned(),
            inner: self.inner.clone(),
        }
    }
}

pin_project! {
    /// Resolves once the [`Drain`] is fired (also when it was before).
    pub struct Fired {
        #[pin]
        notified: OwnedNotified,
        inner: Arc<Inner>,
    }
}

impl Future for Fired {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.project();
        if this.inner.fired.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        this.notified.poll(cx)
    }
}

impl std::fmt::Debug for Fired {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fired").finish()
    }
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C elsewhere than Unix).
pub async fn requested() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => std::future::pending().await,
        }
    }
    #[cfg(not(unix))]
    {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
