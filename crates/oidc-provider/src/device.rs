//! Known-device cookies (OWASP's "device cookies"): after a right password
//! the browser gets a cookie naming the user and its expiry, MACed with a key
//! derived from the signing keys. A sign-in that presents it for the same
//! user is exempt from the per-user delay (see `throttle`): a guesser spread
//! over many addresses slows down everybody else who types that user name,
//! but never the person who signed in from this browser before. The per-IP
//! and per-(user, IP) limits still apply to it.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::hmac;

use crate::keys::SigningKey;
use crate::tokens::now;

/// Name of the known-device cookie.
pub(crate) const DEVICE_COOKIE: &str = "oidc_device";

/// How long a browser stays known after its last sign-in.
pub(crate) const LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);

/// HKDF info of the MAC key.
const PURPOSE: &[u8] = b"known-device/v1";

fn tag(key: &hmac::Key, user: &str, exp: u64) -> hmac::Tag {
    let mut ctx = hmac::Context::with_key(key);
    ctx.update(&exp.to_be_bytes());
    ctx.update(user.as_bytes());
    ctx.sign()
}

/// The cookie value for `user`, signed with the active key.
pub(crate) fn issue(key: &SigningKey, user: &str) -> Option<String> {
    let mac = key.tx_key.mac_key(PURPOSE)?;
    let exp = now().saturating_add(LIFETIME.as_secs());
    let mut value = exp.to_be_bytes().to_vec();
    value.extend_from_slice(tag(&mac, user, exp).as_ref());
    Some(URL_SAFE_NO_PAD.encode(value))
}

/// True when `value` was issued for `user` by one of `keys` and has not expired.
pub(crate) fn recognises(keys: &[SigningKey], user: &str, value: &str) -> bool {
    let Ok(raw) = URL_SAFE_NO_PAD.decode(value) else {
        return false;
    };
    let Some((exp, mac)) = raw.split_first_chunk::<8>() else {
        return false;
    };
    let exp = u64::from_be_bytes(*exp);
    if exp <= now() {
        return false;
    }
    let mut message = exp.to_be_bytes().to_vec();
    message.extend_from_slice(user.as_bytes());
    keys.iter().any(|k| {
        k.tx_key
            .mac_key(PURPOSE)
            .is_some_and(|key| hmac::verify(&key, &message, mac).is_ok())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use orchestrator_config::SigningAlgorithm;

    #[test]
    fn a_device_cookie_names_one_user_and_one_key_set() {
        let pem = crate::keys::generate_pem(SigningAlgorithm::ES256).unwrap();
        let key = SigningKey::from_pem("k", SigningAlgorithm::ES256, &pem).unwrap();
        let other_pem = crate::keys::generate_pem(SigningAlgorithm::ES256).unwrap();
        let other = SigningKey::from_pem("o", SigningAlgorithm::ES256, &other_pem).unwrap();
        let value = issue(&key, "alice").unwrap();
        let keys = std::slice::from_ref(&key);
        assert!(recognises(keys, "alice", &value));
        assert!(!recognises(keys, "bob", &value), "another user");
        assert!(
            !recognises(std::slice::from_ref(&other), "alice", &value),
            "another key"
        );
        let mut forged = URL_SAFE_NO_PAD.decode(&value).unwrap();
        forged[0] ^= 1;
        assert!(
            !recognises(keys, "alice", &URL_SAFE_NO_PAD.encode(forged)),
            "expiry changed"
        );
        assert!(!recognises(keys, "alice", "short"));
    }
}
