//! The one error type of every cache operation.

/// Why a cache operation failed.
///
/// Messages name the failure, never a key, a value or a password: keys are
/// often secrets themselves (session ids, authorization codes).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CacheError {
    /// The backend cannot be reached (refused, dropped, authentication failed).
    #[error("cache unavailable: {0}")]
    Unavailable(String),
    /// The backend did not answer within the operation timeout.
    #[error("cache operation timed out")]
    Timeout,
    /// An entry exists but cannot be read as what it should be.
    #[error("corrupt cache entry: {0}")]
    Corrupt(String),
    /// A value could not be encoded for storage.
    #[error("cannot encode cache value: {0}")]
    Encode(String),
    /// The backend answered with an error of its own.
    #[error("cache backend error: {0}")]
    Backend(String),
    /// The cache configuration is unusable; `key` is the config path.
    #[error("{key}: {reason}")]
    Config {
        /// Config key path, e.g. `cache.redis.url`.
        key: &'static str,
        /// What is wrong with it (never the value itself: it may hold a password).
        reason: String,
    },
}

impl CacheError {
    /// A short, fixed label for metrics (`result` label) and logs.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Unavailable(_) => "unavailable",
            Self::Timeout => "timeout",
            Self::Corrupt(_) => "corrupt",
            Self::Encode(_) => "encode",
            Self::Backend(_) => "error",
            Self::Config { .. } => "config",
        }
    }
}
