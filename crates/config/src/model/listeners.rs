//! The listeners: the proxy (and provider) listener with its TLS and
//! limits, and the admin listener.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::secret::Secret;

/// The main listener.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListenConfig {
    /// Socket address to bind, e.g. `0.0.0.0:8080`.
    #[serde(default = "default_listen_address")]
    pub address: SocketAddr,
    /// CIDRs whose `X-Forwarded-*` headers are believed (the ingress). None by default.
    #[serde(default)]
    pub trusted_proxies: Vec<IpNet>,
    /// Terminate TLS here when set.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// A client must send its whole request head within this time.
    #[serde(default = "default_header_read_timeout", with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// Largest request head (request line + headers) accepted, in bytes.
    #[serde(default = "default_max_header_bytes")]
    pub max_header_bytes: usize,
    /// Most client connections served at once; beyond it new connections wait in the
    /// kernel's accept queue until one closes, so a spike cannot exhaust memory or file handles.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Largest request body the orchestrator itself reads (login forms, token requests), in bytes.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
}

fn default_listen_address() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_header_read_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_max_header_bytes() -> usize {
    64 * 1024
}
fn default_max_connections() -> usize {
    10_000
}
fn default_max_body_bytes() -> usize {
    64 * 1024
}

impl Default for ListenConfig {
    fn default() -> Self {
        Self {
            address: default_listen_address(),
            trusted_proxies: Vec::new(),
            tls: None,
            header_read_timeout: default_header_read_timeout(),
            max_header_bytes: default_max_header_bytes(),
            max_connections: default_max_connections(),
            max_body_bytes: default_max_body_bytes(),
        }
    }
}

/// A PEM certificate chain and private key on disk.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
}

/// The admin listener.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AdminConfig {
    /// Socket address to bind, e.g. `0.0.0.0:9090`.
    #[serde(default = "default_admin_address")]
    pub address: SocketAddr,
    /// Bearer token of the admin API (`POST /sessions/revoke`); unset, the
    /// API is off (404) and the listener only serves probes and metrics.
    #[serde(default)]
    pub api_token: Option<Secret>,
}

fn default_admin_address() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9090))
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            address: default_admin_address(),
            api_token: None,
        }
    }
}
