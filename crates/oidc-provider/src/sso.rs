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
    // Sign-in times are whole seconds: one in the second of a revocation
    // counts as after it (the revocation ends what signed in up to then).
    let mut auth_time = tokens::now();
    if let Some(at) = p.store.user_revoked_at(&username).await? {
        auth_time = auth_time.max(at.saturating_add(1));
    }
    let session = SsoSession {
        sid: random_id(),
        username,
        auth_time,
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

/// True when the SSO session `sid` of `username` (signed in at
/// `auth_time`) has ended: logged out, past `ssoSessionTtl`, or revoked
/// by an operator.
pub(crate) async fn session_over(
    p: &Provider,
    sid: &str,
    username: &str,
    auth_time: u64,
) -> Result<bool, OAuthError> {
    if auth_time.saturating_add(p.sso_ttl.as_secs()) <= tokens::now() {
        return Ok(true);
    }
    Ok(p.store.session_ended(sid).await? || revoked(p, username, auth_time).await?)
}

/// True when refresh token `rec` of `client` may no longer be used: an
/// operator revoked its user, or its SSO session ended (logout or expiry)
/// and it is not an offline grant. Only a client the operator allowed
/// `offline_access` by name keeps it: with the default scope set any
/// client could ask for it, and there is no consent step.
pub(crate) async fn refresh_ended(
    p: &Provider,
    rec: &crate::store::RefreshRecord,
    client: &crate::clients::Client,
) -> Result<bool, OAuthError> {
    let offline = rec.scope.split(' ').any(|s| s == "offline_access")
        && client.allowed_scopes.iter().any(|s| s == "offline_access");
    // An operator's revocation ends offline grants too.
    Ok(revoked(p, &rec.username, rec.auth_time).await?
        || (!offline && session_over(p, &rec.sid, &rec.username, rec.auth_time).await?))
}

/// True when an operator revoked the sessions of `username` after a
/// sign-in at `auth_time` (see [`Provider::revoke_user`]).
pub(crate) async fn revoked(
    p: &Provider,
    username: &str,
    auth_time: u64,
) -> Result<bool, OAuthError> {
    Ok(p.store
        .user_revoked_at(username)
        .await?
        .is_some_and(|at| auth_time <= at))
}

impl Provider {
    /// Ends every SSO session of `username` and what they issued (codes,
    /// refresh tokens, offline ones included), and sends each client that
    /// takes back-channel logout tokens one naming the user (`sub`, no
    /// `sid`). `false` when there is no such user. For operators (the admin
    /// API): a compromised account, a leaver.
    pub async fn revoke_user(&self, username: &str) -> Result<bool, OAuthError> {
        if self.user(username).await?.is_none() {
            return Ok(false);
        }
        let ttl = self
            .ttls
            .refresh_token_ttl
            .max(self.ttls.authorization_code_ttl)
            .max(self.sso_ttl);
        self.store
            .mark_user_revoked(username, &SessionEnded { at: tokens::now() }, ttl)
            .await?;
        tracing::info!(user = %username, "sessions revoked by an operator");
        crate::backchannel::notify_user(self, username).await?;
        Ok(true)
    }
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
    crate::backchannel::remember(p, session, &pending.client_id).await?;
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
