//! The token endpoint (RFC 6749 §3.2, OpenID Connect Core §3.1.3).
//!
//! Client authentication comes first (nothing about a grant is revealed to a
//! stranger), then the grant:
//! - `authorization_code`: `take` the code (once, across replicas); a replay
//!   revokes what the first redemption issued (RFC 9700 §4.2.4); then client,
//!   redirect URI and PKCE must match what authorize stored;
//! - `refresh_token`: rotation; a spent token coming back revokes its family
//!   (RFC 9700 §4.14.2);
//! - `client_credentials`: an access token for the client itself.

use std::collections::BTreeMap;

use http::Response;
use http::request::Parts;
use orchestrator_config::GrantType;
use serde_json::{Value, json};

use crate::BoxBody;
use crate::clients::{Client, STANDARD_SCOPES};
use crate::error::{ErrorCode, OAuthError};
use crate::params::Params;
use crate::respond;
use crate::state::Provider;
use crate::store::{
    CodeRedeemed, GrantRecord, RefreshRecord, RefreshSpent, random_id, random_token,
};
use crate::tokens::{self, AccessClaims, IdClaims, now};
use crate::users::User;
use crate::web;

/// A parsed token request, tagged by `grant_type`.
enum TokenRequest<'a> {
    AuthorizationCode {
        code: &'a str,
        redirect_uri: Option<&'a str>,
        code_verifier: Option<&'a str>,
    },
    RefreshToken {
        refresh_token: &'a str,
        scope: Option<&'a str>,
    },
    ClientCredentials {
        scope: Option<&'a str>,
    },
}

impl<'a> TokenRequest<'a> {
    fn parse(params: &'a Params) -> Result<Self, OAuthError> {
        match params.require("grant_type")? {
            "authorization_code" => Ok(Self::AuthorizationCode {
                code: params.require("code")?,
                redirect_uri: params.get("redirect_uri"),
                code_verifier: params.get("code_verifier"),
            }),
            "refresh_token" => Ok(Self::RefreshToken {
                refresh_token: params.require("refresh_token")?,
                scope: params.get("scope"),
            }),
            "client_credentials" => Ok(Self::ClientCredentials {
                scope: params.get("scope"),
            }),
            _ => Err(OAuthError::new(
                ErrorCode::UnsupportedGrantType,
                "grant_type not supported",
            )),
        }
    }

    fn grant(&self) -> GrantType {
        match self {
            Self::AuthorizationCode { .. } => GrantType::AuthorizationCode,
            Self::RefreshToken { .. } => GrantType::RefreshToken,
            Self::ClientCredentials { .. } => GrantType::ClientCredentials,
        }
    }
}

pub(crate) async fn serve(p: &Provider, parts: &Parts, params: &Params) -> Response<BoxBody> {
    match exchange(p, parts, params).await {
        Ok(body) => web::json(http::StatusCode::OK, &body),
        Err(e) => {
            p.metrics
                .token_errors
                .with_label_values(&[e.code.as_str()])
                .inc();
            respond::json_response(&e)
        }
    }
}

async fn exchange(p: &Provider, parts: &Parts, params: &Params) -> Result<Value, OAuthError> {
    let client = p.clients.authenticate(&parts.headers, params)?;
    let request = TokenRequest::parse(params)?;
    let grant = request.grant();
    if !client.allows_grant(grant) {
        return Err(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            "grant_type not allowed for this client",
        ));
    }
    let body = match request {
        TokenRequest::AuthorizationCode {
            code,
            redirect_uri,
            code_verifier,
        } => authorization_code(p, &client, code, redirect_uri, code_verifier).await?,
        TokenRequest::RefreshToken {
            refresh_token,
            scope,
        } => refresh(p, &client, refresh_token, scope).await?,
        TokenRequest::ClientCredentials { scope } => client_credentials(p, &client, scope).await?,
    };
    let label = match grant {
        GrantType::AuthorizationCode => "authorization_code",
        GrantType::RefreshToken => "refresh_token",
        GrantType::ClientCredentials => "client_credentials",
    };
    p.metrics
        .tokens_issued
        .with_label_values(&[&client.id, label])
        .inc();
    Ok(body)
}

async fn authorization_code(
    p: &Provider,
    client: &Client,
    code: &str,
    redirect_uri: Option<&str>,
    code_verifier: Option<&str>,
) -> Result<Value, OAuthError> {
    let Some(rec) = p.store.take_code(code).await? else {
        if let Some(used) = p.store.code_redeemed(code).await? {
            // Someone holds a copy of a code that was already redeemed: the
            // tokens it bought may be in the wrong hands too.
            p.metrics
                .replays
                .with_label_values(&["authorization_code"])
                .inc();
            tracing::warn!(client_id = %client.id, "authorization code replayed; revoking its tokens");
            p.store.revoke_grant(&used.grant_id).await?;
            return Err(OAuthError::invalid_grant("authorization code already used"));
        }
        return Err(OAuthError::invalid_grant(
            "authorization code invalid or expired",
        ));
    };
    if rec.expires_at < now() {
        return Err(OAuthError::invalid_grant("authorization code expired"));
    }
    if rec.client_id != client.id {
        return Err(OAuthError::invalid_grant(
            "authorization code was issued to another client",
        ));
    }
    // No token is issued in a session that has ended since the code was.
    if crate::sso::session_over(p, &rec.sid, &rec.username, rec.auth_time).await? {
        return Err(OAuthError::invalid_grant("the sign-in session has ended"));
    }
    if redirect_uri != Some(rec.redirect_uri.as_str()) {
        return Err(OAuthError::invalid_grant(
            "redirect_uri does not match the authorization request",
        ));
    }
    match (&rec.code_challenge, code_verifier) {
        (Some(challenge), Some(verifier)) => {
            if !tokens::valid_verifier(verifier) || !tokens::pkce_matches(verifier, challenge) {
                return Err(OAuthError::invalid_grant("code_verifier does not match"));
            }
        }
        (Some(_), None) => return Err(OAuthError::invalid_grant("code_verifier missing")),
        // RFC 9700 §2.1.1: a verifier without a challenge is refused, or a
        // PKCE downgrade would go unnoticed.
        (None, Some(_)) => {
            return Err(OAuthError::invalid_grant(
                "code_verifier without code_challenge",
            ));
        }
        (None, None) => {}
    }
    let user = p
        .user(&rec.username)
        .await?
        .ok_or_else(|| OAuthError::invalid_grant("user no longer exists"))?;

    let refreshable = client.allows_grant(GrantType::RefreshToken);
    let grant_id = random_id();
    let access_exp = tokens::expiry(p.ttls.access_token_ttl);
    let refresh_until = if refreshable {
        tokens::expiry(p.ttls.refresh_token_ttl)
    } else {
        0
    };
    // The grant record first, the redemption marker second: a replay that
    // finds the marker always finds the grant to revoke, even while this
    // request is still signing.
    let record = GrantRecord {
        client_id: client.id.clone(),
        username: Some(user.username.clone()),
        refresh_until,
    };
    let grant_ttl = if refreshable {
        p.ttls.refresh_token_ttl.max(p.ttls.access_token_ttl)
    } else {
        p.ttls.access_token_ttl
    };
    p.store.put_grant(&grant_id, &record, grant_ttl).await?;
    let used = CodeRedeemed {
        grant_id: grant_id.clone(),
    };
    let used_ttl = p.ttls.access_token_ttl.max(p.ttls.authorization_code_ttl);
    p.store.mark_code_redeemed(code, &used, used_ttl).await?;

    let grant = Grant {
        client,
        user: &user,
        scope: &rec.scope,
        auth_time: rec.auth_time,
        sid: &rec.sid,
        nonce: rec.nonce.as_deref(),
        id: &grant_id,
    };
    let mut body = grant.mint(p, random_id(), access_exp)?;
    if refreshable {
        let rt = new_refresh_token(p, &grant, grant.scope, refresh_until).await?;
        body["refresh_token"] = Value::String(rt);
    }
    Ok(body)
}

async fn refresh(
    p: &Provider,
    client: &Client,
    token: &str,
    scope: Option<&str>,
) -> Result<Value, OAuthError> {
    // Peek first: a token presented by the wrong client must not be spent.
    let Some(rec) = p.store.refresh(token).await? else {
        if let Some(spent) = p.store.refresh_spent(token).await? {
            p.metrics
                .replays
                .with_label_values(&["refresh_token"])
                .inc();
            tracing::warn!(client_id = %client.id, "spent refresh token reused; revoking its family");
            p.store.revoke_grant(&spent.family_id).await?;
            return Err(OAuthError::invalid_grant(
                "refresh token already used; grant revoked",
            ));
        }
        return Err(OAuthError::invalid_grant(
            "refresh token invalid or expired",
        ));
    };
    if rec.client_id != client.id {
        return Err(OAuthError::invalid_grant(
            "refresh token was issued to another client",
        ));
    }
    if rec.expires_at < now() {
        return Err(OAuthError::invalid_grant("refresh token expired"));
    }
    let Some(record) = p.store.grant(&rec.family_id).await? else {
        return Err(OAuthError::invalid_grant("grant revoked"));
    };
    // Refresh tokens end with their SSO session (unless offline) and with
    // an operator's revocation; the grant goes with them.
    if crate::sso::refresh_ended(p, &rec, client).await? {
        p.store.revoke_grant(&rec.family_id).await?;
        return Err(OAuthError::invalid_grant(
            "the sign-in session of this refresh token has ended",
        ));
    }
    // Rotation never extends the grant: it ends refreshTokenTtl after the
    // code was redeemed, so a stolen-and-rotated token cannot live forever.
    let family_end = record.refresh_until;
    if family_end <= now() {
        return Err(OAuthError::invalid_grant("refresh token expired"));
    }
    let scope = narrow_scope(&rec.scope, scope)?;
    let user = p
        .user(&rec.username)
        .await?
        .ok_or_else(|| OAuthError::invalid_grant("user no longer exists"))?;
    // Spend it: of two concurrent refreshes with one token, one wins.
    if p.store.take_refresh(token).await?.is_none() {
        return Err(OAuthError::invalid_grant("refresh token already used"));
    }
    let spent = RefreshSpent {
        family_id: rec.family_id.clone(),
    };
    p.store
        .mark_refresh_spent(token, &spent, p.ttls.refresh_token_ttl)
        .await?;

    let grant = Grant {
        client,
        user: &user,
        scope: &scope,
        auth_time: rec.auth_time,
        sid: &rec.sid,
        nonce: None,
        id: &rec.family_id,
    };
    let access_exp = tokens::expiry(p.ttls.access_token_ttl);
    // The grant record must outlive the new access token, which may end
    // after the grant's last refresh. `expire` never recreates a record that
    // a concurrent reuse detection has just deleted.
    let ttl = std::time::Duration::from_secs(access_exp.max(family_end).saturating_sub(now()));
    if !p.store.extend_grant(&rec.family_id, ttl).await? {
        return Err(OAuthError::invalid_grant("grant revoked"));
    }
    let mut body = grant.mint(p, random_id(), access_exp)?;
    // The new refresh token keeps the original grant's scope (RFC 6749 §6).
    let rt = new_refresh_token(p, &grant, &rec.scope, family_end).await?;
    body["refresh_token"] = Value::String(rt);
    Ok(body)
}

async fn client_credentials(
    p: &Provider,
    client: &Client,
    scope: Option<&str>,
) -> Result<Value, OAuthError> {
    let requested = scope.unwrap_or("");
    let mut scopes: Vec<&str> = Vec::new();
    for s in requested.split(' ').filter(|s| !s.is_empty()) {
        // User scopes mean nothing without a user: RFC 6749 §3.3 lets us grant
        // less than asked, so they are dropped (and the response says so)
        // rather than failing a request that is otherwise fine.
        if STANDARD_SCOPES.contains(&s) {
            continue;
        }
        if !client.allows_scope(s) {
            return Err(OAuthError::new(
                ErrorCode::InvalidScope,
                "scope not allowed for this client",
            ));
        }
        if !scopes.contains(&s) {
            scopes.push(s);
        }
    }
    let scope = scopes.join(" ");
    // RFC 6749 §5.1: `scope` is required in the response when it differs from
    // the request, so a narrowed grant is always stated, even when empty.
    let narrowed = requested
        .split(' ')
        .filter(|s| !s.is_empty())
        .ne(scopes.iter().copied());
    let iat = now();
    let exp = tokens::expiry(p.ttls.access_token_ttl);
    // A grant of its own, so the token can be revoked like any other.
    let grant_id = random_id();
    let record = GrantRecord {
        client_id: client.id.clone(),
        username: None,
        refresh_until: 0,
    };
    p.store
        .put_grant(&grant_id, &record, p.ttls.access_token_ttl)
        .await?;
    let claims = AccessClaims {
        iss: p.issuer.clone(),
        sub: client.id.clone(),
        aud: client.id.clone(),
        client_id: client.id.clone(),
        exp,
        iat,
        jti: random_id(),
        scope: scope.clone(),
        auth_time: None,
        sid: None,
        username: None,
        gid: Some(grant_id),
        extra: BTreeMap::new(),
    };
    let access = tokens::sign(p.active_key(), "at+jwt", &claims)?;
    let mut body = json!({
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": exp - iat,
    });
    if !scope.is_empty() || narrowed {
        body["scope"] = Value::String(scope);
    }
    Ok(body)
}

/// RFC 6749 §6: a refresh may ask for fewer scopes, never more.
fn narrow_scope(granted: &str, requested: Option<&str>) -> Result<String, OAuthError> {
    let Some(requested) = requested else {
        return Ok(granted.to_owned());
    };
    let granted: Vec<&str> = granted.split(' ').collect();
    let mut out: Vec<&str> = Vec::new();
    for s in requested.split(' ').filter(|s| !s.is_empty()) {
        if !granted.contains(&s) {
            return Err(OAuthError::new(
                ErrorCode::InvalidScope,
                "scope exceeds the original grant",
            ));
        }
        if !out.contains(&s) {
            out.push(s);
        }
    }
    Ok(out.join(" "))
}

/// What a user's tokens are minted from.
struct Grant<'a> {
    client: &'a Client,
    user: &'a User,
    scope: &'a str,
    auth_time: u64,
    sid: &'a str,
    nonce: Option<&'a str>,
    /// The grant's id: the access token's `gid`, the refresh tokens' family.
    id: &'a str,
}

impl Grant<'_> {
    fn scopes(&self) -> impl Iterator<Item = &str> + Clone {
        self.scope.split(' ')
    }

    /// Signs the access token and, for `openid`, the ID token.
    fn mint(&self, p: &Provider, jti: String, access_exp: u64) -> Result<Value, OAuthError> {
        let key = p.active_key();
        let iat = now();
        let access_claims = AccessClaims {
            iss: p.issuer.clone(),
            sub: self.user.sub.clone(),
            aud: self.client.id.clone(),
            client_id: self.client.id.clone(),
            exp: access_exp,
            iat,
            jti,
            scope: self.scope.to_owned(),
            auth_time: Some(self.auth_time),
            sid: Some(self.sid.to_owned()),
            username: Some(self.user.username.clone()),
            gid: Some(self.id.to_owned()),
            extra: self.user.claims_for(self.scopes()),
        };
        let access = tokens::sign(key, "at+jwt", &access_claims)?;
        let mut body = json!({
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": access_exp.saturating_sub(iat),
            "scope": self.scope,
        });
        if self.scopes().any(|s| s == "openid") {
            let extra: BTreeMap<String, Value> = self.user.claims_for(self.scopes());
            let id_claims = IdClaims {
                iss: p.issuer.clone(),
                sub: self.user.sub.clone(),
                aud: self.client.id.clone(),
                exp: tokens::expiry(p.ttls.id_token_ttl),
                iat,
                auth_time: self.auth_time,
                nonce: self.nonce.map(str::to_owned),
                at_hash: Some(tokens::at_hash(key.alg, &access)),
                sid: Some(self.sid.to_owned()),
                extra,
            };
            body["id_token"] = Value::String(tokens::sign(key, "JWT", &id_claims)?);
        }
        Ok(body)
    }
}

/// A new refresh token of the grant, valid until `expires_at` (the grant's end).
async fn new_refresh_token(
    p: &Provider,
    grant: &Grant<'_>,
    scope: &str,
    expires_at: u64,
) -> Result<String, OAuthError> {
    let token = random_token();
    let ttl = std::time::Duration::from_secs(expires_at.saturating_sub(now()).max(1));
    let rec = RefreshRecord {
        family_id: grant.id.to_owned(),
        client_id: grant.client.id.clone(),
        username: grant.user.username.clone(),
        scope: scope.to_owned(),
        auth_time: grant.auth_time,
        sid: grant.sid.to_owned(),
        expires_at,
    };
    p.store.put_refresh(&token, &rec, ttl).await?;
    Ok(token)
}
