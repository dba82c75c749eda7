//! Signing keys: loading PKCS#8 PEM private keys, deriving the public JWK that
//! JWKS publishes, and generating new keys for `orchestrator keys generate`.
//!
//! The first configured key signs; every key verifies and is published, so a
//! rotation (new key first, old key kept until its tokens expire) never
//! invalidates tokens in flight.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use orchestrator_config::{SigningAlgorithm, SigningKeyConfig};
use serde_json::{Value, json};

/// Smallest RSA modulus accepted, in bits (RFC 7518 §3.3 requires 2048).
const MIN_RSA_BITS: usize = 2048;
/// Size of keys `generate_pem` makes for RS256.
const GENERATED_RSA_BITS: usize = 3072;

/// Why a key could not be loaded or generated. Never carries key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The PEM is not a PKCS#8 private key of the configured algorithm's type.
    #[error("not a PKCS#8 PEM private key for {algorithm}: {reason}")]
    Parse {
        /// The configured algorithm.
        algorithm: &'static str,
        /// What the parser said (no key material).
        reason: String,
    },
    /// An RSA key below 2048 bits.
    #[error("RSA key of {bits} bits is too small (at least {MIN_RSA_BITS} required)")]
    RsaTooSmall {
        /// The modulus size found.
        bits: usize,
    },
    /// Key generation or PEM encoding failed.
    #[error("key generation failed: {0}")]
    Generate(String),
}

/// One loaded key: what signs, what verifies, and what JWKS publishes.
pub(crate) struct SigningKey {
    pub(crate) kid: String,
    pub(crate) alg: SigningAlgorithm,
    pub(crate) encoding: EncodingKey,
    pub(crate) decoding: DecodingKey,
    /// The public JWK (kty, crv/x/y or n/e, kid, alg, use).
    pub(crate) jwk: Value,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Loads one configured key.
    pub(crate) fn from_config(cfg: &SigningKeyConfig) -> Result<Self, KeyError> {
        Self::from_pem(&cfg.id, cfg.algorithm, cfg.private_key.expose())
    }

    /// Loads a PKCS#8 PEM private key for `alg`.
    pub(crate) fn from_pem(kid: &str, alg: SigningAlgorithm, pem: &str) -> Result<Self, KeyError> {
        let parse_err = |reason: String| KeyError::Parse {
            algorithm: alg.as_str(),
            reason,
        };
        // The typed parsers check the key type and derive the public half;
        // jsonwebtoken then gets the same PEM for signing.
        let (public, encoding, decoding) = match alg {
            SigningAlgorithm::ES256 => {
                use p256::pkcs8::DecodePrivateKey as _;
                let sk =
                    p256::SecretKey::from_pkcs8_pem(pem).map_err(|e| parse_err(e.to_string()))?;
                let point = p256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(
                    &sk.public_key(),
                    false,
                );
                let (Some(x), Some(y)) = (point.x(), point.y()) else {
                    return Err(parse_err("public point at infinity".into()));
                };
                let (x, y) = (URL_SAFE_NO_PAD.encode(x), URL_SAFE_NO_PAD.encode(y));
                let decoding = DecodingKey::from_ec_components(&x, &y)
                    .map_err(|e| parse_err(e.to_string()))?;
                let encoding = EncodingKey::from_ec_pem(pem.as_bytes())
                    .map_err(|e| parse_err(e.to_string()))?;
                (
                    json!({"kty": "EC", "crv": "P-256", "x": x, "y": y}),
                    encoding,
                    decoding,
                )
            }
            SigningAlgorithm::RS256 => {
                use rsa::pkcs8::DecodePrivateKey as _;
                use rsa::traits::PublicKeyParts as _;
                let sk = rsa::RsaPrivateKey::from_pkcs8_pem(pem)
                    .map_err(|e| parse_err(e.to_string()))?;
                let bits = sk.size() * 8;
                if bits < MIN_RSA_BITS {
                    return Err(KeyError::RsaTooSmall { bits });
                }
                let n = URL_SAFE_NO_PAD.encode(sk.n().to_bytes_be());
                let e = URL_SAFE_NO_PAD.encode(sk.e().to_bytes_be());
                let decoding = DecodingKey::from_rsa_components(&n, &e)
                    .map_err(|e| parse_err(e.to_string()))?;
                let encoding = EncodingKey::from_rsa_pem(pem.as_bytes())
                    .map_err(|e| parse_err(e.to_string()))?;
                (json!({"kty": "RSA", "n": n, "e": e}), encoding, decoding)
            }
            SigningAlgorithm::EdDSA => {
                use ed25519_dalek::pkcs8::DecodePrivateKey as _;
                let sk = ed25519_dalek::SigningKey::from_pkcs8_pem(pem)
                    .map_err(|e| parse_err(e.to_string()))?;
                let x = URL_SAFE_NO_PAD.encode(sk.verifying_key().to_bytes());
                let decoding =
                    DecodingKey::from_ed_components(&x).map_err(|e| parse_err(e.to_string()))?;
                let encoding = EncodingKey::from_ed_pem(pem.as_bytes())
                    .map_err(|e| parse_err(e.to_string()))?;
                (
                    json!({"kty": "OKP", "crv": "Ed25519", "x": x}),
                    encoding,
                    decoding,
                )
            }
        };
        let mut jwk = public;
        if let Value::Object(map) = &mut jwk {
            map.insert("kid".into(), kid.into());
            map.insert("alg".into(), alg.as_str().into());
            map.insert("use".into(), "sig".into());
        }
        Ok(Self {
            kid: kid.to_owned(),
            alg,
            encoding,
            decoding,
            jwk,
        })
    }

    /// The jsonwebtoken algorithm of this key.
    pub(crate) fn jwt_alg(&self) -> Algorithm {
        jwt_alg(self.alg)
    }
}

/// Maps the config algorithm to jsonwebtoken's.
pub(crate) fn jwt_alg(alg: SigningAlgorithm) -> Algorithm {
    match alg {
        SigningAlgorithm::ES256 => Algorithm::ES256,
        SigningAlgorithm::RS256 => Algorithm::RS256,
        SigningAlgorithm::EdDSA => Algorithm::EdDSA,
    }
}

/// Generates a new private key for `alg` and returns it as PKCS#8 PEM.
pub fn generate_pem(alg: SigningAlgorithm) -> Result<String, KeyError> {
    let gen_err = |e: &dyn std::fmt::Display| KeyError::Generate(e.to_string());
    match alg {
        SigningAlgorithm::ES256 => {
            use p256::pkcs8::{EncodePrivateKey as _, LineEnding};
            let sk = p256::SecretKey::random(&mut p256::elliptic_curve::rand_core::OsRng);
            Ok(sk
                .to_pkcs8_pem(LineEnding::LF)
                .map_err(|e| gen_err(&e))?
                .to_string())
        }
        SigningAlgorithm::RS256 => {
            use rsa::pkcs8::{EncodePrivateKey as _, LineEnding};
            let sk = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, GENERATED_RSA_BITS)
                .map_err(|e| gen_err(&e))?;
            Ok(sk
                .to_pkcs8_pem(LineEnding::LF)
                .map_err(|e| gen_err(&e))?
                .to_string())
        }
        SigningAlgorithm::EdDSA => {
            use ed25519_dalek::pkcs8::{EncodePrivateKey as _, spki::der::pem::LineEnding};
            let sk = ed25519_dalek::SigningKey::generate(
                &mut ed25519_dalek::ed25519::signature::rand_core::OsRng,
            );
            Ok(sk
                .to_pkcs8_pem(LineEnding::LF)
                .map_err(|e| gen_err(&e))?
                .to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_load_and_publish_a_public_jwk() {
        for alg in [SigningAlgorithm::ES256, SigningAlgorithm::EdDSA] {
            let pem = generate_pem(alg).unwrap();
            assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
            let key = SigningKey::from_pem("k1", alg, &pem).unwrap();
            assert_eq!(key.jwk["kid"], "k1");
            assert_eq!(key.jwk["alg"], alg.as_str());
            assert_eq!(key.jwk["use"], "sig");
            assert!(
                key.jwk.get("d").is_none(),
                "private part must never be published"
            );
        }
    }

    #[test]
    fn wrong_key_type_is_refused_without_echoing_the_key() {
        let pem = generate_pem(SigningAlgorithm::EdDSA).unwrap();
        let err = SigningKey::from_pem("k1", SigningAlgorithm::ES256, &pem).unwrap_err();
        assert!(matches!(err, KeyError::Parse { .. }));
        assert!(!err.to_string().contains("PRIVATE KEY"));
        let err = SigningKey::from_pem("k1", SigningAlgorithm::RS256, "garbage").unwrap_err();
        assert!(matches!(err, KeyError::Parse { .. }));
    }
}
