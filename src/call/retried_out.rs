//! [`RetriedOut`]: an error the stack already retried, which its caller
//! should not retry again.

use crate::hint::ServerHints;
use crate::ApiError;

/// Marks an error response that leaves after the stack spent its retries on
/// the call, or was refused a retry by the budget or the deadline: the
/// normalization layers tell the caller not to retry it (`x-should-retry:
/// false`), so that retries are not multiplied by the caller's own.
#[derive(Clone, Copy, Debug)]
#[cfg_attr(not(feature = "retry"), allow(dead_code))]
pub(crate) struct RetriedOut;

/// Whether the retry layer marked the error response whose extensions
/// these are as [`RetriedOut`].
#[cfg(feature = "normalize")]
pub(crate) fn is_retried_out(extensions: &http::Extensions) -> bool {
    extensions.get::<RetriedOut>().is_some()
}

/// `err`, telling its caller not to retry it (a `retry-after` it carries
/// stays): see [`RetriedOut`].
pub(crate) fn retried_out(err: ApiError) -> ApiError {
    let wait = err.retry_after();
    err.with_hints(ServerHints::new(Some(false), wait))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_wait_stays() {
        let err =
            ApiError::new(crate::ErrorKind::Unavailable).with_retry_after(Duration::from_secs(3));
        assert!(err.is_retryable());
        let err = retried_out(err);
        assert!(!err.is_retryable());
        assert_eq!(err.retry_after(), Some(Duration::from_secs(3)));
    }
}
