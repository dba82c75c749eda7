//! The request phases, in the order they run. Read this file top to bottom
//! to follow one request from the listener to the upstream and back.
//!
//! 1. **accept** — the host and what we believe about the client
//!    (`X-Forwarded-*` only from trusted proxies); first, since every later
//!    decision needs them.
//! 2. **route** — normalise the path (the path checked is the path
//!    forwarded), answer the gateway's own endpoints (JWKS, callback, logout,
//!    login), pick the app by host and longest prefix.
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
use subtle::ConstantTimeEq as _;

use crate::cookies::{cookie, removal, set_cookie};
use crate::error::GatewayError;
use crate::forward::ForwardError;
use crate::headers::{ClientView, cookie_value, remove_hop_by_hop, strip_cookies};
use crate::identity::Identity;
use crate::route::NormalPath;
use crate::session::{PendingLogin, Session, SessionId, binding_hash};
use crate::{App, Gateway, JWKS_PATH, Runtime, rescue, return_url};
use orchestrator_http::body::{BoxBody, empty, full};
use orchestrator_http::{ConnInfo, authority};

/// Who a request was served for, attached to the gateway's responses as an
/// extension so the listener's access log can name the app and the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestIdentity {
    /// The app that matched, if any.
    pub app: Option<Arc<str>>,
    /// The session's `sub`, when the request was authenticated.
    pub user: Option<Arc<str>>,
}

/// Runs every phase for one request and records its metrics.
pub(crate) async fn serve<B>(
    gw: &Gateway,
    rt: &Runtime,
    req: Request<B>,
    conn: ConnInfo,
) -> Response<BoxBody>
where
    B: http_body::Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let started = Instant::now();
    let mut app: Option<Arc<App>> = None;
    let mut user: Option<Arc<str>> = None;
    let mut resp = match pipeline(gw, rt, req, conn, &mut app, &mut user).await {
        Ok(resp) => resp,
        Err(e) => rescue::respond(&gw.pages, &e),
    };
    match &app {
        Some(a) => a.metrics.record(resp.status()),
        None => gw.metrics.record("none", resp.status()),
    }
    let label = app.as_ref().map_or("none", |a| &*a.name);
    tracing::debug!(app = label, status = resp.status().as_u16(), elapsed = ?started.elapsed(), "gateway request");
    // For the access log of whoever serves the listener; never sent to the client.
    resp.extensions_mut().insert(RequestIdentity {
        app: app.as_ref().map(|a| a.name.clone()),
        user,
    });
    resp
}

async fn pipeline<B>(
    gw: &Gateway,
    rt: &Runtime,
    mut req: Request<B>,
    conn: ConnInfo,
    app_out: &mut Option<Arc<App>>,
    user_out: &mut Option<Arc<str>>,
) -> Result<Response<BoxBody>, GatewayError>
where
    B: http_body::Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    // 1. accept
    let authority = request_authority(&req)?;
    let host = authority::host(&authority);
    let view = ClientView::new(req.headers(), &authority, conn, &rt.trusted);

    // 2. route
    let path = NormalPath::parse(req.uri().path())?;
    let query = req.uri().query().map(str::to_owned);
    let p = path.as_str();
    if p == JWKS_PATH {
        return Ok(jwks(rt));
    }
    if p == rt.callback_path {
        // Login and logout futures (IdP calls over HTTP) are large and rare:
        // boxed, they keep every proxied request's future small (it is moved
        // through each layer of the stack).
        return Box::pin(callback(gw, rt, req.headers(), query.as_deref(), &view)).await;
    }
    if p == rt.logout_path {
        return Box::pin(logout(gw, rt, req, &view)).await;
    }
    if p == rt.login_path {
        let rd = query_param(query.as_deref(), "rd").unwrap_or_else(|| "/".to_owned());
        // "Sign in as someone else": the IdP must ask for credentials even
        // though its session is still alive.
        let force = match query_param(query.as_deref(), "prompt").as_deref() {
            None => false,
            Some("login") => true,
            Some(_) => return Err(GatewayError::BadRequest("prompt may only be login")),
        };
        let return_to = return_url::bounded(return_url::validate(&rd, &view.host, |candidate| {
            rt.router.find(&host, candidate).is_some()
        })?);
        let target = NormalPath::parse(return_to.split('?').next().unwrap_or("/"))?;
        let app = rt
            .router
            .find(&host, &target)
            .ok_or(GatewayError::NoRoute)?
            .clone();
        *app_out = Some(app.clone());
        return Box::pin(start_login(
            gw,
            rt,
            &app,
            req.headers(),
            &view,
            return_to,
            force,
        ))
        .await;
    }
    let app = rt
        .router
        .find(&host, &path)
        .ok_or(GatewayError::NoRoute)?
        .clone();
    *app_out = Some(app.clone());

    // 3. strip identity headers; refuse upgrades other than WebSocket (an
    // h2c tunnel would carry requests no later phase ever sees)
    rt.owned.strip(req.headers_mut());
    let upgrade = upgrade_request(&req, &app)?;

    // 4. public path?
    let public = app.public_paths.iter().any(|prefix| path.is_under(prefix));

    // The request target as the upstream gets it, and as a return URL.
    let target = match &query {
        Some(q) => format!("{p}?{q}"),
        None => p.to_owned(),
    };

    // 5. authenticate
    let identity = if public {
        None
    } else {
        match authenticate(gw, rt, req.headers(), &app, &view).await? {
            Some(identity) => Some(identity),
            None => {
                if looks_like_api(&req) {
                    return Err(GatewayError::LoginRequired);
                }
                let return_to = return_url::bounded(target);
                return Box::pin(start_login(
                    gw,
                    rt,
                    &app,
                    req.headers(),
                    &view,
                    return_to,
                    false,
                ))
                .await;
            }
        }
    };

    // 6. authorize
    *user_out = identity.as_ref().map(|(_, i)| i.subject.clone());
    if let Some((id, denied)) = identity.as_ref().filter(|(_, i)| !i.allowed) {
        let rd: String =
            form_urlencoded::byte_serialize(return_url::bounded(target).as_bytes()).collect();
        return Ok(rescue::forbidden(
            &gw.pages,
            &rescue::Denied {
                app: &app.name,
                user: denied.denied_as.as_deref(),
                switch_url: &format!("{}?rd={rd}&prompt=login", rt.login_path),
                sign_out_action: &rt.logout_path,
                sign_out_token: &id.logout_token(),
            },
        ));
    }
    let identity = identity.map(|(_, i)| i);

    // 7. upstream_request_filter
    let inbound_upgrade = upgrade.is_some().then(|| hyper::upgrade::on(&mut req));
    let (parts, body) = req.into_parts();
    let mut headers = parts.headers;
    strip_cookies(&mut headers, &rt.cookies.all());
    remove_hop_by_hop(&mut headers, upgrade.is_some());
    view.apply(&mut headers);
    if let Some(identity) = &identity {
        for (name, value) in &identity.headers {
            headers.insert(name.clone(), value.clone());
        }
    }
    headers.insert(header::HOST, app.upstream.host_header());
    let path_and_query =
        PathAndQuery::try_from(target).map_err(|_| GatewayError::BadRequest("invalid query"))?;
    let uri = app
        .upstream
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
    let result = app.upstream.send(upstream_req, upgrade.is_some()).await;
    app.metrics.upstream(sent.elapsed());
    let mut resp = match result {
        Ok(resp) => resp,
        Err(ForwardError::Timeout) => {
            return Err(GatewayError::Timeout {
                app: app.name.to_string(),
            });
        }
        Err(ForwardError::Failed(e)) => {
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
                    if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await
                    {
                        tracing::debug!(app = %name, error = %e, "upgraded connection ended");
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
fn looks_like_api<B>(req: &Request<B>) -> bool {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return true;
    }
    if req
        .headers()
        .get("sec-fetch-mode")
        .is_some_and(|m| m.as_bytes() != b"navigate")
    {
        return true;
    }
    if req.headers().contains_key("x-requested-with") {
        return true;
    }
    req.headers()
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/json") && !v.contains("text/html"))
}

fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

// ---- 5. authenticate -------------------------------------------------------

/// The session's identity for `app`, or `None` when there is no usable session.
async fn authenticate(
    gw: &Gateway,
    rt: &Runtime,
    headers: &HeaderMap,
    app: &App,
    view: &ClientView,
) -> Result<Option<(SessionId, Arc<Identity>)>, GatewayError> {
    let Some((id, session)) = current_session(gw, rt, headers, view).await? else {
        return Ok(None);
    };
    // A session from another IdP proves nothing to this app.
    if *session.idp != *app.idp {
        return Ok(None);
    }
    Ok(gw.identities.get(rt, app, &id, &session).map(|i| (id, i)))
}

/// The session named by the request's session cookie, if it is live and was
/// made on this host. The cookie is host-only, so the same id on another host
/// was copied there (from a log, an upstream, a proxy) or planted: no session.
async fn current_session(
    gw: &Gateway,
    rt: &Runtime,
    headers: &HeaderMap,
    view: &ClientView,
) -> Result<Option<(SessionId, Arc<Session>)>, GatewayError> {
    let name = rt.cookies.session(view.proto == "https");
    let Some(id) = cookie_value(headers, name).and_then(|v| SessionId::parse(&v)) else {
        return Ok(None);
    };
    let Some(session) = gw.sessions.get(&id).await? else {
        return Ok(None);
    };
    if *session.host != *view.route_host {
        return Ok(None);
    }
    Ok(Some((id, session)))
}

fn redirect(status: StatusCode, location: &str) -> Result<Response<BoxBody>, GatewayError> {
    let mut resp = Response::new(empty());
    *resp.status_mut() = status;
    let v = HeaderValue::from_str(location)
        .map_err(|_| GatewayError::BadRequest("invalid redirect target"))?;
    resp.headers_mut().insert(header::LOCATION, v);
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

/// Stores a pending login and sends the browser to the IdP.
async fn start_login(
    gw: &Gateway,
    rt: &Runtime,
    app: &App,
    headers: &HeaderMap,
    view: &ClientView,
    return_to: String,
    force_login: bool,
) -> Result<Response<BoxBody>, GatewayError> {
    let idp = rt.idps.get(&app.idp).ok_or(GatewayError::IdpUnavailable {
        idp: app.idp.clone(),
    })?;
    if !gw
        .sessions
        .admit_login(view.client_ip, rt.max_pending_per_client)
    {
        return Err(GatewayError::TooManyLogins);
    }
    let https = view.proto == "https";
    let redirect_uri = format!("{}://{}{}", view.proto, view.host, rt.callback_path);
    let start = idp.start(&redirect_uri, force_login).await?;
    // One binding value per browser, reused while it lives, so logins
    // started in several tabs at once all complete.
    let binding = cookie_value(headers, rt.cookies.binding(https))
        .filter(|v| SessionId::parse(v).is_some())
        .unwrap_or_else(|| SessionId::random().expose());
    let pending = PendingLogin::new(
        idp.name().to_owned(),
        app.name.to_string(),
        return_to,
        start.pkce_verifier,
        start.nonce,
        binding_hash(&binding),
        redirect_uri,
    );
    gw.sessions
        .put_pending(&start.state, pending, rt.pending_ttl)
        .await?;
    let mut resp = redirect(StatusCode::FOUND, start.url.as_str())?;
    set_cookie(
        &mut resp,
        &cookie(rt.cookies.binding(https), binding, https, rt.pending_ttl),
    );
    Ok(resp)
}

/// The IdP sent the browser back: redeem the code, create a session.
async fn callback(
    gw: &Gateway,
    rt: &Runtime,
    headers: &HeaderMap,
    query: Option<&str>,
    view: &ClientView,
) -> Result<Response<BoxBody>, GatewayError> {
    let state = query_param(query, "state").ok_or(GatewayError::BadRequest("missing state"))?;
    let logins = &gw.metrics.logins;
    let Some(pending) = gw.sessions.take_pending(&state).await? else {
        logins.with_label_values(&["expired"]).inc();
        return Err(GatewayError::LoginFailed("unknown or expired state".into()));
    };
    // The callback must come from the browser that started the login.
    let https = view.proto == "https";
    let bound = cookie_value(headers, rt.cookies.binding(https))
        .map(|v| binding_hash(&v))
        .is_some_and(|h| bool::from(h.as_bytes().ct_eq(pending.binding.as_bytes())));
    if !bound {
        logins.with_label_values(&["failure"]).inc();
        return Err(GatewayError::LoginFailed(
            "login started in another browser".into(),
        ));
    }
    if let Some(err) = query_param(query, "error") {
        logins.with_label_values(&["denied"]).inc();
        return Err(GatewayError::LoginFailed(format!(
            "identity provider answered {err}"
        )));
    }
    let code = query_param(query, "code").ok_or(GatewayError::BadRequest("missing code"))?;
    let Some(idp) = rt.idps.get(&pending.idp) else {
        logins.with_label_values(&["failure"]).inc();
        return Err(GatewayError::LoginFailed(
            "identity provider no longer configured".into(),
        ));
    };
    // RFC 9207: when the IdP names itself in the response, it must be the one
    // this login was sent to (mix-up defence).
    if let Some(iss) = query_param(query, "iss") {
        if iss != idp.issuer() {
            logins.with_label_values(&["failure"]).inc();
            return Err(GatewayError::LoginFailed(
                "authorization response from another issuer".into(),
            ));
        }
    }
    let result = match idp
        .finish(
            &code,
            &pending.pkce_verifier,
            &pending.nonce,
            &pending.redirect_uri,
        )
        .await
    {
        Ok(r) => r,
        Err(e) => {
            logins.with_label_values(&["failure"]).inc();
            return Err(e);
        }
    };
    // A new id at every login, and the old one dropped: an id planted in the
    // browser before login never becomes an authenticated session.
    if let Some(old) =
        cookie_value(headers, rt.cookies.session(https)).and_then(|v| SessionId::parse(&v))
    {
        gw.sessions.remove(&old).await?;
    }
    let session = Session::new(
        idp.name_shared(),
        &view.route_host,
        &result.id_token,
        &result.extra,
    );
    let id = gw.sessions.create(session, &gw.metrics).await?;
    logins.with_label_values(&["success"]).inc();
    tracing::info!(app = %pending.app, idp = %pending.idp, client = %view.client_ip, "login");
    let mut resp = redirect(StatusCode::SEE_OTHER, &pending.return_to)?;
    set_cookie(
        &mut resp,
        &cookie(
            rt.cookies.session(https),
            id.expose(),
            https,
            rt.session_max_lifetime,
        ),
    );
    Ok(resp)
}

/// Largest sign-out form read (it holds one token).
const MAX_LOGOUT_FORM: usize = 4096;

/// Sign-out. A GET only shows a confirmation form, so a link or an image on
/// another site cannot end a session; the form's POST carries a token that
/// only the session's own pages know ([`SessionId::logout_token`]), ends
/// the session and continues to the IdP's end-session endpoint.
async fn logout<B>(
    gw: &Gateway,
    rt: &Runtime,
    req: Request<B>,
    view: &ClientView,
) -> Result<Response<BoxBody>, GatewayError>
where
    B: http_body::Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let https = view.proto == "https";
    let name = rt.cookies.session(https);
    let id = cookie_value(req.headers(), name).and_then(|v| SessionId::parse(&v));
    let method = req.method().clone();
    if method == Method::GET || method == Method::HEAD {
        return Ok(match id {
            Some(id)
                if current_session(gw, rt, req.headers(), view)
                    .await?
                    .is_some() =>
            {
                rescue::confirm_sign_out(&gw.pages, &rt.logout_path, &id.logout_token())
            }
            _ => rescue::signed_out(&gw.pages, "You are not signed in.", Some("/")),
        });
    }
    if method != Method::POST {
        let mut resp = rescue::method_not_allowed(&gw.pages);
        resp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD, POST"));
        return Ok(resp);
    }
    let Some(id) = id else {
        return Ok(rescue::signed_out(
            &gw.pages,
            "You are not signed in.",
            Some("/"),
        ));
    };
    let form = read_form(req.into_body()).await?;
    let token = form
        .iter()
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.as_str())
        .unwrap_or_default();
    if !bool::from(token.as_bytes().ct_eq(id.logout_token().as_bytes())) {
        return Err(GatewayError::LogoutUnconfirmed);
    }
    let session = gw.sessions.get(&id).await?;
    gw.sessions.remove(&id).await?;
    let mut target = None;
    if let Some(s) = &session {
        if let Some(idp) = rt.idps.get(&*s.idp) {
            let back = format!("{}://{}/", view.proto, view.host);
            target = idp.logout_url(&s.id_token(), &back).await;
        }
    }
    let mut resp = match target {
        Some(url) => redirect(StatusCode::SEE_OTHER, url.as_str())?,
        None => rescue::signed_out(&gw.pages, "You have been signed out.", Some("/")),
    };
    set_cookie(&mut resp, &removal(name, https));
    Ok(resp)
}

/// A small `application/x-www-form-urlencoded` body, read within
/// [`MAX_LOGOUT_FORM`] bytes.
async fn read_form<B>(body: B) -> Result<Vec<(String, String)>, GatewayError>
where
    B: http_body::Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let bytes = http_body_util::Limited::new(body, MAX_LOGOUT_FORM)
        .collect()
        .await
        .map_err(|_| GatewayError::BadRequest("sign-out form too large or unreadable"))?
        .to_bytes();
    Ok(form_urlencoded::parse(&bytes).into_owned().collect())
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
