//! What can go wrong talking to an identity provider.

use thiserror::Error;

/// An error of the relying party. Messages name the IdP or the config key,
/// never a secret or a token.
#[derive(Debug, Error)]
pub enum RpError {
    /// The configuration cannot be used (bad URL, CA file).
    #[error("invalid config at {key}: {reason}")]
    Config {
        /// Key path of the offending value.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The IdP cannot be reached or discovered right now (or is saturated).
    #[error("identity provider {idp} unavailable")]
    IdpUnavailable {
        /// Configured name of the IdP.
        idp: String,
    },
    /// The request cannot be made as asked (e.g. no callback URL for this host).
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// The login failed: code exchange, ID token, userinfo.
    #[error("login failed: {0}")]
    LoginFailed(String),
    /// The IdP refused a refresh: the grant is gone (user removed, session
    /// ended, token revoked), or what it sent is not this user's.
    #[error("refresh refused: {0}")]
    Refused(String),
    /// A token the IdP's keys or its introspection endpoint do not vouch for.
    #[error("invalid token: {0}")]
    InvalidToken(&'static str),
}

impl RpError {
    pub(crate) fn config(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Config {
            key: key.into(),
            reason: reason.into(),
        }
    }
}
