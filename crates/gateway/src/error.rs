//! The gateway's error type. Only [`crate::rescue`] turns it into a response.

use thiserror::Error;

/// Everything that can stop a request or a (re)configuration.
///
/// Messages name the app or the config key, never secrets or upstream
/// internals; [`crate::rescue`] decides what the client sees.
#[derive(Debug, Error)]
pub enum GatewayError {
    /// The configuration cannot be used (bad key, CA file, URL).
    #[error("invalid gateway config at {key}: {reason}")]
    Config {
        /// Key path of the offending value.
        key: String,
        /// What is wrong with it (never the value of a secret).
        reason: String,
    },
    /// The request itself is malformed.
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// No app serves this host and path.
    #[error("no app serves this address")]
    NoRoute,
    /// This client started more logins than `maxPendingLoginsPerClient`
    /// allows, or pending logins fill `maxPendingLoginBytes`.
    #[error("too many logins in progress")]
    TooManyLogins,
    /// A sign-out POST without the session's confirmation token (cross-site).
    #[error("sign-out not confirmed")]
    LogoutUnconfirmed,
    /// No (valid) session: the browser must log in.
    #[error("login required")]
    LoginRequired,
    /// A bearer token that does not admit the request (RFC 6750 §3.1
    /// `invalid_token`): 401, never a login redirect.
    #[error("invalid bearer token: {0}")]
    InvalidToken(&'static str),
    /// The login callback failed (state, code exchange, ID token).
    #[error("login failed: {0}")]
    LoginFailed(String),
    /// The identity provider cannot be reached or discovered right now.
    #[error("identity provider {idp} unavailable")]
    IdpUnavailable {
        /// Configured name of the identity provider.
        idp: String,
    },
    /// The upstream could not be reached or broke the exchange.
    #[error("upstream of {app} failed")]
    Upstream {
        /// App name.
        app: String,
    },
    /// The upstream did not answer in time.
    #[error("upstream of {app} timed out")]
    Timeout {
        /// App name.
        app: String,
    },
    /// The session store failed.
    #[error("session store unavailable: {0}")]
    Cache(String),
}

/// The relying party's errors, as the gateway answers them.
impl From<orchestrator_rp::RpError> for GatewayError {
    fn from(e: orchestrator_rp::RpError) -> Self {
        use orchestrator_rp::RpError;
        match e {
            RpError::Config { key, reason } => Self::Config { key, reason },
            RpError::IdpUnavailable { idp } => Self::IdpUnavailable { idp },
            RpError::BadRequest(why) => Self::BadRequest(why),
            RpError::LoginFailed(why) | RpError::Refused(why) => Self::LoginFailed(why),
            RpError::InvalidToken(why) => Self::InvalidToken(why),
        }
    }
}

impl GatewayError {
    pub(crate) fn config(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Config {
            key: key.into(),
            reason: reason.into(),
        }
    }
}
