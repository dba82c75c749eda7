//! The UserInfo endpoint (OpenID Connect Core §5.3): a Bearer access token in,
//! the user's claims for the token's scopes out. Errors are RFC 6750 challenges.

use http::request::Parts;
use http::{Response, StatusCode, header};
use serde_json::Value;

use crate::BoxBody;
use crate::error::{ErrorCode, OAuthError};
use crate::respond;
use crate::state::Provider;

use crate::web;

pub(crate) async fn serve(p: &Provider, parts: &Parts) -> Response<BoxBody> {
    match userinfo(p, parts).await {
        Ok(body) => web::json(StatusCode::OK, &body),
        Err(e) => respond::bearer_response(&e),
    }
}

async fn userinfo(p: &Provider, parts: &Parts) -> Result<Value, OAuthError> {
    let token = bearer(parts)?;
    let claims = p.verify_access_token(token).await?;
    let scopes = claims.scope.split(' ');
    if !scopes.clone().any(|s| s == "openid") {
        return Err(OAuthError::new(
            ErrorCode::InsufficientScope,
            "openid scope required",
        ));
    }
    let user = match claims.username.as_deref() {
        Some(u) => p.user(u).await?,
        None => None,
    }
    .ok_or_else(|| OAuthError::invalid_token("token has no user"))?;
    let mut body = serde_json::Map::new();
    body.insert("sub".into(), Value::String(user.sub.clone()));
    for (k, v) in user.claims_for(scopes) {
        body.insert(k, v);
    }
    Ok(Value::Object(body))
}

/// The Bearer token of the request (RFC 6750 §2.1).
fn bearer(parts: &Parts) -> Result<&str, OAuthError> {
    let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
        return Err(OAuthError::invalid_request("no token"));
    };
    let value = value
        .to_str()
        .map_err(|_| OAuthError::invalid_request("malformed Authorization header"))?;
    match value.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(token.trim())
        }
        _ => Err(OAuthError::invalid_request(
            "Authorization must be a Bearer token",
        )),
    }
}
