//! orchestrator-oidc: the built-in OpenID Provider.
//!
//! It holds the provider's endpoints (discovery, JWKS, authorize with its
//! login page, token, userinfo, introspection, revocation, end-session), token
//! minting and verification, signing-key loading, client authentication and
//! the built-in user directory. Every piece of state that must outlive one
//! request (codes, refresh-token families, SSO sessions, login throttling) lives
//! behind the [`orchestrator_cache::Cache`] trait, so several replicas sharing a
//! Redis behave as one provider and a config reload loses nothing.
//!
//! It does not hold listeners, TLS, routing between the provider and the
//! gateway, or the metrics registry: the binary owns those and calls
//! [`Provider::matches`] and [`Provider::handle`].
//!
//! One code exchange reads top to bottom in [`authorize`]
//! (request checks, SSO session or login page, code issuance) and then
//! `token` (client authentication, `take`, PKCE, signing).

#![forbid(unsafe_code)]

mod authorize;
mod clients;
mod device;
mod discovery;
mod end_session;
mod error;
mod introspect;
mod jwks;
pub mod keys;
mod login;
mod metrics;
mod params;
mod password;
mod provider;
mod revoke;
mod seal;
mod store;
mod throttle;
mod token;
mod tokens;
mod userinfo;
mod users;
mod web;

pub use error::{ErrorCode, OAuthError, ProviderError};
pub use keys::KeyError;
pub use metrics::ProviderMetrics;
pub use provider::Provider;

pub use orchestrator_http::body::BoxBody;
