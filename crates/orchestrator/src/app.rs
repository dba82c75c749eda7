//! The process-wide state: metrics, readiness, the cache, and the current
//! [`Runtime`] — everything built from one config — swapped atomically on reload.

use std::sync::Arc;

use arc_swap::ArcSwap;
use orchestrator_cache::Cache;
use orchestrator_config::Config;
use tokio_rustls::TlsAcceptor;

use crate::metrics::Metrics;
use crate::readiness::Readiness;
use crate::tls::CertStore;

/// What one config builds; immutable, replaced whole on reload.
pub(crate) struct Runtime {
    pub(crate) config: Config,
}

impl Runtime {
    /// Builds every config-derived part; used at start, on reload and by `validate`.
    pub(crate) fn build(config: Config, _cache: &Arc<dyn Cache>) -> Result<Self, Vec<String>> {
        Ok(Self { config })
    }
}

/// Long-lived state shared by the listeners.
pub(crate) struct App {
    pub(crate) metrics: Metrics,
    pub(crate) readiness: Readiness,
    pub(crate) cache: Arc<dyn Cache>,
    runtime: ArcSwap<Runtime>,
    certs: Option<Arc<CertStore>>,
    tls: Option<TlsAcceptor>,
}

impl App {
    pub(crate) fn new(
        metrics: Metrics,
        cache: Arc<dyn Cache>,
        runtime: Runtime,
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
            cache,
            runtime: ArcSwap::from_pointee(runtime),
            certs,
            tls,
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
        let runtime = Runtime::build(new, &self.cache)?;
        self.reload_certificate(&runtime.config)?;
        self.runtime.store(Arc::new(runtime));
        Ok(())
    }

    /// Re-reads the TLS certificate (e.g. renewed by cert-manager).
    pub(crate) fn reload_certificate(&self, cfg: &Config) -> Result<(), Vec<String>> {
        if let (Some(store), Some(tls)) = (&self.certs, &cfg.listen.tls) {
            store.reload(tls).map_err(|e| vec![e])?;
        }
        Ok(())
    }
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
    if old.admin.address != new.admin.address {
        keys.push("admin.address");
    }
    if old.cache != new.cache {
        keys.push("cache");
    }
    if old.secrets_dir != new.secrets_dir {
        keys.push("secretsDir");
    }
    if old.log != new.log {
        keys.push("log");
    }
    keys
}
