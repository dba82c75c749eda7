//! The JSON Web Key Set (RFC 7517 §5): every configured key's public half,
//! so tokens signed by a key being rotated out still verify.

use serde_json::{Value, json};

use crate::state::Provider;

/// The JWKS document; rendered once per config.
pub(crate) fn document(p: &Provider) -> Value {
    json!({ "keys": p.keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>() })
}
