//! The listener: connections accepted up to a cap, served by hyper-util's
//! server (HTTP/1 and HTTP/2) with a header read timeout and an idle
//! watchdog, and shut down gracefully.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::app::Gateway;
use crate::conn::{Activity, IdleStream};
use crate::shutdown::Drain;

/// After the grace, the time given to connections to flush what was cut.
const FLUSH: Duration = Duration::from_secs(5);

/// The connection limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once; more wait to be accepted.
    pub max_connections: usize,
    /// Time for a request line and headers (HTTP/1), and for a first
    /// request on a new connection.
    pub header_read_timeout: Duration,
    /// A connection with no request in flight and nothing read for this
    /// long is closed.
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 1024,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// Connections still open after the listener closed.
pub struct Draining {
    graceful: GracefulShutdown,
}

/// Serves `gateway` on `listener` until `stop` resolves, then closes the
/// listener; the connections go on, see [`Draining::finish`].
pub async fn serve(
    listener: TcpListener,
    gateway: Gateway,
    limits: Limits,
    stop: impl Future<Output = ()>,
) -> Draining {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let builder = connection_builder(&limits);
    let graceful = GracefulShutdown::new();
    tokio::pin!(stop);

    loop {
        let permit = tokio::select! {
            () = &mut stop => break,
            permit = permits.clone().acquire_owned() => permit.expect("never closed"),
        };
        let tcp = tokio::select! {
            () = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(err) => {
                    // Out of file descriptors, say: give others time to close.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let activity = Activity::new(limits.header_read_timeout, limits.idle_timeout);
        let io = TokioIo::new(IdleStream::new(tcp, activity.clone()));
        let gateway = gateway.clone();
        let service = hyper::service::service_fn(move |req| {
            let in_flight = activity.enter();
            let gateway = gateway.clone();
            async move {
                let res = gateway.handle(req).await;
                Ok::<_, Infallible>(res.map(|body| body.holding(in_flight)))
            }
        });
        let conn = graceful.watch(builder.serve_connection(io, service).into_owned());
        tokio::spawn(async move {
            if let Err(err) = conn.await {
                tracing::debug!(error = %err, "connection ended with an error");
            }
            drop(permit);
        });
    }
    Draining { graceful }
}

impl Draining {
    /// Lets the calls in flight finish for up to `grace`, then ends the
    /// responses still running (`drain`) and gives their connections a
    /// little time to flush. Returns whether every call finished in time.
    pub async fn finish(self, grace: Duration, drain: &Drain) -> bool {
        let shutdown = self.graceful.shutdown();
        tokio::pin!(shutdown);
        if tokio::time::timeout(grace, &mut shutdown).await.is_ok() {
            return true;
        }
        drain.fire();
        let _ = tokio::time::timeout(FLUSH, &mut shutdown).await;
        false
    }
}

/// hyper-util's server for one listener's connections (HTTP/1 and HTTP/2):
/// a request line and headers must come within the header read timeout.
pub fn connection_builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    builder.http2().timer(TokioTimer::new());
    builder
}
