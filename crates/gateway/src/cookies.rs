//! The gateway's cookies: their names (with the `__Host-` prefix over
//! HTTPS) and how they are built.

use std::time::Duration;

use cookie::{Cookie, SameSite};
use http::Response;
use http::header::{self, HeaderValue};

use orchestrator_http::body::BoxBody;

/// The names of the session cookie and of the login-binding cookie, and
/// the parent domain sessions may be shared across (`session.cookieDomain`).
///
/// Over HTTPS the names carry the `__Host-` prefix unless the configured name
/// already has a prefix: browsers then accept the cookie only with `Secure`,
/// `Path=/` and no `Domain`, so a sibling subdomain or a plain-HTTP page cannot
/// set or shadow it (cookie tossing). A session cookie for the parent domain
/// cannot be `__Host-`: it is `__Secure-` (HTTPS only) instead.
#[derive(Debug, Clone)]
pub(crate) struct CookieNames {
    session: String,
    binding: String,
    secure_session: String,
    secure_binding: String,
    /// `__Secure-{name}`: the domain-wide session cookie over HTTPS.
    domain_session: String,
    /// Lower-case, without a leading dot.
    domain: Option<String>,
}

/// Which session cookie a host reads and writes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SessionCookie<'a> {
    /// Its name.
    pub(crate) name: &'a str,
    /// `Domain` attribute: set when the host is within `cookieDomain`.
    pub(crate) domain: Option<&'a str>,
}

impl SessionCookie<'_> {
    /// What the session is bound to: the host itself, or `.{domain}` for a
    /// session shared by every host of the domain.
    pub(crate) fn scope(&self, host: &str) -> String {
        match self.domain {
            Some(d) => format!(".{d}"),
            None => host.to_owned(),
        }
    }
}

/// True when a session bound to `scope` (a host, or `.domain`) is valid on `host`.
pub(crate) fn in_scope(scope: &str, host: &str) -> bool {
    match scope.strip_prefix('.') {
        Some(domain) => host == domain || host.strip_suffix(scope).is_some_and(|l| !l.is_empty()),
        None => scope == host,
    }
}

impl CookieNames {
    /// From `appGateway.session.cookieName` and `cookieDomain`.
    pub(crate) fn new(configured: &str, domain: Option<&str>) -> Self {
        let binding = format!("{configured}_login");
        let prefixed = configured.starts_with("__Host-") || configured.starts_with("__Secure-");
        let secure = |name: &str| {
            if prefixed {
                name.to_owned()
            } else {
                format!("__Host-{name}")
            }
        };
        let bare = configured
            .strip_prefix("__Host-")
            .or_else(|| configured.strip_prefix("__Secure-"))
            .unwrap_or(configured);
        Self {
            secure_session: secure(configured),
            secure_binding: secure(&binding),
            domain_session: format!("__Secure-{bare}"),
            session: configured.to_owned(),
            binding,
            domain: domain.map(|d| d.trim_start_matches('.').to_ascii_lowercase()),
        }
    }

    /// The session cookie on `host` (lower-case, no port) over `https` or not.
    pub(crate) fn session(&self, https: bool, host: &str) -> SessionCookie<'_> {
        let domain = self
            .domain
            .as_deref()
            .filter(|d| in_scope(&format!(".{d}"), host));
        let name = match (https, domain) {
            (false, _) => &self.session,
            (true, None) => &self.secure_session,
            (true, Some(_)) => &self.domain_session,
        };
        SessionCookie { name, domain }
    }

    /// The login-binding cookie's name (always host-only: the login starts
    /// and ends on one host).
    pub(crate) fn binding(&self, https: bool) -> &str {
        if https {
            &self.secure_binding
        } else {
            &self.binding
        }
    }

    /// Every name, for stripping them all from what the upstream sees.
    pub(crate) fn all(&self) -> [&str; 5] {
        [
            &self.session,
            &self.binding,
            &self.secure_session,
            &self.secure_binding,
            &self.domain_session,
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
    scoped_cookie(name, None, value, secure, max_age)
}

/// An HttpOnly, SameSite=Lax cookie for the whole host, or for every host
/// of `domain`.
pub(crate) fn scoped_cookie<'a>(
    name: &'a str,
    domain: Option<&'a str>,
    value: String,
    secure: bool,
    max_age: Duration,
) -> Cookie<'a> {
    let mut c = Cookie::build((name, value))
        .http_only(true)
        .same_site(SameSite::Lax)
        .path("/")
        .secure(secure)
        .max_age(cookie::time::Duration::seconds(
            i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX),
        ))
        .build();
    if let Some(d) = domain {
        c.set_domain(d);
    }
    c
}

/// A cookie that tells the browser to drop `name` (set for `domain`, if any).
pub(crate) fn removal<'a>(name: &'a str, domain: Option<&'a str>, secure: bool) -> Cookie<'a> {
    let mut c = Cookie::build((name, ""))
        .path("/")
        .http_only(true)
        .secure(secure)
        .build();
    if let Some(d) = domain {
        c.set_domain(d);
    }
    c.make_removal();
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_prefix_over_https_only_and_never_twice() {
        let n = CookieNames::new("orchestrator_session", None);
        assert_eq!(n.session(false, "a.example").name, "orchestrator_session");
        assert_eq!(
            n.session(true, "a.example").name,
            "__Host-orchestrator_session"
        );
        assert_eq!(n.session(true, "a.example").domain, None);
        assert_eq!(n.binding(false), "orchestrator_session_login");
        assert_eq!(n.binding(true), "__Host-orchestrator_session_login");
        let p = CookieNames::new("__Secure-s", None);
        assert_eq!(p.session(true, "a.example").name, "__Secure-s");
        assert_eq!(p.binding(true), "__Secure-s_login");
        assert_eq!(n.all().len(), 5);
    }

    #[test]
    fn domain_sessions_only_within_the_domain() {
        let n = CookieNames::new("s", Some(".Example.com"));
        let inside = n.session(true, "app.example.com");
        assert_eq!(inside.name, "__Secure-s");
        assert_eq!(inside.domain, Some("example.com"));
        assert_eq!(inside.scope("app.example.com"), ".example.com");
        assert_eq!(n.session(true, "example.com").domain, Some("example.com"));
        let outside = n.session(true, "notexample.com");
        assert_eq!((outside.name, outside.domain), ("__Host-s", None));
        assert_eq!(outside.scope("notexample.com"), "notexample.com");
        assert!(in_scope(".example.com", "a.b.example.com"));
        assert!(in_scope(".example.com", "example.com"));
        assert!(!in_scope(".example.com", "evilexample.com"));
        assert!(!in_scope(".example.com", ".example.com"));
        assert!(in_scope("a.example.com", "a.example.com"));
        assert!(!in_scope("a.example.com", "b.example.com"));
    }
}
