use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::events::ErrorEvents;
use super::secrets::Secrets;
use crate::error::grpc;
use crate::metrics::CallMeter;
use crate::{ApiError, BoxError};

/// How a failure in the middle of a body is answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Passed on as a body error (the connection is reset).
    Plain,
    /// Answered with a last `data: {"error":…}` event, then the end.
    Sse,
    /// Answered with trailers carrying `grpc-status`.
    Grpc,
}

pin_project! {
    /// The response body of [`Normalize`](super::Normalize): the inner body
    /// passed through untouched, or an envelope rendered by the layer.
    ///
    /// When the inner body of a Server-Sent-Events response fails after it
    /// started (an idle timeout, an upstream reset), the stream ends with one
    /// last event, `data: {"error":{…}}`, instead of a reset; a gRPC response
    /// ends with trailers that carry the `grpc-status`. Other bodies pass the
    /// error on.
    ///
    /// The error events of a Server-Sent-Events response of a call with
    /// secrets lose them (and the shapes of keys) on the way; every other
    /// event passes byte for byte.
    pub struct NormalizeBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Inner {
            #[pin]
            body: B,
            mode: Mode,
            done: bool,
            secrets: Secrets,
            // Recorded when the body ends (`None`: recorded).
            meter: Option<CallMeter>,
            // The error events of an event stream of a call with secrets,
            // masked (`None`: the body passes untouched).
            events: Option<Box<ErrorEvents>>,
        },
        Full { data: Option<Bytes> },
    }
}

impl<B: Body> NormalizeBody<B> {
    pub(crate) fn inner(body: B, mode: Mode, secrets: Secrets, meter: Option<CallMeter>) -> Self {
        // A body already at its end is not polled: the call is over.
        let meter = match meter {
            Some(meter) if body.is_end_stream() => {
                meter.success();
                None
            }
            meter => meter,
        };
        let events = reads_events(mode, &secrets).then(Box::default);
        NormalizeBody {
            kind: Kind::Inner {
                body,
                mode,
                done: false,
                secrets,
                meter,
                events,
            },
        }
    }
}

impl<B> NormalizeBody<B> {
    pub(crate) fn full(data: Bytes) -> Self {
        NormalizeBody {
            kind: Kind::Full {
                data: Some(data).filter(|d| !d.is_empty()),
            },
        }
    }
}

impl<B> std::fmt::Debug for NormalizeBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            Kind::Inner { mode, .. } => {
                f.debug_struct("NormalizeBody").field("mode", mode).finish()
            }
            Kind::Full { data } => f
                .debug_struct("NormalizeBody")
                .field("len", &data.as_ref().map_or(0, Bytes::len))
                .finish(),
        }
    }
}

impl<B> Body for NormalizeBody<B>
where
    B: Body,
    B::Data: Into<Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let (mut body, mode, done, secrets, meter, events) = match self.project().kind.project() {
            KindProj::Full { data } => return Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            KindProj::Inner {
                body,
                mode,
                done,
                secrets,
                meter,
                events,
            } => (body, mode, done, secrets, meter, events),
        };
        loop {
            if *done {
                return Poll::Ready(None);
            }
            if let Some(trailers) = events.as_mut().and_then(|e| e.take_trailers()) {
                return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
            }
            let err = match body.as_mut().poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    let frame = on_frame(frame, secrets, meter, events);
                    if body.is_end_stream() {
                        if let Some(meter) = meter.take() {
                            meter.success();
                        }
                    }
                    match frame {
                        Some(frame) => return Poll::Ready(Some(Ok(frame))),
                        // All of it held back: the next frame is awaited.
                        None => continue,
                    }
                }
                Poll::Ready(Some(Err(e))) => e.into(),
                Poll::Ready(None) => {
                    *done = true;
                    if let Some(meter) = meter.take() {
                        meter.success();
                    }
                    let last = events.as_mut().and_then(|e| e.finish(secrets));
                    return Poll::Ready(last.map(|d| Ok(Frame::data(d))));
                }
                Poll::Pending => return Poll::Pending,
            };
            if let Some(events) = events {
                events.discard();
            }
            return Poll::Ready(Some(on_error(err, *mode, done, secrets, meter)));
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Inner {
                body, done, events, ..
            } => *done || (body.is_end_stream() && events.as_ref().is_none_or(|e| e.is_idle())),
            Kind::Full { data } => data.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner {
                body, done, events, ..
            } => {
                if *done {
                    SizeHint::with_exact(0)
                } else if events.is_some() {
                    // An event may change length when masked, or be held.
                    SizeHint::new()
                } else {
                    body.size_hint()
                }
            }
            Kind::Full { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
        }
    }
}

/// Whether a passed body is read event by event, its error events masked:
/// only an event stream of a call with secrets is. Any other body passes as
/// it comes.
pub(crate) fn reads_events(mode: Mode, secrets: &Secrets) -> bool {
    mode == Mode::Sse && !secrets.is_empty()
}

/// A frame of the inner body as it goes out: trailers without the call's
/// secrets, data with its error events masked (`None`: all of it held back
/// until its event ends).
fn on_frame<D: Into<Bytes>>(
    frame: Frame<D>,
    secrets: &Secrets,
    meter: &mut Option<CallMeter>,
    events: &mut Option<Box<ErrorEvents>>,
) -> Option<Frame<Bytes>> {
    match frame.into_trailers() {
        Ok(trailers) => {
            if let Some(meter) = meter.take() {
                meter.trailers(&trailers);
            }
            let trailers = scrub_trailers(trailers, secrets);
            match events.as_mut() {
                // The held start of an event goes out first.
                Some(e) if e.holds() => {
                    let held = e.finish(secrets);
                    e.hold_trailers(trailers);
                    held.map(Frame::data)
                }
                _ => Some(Frame::trailers(trailers)),
            }
        }
        Err(frame) => {
            let frame = frame.map_data(Into::into);
            match events.as_mut() {
                None => Some(frame),
                Some(e) => {
                    let data = frame.into_data().unwrap_or_default();
                    let data = e.feed(data, secrets);
                    (!data.is_empty()).then(|| Frame::data(data))
                }
            }
        }
    }
}

/// A failure of the inner body, answered by `mode`: passed on, or a last
/// event or trailers that say what failed (without the call's secrets).
fn on_error(
    err: BoxError,
    mode: Mode,
    done: &mut bool,
    secrets: &Secrets,
    meter: &mut Option<CallMeter>,
) -> Result<Frame<Bytes>, BoxError> {
    if mode == Mode::Plain {
        if let Some(meter) = meter.take() {
            meter.body_error(&*err);
        }
        return Err(err);
    }
    *done = true;
    let mut api = ApiError::from_error(err);
    if let Some(meter) = meter.take() {
        meter.error(&api);
    }
    api.redact(secrets);
    tracing::warn!(
        status = api.status().as_u16(),
        code = api.code(),
        message = api.message(),
        "response stream failed after it started"
    );
    Ok(if mode == Mode::Sse {
        Frame::data(api.to_sse_event())
    } else {
        Frame::trailers(grpc_trailers(&api))
    })
}

/// Trailers without the call's secrets; those of a gRPC error (a
/// `grpc-status` other than 0) also without key shapes in `grpc-message`.
fn scrub_trailers(mut trailers: HeaderMap, secrets: &Secrets) -> HeaderMap {
    let failed = grpc::status_code(&trailers).is_some_and(|code| code != 0);
    secrets.scrub_headers(&mut trailers, failed);
    trailers
}

fn grpc_trailers(err: &ApiError) -> HeaderMap {
    // The trailers-only rendering carries exactly the headers gRPC wants in
    // trailers, less the content type.
    let mut headers = err.to_grpc_response::<()>().into_parts().0.headers;
    headers.remove(http::header::CONTENT_TYPE);
    if headers.is_empty() {
        headers.insert("grpc-status", HeaderValue::from(err.grpc_code()));
    }
    headers
}
