//! Token minting and verification: RFC 9068 JWT access tokens, OpenID ID
//! tokens, `at_hash`, PKCE, and checking our own tokens when they come back
//! (userinfo, introspection, revocation, `id_token_hint`).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Header, Validation};
use orchestrator_config::SigningAlgorithm;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest as _, Sha256, Sha512};
use subtle::ConstantTimeEq as _;

use crate::error::{ErrorCode, OAuthError};
use crate::keys::SigningKey;

/// Seconds since the Unix epoch.
pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `now + ttl` in seconds.
pub(crate) fn expiry(ttl: Duration) -> u64 {
    now().saturating_add(ttl.as_secs())
}

/// Claims of an access token (RFC 9068 §2.2).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct AccessClaims {
    pub(crate) iss: String,
    pub(crate) sub: String,
    pub(crate) aud: String,
    pub(crate) client_id: String,
    pub(crate) exp: u64,
    pub(crate) iat: u64,
    pub(crate) jti: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub(crate) scope: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) auth_time: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) sid: Option<String>,
    /// The user name behind `sub`, for userinfo (absent for client tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) username: Option<String>,
    /// The grant the token belongs to; the token is valid only while the
    /// grant's record exists (see `store::GrantRecord`). Tokens without one
    /// are refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) gid: Option<String>,
    /// The user's claims its scopes release (RFC 9068 §2.2.1: `email`,
    /// `groups`, `idp`…), so a resource server (the gateway's bearer mode)
    /// can apply a policy without calling userinfo.
    #[serde(flatten, default)]
    pub(crate) extra: BTreeMap<String, Value>,
}

/// Claims of an ID token (OpenID Connect Core §2), plus the user's claims by scope.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct IdClaims {
    pub(crate) iss: String,
    pub(crate) sub: String,
    pub(crate) aud: String,
    pub(crate) exp: u64,
    pub(crate) iat: u64,
    pub(crate) auth_time: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) nonce: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) at_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) sid: Option<String>,
    #[serde(flatten)]
    pub(crate) extra: BTreeMap<String, Value>,
}

/// Signs `claims` with `key` as a compact JWS, setting `typ` and `kid`.
///
/// The header and claims are serialised exactly as jsonwebtoken would; only
/// the signature comes from the key's faster ring signer (see `keys`).
pub(crate) fn sign<T: Serialize>(
    key: &SigningKey,
    typ: &str,
    claims: &T,
) -> Result<String, OAuthError> {
    let fail = |what: &dyn std::fmt::Display| {
        tracing::error!(error = %what, kid = %key.kid, "signing failed");
        OAuthError::new(ErrorCode::ServerError, "signing failed")
    };
    let mut header = Header::new(key.jwt_alg());
    header.typ = Some(typ.to_owned());
    header.kid = Some(key.kid.clone());
    let header = serde_json::to_vec(&header).map_err(|e| fail(&e))?;
    let claims = serde_json::to_vec(claims).map_err(|e| fail(&e))?;
    let mut jws = URL_SAFE_NO_PAD.encode(header);
    jws.push('.');
    URL_SAFE_NO_PAD.encode_string(claims, &mut jws);
    let signature = key.sign_input(jws.as_bytes()).map_err(|e| fail(&e))?;
    jws.push('.');
    URL_SAFE_NO_PAD.encode_string(signature, &mut jws);
    Ok(jws)
}

/// `at_hash`: the left half of the hash of the access token, with the hash
/// of the signing algorithm (SHA-512 for Ed25519, as OpenID's EdDSA profile does).
pub(crate) fn at_hash(alg: SigningAlgorithm, access_token: &str) -> String {
    match alg {
        SigningAlgorithm::ES256 | SigningAlgorithm::RS256 => {
            let h = Sha256::digest(access_token.as_bytes());
            URL_SAFE_NO_PAD.encode(&h[..16])
        }
        SigningAlgorithm::EdDSA => {
            let h = Sha512::digest(access_token.as_bytes());
            URL_SAFE_NO_PAD.encode(&h[..32])
        }
    }
}

/// RFC 7636 §4.2: a `code_challenge` for S256 is base64url of 32 bytes.
pub(crate) fn valid_challenge(challenge: &str) -> bool {
    challenge.len() == 43
        && challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// RFC 7636 §4.1: 43–128 characters of `[A-Za-z0-9-._~]`.
pub(crate) fn valid_verifier(verifier: &str) -> bool {
    (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// True when `BASE64URL(SHA256(verifier)) == challenge`, compared in constant time.
pub(crate) fn pkce_matches(verifier: &str, challenge: &str) -> bool {
    let computed = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    computed.as_bytes().ct_eq(challenge.as_bytes()).into()
}

/// What kind of our own JWT is expected back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expect {
    /// An access token (`typ: at+jwt`), unexpired.
    Access,
    /// An ID token used as `id_token_hint` (may be expired, per RP-Initiated Logout).
    IdTokenHint,
}

/// Verifies one of our own JWTs: known `kid`, the key's own algorithm (so
/// `alg: none`, HS256 with the public key and the like never pass), our
/// issuer, the right `typ`, and expiry unless it is an `id_token_hint`.
pub(crate) fn verify<T: serde::de::DeserializeOwned>(
    keys: &[SigningKey],
    issuer: &str,
    token: &str,
    expect: Expect,
) -> Result<T, OAuthError> {
    let bad = || OAuthError::invalid_token("token invalid");
    let header = jsonwebtoken::decode_header(token).map_err(|_| bad())?;
    let typ_ok = match (expect, header.typ.as_deref()) {
        (Expect::Access, Some(t)) => {
            t.eq_ignore_ascii_case("at+jwt") || t.eq_ignore_ascii_case("application/at+jwt")
        }
        (Expect::IdTokenHint, None) => true,
        (Expect::IdTokenHint, Some(t)) => t.eq_ignore_ascii_case("JWT"),
        (Expect::Access, None) => false,
    };
    if !typ_ok {
        return Err(bad());
    }
    let kid = header.kid.as_deref().ok_or_else(bad)?;
    let key = keys.iter().find(|k| k.kid == kid).ok_or_else(bad)?;
    if header.alg != key.jwt_alg() {
        return Err(bad());
    }
    let mut validation = Validation::new(key.jwt_alg());
    validation.set_issuer(&[issuer]);
    validation.validate_aud = false;
    validation.leeway = 0;
    validation.validate_exp = expect == Expect::Access;
    let required: &[&str] = if expect == Expect::Access {
        &["exp", "iss", "sub"]
    } else {
        &["iss", "sub"]
    };
    validation.set_required_spec_claims(required);
    jsonwebtoken::decode::<T>(token, &key.decoding, &validation)
        .map(|data| data.claims)
        .map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                OAuthError::invalid_token("token expired")
            }
            _ => bad(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_s256_matches_rfc7636_appendix_b() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert!(valid_verifier(verifier));
        assert!(valid_challenge(challenge));
        assert!(pkce_matches(verifier, challenge));
        assert!(!pkce_matches(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXX",
            challenge
        ));
    }

    #[test]
    fn tokens_signed_with_every_algorithm_verify_with_jsonwebtoken() {
        for alg in [
            SigningAlgorithm::ES256,
            SigningAlgorithm::EdDSA,
            SigningAlgorithm::RS256,
        ] {
            let pem = crate::keys::generate_pem(alg).unwrap();
            let key = SigningKey::from_pem("k", alg, &pem).unwrap();
            let claims = AccessClaims {
                iss: "http://issuer.test".into(),
                sub: "alice".into(),
                aud: "app".into(),
                client_id: "app".into(),
                exp: now() + 60,
                iat: now(),
                jti: "j".into(),
                scope: "openid".into(),
                auth_time: None,
                sid: None,
                username: Some("alice".into()),
                gid: Some("g".into()),
                extra: BTreeMap::new(),
            };
            let token = sign(&key, "at+jwt", &claims).unwrap();
            let back: AccessClaims = verify(
                std::slice::from_ref(&key),
                "http://issuer.test",
                &token,
                Expect::Access,
            )
            .unwrap_or_else(|e| panic!("{alg:?}: {e}"));
            assert_eq!(back.sub, "alice");
            // Wrong issuer and a flipped signature byte both fail.
            assert!(
                verify::<AccessClaims>(
                    std::slice::from_ref(&key),
                    "http://other.test",
                    &token,
                    Expect::Access
                )
                .is_err()
            );
            let mut bad = token.clone().into_bytes();
            let i = bad.len() - 5;
            bad[i] = if bad[i] == b'A' { b'B' } else { b'A' };
            let bad = String::from_utf8(bad).unwrap();
            assert!(
                verify::<AccessClaims>(
                    std::slice::from_ref(&key),
                    "http://issuer.test",
                    &bad,
                    Expect::Access
                )
                .is_err()
            );
        }
    }

    #[test]
    fn at_hash_is_left_half_of_sha256() {
        // OpenID Connect Core example token and at_hash (ES256/RS256 family).
        let h = at_hash(
            SigningAlgorithm::RS256,
            "jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y",
        );
        assert_eq!(h, "77QmUPtjPfzWtF2AnpK9RQ");
    }
}
