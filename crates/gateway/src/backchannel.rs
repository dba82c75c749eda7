//! OpenID Connect Back-Channel Logout 1.0, the receiving side: an IdP
//! POSTs a logout token to `backchannelLogoutPath` when a user's session
//! there ends, and every gateway session it names ends too, on every
//! replica (the marker is in the cache backend; see
//! [`crate::session::SessionStore::end_by_idp`]).
//!
//! The token is validated as §2.6 says: signed by a configured IdP (its
//! JWKS, an asymmetric algorithm), `iss` that IdP, `aud` our client id there,
//! `iat` and `exp` (at most a few minutes), `typ` `logout+jwt` when present,
//! the back-channel `events` member, a `sid` or a `sub`, no `nonce`, and a
//! `jti` not seen before within its lifetime. Answers: 200, or 400 with a
//! JSON error; always `Cache-Control: no-store`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt as _;
use jsonwebtoken::{DecodingKey, Validation};
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};

use crate::{Gateway, Runtime};
use orchestrator_http::body::{BoxBody, full};

/// The `events` member a logout token must carry.
const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
/// Largest request body read (a logout token is well under 4 KiB).
const MAX_BODY: usize = 16 * 1024;
/// Clock skew tolerated on `iat` and `exp` (the one rule).
const LEEWAY_SECS: u64 = orchestrator_rp::CLOCK_SKEW_SECS;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Why a logout token was not acted on: the client's fault (400, do not
/// retry) or ours for now (503: the sender retries).
enum Refusal {
    Bad(&'static str),
    Unavailable(&'static str),
}

impl From<&'static str> for Refusal {
    fn from(why: &'static str) -> Self {
        Self::Bad(why)
    }
}

/// Longest a logout token may have been around (`iat` to now, `iat` to `exp`).
const MAX_AGE_SECS: u64 = 600;

/// Serves one back-channel logout request.
pub(crate) async fn receive<B>(gw: &Gateway, rt: &Runtime, req: Request<B>) -> Response<BoxBody>
where
    B: http_body::Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let result = if req.method() == Method::POST {
        accept(gw, rt, req).await
    } else {
        Err(Refusal::Bad("use POST with a logout_token"))
    };
    let mut resp = match result {
        Ok(()) => Response::new(full(Bytes::new())),
        Err(refusal) => {
            let (status, code, why) = match refusal {
                Refusal::Bad(why) => (StatusCode::BAD_REQUEST, "invalid_request", why),
                Refusal::Unavailable(why) => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "temporarily_unavailable",
                    why,
                ),
            };
            tracing::info!(reason = why, "back-channel logout refused");
            let body = serde_json::json!({"error": code, "error_description": why});
            let mut r = Response::new(full(body.to_string()));
            *r.status_mut() = status;
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            r
        }
    };
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

async fn accept<B>(gw: &Gateway, rt: &Runtime, req: Request<B>) -> Result<(), Refusal>
where
    B: http_body::Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let body = http_body_util::Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|_| "body too large or unreadable")?
        .to_bytes();
    let mut tokens = form_urlencoded::parse(&body).filter(|(k, _)| k == "logout_token");
    let token = tokens.next().ok_or("missing logout_token")?.1.into_owned();
    if tokens.next().is_some() {
        return Err(Refusal::Bad("more than one logout_token"));
    }
    let header = jsonwebtoken::decode_header(&token).map_err(|_| "logout_token is not a JWT")?;
    if !crate::bearer::asymmetric(header.alg) {
        return Err(Refusal::Bad("logout_token algorithm not allowed"));
    }
    if header.typ.as_deref().is_some_and(|t| {
        !t.eq_ignore_ascii_case("logout+jwt") && !t.eq_ignore_ascii_case("application/logout+jwt")
    }) {
        return Err(Refusal::Bad("logout_token typ is not logout+jwt"));
    }
    // Which IdP: the one whose issuer the (still unverified) token names;
    // its keys then decide whether the token is real.
    let issuer = unverified_issuer(&token).ok_or("logout_token has no iss")?;
    let idp = rt
        .idps
        .values()
        .find(|i| i.issuer() == issuer)
        .ok_or("logout_token from an identity provider that is not configured")?;
    let mut validation = Validation::new(header.alg);
    validation.algorithms = vec![header.alg];
    validation.leeway = LEEWAY_SECS;
    validation.set_audience(&[idp.client_id()]);
    validation.set_issuer(&[idp.issuer()]);
    validation.set_required_spec_claims(&["iss", "aud", "exp"]);
    let mut claims = None;
    for refresh in [false, true] {
        let keys = idp
            .jwks(refresh)
            .await
            .map_err(|_| Refusal::Unavailable("the identity provider's keys are unavailable"))?;
        let candidates: Vec<_> = keys
            .iter()
            .filter(|k| header.kid.is_none() || k.common.key_id == header.kid)
            .collect();
        if header.kid.is_none() && candidates.len() != 1 {
            return Err(Refusal::Bad(
                "logout_token has no kid and the key set is ambiguous",
            ));
        }
        if let Some(jwk) = candidates.first() {
            let key = DecodingKey::from_jwk(jwk).map_err(|_| "unusable key")?;
            claims = Some(
                jsonwebtoken::decode::<Map<String, Value>>(&token, &key, &validation)
                    .map_err(|_| "logout_token signature or claims rejected")?
                    .claims,
            );
            break;
        }
    }
    let claims = claims.ok_or("no key of the identity provider matches the logout_token")?;
    let now = now();
    let iat = claims
        .get("iat")
        .and_then(Value::as_u64)
        .ok_or("logout_token has no iat")?;
    let exp = claims.get("exp").and_then(Value::as_u64).unwrap_or(0);
    if iat > now + LEEWAY_SECS {
        return Err(Refusal::Bad("logout_token issued in the future"));
    }
    if now.saturating_sub(iat) > MAX_AGE_SECS || exp.saturating_sub(iat) > MAX_AGE_SECS {
        return Err(Refusal::Bad("logout_token is too old or lives too long"));
    }
    let events = claims
        .get("events")
        .and_then(Value::as_object)
        .ok_or("logout_token has no events")?;
    if !events.get(EVENT).is_some_and(Value::is_object) {
        return Err(Refusal::Bad(
            "logout_token events lack the back-channel logout event",
        ));
    }
    if claims.contains_key("nonce") {
        return Err(Refusal::Bad("logout_token must not carry a nonce"));
    }
    let text = |c: &str| {
        claims
            .get(c)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    let (sid, sub) = (text("sid"), text("sub"));
    if sid.is_none() && sub.is_none() {
        return Err(Refusal::Bad("logout_token names neither sid nor sub"));
    }
    let jti = text("jti").ok_or("logout_token has no jti")?;
    // Once: a replayed token is refused while it could still be accepted.
    let mut h = Sha256::new();
    h.update(idp.issuer().as_bytes());
    h.update([0]);
    h.update(jti.as_bytes());
    let key = format!("gw:bcl:jti:{:x}", h.finalize());
    let ttl = Duration::from_secs(exp.saturating_add(LEEWAY_SECS).saturating_sub(now).max(1));
    let unavailable = |_| Refusal::Unavailable("sessions unavailable");
    let fresh = gw
        .sessions
        .claim_once(&key, ttl)
        .await
        .map_err(unavailable)?;
    if !fresh {
        return Err(Refusal::Bad("logout_token replayed"));
    }
    if gw.sessions.end_by_idp(idp.name(), sid, sub).await.is_err() {
        // Not acted on: let the sender's retry through.
        let _ = gw.sessions.release(&key).await;
        return Err(Refusal::Unavailable("sessions unavailable"));
    }
    tracing::info!(
        idp = idp.name(),
        by_sid = sid.is_some(),
        "back-channel logout"
    );
    gw.metrics.sessions_ended_by_idp.inc();
    Ok(())
}

/// The `iss` of a JWT, read without verifying it (to pick the keys that will).
fn unverified_issuer(token: &str) -> Option<String> {
    use base64::Engine as _;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let claims: Map<String, Value> = serde_json::from_slice(&bytes).ok()?;
    claims.get("iss")?.as_str().map(str::to_owned)
}
