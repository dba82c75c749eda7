//! Sealed login transactions: the pending authorization travels in the login
//! form's `tx` field, encrypted and authenticated (AES-256-GCM from ring), so
//! showing the login page stores nothing and unauthenticated traffic cannot
//! fill the cache.
//!
//! The AEAD keys are derived (HKDF-SHA256) from the private material of the
//! configured signing keys, so every replica with the same keys opens what
//! another sealed; new transactions are sealed with the active key, and all
//! configured keys are tried when opening, so a key rotation does not break
//! a login in progress.
//!
//! Anonymous `/authorize` requests make seals, as many as an attacker likes,
//! so no AES-GCM key is used for more than one: each seal draws a random
//! 128-bit salt and expands its own key from the signing key's HKDF secret
//! (the salt travels in front of the ciphertext). A repeated nonce, the
//! failure that would let an attacker forge transactions, then needs a
//! repeated salt too. Single use is not the seal's job: the login endpoint
//! claims a marker keyed by the transaction's digest after the password check.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::aead::{Aad, NONCE_LEN, Nonce};
use serde::{Deserialize, Serialize};

use crate::derived::{CONTEXT, SALT_LEN};
use crate::error::{ErrorCode, OAuthError};
use crate::keys::SigningKey;
use crate::store::PendingAuthorization;
use crate::tokens::now;

/// Version byte in front of every sealed transaction.
const VERSION: u8 = 1;

/// What a sealed transaction holds.
#[derive(Deserialize)]
struct Sealed {
    /// Seconds since the epoch after which the transaction is refused.
    exp: u64,
    p: PendingAuthorization,
}

/// [`Sealed`] as written, borrowing the request.
#[derive(Serialize)]
struct SealedRef<'a> {
    exp: u64,
    p: &'a PendingAuthorization,
}

/// A login transaction opened from its `tx` value.
pub(crate) struct LoginTx {
    pub(crate) pending: PendingAuthorization,
    pub(crate) expires_at: u64,
}

/// Seals `pending` with the active key, valid until `expires_at`.
pub(crate) fn seal(
    key: &SigningKey,
    pending: &PendingAuthorization,
    expires_at: u64,
) -> Result<String, OAuthError> {
    let fail = || OAuthError::new(ErrorCode::ServerError, "could not seal the login request");
    let mut buf = serde_json::to_vec(&SealedRef {
        exp: expires_at,
        p: pending,
    })
    .map_err(|_| fail())?;
    let salt: [u8; SALT_LEN] = rand::random();
    let nonce: [u8; NONCE_LEN] = rand::random();
    key.tx_key
        .seal_key(&salt)
        .ok_or_else(fail)?
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(CONTEXT),
            &mut buf,
        )
        .map_err(|_| fail())?;
    let mut out = Vec::with_capacity(1 + SALT_LEN + NONCE_LEN + buf.len());
    out.push(VERSION);
    out.extend_from_slice(&salt);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&buf);
    Ok(URL_SAFE_NO_PAD.encode(out))
}

/// Opens a `tx` value with any configured key; `None` when it is not ours,
/// was tampered with, or has expired.
pub(crate) fn open(keys: &[SigningKey], tx: &str) -> Option<LoginTx> {
    let raw = URL_SAFE_NO_PAD.decode(tx).ok()?;
    let (&version, rest) = raw.split_first()?;
    if version != VERSION || rest.len() < SALT_LEN + NONCE_LEN {
        return None;
    }
    let (salt, rest) = rest.split_at(SALT_LEN);
    let salt: &[u8; SALT_LEN] = salt.try_into().ok()?;
    let (nonce, sealed) = rest.split_at(NONCE_LEN);
    for key in keys {
        let mut buf = sealed.to_vec();
        let Ok(nonce) = Nonce::try_assume_unique_for_key(nonce) else {
            return None;
        };
        let Some(aead) = key.tx_key.seal_key(salt) else {
            continue;
        };
        let Ok(plain) = aead.open_in_place(nonce, Aad::from(CONTEXT), &mut buf) else {
            continue;
        };
        let sealed: Sealed = serde_json::from_slice(plain).ok()?;
        if sealed.exp <= now() {
            return None;
        }
        return Some(LoginTx {
            pending: sealed.p,
            expires_at: sealed.exp,
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use orchestrator_config::SigningAlgorithm;

    fn key(kid: &str) -> SigningKey {
        let pem = crate::keys::generate_pem(SigningAlgorithm::ES256).unwrap();
        SigningKey::from_pem(kid, SigningAlgorithm::ES256, &pem).unwrap()
    }

    fn pending() -> PendingAuthorization {
        PendingAuthorization {
            client_id: "app".into(),
            redirect_uri: "http://app.test/cb".into(),
            scope: "openid".into(),
            state: Some("st".into()),
            nonce: None,
            code_challenge: None,
            login_hint: None,
            csrf: "c".repeat(43),
        }
    }

    #[test]
    fn opens_with_any_configured_key_and_refuses_tampering_expiry_and_strangers() {
        let (old, new, stranger) = (key("old"), key("new"), key("x"));
        let tx = seal(&old, &pending(), now() + 60).unwrap();
        // After a rotation the old key is second: still opens.
        let keys = [new, old];
        let opened = open(&keys, &tx).expect("opens");
        assert_eq!(opened.pending.state.as_deref(), Some("st"));
        assert!(open(std::slice::from_ref(&stranger), &tx).is_none());

        let mut bytes = URL_SAFE_NO_PAD.decode(&tx).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert!(open(&keys, &URL_SAFE_NO_PAD.encode(&bytes)).is_none());
        assert!(open(&keys, "garbage!").is_none());
        assert!(open(&keys, "").is_none());

        let expired = seal(&keys[0], &pending(), now().saturating_sub(1)).unwrap();
        assert!(open(&keys, &expired).is_none());
    }

    #[test]
    fn the_same_key_material_opens_across_replicas() {
        let pem = crate::keys::generate_pem(SigningAlgorithm::EdDSA).unwrap();
        let a = SigningKey::from_pem("k", SigningAlgorithm::EdDSA, &pem).unwrap();
        let b = SigningKey::from_pem("k", SigningAlgorithm::EdDSA, &pem).unwrap();
        let tx = seal(&a, &pending(), now() + 60).unwrap();
        assert!(open(std::slice::from_ref(&b), &tx).is_some());
    }
}
