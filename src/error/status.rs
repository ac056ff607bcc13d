//! [`GrpcStatus`]: the gRPC status an error stands for, as a gRPC client
//! (tonic) recovers it.

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
            ..GrpcStatus::default()
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

    /// The `tonic::Status` of an error with gRPC `code` and `message`,
    /// whose source is the error's `source`.
    #[cfg(feature = "tonic")]
    pub(crate) fn tonic_status(
        &self,
        code: i32,
        message: &str,
        source: Option<&std::sync::Arc<dyn std::error::Error + Send + Sync>>,
    ) -> &tonic::Status {
        self.status.get_or_init(|| {
            let mut status = tonic::Status::new(tonic::Code::from_i32(code), message);
            if let Some(source) = source {
                status.set_source(source.clone());
            }
            status
        })
    }
}
