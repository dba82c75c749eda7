//! How a page is sent: the headers every page carries.

use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use orchestrator_http::body::{BoxBody, full};

/// Where the page's forms may be submitted (CSP `form-action`). Chromium
/// applies the directive to the redirects that follow a submission too, so
/// it must also allow where the form's answer leads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormAction<'a> {
    /// This origin only.
    SelfOnly,
    /// This origin and the given source expression (an origin, or a
    /// private-use scheme like `com.example.app:`).
    SelfAnd(&'a str),
    /// Not restricted: the form's answer continues at a place not known
    /// when the page is made (sign-out continuing at the IdP).
    Unrestricted,
}

/// An HTML page: never cached, never framed, no script, inline style and
/// `data:` images only, no referrer.
pub fn html(status: StatusCode, page: String, forms: FormAction<'_>) -> Response<BoxBody> {
    macro_rules! base {
        () => {
            "default-src 'none'; style-src 'unsafe-inline'; img-src data:; \
             frame-ancestors 'none'; base-uri 'none'"
        };
    }
    const SELF_ONLY: &str = concat!(base!(), "; form-action 'self'");
    let csp = match forms {
        FormAction::SelfOnly => HeaderValue::from_static(SELF_ONLY),
        // A source that is not a valid header value leaves this origin only.
        FormAction::SelfAnd(src) => HeaderValue::from_str(&format!("{SELF_ONLY} {src}"))
            .unwrap_or(HeaderValue::from_static(SELF_ONLY)),
        FormAction::Unrestricted => HeaderValue::from_static(base!()),
    };
    let mut resp = Response::new(full(page));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    h.insert(header::CONTENT_SECURITY_POLICY, csp);
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    resp
}
