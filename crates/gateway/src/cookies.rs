//! The gateway's cookies: their names (with the `__Host-` prefix over
//! HTTPS) and how they are built.

use std::time::Duration;

use cookie::{Cookie, SameSite};
use http::Response;
use http::header::{self, HeaderValue};

use orchestrator_http::body::BoxBody;

/// The names of the session cookie and of the login-binding cookie.
///
/// Over HTTPS the names carry the `__Host-` prefix unless the configured name
/// already has a prefix: browsers then accept the cookie only with `Secure`,
/// `Path=/` and no `Domain`, so a sibling subdomain or a plain-HTTP page cannot
/// set or shadow it (cookie tossing).
#[derive(Debug, Clone)]
pub(crate) struct CookieNames {
    session: String,
    binding: String,
    secure_session: String,
    secure_binding: String,
}

impl CookieNames {
    /// From `appGateway.session.cookieName`.
    pub(crate) fn new(configured: &str) -> Self {
        let binding = format!("{configured}_login");
        let prefixed = configured.starts_with("__Host-") || configured.starts_with("__Secure-");
        let secure = |name: &str| {
            if prefixed {
                name.to_owned()
            } else {
                format!("__Host-{name}")
            }
        };
        Self {
            secure_session: secure(configured),
            secure_binding: secure(&binding),
            session: configured.to_owned(),
            binding,
        }
    }

    /// The session cookie's name for a request made over `https` or not.
    pub(crate) fn session(&self, https: bool) -> &str {
        if https {
            &self.secure_session
        } else {
            &self.session
        }
    }

    /// The login-binding cookie's name.
    pub(crate) fn binding(&self, https: bool) -> &str {
        if https {
            &self.secure_binding
        } else {
            &self.binding
        }
    }

    /// Every name, for stripping them all from what the upstream sees.
    pub(crate) fn all(&self) -> [&str; 4] {
        [
            &self.session,
            &self.binding,
            &self.secure_session,
            &self.secure_binding,
        ]
    }
}

/// Appends `c` as a `Set-Cookie` header.
pub(crate) fn set_cookie(resp: &mut Response<BoxBody>, c: &Cookie<'_>) {
    if let Ok(v) = HeaderValue::from_str(&c.to_string()) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// A host-only, HttpOnly, SameSite=Lax cookie for the whole host.
pub(crate) fn cookie<'a>(
    name: &'a str,
    value: String,
    secure: bool,
    max_age: Duration,
) -> Cookie<'a> {
    Cookie::build((name, value))
        .http_only(true)
        .same_site(SameSite::Lax)
        .path("/")
        .secure(secure)
        .max_age(cookie::time::Duration::seconds(
            i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX),
        ))
        .build()
}

/// A cookie that tells the browser to drop `name`.
pub(crate) fn removal(name: &str, secure: bool) -> Cookie<'_> {
    let mut c = Cookie::build((name, ""))
        .path("/")
        .http_only(true)
        .secure(secure)
        .build();
    c.make_removal();
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_prefix_over_https_only_and_never_twice() {
        let n = CookieNames::new("orchestrator_session");
        assert_eq!(n.session(false), "orchestrator_session");
        assert_eq!(n.session(true), "__Host-orchestrator_session");
        assert_eq!(n.binding(false), "orchestrator_session_login");
        assert_eq!(n.binding(true), "__Host-orchestrator_session_login");
        let p = CookieNames::new("__Secure-s");
        assert_eq!(p.session(true), "__Secure-s");
        assert_eq!(p.binding(true), "__Secure-s_login");
        assert_eq!(n.all().len(), 4);
    }
}
