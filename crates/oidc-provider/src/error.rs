//! Errors, and the one place that turns them into responses.
//!
//! Endpoints return [`OAuthError`]; the router picks how it is rendered:
//! RFC 6749 §5.2 JSON (token, introspection, revocation), RFC 6750 §3 Bearer
//! challenges (userinfo), a redirect to a *validated* redirect URI (authorize,
//! RFC 6749 §4.1.2.1) or an HTML error page when no redirect URI can be trusted.

use std::borrow::Cow;

use http::{HeaderValue, Response, StatusCode, header};
use url::Url;

use crate::BoxBody;
use crate::web;
use orchestrator_ui::{ErrorView, PagesHandle};

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

/// RFC 6749 §5.2 JSON body (token, introspection, revocation endpoints).
pub(crate) fn json_response(err: &OAuthError) -> Response<BoxBody> {
    let body = serde_json::json!({
        "error": err.code.as_str(),
        "error_description": err.description,
    });
    let mut resp = web::json(err.status(), &body);
    if err.code == ErrorCode::InvalidClient {
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"oidc\""),
        );
    }
    resp
}

/// RFC 6750 §3 error for protected resources (userinfo).
pub(crate) fn bearer_response(err: &OAuthError) -> Response<BoxBody> {
    let mut resp = json_response(err);
    let challenge = if err.code == ErrorCode::InvalidRequest && err.description == "no token" {
        // §3.1: no error attribute when the request carried no credentials.
        "Bearer realm=\"oidc\"".to_owned()
    } else {
        format!(
            "Bearer realm=\"oidc\", error=\"{}\", error_description=\"{}\"",
            err.code.as_str(),
            err.description
        )
    };
    if let Ok(value) = HeaderValue::from_str(&challenge) {
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, value);
    }
    if err.code == ErrorCode::InvalidRequest && err.description == "no token" {
        *resp.status_mut() = StatusCode::UNAUTHORIZED;
    }
    resp
}

/// RFC 6749 §4.1.2.1: the error goes back to the client's (already validated)
/// redirect URI with `state` and, per RFC 9207, `iss`.
pub(crate) fn redirect_response(
    pages: &PagesHandle,
    redirect_uri: &str,
    state: Option<&str>,
    issuer: &str,
    err: &OAuthError,
) -> Response<BoxBody> {
    let mut pairs = vec![
        ("error", err.code.as_str()),
        ("error_description", err.description.as_ref()),
    ];
    if let Some(state) = state {
        pairs.push(("state", state));
    }
    pairs.push(("iss", issuer));
    match append_query(redirect_uri, &pairs) {
        Some(location) => web::redirect(pages, &location),
        // Cannot happen for a registered URI (checked at startup); fall back
        // to the page rather than redirecting somewhere unchecked.
        None => page_response(pages, err),
    }
}

/// An HTML error page: for authorize errors that must not redirect.
pub(crate) fn page_response(pages: &PagesHandle, err: &OAuthError) -> Response<BoxBody> {
    // 401 asks for HTTP authentication, which a browser cannot give here.
    let status = match err.status() {
        StatusCode::UNAUTHORIZED => StatusCode::BAD_REQUEST,
        s => s,
    };
    web::html(status, error_page(pages, status, err))
}

/// The page for an error that cannot go back to the client: what happened,
/// what to do, the OAuth error code.
pub(crate) fn error_page(pages: &PagesHandle, status: StatusCode, err: &OAuthError) -> String {
    pages.render(&ErrorView {
        status: status.as_u16(),
        title: "Sign-in error",
        message: &sentence(&err.description),
        hint: Some(
            "Go back to the application and sign in again. If it keeps happening, tell the \
             application's administrator and quote the request ID below.",
        ),
        code: Some(err.code.as_str()),
        retry_url: None,
    })
}

/// `text` as a sentence: capital first letter, final full stop.
fn sentence(text: &str) -> String {
    let mut chars = text.chars();
    let mut out: String = chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default();
    if !out.ends_with(['.', '!', '?']) {
        out.push('.');
    }
    out
}

/// Appends query parameters to a URL that may already carry a query.
pub(crate) fn append_query(base: &str, pairs: &[(&str, &str)]) -> Option<String> {
    let mut url = Url::parse(base).ok()?;
    {
        let mut query = url.query_pairs_mut();
        for (k, v) in pairs {
            query.append_pair(k, v);
        }
    }
    Some(url.into())
}
