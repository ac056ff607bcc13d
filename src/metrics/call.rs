//! [`CallMeter`]: one call's `resilience_calls_total` and
//! `resilience_call_duration_seconds`, recorded once, when its outcome is
//! known.

use std::error::Error as StdError;

use ::metrics::{Key, Label};
use http::HeaderMap;
use quanta::Instant;

use super::codes::{bounded_code, error_key, CLIENT_CLOSED, NONE};
use super::record::count_and_observe;
use super::{CALLS_TOTAL, CALL_DURATION_SECONDS};
use crate::error::grpc;
use crate::ApiError;

static SUCCESS: [Label; 2] = [
    Label::from_static_parts("outcome", "success"),
    Label::from_static_parts("code", NONE),
];
static CANCELLED: [Label; 2] = [
    Label::from_static_parts("outcome", "cancelled"),
    Label::from_static_parts("code", CLIENT_CLOSED),
];
static SUCCESS_CALLS: Key = Key::from_static_parts(CALLS_TOTAL, &SUCCESS);
static CANCELLED_CALLS: Key = Key::from_static_parts(CALLS_TOTAL, &CANCELLED);

static SUCCESS_OUTCOME: [Label; 1] = [Label::from_static_parts("outcome", "success")];
static ERROR_OUTCOME: [Label; 1] = [Label::from_static_parts("outcome", "error")];
static CANCELLED_OUTCOME: [Label; 1] = [Label::from_static_parts("outcome", "cancelled")];
static SUCCESS_TIME: Key = Key::from_static_parts(CALL_DURATION_SECONDS, &SUCCESS_OUTCOME);
static ERROR_TIME: Key = Key::from_static_parts(CALL_DURATION_SECONDS, &ERROR_OUTCOME);
static CANCELLED_TIME: Key = Key::from_static_parts(CALL_DURATION_SECONDS, &CANCELLED_OUTCOME);

/// A call under way, from the layer that answers its caller: recorded once,
/// as a success, an error, or (dropped unrecorded) cancelled.
#[derive(Debug)]
pub(crate) struct CallMeter {
    /// When the call started; `None` once recorded.
    start: Option<Instant>,
}

impl CallMeter {
    /// A call starting now.
    #[inline]
    pub(crate) fn start() -> Self {
        CallMeter {
            start: Some(Instant::now()),
        }
    }

    /// The call succeeded: its response body ended.
    #[inline]
    pub(crate) fn success(mut self) {
        self.record(&SUCCESS_CALLS, &SUCCESS_TIME);
    }

    /// The call failed with `err`.
    pub(crate) fn error(mut self, err: &ApiError) {
        self.record(error_key(bounded_code(err)), &ERROR_TIME);
    }

    /// The call's response body failed with `err` (its source chain says
    /// how).
    pub(crate) fn body_error(self, err: &(dyn StdError + 'static)) {
        self.error(&ApiError::of_chain(err));
    }

    /// The body ended with `trailers`: an error if they carry a failing
    /// `grpc-status`.
    pub(crate) fn trailers(self, trailers: &HeaderMap) {
        match grpc::status_code(trailers).filter(|&code| code != 0) {
            Some(code) => {
                let err = ApiError::from_grpc_code(code, None)
                    .unwrap_or_else(|| ApiError::new(crate::ErrorKind::Internal));
                self.error(&err);
            }
            None => self.success(),
        }
    }

    fn record(&mut self, calls: &Key, time: &Key) {
        if let Some(start) = self.start.take() {
            count_and_observe(calls, time, start.elapsed().as_secs_f64());
        }
    }
}

impl Drop for CallMeter {
    fn drop(&mut self) {
        self.record(&CANCELLED_CALLS, &CANCELLED_TIME);
    }
}
