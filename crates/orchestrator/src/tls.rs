//! TLS on the main listener: the certificate and key from `listen.tls`, checked
//! to match, served through a resolver that a reload can swap without
//! dropping connections.

use std::fmt;
use std::sync::Arc;

use arc_swap::ArcSwap;
use orchestrator_config::TlsConfig;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// The current certificate, swapped when its files change.
pub(crate) struct CertStore {
    current: ArcSwap<CertifiedKey>,
}

impl fmt::Debug for CertStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CertStore")
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

impl CertStore {
    pub(crate) fn new(cfg: &TlsConfig) -> Result<Self, String> {
        Ok(Self {
            current: ArcSwap::from_pointee(load(cfg)?),
        })
    }

    /// Re-reads the files; on error the old certificate keeps serving.
    pub(crate) fn reload(&self, cfg: &TlsConfig) -> Result<(), String> {
        self.current.store(Arc::new(load(cfg)?));
        Ok(())
    }

    /// An acceptor that offers HTTP/2 and HTTP/1.1 through ALPN.
    pub(crate) fn acceptor(self: &Arc<Self>) -> Result<TlsAcceptor, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("listen.tls: {e}"))?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(TlsAcceptor::from(Arc::new(config)))
    }
}

/// Reads and checks the pair; errors name the key path and file, never key material.
pub(crate) fn load(cfg: &TlsConfig) -> Result<CertifiedKey, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cfg.cert_file)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            format!(
                "listen.tls.certFile: {}: not a readable PEM certificate ({e})",
                cfg.cert_file.display()
            )
        })?;
    if certs.is_empty() {
        return Err(format!(
            "listen.tls.certFile: {}: no certificate found",
            cfg.cert_file.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&cfg.key_file).map_err(|e| {
        format!(
            "listen.tls.keyFile: {}: not a readable PEM private key ({e})",
            cfg.key_file.display()
        )
    })?;
    let provider = rustls::crypto::ring::default_provider();
    let signing_key = provider.key_provider.load_private_key(key).map_err(|e| {
        format!(
            "listen.tls.keyFile: {}: unsupported private key ({e})",
            cfg.key_file.display()
        )
    })?;
    let certified = CertifiedKey::new(certs, signing_key);
    certified.keys_match().map_err(|_| {
        format!(
            "listen.tls: the key in {} does not match the certificate in {}",
            cfg.key_file.display(),
            cfg.cert_file.display()
        )
    })?;
    Ok(certified)
}
