//! Checks of `appGateway`: identity providers, sessions, apps, bearer tokens.

use std::collections::HashSet;
use std::time::Duration;

use crate::model::{AppGatewayConfig, BearerConfig, CacheBackend};

use super::validator::Validator;

/// Asymmetric JWS algorithms a bearer token may use; `none` and the HMAC
/// family never (an HMAC "verified" with a public key is the classic
/// algorithm-confusion forgery).
const BEARER_ALGORITHMS: [&str; 8] = [
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384",
];

fn check_bearer(v: &mut Validator, p: &str, bearer: &BearerConfig) {
    if bearer.audiences.is_empty() || bearer.audiences.iter().any(String::is_empty) {
        v.err(
            format!("{p}.audiences"),
            "must list the audience(s) the app's tokens are issued for",
        );
    }
    if bearer.algorithms.is_empty() {
        v.err(
            format!("{p}.algorithms"),
            "must list at least one algorithm",
        );
    }
    for (i, alg) in bearer.algorithms.iter().enumerate() {
        if !BEARER_ALGORITHMS.contains(&alg.as_str()) && alg != "EdDSA" {
            v.err(
                format!("{p}.algorithms[{i}]"),
                format!(
                    "\"{alg}\" is not accepted: use {} or EdDSA (none and HS* are never allowed)",
                    BEARER_ALGORITHMS.join(", ")
                ),
            );
        }
    }
    v.positive(
        &format!("{p}.introspectionCacheTtl"),
        bearer.introspection_cache_ttl,
    );
    if bearer.introspection_cache_ttl > Duration::from_secs(300) {
        v.err(
            format!("{p}.introspectionCacheTtl"),
            "must be at most 5m (a revoked token stays usable that long)",
        );
    }
}

pub(super) fn check_gateway(v: &mut Validator, gw: &AppGatewayConfig, backend: CacheBackend) {
    v.abs_path("appGateway.callbackPath", &gw.callback_path);
    v.abs_path("appGateway.logoutPath", &gw.logout_path);
    v.abs_path("appGateway.loginPath", &gw.login_path);
    v.abs_path("appGateway.authPath", &gw.auth_path);
    v.abs_path(
        "appGateway.backchannelLogoutPath",
        &gw.backchannel_logout_path,
    );
    let own = [
        &gw.callback_path,
        &gw.logout_path,
        &gw.login_path,
        &gw.auth_path,
        &gw.backchannel_logout_path,
    ];
    let distinct: HashSet<&String> = own.iter().copied().collect();
    if distinct.len() != own.len() {
        v.err(
            "appGateway",
            "callbackPath, logoutPath, loginPath, authPath and backchannelLogoutPath must be different paths",
        );
    }
    let s = &gw.session;
    let cookie_ok = !s.cookie_name.is_empty()
        && s.cookie_name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !cookie_ok {
        v.err(
            "appGateway.session.cookieName",
            format!("\"{}\" is not a valid cookie name", s.cookie_name),
        );
    }
    if let Some(domain) = &s.cookie_domain {
        let labels: Vec<&str> = domain.split('.').collect();
        let dns = labels.len() >= 2
            && labels.iter().all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && !l.starts_with('-')
                    && !l.ends_with('-')
            })
            && domain.parse::<std::net::IpAddr>().is_err()
            && !labels.iter().all(|l| l.bytes().all(|b| b.is_ascii_digit()));
        if !dns {
            v.err(
                "appGateway.session.cookieDomain",
                format!(
                    "\"{domain}\" is not a parent domain name like example.com (no leading dot, no port, not an address)"
                ),
            );
        }
    }
    v.positive("appGateway.session.maxLifetime", s.max_lifetime);
    v.positive("appGateway.session.idleTimeout", s.idle_timeout);
    if s.idle_timeout > s.max_lifetime {
        v.err(
            "appGateway.session.idleTimeout",
            "must not be longer than session.maxLifetime",
        );
    }
    if s.max_entries == 0 {
        v.err("appGateway.session.maxEntries", "must be at least 1");
    }
    v.positive("appGateway.assertionTtl", gw.assertion_ttl);
    v.positive("appGateway.pendingLoginTtl", gw.pending_login_ttl);
    if gw.max_pending_login_bytes < 64 * 1024 {
        v.err(
            "appGateway.maxPendingLoginBytes",
            "must be at least 65536 (64 KiB): every login in progress needs room",
        );
    }
    v.positive(
        "appGateway.upstreamConnectTimeout",
        gw.upstream_connect_timeout,
    );
    v.positive(
        "appGateway.upstreamResponseTimeout",
        gw.upstream_response_timeout,
    );
    v.unique(
        "appGateway.assertionSigningKeys",
        "key id",
        gw.assertion_signing_keys.iter().map(|k| k.id.as_str()),
    );

    v.unique(
        "appGateway.identityProviders",
        "name",
        gw.identity_providers.iter().map(|p| p.name.as_str()),
    );
    for (i, idp) in gw.identity_providers.iter().enumerate() {
        let p = format!("appGateway.identityProviders[{i}]");
        v.http_url(&format!("{p}.issuer"), &idp.issuer);
        if idp.client_id.is_empty() {
            v.err(format!("{p}.clientId"), "must not be empty");
        }
        if !idp.scopes.iter().any(|s| s == "openid") {
            v.err(format!("{p}.scopes"), "must include \"openid\"");
        }
    }

    v.unique(
        "appGateway.apps",
        "name",
        gw.apps.iter().map(|a| a.name.as_str()),
    );
    let mut routes = HashSet::new();
    for (i, app) in gw.apps.iter().enumerate() {
        let p = format!("appGateway.apps[{i}]");
        if app.name.is_empty() {
            v.err(format!("{p}.name"), "must not be empty");
        }
        if app.host.is_empty() || app.host.contains(['/', ' ']) {
            v.err(
                format!("{p}.host"),
                format!("\"{}\" is not a host name (or \"*\")", app.host),
            );
        }
        v.abs_path(&format!("{p}.pathPrefix"), &app.path_prefix);
        if !routes.insert((app.host.to_ascii_lowercase(), app.path_prefix.clone())) {
            v.err(
                format!("{p}.pathPrefix"),
                format!(
                    "another app already serves host \"{}\" path \"{}\"",
                    app.host, app.path_prefix
                ),
            );
        }
        if let Some(upstream) = &app.upstream {
            if let Some(u) = v.http_url(&format!("{p}.upstream"), upstream) {
                if u.path() != "/" || u.query().is_some() {
                    v.err(
                        format!("{p}.upstream"),
                        format!("\"{upstream}\" must be scheme://host:port without a path"),
                    );
                }
            }
        }
        let https_upstream = app
            .upstream
            .as_deref()
            .is_some_and(|u| u.starts_with("https://"));
        if app.upstream_tls.is_some() && !https_upstream {
            v.err(
                format!("{p}.upstreamTls"),
                "is set but the upstream is not https://",
            );
        }
        if let Some(bearer) = &app.bearer {
            check_bearer(v, &format!("{p}.bearer"), bearer);
            let secret = gw
                .identity_providers
                .iter()
                .find(|idp| idp.name == app.identity_provider)
                .is_some_and(|idp| idp.client_secret.is_some());
            if bearer.introspection && !secret {
                v.err(
                    format!("{p}.bearer.introspection"),
                    "needs a clientSecret on the app's identity provider (introspection authenticates as the gateway's client)",
                );
            }
        }
        if !gw
            .identity_providers
            .iter()
            .any(|idp| idp.name == app.identity_provider)
        {
            v.err(
                format!("{p}.identityProvider"),
                format!(
                    "\"{}\" is not the name of an entry of appGateway.identityProviders",
                    app.identity_provider
                ),
            );
        }
        for (j, pp) in app.public_paths.iter().enumerate() {
            v.abs_path(&format!("{p}.publicPaths[{j}]"), pp);
        }
        for (j, token) in app.allow_upgrades.iter().enumerate() {
            let key = format!("{p}.allowUpgrades[{j}]");
            let is_token = !token.is_empty()
                && token
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~/".contains(&b));
            if !is_token {
                v.err(key, format!("\"{token}\" is not an Upgrade protocol token"));
            } else if token.eq_ignore_ascii_case("h2c") {
                v.err(
                    key,
                    "h2c upgrades are never tunnelled (RFC 9113 §3.1 deprecates them; they bypass the gateway's checks)",
                );
            }
        }
        for name in app.headers.keys() {
            v.header_name(&format!("{p}.headers.{name}"), name);
        }
        for (claim, values) in &app.policy.claims {
            if values.is_empty() {
                v.err(
                    format!("{p}.policy.claims.{claim}"),
                    "lists no accepted value, so nobody could pass",
                );
            }
        }
        if let Some(h) = &app.assertion_header {
            v.header_name(&format!("{p}.assertionHeader"), h);
            // With one replica an ephemeral key (published in the gateway's JWKS) does;
            // replicas behind Redis must share a configured key.
            if gw.assertion_signing_keys.is_empty() && backend == CacheBackend::Redis {
                v.err(
                    format!("{p}.assertionHeader"),
                    "needs appGateway.assertionSigningKeys with cache.backend redis: replicas must sign with the same key",
                );
            }
        }
    }
}
