//! Key material derived from a signing key's private part (HKDF-SHA256):
//! the AES-256-GCM keys of sealed login transactions ([`crate::seal`]) and
//! MAC keys for other values the provider hands out ([`crate::device`]).
//! Every replica with the same signing keys derives the same material.

use ring::aead::{AES_256_GCM, LessSafeKey, UnboundKey};
use ring::hkdf;
use ring::hkdf::Prk;

/// HKDF salt: names what the derived key is for, so it is never the key of
/// anything else derived from the same signing key.
const SALT: &[u8] = b"orchestrator-oidc login transaction";
/// HKDF info and AEAD associated data, versioned with the format.
pub(crate) const CONTEXT: &[u8] = b"tx/v1";
/// Length of the per-seal salt.
pub(crate) const SALT_LEN: usize = 16;

/// The HKDF secret that login-transaction keys are expanded from, derived
/// from one signing key.
pub(crate) struct TxKey(Prk);

impl TxKey {
    /// Extracts the secret from a signing key's private material (PKCS#8 DER).
    pub(crate) fn derive(secret: &[u8]) -> Option<Self> {
        let key = Self(hkdf::Salt::new(hkdf::HKDF_SHA256, SALT).extract(secret));
        // One expansion now proves the secret usable, so sealing cannot fail later.
        key.seal_key(&[0; SALT_LEN]).map(|_| key)
    }

    /// An HMAC-SHA256 key for `purpose` (an HKDF info distinct from every
    /// seal's), for other values the provider hands out and must recognise.
    pub(crate) fn mac_key(&self, purpose: &'static [u8]) -> Option<ring::hmac::Key> {
        let info = [purpose];
        let okm = self.0.expand(&info, ring::hmac::HMAC_SHA256).ok()?;
        Some(ring::hmac::Key::from(okm))
    }

    /// The AES-256-GCM key of the seal with `salt`.
    pub(crate) fn seal_key(&self, salt: &[u8; SALT_LEN]) -> Option<LessSafeKey> {
        // `expand` only fails for outputs longer than 255 hash lengths.
        let info = [CONTEXT, salt.as_slice()];
        let okm = self.0.expand(&info, &AES_256_GCM).ok()?;
        Some(LessSafeKey::new(UnboundKey::from(okm)))
    }
}
