//! Forward auth: the ingress controller proxies the app itself and asks
//! `authPath` about each request (ingress-nginx `auth-url`, Traefik
//! `forwardAuth`, Caddy `forward_auth`, Envoy `ext_authz` and the Gateway
//! API `ExternalAuth` filter). The answer is the gateway's own decision for
//! that request, made with the same routing, session lookup, policy, headers
//! and assertion as inline proxying:
//!
//! - **200** with the app's identity headers (and assertion) when the
//!   session (or bearer token) passes the policy, or the path is public;
//! - **401** without a session (**302** to `loginPath?rd=` for a browser's
//!   navigation, when the proxy passes redirects to the client);
//! - **403** when the policy refuses.
//!
//! Every answer is `Cache-Control: no-store` and a 200 never sets a cookie.
//!
//! ## Which request is being asked about
//!
//! Each proxy describes the original request its own way:
//!
//! | proxy | how | redirects? |
//! |---|---|---|
//! | ingress-nginx, NGINX `auth_request` | `X-Original-URL` (+ `X-Original-Method`) | no: 401, its `auth-signin` redirects |
//! | Traefik, Caddy | `X-Forwarded-Uri`, `-Host`, `-Proto`, `-Method` | yes |
//! | Envoy, Gateway API | the request itself: method, Host, and the path below `authPath` | yes |
//!
//! Headers count only from `listen.trustedProxies`. A proxy passes the
//! *client's* copies of the other protocols' headers through unchanged
//! (ingress-nginx forwards a client's `X-Forwarded-Uri`, Traefik a client's
//! `X-Original-URL`), so no single header can be believed on its own: every
//! description present is a candidate, they must agree on the host and the
//! app, and the path is public only if it is public in all of them. A
//! client's `X-Forwarded-Uri: /public/x` therefore never opens `/admin`
//! (the CVE-2026-40575 class).

use std::sync::Arc;

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri};

use crate::error::GatewayError;
use crate::headers::ClientView;
use crate::identity::Identity;
use crate::route::NormalPath;
use crate::{App, Gateway, Runtime, phases, rescue, return_url};
use orchestrator_http::authority;
use orchestrator_http::body::{BoxBody, empty, full};

/// How a candidate description of the original request reached us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    /// `X-Original-URL` (ingress-nginx, NGINX `auth_request`).
    OriginalUrl,
    /// The auth request itself, its path below `authPath` (Envoy).
    OwnRequest,
    /// `X-Forwarded-Uri` and friends (Traefik, Caddy).
    ForwardedHeaders,
}

/// One description of the request the proxy asks about.
#[derive(Debug)]
struct Original {
    via: Via,
    https: bool,
    /// As the client sent it (with port, if any).
    authority: String,
    path: NormalPath,
    query: Option<String>,
    method: Method,
}

impl Original {
    /// The URL a browser returns to after signing in.
    fn url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        let target = match &self.query {
            Some(q) => format!("{}?{q}", self.path.as_str()),
            None => self.path.as_str().to_owned(),
        };
        format!(
            "{scheme}://{}{}",
            self.authority,
            return_url::bounded(target)
        )
    }
}

/// What the forward-auth endpoint decided, for metrics and the access log.
pub(crate) struct Decision {
    pub(crate) app: Option<Arc<App>>,
    pub(crate) user: Option<Arc<str>>,
    pub(crate) response: Response<BoxBody>,
}

/// Answers one auth request. `below` is the raw path after `authPath`
/// (empty, or starting with `/`).
pub(crate) async fn decide<B>(
    gw: &Gateway,
    rt: &Runtime,
    req: &Request<B>,
    own_authority: &str,
    below: &str,
    view: &ClientView,
) -> Decision {
    let pinned = pinned_app(req.uri().query());
    let mut decision = match originals(req, own_authority, below, view) {
        Ok(_) if rt.owned.any_respelled(req.headers()) => Decision {
            app: None,
            user: None,
            // Traefik, Caddy and Envoy replace the exact name only: a
            // client's `X_Auth_Request_User` would reach the app beside
            // ours (CGI and PHP read both as HTTP_X_AUTH_REQUEST_USER).
            response: refusal(
                StatusCode::FORBIDDEN,
                "the request carries another spelling of an identity header",
            ),
        },
        Ok(candidates) => decide_for(gw, rt, req.headers(), &candidates, pinned.as_deref()).await,
        Err(e) => Decision {
            app: None,
            user: None,
            response: refusal(StatusCode::BAD_REQUEST, e),
        },
    };
    let h = decision.response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    decision
}

async fn decide_for(
    gw: &Gateway,
    rt: &Runtime,
    headers: &HeaderMap,
    candidates: &[Original],
    pinned: Option<&str>,
) -> Decision {
    let deny = |app: Option<Arc<App>>, why: &str| Decision {
        app,
        user: None,
        response: refusal(StatusCode::FORBIDDEN, why),
    };
    let Some(primary) = candidates.first() else {
        return deny(
            None,
            "the auth request does not describe the original request",
        );
    };
    let host = authority::host(&primary.authority);
    let Some(app) = rt.router.find(&host, &primary.path).cloned() else {
        return deny(None, "no app is configured for this URL");
    };
    // `authPath?orchestrator-app=NAME` (the chart's auth-url): the ingress
    // knows which app it is protecting; a request described as another's is
    // refused (nginx picks its server by the request line, while
    // X-Original-URL carries the Host header).
    if pinned.is_some_and(|name| name != &*app.name) {
        return deny(
            Some(app),
            "the original request belongs to another app than the auth URL names",
        );
    }
    for other in &candidates[1..] {
        let same = authority::host(&other.authority) == host
            && rt
                .router
                .find(&host, &other.path)
                .is_some_and(|a| Arc::ptr_eq(a, &app));
        if !same {
            tracing::info!(app = %app.name, "forward auth: the original request is described in conflicting ways");
            return deny(
                Some(app),
                "the original request is described in conflicting ways",
            );
        }
    }
    let public = candidates
        .iter()
        .all(|c| app.public_paths.iter().any(|p| c.path.is_under(p)));
    if public {
        let response = allowed(&app, None);
        return Decision {
            app: Some(app),
            user: None,
            response,
        };
    }
    match identify(gw, rt, headers, &app, primary).await {
        Ok(Some((identity, logout_token))) => {
            let user = Some(identity.subject.clone());
            if !identity.allowed {
                app.metrics.denials.inc();
            }
            let response = match (identity.allowed, logout_token) {
                (true, _) => allowed(&app, Some(&identity)),
                // The access-denied page: proxies that pass the body show it
                // on the app's host, where `loginPath` and `logoutPath` are
                // routed to us.
                (false, Some(token)) => {
                    phases::access_denied(gw, rt, &app, &primary.url(), &identity, &token)
                }
                // A bearer token's identity: an API client, no page.
                (false, None) => rescue::token_forbidden(),
            };
            Decision {
                app: Some(app),
                user,
                response,
            }
        }
        Ok(None) => {
            let response = sign_in(rt, headers, &app, primary);
            Decision {
                app: Some(app),
                user: None,
                response,
            }
        }
        Err(e) => Decision {
            app: Some(app),
            user: None,
            response: rescue::respond(&gw.pages, &e),
        },
    }
}

/// The identity of the request for `app`: its bearer token when the app
/// takes them and one is sent, else its session. The logout token is the
/// session's (for the 403 page's sign-out button).
async fn identify(
    gw: &Gateway,
    rt: &Runtime,
    headers: &HeaderMap,
    app: &App,
    original: &Original,
) -> Result<Option<(Arc<Identity>, Option<String>)>, GatewayError> {
    if let Some(identity) = phases::bearer_identity(gw, rt, headers, app).await? {
        return Ok(Some((identity, None)));
    }
    let host = authority::host(&original.authority);
    Ok(
        phases::session_identity(gw, rt, headers, app, original.https, &host)
            .await?
            .map(|(id, identity)| (identity, Some(id.logout_token()))),
    )
}

/// The candidate descriptions of the original request, most trusted first.
fn originals<B>(
    req: &Request<B>,
    own_authority: &str,
    below: &str,
    view: &ClientView,
) -> Result<Vec<Original>, &'static str> {
    let headers = req.headers();
    let mut out = Vec::new();
    if view.via_trusted_proxy {
        if let Some(url) = single(headers, "x-original-url")? {
            let uri: Uri = url.parse().map_err(|_| "X-Original-URL is not a URL")?;
            let https = match uri.scheme_str() {
                Some("https") => true,
                Some("http") => false,
                _ => return Err("X-Original-URL must be an absolute http(s) URL"),
            };
            let authority = uri
                .authority()
                .ok_or("X-Original-URL has no host")?
                .to_string();
            out.push(Original {
                via: Via::OriginalUrl,
                https,
                authority,
                path: NormalPath::parse_as_sent(uri.path())
                    .map_err(|_| "X-Original-URL: invalid or non-normalised path")?,
                query: uri.query().map(str::to_owned),
                method: method(headers, "x-original-method")?.unwrap_or(Method::GET),
            });
        }
    }
    if !below.is_empty() {
        // The request's own Host: a client's X-Forwarded-Host passed along
        // by the proxy must not pick the app being judged.
        if view.via_trusted_proxy && authority::host(&view.host) != authority::host(own_authority) {
            return Err("X-Forwarded-Host names another host than the auth request's Host");
        }
        out.push(Original {
            via: Via::OwnRequest,
            https: view.proto == "https",
            authority: own_authority.to_owned(),
            path: NormalPath::parse_as_sent(below)
                .map_err(|_| "invalid or non-normalised path below the auth path")?,
            query: req.uri().query().map(str::to_owned),
            method: req.method().clone(),
        });
    }
    if view.via_trusted_proxy {
        if let Some(uri) = single(headers, "x-forwarded-uri")? {
            let (path, query) = match uri.split_once('?') {
                Some((p, q)) => (p, Some(q.to_owned())),
                None => (uri, None),
            };
            out.push(Original {
                via: Via::ForwardedHeaders,
                https: view.proto == "https",
                authority: view.host.clone(),
                path: NormalPath::parse_as_sent(path)
                    .map_err(|_| "X-Forwarded-Uri: invalid or non-normalised path")?,
                query,
                method: method(headers, "x-forwarded-method")?.unwrap_or(Method::GET),
            });
        }
    }
    // The authority ends up in a `Location`: one that hides another host
    // (`app.example@evil.example`) is no description of a request.
    if out
        .iter()
        .any(|o| o.authority.contains(['@', '/', '\\', ' ']) || o.authority.is_empty())
    {
        return Err("the original request's host is malformed");
    }
    if out.is_empty() {
        return Err(if view.via_trusted_proxy {
            "the auth request does not describe the original request: send X-Original-URL, \
             X-Forwarded-Uri, or the original path below the auth path"
        } else {
            "the auth request does not describe the original request (headers from a peer \
             outside listen.trustedProxies are ignored)"
        });
    }
    Ok(out)
}

/// The query parameter that pins the app an auth URL is for.
pub(crate) const PIN_PARAM: &str = "orchestrator-app";

fn pinned_app(query: Option<&str>) -> Option<String> {
    crate::lookups::query_param(query, PIN_PARAM)
}

/// The value of header `name` when it is sent once; twice is an error.
fn single<'h>(headers: &'h HeaderMap, name: &str) -> Result<Option<&'h str>, &'static str> {
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err("a header describing the original request is sent twice");
    }
    first
        .to_str()
        .map(|v| Some(v.trim()))
        .map_err(|_| "a header describing the original request is not text")
}

fn method(headers: &HeaderMap, name: &str) -> Result<Option<Method>, &'static str> {
    single(headers, name)?
        .map(|m| Method::from_bytes(m.as_bytes()).map_err(|_| "invalid original method"))
        .transpose()
}

/// 200 with the identity's headers. Every header the app is configured
/// with is sent, empty when the claim is absent (or the path is public):
/// Envoy adds what the answer carries but leaves a client's own copy of a
/// header the answer lacks, so an absent header would let a forged one in.
fn allowed(app: &App, identity: Option<&Identity>) -> Response<BoxBody> {
    let mut resp = Response::new(empty());
    let h = resp.headers_mut();
    let names = app
        .headers
        .iter()
        .map(|(n, _)| n)
        .chain(&app.assertion_header);
    for name in names {
        h.insert(name.clone(), HeaderValue::from_static(""));
    }
    if let Some(identity) = identity {
        for (name, value) in &identity.headers {
            h.insert(name.clone(), value.clone());
        }
    }
    resp
}

/// A short plain-text refusal (the proxy, not a person, reads most of them).
fn refusal(status: StatusCode, why: &str) -> Response<BoxBody> {
    let mut resp = Response::new(full(format!("{why}\n")));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// No identity: a browser's navigation behind a proxy that passes redirects
/// goes to `loginPath` on the app's own host; everything else gets 401.
fn sign_in(rt: &Runtime, headers: &HeaderMap, app: &App, original: &Original) -> Response<BoxBody> {
    let redirects = original.via != Via::OriginalUrl;
    if redirects && !phases::looks_like_api(&original.method, headers) {
        let rd: String = form_urlencoded::byte_serialize(original.url().as_bytes()).collect();
        let scheme = if original.https { "https" } else { "http" };
        let location = format!("{scheme}://{}{}?rd={rd}", original.authority, rt.login_path);
        if let Ok(resp) = rescue::redirect(StatusCode::FOUND, &location) {
            return resp;
        }
    }
    let mut resp = refusal(StatusCode::UNAUTHORIZED, "sign-in required");
    if app.bearer.is_some() {
        resp.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    resp
}
