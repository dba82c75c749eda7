//! The request phases, in the order they run. Read this file top to bottom
//! to follow one request from the listener to the upstream and back (one
//! file on purpose, see CONTRIBUTING.md; the handlers the phases call live
//! in modules of their own).
//!
//! 1. **accept** — the host and what we believe about the client
//!    (`X-Forwarded-*` only from trusted proxies); first, since every later
//!    decision needs them.
//! 2. **route** — normalise the path (the path checked is the path
//!    forwarded), answer the gateway's own endpoints (JWKS; the login start
//!    and the callback in [`crate::sign_in`]; sign-out in
//!    [`crate::sign_out`]), pick the app by host and longest prefix.
//! 3. **strip identity headers** — before anything can read them, so no
//!    client can forge an identity, on public paths too.
//! 4. **public path?** — skips 5 and 6.
//! 5. **authenticate** — the session cookie names a session, or a login starts
//!    (302 for browsers, 401 for API calls); the session's identity for this
//!    app (policy decision, header values, assertion) comes from
//!    [`crate::identity`], computed on the first request and then reused.
//! 6. **authorize** — the app's policy against the session's claims (403).
//! 7. **upstream_request_filter** — cookies, hop-by-hop, `X-Forwarded-*`,
//!    identity headers, assertion, upstream URI.
//! 8. **forward** — pooled client, timeouts; upgrades are tunnelled.
//! 9. **response_filter** — hop-by-hop removal.
//!
//! Errors from any phase go to [`crate::rescue`], the one place that turns
//! them into pages; metrics are recorded once, at the end of [`serve`].

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::uri::PathAndQuery;
use http::{Method, Request, Response, StatusCode, Version};
use http_body_util::BodyExt as _;
use hyper_util::rt::TokioIo;

use crate::error::GatewayError;
use crate::forward::{ForwardError, Upstream};
use crate::headers::{ClientView, remove_hop_by_hop, strip_cookies};
use crate::identity::Identity;
use crate::lookups::{current_session, query_param};
use crate::route::NormalPath;
use crate::session::SessionId;
use crate::sign_in::{callback, start_login};
use crate::sign_out::logout;
use crate::tunnels::TunnelWatch;
use crate::{
    App, Gateway, JWKS_PATH, Runtime, backchannel, bearer, forward_auth, rescue, return_url,
};
use orchestrator_http::body::{BoxBody, full};
use orchestrator_http::trace_context::{self, StringValue};
use orchestrator_http::upstream_conn::ConnUpstreams;
use orchestrator_http::{ConnInfo, RequestIdentity, authority};

/// What the phases made of one request: the response (or the error that
/// [`crate::rescue`] turns into one), and who it was served for.
struct Handled {
    app: Option<Arc<App>>,
    user: Option<Arc<str>>,
    /// The route that served it, when traces are on (it names the span).
    route: Option<StringValue>,
    result: Result<Response<BoxBody>, GatewayError>,
}

impl Handled {
    fn by(app: Option<Arc<App>>, result: Result<Response<BoxBody>, GatewayError>) -> Self {
        Self {
            app,
            user: None,
            route: None,
            result,
        }
    }

    /// The same, served by the route `route` makes (only made when traces
    /// are on).
    fn at(mut self, route: impl FnOnce() -> StringValue) -> Self {
        if trace_context::enabled() {
            self.route = Some(route());
        }
        self
    }
}

/// Runs every phase for one request and records its metrics; with who it
/// was served for.
pub(crate) async fn serve<B>(
    gw: &Gateway,
    rt: &Runtime,
    req: Request<B>,
    conn: ConnInfo,
) -> (Response<BoxBody>, RequestIdentity)
where
    B: http_body::Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let started = Instant::now();
    let Handled {
        app,
        user,
        route,
        result,
    } = pipeline(gw, rt, req, conn).await;
    let resp = result.unwrap_or_else(|e| rescue::respond(&gw.pages, &e));
    match &app {
        Some(a) => a.metrics.record(resp.status()),
        None => gw.metrics.record("none", resp.status()),
    }
    let label = app.as_ref().map_or("none", |a| &*a.name);
    tracing::debug!(app = label, status = resp.status().as_u16(), elapsed = ?started.elapsed(), "gateway request");
    let who = RequestIdentity {
        app: app.as_ref().map(|a| a.name.clone()),
        user,
        route,
    };
    (resp, who)
}

/// Phases 1 and 2, then the gateway's own endpoint or phases 3 to 9.
async fn pipeline<B>(gw: &Gateway, rt: &Runtime, req: Request<B>, conn: ConnInfo) -> Handled
where
    B: http_body::Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    // 1. accept
    let authority = match request_authority(&req) {
        Ok(a) => a,
        Err(e) => return Handled::by(None, Err(e)),
    };
    let host = authority::host(&authority);
    let view = ClientView::new(req.headers(), &authority, &conn, &rt.trusted);

    // 2. route. The auth endpoint is matched on the raw path: Envoy appends
    // the original path to it, and `authPath/../../admin` is a question
    // about `/admin`, not a request for it.
    if let Some(below) = below_prefix(req.uri().path(), &rt.auth_path) {
        let below = below.to_owned();
        let d = Box::pin(forward_auth::decide(
            gw, rt, &req, &authority, &below, &view,
        ))
        .await;
        return Handled {
            app: d.app,
            user: d.user,
            route: None,
            result: Ok(d.response),
        }
        .at(|| rt.auth_path.clone().into());
    }
    let path = match NormalPath::parse(req.uri().path()) {
        Ok(p) => p,
        Err(e) => return Handled::by(None, Err(e)),
    };
    let query = req.uri().query().map(str::to_owned);
    let p = path.as_str();
    // The gateway's own paths are their own routes.
    let own = || StringValue::from(p.to_owned());
    if p == JWKS_PATH {
        return Handled::by(None, Ok(jwks(rt))).at(own);
    }
    if p == rt.backchannel_logout_path {
        return Handled::by(None, Ok(Box::pin(backchannel::receive(gw, rt, req)).await)).at(own);
    }
    if p == rt.callback_path {
        // Login and logout futures (IdP calls over HTTP) are large and rare:
        // boxed, they keep every proxied request's future small (it is moved
        // through each layer of the stack).
        let result = Box::pin(callback(gw, rt, req.headers(), query.as_deref(), &view)).await;
        return Handled::by(None, result).at(own);
    }
    if p == rt.logout_path {
        return Handled::by(None, Box::pin(logout(gw, rt, req, &view)).await).at(own);
    }
    if p == rt.login_path {
        let handled = match login_target(rt, &host, query.as_deref(), &view) {
            Ok((app, return_to, force)) => {
                let result = Box::pin(start_login(
                    gw,
                    rt,
                    &app,
                    req.headers(),
                    &view,
                    return_to,
                    force,
                ))
                .await;
                Handled::by(Some(app), result)
            }
            Err(e) => Handled::by(None, Err(e)),
        };
        return handled.at(own);
    }
    let Some(app) = rt.router.find(&host, &path).cloned() else {
        return Handled::by(None, Err(GatewayError::NoRoute));
    };
    let route = trace_context::enabled().then(|| app.route.clone().into());
    let held = conn.upstreams.as_ref();
    let (user, result) = proxy(gw, rt, req, &app, (path, query), &view, held).await;
    Handled {
        app: Some(app),
        user,
        route,
        result,
    }
}

/// `path` below `prefix` (on a segment boundary): `""` for the prefix
/// itself, `/rest` for below it, `None` otherwise.
fn below_prefix<'p>(path: &'p str, prefix: &str) -> Option<&'p str> {
    let rest = path.strip_prefix(prefix)?;
    (rest.is_empty() || rest.starts_with('/')).then_some(rest)
}

/// The app, return URL and `prompt=login` of an explicit login start
/// (`loginPath?rd=…&prompt=login`).
fn login_target(
    rt: &Runtime,
    host: &str,
    query: Option<&str>,
    view: &ClientView,
) -> Result<(Arc<App>, String, bool), GatewayError> {
    let rd = query_param(query, "rd").unwrap_or_else(|| "/".to_owned());
    // "Sign in as someone else": the IdP must ask for credentials even
    // though its session is still alive.
    let force = match query_param(query, "prompt").as_deref() {
        None => false,
        Some("login") => true,
        Some(_) => return Err(GatewayError::BadRequest("prompt may only be login")),
    };
    let target = return_url::validate(&rd, &view.host, host, &rt.app_hosts, |h, candidate| {
        rt.router.find(h, candidate).is_some()
    })?;
    let app = rt
        .router
        .find(&target.host, &target.path)
        .ok_or(GatewayError::NoRoute)?
        .clone();
    Ok((app, return_url::bounded(target.location), force))
}

/// Phases 3 to 9 for a request to `app`; with the user it was served for.
async fn proxy<B>(
    gw: &Gateway,
    rt: &Runtime,
    mut req: Request<B>,
    app: &App,
    (path, query): (NormalPath, Option<String>),
    view: &ClientView,
    held: Option<&ConnUpstreams>,
) -> (Option<Arc<str>>, Result<Response<BoxBody>, GatewayError>)
where
    B: http_body::Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    // An app that the ingress proxies itself has nothing to forward to.
    let Some(upstream) = &app.upstream else {
        return (None, Err(GatewayError::NoRoute));
    };

    // 3. strip identity headers; refuse upgrades other than WebSocket (an
    // h2c tunnel would carry requests no later phase ever sees)
    rt.owned.strip(req.headers_mut());
    let upgrade = match upgrade_request(&req, app) {
        Ok(u) => u,
        Err(e) => return (None, Err(e)),
    };

    // 4. public path?
    let public = app.public_paths.iter().any(|prefix| path.is_under(prefix));

    // The request target as the upstream gets it, and as a return URL.
    let p = path.as_str();
    let target = match &query {
        Some(q) => format!("{p}?{q}"),
        None => p.to_owned(),
    };

    // 5. authenticate
    let identity = if public {
        None
    } else {
        match authenticate(gw, rt, req.headers(), app, view).await {
            Ok(Some(identity)) => Some(identity),
            Ok(None) => {
                if looks_like_api(req.method(), req.headers()) {
                    if app.bearer.is_some() {
                        return (None, Ok(rescue::token_required()));
                    }
                    return (None, Err(GatewayError::LoginRequired));
                }
                let return_to = return_url::bounded(target);
                let result = Box::pin(start_login(
                    gw,
                    rt,
                    app,
                    req.headers(),
                    view,
                    return_to,
                    false,
                ))
                .await;
                return (None, result);
            }
            Err(e) => return (None, Err(e)),
        }
    };

    // 6. authorize
    let user = identity.as_ref().map(|(_, i)| i.subject.clone());
    if let Some((session, denied)) = identity.as_ref().filter(|(_, i)| !i.allowed) {
        app.metrics.denials.inc();
        let Some(session) = session else {
            return (user, Ok(rescue::token_forbidden()));
        };
        let token = session.logout_token();
        let page = access_denied(gw, rt, app, &return_url::bounded(target), denied, &token);
        return (user, Ok(page));
    }
    // A tunnel lives as long as its session (and its user's admission).
    let watch = upgrade
        .is_some()
        .then(|| identity.as_ref().and_then(|(session, _)| *session))
        .flatten()
        .map(|id| TunnelWatch::new(gw, id, &view.route_host, path));
    let identity = identity.map(|(_, i)| i);
    // Boxed: every future around this one would otherwise hold (and copy,
    // as it is moved into place) the forward's kilobytes too.
    let result = Box::pin(forward(
        rt,
        req,
        app,
        upstream,
        identity.as_deref(),
        target,
        (upgrade, watch),
        view,
        held,
    ))
    .await;
    (user, result)
}

/// Phases 7 to 9: the upstream request, the forward, the response.
#[allow(clippy::too_many_arguments)]
async fn forward<B>(
    rt: &Runtime,
    mut req: Request<B>,
    app: &App,
    upstream: &Upstream,
    identity: Option<&Identity>,
    target: String,
    (upgrade, watch): (Option<String>, Option<TunnelWatch>),
    view: &ClientView,
    held: Option<&ConnUpstreams>,
) -> Result<Response<BoxBody>, GatewayError>
where
    B: http_body::Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    // 7. upstream_request_filter
    let inbound_upgrade = upgrade.is_some().then(|| hyper::upgrade::on(&mut req));
    let (parts, body) = req.into_parts();
    let mut headers = parts.headers;
    strip_cookies(&mut headers, &rt.cookies.all());
    remove_hop_by_hop(&mut headers, upgrade.is_some());
    view.apply(&mut headers);
    if let Some(identity) = identity {
        for (name, value) in &identity.headers {
            headers.insert(name.clone(), value.clone());
        }
    }
    headers.insert(header::HOST, upstream.host_header());
    let path_and_query =
        PathAndQuery::try_from(target).map_err(|_| GatewayError::BadRequest("invalid query"))?;
    let uri = upstream
        .uri(path_and_query)
        .map_err(|_| GatewayError::BadRequest("invalid request target"))?;
    let mut upstream_req = Request::new(body.map_err(Into::into).boxed());
    *upstream_req.method_mut() = parts.method;
    *upstream_req.uri_mut() = uri;
    // The client picks HTTP/2 per connection from ALPN; the request starts as 1.1.
    *upstream_req.version_mut() = Version::HTTP_11;
    *upstream_req.headers_mut() = headers;

    // 8. forward
    let sent = Instant::now();
    let result = upstream.send(upstream_req, upgrade.is_some(), held).await;
    app.metrics.upstream(sent.elapsed());
    let mut resp = match result {
        Ok(resp) => resp,
        Err(ForwardError::Timeout) => {
            app.metrics.upstream_timeouts.inc();
            return Err(GatewayError::Timeout {
                app: app.name.to_string(),
            });
        }
        Err(ForwardError::Failed(e)) => {
            app.metrics.upstream_connect_errors.inc();
            tracing::warn!(app = %app.name, error = %e, "upstream request failed");
            return Err(GatewayError::Upstream {
                app: app.name.to_string(),
            });
        }
    };
    // 9. response_filter
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        // Tunnel only the protocol that was asked for and allowed: a 101 to
        // anything else would turn the connection into an unchecked pipe.
        let (Some(inbound), Some(asked)) = (inbound_upgrade, upgrade.as_deref()) else {
            return Err(GatewayError::Upstream {
                app: app.name.to_string(),
            });
        };
        let echoed = upgrade_token(resp.headers()).ok().flatten();
        if echoed.as_deref() != Some(asked) {
            tracing::warn!(app = %app.name, "upstream switched to another protocol than asked");
            return Err(GatewayError::Upstream {
                app: app.name.to_string(),
            });
        }
        let outbound = hyper::upgrade::on(&mut resp);
        let name = app.name.clone();
        tokio::spawn(async move {
            match tokio::try_join!(inbound, outbound) {
                Ok((client, upstream)) => {
                    let mut client = TokioIo::new(client);
                    let mut upstream = TokioIo::new(upstream);
                    let copied = tokio::io::copy_bidirectional(&mut client, &mut upstream);
                    let ended = async {
                        match watch {
                            Some(w) => w.ended().await,
                            None => std::future::pending().await,
                        }
                    };
                    tokio::select! {
                        result = copied => if let Err(e) = result {
                            tracing::debug!(app = %name, error = %e, "upgraded connection ended");
                        },
                        () = ended => {
                            tracing::info!(app = %name, "upgraded connection closed: its session ended");
                        }
                    }
                }
                Err(e) => tracing::debug!(app = %name, error = %e, "upgrade failed"),
            }
        });
        remove_hop_by_hop(resp.headers_mut(), true);
    } else {
        remove_hop_by_hop(resp.headers_mut(), false);
    }
    Ok(resp.map(|b| b.map_err(Into::into).boxed()))
}

/// The authority the client asked for: `:authority` / absolute-form first, then `Host`.
fn request_authority<B>(req: &Request<B>) -> Result<String, GatewayError> {
    authority::of_request(req)
        .map(str::to_owned)
        .ok_or(GatewayError::BadRequest("missing or invalid Host"))
}

/// The protocol an HTTP/1.1 request asks to upgrade to, if the gateway will
/// tunnel it: `websocket` (a GET with `Sec-WebSocket-Key` and
/// `-Version`, RFC 6455 §4.1) or a token the app lists in `allowUpgrades`.
/// Anything else that asks for an upgrade is refused (400), `h2c` always:
/// after a 101 the upstream would read HTTP/2 requests the gateway never
/// checked. Without `Connection: upgrade` there is no upgrade, and `Upgrade`
/// is dropped with the other hop-by-hop headers.
fn upgrade_request<B>(req: &Request<B>, app: &App) -> Result<Option<String>, GatewayError> {
    let headers = req.headers();
    let asks = req.version() == Version::HTTP_11
        && headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .flat_map(|v| v.as_bytes().split(|b| *b == b','))
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"upgrade"));
    if !asks {
        return Ok(None);
    }
    let token = upgrade_token(headers)?.ok_or(GatewayError::BadRequest("empty Upgrade"))?;
    if token == "websocket" {
        let handshake = req.method() == Method::GET
            && headers.contains_key(header::SEC_WEBSOCKET_KEY)
            && headers.contains_key(header::SEC_WEBSOCKET_VERSION);
        if !handshake {
            return Err(GatewayError::BadRequest(
                "a WebSocket upgrade needs GET, Sec-WebSocket-Key and Sec-WebSocket-Version",
            ));
        }
        return Ok(Some(token));
    }
    if token != "h2c" && app.allow_upgrades.contains(&token) {
        return Ok(Some(token));
    }
    Err(GatewayError::BadRequest(
        "this upgrade is not allowed (only WebSocket is tunnelled)",
    ))
}

/// The one protocol named by the `Upgrade` field(s), lower-cased; more than
/// one is refused, as is a value that is not text.
fn upgrade_token(headers: &HeaderMap) -> Result<Option<String>, GatewayError> {
    let mut found: Option<String> = None;
    for value in headers.get_all(header::UPGRADE) {
        let value = value
            .to_str()
            .map_err(|_| GatewayError::BadRequest("malformed Upgrade"))?;
        for t in value.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            if found.is_some() {
                return Err(GatewayError::BadRequest("more than one Upgrade protocol"));
            }
            found = Some(t.to_ascii_lowercase());
        }
    }
    Ok(found)
}

/// API clients cannot follow a login redirect; they get 401 instead. A
/// non-GET would lose its body through the login round trip, so it counts too.
/// So does a browser request that is not a navigation (`Sec-Fetch-Mode`
/// `cors`, `no-cors`, `websocket`…: a script's `fetch`, an image): it could
/// not show the login page, and every poll of an open page would start (and
/// store) another login, using up the client's `maxPendingLoginsPerClient`.
pub(crate) fn looks_like_api(method: &Method, headers: &HeaderMap) -> bool {
    if method != Method::GET && method != Method::HEAD {
        return true;
    }
    if headers
        .get("sec-fetch-mode")
        .is_some_and(|m| m.as_bytes() != b"navigate")
    {
        return true;
    }
    if headers.contains_key("x-requested-with") {
        return true;
    }
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/json") && !v.contains("text/html"))
}

// ---- 5. authenticate -------------------------------------------------------

/// The 403 page for a signed-in user the policy of `app` refuses: who is
/// signed in, "sign in as someone else" (back to `return_to`) and "sign out".
pub(crate) fn access_denied(
    gw: &Gateway,
    rt: &Runtime,
    app: &App,
    return_to: &str,
    identity: &Identity,
    logout_token: &str,
) -> Response<BoxBody> {
    let rd: String = form_urlencoded::byte_serialize(return_to.as_bytes()).collect();
    rescue::forbidden(
        &gw.pages,
        &rescue::Denied {
            app: &app.name,
            user: identity.denied_as.as_deref(),
            switch_url: &format!("{}?rd={rd}&prompt=login", rt.login_path),
            sign_out_action: &rt.logout_path,
            sign_out_token: logout_token,
        },
    )
}

/// The request's identity for `app`: its bearer token when the app takes
/// them and one is sent (no logout token then), else its session's (with
/// the session's id); `None` when it has neither.
async fn authenticate(
    gw: &Gateway,
    rt: &Runtime,
    headers: &HeaderMap,
    app: &App,
    view: &ClientView,
) -> Result<Option<(Option<SessionId>, Arc<Identity>)>, GatewayError> {
    if let Some(identity) = bearer_identity(gw, rt, headers, app).await? {
        return Ok(Some((None, identity)));
    }
    Ok(session_identity(
        gw,
        rt,
        headers,
        app,
        view.proto == "https",
        &view.route_host,
    )
    .await?
    .map(|(id, identity)| (Some(id), identity)))
}

/// The identity of the bearer token sent to `app`, when the app takes them
/// and the request has one; an invalid token is an error (401), never a
/// fallback to the session or a login.
pub(crate) async fn bearer_identity(
    gw: &Gateway,
    rt: &Runtime,
    headers: &HeaderMap,
    app: &App,
) -> Result<Option<Arc<Identity>>, GatewayError> {
    let Some(check) = &app.bearer else {
        return Ok(None);
    };
    let Some(token) = bearer::presented(headers)? else {
        return Ok(None);
    };
    let idp = rt.idps.get(&app.idp).ok_or(GatewayError::IdpUnavailable {
        idp: app.idp.clone(),
    })?;
    // Boxed: the key fetch and introspection futures are large, and inline
    // they would enlarge every proxied request's future.
    let claims = Box::pin(bearer::verify(idp, check, &gw.introspections, token)).await?;
    Ok(Some(Arc::new(Identity::for_claims(rt, app, &claims))))
}

/// The identity for `app` of the session the request's cookie names, if
/// it is live, was made on `host` (over `https` or not) and through the
/// app's IdP.
pub(crate) async fn session_identity(
    gw: &Gateway,
    rt: &Runtime,
    headers: &HeaderMap,
    app: &App,
    https: bool,
    host: &str,
) -> Result<Option<(SessionId, Arc<Identity>)>, GatewayError> {
    let Some((id, session)) = current_session(gw, rt, headers, https, host).await? else {
        return Ok(None);
    };
    // A session from another IdP proves nothing to this app.
    if *session.idp != *app.idp {
        return Ok(None);
    }
    Ok(gw.identities.get(rt, app, &id, &session).map(|i| (id, i)))
}

fn jwks(rt: &Runtime) -> Response<BoxBody> {
    let body = rt
        .signer
        .as_ref()
        .map_or_else(crate::assertion::empty_jwks, |s| s.jwks());
    let mut resp = Response::new(full(body));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/jwk-set+json"),
    );
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    resp
}
