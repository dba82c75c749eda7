//! Token revocation (RFC 7009): a client revokes its own refresh token (the
//! whole family goes) or access token (its `jti` is listed until expiry).
//! Unknown, foreign or invalid tokens get the same 200: the answer must not
//! help anyone probe for tokens.

use http::Response;
use http::request::Parts;

use crate::BoxBody;
use crate::error::{self, OAuthError};
use crate::params::Params;
use crate::provider::Provider;
use crate::tokens::{self, AccessClaims, Expect};
use crate::web;

pub(crate) async fn serve(p: &Provider, parts: &Parts, params: &Params) -> Response<BoxBody> {
    match revoke(p, parts, params).await {
        Ok(()) => web::json(http::StatusCode::OK, &serde_json::json!({})),
        Err(e) => error::json_response(&e),
    }
}

async fn revoke(p: &Provider, parts: &Parts, params: &Params) -> Result<(), OAuthError> {
    let client = p.clients.authenticate(&parts.headers, params)?;
    let token = params.require("token")?;
    if token.bytes().filter(|b| *b == b'.').count() == 2 {
        // Signature and issuer must check out; expiry does not matter (an
        // expired token needs no revoking, and listing it is harmless).
        if let Ok(claims) =
            tokens::verify::<AccessClaims>(&p.keys, &p.issuer, token, Expect::Access)
        {
            if claims.client_id == client.id {
                p.store.revoke_jti(&claims.jti, claims.exp).await?;
            }
        }
        return Ok(());
    }
    if let Some(rec) = p.store.refresh(token).await? {
        if rec.client_id == client.id {
            p.store.revoke_family(&rec.family_id).await?;
            p.store.delete_refresh(token).await?;
        }
    }
    Ok(())
}
