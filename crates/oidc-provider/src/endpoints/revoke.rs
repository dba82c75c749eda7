//! Token revocation (RFC 7009): a client revokes its own refresh token or
//! access token; either way the whole grant goes (§2.1 allows it), so every
//! token of the grant stops working at once.
//! Unknown, foreign or invalid tokens get the same 200: the answer must not
//! help anyone probe for tokens.

use http::Response;
use http::request::Parts;

use crate::BoxBody;
use crate::error::OAuthError;
use crate::params::Params;
use crate::respond;
use crate::state::Provider;
use crate::tokens::{self, AccessClaims, Expect};
use crate::web;

pub(crate) async fn serve(p: &Provider, parts: &Parts, params: &Params) -> Response<BoxBody> {
    match revoke(p, parts, params).await {
        Ok(()) => web::json(http::StatusCode::OK, &serde_json::json!({})),
        Err(e) => respond::json_response(&e),
    }
}

async fn revoke(p: &Provider, parts: &Parts, params: &Params) -> Result<(), OAuthError> {
    let client = p.clients.authenticate(&parts.headers, params)?;
    let token = params.require("token")?;
    if token.bytes().filter(|b| *b == b'.').count() == 2 {
        // Signature and issuer must check out (an expired token needs no
        // revoking; its grant may still back a refresh token, which stays).
        if let Ok(claims) =
            tokens::verify::<AccessClaims>(&p.keys, &p.issuer, token, Expect::Access)
        {
            if let (true, Some(gid)) = (claims.client_id == client.id, claims.gid.as_deref()) {
                p.store.revoke_grant(gid).await?;
            }
        }
        return Ok(());
    }
    if let Some(rec) = p.store.refresh(token).await? {
        if rec.client_id == client.id {
            p.store.revoke_grant(&rec.family_id).await?;
            p.store.delete_refresh(token).await?;
        }
    }
    Ok(())
}
