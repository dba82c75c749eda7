//! orchestrator-gateway: the App Gateway, an identity-aware reverse proxy.
//!
//! It holds routing (host + longest prefix on the normalised path), browser
//! login as an OpenID relying party (`orchestrator-rp`, code + PKCE), sessions
//! (local moka store or the shared [`orchestrator_cache::Cache`]), per-app
//! policy, identity headers and signed assertions, and the pooled upstream
//! client (HTTP/1.1, HTTP/2, TLS, WebSocket upgrades).
//!
//! It does not hold listeners, TLS termination, the admin surface or the
//! OpenID Provider: the binary owns those and hands each request to
//! [`Gateway::handle`]. The gateway talks to every IdP, this process's own
//! included, over HTTP with discovery.
//!
//! Read [`phases`] top to bottom to follow one request.

#![forbid(unsafe_code)]

mod assertion;
mod backchannel;
mod bearer;
mod cookies;
mod error;
mod expiring;
mod fast_hash;
mod forward;
mod forward_auth;
mod headers;
mod identity;
mod lookups;
mod metrics;
pub mod phases;
mod policy;
mod renewal;
mod rescue;
mod return_url;
mod route;
mod runtime;
mod session;
mod sign_in;
mod sign_out;
mod tunnels;

use std::sync::Arc;

use arc_swap::ArcSwap;
use orchestrator_cache::Cache;
use orchestrator_config::{AppGatewayConfig, ListenConfig, SigningKeyConfig};
use orchestrator_http::ConnInfo;
use orchestrator_ui::PagesHandle;

pub use assertion::ASSERTION_ISSUER;
pub use error::GatewayError;
pub use metrics::GatewayMetrics;
pub use orchestrator_http::RequestIdentity;
pub use orchestrator_http::body::BoxBody;
pub use route::NormalPath;
pub use session::SessionId;

use identity::IdentityCache;
pub(crate) use runtime::{App, Runtime};
use session::SessionStore;

/// Where the gateway publishes the JWKS of its assertion keys, on every host.
pub const JWKS_PATH: &str = "/.orchestrator/jwks";

/// The App Gateway: build once, [`reconfigure`](Self::reconfigure) on reload,
/// [`handle`](Self::handle) every request that is not the OIDC provider's.
#[derive(Debug)]
pub struct Gateway {
    runtime: Arc<ArcSwap<Runtime>>,
    /// Signs assertions when no key is configured; kept for the process's life so
    /// reloads do not invalidate what upstreams have cached from the JWKS.
    fallback_assertion_key: SigningKeyConfig,
    sessions: Arc<SessionStore>,
    identities: Arc<IdentityCache>,
    renewals: Arc<renewal::Renewals>,
    introspections: bearer::IntrospectionCache,
    metrics: Arc<GatewayMetrics>,
    pages: PagesHandle,
}

impl Gateway {
    /// Builds from config. Does NOT contact the IdP (discovery is lazy and
    /// retried). Fails on bad keys, CA files, URLs or references.
    pub fn new(
        cfg: &AppGatewayConfig,
        listen: &ListenConfig,
        cache: Arc<dyn Cache>,
        metrics: Arc<GatewayMetrics>,
    ) -> Result<Self, GatewayError> {
        let fallback_assertion_key = assertion::generate_fallback_key()?;
        let runtime = Runtime::build(cfg, listen, &fallback_assertion_key, &metrics)?;
        let sessions = SessionStore::new(cfg, cache, metrics.clone());
        Ok(Self {
            runtime: Arc::new(ArcSwap::from_pointee(runtime)),
            fallback_assertion_key,
            sessions: Arc::new(sessions),
            identities: Arc::new(IdentityCache::new()),
            renewals: Arc::new(renewal::Renewals::new(metrics.clone())),
            introspections: bearer::IntrospectionCache::new(),
            metrics,
            pages: PagesHandle::default(),
        })
    }

    /// Renders its pages with `pages` (shared with the provider and replaced
    /// when the templates change) instead of the built-ins.
    #[must_use]
    pub fn with_pages(mut self, pages: PagesHandle) -> Self {
        self.pages = pages;
        self
    }

    /// Hot reload: swaps apps, policies, IdPs and keys; keeps the session
    /// store and pending logins (session store settings apply at restart).
    pub fn reconfigure(
        &self,
        cfg: &AppGatewayConfig,
        listen: &ListenConfig,
    ) -> Result<(), GatewayError> {
        let runtime = Runtime::build(cfg, listen, &self.fallback_assertion_key, &self.metrics)?;
        self.runtime.store(Arc::new(runtime));
        // Open tunnels check their users against the new policies.
        self.sessions.reloaded();
        Ok(())
    }

    /// Serves one request (whatever app matches; a 404 page when none).
    /// Who it was served for is on the response, as a [`RequestIdentity`]
    /// extension (never sent to the client).
    pub async fn handle<B>(&self, req: http::Request<B>, conn: ConnInfo) -> http::Response<BoxBody>
    where
        B: http_body::Body<Data = bytes::Bytes> + Send + Sync + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let (mut resp, who) = self.serve(req, conn).await;
        resp.extensions_mut().insert(who);
        resp
    }

    /// [`handle`](Self::handle), with who the request was served for beside
    /// the response rather than in its extensions (which cost a map per
    /// request): for the listener's access log and span.
    pub async fn serve<B>(
        &self,
        req: http::Request<B>,
        conn: ConnInfo,
    ) -> (http::Response<BoxBody>, RequestIdentity)
    where
        B: http_body::Body<Data = bytes::Bytes> + Send + Sync + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let runtime = self.runtime.load_full();
        phases::serve(self, &runtime, req, conn).await
    }
}
