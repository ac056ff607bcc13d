//! One client connection's activity, and the idle watchdog on its socket.
//!
//! hyper closes an HTTP/1 connection whose request line and headers are not
//! complete within the header read timeout (its clock also runs while a
//! keep-alive connection waits for its next request). What it does not
//! bound: an HTTP/2 connection with no stream, a keep-alive connection
//! within a longer header timeout, and the bytes read before hyper knows
//! the protocol. [`IdleStream`] closes the socket (its reads end as if the
//! client had closed it) when no request is in flight and
//!
//! - no request has started within the header read timeout of the accept, or
//! - nothing was read and no request ended for the idle timeout.
//!
//! A connection with a request in flight (a long stream, say) is never
//! closed by it.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::task::AtomicWaker;
use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{sleep_until, Instant, Sleep};

/// What a connection is doing, shared by its socket and its requests.
#[derive(Debug)]
pub struct Activity {
    accepted: Instant,
    header_read_timeout: Duration,
    idle_timeout: Duration,
    in_flight: AtomicUsize,
    started_any: AtomicBool,
    /// The last read or request end, in nanoseconds after `accepted`.
    last: AtomicU64,
    /// The socket's reader, woken when the last request in flight ends.
    reader: AtomicWaker,
}

impl Activity {
    pub fn new(header_read_timeout: Duration, idle_timeout: Duration) -> Arc<Self> {
        Arc::new(Activity {
            accepted: Instant::now(),
            header_read_timeout,
            idle_timeout,
            in_flight: AtomicUsize::new(0),
            started_any: AtomicBool::new(false),
            last: AtomicU64::new(0),
            reader: AtomicWaker::new(),
        })
    }

    /// A request started; it is in flight until the guard is dropped.
    pub fn enter(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.started_any.store(true, Ordering::Release);
        InFlight(self.clone())
    }

    fn touch(&self) {
        let nanos = u64::try_from(self.accepted.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.last.store(nanos, Ordering::Release);
    }

    /// When the connection is to be closed, if nothing happens before; none
    /// while a request is in flight.
    fn close_at(&self) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let last = Duration::from_nanos(self.last.load(Ordering::Acquire));
        let idle = self.accepted + last + self.idle_timeout;
        if self.started_any.load(Ordering::Acquire) {
            Some(idle)
        } else {
            Some(idle.min(self.accepted + self.header_read_timeout))
        }
    }
}

/// A request in flight on a connection (its response body included).
#[derive(Debug)]
pub struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.touch();
            self.0.reader.wake();
        }
    }
}

pin_project! {
    /// A socket whose reads end (as if the client closed it) once the
    /// connection is idle past its limits; see the module docs.
    pub struct IdleStream<T> {
        #[pin]
        io: T,
        activity: Arc<Activity>,
        // Boxed so that the stream stays `Unpin`, as hyper wants its IO.
        sleep: Option<Pin<Box<Sleep>>>,
        closed: bool,
    }
}

impl<T> IdleStream<T> {
    pub fn new(io: T, activity: Arc<Activity>) -> Self {
        IdleStream {
            io,
            activity,
            sleep: None,
            closed: false,
        }
    }
}

impl<T: AsyncRead> AsyncRead for IdleStream<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        if *this.closed {
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        match this.io.poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.activity.touch();
                }
                return Poll::Ready(Ok(()));
            }
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => {}
        }
        this.activity.reader.register(cx.waker());
        let Some(at) = this.activity.close_at() else {
            return Poll::Pending;
        };
        let sleep = this.sleep.get_or_insert_with(|| Box::pin(sleep_until(at)));
        if sleep.deadline() != at {
            sleep.as_mut().reset(at);
        }
        if sleep.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        tracing::debug!("closing an idle connection");
        *this.closed = true;
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite> AsyncWrite for IdleStream<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.project().io.poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.project().io.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}
