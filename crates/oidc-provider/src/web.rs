//! HTTP plumbing shared by the endpoints: building responses, reading bounded
//! bodies, cookies and the client's address.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Limited};

use crate::BoxBody;
use crate::error::OAuthError;
use orchestrator_ui::FormAction;

pub(crate) use orchestrator_http::body::full;

/// A JSON response that must not be cached (tokens, errors, userinfo).
pub(crate) fn json(status: StatusCode, value: &serde_json::Value) -> Response<BoxBody> {
    let body = serde_json::to_vec(value).unwrap_or_default();
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    no_store(h);
    resp
}

/// A pre-rendered JSON document clients may cache for a while (discovery, JWKS).
pub(crate) fn public_json_bytes(body: Bytes, max_age_secs: u64) -> Response<BoxBody> {
    let mut resp = Response::new(full(body));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("public, max-age={max_age_secs}")) {
        h.insert(header::CACHE_CONTROL, v);
    }
    resp
}

/// Lets any origin read the response (no credentials: these endpoints take
/// tokens and client secrets in headers or bodies, never cookies).
pub(crate) fn allow_any_origin(resp: &mut Response<BoxBody>) {
    resp.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
}

/// The answer to a CORS preflight.
pub(crate) fn cors_preflight() -> Response<BoxBody> {
    let mut resp = Response::new(full(Bytes::new()));
    *resp.status_mut() = StatusCode::NO_CONTENT;
    let h = resp.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, OPTIONS"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("authorization, content-type"),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
    resp
}

/// An HTML page whose forms (if any) post to this origin.
pub(crate) fn html(status: StatusCode, page: String) -> Response<BoxBody> {
    orchestrator_ui::html(status, page, FormAction::SelfOnly)
}

/// The login page for a client whose redirect URI is `redirect_uri`.
///
/// Its form posts here, but the POST ends in a redirect to the client, and
/// Chromium applies `form-action` to a form's redirects too: with `'self'`
/// alone it blocks every login whose client is on another origin (the
/// normal deployment). So the directive also allows the origin of this
/// request's registered redirect URI, and nothing else.
pub(crate) fn login_html(
    status: StatusCode,
    page: String,
    redirect_uri: &str,
) -> Response<BoxBody> {
    match form_action_source(redirect_uri) {
        Some(src) => orchestrator_ui::html(status, page, FormAction::SelfAnd(&src)),
        None => html(status, page),
    }
}

/// The CSP source expression for where `redirect_uri` points: its origin
/// for `http(s)`, its scheme for a native app's private-use scheme (RFC 8252
/// §7.1). `None` for anything that is not a plain URL.
fn form_action_source(redirect_uri: &str) -> Option<String> {
    let url = url::Url::parse(redirect_uri).ok()?;
    match url.scheme() {
        "http" | "https" => {
            let origin = url.origin().ascii_serialization();
            (origin != "null").then_some(origin)
        }
        scheme => Some(format!("{scheme}:")),
    }
}

pub(crate) fn no_store(h: &mut HeaderMap) {
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

/// Reads at most `limit` bytes of body; more is a 413.
pub(crate) async fn read_body<B>(body: B, limit: usize) -> Result<Bytes, OAuthError>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) if err.is::<http_body_util::LengthLimitError>() => {
            Err(OAuthError::payload_too_large())
        }
        Err(_) => Err(OAuthError::invalid_request("could not read request body")),
    }
}

/// True when the request says its body is a form.
pub(crate) fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| {
            mime.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

/// The value of cookie `name`, if the request carries exactly one: the
/// gateway's rule, read as bytes (see [`orchestrator_http::cookies::unique`]).
pub(crate) fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    orchestrator_http::cookies::unique(headers, name)
}

/// A `Set-Cookie` for one of the provider's cookies: HttpOnly, SameSite=Lax,
/// Secure over TLS, scoped to the issuer path. `None` as value deletes it.
pub(crate) fn set_cookie(
    name: &str,
    value: Option<&str>,
    path: &str,
    tls: bool,
    max_age: Option<std::time::Duration>,
) -> Option<HeaderValue> {
    let mut c = cookie::Cookie::build((name.to_owned(), value.unwrap_or("").to_owned()))
        .path(path.to_owned())
        .http_only(true)
        .secure(tls)
        .same_site(cookie::SameSite::Lax)
        .build();
    match (value, max_age) {
        (None, _) => c.make_removal(),
        (Some(_), Some(age)) => {
            let secs = i64::try_from(age.as_secs()).unwrap_or(i64::MAX);
            c.set_max_age(cookie::time::Duration::seconds(secs));
        }
        (Some(_), None) => {}
    }
    HeaderValue::from_str(&c.encoded().to_string()).ok()
}

/// Appends query parameters to a URL that may already carry a query.
pub(crate) fn append_query(base: &str, pairs: &[(&str, &str)]) -> Option<String> {
    let mut url = url::Url::parse(base).ok()?;
    {
        let mut query = url.query_pairs_mut();
        for (k, v) in pairs {
            query.append_pair(k, v);
        }
    }
    Some(url.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_form_may_redirect_to_its_client_only() {
        let cases = [
            (
                "https://app.example:8443/cb?x=1",
                Some("https://app.example:8443"),
            ),
            ("http://127.0.0.1:9000/cb", Some("http://127.0.0.1:9000")),
            ("com.example.app:/oauth", Some("com.example.app:")),
            ("not a url", None),
        ];
        for (uri, want) in cases {
            assert_eq!(form_action_source(uri).as_deref(), want, "{uri}");
        }
        let resp = login_html(StatusCode::OK, String::new(), "https://app.example/cb");
        let csp = resp.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap();
        assert!(
            csp.split(';')
                .any(|d| d.trim() == "form-action 'self' https://app.example"),
            "{csp}"
        );
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    }

    #[test]
    fn provider_cookies_are_http_only_lax_and_secure_over_tls() {
        let v = set_cookie(
            "oidc_session",
            Some("abc"),
            "/idp",
            true,
            Some(std::time::Duration::from_secs(60)),
        )
        .unwrap();
        let v = v.to_str().unwrap();
        for part in [
            "oidc_session=abc",
            "HttpOnly",
            "SameSite=Lax",
            "Secure",
            "Path=/idp",
            "Max-Age=60",
        ] {
            assert!(v.contains(part), "{part} missing in {v}");
        }
        let removal = set_cookie("oidc_session", None, "/idp", false, None).unwrap();
        let removal = removal.to_str().unwrap();
        assert!(removal.contains("Max-Age=0"), "{removal}");
        assert!(!removal.contains("Secure"));
    }

    #[test]
    fn duplicate_cookies_are_not_trusted() {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_static("a=1; b=2; a=3"));
        assert_eq!(cookie(&h, "b").as_deref(), Some("2"));
        assert_eq!(cookie(&h, "a"), None);
    }
}
