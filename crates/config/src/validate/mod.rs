//! Semantic checks that types alone cannot express. Every check pushes an
//! error with its key path and goes on, so one run lists every problem.

mod gateway;
mod provider;
mod validator;

use gateway::check_gateway;
use provider::check_provider;
use validator::Validator;

use crate::error::ConfigError;
use crate::model::{CacheBackend, Config};

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
