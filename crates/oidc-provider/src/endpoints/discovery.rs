//! OpenID Provider Metadata (OpenID Connect Discovery 1.0 §3, RFC 8414).

use serde_json::{Value, json};

use crate::clients::STANDARD_SCOPES;
use crate::state::Provider;
use crate::users::supported_claims;

/// The discovery document; rendered once per config.
pub(crate) fn document(p: &Provider) -> Value {
    let mut algs: Vec<&str> = p.keys.iter().map(|k| k.alg.as_str()).collect();
    algs.dedup();
    let mut auth_methods = vec!["client_secret_basic", "client_secret_post"];
    if p.clients.any_public() {
        auth_methods.push("none");
    }
    json!({
        "issuer": p.issuer,
        "authorization_endpoint": p.endpoint("/authorize"),
        "token_endpoint": p.endpoint("/token"),
        "userinfo_endpoint": p.endpoint("/userinfo"),
        "jwks_uri": p.endpoint("/jwks"),
        "introspection_endpoint": p.endpoint("/introspect"),
        "revocation_endpoint": p.endpoint("/revoke"),
        "end_session_endpoint": p.endpoint("/end_session"),
        "backchannel_logout_supported": true,
        "backchannel_logout_session_supported": true,
        "scopes_supported": STANDARD_SCOPES,
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": algs,
        "token_endpoint_auth_methods_supported": auth_methods,
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "code_challenge_methods_supported": ["S256"],
        "claims_supported": supported_claims(),
        "claim_types_supported": ["normal"],
        "claims_parameter_supported": false,
        "request_parameter_supported": false,
        "request_uri_parameter_supported": false,
        "require_request_uri_registration": false,
        "prompt_values_supported": ["none", "login", "consent", "select_account"],
        "authorization_response_iss_parameter_supported": true,
        "frontchannel_logout_supported": false,
    })
}
