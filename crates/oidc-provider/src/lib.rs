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
//! Layout: [`state`] holds the [`Provider`] (what every endpoint shares);
//! [`router`] routes a request to one module of [`endpoints`]; [`sso`] is
//! what a finished sign-in leads to (the code); [`tokens`] mints and verifies
//! tokens; [`respond`] is the one place errors become responses. No module
//! imports the one that imports it.
//!
//! One code exchange reads top to bottom in [`endpoints::authorize`]
//! (request checks, SSO session or login page, code issuance), then
//! [`endpoints::login`] when a password is needed, and [`endpoints::token`]
//! (client authentication, `take`, PKCE, signing).

#![forbid(unsafe_code)]

mod backchannel;
mod clients;
mod derived;
mod device;
mod endpoints;
mod error;
mod federation;
pub mod keys;
mod metrics;
mod params;
mod password;
mod respond;
mod router;
mod seal;
mod sso;
mod state;
mod store;
mod throttle;
mod tokens;
mod upstreams;
mod users;
mod web;

pub use backchannel::{DueJob, JOB_BATCH, jobs_queued};
pub use error::{ErrorCode, OAuthError, ProviderError};
pub use keys::KeyError;
pub use metrics::ProviderMetrics;
pub use state::Provider;

pub use orchestrator_http::body::BoxBody;
