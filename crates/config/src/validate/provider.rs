//! Checks of `oidcProvider`: upstream IdPs, keys, clients, users, lifetimes.

use std::collections::HashSet;

use crate::model::{CacheBackend, GrantType, IntrospectionAllowed, OidcProviderConfig};

use super::validator::Validator;

fn check_upstreams(v: &mut Validator, op: &OidcProviderConfig) {
    v.unique(
        "oidcProvider.upstreams",
        "name",
        op.upstreams.iter().map(|u| u.name.as_str()),
    );
    let mut domains = HashSet::new();
    for (i, u) in op.upstreams.iter().enumerate() {
        let p = format!("oidcProvider.upstreams[{i}]");
        let name_ok = !u.name.is_empty()
            && u.name.len() <= 40
            && u.name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !name_ok {
            v.err(
                format!("{p}.name"),
                format!(
                    "\"{}\" must be 1-40 lower-case letters, digits or -",
                    u.name
                ),
            );
        }
        v.http_url(&format!("{p}.issuer"), &u.issuer);
        if u.client_id.is_empty() {
            v.err(format!("{p}.clientId"), "must not be empty");
        }
        if !u.scopes.iter().any(|s| s == "openid") {
            v.err(format!("{p}.scopes"), "must include \"openid\"");
        }
        if u.subject.is_empty() {
            v.err(
                format!("{p}.subject"),
                "must name at least one claim (default: iss and sub)",
            );
        }
        for (j, claim) in u.subject.iter().enumerate() {
            if matches!(
                claim.as_str(),
                "email" | "preferred_username" | "upn" | "unique_name" | "name" | "phone_number"
            ) {
                v.err(
                    format!("{p}.subject[{j}]"),
                    format!(
                        "\"{claim}\" can change or be chosen (nOAuth): identify users by immutable ids (iss and sub; Entra ID: tid and oid)"
                    ),
                );
            }
        }
        for (claim, from) in &u.claims {
            if matches!(
                claim.as_str(),
                "sub"
                    | "iss"
                    | "aud"
                    | "exp"
                    | "iat"
                    | "nbf"
                    | "nonce"
                    | "sid"
                    | "idp"
                    | "amr"
                    | "acr"
                    | "auth_time"
                    | "azp"
                    | "at_hash"
                    | "email_verified"
                    | "phone_number_verified"
            ) {
                v.err(
                    format!("{p}.claims.{claim}"),
                    "is set by the provider itself (or vouched for by the upstream) and cannot be mapped",
                );
            }
            if from.is_empty() {
                v.err(format!("{p}.claims.{claim}"), "names no upstream claim");
            }
        }
        for (j, d) in u.email_domains.iter().enumerate() {
            let key = format!("{p}.emailDomains[{j}]");
            if d.is_empty() || d.contains(['@', '/', ' ']) {
                v.err(key, format!("\"{d}\" is not a domain name"));
            } else if !domains.insert(d.to_ascii_lowercase()) {
                v.err(
                    key,
                    format!("\"{d}\" is already routed to another upstream"),
                );
            }
        }
    }
    for (i, user) in op.users.iter().enumerate() {
        if user
            .username
            .starts_with(crate::model::UPSTREAM_USERNAME_PREFIX)
        {
            v.err(
                format!("oidcProvider.users[{i}].username"),
                "must not start with \"upstream:\" (reserved for users of upstreams)",
            );
        }
    }
}

pub(super) fn check_provider(v: &mut Validator, op: &OidcProviderConfig, backend: CacheBackend) {
    check_upstreams(v, op);
    if let Some(issuer) = v.http_url("oidcProvider.issuer", &op.issuer) {
        if issuer.query().is_some() || issuer.fragment().is_some() {
            v.err(
                "oidcProvider.issuer",
                "must not have a query or fragment (OpenID Connect Discovery §3)",
            );
        }
    }
    if op.signing_keys.is_empty() && backend == CacheBackend::Redis {
        v.err(
            "oidcProvider.signingKeys",
            "required with cache.backend redis: replicas must sign with the same key",
        );
    }
    v.unique(
        "oidcProvider.signingKeys",
        "key id",
        op.signing_keys.iter().map(|k| k.id.as_str()),
    );
    for (i, k) in op.signing_keys.iter().enumerate() {
        if k.id.is_empty() {
            v.err(
                format!("oidcProvider.signingKeys[{i}].id"),
                "must not be empty",
            );
        }
        if !k.private_key.expose().contains("-----BEGIN") {
            v.err(
                format!("oidcProvider.signingKeys[{i}].privateKey"),
                "is not a PEM private key",
            );
        }
    }
    let t = &op.tokens;
    v.positive(
        "oidcProvider.tokens.authorizationCodeTtl",
        t.authorization_code_ttl,
    );
    v.positive("oidcProvider.tokens.accessTokenTtl", t.access_token_ttl);
    v.positive("oidcProvider.tokens.idTokenTtl", t.id_token_ttl);
    v.positive("oidcProvider.tokens.refreshTokenTtl", t.refresh_token_ttl);
    v.positive("oidcProvider.ssoSessionTtl", op.sso_session_ttl);
    v.unique(
        "oidcProvider.clients",
        "clientId",
        op.clients.iter().map(|c| c.client_id.as_str()),
    );
    for (i, c) in op.clients.iter().enumerate() {
        let p = format!("oidcProvider.clients[{i}]");
        if c.client_id.is_empty() {
            v.err(format!("{p}.clientId"), "must not be empty");
        }
        if c.grant_types.contains(&GrantType::AuthorizationCode) && c.redirect_uris.is_empty() {
            v.err(
                format!("{p}.redirectUris"),
                "at least one is required for the authorization_code grant",
            );
        }
        if c.client_secret.is_none() && c.grant_types.contains(&GrantType::ClientCredentials) {
            v.err(
                format!("{p}.grantTypes"),
                "client_credentials needs a clientSecret (a public client cannot use it)",
            );
        }
        if c.client_secret
            .as_ref()
            .is_some_and(|s| s.expose().is_empty())
        {
            v.err(format!("{p}.clientSecret"), "is empty");
        }
        for (j, uri) in c.redirect_uris.iter().enumerate() {
            redirect_uri(v, &format!("{p}.redirectUris[{j}]"), uri);
        }
        if c.client_secret.is_none() && c.introspection_allowed != IntrospectionAllowed::All(false)
        {
            v.err(
                format!("{p}.introspectionAllowed"),
                "needs a clientSecret (a public client cannot introspect)",
            );
        }
        if let IntrospectionAllowed::Clients(ids) = &c.introspection_allowed {
            for (j, id) in ids.iter().enumerate() {
                if !op.clients.iter().any(|o| &o.client_id == id) {
                    v.err(
                        format!("{p}.introspectionAllowed[{j}]"),
                        format!("\"{id}\" is not a configured clientId"),
                    );
                }
            }
        }
        for (j, uri) in c.post_logout_redirect_uris.iter().enumerate() {
            redirect_uri(v, &format!("{p}.postLogoutRedirectUris[{j}]"), uri);
        }
    }
    v.unique(
        "oidcProvider.users",
        "username",
        op.users.iter().map(|u| u.username.as_str()),
    );
    for (i, u) in op.users.iter().enumerate() {
        if u.username.is_empty() {
            v.err(
                format!("oidcProvider.users[{i}].username"),
                "must not be empty",
            );
        }
        if !u.password_hash.expose().starts_with("$argon2") {
            v.err(
                format!("oidcProvider.users[{i}].passwordHash"),
                "is not an argon2 PHC string (`orchestrator hash-password` prints one)",
            );
        }
    }
    let th = &op.login_throttle;
    if th.max_failures_per_user == 0 || th.max_failures_per_ip == 0 {
        v.err(
            "oidcProvider.loginThrottle",
            "failure limits must be at least 1",
        );
    }
    v.positive("oidcProvider.loginThrottle.window", th.window);
    v.positive("oidcProvider.loginThrottle.delay", th.delay);
    if th.max_delay < th.delay {
        v.err(
            "oidcProvider.loginThrottle.maxDelay",
            "must be at least loginThrottle.delay",
        );
    }
    if th.max_concurrent_per_user == 0 {
        v.err(
            "oidcProvider.loginThrottle.maxConcurrentPerUser",
            "must be at least 1",
        );
    }
}

/// A registered redirect URI: absolute, no fragment (RFC 6749 §3.1.2).
fn redirect_uri(v: &mut Validator, path: &str, uri: &str) {
    match url::Url::parse(uri) {
        Ok(u) if u.fragment().is_some() => {
            v.err(path, format!("\"{uri}\" must not contain a fragment"))
        }
        Ok(u) if u.cannot_be_a_base() => v.err(path, format!("\"{uri}\" is not an absolute URI")),
        Ok(_) => {}
        Err(_) => v.err(path, format!("\"{uri}\" is not an absolute URI")),
    }
}
