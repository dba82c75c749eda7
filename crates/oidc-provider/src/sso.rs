//! What a finished sign-in leads to, shared by the endpoints that finish
//! one: the authorization code for the client, sent to its redirect URI.

use http::Response;

use crate::BoxBody;
use crate::error::{ErrorCode, OAuthError};
use crate::respond;
use crate::state::Provider;
use crate::store::{CodeRecord, PendingAuthorization, SsoSession, random_token};
use crate::tokens;
use crate::web;

/// Issues a one-time code for `session` and sends it to the redirect URI.
pub(crate) async fn issue_code(
    p: &Provider,
    pending: &PendingAuthorization,
    session: &SsoSession,
) -> Result<Response<BoxBody>, OAuthError> {
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
