//! API access with bearer tokens (RFC 6750), per app, opt-in: a JWT access
//! token is verified against the app's IdP keys (signature, `iss`, `aud`,
//! `exp`/`nbf`, allowed algorithms only); an opaque one is sent to the IdP's
//! introspection endpoint (RFC 7662) and the answer reused for a short,
//! bounded time under a key made of everything that was checked (token
//! digest, issuer, audiences), so an answer for one app never admits a token
//! to another (the Oathkeeper CVE-2021-32701 class).

use std::str::FromStr as _;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderMap;
use http::header;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use orchestrator_config::BearerConfig;
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};

use crate::error::GatewayError;
use orchestrator_rp::Idp;

/// Clock skew tolerated on `exp`, `nbf` and `iat` (the one rule).
const LEEWAY_SECS: u64 = orchestrator_rp::CLOCK_SKEW_SECS;
/// Longest token read from `Authorization` (a JWT with many groups stays far below).
const MAX_TOKEN_LEN: usize = 16 * 1024;
/// Most bytes of introspection answers held (moka weighs each entry).
const INTROSPECTION_CACHE_BYTES: u64 = 8 * 1024 * 1024;

/// One app's bearer settings, ready to check tokens.
#[derive(Debug)]
pub(crate) struct BearerCheck {
    audiences: Vec<String>,
    algorithms: Vec<Algorithm>,
    introspection: bool,
    cache_ttl: Duration,
}

impl BearerCheck {
    /// From `apps[].bearer` (validated at load: known asymmetric algorithms).
    pub(crate) fn new(cfg: &BearerConfig, key: &str) -> Result<Self, GatewayError> {
        let algorithms = cfg
            .algorithms
            .iter()
            .map(|a| {
                Algorithm::from_str(a)
                    .ok()
                    .filter(|alg| asymmetric(*alg))
                    .ok_or_else(|| {
                        GatewayError::config(
                            format!("{key}.algorithms"),
                            format!("\"{a}\" is not an asymmetric JWS algorithm"),
                        )
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            audiences: cfg.audiences.clone(),
            algorithms,
            introspection: cfg.introspection,
            cache_ttl: cfg.introspection_cache_ttl,
        })
    }
}

/// True for a public-key JWS algorithm: what a token from an IdP may be
/// signed with. HMAC never (an HMAC "verified" with a public key is the
/// classic algorithm-confusion forgery; `none` is no `Algorithm` at all).
pub(crate) fn asymmetric(alg: Algorithm) -> bool {
    !matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}

/// The token of an `Authorization: Bearer` header, if the request has one.
/// A malformed or second `Authorization` is an invalid token, not "no token":
/// the request must not fall back to the session cookie silently.
pub(crate) fn presented(headers: &HeaderMap) -> Result<Option<&str>, GatewayError> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(GatewayError::InvalidToken(
            "more than one Authorization header",
        ));
    }
    let Ok(value) = value.to_str() else {
        return Err(GatewayError::InvalidToken("malformed Authorization header"));
    };
    let Some((scheme, token)) = value.split_once(' ') else {
        return Ok(None);
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        // Basic and others are the app's own business.
        return Ok(None);
    }
    let token = token.trim();
    let b64token = !token.is_empty()
        && token.len() <= MAX_TOKEN_LEN
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b));
    if !b64token {
        return Err(GatewayError::InvalidToken("malformed bearer token"));
    }
    Ok(Some(token))
}

/// An introspection answer that admits a token: its claims, how long it may
/// be reused, and what it weighs in the cache (measured once).
struct Admitted {
    claims: Map<String, Value>,
    ttl: Duration,
    weight: u32,
}

/// What the cache keeps: an admitted token, or `None` (inactive, not for
/// this app), reused [`REFUSED_TTL`].
type Answer = Arc<Option<Admitted>>;

/// How long a refusal from introspection is reused.
const REFUSED_TTL: Duration = Duration::from_secs(5);

/// Introspection answers, shared by every app and kept across reloads (the
/// key holds what each answer was checked against).
pub(crate) struct IntrospectionCache {
    cache: moka::future::Cache<[u8; 32], Answer>,
}

impl std::fmt::Debug for IntrospectionCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IntrospectionCache")
            .field("entries", &self.cache.entry_count())
            .finish()
    }
}

struct AnswerLifetime;

impl moka::Expiry<[u8; 32], Answer> for AnswerLifetime {
    fn expire_after_create(
        &self,
        _key: &[u8; 32],
        value: &Answer,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        Some(value.as_ref().as_ref().map_or(REFUSED_TTL, |a| a.ttl))
    }
}

impl IntrospectionCache {
    pub(crate) fn new() -> Self {
        Self {
            cache: moka::future::Cache::builder()
                .max_capacity(INTROSPECTION_CACHE_BYTES)
                .weigher(|_k, v: &Answer| v.as_ref().as_ref().map_or(256, |a| a.weight))
                .expire_after(AnswerLifetime)
                .build(),
        }
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The verified claims of `token` for an app with `check`, logging in
/// through `idp`; every failure is an invalid token (401).
pub(crate) async fn verify(
    idp: &Idp,
    check: &BearerCheck,
    introspections: &IntrospectionCache,
    token: &str,
) -> Result<Map<String, Value>, GatewayError> {
    if token.split('.').count() == 3 {
        return verify_jwt(idp, check, token).await;
    }
    if !check.introspection {
        return Err(GatewayError::InvalidToken("not a JWT"));
    }
    introspect(idp, check, introspections, token).await
}

async fn verify_jwt(
    idp: &Idp,
    check: &BearerCheck,
    token: &str,
) -> Result<Map<String, Value>, GatewayError> {
    let invalid = GatewayError::InvalidToken;
    let header = jsonwebtoken::decode_header(token).map_err(|_| invalid("malformed JWT"))?;
    if !check.algorithms.contains(&header.alg) {
        return Err(invalid("algorithm not allowed"));
    }
    // RFC 9068 access tokens say `at+jwt`; plain `JWT` is common. Other
    // types signed by the same keys (logout tokens, ID tokens that say so)
    // are not access tokens.
    if let Some(typ) = &header.typ {
        let typ = typ.to_ascii_lowercase();
        if !matches!(typ.as_str(), "jwt" | "at+jwt" | "application/at+jwt") {
            return Err(invalid("not an access token"));
        }
    }
    let mut validation = Validation::new(header.alg);
    validation.algorithms = vec![header.alg];
    validation.leeway = LEEWAY_SECS;
    validation.validate_nbf = true;
    validation.set_audience(&check.audiences);
    validation.set_issuer(&[idp.issuer()]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    let mut keys = idp.jwks(false).await?;
    let mut refreshed = false;
    loop {
        let candidates: Vec<&Jwk> = keys
            .iter()
            .filter(|k| match (&header.kid, &k.common.key_id) {
                (Some(want), Some(have)) => want == have,
                (Some(_), None) => false,
                (None, _) => true,
            })
            .filter(|k| {
                k.common
                    .key_algorithm
                    .is_none_or(|a| a.to_string() == format!("{:?}", header.alg))
            })
            .collect();
        // Without a `kid`, only an unambiguous key set will do.
        let usable = header.kid.is_some() || candidates.len() == 1;
        if usable {
            if let Some(jwk) = candidates.first() {
                let key = DecodingKey::from_jwk(jwk).map_err(|_| invalid("unusable key"))?;
                return match jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation) {
                    Ok(data) if looks_like_id_token(header.typ.as_deref(), &data.claims) => {
                        Err(invalid("an ID token is not an access token"))
                    }
                    Ok(data) => Ok(data.claims),
                    Err(e) => {
                        tracing::debug!(idp = idp.name(), error = %e, "bearer token rejected");
                        Err(invalid("token rejected"))
                    }
                };
            }
        }
        if refreshed {
            return Err(invalid("no key of the identity provider matches"));
        }
        // An unknown `kid`: the IdP may have rotated its keys.
        keys = idp.jwks(true).await?;
        refreshed = true;
    }
}

/// An ID token signed by the same keys, for the same audience, is not an
/// access token (RFC 9068 §4 wants `typ: at+jwt`, which many IdPs do not
/// send): without that `typ`, claims only ID tokens carry (`nonce`,
/// `at_hash`, `c_hash`, `auth_time` without `client_id`/`scope`, or
/// Keycloak's `typ` claim other than `Bearer`) refuse it.
fn looks_like_id_token(typ: Option<&str>, claims: &Map<String, Value>) -> bool {
    if typ.is_some_and(|t| {
        t.eq_ignore_ascii_case("at+jwt") || t.eq_ignore_ascii_case("application/at+jwt")
    }) {
        return false;
    }
    let has = |c: &str| claims.contains_key(c);
    has("nonce")
        || has("at_hash")
        || has("c_hash")
        || (has("auth_time") && !has("client_id") && !has("scope") && !has("scp"))
        || claims
            .get("typ")
            .and_then(Value::as_str)
            .is_some_and(|t| !t.eq_ignore_ascii_case("bearer"))
}

async fn introspect(
    idp: &Idp,
    check: &BearerCheck,
    introspections: &IntrospectionCache,
    token: &str,
) -> Result<Map<String, Value>, GatewayError> {
    let mut key = Sha256::new();
    let ttl = check.cache_ttl.as_secs().to_string();
    for part in [token, idp.issuer(), idp.client_id(), &ttl]
        .into_iter()
        .chain(check.audiences.iter().map(String::as_str))
    {
        key.update((part.len() as u64).to_be_bytes());
        key.update(part.as_bytes());
    }
    let key: [u8; 32] = key.finalize().into();
    let answer = introspections
        .cache
        .try_get_with(key, async {
            let answer = idp.introspect(token).await?;
            Ok::<_, GatewayError>(Arc::new(accept_introspection(idp, check, answer)))
        })
        .await
        .map_err(|e| match e.as_ref() {
            GatewayError::IdpUnavailable { idp } => {
                GatewayError::IdpUnavailable { idp: idp.clone() }
            }
            _ => GatewayError::InvalidToken("introspection failed"),
        })?;
    let admitted = answer.as_ref().as_ref().ok_or(GatewayError::InvalidToken(
        "token inactive or not for this app",
    ))?;
    // The cached answer may outlive a token that expires meanwhile.
    if admitted
        .claims
        .get("exp")
        .and_then(Value::as_u64)
        .is_some_and(|exp| exp.saturating_add(LEEWAY_SECS) < now())
    {
        return Err(GatewayError::InvalidToken("token expired"));
    }
    Ok(admitted.claims.clone())
}

/// The claims of an introspection answer when it admits the token to this
/// app (`active`, our issuer when named, one of our audiences, not expired),
/// with the time they may be reused.
fn accept_introspection(
    idp: &Idp,
    check: &BearerCheck,
    answer: Map<String, Value>,
) -> Option<Admitted> {
    if answer.get("active").and_then(Value::as_bool) != Some(true) {
        return None;
    }
    // An access token only: a refresh token the IdP also calls active is
    // not a credential for an API (nor one bound to a DPoP key we never see).
    let token_type_ok = answer
        .get("token_type")
        .and_then(Value::as_str)
        .is_none_or(|t| t.eq_ignore_ascii_case("bearer") || t.eq_ignore_ascii_case("access_token"));
    let keycloak_typ_ok = answer
        .get("typ")
        .and_then(Value::as_str)
        .is_none_or(|t| t.eq_ignore_ascii_case("bearer"));
    if !token_type_ok || !keycloak_typ_ok {
        return None;
    }
    if answer
        .get("iss")
        .is_some_and(|iss| iss.as_str() != Some(idp.issuer()))
    {
        return None;
    }
    let aud_ok = match answer.get("aud") {
        Some(Value::String(a)) => check.audiences.contains(a),
        Some(Value::Array(list)) => list
            .iter()
            .filter_map(Value::as_str)
            .any(|a| check.audiences.iter().any(|c| c == a)),
        _ => false,
    };
    if !aud_ok {
        return None;
    }
    let mut claims = answer;
    // A client-credentials token has no user: its client is who calls
    // (RFC 9068 §2.2 sets `sub` to the client id; RFC 7662 makes it optional).
    if claims.get("sub").and_then(Value::as_str).is_none() {
        let client = claims.get("client_id").and_then(Value::as_str)?.to_owned();
        claims.insert("sub".to_owned(), Value::String(client));
    }
    let now = now();
    let left = match claims.get("exp").and_then(Value::as_u64) {
        Some(exp) if exp <= now => return None,
        Some(exp) => exp - now,
        None => check.cache_ttl.as_secs(),
    };
    claims.remove("active");
    let weight = 256 + serde_json::to_vec(&claims).map_or(0, |b| b.len());
    Some(Admitted {
        claims,
        ttl: Duration::from_secs(left.min(check.cache_ttl.as_secs()).max(1)),
        weight: u32::try_from(weight).unwrap_or(u32::MAX),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn auth(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(
                header::AUTHORIZATION,
                HeaderValue::from_str(v).expect("value"),
            );
        }
        h
    }

    #[test]
    fn bearer_header_forms() {
        assert_eq!(presented(&HeaderMap::new()).ok(), Some(None));
        assert_eq!(presented(&auth(&["Basic YTpi"])).ok(), Some(None));
        assert_eq!(
            presented(&auth(&["Bearer abc.def-_~+/="])).ok(),
            Some(Some("abc.def-_~+/="))
        );
        assert_eq!(presented(&auth(&["bearer x"])).ok(), Some(Some("x")));
        for bad in [
            &["Bearer "][..],
            &["Bearer a b"],
            &["Bearer a\"b"],
            &["Bearer a", "Bearer b"],
        ] {
            assert!(
                matches!(presented(&auth(bad)), Err(GatewayError::InvalidToken(_))),
                "{bad:?}"
            );
        }
        let long = format!("Bearer {}", "a".repeat(MAX_TOKEN_LEN + 1));
        assert!(presented(&auth(&[&long])).is_err());
    }
}
