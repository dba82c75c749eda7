//! The process-wide state: metrics, readiness, the cache, and the current
//! [`Runtime`] — everything built from one config — swapped atomically on reload.

use std::sync::Arc;

use arc_swap::ArcSwap;
use orchestrator_cache::Cache;
use orchestrator_config::{
    CacheBackend, Config, OidcProviderConfig, Secret, SigningAlgorithm, SigningKeyConfig,
};
use orchestrator_gateway::{Gateway, GatewayMetrics};
use orchestrator_oidc::{Provider, ProviderMetrics};
use orchestrator_ui::{Pages, PagesHandle};
use tokio_rustls::TlsAcceptor;

use crate::access_log::AccessLog;
use crate::logging::LevelHandle;
use crate::metrics::Metrics;
use crate::readiness::Readiness;
use crate::tls::CertStore;

/// The long-lived parts every runtime is built with.
pub(crate) struct Parts {
    pub(crate) cache: Arc<dyn Cache>,
    /// Signs for the OIDC provider when no key is configured (memory cache only);
    /// made once so tokens keep verifying across hot reloads.
    dev_signing_key: SigningKeyConfig,
    pub(crate) provider_metrics: Arc<ProviderMetrics>,
    pub(crate) gateway_metrics: Arc<GatewayMetrics>,
    /// The pages both parts render, replaced when `ui.templatesDir` changes.
    pub(crate) pages: PagesHandle,
}

impl Parts {
    pub(crate) fn new(
        cache: Arc<dyn Cache>,
        registry: &prometheus::Registry,
    ) -> Result<Self, String> {
        let pem = orchestrator_oidc::keys::generate_pem(SigningAlgorithm::ES256)
            .map_err(|e| format!("dev signing key: {e}"))?;
        orchestrator_rp::install_metrics(registry).map_err(|e| format!("metrics: {e}"))?;
        Ok(Self {
            cache,
            dev_signing_key: SigningKeyConfig {
                id: "dev-generated-at-start".to_owned(),
                algorithm: SigningAlgorithm::ES256,
                private_key: Secret::new(pem),
            },
            provider_metrics: Arc::new(
                ProviderMetrics::new(registry).map_err(|e| format!("metrics: {e}"))?,
            ),
            gateway_metrics: Arc::new(
                GatewayMetrics::new(registry).map_err(|e| format!("metrics: {e}"))?,
            ),
            pages: PagesHandle::default(),
        })
    }
}

/// What one config builds; immutable, replaced whole on reload.
pub(crate) struct Runtime {
    pub(crate) config: Config,
    pub(crate) provider: Option<Provider>,
    pub(crate) gateway: Option<Arc<Gateway>>,
}

impl Runtime {
    /// Builds every config-derived part; used at start, on reload and by `validate`.
    /// With a `previous` runtime, its gateway is reconfigured in place so local
    /// sessions and pending logins survive the reload.
    pub(crate) fn build(
        config: Config,
        parts: &Parts,
        previous: Option<&Runtime>,
    ) -> Result<Self, Vec<String>> {
        let pages = load_pages(&config)?;
        let with_dev_key;
        let oidc = match &config.oidc_provider {
            Some(op)
                if op.signing_keys.is_empty() && config.cache.backend == CacheBackend::Memory =>
            {
                tracing::warn!(
                    "oidcProvider.signingKeys is empty: signing with an ES256 DEVELOPMENT key generated \
                     at start; tokens will not survive a restart or verify at another replica"
                );
                with_dev_key = OidcProviderConfig {
                    signing_keys: vec![parts.dev_signing_key.clone()],
                    ..op.clone()
                };
                Some(&with_dev_key)
            }
            other => other.as_ref(),
        };
        let provider = match oidc {
            Some(op) => Some(
                Provider::new(
                    op,
                    config.cache.backend,
                    &config.listen,
                    parts.cache.clone(),
                    parts.provider_metrics.clone(),
                )
                .map_err(|e| vec![format!("oidcProvider: {e}")])?
                .with_pages(parts.pages.clone()),
            ),
            None => None,
        };
        // Last, because reconfiguring touches the live gateway: nothing may fail after it.
        let gateway = match (
            &config.app_gateway,
            previous.and_then(|p| p.gateway.as_ref()),
        ) {
            (Some(gw), Some(live)) => {
                live.reconfigure(gw, &config.listen)
                    .map_err(|e| vec![format!("appGateway: {e}")])?;
                Some(live.clone())
            }
            (Some(gw), None) => Some(Arc::new(
                Gateway::new(
                    gw,
                    &config.listen,
                    parts.cache.clone(),
                    parts.gateway_metrics.clone(),
                )
                .map_err(|e| vec![format!("appGateway: {e}")])?
                .with_pages(parts.pages.clone()),
            )),
            (None, _) => None,
        };
        parts.pages.set(pages);
        Ok(Self {
            config,
            provider,
            gateway,
        })
    }
}

/// What re-reading the templates folder did.
#[derive(Debug)]
pub(crate) enum PagesReload {
    /// The templates are what is served already (another file was touched).
    Unchanged,
    /// New templates are served.
    Changed,
    /// The folder's templates are broken; the old pages keep serving.
    Rejected(Vec<String>),
    /// Broken the same way as the last time: already reported.
    StillRejected,
}

/// Long-lived state shared by the listeners.
pub(crate) struct App {
    pub(crate) metrics: Metrics,
    pub(crate) readiness: Readiness,
    pub(crate) parts: Parts,
    runtime: ArcSwap<Runtime>,
    levels: LevelHandle,
    certs: Option<Arc<CertStore>>,
    tls: Option<TlsAcceptor>,
    /// The access log of the main listener.
    pub(crate) access: AccessLog,
    /// The problems of the last templates reload that failed, to report them once.
    pages_problems: std::sync::Mutex<Option<Vec<String>>>,
}

impl App {
    pub(crate) fn new(
        metrics: Metrics,
        parts: Parts,
        runtime: Runtime,
        levels: LevelHandle,
        access: AccessLog,
    ) -> Result<Self, String> {
        let (certs, tls) = match &runtime.config.listen.tls {
            Some(tls_cfg) => {
                let store = Arc::new(CertStore::new(tls_cfg)?);
                let acceptor = store.acceptor()?;
                (Some(store), Some(acceptor))
            }
            None => (None, None),
        };
        Ok(Self {
            metrics,
            readiness: Readiness::default(),
            parts,
            runtime: ArcSwap::from_pointee(runtime),
            levels,
            certs,
            tls,
            access,
            pages_problems: std::sync::Mutex::new(None),
        })
    }

    /// The runtime serving now.
    pub(crate) fn runtime(&self) -> Arc<Runtime> {
        self.runtime.load_full()
    }

    /// The TLS acceptor of the main listener, when TLS is on.
    pub(crate) fn tls_acceptor(&self) -> Option<TlsAcceptor> {
        self.tls.clone()
    }

    /// Applies a new valid config: rebuilds the runtime (keeping what must
    /// survive, like local sessions), reloads the certificate, and warns about
    /// keys that only a restart applies. On error the old runtime keeps serving.
    pub(crate) fn apply(&self, new: Config) -> Result<(), Vec<String>> {
        let old = self.runtime();
        for key in restart_only_changes(&old.config, &new) {
            tracing::warn!(
                key,
                "config change needs a restart to take effect; keeping the old value until then"
            );
        }
        // What can fail goes first: a bad certificate or level rejects the reload
        // before the gateway is reconfigured in place.
        let new_level = (old.config.log.level != new.log.level).then(|| new.log.level.clone());
        if let Some(level) = &new_level {
            tracing_subscriber::EnvFilter::try_new(level)
                .map_err(|e| vec![format!("log.level: {e}")])?;
        }
        self.reload_certificate(&new)?;
        let runtime = Runtime::build(new, &self.parts, Some(&old))?;
        self.runtime.store(Arc::new(runtime));
        if let Some(level) = new_level {
            self.levels.set_level(&level).map_err(|e| vec![e])?;
            tracing::info!(level, "log level changed");
        }
        Ok(())
    }

    /// Re-reads the templates folder (its files changed, the config did not).
    /// A broken template keeps the pages serving now; the same problems are
    /// reported once.
    pub(crate) fn reload_pages(&self, cfg: &Config) -> PagesReload {
        let mut last_problems = self
            .pages_problems
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match load_pages(cfg) {
            Ok(pages) => {
                *last_problems = None;
                if pages.sources_equal(&self.parts.pages.get()) {
                    return PagesReload::Unchanged;
                }
                self.parts.pages.set(pages);
                PagesReload::Changed
            }
            Err(problems) if last_problems.as_ref() == Some(&problems) => {
                PagesReload::StillRejected
            }
            Err(problems) => {
                *last_problems = Some(problems.clone());
                PagesReload::Rejected(problems)
            }
        }
    }

    /// Re-reads the TLS certificate (e.g. renewed by cert-manager).
    pub(crate) fn reload_certificate(&self, cfg: &Config) -> Result<(), Vec<String>> {
        if let (Some(store), Some(tls)) = (&self.certs, &cfg.listen.tls) {
            store.reload(tls).map_err(|e| vec![e])?;
        }
        Ok(())
    }
}

/// The pages `cfg` asks for: the built-ins, or those of `ui.templatesDir`.
fn load_pages(cfg: &Config) -> Result<Pages, Vec<String>> {
    let pages = Pages::load(cfg.ui.templates_dir.as_deref())
        .map_err(|e| vec![format!("ui.templatesDir: {e}")])?;
    if !pages.overridden().is_empty() {
        tracing::info!(templates = ?pages.overridden(), "pages from ui.templatesDir");
    }
    Ok(pages)
}

/// Keys whose new value is read only at start.
fn restart_only_changes(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut keys = Vec::new();
    if old.listen.address != new.listen.address {
        keys.push("listen.address");
    }
    if old.listen.tls.is_some() != new.listen.tls.is_some() {
        keys.push("listen.tls");
    }
    if old.listen.header_read_timeout != new.listen.header_read_timeout {
        keys.push("listen.headerReadTimeout");
    }
    if old.listen.max_header_bytes != new.listen.max_header_bytes {
        keys.push("listen.maxHeaderBytes");
    }
    if old.listen.max_connections != new.listen.max_connections {
        keys.push("listen.maxConnections");
    }
    if old.admin.address != new.admin.address {
        keys.push("admin.address");
    }
    if old.cache != new.cache {
        keys.push("cache");
    }
    if old.secrets_dir != new.secrets_dir {
        keys.push("secretsDir");
    }

    if old.log.format != new.log.format {
        keys.push("log.format");
    }
    if old.traces != new.traces {
        keys.push("traces");
    }
    // The gateway's session store is sized and typed once; sessions must survive reloads.
    let session = |c: &Config| c.app_gateway.as_ref().map(|g| g.session.clone());
    if session(old) != session(new) {
        keys.push("appGateway.session");
    }
    let pending = |c: &Config| c.app_gateway.as_ref().map(|g| g.pending_login_ttl);
    if pending(old) != pending(new) {
        keys.push("appGateway.pendingLoginTtl");
    }
    keys
}
