//! Logging in through an upstream IdP: `/upstreams/{name}/start` (a button
//! of the sign-in page) and `/upstreams/{name}/callback` (the redirect URI
//! registered at the upstream).
//!
//! Nothing is stored before the user comes back authenticated: the pending
//! authorization, the PKCE verifier and the nonce travel sealed in a cookie
//! named after the upstream `state` (see [`crate::federation`]), so any
//! replica can take the callback and anonymous traffic cannot fill the
//! cache. The callback must come from the browser that started the login
//! (that cookie, and the CSRF cookie), the upstream must name itself (RFC
//! 9207 `iss`) when it says anything, and a state is claimed once.

use std::time::Duration;

use http::Response;
use http::header;
use http::request::Parts;
use subtle::ConstantTimeEq as _;

use crate::BoxBody;
use crate::error::{ErrorCode, OAuthError};
use crate::federation::{
    UpstreamState, begin, callback_uri, count, state_cookie, state_cookie_path, upstream_error,
};
use crate::params::Params;
use crate::respond;
use crate::seal::{self, Kind};
use crate::state::{CSRF_COOKIE, Provider, RequestCtx};
use crate::store::{FederatedUser, UpstreamLink};
use crate::tokens::now;
use crate::upstreams::{USERNAME_PREFIX, Upstream};
use crate::web;

/// `GET /upstreams/{name}/start?tx=…`: a button of the sign-in page.
pub(crate) async fn start(
    p: &Provider,
    parts: &Parts,
    params: &Params,
    ctx: RequestCtx,
    name: &str,
) -> Response<BoxBody> {
    let result = async {
        let upstream = p
            .upstreams
            .get(name)
            .ok_or_else(OAuthError::not_found)?
            .clone();
        let tx = params.require("tx")?;
        let Some(opened) = seal::open(&p.keys, tx) else {
            return Err(expired());
        };
        // The button is only on this browser's page: its CSRF cookie is the
        // transaction's.
        same_browser(parts, &opened.pending.csrf)?;
        begin(p, &upstream, opened.pending, ctx).await
    }
    .await;
    result.unwrap_or_else(|e| respond::page_response(&p.pages, &e))
}

/// `GET /upstreams/{name}/callback`: the upstream sent the browser back.
pub(crate) async fn callback(
    p: &Provider,
    parts: &Parts,
    params: &Params,
    ctx: RequestCtx,
    name: &str,
) -> Response<BoxBody> {
    // Until the state is ours and this browser's, errors are pages: there is
    // no client to send them to.
    let opened = match open_state(p, parts, params, name) {
        Ok(v) => v,
        Err(e) => {
            // Only configured names become label values: the path is the
            // client's to choose.
            if p.upstreams.get(name).is_some() {
                count(p, name, "invalid_state");
            }
            return respond::page_response(&p.pages, &e);
        }
    };
    let (state, expires_at, upstream) = opened;
    let pending = &state.p;
    let mut resp = match finish(p, parts, params, ctx, &upstream, &state, expires_at).await {
        Ok(resp) => resp,
        Err(e) => respond::redirect_response(
            &p.pages,
            &pending.redirect_uri,
            pending.state.as_deref(),
            &p.issuer,
            &e,
        ),
    };
    // The login's cookie has done its work, whatever the outcome.
    if let Some(v) = web::set_cookie(
        &state_cookie(&state.k),
        None,
        &state_cookie_path(p, name),
        ctx.tls,
        None,
    ) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}

type Opened = (UpstreamState, u64, std::sync::Arc<Upstream>);

fn open_state(
    p: &Provider,
    parts: &Parts,
    params: &Params,
    name: &str,
) -> Result<Opened, OAuthError> {
    let upstream = p
        .upstreams
        .get(name)
        .ok_or_else(OAuthError::not_found)?
        .clone();
    let handle = params
        .get("state")
        .filter(|h| h.len() <= 64)
        .ok_or_else(|| OAuthError::invalid_request("missing state"))?;
    // The sealed login is in this browser's cookie for the handle.
    let Some((state, expires_at)) =
        web::cookie(&parts.headers, &state_cookie(handle)).and_then(|sealed| {
            seal::open_value::<UpstreamState>(&p.keys, Kind::UpstreamState, &sealed)
        })
    else {
        return Err(expired());
    };
    if !bool::from(state.k.as_bytes().ct_eq(handle.as_bytes())) || state.u != name {
        return Err(OAuthError::invalid_request(
            "this answer is for another identity provider",
        ));
    }
    same_browser(parts, &state.p.csrf)?;
    // The seal proves we wrote it; the client may have changed since.
    if !p
        .clients
        .get(&state.p.client_id)
        .is_some_and(|c| c.has_redirect_uri(&state.p.redirect_uri))
    {
        return Err(expired());
    }
    Ok((state, expires_at, upstream))
}

async fn finish(
    p: &Provider,
    parts: &Parts,
    params: &Params,
    ctx: RequestCtx,
    upstream: &Upstream,
    state: &UpstreamState,
    expires_at: u64,
) -> Result<Response<BoxBody>, OAuthError> {
    let name = upstream.name.as_str();
    if let Some(err) = params.get("error") {
        count(p, name, "denied");
        tracing::info!(upstream = name, error = err, "upstream refused the sign-in");
        return Err(OAuthError::new(
            ErrorCode::AccessDenied,
            "the identity provider refused the sign-in",
        ));
    }
    // RFC 9207: an answer that names another issuer is a mix-up.
    if params
        .get("iss")
        .is_some_and(|iss| iss != upstream.idp.issuer())
    {
        count(p, name, "failure");
        return Err(OAuthError::new(
            ErrorCode::AccessDenied,
            "the sign-in answer came from another identity provider",
        ));
    }
    let code = params
        .get("code")
        .ok_or_else(|| OAuthError::invalid_request("the identity provider sent no code"))?;
    let result = upstream
        .idp
        .finish(code, &state.v, &state.n, &callback_uri(p, name))
        .await
        .map_err(|e| upstream_error(p, upstream, "callback", &e))?;
    let claims = result.claims();
    let Some(sub) = upstream.subject(&claims) else {
        count(p, name, "failure");
        return Err(OAuthError::new(
            ErrorCode::AccessDenied,
            "the identity provider did not say who the user is",
        ));
    };
    let mapped = upstream.map_claims(&claims);
    let username = format!("{USERNAME_PREFIX}{sub}");
    let user = FederatedUser {
        sub,
        upstream: name.to_owned(),
        claims: mapped,
    };
    p.store
        .put_federated_user(&username, &user, p.federated_user_ttl())
        .await?;
    // Once: a replayed callback (or a double submit) issues nothing more.
    let remaining = Duration::from_secs(expires_at.saturating_sub(now()));
    if !p.store.claim_login_tx(&state.k, remaining).await? {
        count(p, name, "replayed");
        return Err(expired());
    }
    let link = UpstreamLink {
        name: name.to_owned(),
        id_token: result.id_token.clone(),
        sid: claims
            .get("sid")
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned),
    };
    let (session, session_cookie) =
        crate::sso::start_session(p, &parts.headers, username, Some(link), ctx).await?;
    count(p, name, "success");
    tracing::info!(sid = %session.sid, upstream = name, "sign-in through an upstream");
    let mut resp = crate::sso::issue_code(p, &state.p, &session).await?;
    crate::sso::add_cookie(&mut resp, session_cookie);
    Ok(resp)
}

/// `GET /upstreams/{name}/logged-out`: back from the upstream's logout; on
/// to the client's post-logout redirect (sealed in `state`), or a page.
pub(crate) fn logged_out(p: &Provider, params: &Params) -> Response<BoxBody> {
    let destination = params
        .get("state")
        .and_then(|s| seal::open_value::<Option<String>>(&p.keys, Kind::UpstreamLogout, s))
        .and_then(|(d, _)| d);
    match destination {
        Some(location) => respond::redirect(&p.pages, &location),
        None => web::html(
            http::StatusCode::OK,
            p.pages.render(&orchestrator_ui::SignedOutView {
                title: "Signed out",
                message: "You have been signed out.",
                continue_url: None,
            }),
        ),
    }
}

/// The request carries the login's CSRF cookie: it comes from the browser
/// that started the login.
fn same_browser(parts: &Parts, csrf: &str) -> Result<(), OAuthError> {
    let cookie = web::cookie(&parts.headers, CSRF_COOKIE).unwrap_or_default();
    if bool::from(cookie.as_bytes().ct_eq(csrf.as_bytes())) {
        Ok(())
    } else {
        Err(OAuthError::invalid_request(
            "this sign-in was started in another browser; go back to the application",
        ))
    }
}

fn expired() -> OAuthError {
    OAuthError::invalid_request(
        "this sign-in request has expired; go back to the application and start again",
    )
}
