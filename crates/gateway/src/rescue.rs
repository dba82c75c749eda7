//! The one place where a [`GatewayError`] becomes a response, and the
//! gateway's other pages (access denied, sign-out). Pages name the app at
//! most, never an upstream address, a reason from a library, or a secret;
//! each says what happened and what to do, and carries the request id.

use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use orchestrator_http::body::{BoxBody, empty};
use orchestrator_ui::{
    ConfirmView, ErrorView, ForbiddenView, FormAction, PagesHandle, SignedOutView, html,
};

use crate::error::GatewayError;

/// What a page says about one error: status, title, what happened, what to
/// do, and whether "try again" (the site's root) helps.
struct Explained {
    status: StatusCode,
    title: &'static str,
    message: String,
    hint: &'static str,
    retry: bool,
}

const RETRY_LATER: &str = "Try again in a minute. If it keeps happening, tell your \
                           administrator and quote the request ID below.";

fn explain(err: &GatewayError) -> Explained {
    let e = |status, title, message: String, hint, retry| Explained {
        status,
        title,
        message,
        hint,
        retry,
    };
    match err {
        GatewayError::BadRequest(why) => e(
            StatusCode::BAD_REQUEST,
            "Bad request",
            format!("The request cannot be served: {why}."),
            "Check the address, or start again from the application's home page.",
            true,
        ),
        GatewayError::NoRoute => e(
            StatusCode::NOT_FOUND,
            "Not found",
            "No application is served at this address.".to_owned(),
            "Check the address you opened.",
            false,
        ),
        GatewayError::TooManyLogins => e(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many sign-ins",
            "Too many sign-ins are in progress from your network.".to_owned(),
            "Wait a few minutes, then try again.",
            true,
        ),
        GatewayError::LogoutUnconfirmed => e(
            StatusCode::FORBIDDEN,
            "Sign-out not confirmed",
            "This sign-out request did not come from the sign-out page, so you are still signed in."
                .to_owned(),
            "To sign out, use the sign-out button of the application's sign-out page.",
            true,
        ),
        GatewayError::LoginRequired => e(
            StatusCode::UNAUTHORIZED,
            "Sign-in required",
            "This address needs a signed-in browser session.".to_owned(),
            "Open the application in your browser and sign in first.",
            false,
        ),
        GatewayError::InvalidToken(_) => e(
            StatusCode::UNAUTHORIZED,
            "Invalid token",
            "The access token sent with this request is not valid here.".to_owned(),
            "Get a new token from the identity provider.",
            false,
        ),
        GatewayError::LoginFailed(_) => e(
            StatusCode::BAD_REQUEST,
            "Sign-in failed",
            "The sign-in could not be completed, or it took too long.".to_owned(),
            "Go back to the application and sign in again.",
            true,
        ),
        GatewayError::IdpUnavailable { .. } => e(
            StatusCode::SERVICE_UNAVAILABLE,
            "Sign-in unavailable",
            "The sign-in service cannot be reached right now.".to_owned(),
            RETRY_LATER,
            true,
        ),
        GatewayError::Upstream { app } => e(
            StatusCode::BAD_GATEWAY,
            "Application unavailable",
            format!("{app} is not answering."),
            RETRY_LATER,
            true,
        ),
        GatewayError::Timeout { app } => e(
            StatusCode::GATEWAY_TIMEOUT,
            "Application too slow",
            format!("{app} did not answer in time."),
            RETRY_LATER,
            true,
        ),
        GatewayError::Cache(_) => e(
            StatusCode::SERVICE_UNAVAILABLE,
            "Temporarily unavailable",
            "Sessions cannot be read right now.".to_owned(),
            RETRY_LATER,
            true,
        ),
        GatewayError::Config { .. } => e(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Gateway error",
            "The gateway is misconfigured.".to_owned(),
            "Tell your administrator and quote the request ID below.",
            false,
        ),
    }
}

/// The response for `err`.
pub(crate) fn respond(pages: &PagesHandle, err: &GatewayError) -> Response<BoxBody> {
    if let GatewayError::InvalidToken(why) = err {
        return invalid_token(why);
    }
    let ex = explain(err);
    match err {
        GatewayError::LoginFailed(why) | GatewayError::Cache(why) => {
            tracing::info!(reason = %why, "{}", ex.title)
        }
        _ => tracing::debug!(error = %err, "{}", ex.title),
    }
    let page = pages.render(&ErrorView {
        status: ex.status.as_u16(),
        title: ex.title,
        message: &ex.message,
        hint: Some(ex.hint),
        code: None,
        retry_url: ex.retry.then_some("/"),
    });
    html(ex.status, page, FormAction::SelfOnly)
}

/// 401 for an API client whose bearer token does not admit it: RFC 6750
/// §3 `WWW-Authenticate` and a JSON body, both with a short reason that
/// names no key, token or upstream detail.
fn invalid_token(why: &str) -> Response<BoxBody> {
    tracing::debug!(reason = why, "bearer token refused");
    let body = serde_json::json!({"error": "invalid_token", "error_description": why});
    let mut resp = Response::new(orchestrator_http::body::full(body.to_string()));
    *resp.status_mut() = StatusCode::UNAUTHORIZED;
    let challenge = format!("Bearer error=\"invalid_token\", error_description=\"{why}\"");
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// 401 for an API request to an app that takes bearer tokens, sent without
/// one (RFC 6750 §3.1: a challenge without an error code).
pub(crate) fn token_required() -> Response<BoxBody> {
    token_answer(StatusCode::UNAUTHORIZED, "Bearer", None)
}

/// 403 for a valid bearer token whose claims the app's policy refuses.
pub(crate) fn token_forbidden() -> Response<BoxBody> {
    token_answer(
        StatusCode::FORBIDDEN,
        "Bearer error=\"insufficient_scope\"",
        Some((
            "insufficient_scope",
            "the app's policy refuses this identity",
        )),
    )
}

fn token_answer(
    status: StatusCode,
    challenge: &'static str,
    error: Option<(&str, &str)>,
) -> Response<BoxBody> {
    let body = match error {
        Some((code, why)) => serde_json::json!({"error": code, "error_description": why}),
        None => {
            serde_json::json!({"error": "unauthorized", "error_description": "a bearer token is required"})
        }
    };
    let mut resp = Response::new(orchestrator_http::body::full(body.to_string()));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(challenge),
    );
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// A page that only informs (sign-out done, nothing to sign out of).
pub(crate) fn signed_out(
    pages: &PagesHandle,
    message: &str,
    continue_url: Option<&str>,
) -> Response<BoxBody> {
    let page = pages.render(&SignedOutView {
        title: "Signed out",
        message,
        continue_url,
    });
    html(StatusCode::OK, page, FormAction::SelfOnly)
}

/// A 405 for a method the sign-out page does not take.
pub(crate) fn method_not_allowed(pages: &PagesHandle) -> Response<BoxBody> {
    let page = pages.render(&ErrorView {
        status: 405,
        title: "Method not allowed",
        message: "This address only shows the sign-out page and takes its form.",
        hint: Some("Open the sign-out page and use its button."),
        code: None,
        retry_url: None,
    });
    html(StatusCode::METHOD_NOT_ALLOWED, page, FormAction::SelfOnly)
}

/// The sign-out confirmation: one button that POSTs `token` to `action`.
/// Its answer continues at the IdP's end-session endpoint, so form targets
/// are not restricted (Chromium checks `form-action` on redirects too).
pub(crate) fn confirm_sign_out(
    pages: &PagesHandle,
    action: &str,
    token: &str,
) -> Response<BoxBody> {
    let page = pages.render(&ConfirmView {
        title: "Sign out",
        message: "Do you want to sign out?",
        action,
        token,
        button: "Sign out",
    });
    html(StatusCode::OK, page, FormAction::Unrestricted)
}

/// What the "access denied" page offers a signed-in user.
pub(crate) struct Denied<'a> {
    pub(crate) app: &'a str,
    pub(crate) user: Option<&'a str>,
    pub(crate) switch_url: &'a str,
    pub(crate) sign_out_action: &'a str,
    pub(crate) sign_out_token: &'a str,
}

/// 403: who is signed in, "sign in as someone else" and "sign out".
pub(crate) fn forbidden(pages: &PagesHandle, denied: &Denied<'_>) -> Response<BoxBody> {
    tracing::debug!(app = denied.app, "access denied by policy");
    let page = pages.render(&ForbiddenView {
        title: "Access denied",
        app: denied.app,
        user: denied.user,
        switch_url: Some(denied.switch_url),
        sign_out_action: Some(denied.sign_out_action),
        sign_out_token: Some(denied.sign_out_token),
    });
    html(StatusCode::FORBIDDEN, page, FormAction::Unrestricted)
}

/// A redirect to `location`, never cached.
pub(crate) fn redirect(
    status: StatusCode,
    location: &str,
) -> Result<Response<BoxBody>, GatewayError> {
    let mut resp = Response::new(empty());
    *resp.status_mut() = status;
    let v = HeaderValue::from_str(location)
        .map_err(|_| GatewayError::BadRequest("invalid redirect target"))?;
    resp.headers_mut().insert(header::LOCATION, v);
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn statuses_and_no_internals() {
        use http_body_util::BodyExt as _;
        let pages = PagesHandle::default();
        let cases = [
            (GatewayError::LoginRequired, 401),
            (GatewayError::NoRoute, 404),
            (GatewayError::Upstream { app: "demo".into() }, 502),
            (GatewayError::Timeout { app: "demo".into() }, 504),
            (
                GatewayError::IdpUnavailable {
                    idp: "corp-idp-internal".into(),
                },
                503,
            ),
            (
                GatewayError::LoginFailed("nonce mismatch secret-detail".into()),
                400,
            ),
            (GatewayError::Cache("redis at 10.0.0.7 refused".into()), 503),
            (GatewayError::TooManyLogins, 429),
            (GatewayError::LogoutUnconfirmed, 403),
            (
                GatewayError::config("appGateway.apps[0].upstream", "bad CA /etc/ca.pem"),
                500,
            ),
        ];
        for (e, code) in cases {
            let resp = respond(&pages, &e);
            assert_eq!(resp.status().as_u16(), code, "{e}");
            assert!(resp.headers().contains_key("content-security-policy"));
            let body = resp.into_body().collect().await.expect("body").to_bytes();
            let page = String::from_utf8_lossy(&body);
            for internal in [
                "secret-detail",
                "10.0.0.7",
                "corp-idp-internal",
                "/etc/ca.pem",
            ] {
                assert!(!page.contains(internal), "{e}: {page}");
            }
            let hint = explain(&e).hint.replace('\'', "&#x27;");
            assert!(page.contains(&hint), "{e}: no hint");
        }
    }
}
