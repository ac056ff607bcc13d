//! [`ResponseBody`]: every response the gateway sends, watched to its end.
//!
//! It writes the call's log line when the body has ended (its real outcome
//! and latency), keeps the connection's request in flight until then, and
//! ends the body when the shutdown grace is over: an event stream with one
//! last error event, anything else (a compressed stream included, where a
//! plain-text event cannot be appended) with an error, which resets it.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use pin_project_lite::pin_project;
use tower_http_resilience::{ApiError, BoxError, ErrorKind};

use crate::conn::InFlight;
use crate::headers::{is_encoded, is_event_stream};
use crate::log::PendingLine;
use crate::shutdown::{Drain, Fired};

/// The start of an error event in an event stream.
const ERROR_EVENT: &[u8] = b"data: {\"error\"";

/// How a running body is ended when the grace is over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    /// One last `data: {"error":…}` event.
    Event,
    /// A body error: the stream is reset.
    Reset,
}

pin_project! {
    /// The body of every response: see the module docs.
    pub struct ResponseBody {
        #[pin]
        inner: UnsyncBoxBody<Bytes, BoxError>,
        #[pin]
        drain: Fired,
        line: Option<PendingLine>,
        end: End,
        // Whether data frames are looked at for error events.
        sse: bool,
        done: bool,
        in_flight: Option<InFlight>,
    }
}

impl ResponseBody {
    /// `inner` as the body of a response with `headers`.
    pub fn new(
        inner: UnsyncBoxBody<Bytes, BoxError>,
        headers: &HeaderMap,
        line: PendingLine,
        drain: &Drain,
    ) -> Self {
        let sse = is_event_stream(headers);
        let encoded = is_encoded(headers);
        let end = if sse && !encoded && inner.size_hint().exact().is_none() {
            End::Event
        } else {
            End::Reset
        };
        let mut body = ResponseBody {
            inner,
            drain: drain.fired(),
            line: Some(line),
            end,
            sse: sse && !encoded,
            done: false,
            in_flight: None,
        };
        if body.inner.is_end_stream() {
            finish(&mut body.line, None);
        }
        body
    }

    /// Keeps the connection's request in flight until the body is dropped.
    pub fn holding(mut self, in_flight: InFlight) -> Self {
        self.in_flight = Some(in_flight);
        self
    }
}

/// Writes the line once, with `code` if the outcome changed.
fn finish(line: &mut Option<PendingLine>, code: Option<&str>) {
    if let Some(mut line) = line.take() {
        if let Some(code) = code {
            line.set_code(code);
        }
        line.finish();
    }
}

/// The `code` of an error event at the start of `data`, if it is one.
fn error_event_code(data: &[u8]) -> Option<String> {
    let json = data.strip_prefix(b"data: ")?;
    let end = json.iter().position(|&b| b == b'\n').unwrap_or(json.len());
    let v: serde_json::Value = serde_json::from_slice(&json[..end]).ok()?;
    let code = &v["error"]["code"];
    Some(
        code.as_str()
            .map_or_else(|| "error_event".to_owned(), str::to_owned),
    )
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        if *this.done {
            return Poll::Ready(None);
        }
        match this.inner.as_mut().poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame
                    .data_ref()
                    .filter(|d| *this.sse && d.starts_with(ERROR_EVENT))
                {
                    if let (Some(code), Some(line)) = (error_event_code(data), this.line.as_mut()) {
                        line.set_code(code);
                    }
                }
                if this.inner.is_end_stream() {
                    finish(this.line, None);
                }
                return Poll::Ready(Some(Ok(frame)));
            }
            Poll::Ready(Some(Err(e))) => {
                *this.done = true;
                let code = e
                    .downcast_ref::<ApiError>()
                    .map_or("upstream_error", |err| err.code())
                    .to_owned();
                finish(this.line, Some(&code));
                return Poll::Ready(Some(Err(e)));
            }
            Poll::Ready(None) => {
                *this.done = true;
                finish(this.line, None);
                return Poll::Ready(None);
            }
            Poll::Pending => {}
        }

        // Waiting for the upstream: the grace may be over.
        if this.drain.poll(cx).is_pending() {
            return Poll::Pending;
        }
        *this.done = true;
        let err = ApiError::new(ErrorKind::Unavailable)
            .with_message("the gateway is shutting down; the response was cut short");
        finish(this.line, Some(err.code()));
        Poll::Ready(Some(match this.end {
            End::Event => Ok(Frame::data(err.to_sse_event())),
            End::Reset => Err(err.into()),
        }))
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        if self.done {
            SizeHint::with_exact(0)
        } else {
            self.inner.size_hint()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_code_of_an_error_event() {
        let event = b"data: {\"error\":{\"message\":\"m\",\"type\":\"timeout_error\",\"param\":null,\"code\":\"timeout\"}}\n\n";
        assert_eq!(error_event_code(event).as_deref(), Some("timeout"));
        assert_eq!(
            error_event_code(b"data: {\"error\":{}}\n\n").as_deref(),
            Some("error_event")
        );
        assert_eq!(error_event_code(b"data: [DONE]\n\n"), None);
    }
}
