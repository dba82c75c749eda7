//! The one place that turns an [`OAuthError`] into a response, in the style
//! the endpoint's spec demands: RFC 6749 §5.2 JSON (token, introspection,
//! revocation), RFC 6750 §3 Bearer challenges (userinfo), a redirect to a
//! *validated* redirect URI (authorize, RFC 6749 §4.1.2.1), or an HTML error
//! page when no redirect URI can be trusted. Redirects are built here too,
//! since one that cannot be sent falls back to that page.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use orchestrator_ui::{ErrorView, PagesHandle};

use crate::BoxBody;
use crate::error::{ErrorCode, OAuthError};
use crate::web::{self, append_query, full};

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
        Some(location) => redirect(pages, &location),
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

/// A 302 to `location`.
pub(crate) fn redirect(pages: &PagesHandle, location: &str) -> Response<BoxBody> {
    let Ok(location) = HeaderValue::from_str(location) else {
        // Only reachable with a registered URI that is not a valid header:
        // refuse rather than redirect somewhere else.
        return web::html(
            StatusCode::BAD_REQUEST,
            error_page(
                pages,
                StatusCode::BAD_REQUEST,
                &OAuthError::invalid_request("unusable redirect URI"),
            ),
        );
    };
    let mut resp = Response::new(full(Bytes::new()));
    *resp.status_mut() = StatusCode::FOUND;
    let h = resp.headers_mut();
    h.insert(header::LOCATION, location);
    web::no_store(h);
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    resp
}
