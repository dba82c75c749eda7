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
    /// Signing with a loaded key failed.
    #[error("signing failed: {0}")]
    Sign(&'static str),
}

/// One loaded key: what signs, what verifies, and what JWKS publishes.
pub(crate) struct SigningKey {
    pub(crate) kid: String,
    pub(crate) alg: SigningAlgorithm,
    pub(crate) encoding: EncodingKey,
    pub(crate) decoding: DecodingKey,
    /// The same private key loaded into ring, which signs ~10x faster than
    /// the RustCrypto curves behind `encoding` (measured: ES256 ~580 µs →
    /// ~60 µs here); `encoding` remains the fallback.
    signer: Option<RingSigner>,
    /// The public JWK (kty, crv/x/y or n/e, kid, alg, use).
    pub(crate) jwk: Value,
    /// The key that seals login transactions, derived from the private key.
    pub(crate) tx_key: crate::derived::TxKey,
}

/// A ring key pair for one algorithm.
enum RingSigner {
    Ecdsa(ring::signature::EcdsaKeyPair),
    Rsa(ring::signature::RsaKeyPair),
    Ed25519(ring::signature::Ed25519KeyPair),
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
        let (public, encoding, decoding, der) = match alg {
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
                let der = p256::pkcs8::EncodePrivateKey::to_pkcs8_der(&sk).ok();
                (
                    json!({"kty": "EC", "crv": "P-256", "x": x, "y": y}),
                    encoding,
                    decoding,
                    der,
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
                let der = rsa::pkcs8::EncodePrivateKey::to_pkcs8_der(&sk).ok();
                (
                    json!({"kty": "RSA", "n": n, "e": e}),
                    encoding,
                    decoding,
                    der,
                )
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
                let der = ed25519_dalek::pkcs8::EncodePrivateKey::to_pkcs8_der(&sk).ok();
                (
                    json!({"kty": "OKP", "crv": "Ed25519", "x": x}),
                    encoding,
                    decoding,
                    der,
                )
            }
        };
        let mut jwk = public;
        if let Value::Object(map) = &mut jwk {
            map.insert("kid".into(), kid.into());
            map.insert("alg".into(), alg.as_str().into());
            map.insert("use".into(), "sig".into());
        }
        // The canonical DER when the parser re-encodes it (so formatting of
        // the PEM does not matter), the PEM text otherwise.
        let tx_key = crate::derived::TxKey::derive(
            der.as_ref()
                .map_or(pem.trim().as_bytes(), |der| der.as_bytes()),
        )
        .ok_or_else(|| KeyError::Generate("login-transaction key derivation".into()))?;
        let signer = der.and_then(|der| RingSigner::from_pkcs8(alg, der.as_bytes()));
        Ok(Self {
            kid: kid.to_owned(),
            alg,
            encoding,
            decoding,
            signer,
            jwk,
            tx_key,
        })
    }

    /// Signs a JWS signing input (`b64(header).b64(payload)`), returning the
    /// raw JWS signature (r||s for ECDSA, as RFC 7518 §3.4 wants).
    pub(crate) fn sign_input(&self, input: &[u8]) -> Result<Vec<u8>, KeyError> {
        let fail = KeyError::Sign;
        match &self.signer {
            Some(RingSigner::Ecdsa(kp)) => kp
                .sign(&ring::rand::SystemRandom::new(), input)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| fail("ecdsa")),
            Some(RingSigner::Rsa(kp)) => {
                let mut sig = vec![0; kp.public().modulus_len()];
                kp.sign(
                    &ring::signature::RSA_PKCS1_SHA256,
                    &ring::rand::SystemRandom::new(),
                    input,
                    &mut sig,
                )
                .map_err(|_| fail("rsa"))?;
                Ok(sig)
            }
            Some(RingSigner::Ed25519(kp)) => Ok(kp.sign(input).as_ref().to_vec()),
            None => {
                let sig = jsonwebtoken::crypto::sign(input, &self.encoding, self.jwt_alg())
                    .map_err(|_| fail("jsonwebtoken"))?;
                URL_SAFE_NO_PAD.decode(sig).map_err(|_| fail("encoding"))
            }
        }
    }

    /// The jsonwebtoken algorithm of this key.
    pub(crate) fn jwt_alg(&self) -> Algorithm {
        jwt_alg(self.alg)
    }
}

impl RingSigner {
    /// ring's view of the key; `None` (and the jsonwebtoken path) if ring
    /// declines the encoding.
    fn from_pkcs8(alg: SigningAlgorithm, der: &[u8]) -> Option<Self> {
        use ring::signature::{
            ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, RsaKeyPair,
        };
        let rng = ring::rand::SystemRandom::new();
        match alg {
            SigningAlgorithm::ES256 => {
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der, &rng)
                    .ok()
                    .map(Self::Ecdsa)
            }
            SigningAlgorithm::RS256 => RsaKeyPair::from_pkcs8(der).ok().map(Self::Rsa),
            SigningAlgorithm::EdDSA => Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
                .ok()
                .map(Self::Ed25519),
        }
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
            assert!(key.signer.is_some(), "ring loads {alg:?} keys");
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
