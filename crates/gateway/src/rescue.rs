//! The one place where a [`GatewayError`] becomes a response. Pages name the
//! app at most, never an upstream address, a reason from a library, or a secret.

use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, Response, StatusCode};

use crate::error::GatewayError;
use orchestrator_http::body::{BoxBody, full};

/// The response for `err`.
pub(crate) fn respond(err: &GatewayError) -> Response<BoxBody> {
    let (status, title, detail): (StatusCode, &str, String) = match err {
        GatewayError::BadRequest(why) => {
            (StatusCode::BAD_REQUEST, "Bad request", (*why).to_owned())
        }
        GatewayError::NoRoute => (
            StatusCode::NOT_FOUND,
            "Not found",
            "No application is served at this address.".to_owned(),
        ),
        GatewayError::TooManyLogins => (
            StatusCode::TOO_MANY_REQUESTS,
            "Too many sign-ins",
            "Too many sign-ins are in progress. Wait a few minutes and try again.".to_owned(),
        ),
        GatewayError::LogoutUnconfirmed => (
            StatusCode::FORBIDDEN,
            "Sign-out not confirmed",
            "This sign-out request did not come from the sign-out page. Open it again to sign out."
                .to_owned(),
        ),
        GatewayError::LoginRequired => (
            StatusCode::UNAUTHORIZED,
            "Login required",
            "Sign in through the browser first.".to_owned(),
        ),
        GatewayError::LoginFailed(_) => (
            StatusCode::BAD_REQUEST,
            "Login failed",
            "The login could not be completed or has expired. Please start again.".to_owned(),
        ),
        GatewayError::IdpUnavailable { .. } => (
            StatusCode::SERVICE_UNAVAILABLE,
            "Login unavailable",
            "The identity provider cannot be reached right now. Please retry shortly.".to_owned(),
        ),
        GatewayError::Forbidden { app } => (
            StatusCode::FORBIDDEN,
            "Access denied",
            format!("You are not allowed to use {app}."),
        ),
        GatewayError::Upstream { app } => (
            StatusCode::BAD_GATEWAY,
            "Bad gateway",
            format!("{app} is not answering."),
        ),
        GatewayError::Timeout { app } => (
            StatusCode::GATEWAY_TIMEOUT,
            "Gateway timeout",
            format!("{app} did not answer in time."),
        ),
        GatewayError::Cache(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "Unavailable",
            "Sessions cannot be read right now. Please retry shortly.".to_owned(),
        ),
        GatewayError::Config { .. } => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "Error",
            "The gateway is misconfigured.".to_owned(),
        ),
    };
    match err {
        GatewayError::LoginFailed(why) | GatewayError::Cache(why) => {
            tracing::info!(reason = %why, "{title}")
        }
        _ => tracing::debug!(error = %err, "{title}"),
    }
    page(status, title, &detail)
}

/// A small HTML page.
pub(crate) fn page(status: StatusCode, title: &str, detail: &str) -> Response<BoxBody> {
    let html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title></head>\
         <body><h1>{t}</h1><p>{d}</p></body></html>\n",
        t = escape(title),
        d = escape(detail)
    );
    let mut resp = Response::new(full(html));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    resp.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// A page with one button that POSTs `token` to `action` (a confirmation).
///
/// The CSP allows no script, no framing, and forms only to this origin and
/// whatever it redirects to: Chromium applies `form-action` to a form's
/// redirects too, and sign-out continues at the IdP.
pub(crate) fn confirm_page(
    title: &str,
    question: &str,
    action: &str,
    token: &str,
) -> Response<BoxBody> {
    let html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title></head>\
         <body><h1>{t}</h1><p>{q}</p>\
         <form method=\"post\" action=\"{a}\"><input type=\"hidden\" name=\"token\" value=\"{v}\">\
         <button type=\"submit\">{t}</button></form></body></html>\n",
        t = escape(title),
        q = escape(question),
        a = escape(action),
        v = escape(token),
    );
    let mut resp = Response::new(full(html));
    let h = resp.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        "content-security-policy",
        HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'; base-uri 'none'"),
    );
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    resp
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_no_internals() {
        let cases = [
            (GatewayError::LoginRequired, 401),
            (GatewayError::Forbidden { app: "demo".into() }, 403),
            (GatewayError::NoRoute, 404),
            (GatewayError::Upstream { app: "demo".into() }, 502),
            (GatewayError::Timeout { app: "demo".into() }, 504),
            (GatewayError::IdpUnavailable { idp: "corp".into() }, 503),
            (GatewayError::LoginFailed("secret detail".into()), 400),
            (GatewayError::TooManyLogins, 429),
            (GatewayError::LogoutUnconfirmed, 403),
        ];
        for (e, code) in cases {
            assert_eq!(respond(&e).status().as_u16(), code, "{e}");
        }
        assert_eq!(escape("<a&b>"), "&lt;a&amp;b&gt;");
    }
}
