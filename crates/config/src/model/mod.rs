//! The typed configuration: one struct per YAML section, camelCase keys,
//! unknown keys refused, defaults for everything optional.
//!
//! These types are the contract of `shared/reference/orchestrator.yaml`;
//! keys may be added, never renamed.

mod cache;
mod defaults;
mod gateway;
mod listeners;
mod process;
mod provider;

pub use cache::*;
pub use gateway::*;
pub use listeners::*;
pub use process::*;
pub use provider::*;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The whole configuration of one orchestrator process.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    /// The main listener: proxy and OIDC provider traffic.
    #[serde(default)]
    pub listen: ListenConfig,
    /// The admin listener: health, readiness, metrics.
    #[serde(default)]
    pub admin: AdminConfig,
    /// Directory that `${secret:NAME}` references are read from.
    #[serde(default = "default_secrets_dir")]
    pub secrets_dir: PathBuf,
    /// Logging.
    #[serde(default)]
    pub log: LogConfig,
    /// Graceful shutdown timings.
    #[serde(default)]
    pub shutdown: ShutdownConfig,
    /// The store behind the OIDC provider and shared gateway sessions.
    #[serde(default)]
    pub cache: CacheConfig,
    /// Optional built-in OpenID Provider.
    #[serde(default)]
    pub oidc_provider: Option<OidcProviderConfig>,
    /// Optional identity-aware reverse proxy.
    #[serde(default)]
    pub app_gateway: Option<AppGatewayConfig>,
    /// The pages people see.
    #[serde(default)]
    pub ui: UiConfig,
    /// OpenTelemetry traces (OTLP over HTTP); off unless an endpoint is
    /// set here or in `OTEL_EXPORTER_OTLP_ENDPOINT`.
    #[serde(default)]
    pub traces: TracesConfig,
}

/// Trace export. Each key mirrors a standard OpenTelemetry variable, which
/// is used when the key is unset. Restart to change.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TracesConfig {
    /// The collector's OTLP/HTTP base URL (`OTEL_EXPORTER_OTLP_ENDPOINT`);
    /// spans go to `{endpoint}/v1/traces`.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// `http/protobuf`, the only one supported (`OTEL_EXPORTER_OTLP_PROTOCOL`).
    #[serde(default)]
    pub protocol: Option<String>,
    /// `service.name` (`OTEL_SERVICE_NAME`; default `orchestrator`).
    #[serde(default)]
    pub service_name: Option<String>,
    /// `always_on`, `always_off`, `traceidratio`, `parentbased_always_on`,
    /// `parentbased_always_off`, `parentbased_traceidratio`
    /// (`OTEL_TRACES_SAMPLER`; default `parentbased_always_on`).
    #[serde(default)]
    pub sampler: Option<String>,
    /// The ratio of the ratio samplers, 0 to 1 (`OTEL_TRACES_SAMPLER_ARG`).
    #[serde(default)]
    pub sampler_arg: Option<f64>,
    /// Resource attributes (`OTEL_RESOURCE_ATTRIBUTES`), e.g.
    /// `deployment.environment.name: prod`.
    #[serde(default)]
    pub resource_attributes: std::collections::BTreeMap<String, String>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: ListenConfig::default(),
            admin: AdminConfig::default(),
            secrets_dir: default_secrets_dir(),
            log: LogConfig::default(),
            shutdown: ShutdownConfig::default(),
            cache: CacheConfig::default(),
            oidc_provider: None,
            app_gateway: None,
            traces: TracesConfig::default(),
            ui: UiConfig::default(),
        }
    }
}

/// The pages people see: login, access denied, sign-out and errors.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UiConfig {
    /// A folder of templates (`login.html`, `forbidden.html`, `error.html`,
    /// `confirm.html`, `signed_out.html`, `base.html`, `style.css`); each file
    /// there replaces the built-in page of its name. Watched: a change is
    /// applied without a restart, and a broken template keeps the old pages.
    #[serde(default)]
    pub templates_dir: Option<PathBuf>,
}

fn default_secrets_dir() -> PathBuf {
    PathBuf::from("/etc/orchestrator/secrets")
}
