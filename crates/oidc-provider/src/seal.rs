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
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::derived::{CONTEXT, SALT_LEN};
use crate::error::{ErrorCode, OAuthError};
use crate::keys::SigningKey;
use crate::store::PendingAuthorization;
use crate::tokens::now;

/// Version byte in front of every sealed transaction.
const VERSION: u8 = 1;

/// What a sealed value holds.
#[derive(Deserialize)]
struct Sealed<T> {
    /// Seconds since the epoch after which the value is refused.
    exp: u64,
    p: T,
}

/// [`Sealed`] as written, borrowing the value.
#[derive(Serialize)]
struct SealedRef<'a, T> {
    exp: u64,
    p: &'a T,
}

/// A login transaction opened from its `tx` value.
pub(crate) struct LoginTx {
    pub(crate) pending: PendingAuthorization,
    pub(crate) expires_at: u64,
}

/// What a sealed value is for; bound into the AEAD's associated data, so a
/// value sealed as one kind never opens as another.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    /// A login form's `tx`.
    LoginTx,
    /// The `state` of a login at an upstream IdP.
    UpstreamState,
    /// The `state` of a logout at an upstream IdP: where to go afterwards.
    UpstreamLogout,
    /// The sign-out confirmation form's token.
    LogoutConfirmation,
}

impl Kind {
    fn aad(self) -> &'static [u8] {
        match self {
            // The transaction's AAD is the derivation context, as before kinds.
            Self::LoginTx => CONTEXT,
            Self::UpstreamState => b"upstream-state/v1",
            Self::UpstreamLogout => b"upstream-logout/v1",
            Self::LogoutConfirmation => b"logout-confirmation/v1",
        }
    }
}

/// Seals `pending` with the active key, valid until `expires_at`.
pub(crate) fn seal(
    key: &SigningKey,
    pending: &PendingAuthorization,
    expires_at: u64,
) -> Result<String, OAuthError> {
    seal_value(key, Kind::LoginTx, pending, expires_at)
}

/// Seals `value` as `kind` with `key`, valid until `expires_at`.
pub(crate) fn seal_value<T: Serialize>(
    key: &SigningKey,
    kind: Kind,
    value: &T,
    expires_at: u64,
) -> Result<String, OAuthError> {
    let fail = || OAuthError::new(ErrorCode::ServerError, "could not seal the login request");
    let mut buf = serde_json::to_vec(&SealedRef {
        exp: expires_at,
        p: value,
    })
    .map_err(|_| fail())?;
    let salt: [u8; SALT_LEN] = rand::random();
    let nonce: [u8; NONCE_LEN] = rand::random();
    key.tx_key
        .seal_key(&salt)
        .ok_or_else(fail)?
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(kind.aad()),
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
    open_value(keys, Kind::LoginTx, tx).map(|(pending, expires_at)| LoginTx {
        pending,
        expires_at,
    })
}

/// Opens a value sealed as `kind` with any configured key, with its expiry;
/// `None` when it is not ours, another kind, tampered with, or expired.
pub(crate) fn open_value<T: DeserializeOwned>(
    keys: &[SigningKey],
    kind: Kind,
    sealed: &str,
) -> Option<(T, u64)> {
    // Bounded before decoding: it comes from a query string.
    if sealed.len() > 8192 {
        return None;
    }
    let raw = URL_SAFE_NO_PAD.decode(sealed).ok()?;
    let (&version, rest) = raw.split_first()?;
    if version != VERSION || rest.len() < SALT_LEN + NONCE_LEN {
        return None;
    }
    let (salt, rest) = rest.split_at(SALT_LEN);
    let salt: &[u8; SALT_LEN] = salt.try_into().ok()?;
    let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
    for key in keys {
        let mut buf = ciphertext.to_vec();
        let Ok(nonce) = Nonce::try_assume_unique_for_key(nonce) else {
            return None;
        };
        let Some(aead) = key.tx_key.seal_key(salt) else {
            continue;
        };
        let Ok(plain) = aead.open_in_place(nonce, Aad::from(kind.aad()), &mut buf) else {
            continue;
        };
        let sealed: Sealed<T> = serde_json::from_slice(plain).ok()?;
        if sealed.exp <= now() {
            return None;
        }
        return Some((sealed.p, sealed.exp));
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
            fresh_login: false,
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
    fn a_value_sealed_as_one_kind_never_opens_as_another() {
        let k = key("k");
        let tx = seal(&k, &pending(), now() + 60).unwrap();
        let as_state: Option<(PendingAuthorization, u64)> =
            open_value(std::slice::from_ref(&k), Kind::UpstreamState, &tx);
        assert!(as_state.is_none());
        let state = seal_value(&k, Kind::UpstreamState, &pending(), now() + 60).unwrap();
        assert!(open(std::slice::from_ref(&k), &state).is_none());
        assert!(
            open_value::<PendingAuthorization>(
                std::slice::from_ref(&k),
                Kind::UpstreamState,
                &state
            )
            .is_some()
        );
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
