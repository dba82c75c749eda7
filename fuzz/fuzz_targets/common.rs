//! A provider over an in-memory cache, shared by the provider targets.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use orchestrator_cache::{Cache, MemoryCache};
use orchestrator_config::{CacheBackend, ListenConfig, OidcProviderConfig, SigningAlgorithm};
use orchestrator_oidc::{Provider, ProviderMetrics};

pub struct World {
    pub rt: tokio::runtime::Runtime,
    pub provider: Provider,
}

pub fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let pem = orchestrator_oidc::keys::generate_pem(SigningAlgorithm::ES256).expect("key");
        let cfg: OidcProviderConfig = serde_json::from_value(serde_json::json!({
            "issuer": "http://op.test/idp",
            "signingKeys": [{"id": "k", "algorithm": "ES256", "privateKey": pem}],
            "clients": [
                {"clientId": "app", "clientSecret": "secret", "redirectUris": ["http://app.test/cb"],
                 "postLogoutRedirectUris": ["http://app.test/bye"]},
                {"clientId": "spa", "redirectUris": ["http://spa.test/cb"]},
                {"clientId": "legacy", "clientSecret": "s2", "requirePkce": false, "redirectUris": ["http://legacy.test/cb"]},
            ],
            "users": [],
        }))
        .expect("config");
        let cache: Arc<dyn Cache> = Arc::new(MemoryCache::new(&Default::default()));
        let metrics = Arc::new(ProviderMetrics::new(&prometheus::Registry::new()).expect("metrics"));
        let listen = ListenConfig {
            max_body_bytes: 16 * 1024,
            ..ListenConfig::default()
        };
        let provider =
            Provider::new(&cfg, CacheBackend::Memory, &listen, cache, metrics).expect("provider");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        World { rt, provider }
    })
}

/// Serves one request; returns status and body. Panics only on a 5xx that
/// is not a deliberate "unavailable".
pub fn serve(req: http::Request<Full<Bytes>>) -> (u16, Bytes) {
    let w = world();
    let peer: SocketAddr = ([127, 0, 0, 1], 4000).into();
    w.rt.block_on(async {
        let resp = w.provider.handle(req, peer, false).await;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        assert!(
            status < 500 || status == 503,
            "{status}: {}",
            String::from_utf8_lossy(&body)
        );
        (status, body)
    })
}
