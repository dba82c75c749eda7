//! RP-Initiated Logout 1.0: ends the SSO session and returns the user to a
//! registered `post_logout_redirect_uri` (with `state`), or shows a page.
//!
//! Only a request that proves it comes from the session's own relying party
//! logs out at once: an `id_token_hint` of this provider whose `sid` (or
//! `sub`) is the signed-in session's. Anything else (a bare GET, a link on
//! another site, another user's ID token) gets a confirmation page whose
//! POST carries a sealed token bound to the session (§6: the OP asks the
//! user whether to log out).

use http::request::Parts;
use http::{Response, StatusCode, header};

use crate::BoxBody;
use crate::error::OAuthError;
use crate::respond;

use crate::params::Params;
use crate::seal::{self, Kind};
use crate::state::{LOGIN_TTL, Provider, RequestCtx, SESSION_COOKIE};
use crate::store::SsoSession;
use crate::tokens::{self, Expect, IdClaims};
use crate::web;
use orchestrator_ui::{ConfirmView, SignedOutView};
use serde::{Deserialize, Serialize};

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
    // The confirmation form's POST (its `token` field): what the GET
    // validated, sealed.
    if parts.method == http::Method::POST {
        if let Some(token) = params.get("token") {
            return confirmed(p, parts, token, ctx).await;
        }
    }
    let hint: Option<IdClaims> = match params.get("id_token_hint") {
        Some(hint) => Some(
            tokens::verify(&p.keys, &p.issuer, hint, Expect::IdTokenHint).map_err(|_| {
                OAuthError::invalid_request(
                    "id_token_hint is not a valid ID token from this provider",
                )
            })?,
        ),
        None => None,
    };
    let hint_client = hint.as_ref().map(|h| h.aud.clone());
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

    let cookie = web::cookie(&parts.headers, SESSION_COOKIE);
    let session = match &cookie {
        Some(c) => p.store.session(c).await?,
        None => None,
    };
    if let Some(session) = &session {
        let user_sub = p.user(&session.username).await?.map(|u| u.sub.clone());
        let proven = hint.as_ref().is_some_and(|h| {
            h.sid.as_deref() == Some(session.sid.as_str())
                || (h.sid.is_none() && user_sub.as_deref() == Some(h.sub.as_str()))
        });
        if !proven {
            return ask(p, session, destination);
        }
    }
    finish(p, cookie, session, destination, ctx).await
}

/// What the confirmation form carries, sealed.
#[derive(Debug, Serialize, Deserialize)]
struct Confirmation {
    /// The session it logs out.
    sid: String,
    /// Where to go afterwards (validated when the form was shown).
    to: Option<String>,
}

/// The confirmation page: "Do you want to sign out?", posting a token bound
/// to this session.
fn ask(
    p: &Provider,
    session: &SsoSession,
    destination: Option<String>,
) -> Result<Response<BoxBody>, OAuthError> {
    let token = seal::seal_value(
        p.active_key(),
        Kind::LogoutConfirmation,
        &Confirmation {
            sid: session.sid.clone(),
            to: destination,
        },
        tokens::expiry(LOGIN_TTL),
    )?;
    let action = p.local_path("/end_session");
    let page = p.pages.render(&ConfirmView {
        title: "Sign out",
        message: "Do you want to sign out?",
        action: &action,
        token: &token,
        button: "Sign out",
    });
    Ok(web::html(StatusCode::OK, page))
}

/// The confirmation's POST: logs out the session it was shown for.
async fn confirmed(
    p: &Provider,
    parts: &Parts,
    token: &str,
    ctx: RequestCtx,
) -> Result<Response<BoxBody>, OAuthError> {
    let Some((confirmation, _)) =
        seal::open_value::<Confirmation>(&p.keys, Kind::LogoutConfirmation, token)
    else {
        return Err(OAuthError::invalid_request(
            "this sign-out confirmation has expired; start again",
        ));
    };
    let cookie = web::cookie(&parts.headers, SESSION_COOKIE);
    let session = match &cookie {
        Some(c) => p.store.session(c).await?,
        None => None,
    };
    // Bound to the session it was shown for: a confirmation taken from
    // another browser logs nobody else out.
    if session.as_ref().is_some_and(|s| s.sid != confirmation.sid) {
        return Err(OAuthError::invalid_request(
            "this sign-out confirmation is for another session",
        ));
    }
    finish(p, cookie, session, confirmation.to, ctx).await
}

/// Ends `session` (if any) and goes to `destination`, through the upstream's
/// logout for a user of an upstream.
async fn finish(
    p: &Provider,
    cookie: Option<String>,
    session: Option<SsoSession>,
    destination: Option<String>,
    ctx: RequestCtx,
) -> Result<Response<BoxBody>, OAuthError> {
    // A user of an upstream is logged out there too (RP-Initiated Logout
    // at the upstream, then back here, then to the client).
    let mut upstream_logout = None;
    if let Some(session) = &session {
        crate::sso::end_session(p, session).await?;
        if let Some(link) = &session.upstream {
            upstream_logout =
                crate::federation::upstream_logout(p, link, destination.as_deref()).await;
        }
    }
    if let Some(cookie) = &cookie {
        p.store.delete_session(cookie).await?;
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
