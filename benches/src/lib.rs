//! Bench support shared by the criterion benches and the `load` harness.
//!
//! - [`upstream`]: the fast upstream every target forwards to (a minimal hyper
//!   server with a small response, a 1 MiB streamed response and an upload sink).
//! - [`client`]: a keep-alive HTTP/1.1 connection on hyper, a cookie jar, and
//!   the browser's walk through the login flow (app → authorize → login form →
//!   callback → app) and the OIDC client's code exchange (authorize with an
//!   SSO session, then token).
//! - [`bare_proxy`]: the least a reverse proxy on hyper and tokio does, the
//!   floor every proxy on this stack starts from.
//!
//! It holds no measurement logic: criterion and `src/bin/load` do that.

#![forbid(unsafe_code)]

pub mod bare_proxy;
pub mod client;
pub mod upstream;

/// The error type of this crate: everything here is a measurement tool, so
/// errors only need to say what went wrong.
pub type Error = Box<dyn std::error::Error + Send + Sync>;
