//! Semantic checks that types alone cannot express. Every check pushes an
//! error with its key path and goes on, so one run lists every problem.

use std::collections::HashSet;
use std::time::Duration;

use crate::error::ConfigError;
use crate::model::{
    AppGatewayConfig, BearerConfig, CacheBackend, Config, GrantType, IntrospectionAllowed,
    OidcProviderConfig,
};

/// All problems of a deserialised config.
pub(crate) fn validate(cfg: &Config) -> Vec<ConfigError> {
    let mut v = Validator::default();
    if cfg.listen.address == cfg.admin.address {
        v.err(
            "admin.address",
            format!(
                "{} is also listen.address; the admin listener needs its own port",
                cfg.admin.address
            ),
        );
    }
    if cfg
        .admin
        .api_token
        .as_ref()
        .is_some_and(|t| t.expose().len() < 32)
    {
        v.err(
            "admin.apiToken",
            "must be at least 32 characters (it guards session revocation); `openssl rand -base64 32` makes one",
        );
    }
    traces(&mut v, &cfg.traces);
    v.positive("listen.headerReadTimeout", cfg.listen.header_read_timeout);
    if cfg.listen.max_header_bytes < 8192 {
        v.err("listen.maxHeaderBytes", "must be at least 8192");
    }
    if cfg.listen.max_connections == 0 {
        v.err("listen.maxConnections", "must be at least 1");
    }
    if cfg.listen.max_body_bytes < 1024 {
        v.err("listen.maxBodyBytes", "must be at least 1024");
    }
    if cfg.log.level.trim().is_empty() {
        v.err("log.level", "must not be empty (e.g. \"info\")");
    }
    check_cache(&mut v, cfg);
    if let Some(op) = &cfg.oidc_provider {
        check_provider(&mut v, op, cfg.cache.backend);
    }
    if let Some(gw) = &cfg.app_gateway {
        check_gateway(&mut v, gw, cfg.cache.backend);
    }
    v.errors
}

#[derive(Default)]
struct Validator {
    errors: Vec<ConfigError>,
}

impl Validator {
    fn err(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ConfigError::new(path, message));
    }

    fn positive(&mut self, path: &str, d: Duration) {
        if d.is_zero() {
            self.err(path, "must be longer than 0s");
        }
    }

    /// An absolute http(s) URL with a host; `what` completes "is not …".
    fn http_url(&mut self, path: &str, value: &str) -> Option<url::Url> {
        match url::Url::parse(value) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => Some(u),
            _ => {
                self.err(path, format!("\"{value}\" is not an http(s) URL"));
                None
            }
        }
    }

    fn abs_path(&mut self, path: &str, value: &str) {
        if !value.starts_with('/') {
            self.err(path, format!("\"{value}\" must start with \"/\""));
        }
    }

    fn unique<'a>(&mut self, path: &str, what: &str, items: impl Iterator<Item = &'a str>) {
        let mut seen = HashSet::new();
        for (i, item) in items.enumerate() {
            if !seen.insert(item) {
                self.err(
                    format!("{path}[{i}]"),
                    format!("duplicate {what} \"{item}\""),
                );
            }
        }
    }

    fn header_name(&mut self, path: &str, name: &str) {
        let valid = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !valid {
            self.err(path, format!("\"{name}\" is not a valid HTTP header name"));
        }
    }
}

fn check_cache(v: &mut Validator, cfg: &Config) {
    let redis = &cfg.cache.redis;
    v.positive("cache.redis.operationTimeout", redis.operation_timeout);
    v.positive("cache.redis.connectTimeout", redis.connect_timeout);
    if cfg.cache.memory.max_entries == 0 {
        v.err("cache.memory.maxEntries", "must be at least 1");
    }
    if cfg.cache.backend != CacheBackend::Redis {
        return;
    }
    let check = |v: &mut Validator, path: &str, value: &str| match url::Url::parse(value) {
        Ok(u) if matches!(u.scheme(), "redis" | "rediss") && u.host_str().is_some() => {}
        // Never echo the URL: it may carry a password.
        _ => v.err(
            path,
            "is not a redis:// or rediss:// URL with a host (e.g. redis://redis:6379/0)",
        ),
    };
    if redis.cluster_urls.is_empty() {
        check(v, "cache.redis.url", &redis.url);
    }
    for (i, u) in redis.cluster_urls.iter().enumerate() {
        check(v, &format!("cache.redis.clusterUrls[{i}]"), u);
    }
}

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

fn check_provider(v: &mut Validator, op: &OidcProviderConfig, backend: CacheBackend) {
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

fn check_gateway(v: &mut Validator, gw: &AppGatewayConfig, backend: CacheBackend) {
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

/// The trace exporter's settings (see `TracesConfig`).
fn traces(v: &mut Validator, t: &crate::model::TracesConfig) {
    if let Some(endpoint) = &t.endpoint {
        match url::Url::parse(endpoint) {
            Ok(u) if u.scheme() == "http" => {}
            Ok(_) => v.err(
                "traces.endpoint",
                "must be an http:// URL (OTLP/HTTP to a collector; TLS is not supported yet)",
            ),
            Err(_) => v.err("traces.endpoint", "not a URL"),
        }
    }
    if t.protocol.as_deref().is_some_and(|p| p != "http/protobuf") {
        v.err(
            "traces.protocol",
            "only http/protobuf is supported (grpc is not built in)",
        );
    }
    const SAMPLERS: &[&str] = &[
        "always_on",
        "always_off",
        "traceidratio",
        "parentbased_always_on",
        "parentbased_always_off",
        "parentbased_traceidratio",
    ];
    if let Some(s) = &t.sampler {
        if !SAMPLERS.contains(&s.as_str()) {
            v.err(
                "traces.sampler",
                format!("must be one of {}", SAMPLERS.join(", ")),
            );
        }
    }
    if t.sampler_arg.is_some_and(|a| !(0.0..=1.0).contains(&a)) {
        v.err("traces.samplerArg", "must be between 0 and 1");
    }
}
