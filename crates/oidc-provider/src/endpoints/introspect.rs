//! Token introspection (RFC 7662) for confidential clients only: a client
//! learns about its own tokens and those of the clients it is configured as a
//! resource server for (`introspectionAllowed`); any other token, and any
//! token that is not live (grant gone, client no longer configured), is simply
//! `{"active": false}` (§2.1: the answer must not help anyone probe).
//! The user name is never disclosed; `sub` identifies the user.

use http::Response;
use http::request::Parts;
use serde_json::{Value, json};

use crate::BoxBody;
use crate::error::{ErrorCode, OAuthError};
use crate::params::Params;
use crate::respond;
use crate::state::Provider;
use crate::tokens::now;
use crate::web;

pub(crate) async fn serve(p: &Provider, parts: &Parts, params: &Params) -> Response<BoxBody> {
    match introspect(p, parts, params).await {
        Ok(body) => web::json(http::StatusCode::OK, &body),
        Err(e) => respond::json_response(&e),
    }
}

async fn introspect(p: &Provider, parts: &Parts, params: &Params) -> Result<Value, OAuthError> {
    let caller = p.clients.authenticate(&parts.headers, params)?;
    // A public client proves nothing by sending its id: anyone could call
    // as it, so it may not introspect at all.
    if caller.is_public() {
        return Err(OAuthError::invalid_client());
    }
    let token = params.require("token")?;
    // A JWT has two dots; our refresh tokens are base64url without any.
    if token.bytes().filter(|b| *b == b'.').count() == 2 {
        return match p.verify_access_token(token).await {
            Ok(c) if !caller.may_introspect(&c.client_id) => Ok(inactive()),
            Ok(c) => Ok(json!({
                    "active": true,
                    "token_type": "Bearer",
                    "iss": c.iss,
                    "sub": c.sub,
                    "aud": c.aud,
                    "client_id": c.client_id,
                    "exp": c.exp,
                    "iat": c.iat,
                    "jti": c.jti,
                "scope": c.scope,
            })),
            Err(e) if e.code == ErrorCode::TemporarilyUnavailable => Err(e),
            Err(_) => Ok(inactive()),
        };
    }
    let Some(rec) = p.store.refresh(token).await? else {
        return Ok(inactive());
    };
    let Some(owner) = p.clients.get(&rec.client_id) else {
        return Ok(inactive());
    };
    if !caller.may_introspect(&rec.client_id)
        || rec.expires_at < now()
        || p.store.grant(&rec.family_id).await?.is_none()
        // What `/token` would refuse is not active.
        || crate::sso::refresh_ended(p, &rec, &owner).await?
    {
        return Ok(inactive());
    }
    let sub = p.user(&rec.username).await?.map(|u| u.sub.clone());
    let Some(sub) = sub else {
        return Ok(inactive());
    };
    Ok(json!({
        "active": true,
        "token_type": "refresh_token",
        "iss": p.issuer,
        "sub": sub,
        "client_id": rec.client_id,
        "scope": rec.scope,
        "exp": rec.expires_at,
    }))
}

fn inactive() -> Value {
    json!({ "active": false })
}
