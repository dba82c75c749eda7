//! RP-Initiated Logout 1.0: ends the SSO session and returns the user to a
//! registered `post_logout_redirect_uri` (with `state`), or shows a page.

use http::request::Parts;
use http::{Response, StatusCode, header};

use crate::BoxBody;
use crate::error::OAuthError;
use crate::respond;

use crate::params::Params;
use crate::state::{Provider, RequestCtx, SESSION_COOKIE};
use crate::tokens::{self, Expect, IdClaims};
use crate::web;
use orchestrator_ui::SignedOutView;

pub(crate) async fn serve(
    p: &Provider,
    parts: &Parts,
    params: &Params,
    ctx: RequestCtx,
) -> Response<BoxBody> {
    match end_session(p, parts, params, ctx).await {
        Ok(resp) => resp,
        Err(e) => respond::page_response(&p.pages, &e),
    }
}

async fn end_session(
    p: &Provider,
    parts: &Parts,
    params: &Params,
    ctx: RequestCtx,
) -> Result<Response<BoxBody>, OAuthError> {
    // `state` goes back in the redirect: keep it small.
    params.check_echoed(&["state"])?;
    let hint_client = match params.get("id_token_hint") {
        Some(hint) => {
            let claims: IdClaims = tokens::verify(&p.keys, &p.issuer, hint, Expect::IdTokenHint)
                .map_err(|_| {
                    OAuthError::invalid_request(
                        "id_token_hint is not a valid ID token from this provider",
                    )
                })?;
            Some(claims.aud)
        }
        None => None,
    };
    let client_id = match (hint_client, params.get("client_id")) {
        (Some(a), Some(b)) if a != b => {
            return Err(OAuthError::invalid_request(
                "client_id does not match id_token_hint",
            ));
        }
        (Some(a), _) => Some(a),
        (None, b) => b.map(str::to_owned),
    };
    // Validate the destination before ending anything, so a bad request
    // does not log the user out and then strand them.
    let destination = match params.get("post_logout_redirect_uri") {
        None => None,
        Some(uri) => {
            let client = client_id
                .as_deref()
                .and_then(|id| p.clients.get(id))
                .ok_or_else(|| {
                    OAuthError::invalid_request(
                        "post_logout_redirect_uri needs id_token_hint or client_id",
                    )
                })?;
            if !client.has_post_logout_redirect_uri(uri) {
                return Err(OAuthError::invalid_request(
                    "post_logout_redirect_uri is not registered",
                ));
            }
            let mut pairs = Vec::new();
            if let Some(state) = params.get("state") {
                pairs.push(("state", state));
            }
            Some(if pairs.is_empty() {
                uri.to_owned()
            } else {
                web::append_query(uri, &pairs).unwrap_or_else(|| uri.to_owned())
            })
        }
    };

    // A user of an upstream is logged out there too (RP-Initiated Logout
    // at the upstream, then back here, then to the client).
    let mut upstream_logout = None;
    if let Some(cookie) = web::cookie(&parts.headers, SESSION_COOKIE) {
        if let Some(link) = p.store.session(&cookie).await?.and_then(|s| s.upstream) {
            upstream_logout =
                crate::federation::upstream_logout(p, &link, destination.as_deref()).await;
        }
        p.store.delete_session(&cookie).await?;
    }
    let mut resp = match (upstream_logout, destination) {
        (Some(upstream), _) => respond::redirect(&p.pages, &upstream),
        (None, Some(location)) => respond::redirect(&p.pages, &location),
        (None, None) => web::html(
            StatusCode::OK,
            p.pages.render(&SignedOutView {
                title: "Signed out",
                message: "You have been signed out.",
                continue_url: None,
            }),
        ),
    };
    if let Some(v) = web::set_cookie(SESSION_COOKIE, None, p.cookie_path(), ctx.tls, None) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    Ok(resp)
}
