//! The session id: a random 256-bit token, the keys the store files a
//! session under (hashes, never the id), and the sealing of a session's
//! refresh token with a key only the id gives.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore as _;
use sha2::{Digest, Sha256};

/// A random 256-bit token; in the cookie as base64url without padding (43
/// characters), in memory as its 32 bytes (no allocation per session key).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionId([u8; 32]);

impl SessionId {
    /// A fresh random id from the OS-seeded CSPRNG.
    pub fn random() -> Self {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// Parses a cookie value; anything that is not exactly a 256-bit
    /// base64url token is no session at all.
    pub fn parse(value: &str) -> Option<Self> {
        if value.len() != 43 {
            return None;
        }
        // 43 characters decode to 32 bytes (the buffer is the decoder's
        // estimate); the engine refuses non-canonical spellings of the same
        // bytes (non-zero trailing bits).
        let mut buf = [0u8; 33];
        match URL_SAFE_NO_PAD.decode_slice(value, &mut buf) {
            Ok(32) => {
                let mut bytes = [0u8; 32];
                bytes.copy_from_slice(&buf[..32]);
                Some(Self(bytes))
            }
            _ => None,
        }
    }

    /// The cookie value.
    pub fn expose(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }

    /// The sign-out form's token: derived from the id, so only a page that
    /// was served to this session's browser can carry it (a cross-site form
    /// cannot read it), and it needs no storage.
    pub(crate) fn logout_token(&self) -> String {
        let mut h = Sha256::new();
        h.update(b"orchestrator logout\0");
        h.update(self.0);
        URL_SAFE_NO_PAD.encode(h.finalize())
    }

    /// The raw bytes (a key for per-session caches in this process).
    pub(crate) fn bytes(&self) -> [u8; 32] {
        self.0
    }

    /// The key under which the backend stores it: a hash, never the id itself.
    pub(super) fn storage_key(&self, prefix: &str) -> String {
        storage_key(prefix, &self.expose())
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionId([redacted])")
    }
}

/// The key of a back-channel logout marker: a digest of the IdP and the
/// `sid` or `sub` it names.
pub(super) fn logout_key(prefix: &str, idp: &str, value: &str) -> String {
    let mut h = Sha256::new();
    h.update(idp.as_bytes());
    h.update([0]);
    h.update(value.as_bytes());
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(h.finalize()))
}

pub(super) fn storage_key(prefix: &str, secret: &str) -> String {
    let digest = Sha256::digest(secret.as_bytes());
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(digest))
}

/// The AES-256-GCM key that seals a session's refresh token: derived from
/// the session id, which the store never holds (it keys by the id's hash).
fn refresh_key(id: &SessionId) -> ring::aead::LessSafeKey {
    let mut h = Sha256::new();
    h.update(b"orchestrator refresh token\0");
    h.update(id.0);
    let unbound = ring::aead::UnboundKey::new(&ring::aead::AES_256_GCM, &h.finalize())
        .unwrap_or_else(|_| unreachable!("a SHA-256 digest is an AES-256 key"));
    ring::aead::LessSafeKey::new(unbound)
}

/// `token` sealed for session `id`: base64url of a random nonce and the
/// ciphertext with its tag.
pub(super) fn seal_refresh(id: &SessionId, token: &str) -> Box<str> {
    let mut nonce = [0u8; ring::aead::NONCE_LEN];
    rand::rng().fill_bytes(&mut nonce);
    let mut buf = token.as_bytes().to_vec();
    // Sealing fails only for inputs beyond AES-GCM's limit (64 GiB).
    if refresh_key(id)
        .seal_in_place_append_tag(
            ring::aead::Nonce::assume_unique_for_key(nonce),
            ring::aead::Aad::empty(),
            &mut buf,
        )
        .is_err()
    {
        buf.clear();
    }
    let mut out = nonce.to_vec();
    out.extend_from_slice(&buf);
    URL_SAFE_NO_PAD.encode(out).into_boxed_str()
}

pub(super) fn open_refresh(id: &SessionId, sealed: &str) -> Option<String> {
    let bytes = URL_SAFE_NO_PAD.decode(sealed).ok()?;
    let (nonce, rest) = bytes.split_at_checked(ring::aead::NONCE_LEN)?;
    let nonce = ring::aead::Nonce::try_assume_unique_for_key(nonce).ok()?;
    let mut rest = rest.to_vec();
    let plain = refresh_key(id)
        .open_in_place(nonce, ring::aead::Aad::empty(), &mut rest)
        .ok()?;
    String::from_utf8(plain.to_vec()).ok()
}

/// Milliseconds since the Unix epoch.
pub(super) fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Seconds since the Unix epoch.
pub(crate) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_are_random_256_bit_tokens() {
        let a = SessionId::random();
        let b = SessionId::random();
        assert_ne!(a, b);
        assert_eq!(a.expose().len(), 43);
        assert_eq!(SessionId::parse(&a.expose()), Some(a));
        assert!(SessionId::parse("short").is_none());
        assert!(SessionId::parse(&format!("{}=", &a.expose()[..42])).is_none());
        assert!(SessionId::parse(&"+".repeat(43)).is_none());
        assert_eq!(format!("{a:?}"), "SessionId([redacted])");
    }
}
