//! The provider's errors: [`OAuthError`] (what a request gets, with its
//! RFC 6749 error code) and [`ProviderError`] (what stops a config). How an
//! `OAuthError` becomes a response is [`crate::respond`]'s.

use std::borrow::Cow;

use http::StatusCode;

/// Error codes named by RFC 6749, RFC 6750, RFC 7009 and OpenID Connect Core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// Malformed, missing, duplicated or oversized parameter.
    InvalidRequest,
    /// Client authentication failed (unknown client, wrong secret).
    InvalidClient,
    /// Code or refresh token invalid, expired, revoked, replayed or someone else's.
    InvalidGrant,
    /// The client may not use this grant or response type.
    UnauthorizedClient,
    /// `grant_type` not supported.
    UnsupportedGrantType,
    /// `response_type` not supported.
    UnsupportedResponseType,
    /// Scope unknown or not allowed for the client.
    InvalidScope,
    /// The user or the provider refused.
    AccessDenied,
    /// `prompt=none` but the user must log in.
    LoginRequired,
    /// Bearer token missing its mark (RFC 6750).
    InvalidToken,
    /// Bearer token lacks the scope needed (RFC 6750).
    InsufficientScope,
    /// `request` objects are not supported.
    RequestNotSupported,
    /// `request_uri` is not supported.
    RequestUriNotSupported,
    /// Dynamic `registration` is not supported.
    RegistrationNotSupported,
    /// RFC 7009: the token type cannot be revoked.
    UnsupportedTokenType,
    /// The store behind the provider is unavailable; retry later.
    TemporarilyUnavailable,
    /// An internal fault (never caused by input).
    ServerError,
}

impl ErrorCode {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::InvalidClient => "invalid_client",
            Self::InvalidGrant => "invalid_grant",
            Self::UnauthorizedClient => "unauthorized_client",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::UnsupportedResponseType => "unsupported_response_type",
            Self::InvalidScope => "invalid_scope",
            Self::AccessDenied => "access_denied",
            Self::LoginRequired => "login_required",
            Self::InvalidToken => "invalid_token",
            Self::InsufficientScope => "insufficient_scope",
            Self::RequestNotSupported => "request_not_supported",
            Self::RequestUriNotSupported => "request_uri_not_supported",
            Self::RegistrationNotSupported => "registration_not_supported",
            Self::UnsupportedTokenType => "unsupported_token_type",
            Self::TemporarilyUnavailable => "temporarily_unavailable",
            Self::ServerError => "server_error",
        }
    }

    /// The HTTP status a direct (non-redirect) response carries.
    fn status(self) -> StatusCode {
        match self {
            Self::InvalidClient | Self::InvalidToken => StatusCode::UNAUTHORIZED,
            Self::InsufficientScope | Self::AccessDenied => StatusCode::FORBIDDEN,
            Self::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// An OAuth error: a code from the specs and a short reason for humans.
///
/// The description never holds secrets or user input beyond parameter names.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}: {description}", code.as_str())]
pub struct OAuthError {
    /// The spec's error code.
    pub code: ErrorCode,
    /// A short reason (ASCII, no quotes: it may go into a header).
    pub description: Cow<'static, str>,
    /// A transport status that overrides the code's (404, 405, 413).
    status: Option<StatusCode>,
}

impl OAuthError {
    /// An error with the status its code implies.
    pub fn new(code: ErrorCode, description: impl Into<Cow<'static, str>>) -> Self {
        Self {
            code,
            description: description.into(),
            status: None,
        }
    }

    pub(crate) fn invalid_request(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidRequest, description)
    }

    pub(crate) fn invalid_grant(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidGrant, description)
    }

    pub(crate) fn invalid_client() -> Self {
        // One description for every client-authentication failure, so the
        // response does not tell an unknown client from a wrong secret.
        Self::new(ErrorCode::InvalidClient, "client authentication failed")
    }

    pub(crate) fn invalid_token(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidToken, description)
    }

    /// A request the provider cannot serve at this path.
    pub(crate) fn not_found() -> Self {
        Self {
            status: Some(StatusCode::NOT_FOUND),
            ..Self::invalid_request("no such endpoint")
        }
    }

    pub(crate) fn method_not_allowed() -> Self {
        Self {
            status: Some(StatusCode::METHOD_NOT_ALLOWED),
            ..Self::invalid_request("method not allowed")
        }
    }

    pub(crate) fn payload_too_large() -> Self {
        Self {
            status: Some(StatusCode::PAYLOAD_TOO_LARGE),
            ..Self::invalid_request("request body too large")
        }
    }

    /// The status of a direct response.
    pub(crate) fn status(&self) -> StatusCode {
        self.status.unwrap_or_else(|| self.code.status())
    }
}

impl From<crate::store::StoreError> for OAuthError {
    fn from(err: crate::store::StoreError) -> Self {
        tracing::warn!(error = %err, "oidc provider store unavailable");
        Self::new(
            ErrorCode::TemporarilyUnavailable,
            "state store unavailable, retry later",
        )
    }
}

/// Why a [`crate::Provider`] could not be built from its config. Every message
/// names the config key path and never a secret value.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// `oidcProvider.issuer` is not an absolute http(s) URL without query or fragment.
    #[error("oidcProvider.issuer: {0}")]
    Issuer(String),
    /// A signing key did not load.
    #[error("oidcProvider.signingKeys[{index}] ({id}): {source}")]
    Key {
        /// Position in the list.
        index: usize,
        /// The key's `id`.
        id: String,
        /// What was wrong with it.
        source: crate::keys::KeyError,
    },
    /// Two keys share an id.
    #[error("oidcProvider.signingKeys[{index}].id: duplicate id {id:?}")]
    DuplicateKeyId {
        /// Position in the list.
        index: usize,
        /// The repeated id.
        id: String,
    },
    /// Redis means several replicas, which must share configured keys.
    #[error("oidcProvider.signingKeys: required with cache.backend redis")]
    KeysRequired,
    /// The dev key could not be generated.
    #[error("oidcProvider.signingKeys: generating a development key failed: {0}")]
    DevKey(crate::keys::KeyError),
    /// A client entry is unusable.
    #[error("oidcProvider.clients[{index}].{field}: {reason}")]
    Client {
        /// Position in the list.
        index: usize,
        /// The offending field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// An upstream entry is unusable (the message names its key).
    #[error("{0}")]
    Upstream(String),
    /// A user entry is unusable.
    #[error("oidcProvider.users[{index}].{field}: {reason}")]
    User {
        /// Position in the list.
        index: usize,
        /// The offending field.
        field: &'static str,
        /// What is wrong (never the hash itself).
        reason: String,
    },
}
