//! [`GrpcStatus`]: the gRPC status an error stands for, as a gRPC client
//! (tonic) recovers it.

use std::error::Error;
use std::sync::Arc;

/// The error an [`ApiError`](super::ApiError) was made from.
pub(crate) type Source = Arc<dyn Error + Send + Sync>;

/// The gRPC side of an [`ApiError`](super::ApiError): the code it was read
/// from, when it was read from a gRPC status, and (feature `tonic`) the
/// `tonic::Status` at the head of its source chain, made on first use.
///
/// tonic turns the error of a client stack into a `tonic::Status` by
/// walking the error's source chain for one: with this, a stack around a
/// `Channel` hands tonic an error from which it recovers the right code
/// (`NOT_FOUND` stays `NotFound`, an open breaker is `Unavailable`, a
/// timeout `DeadlineExceeded`), while the `ApiError` stays reachable as that
/// status's source.
#[derive(Default)]
pub(crate) struct GrpcStatus {
    /// The code of the gRPC status the error was read from.
    read: Option<i32>,
    #[cfg(feature = "tonic")]
    status: std::sync::OnceLock<tonic::Status>,
}

impl Clone for GrpcStatus {
    fn clone(&self) -> Self {
        // A clone may be changed: its status is made again when asked for.
        GrpcStatus {
            read: self.read,
            #[cfg(feature = "tonic")]
            status: std::sync::OnceLock::new(),
        }
    }
}

impl GrpcStatus {
    /// The status of an error read from gRPC status `code`.
    pub(crate) fn read(code: i32) -> Self {
        GrpcStatus {
            read: Some(code),
            #[cfg(feature = "tonic")]
            status: std::sync::OnceLock::new(),
        }
    }

    /// The code the error was read from, if it was.
    pub(crate) fn code(&self) -> Option<i32> {
        self.read
    }

    /// Forgets the status made so far: the error changed.
    pub(crate) fn changed(&mut self) {
        #[cfg(feature = "tonic")]
        self.status.take();
    }

    /// The source chain of an error with gRPC `code`, `message` and
    /// `source`: without the `tonic` feature, the source. With it, a
    /// `tonic::Status` first: the source itself when it is the status the
    /// error was read from (its details kept), otherwise one made on first
    /// use, whose source is the error's. tonic, which looks for a `Status`
    /// in the chain of a client stack's error, then recovers the right
    /// code, and the error stays reachable as the source of the `Status`
    /// tonic returns.
    pub(crate) fn chain<'a>(
        &'a self,
        code: i32,
        message: &str,
        source: Option<&'a Source>,
    ) -> Option<&'a (dyn Error + 'static)> {
        #[cfg(feature = "tonic")]
        {
            if let Some(status) = source.and_then(|s| s.downcast_ref::<tonic::Status>()) {
                if status.code() as i32 == code {
                    return Some(status);
                }
            }
            let status = self.status.get_or_init(|| {
                let mut status = tonic::Status::new(tonic::Code::from_i32(code), message);
                if let Some(source) = source {
                    status.set_source(source.clone());
                }
                status
            });
            Some(status)
        }
        #[cfg(not(feature = "tonic"))]
        {
            let _ = (code, message);
            source.map(|s| &**s as &(dyn Error + 'static))
        }
    }
}

#[cfg(all(test, feature = "tonic"))]
mod tests {
    use std::time::Duration;

    use crate::{ApiError, ErrorKind, TimeoutPhase};

    /// What tonic makes of an error its client stack returned.
    fn status_of(err: ApiError) -> tonic::Status {
        tonic::Status::from_error(Box::new(err))
    }

    #[test]
    fn tonic_recovers_the_code_and_the_error() {
        let cases = [
            (
                ApiError::circuit_open(Duration::from_secs(3)),
                tonic::Code::Unavailable,
            ),
            (
                ApiError::timeout(TimeoutPhase::Total, Duration::from_secs(1)),
                tonic::Code::DeadlineExceeded,
            ),
            (ApiError::new(ErrorKind::NotFound), tonic::Code::NotFound),
            (
                ApiError::new(ErrorKind::RateLimited),
                tonic::Code::ResourceExhausted,
            ),
            // Read from a status: its code is kept, even where the kinds
            // are coarser (UNIMPLEMENTED is of kind NotFound).
            (
                ApiError::from_grpc_code(12, None).unwrap(),
                tonic::Code::Unimplemented,
            ),
        ];
        for (err, code) in cases {
            let message = err.message().to_owned();
            let status = status_of(err);
            assert_eq!(status.code(), code);
            assert_eq!(status.message(), message);
            let source = std::error::Error::source(&status).unwrap();
            assert!(source.downcast_ref::<ApiError>().is_some(), "{code:?}");
        }
    }

    #[test]
    fn a_status_read_keeps_its_details() {
        let original = tonic::Status::with_details(tonic::Code::NotFound, "gone", "why".into());
        let err = ApiError::from_error(Box::new(original));
        assert_eq!(err.grpc_code(), 5);
        let status = status_of(err);
        assert_eq!(status.code(), tonic::Code::NotFound);
        assert_eq!(status.details(), b"why");
    }

    #[test]
    fn a_changed_error_makes_its_status_again() {
        let err = ApiError::new(ErrorKind::Unavailable);
        let _ = std::error::Error::source(&err);
        let err = err.with_message("changed");
        assert_eq!(status_of(err).message(), "changed");
    }
}
