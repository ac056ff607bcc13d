//! Turning any error into an [`ApiError`] by walking its `source()` chain.

use std::error::Error as StdError;
use std::io;

use super::{ApiError, ErrorKind};

/// A type-erased error, as tower uses.
pub type BoxError = Box<dyn StdError + Send + Sync>;

impl ApiError {
    /// Turns any error into an `ApiError`, keeping it as the source.
    ///
    /// The error and its [`source`](std::error::Error::source) chain are
    /// walked from the outside in, and the first error that is recognised
    /// decides:
    ///
    /// | error | becomes |
    /// |---|---|
    /// | an `ApiError` | itself |
    /// | `tower::timeout::error::Elapsed`, `tokio::time::error::Elapsed` | 504 `timeout` |
    /// | `tower::load_shed::error::Overloaded` | 503 `overloaded` |
    /// | `hyper_util::client::legacy::Error` that `is_connect()` (feature `hyper-util`) | 502 `connection_error` |
    /// | `hyper::Error` (feature `hyper`): timeout / closed, canceled or incomplete / parse | 504 / 502 `connection_error` / 502 `upstream_error` |
    /// | `tonic::Status` (feature `tonic`) | by its gRPC code |
    /// | `std::io::Error`: refused, reset, aborted, unreachable, broken pipe, early EOF | 502 `connection_error` |
    /// | `std::io::Error`: timed out | 504 `timeout` |
    /// | anything else | 500 `internal_error`, message `internal error` |
    ///
    /// An unrecognised error's own text never reaches the message: it may
    /// hold internals or secrets. It stays available as the source (and the
    /// server normalization layer logs it with `tracing`).
    ///
    /// ```
    /// use tower_http_resilience::{ApiError, ErrorKind};
    ///
    /// let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
    /// let err = ApiError::from_error(Box::new(io));
    /// assert_eq!(err.kind(), ErrorKind::Upstream);
    /// assert_eq!(err.code(), "connection_error");
    ///
    /// let err = ApiError::from_error("db password=hunter2 rejected".into());
    /// assert_eq!(err.kind(), ErrorKind::Internal);
    /// assert_eq!(err.message(), "internal error");
    /// ```
    pub fn from_error(err: BoxError) -> ApiError {
        let err = match err.downcast::<ApiError>() {
            Ok(api) => return *api,
            Err(err) => err,
        };
        let mapped = {
            let mut cur: Option<&(dyn StdError + 'static)> = Some(&*err);
            let mut found = None;
            while let Some(e) = cur {
                if let Some(m) = map_one(e) {
                    found = Some(m);
                    break;
                }
                cur = e.source();
            }
            found
        };
        match mapped {
            Some(Mapped::Api(api)) => api,
            Some(Mapped::New(api)) => api.with_source(err),
            None => ApiError::new(ErrorKind::Internal).with_source(err),
        }
    }

    /// What [`from_error`](Self::from_error) would make of `err`, read
    /// through a reference (the error itself is not kept as the source).
    #[cfg(feature = "metrics")]
    pub(crate) fn of_chain(err: &(dyn StdError + 'static)) -> ApiError {
        let mut cur = Some(err);
        while let Some(e) = cur {
            match map_one(e) {
                Some(Mapped::Api(api) | Mapped::New(api)) => return api,
                None => cur = e.source(),
            }
        }
        ApiError::new(ErrorKind::Internal)
    }

    /// Whether `err` or anything in its source chain is an `ApiError` or an
    /// error this crate maps to a kind other than
    /// [`ErrorKind::Internal`].
    #[cfg(any(feature = "normalize", feature = "check"))]
    pub(crate) fn is_recognised(err: &(dyn StdError + 'static)) -> bool {
        let mut cur = Some(err);
        while let Some(e) = cur {
            if map_one(e).is_some() {
                return true;
            }
            cur = e.source();
        }
        false
    }
}

enum Mapped {
    /// An `ApiError` found inside the chain (cloned: cheap).
    Api(ApiError),
    /// A new error to wrap the original.
    New(ApiError),
}

fn map_one(e: &(dyn StdError + 'static)) -> Option<Mapped> {
    if let Some(api) = e.downcast_ref::<ApiError>() {
        return Some(Mapped::Api(api.clone()));
    }
    if e.is::<tower::timeout::error::Elapsed>() || e.is::<tokio::time::error::Elapsed>() {
        return Some(Mapped::New(ApiError::new(ErrorKind::Timeout)));
    }
    if e.is::<tower::load_shed::error::Overloaded>() {
        return Some(Mapped::New(
            ApiError::new(ErrorKind::Unavailable)
                .with_code("overloaded")
                .with_message("the service is overloaded"),
        ));
    }
    #[cfg(feature = "hyper-util")]
    if let Some(h) = e.downcast_ref::<hyper_util::client::legacy::Error>() {
        if h.is_connect() {
            return Some(Mapped::New(connection_error(
                "could not connect to the upstream",
            )));
        }
    }
    #[cfg(feature = "hyper")]
    if let Some(h) = e.downcast_ref::<hyper::Error>() {
        if h.is_timeout() {
            return Some(Mapped::New(ApiError::new(ErrorKind::Timeout)));
        }
        if h.is_closed() || h.is_canceled() || h.is_incomplete_message() {
            return Some(Mapped::New(connection_error(
                "the upstream connection closed before the response completed",
            )));
        }
        if h.is_parse() || h.is_parse_status() {
            return Some(Mapped::New(
                ApiError::new(ErrorKind::Upstream)
                    .with_message("the upstream sent an invalid response"),
            ));
        }
    }
    #[cfg(feature = "tonic")]
    if let Some(status) = e.downcast_ref::<tonic::Status>() {
        let message = Some(status.message().to_owned()).filter(|m| !m.is_empty());
        if let Some(api) = ApiError::from_grpc_code(status.code() as i32, message) {
            return Some(Mapped::New(api));
        }
    }
    if let Some(io) = e.downcast_ref::<io::Error>() {
        return map_io(io).map(Mapped::New);
    }
    None
}

fn map_io(io: &io::Error) -> Option<ApiError> {
    use io::ErrorKind as K;
    match io.kind() {
        K::TimedOut => Some(ApiError::new(ErrorKind::Timeout)),
        K::ConnectionRefused => Some(connection_error("the upstream refused the connection")),
        K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe | K::UnexpectedEof => {
            Some(connection_error("the upstream connection was reset"))
        }
        K::NotConnected | K::AddrNotAvailable | K::HostUnreachable | K::NetworkUnreachable => {
            Some(connection_error("the upstream could not be reached"))
        }
        _ => None,
    }
}

fn connection_error(message: &'static str) -> ApiError {
    ApiError::new(ErrorKind::Upstream)
        .with_code("connection_error")
        .with_message(message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt;

    #[derive(Debug)]
    struct Wrapper(BoxError);
    impl fmt::Display for Wrapper {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("wrapper")
        }
    }
    impl StdError for Wrapper {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            Some(&*self.0)
        }
    }

    #[test]
    fn walks_the_chain() {
        let inner = ApiError::circuit_open(std::time::Duration::from_secs(4));
        let err = ApiError::from_error(Box::new(Wrapper(Box::new(inner))));
        assert_eq!(err.code(), "circuit_open");
        assert_eq!(err.retry_after_secs(), Some(4));

        let io = io::Error::new(io::ErrorKind::TimedOut, "slow");
        let err = ApiError::from_error(Box::new(Wrapper(Box::new(io))));
        assert_eq!(err.kind(), ErrorKind::Timeout);
        assert!(err.source_ref().is_some());
    }

    #[test]
    fn tower_errors() {
        let err = ApiError::from_error(Box::new(tower::timeout::error::Elapsed::new()));
        assert_eq!(
            (err.kind(), err.status().as_u16()),
            (ErrorKind::Timeout, 504)
        );
        let err = ApiError::from_error(Box::new(tower::load_shed::error::Overloaded::new()));
        assert_eq!((err.status().as_u16(), err.code()), (503, "overloaded"));
    }

    #[test]
    fn unknown_errors_hide_their_text() {
        let err = ApiError::from_error("secret sk-1234567890 leaked".into());
        assert_eq!(err.kind(), ErrorKind::Internal);
        assert!(!err.message().contains("sk-"));
        assert!(!err.to_string().contains("sk-"));
        assert!(err.source_ref().unwrap().to_string().contains("leaked"));
        #[cfg(feature = "normalize")]
        assert!(!ApiError::is_recognised(&*BoxError::from("x")));
    }
}
