//! What a finished sign-in leads to, shared by the endpoints that finish
//! one (the password form, an upstream's callback): a new SSO session and
//! its cookie, and the authorization code for the client, sent to its
//! redirect URI.

use http::Response;
use http::header::{self, HeaderMap, HeaderValue};

use crate::BoxBody;
use crate::error::{ErrorCode, OAuthError};
use crate::respond;
use crate::state::{Provider, RequestCtx, SESSION_COOKIE};
use crate::store::{
    CodeRecord, PendingAuthorization, SessionEnded, SsoSession, UpstreamLink, random_id,
    random_token,
};
use crate::tokens;
use crate::web;

/// A fresh SSO session for `username` (a new id at every sign-in: no
/// session fixation; the browser's old session, if any, ends), and the
/// `Set-Cookie` that hands it to the browser.
pub(crate) async fn start_session(
    p: &Provider,
    request_headers: &HeaderMap,
    username: String,
    upstream: Option<UpstreamLink>,
    ctx: RequestCtx,
) -> Result<(SsoSession, Option<HeaderValue>), OAuthError> {
    // A new sign-in in this browser ends the session it replaces, and what
    // that session issued (refresh tokens, notices to its clients).
    if let Some(old) = web::cookie(request_headers, SESSION_COOKIE) {
        if let Some(previous) = p.store.session(&old).await? {
            end_session(p, &previous).await?;
        }
        p.store.delete_session(&old).await?;
    }
    let cookie = random_token();
    let session = SsoSession {
        sid: random_id(),
        username,
        auth_time: tokens::now(),
        expires_at: tokens::expiry(p.sso_ttl),
        upstream,
    };
    p.store.put_session(&cookie, &session, p.sso_ttl).await?;
    let set_cookie = web::set_cookie(
        SESSION_COOKIE,
        Some(&cookie),
        p.cookie_path(),
        ctx.tls,
        Some(p.sso_ttl),
    );
    Ok((session, set_cookie))
}

/// Ends `session` for what it issued: its unredeemed codes and its refresh
/// tokens stop working (unless `offline_access` was granted), however many
/// replicas hold them; the marker lives as long as a refresh token can.
pub(crate) async fn end_session(p: &Provider, session: &SsoSession) -> Result<(), OAuthError> {
    let ttl = p
        .ttls
        .refresh_token_ttl
        .max(p.ttls.authorization_code_ttl)
        .max(p.sso_ttl);
    p.store
        .mark_session_ended(&session.sid, &SessionEnded { at: tokens::now() }, ttl)
        .await?;
    tracing::info!(sid = %session.sid, "sign-out");
    // The session is over whatever happens to the notices: a store error
    // here must not leave it half ended.
    if let Err(e) = crate::backchannel::notify(p, session).await {
        tracing::warn!(sid = %session.sid, error = %e.description, "back-channel logout notices not sent");
    }
    Ok(())
}

/// True when the SSO session `sid` (signed in at `auth_time`) has ended:
/// logged out, or past `ssoSessionTtl`.
pub(crate) async fn session_over(
    p: &Provider,
    sid: &str,
    auth_time: u64,
) -> Result<bool, OAuthError> {
    if auth_time.saturating_add(p.sso_ttl.as_secs()) <= tokens::now() {
        return Ok(true);
    }
    Ok(p.store.session_ended(sid).await?)
}

/// Appends `value` (when there is one) as a `Set-Cookie` of `resp`.
pub(crate) fn add_cookie(resp: &mut Response<BoxBody>, value: Option<HeaderValue>) {
    if let Some(v) = value {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// Issues a one-time code for `session` and sends it to the redirect URI.
pub(crate) async fn issue_code(
    p: &Provider,
    pending: &PendingAuthorization,
    session: &SsoSession,
) -> Result<Response<BoxBody>, OAuthError> {
    crate::backchannel::remember(p, &session.sid, &pending.client_id).await?;
    let code = random_token();
    let record = CodeRecord {
        client_id: pending.client_id.clone(),
        redirect_uri: pending.redirect_uri.clone(),
        username: session.username.clone(),
        scope: pending.scope.clone(),
        nonce: pending.nonce.clone(),
        code_challenge: pending.code_challenge.clone(),
        auth_time: session.auth_time,
        sid: session.sid.clone(),
        expires_at: tokens::expiry(p.ttls.authorization_code_ttl),
    };
    p.store
        .put_code(&code, &record, p.ttls.authorization_code_ttl)
        .await?;
    let mut pairs = vec![("code", code.as_str())];
    if let Some(state) = pending.state.as_deref() {
        pairs.push(("state", state));
    }
    pairs.push(("iss", p.issuer.as_str()));
    let location = web::append_query(&pending.redirect_uri, &pairs)
        .ok_or_else(|| OAuthError::new(ErrorCode::ServerError, "bad redirect_uri"))?;
    Ok(respond::redirect(&p.pages, &location))
}
