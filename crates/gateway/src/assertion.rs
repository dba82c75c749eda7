//! Identity assertions: a short-lived ES256 JWT of the user for the upstream,
//! and the JWKS (published at `/.orchestrator/jwks`) that verifies it.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use orchestrator_config::{SigningAlgorithm, SigningKeyConfig};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::GatewayError;
use crate::session::now_secs;

/// Signs assertions with the first configured key; publishes all of them.
pub(crate) struct AssertionSigner {
    kid: String,
    key: EncodingKey,
    /// The same key loaded into ring, which signs ES256 ~10x faster than the
    /// RustCrypto curve behind `key` (the load bench measured ~0.55 ms of CPU
    /// per proxied request with `key`, most of it in p256 field arithmetic);
    /// `key` remains the fallback.
    fast: Option<RingEs256>,
    ttl: Duration,
    issuer: &'static str,
    jwks: Bytes,
}

impl std::fmt::Debug for AssertionSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AssertionSigner")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// A ring ES256 key and the JWS header it signs under, encoded once.
struct RingEs256 {
    pair: ring::signature::EcdsaKeyPair,
    rng: ring::rand::SystemRandom,
    header_b64: String,
}

impl RingEs256 {
    fn new(pem: &str, kid: &str) -> Option<Self> {
        use p256::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _};
        let sk = p256::SecretKey::from_pkcs8_pem(pem)
            .or_else(|_| p256::SecretKey::from_sec1_pem(pem))
            .ok()?;
        let der = sk.to_pkcs8_der().ok()?;
        let rng = ring::rand::SystemRandom::new();
        let pair = ring::signature::EcdsaKeyPair::from_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            der.as_bytes(),
            &rng,
        )
        .ok()?;
        let header = serde_json::json!({"typ": "JWT", "alg": "ES256", "kid": kid});
        let header_b64 = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).ok()?);
        Some(Self {
            pair,
            rng,
            header_b64,
        })
    }

    /// A compact JWS: header.claims.signature (r||s, 64 bytes, as JWS wants).
    fn sign(&self, claims: &impl Serialize) -> Option<String> {
        let claims = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).ok()?);
        let mut jws = format!("{}.{claims}", self.header_b64);
        let sig = self.pair.sign(&self.rng, jws.as_bytes()).ok()?;
        jws.push('.');
        jws.push_str(&URL_SAFE_NO_PAD.encode(sig.as_ref()));
        Some(jws)
    }
}

#[derive(Serialize)]
struct AssertionClaims<'a> {
    iss: &'a str,
    aud: &'a str,
    sub: &'a str,
    iat: u64,
    nbf: u64,
    exp: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    groups: Option<&'a Value>,
}

/// A new ES256 key, for when `assertionSigningKeys` is empty.
pub(crate) fn generate_fallback_key() -> Result<SigningKeyConfig, GatewayError> {
    use p256::pkcs8::{EncodePrivateKey as _, LineEnding};
    let sk = p256::SecretKey::random(&mut p256::elliptic_curve::rand_core::OsRng);
    let pem = sk.to_pkcs8_pem(LineEnding::LF).map_err(|e| {
        GatewayError::config(
            "appGateway.assertionSigningKeys",
            format!("key generation: {e}"),
        )
    })?;
    Ok(SigningKeyConfig {
        id: "generated-at-start".to_owned(),
        algorithm: SigningAlgorithm::ES256,
        private_key: orchestrator_config::Secret::new(pem.to_string()),
    })
}

/// The `iss` of every assertion.
pub const ASSERTION_ISSUER: &str = "orchestrator-gateway";

impl AssertionSigner {
    /// From `assertionSigningKeys` (ES256 only); `None` when there are no keys.
    pub(crate) fn new(
        keys: &[SigningKeyConfig],
        ttl: Duration,
    ) -> Result<Option<Self>, GatewayError> {
        let mut jwks = Vec::new();
        let mut first: Option<(String, EncodingKey, Option<RingEs256>)> = None;
        for (i, k) in keys.iter().enumerate() {
            let path = format!("appGateway.assertionSigningKeys[{i}]");
            if k.algorithm != SigningAlgorithm::ES256 {
                return Err(GatewayError::config(
                    format!("{path}.algorithm"),
                    "assertions are signed with ES256 only",
                ));
            }
            let key =
                EncodingKey::from_ec_pem(k.private_key.expose().as_bytes()).map_err(|_| {
                    GatewayError::config(
                        format!("{path}.privateKey"),
                        "not a PEM (PKCS#8) P-256 private key",
                    )
                })?;
            let mut jwk = Jwk::from_encoding_key(&key, Algorithm::ES256).map_err(|_| {
                GatewayError::config(format!("{path}.privateKey"), "cannot derive the public key")
            })?;
            jwk.common.key_id = Some(k.id.clone());
            jwk.common.public_key_use = Some(jsonwebtoken::jwk::PublicKeyUse::Signature);
            jwks.push(jwk);
            if first.is_none() {
                let fast = RingEs256::new(k.private_key.expose(), &k.id);
                first = Some((k.id.clone(), key, fast));
            }
        }
        let Some((kid, key, fast)) = first else {
            return Ok(None);
        };
        let jwks = serde_json::to_vec(&JwkSet { keys: jwks })
            .map_err(|e| GatewayError::config("appGateway.assertionSigningKeys", e.to_string()))?;
        Ok(Some(Self {
            kid,
            key,
            fast,
            ttl,
            issuer: ASSERTION_ISSUER,
            jwks: Bytes::from(jwks),
        }))
    }

    /// How long an assertion is valid (`appGateway.assertionTtl`).
    pub(crate) fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The public JWKS document.
    pub(crate) fn jwks(&self) -> Bytes {
        self.jwks.clone()
    }

    /// A fresh assertion of `claims` for `app`.
    pub(crate) fn sign(&self, app: &str, claims: &Map<String, Value>) -> Option<String> {
        let now = now_secs();
        let body = AssertionClaims {
            iss: self.issuer,
            aud: app,
            sub: claims.get("sub").and_then(Value::as_str).unwrap_or(""),
            iat: now,
            nbf: now,
            exp: now + self.ttl.as_secs().max(1),
            email: claims.get("email"),
            groups: claims.get("groups"),
        };
        if let Some(fast) = &self.fast {
            return fast.sign(&body);
        }
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        header.typ = Some("JWT".to_owned());
        jsonwebtoken::encode(&header, &body, &self.key).ok()
    }
}

/// An empty JWKS, served when no assertion keys are configured.
pub(crate) fn empty_jwks() -> Bytes {
    Bytes::from_static(br#"{"keys":[]}"#)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fallback_key_signs_and_is_published() {
        let key = generate_fallback_key().unwrap();
        let signer = AssertionSigner::new(std::slice::from_ref(&key), Duration::from_secs(60))
            .unwrap()
            .expect("a signer");
        assert!(signer.fast.is_some(), "signs with ring");
        let mut claims = Map::new();
        claims.insert("sub".into(), Value::String("alice".into()));
        let token = signer.sign("demo", &claims).expect("signed");
        let jwks: JwkSet = serde_json::from_slice(&signer.jwks()).unwrap();
        let jwk = jwks.find("generated-at-start").expect("published");
        let mut validation = jsonwebtoken::Validation::new(Algorithm::ES256);
        validation.set_audience(&["demo"]);
        validation.set_issuer(&[ASSERTION_ISSUER]);
        let decoded = jsonwebtoken::decode::<Value>(
            &token,
            &jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap(),
            &validation,
        )
        .unwrap();
        assert_eq!(decoded.claims["sub"], "alice");
    }
}
